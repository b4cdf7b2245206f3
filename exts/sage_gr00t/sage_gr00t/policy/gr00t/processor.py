"""GR00T observation/action dicts <-> model tensors: validation, min-max normalization, padding.

Per-embodiment metadata is stored with the checkpoint in upstream's `experiment_cfg/metadata.json`
layout: {embodiment_tag: {"statistics": {"state"|"action": {group: {"min", "max", "mean", "std"}}},
"modalities": {...}, "embodiment_tag": ..., "embodiment_id": ...}}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sage_gr00t.modality import LANGUAGE_KEY, action_key, state_key, video_key
from sage_gr00t.policy.gr00t.config import Gr00tConfig

# Eagle 2.5's chat layout for one image + instruction (upstream N1.5 applies the chat template, then replaces
# `<image-1>` with `<img>` + <IMG_CONTEXT> x image tokens + `</img>`; ids are left-padded, as upstream pads).
EAGLE_PROMPT = "<|im_start|>user\n<image-1>{text}<|im_end|>\n<|im_start|>assistant\n"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


def eagle_input_ids(tokenizer, texts: list[str], image_tokens: int,
                    vl_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eagle input ids / attention mask (B, L) for one frame per sample: `image_tokens` <IMG_CONTEXT> ids (256
    per 224 px frame in N1.5, `BackboneConfig.image_tokens_per_frame`) inside the chat prompt, left-padded to
    the longest prompt or to `vl_length` (a fixed VL length: the static shape compiled graphs and CUDA graphs
    need). `tokenizer`: a Hugging Face tokenizer that knows Eagle's special tokens (Qwen3 + <IMG_CONTEXT>)."""
    from sage_gr00t.policy.gr00t.backbone import IMAGE_TOKEN_INDEX

    image = IMG_START + IMG_CONTEXT * image_tokens + IMG_END
    rows = [list(tokenizer(EAGLE_PROMPT.format(text=t).replace("<image-1>", image), add_special_tokens=False)
                 ["input_ids"]) for t in texts]
    for row in rows:
        if row.count(IMAGE_TOKEN_INDEX) != image_tokens:
            raise ValueError(f"The tokenizer maps {IMG_CONTEXT} x {image_tokens} to {row.count(IMAGE_TOKEN_INDEX)} "
                             f"ids {IMAGE_TOKEN_INDEX}: use Eagle 2.5's tokenizer (backbone.tokenizer_path).")
    length = vl_length or max(len(r) for r in rows)
    if max(len(r) for r in rows) > length:
        raise ObservationError(f"The instruction needs {max(len(r) for r in rows)} VL tokens, more than the fixed "
                               f"VL length {length}; shorten it or raise vl_length.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, length - len(row):] = torch.tensor(row)
        mask[i, length - len(row):] = 1
    return ids, mask


# Upstream's embodiment ids for known tags; project robots use free slots below new_embodiment (31).
EMBODIMENT_IDS = {"gr1": 24, "oxe_droid": 17, "agibot_genie1": 26, "new_embodiment": 31,
                  "sage_humanoid": 30, "unitree_g1": 29}


def resize_images(images: np.ndarray, size: int) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, size, size) float in [-1, 1]; one function for training and inference."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x * 2.0 - 1.0


class ObservationError(ValueError):
    """An observation the policy must not act on (the robot should hold still)."""


