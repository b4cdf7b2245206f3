"""Checkpoints: safetensors weights + config.json + experiment_cfg/metadata.json (normalization stats).

The layout and tensor names (`backbone.*`, `action_head.*`) follow upstream GR00T N1.5, including
sharded weights (`model.safetensors.index.json`) and upstream's `backbone_cfg`/`action_head_cfg`
config, so a real N1.5 checkpoint maps onto `Gr00tModel`. On disk the names are always upstream's
(transformers 4.51: `backbone.eagle_model.vision_model.vision_model.*`); `upstream_names` /
`model_names` translate to and from the installed transformers' module names, and reading also accepts
the transformers-5 spelling. Upstream's tied `language_model.lm_head.weight` (unused: GR00T reads
hidden states) is dropped when present. Loading checks every key and shape, refuses
NaN/inf weights (one `torch.isfinite` pass per tensor), and turns a broken JSON file or a truncated
weights file into one `CheckpointError` line that names the file and what to do.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sage_gr00t.policy.gr00t.config import (
    ActionHeadConfig,
    BackboneConfig,
    Gr00tConfig,
    TransformerConfig,
)
from sage_gr00t.policy.gr00t.model import Gr00tModel
from sage_gr00t.policy.gr00t.processor import EmbodimentMetadata

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
METADATA_FILE = "experiment_cfg/metadata.json"

# Upstream (transformers 4.51) names of the SigLIP tower, and the one tensor upstream has that we never build.
SIGLIP_PREFIX = "backbone.eagle_model.vision_model."
SIGLIP_UPSTREAM_PREFIX = SIGLIP_PREFIX + "vision_model."
TIED_LM_HEAD = "backbone.eagle_model.language_model.lm_head.weight"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as asked (missing files, corrupted or mismatched tensors)."""


def _canonical(name: str) -> str:
    """A checkpoint tensor name in upstream's spelling (the transformers-5 SigLIP names gain `vision_model.`)."""
    if name.startswith(SIGLIP_PREFIX) and not name.startswith(SIGLIP_UPSTREAM_PREFIX):
        return SIGLIP_UPSTREAM_PREFIX + name[len(SIGLIP_PREFIX):]
    return name


