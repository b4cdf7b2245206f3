"""ONNX export (upstream's split) + onnxruntime runner: parity with PyTorch, manifest, CLI errors."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from sage_gr00t.cli import export_onnx as cli
from sage_gr00t.policy.gr00t.checkpoint import load_checkpoint
from sage_gr00t.policy.gr00t.config import n15_config
from sage_gr00t.policy.gr00t.model import Gr00tModel
from sage_gr00t.policy.gr00t.onnx_export import (
    EAGLE_GRAPHS,
    GRAPHS,
    MANIFEST,
    OnnxExportError,
    OnnxGr00tRunner,
    example_inputs,
    export_onnx,
    parity,
    synthetic_eagle_ids,
)

COMPACT = Path(__file__).resolve().parents[1] / "assets" / "policies" / "gr00t_compact"
TOL = 1e-4


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    model, _, _ = load_checkpoint(COMPACT)
    out = tmp_path_factory.mktemp("onnx_compact")
    manifest = export_onnx(model, out)
    return model, out, manifest


def test_compact_manifest_lists_every_graph(compact) -> None:
    _, out, manifest = compact
    assert list(manifest["graphs"]) == list(GRAPHS)
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert manifest["opset"] == 18 and manifest["mask_vl_padding"] is True
    for name, graph in manifest["graphs"].items():
        assert (out / graph["file"]).is_file(), name
        assert graph["dynamic_axes"][graph["inputs"][0]["name"]]["0"] == "batch"
    dit = manifest["graphs"]["dit"]
    assert [i["name"] for i in dit["inputs"]] == ["state_features", "action_features", "vl_embs", "timestep", "vl_mask"]
    assert dit["dynamic_axes"]["vl_embs"] == {"0": "batch", "1": "vl_seq"}
    assert manifest["graphs"]["dit_vl_cache"]["outputs"] == ["k_0", "v_0", "k_2", "v_2", "k_4", "v_4", "vl_bias"]
    assert manifest["graphs"]["dit_step"]["dynamic_axes"]["k_0"] == {"0": "batch", "3": "vl_seq"}
    assert manifest["graphs"]["vl_backbone"]["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "text_len"}


@pytest.mark.parametrize(("batch", "texts"), [(1, ["pick up the apple"]),
                                              (3, ["sort the blocks", "pour", "put the red block in the bin"])])
@pytest.mark.parametrize("cache", [True, False])
def test_compact_whole_policy_parity(compact, batch: int, texts: list[str], cache: bool) -> None:
    """Backbone + 4 Euler steps on onnxruntime == Gr00tModel.get_action (same noise), dynamic batch / text length
    (padded text in the batch of 3: the masked VL tokens), through dit_step (VL cache) or dit."""
    model, out, _ = compact
    runner = OnnxGr00tRunner(out, use_vl_cache=cache)
    b = example_inputs(model, batch=batch, seed=batch)
    b["input_ids"], b["attention_mask"] = model.backbone.tokenizer(texts, pad_to_longest=True)
    b["embodiment_id"] = torch.tensor([0, 1, 2][:batch])
    noise = b.pop("noise")
    ref = model.get_action(b, noise).numpy()
    got = runner.get_action(**{k: v.numpy() for k, v in b.items()}, noise=noise.numpy())
    assert got.shape == (batch, 16, 32)
    assert np.abs(ref - got).max() <= TOL
    assert parity(model, out, use_vl_cache=cache) <= TOL


def test_compact_head_on_given_features_parity(compact) -> None:
    model, out, _ = compact
    runner = OnnxGr00tRunner(out)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 70, 128, generator=g)
    mask = torch.ones(2, 70, dtype=torch.long)
    mask[1, 50:] = 0
    state, noise = torch.rand(2, 1, 64, generator=g), torch.randn(2, 16, 32, generator=g)
    emb = torch.tensor([0, 5])
    ref = model.action_head.get_action(feats, mask, state, emb, noise).numpy()
    got = runner.get_action_from_features(feats.numpy(), mask.numpy(), state.numpy(), emb.numpy(), noise.numpy())
    assert np.abs(ref - got).max() <= TOL
    uncached = OnnxGr00tRunner(out, use_vl_cache=False)
    got = uncached.get_action_from_features(feats.numpy(), mask.numpy(), state.numpy(), emb.numpy(), noise.numpy())
    assert np.abs(ref - got).max() <= TOL
    with pytest.raises(ValueError, match="noise must have shape"):
        runner.get_action_from_features(feats.numpy(), mask.numpy(), state.numpy(), emb.numpy(), noise.numpy()[:, :8])


def _n15_reduced() -> Gr00tModel:
    """N1.5 widths (VL 2048, DiT 32 x 48 = 1536, hidden 1024), 2 DiT layers (cross + self), 1 VL self-attention
    layer, 2 embodiments (the per-embodiment weights dominate N1.5's size); unmasked VL padding as upstream."""
    cfg = n15_config()
    head = cfg.action_head
    head = dataclasses.replace(
        head, max_num_embodiments=2,
        diffusion_model_cfg=dataclasses.replace(head.diffusion_model_cfg, num_layers=2),
        vl_self_attention_cfg=dataclasses.replace(head.vl_self_attention_cfg, num_layers=1))
    torch.manual_seed(0)
    model = Gr00tModel.__new__(Gr00tModel)
    torch.nn.Module.__init__(model)
    model.config = dataclasses.replace(cfg, action_head=head)
    from sage_gr00t.policy.gr00t.action_head import FlowMatchingActionHead

    model.action_head = FlowMatchingActionHead(head, mask_vl_padding=False)
    return model.eval()


def test_n15_width_action_head_parity(tmp_path) -> None:
    """The action-head graphs at N1.5 width (random VL features of width 2048, padded), no backbone graph."""
    model = _n15_reduced()
    assert model.config.action_head.backbone_embedding_dim == 2048
    manifest = export_onnx(model, tmp_path)
    assert "vl_backbone" not in manifest["graphs"] and manifest["mask_vl_padding"] is False
    assert [i["name"] for i in manifest["graphs"]["dit"]["inputs"]] == [
        "state_features", "action_features", "vl_embs", "timestep"]
    runner = OnnxGr00tRunner(tmp_path)
    with pytest.raises(OnnxExportError, match="no vl_backbone graph"):
        runner.encode(np.zeros((1, 3, 224, 224), np.float32), np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
    assert [i["name"] for i in manifest["graphs"]["dit_step"]["inputs"]] == [
        "state_features", "action_features", "timestep", "k_0", "v_0"]
    for cache in (True, False):
        assert parity(model, tmp_path, batch=2, vl_seq=24, use_vl_cache=cache) <= TOL


def test_eagle_vit_and_llm_graphs_whole_policy_parity(tmp_path) -> None:
    """A tiny Eagle backbone (SigLIP 2 layers, Qwen3 2 layers) exported as eagle_vit + eagle_llm beside the head:
    the whole chunk on onnxruntime (left-padded batch of 2, dynamic batch and VL length) == PyTorch."""
    from test_gr00t_speed import _tiny_eagle

    model = _tiny_eagle()
    manifest = export_onnx(model, tmp_path)
    assert [g for g in manifest["graphs"] if g.startswith("eagle")] == list(EAGLE_GRAPHS)
    assert manifest["graphs"]["eagle_llm"]["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "vl_seq"}
    for cache in (True, False):
        assert parity(model, tmp_path, use_vl_cache=cache) <= TOL
    runner = OnnxGr00tRunner(tmp_path)
    b = example_inputs(model, batch=3, seed=4)
    b["input_ids"], b["attention_mask"] = synthetic_eagle_ids(16, 3, 40, pad_first=3)
    noise = b.pop("noise")
    ref = model.get_action(b, noise).numpy()
    got = runner.get_action(**{k: v.numpy() for k, v in b.items()}, noise=noise.numpy())
    assert np.abs(ref - got).max() <= TOL


def test_n15_width_vit_graph_parity(tmp_path) -> None:
    """The ViT graph at N1.5's SigLIP width (1152, 16 heads, 224 px: 256 tokens, no pixel shuffle) with one layer,
    and its projector to a narrow LLM."""
    from sage_gr00t.policy.gr00t.backbone import EagleBackbone

    cfg = dataclasses.replace(n15_config().backbone, vision_layers=1, llm_hidden_size=64, select_layer=1,
                              llm_heads=4, llm_kv_heads=2, llm_intermediate_size=128)
    torch.manual_seed(0)
    model = Gr00tModel.__new__(Gr00tModel)
    torch.nn.Module.__init__(model)
    model.config = dataclasses.replace(n15_config(), backbone=cfg)
    model.backbone = EagleBackbone(cfg).eval()
    model.action_head = _n15_reduced().action_head
    export_onnx(model, tmp_path, graphs=("eagle_vit",))
    import onnxruntime as ort

    pixels = torch.rand(2, 3, 224, 224) * 2 - 1
    ref = model.backbone.eagle_model.extract_feature(pixels).detach().numpy()
    (got,) = ort.InferenceSession(str(tmp_path / "eagle_vit.onnx")).run(None, {"pixel_values": pixels.numpy()})
    assert got.shape == (2, 256, 64) and np.abs(ref - got).max() <= TOL


def test_runner_refuses_a_missing_or_corrupt_export(tmp_path) -> None:
    with pytest.raises(OnnxExportError, match="Run sage-export-onnx"):
        OnnxGr00tRunner(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(OnnxExportError, match="missing or corrupt"):
        OnnxGr00tRunner(tmp_path)


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    assert cli.main(["--policy", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sage-export-onnx: error:") and "does not exist" in err and "\n" not in err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("config.json", "model.safetensors"):
        (corrupt / name).write_bytes((COMPACT / name).read_bytes()[:300])
    assert cli.main(["--policy", str(corrupt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sage-export-onnx: error:") and "\n" not in err


def test_cli_unwritable_out(tmp_path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder cannot be made under a file, whoever runs the test
    assert cli.main(["--policy", str(COMPACT), "--out", str(blocker / "x"), "--no-check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sage-export-onnx: error: Cannot write to") and "\n" not in err
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert cli.main(["--policy", str(COMPACT), "--out", str(locked / "x"), "--no-check"]) == 2
        finally:
            locked.chmod(0o700)
        assert "Cannot write to" in capsys.readouterr().err


def test_cli_exports_checks_and_benches(tmp_path, capsys) -> None:
    assert cli.main(["--policy", str(COMPACT), "--out", str(tmp_path / "o"), "--bench", "--calls", "3"]) == 0
    out = capsys.readouterr().out
    assert "parity vs PyTorch" in out and "onnxruntime" in out and "pytorch" in out
    assert (tmp_path / "o" / MANIFEST).is_file()


def test_external_data_keeps_one_weight_file_per_graph(tmp_path, monkeypatch) -> None:
    """Graphs over the protobuf limit (N1.5's DiT) keep weights in `<graph>.onnx.data`; forced here for all."""
    from sage_gr00t.policy.gr00t import onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    model, _, _ = load_checkpoint(COMPACT)
    manifest = export_onnx(model, tmp_path, graphs=("vl_self_attention", "state_encoder", "action_encoder",
                                                    "dit_vl_cache", "dit_step", "action_decoder"))
    names = {p.name for p in tmp_path.iterdir()}
    expected = {MANIFEST} | {f"{g}.onnx" for g in manifest["graphs"]} | {f"{g}.onnx.data" for g in manifest["graphs"]}
    assert names == expected
    assert manifest["graphs"]["dit_step"]["files"] == ["dit_step.onnx", "dit_step.onnx.data"]
    assert parity(model, tmp_path) <= TOL
