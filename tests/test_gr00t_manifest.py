"""GR00T N1.5 checkpoints with upstream's exact tensor names and shapes.

`../shared/upstream_n15/gr00t_n15_parameters.json` (beside the repository) lists all 899 parameter names and shapes
of upstream's `GR00T_N1_5` (NVIDIA Isaac-GR00T n1.5-release, nvidia/GR00T-N1.5-3B config, transformers 4.51).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sage_gr00t.policy.gr00t.action_head import FlowMatchingActionHead
from sage_gr00t.policy.gr00t.backbone import IMAGE_TOKEN_INDEX
from sage_gr00t.policy.gr00t.checkpoint import (
    TIED_LM_HEAD,
    WEIGHTS_FILE,
    load_checkpoint,
    save_checkpoint,
    upstream_names,
)
from sage_gr00t.policy.gr00t.config import BackboneConfig, Gr00tConfig, compact_config, n15_config
from sage_gr00t.policy.gr00t.model import Gr00tModel

MANIFEST = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_n15" / "gr00t_n15_parameters.json"
needs_manifest = pytest.mark.skipif(
    not MANIFEST.is_file(), reason=f"upstream N1.5 parameter manifest not found at {MANIFEST}"
)
SIGLIP = "backbone.eagle_model.vision_model.vision_model."


def _manifest() -> dict[str, list[int]]:
    return json.loads(MANIFEST.read_text())["parameters"]


def _tiny_config(**backbone) -> Gr00tConfig:
    """Eagle-kind backbone at tiny widths over the compact action head (same structure as N1.5's)."""
    cfg = compact_config()
    cfg.preset = "tiny_eagle"
    cfg.backbone = BackboneConfig(kind="eagle", image_size=56, vision_hidden_size=32, vision_layers=2, vision_heads=2,
                                  vision_intermediate_size=64, patch_size=14, llm_hidden_size=64, select_layer=2,
                                  llm_heads=4, llm_kv_heads=2, llm_intermediate_size=128, vocab_size=151700,
                                  **backbone)
    cfg.action_head.backbone_embedding_dim = 64
    cfg.action_head.diffusion_model_cfg.cross_attention_dim = 64
    cfg.action_head.vl_self_attention_cfg.num_attention_heads = 2  # 2 x 32 = the 64-d VL tokens
    return cfg


def _batch(model: Gr00tModel, padded: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    size = model.config.backbone.image_size
    tokens = model.config.backbone.image_tokens_per_frame
    ids = torch.tensor([[1, 2] + [IMAGE_TOKEN_INDEX] * tokens + [3, 4, 5]] * 2)
    mask = torch.ones_like(ids)
    if padded:
        mask[1, -2:] = 0
    return {"pixel_values": torch.rand(2, 3, size, size, generator=g) * 2 - 1, "input_ids": ids,
            "attention_mask": mask, "state": torch.randn(2, 1, 64, generator=g),
            "embodiment_id": torch.tensor([31, 31])}


def _upstream_config_json(cfg: Gr00tConfig) -> dict:
    """config.json in upstream's layout (backbone_cfg / action_head_cfg), sizes spelled out for the tiny model."""
    head = cfg.to_dict()["action_head"]
    head.pop("mask_vl_padding")
    head["max_action_dim"] = head.pop("action_dim")
    backbone = {k: v for k, v in cfg.to_dict()["backbone"].items() if k != "kind"}
    return {"architectures": ["GR00T_N1_5"], "model_type": "gr00t_n1_5", "action_head_cfg": head,
            "backbone_cfg": backbone}


@needs_manifest
def test_n15_preset_has_exactly_upstreams_names_and_shapes() -> None:
    manifest = _manifest()
    assert len(manifest) == 899
    with torch.device("meta"):
        model = Gr00tModel(n15_config())
    saved = {k: list(v.shape) for k, v in upstream_names(model).items()}
    missing = sorted(set(manifest) - set(saved))
    unexpected = sorted(set(saved) - set(manifest))
    mismatched = sorted(f"{k}: {saved[k]} vs upstream {manifest[k]}" for k in manifest if k in saved
                        and saved[k] != manifest[k])
    assert missing == [TIED_LM_HEAD]  # tied to embed_tokens upstream, unused here: may be absent
    assert unexpected == []
    assert mismatched == []
    assert len(saved) == 898
    assert saved["backbone.eagle_model.mlp1.0.weight"] == [2048, 1152]
    assert sum(k.startswith(SIGLIP + "head.") for k in saved) == 11
    assert model.config.backbone.image_tokens_per_frame == 256
    assert model.action_head.mask_vl_padding is False


def test_tiny_eagle_round_trip_with_upstream_names(tmp_path) -> None:
    torch.manual_seed(0)
    model = Gr00tModel(_tiny_config()).eval()
    save_checkpoint(tmp_path, model, {})
    on_disk = load_file(str(tmp_path / WEIGHTS_FILE))
    assert set(on_disk) == set(upstream_names(model))
    assert any(k.startswith(SIGLIP + "encoder.layers.1.") for k in on_disk)
    assert sum(k.startswith(SIGLIP + "head.") for k in on_disk) == 11
    assert not any(k.startswith("backbone.eagle_model.vision_model.encoder.") for k in on_disk)
    assert tuple(on_disk["backbone.eagle_model.mlp1.0.weight"].shape) == (64, 32)  # no pixel shuffle
    loaded, _, report = load_checkpoint(tmp_path)
    assert report == {"missing": [], "unexpected": [], "shape_mismatch": []}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    batch, noise = _batch(model), torch.randn(2, 16, 32)
    assert model.backbone.eagle_model.extract_feature(batch["pixel_values"]).shape[1] == 16  # (56 / 14)^2
    assert torch.equal(loaded.get_action(batch, noise), model.get_action(batch, noise))


@needs_manifest
def test_checkpoint_with_manifest_names_loads_exactly(tmp_path) -> None:
    """A file whose names are copied from upstream's manifest (the tiny model's subset of layers, plus the tied
    lm_head), written without our save path, in upstream's sharded layout and config.json."""
    manifest = _manifest()
    torch.manual_seed(0)
    cfg = _tiny_config()
    model = Gr00tModel(cfg)
    ours = upstream_names(model)
    assert set(ours) <= set(manifest)  # every name the tiny model has is one of upstream's
    names = [n for n in manifest if n in ours]
    state = {n: torch.randn(ours[n].shape) for n in names}
    state[TIED_LM_HEAD] = state["backbone.eagle_model.language_model.model.embed_tokens.weight"].clone()
    keys = list(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for file, shard_keys in shards.items():
        save_file({k: state[k].contiguous() for k in shard_keys}, str(tmp_path / file))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: f for f, ks in shards.items() for k in ks}}))
    (tmp_path / "config.json").write_text(json.dumps(_upstream_config_json(cfg)))
    loaded, _, report = load_checkpoint(tmp_path)
    assert report == {"missing": [], "unexpected": [], "shape_mismatch": []}
    assert not loaded.action_head.mask_vl_padding  # upstream's config: the DiT attends to VL padding
    assert torch.equal(upstream_names(loaded)[SIGLIP + "encoder.layers.1.mlp.fc2.weight"],
                       state[SIGLIP + "encoder.layers.1.mlp.fc2.weight"])
    assert torch.equal(loaded.backbone.eagle_model.mlp1[0].weight, state["backbone.eagle_model.mlp1.0.weight"])
    assert loaded.get_action(_batch(loaded)).shape == (2, 16, 32)