def _replace_prefix(name: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def upstream_names(model: Gr00tModel, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """`state` (default `model.state_dict()`) keyed by upstream's checkpoint names (works on the meta device)."""
    state = model.state_dict() if state is None else state
    pairs = model.checkpoint_prefixes()
    return {_replace_prefix(k, pairs): v for k, v in state.items()}


def model_names(model: Gr00tModel, state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's state keyed by `model`'s module names: names in upstream's spelling or in the installed
    transformers' spelling both map; upstream's tied, unused lm_head is dropped."""
    pairs = [(disk, local) for local, disk in model.checkpoint_prefixes()]
    out = {}
    for k, v in state.items():
        k = _canonical(k)
        if k == TIED_LM_HEAD:
            continue
        out[_replace_prefix(k, pairs)] = v
    return out


def save_checkpoint(path: str | Path, model: Gr00tModel, embodiments: dict[str, EmbodimentMetadata],
                    dtype: torch.dtype = torch.float32) -> Path:
    path = Path(path)
    (path / "experiment_cfg").mkdir(parents=True, exist_ok=True)
    model.config.save(path / CONFIG_FILE)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in upstream_names(model).items()}
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "producer": "sage_gr00t"})
    tmp.replace(path / WEIGHTS_FILE)  # atomic: an interrupted save never leaves a half-written file
    (path / METADATA_FILE).write_text(json.dumps({t: m.to_json() for t, m in embodiments.items()}, indent=1))
    return path


def _config_from_upstream(data: dict) -> Gr00tConfig:
    """Map upstream N1.5 `backbone_cfg` / `action_head_cfg` onto our dataclasses."""
    head = dict(data["action_head_cfg"])

    def transformer(cfg: dict, interleave_default: bool) -> TransformerConfig:
        known = {f for f in TransformerConfig.__dataclass_fields__}
        kwargs = {k: v for k, v in cfg.items() if k in known}
        kwargs.setdefault("interleave_self_attention", interleave_default)
        kwargs.setdefault("cross_attention_dim", None)
        return TransformerConfig(**kwargs)

    known_head = set(ActionHeadConfig.__dataclass_fields__) - {"diffusion_model_cfg", "vl_self_attention_cfg"}
    head_kwargs = {k: v for k, v in head.items() if k in known_head}
    if "max_action_dim" in head:
        head_kwargs["action_dim"] = head["max_action_dim"]
    action_head = ActionHeadConfig(
        **head_kwargs,
        diffusion_model_cfg=transformer(head["diffusion_model_cfg"], True),
        vl_self_attention_cfg=transformer(head.get("vl_self_attention_cfg", {}), False),
    )
    # Upstream's backbone_cfg names the Eagle model; its sizes are Eagle 2.5's (our defaults) unless
    # the file spells them out with our field names (as checkpoints exported from here do).
    bb = data.get("backbone_cfg", {})
    known_bb = set(BackboneConfig.__dataclass_fields__) - {"kind"}
    backbone = BackboneConfig(kind="eagle", **{k: v for k, v in bb.items() if k in known_bb})
    return Gr00tConfig(backbone=backbone, action_head=action_head, preset="upstream")


def _read_json(file: Path) -> Any:
    """Parse a checkpoint JSON file; a broken one is a CheckpointError naming the file and position."""
    try:
        return json.loads(file.read_text())
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"Corrupted {file}: not UTF-8 text ({exc}). Re-download or re-export the "
                              "checkpoint.") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"Corrupted {file}: invalid JSON at line {exc.lineno} column {exc.colno} "
                              f"({exc.msg}). Re-download or re-export the checkpoint.") from exc


def read_config(path: Path) -> Gr00tConfig:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"No {CONFIG_FILE} in {path}: is this a GR00T checkpoint folder?")
    data = _read_json(file)
    if not isinstance(data, dict):
        raise CheckpointError(f"Corrupted {file}: expected a JSON object, found {type(data).__name__}.")
    try:
        if "action_head_cfg" in data:
            return _config_from_upstream(data)
        backbone = data.get("backbone") if isinstance(data.get("backbone"), dict) else {}
        if backbone.get("kind", "eagle") == "eagle" and "use_pixel_shuffle" not in backbone and backbone:
            # Written before the field existed, when every eagle build here pixel-shuffled (4x fewer tokens).
            data = {**data, "backbone": {**backbone, "use_pixel_shuffle": True}}
        return Gr00tConfig.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {path} has an unusable {CONFIG_FILE}: {type(exc).__name__}: "
                              f"{exc}") from exc


def _truncation(file: Path) -> str | None:
    """Why a safetensors file is shorter than its own header says (None if its size is consistent)."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            return f"{size} bytes, but its header alone claims {8 + n}"
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError):
            return None
    return f"{size} bytes, but its header describes {8 + n + end}" if 8 + n + end > size else None


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN/inf in `t`. min/max propagate NaN and expose inf, and one aminmax pass is ~20x cheaper than
    isfinite().all() (no bool temporary), so this adds well under a second to a multi-GB load."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def _nonfinite(file: Path, tensors: dict[str, torch.Tensor], limit: int = 4) -> str | None:
    """Describe NaN/inf values in floating tensors (None if all finite); counted only for bad tensors."""
    bad = []
    for name, t in tensors.items():
        if not _all_finite(t):
            n_nan = int(torch.isnan(t).sum())
            bad.append(f"{name} ({int((~torch.isfinite(t)).sum())} of {t.numel()} values: {n_nan} NaN, "
                       f"{int(torch.isinf(t).sum())} inf)")
    if not bad:
        return None
    more = f" (+{len(bad) - limit} more tensors)" if len(bad) > limit else ""
    return (f"Weights file {file} has non-finite weights in {len(bad)} tensor(s): {'; '.join(bad[:limit])}{more}. "
            "The file is corrupt or training diverged: re-download or re-train the checkpoint.")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    files = [path / WEIGHTS_FILE]
    if (path / INDEX_FILE).is_file():  # upstream's sharded layout
        index = _read_json(path / INDEX_FILE)
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise CheckpointError(f"Corrupted {path / INDEX_FILE}: no \"weight_map\" object. Re-download it.")
        files = [path / name for name in sorted(set(index["weight_map"].values()))]
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"Missing weights file {file}. Re-download or re-export the checkpoint.")
        truncated = _truncation(file)
        if truncated:
            raise CheckpointError(f"Corrupted weights file {file}: truncated ({truncated}). "
                                  "Re-download or re-train the checkpoint.")
        try:
            tensors = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"Corrupted weights file {file}: {exc}. The file is truncated or corrupt: "
                                  "re-download or re-train the checkpoint.") from exc
        nonfinite = _nonfinite(file, tensors)
        if nonfinite:
            raise CheckpointError(nonfinite)
        state.update(tensors)
    return state


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Missing keys, unexpected keys and shape mismatches between a model and a state dict."""
    expected = model.state_dict()
    return {
        "missing": sorted(set(expected) - set(state)),
        "unexpected": sorted(set(state) - set(expected)),
        "shape_mismatch": sorted(
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)
        ),
    }


def _describe(report: dict[str, list[str]], limit: int = 8) -> str:
    parts = []
    for name, items in report.items():
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {name.replace('_', ' ')}: {items[:limit]}{more}")
    return "; ".join(parts)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    strict: bool = True) -> tuple[Gr00tModel, dict[str, EmbodimentMetadata], dict[str, list[str]]]:
    """Build the model from config.json, load weights, return (model, embodiment metadata, key report).

    With strict=True any missing/unexpected key or shape mismatch raises CheckpointError; with
    strict=False shape mismatches still raise but missing/unexpected keys are only reported
    (e.g. to load a real N1.5 checkpoint whose backbone is kept elsewhere).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint folder {path} does not exist. Train one with sage-train "
                              "or pass the folder of a GR00T N1.5 checkpoint.")
    config = read_config(path)
    try:
        model = Gr00tModel(config)
    except ValueError as exc:
        raise CheckpointError(f"Checkpoint {path} has an unusable config.json: {exc}") from exc
    state = model_names(model, read_state_dict(path))
    report = check_state_dict(model, state)
    if report["shape_mismatch"] or (strict and (report["missing"] or report["unexpected"])):
        raise CheckpointError(f"Checkpoint {path} does not match its config: {_describe(report)}.")
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    model.load_state_dict(state, strict=False)
    metadata_file = path / METADATA_FILE
    embodiments = {}
    if metadata_file.is_file():  # optional here (e.g. a bare upstream export); load_policy requires it
        data = _read_json(metadata_file)
        try:
            embodiments = {t: EmbodimentMetadata.from_json(t, d) for t, d in data.items()}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"Corrupted {metadata_file}: {type(exc).__name__}: {exc}. Re-download or "
                                  "re-export the checkpoint.") from exc
    return model.to(device).eval(), embodiments, report