@dataclass
class EmbodimentMetadata:
    tag: str
    embodiment_id: int
    video_keys: list[str]
    state_groups: dict[str, int]  # group -> dim, in concatenation order
    action_groups: dict[str, int]
    statistics: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    @property
    def state_dim(self) -> int:
        return sum(self.state_groups.values())

    @property
    def action_dim(self) -> int:
        return sum(self.action_groups.values())

    def to_json(self) -> dict:
        def spec(dim: int) -> dict:
            return {"shape": [dim], "absolute": True, "continuous": True}

        return {
            "embodiment_tag": self.tag,
            "embodiment_id": self.embodiment_id,
            "statistics": self.statistics,
            "modalities": {
                "video": {k: {"channels": 3} for k in self.video_keys},
                "state": {g: spec(d) for g, d in self.state_groups.items()},
                "action": {g: spec(d) for g, d in self.action_groups.items()},
            },
        }

    @classmethod
    def from_json(cls, tag: str, data: dict) -> EmbodimentMetadata:
        mods = data["modalities"]
        return cls(
            tag=tag,
            embodiment_id=int(data.get("embodiment_id", EMBODIMENT_IDS.get(tag, 31))),
            video_keys=list(mods["video"]),
            state_groups={g: int(v["shape"][0]) for g, v in mods["state"].items()},
            action_groups={g: int(v["shape"][0]) for g, v in mods["action"].items()},
            statistics=data["statistics"],
        )

    def stats_array(self, kind: str, stat: str) -> np.ndarray:
        groups = self.state_groups if kind == "state" else self.action_groups
        return np.concatenate([np.asarray(self.statistics[kind][g][stat], np.float32) for g in groups])