def test_transformers5_spelling_and_pre_shuffle_configs_still_load(tmp_path) -> None:
    """Checkpoints written here before the name mapping (SigLIP without the inner `vision_model.`, config.json
    without `use_pixel_shuffle`, when every eagle build pixel-shuffled) load unchanged."""
    torch.manual_seed(0)
    model = Gr00tModel(_tiny_config(use_pixel_shuffle=True)).eval()
    assert model.config.backbone.image_tokens_per_frame == 4
    assert tuple(model.backbone.eagle_model.mlp1[0].weight.shape) == (64, 128)
    state = {k.replace(SIGLIP, "backbone.eagle_model.vision_model."): v.contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / WEIGHTS_FILE))
    data = model.config.to_dict()
    del data["backbone"]["use_pixel_shuffle"], data["action_head"]["mask_vl_padding"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded, _, report = load_checkpoint(tmp_path)
    assert not any(report.values())
    batch, noise = _batch(model), torch.randn(2, 16, 32)
    assert torch.equal(loaded.get_action(batch, noise), model.get_action(batch, noise))


def test_dit_ignores_vl_padding_unless_asked() -> None:
    """Upstream's DiT attends to padded VL tokens; masking is the config's `mask_vl_padding` (unset: only for the
    compact backbone, as its shipped checkpoints were trained)."""
    torch.manual_seed(0)
    head_cfg = _tiny_config().action_head
    features, state = torch.randn(2, 10, 64), torch.randn(2, 1, 64)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    ids, noise = torch.tensor([31, 31]), torch.randn(2, 16, 32)

    head = FlowMatchingActionHead(head_cfg).eval()
    assert not head.mask_vl_padding
    plain = head.get_action(features, None, state, ids, noise)
    assert torch.equal(head.get_action(features, mask, state, ids, noise), plain)
    head.mask_vl_padding = True
    masked = head.get_action(features, mask, state, ids, noise)
    assert torch.allclose(masked[0], plain[0], atol=1e-5)  # the unpadded item does not
    assert (masked[1] - plain[1]).abs().max() > 1e-4  # the padded item changes, ...
    assert Gr00tModel(compact_config()).action_head.mask_vl_padding
    assert not Gr00tModel(_tiny_config()).action_head.mask_vl_padding
    explicit = _tiny_config()
    explicit.action_head.mask_vl_padding = True
    assert Gr00tModel(explicit).action_head.mask_vl_padding