def compute_statistics(values: dict[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    """Per-group min/max/mean/std over rows (N, d)."""
    return {
        g: {"min": v.min(0).tolist(), "max": v.max(0).tolist(), "mean": v.mean(0).tolist(), "std": v.std(0).tolist()}
        for g, v in values.items()
    }


class Gr00tProcessor:
    """Turns GR00T-format observations into a model batch and model outputs into action dicts."""

    def __init__(self, config: Gr00tConfig, embodiments: dict[str, EmbodimentMetadata],
                 vl_length: int | None = None) -> None:
        """`vl_length` (eagle backbone): pad every prompt to this many tokens (a static shape for compiled /
        CUDA-graph inference); None pads to the longest prompt of the batch."""
        self.config = config
        self.embodiments = embodiments
        self.image_size = config.backbone.image_size
        self.vl_length = vl_length

    def metadata(self, tag: str) -> EmbodimentMetadata:
        if tag not in self.embodiments:
            raise ObservationError(
                f"This checkpoint has no statistics for embodiment {tag!r} (has {sorted(self.embodiments)}). "
                "Fine-tune on data of that robot or pick a matching embodiment tag."
            )
        return self.embodiments[tag]

    # ------------------------------------------------------------------ normalization
    def _norm(self, x: np.ndarray, meta: EmbodimentMetadata, kind: str) -> np.ndarray:
        lo, hi = meta.stats_array(kind, "min"), meta.stats_array(kind, "max")
        span = np.where(hi - lo > 1e-6, hi - lo, 1.0)
        return np.clip(2.0 * (x - lo) / span - 1.0, -1.0, 1.0).astype(np.float32)

    def _denorm(self, x: np.ndarray, meta: EmbodimentMetadata, kind: str) -> np.ndarray:
        lo, hi = meta.stats_array(kind, "min"), meta.stats_array(kind, "max")
        return ((np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo).astype(np.float32)

    def normalize_state(self, state: np.ndarray, meta: EmbodimentMetadata) -> np.ndarray:
        return self._norm(state, meta, "state")

    def normalize_action(self, action: np.ndarray, meta: EmbodimentMetadata) -> np.ndarray:
        return self._norm(action, meta, "action")

    # ------------------------------------------------------------------ validation
    def validate(self, obs: dict, meta: EmbodimentMetadata) -> None:
        """Raise ObservationError naming the problem and the fix; never guess."""
        if not isinstance(obs, dict):
            raise ObservationError(f"Observation must be a dict of GR00T modality keys, got {type(obs).__name__}.")
        required = [video_key(k) for k in meta.video_keys] + [state_key(g) for g in meta.state_groups] + [LANGUAGE_KEY]
        missing = [k for k in required if k not in obs]
        if missing:
            raise ObservationError(f"Observation is missing {missing}; this policy needs {required}.")
        for key in meta.video_keys:
            image = np.asarray(obs[video_key(key)])
            if image.dtype != np.uint8:
                raise ObservationError(f"video.{key} must be uint8 RGB, got dtype {image.dtype}.")
            if image.ndim == 4 and image.shape[0] == 1:
                image = image[0]
            if image.ndim != 3 or image.shape[-1] != 3:
                raise ObservationError(f"video.{key} must have shape (H, W, 3) or (1, H, W, 3), got {image.shape}.")
        for group, dim in meta.state_groups.items():
            value = np.asarray(obs[state_key(group)])
            if not np.issubdtype(value.dtype, np.floating):
                raise ObservationError(f"state.{group} must be a float array, got dtype {value.dtype}.")
            if value.reshape(-1).shape != (dim,):
                raise ObservationError(f"state.{group} must hold {dim} values (shape ({dim},) or (1, {dim})), "
                                       f"got shape {value.shape}.")
            if not np.all(np.isfinite(value)):
                raise ObservationError(f"state.{group} contains NaN or inf: {value}. Hold the robot still.")
        text = obs[LANGUAGE_KEY]
        if isinstance(text, (list, tuple)) and len(text) == 1:
            text = text[0]
        if not isinstance(text, str) or not text.strip():
            raise ObservationError(f"{LANGUAGE_KEY} must be a non-empty string, got {text!r}.")

    # ------------------------------------------------------------------ batching
    def image_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, S, S) float in [-1, 1] at the backbone's resolution."""
        return resize_images(images, self.image_size)

    def tokenize(self, texts: list[str], model) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ids / attention mask for the backbone: byte tokens (compact) or Eagle's prompt with the frame's
        <IMG_CONTEXT> tokens (eagle)."""
        from sage_gr00t.policy.gr00t.backbone import ByteTokenizer

        tokenizer = model.backbone.tokenizer
        if isinstance(tokenizer, ByteTokenizer):
            return tokenizer(texts, pad_to_longest=True)
        return eagle_input_ids(tokenizer, texts, self.config.backbone.image_tokens_per_frame, self.vl_length)

    def pad_state(self, state: np.ndarray) -> np.ndarray:
        out = np.zeros((*state.shape[:-1], self.config.action_head.max_state_dim), np.float32)
        out[..., : state.shape[-1]] = state
        return out

    def pad_action(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dim = self.config.action_head.action_dim
        out = np.zeros((*action.shape[:-1], dim), np.float32)
        mask = np.zeros_like(out)
        out[..., : action.shape[-1]] = action
        mask[..., : action.shape[-1]] = 1.0
        return out, mask

    def observation_batch(self, obs: dict, meta: EmbodimentMetadata, model) -> dict[str, torch.Tensor]:
        """One validated observation -> a batch of size 1."""
        self.validate(obs, meta)
        image = np.asarray(obs[f"video.{meta.video_keys[0]}"])
        image = image[0] if image.ndim == 4 else image
        state = np.concatenate([np.asarray(obs[state_key(g)], np.float32).reshape(-1) for g in meta.state_groups])
        text = obs[LANGUAGE_KEY]
        text = text[0] if isinstance(text, (list, tuple)) else text
        ids, mask = self.tokenize([text], model)
        return {
            "pixel_values": self.image_tensor(image[None]),
            "input_ids": ids,
            "attention_mask": mask,
            "state": torch.from_numpy(self.pad_state(self.normalize_state(state, meta)))[None, None],
            "embodiment_id": torch.tensor([meta.embodiment_id]),
        }

    def action_dict(self, actions: torch.Tensor, meta: EmbodimentMetadata) -> dict[str, np.ndarray]:
        """(1, horizon, action_dim) normalized -> {action.<group>: (horizon, d)} in joint units."""
        values = self._denorm(actions[0, :, : meta.action_dim].cpu().numpy(), meta, "action")
        out, start = {}, 0
        for group, dim in meta.action_groups.items():
            out[action_key(group)] = values[:, start : start + dim].copy()
            start += dim
        return out
