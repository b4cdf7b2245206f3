"""`sage-bench finetune-memory` on CPU with the tiny Eagle preset: what trains in each mode, gradient
checkpointing's parity (same loss and gradients) and its smaller saved activations, LoRA, and the rows."""

from __future__ import annotations

import json

import pytest
import torch

from sage_gr00t.cli.bench import finetune_memory as fm
from sage_gr00t.cli.bench.finetune_memory import RowSpec, prepare_model, train_step, training_batch
from sage_gr00t.policy.gr00t import layers
from sage_gr00t.policy.gr00t import model as model_module
from sage_gr00t.policy.gr00t.lora import LoRALinear, apply_lora, merge_lora

TINY = "tiny-eagle"


def _tiny(spec: RowSpec, seed: int = 0):
    return prepare_model(fm.preset_config(TINY), spec, "cpu", seed=seed)


def _batch(model, batch: int = 2, dtype=torch.float32) -> dict:
    return training_batch(model, batch, None, "cpu", dtype)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _saved_bytes(model, batch: dict, part: str = "loss") -> int:
    """Bytes autograd keeps for the backward pass of one training forward (the activations' memory): of the
    whole loss, or (`part="vlm"`) of the backbone's forward alone."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    torch.manual_seed(5)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch) if part == "loss" else model.encode(batch)
    return total


# ------------------------------------------------------------------------------------------- what trains
def test_action_head_mode_freezes_the_vlm_and_trains_the_head() -> None:
    model, params = _tiny(RowSpec("action_head", "fp32"))
    backbone, head = model.backbone, model.action_head
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(p.requires_grad for p in head.parameters())
    assert sum(p.numel() for p in params) == sum(p.numel() for p in head.parameters())
    assert not backbone.training and head.training  # frozen parts in eval mode, as upstream
    batch = _batch(model)
    features, _ = model.encode(batch)
    assert not features.requires_grad  # the frozen VLM records no graph: no activations kept for it
    before_vlm, before_head = _snapshot(backbone), _snapshot(head)
    optimizer = fm.make_optimizer(params, 1e-3, "cpu")
    loss = train_step(model, optimizer, batch, params, autocast=False)
    assert loss == loss and loss > 0
    for name, p in backbone.named_parameters():
        assert p.grad is None and torch.equal(p, before_vlm[name]), name
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        if p.grad.abs().sum() > 0:
            assert not torch.equal(p, before_head[name]), name
    assert not torch.equal(head.model.transformer_blocks[0].attn1.to_q.weight,
                           before_head["model.transformer_blocks.0.attn1.to_q.weight"])


def test_full_mode_trains_the_vlm_too() -> None:
    model, params = _tiny(RowSpec("full", "fp32"))
    assert len(params) == len(list(model.parameters())) and model.backbone.training
    before = _snapshot(model.backbone)
    train_step(model, fm.make_optimizer(params, 1e-3, "cpu"), _batch(model), params, autocast=False)
    q = "eagle_model.language_model.model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(model.backbone.named_parameters())[q], before[q])


def test_bf16_storage_frozen_in_bf16_trainable_in_fp32_and_pure() -> None:
    model, params = _tiny(RowSpec("action_head", "bf16"))
    assert {p.dtype for p in model.backbone.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in params} == {torch.float32}  # master weights for autocast
    loss = train_step(model, fm.make_optimizer(params, 1e-3, "cpu"), _batch(model), params, autocast=True)
    assert loss == loss
    pure, params = _tiny(RowSpec("action_head", "bf16-pure"))
    assert {p.dtype for p in pure.parameters()} == {torch.bfloat16}
    loss = train_step(pure, fm.make_optimizer(params, 1e-3, "cpu"), _batch(pure, dtype=torch.bfloat16), params,
                      autocast=False)
    assert loss == loss


def test_projection_after_a_frozen_backbone_stays_trainable() -> None:
    """compact_v2 has a projection (`eagle_linear`) after its backbone: upstream leaves it trainable."""
    model, _ = prepare_model(fm.preset_config("compact_v2"), RowSpec("action_head", "fp32"), "cpu")
    assert all(p.requires_grad for p in model.backbone.eagle_linear.parameters())
    assert not any(p.requires_grad for p in model.backbone.vision.parameters())


# ------------------------------------------------------------------------------------ gradient checkpointing
def _loss_and_grads(checkpointed: bool) -> tuple[float, dict[str, torch.Tensor], int]:
    model, _ = _tiny(RowSpec("full", "fp32", gradient_checkpointing=checkpointed))
    batch = _batch(model)
    torch.manual_seed(7)  # flow time, noise and dropout masks: the same draws in both runs
    loss = model(batch)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads, _saved_bytes(model, batch)


def test_gradient_checkpointing_same_loss_and_gradients(monkeypatch) -> None:
    """DiT, VL self-attention and the Eagle towers' layers (transformers' own switch) checkpointed, in training
    mode with dropout on: the same loss and gradients as without, and fewer bytes kept for backward."""
    calls = [0]
    real = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls[0] += 1
        assert kwargs.get("use_reentrant") is False
        return real(*args, **kwargs)

    monkeypatch.setattr(layers, "checkpoint", counting)
    monkeypatch.setattr(model_module, "checkpoint", counting)
    loss_off, grads_off, saved_off = _loss_and_grads(False)
    assert calls[0] == 0
    loss_on, grads_on, saved_on = _loss_and_grads(True)
    cfg = fm.preset_config(TINY)
    blocks = (cfg.action_head.diffusion_model_cfg.num_layers + cfg.action_head.vl_self_attention_cfg.num_layers
              + cfg.backbone.vision_layers + cfg.backbone.select_layer)
    assert calls[0] == 2 * blocks  # every block, in the backward-recorded forward and the saved-bytes one
    assert abs(loss_on - loss_off) <= 1e-6
    assert grads_on.keys() == grads_off.keys() and len(grads_on) > 50
    worst = max(float((grads_on[k] - grads_off[k]).abs().max()) for k in grads_on)
    assert worst <= 1e-6, worst
    assert saved_on < 0.5 * saved_off, (saved_on, saved_off)


def test_frozen_vlm_keeps_no_activations() -> None:
    full, _ = _tiny(RowSpec("full", "fp32"))
    frozen, _ = _tiny(RowSpec("action_head", "fp32"))
    assert _saved_bytes(frozen, _batch(frozen), "vlm") == 0 < _saved_bytes(full, _batch(full), "vlm")


def test_checkpointing_off_by_default_and_inference_untouched() -> None:
    model = model_module.Gr00tModel(fm.preset_config(TINY))
    assert not model.action_head.model.gradient_checkpointing
    model.set_gradient_checkpointing(True)
    model.eval()
    batch = _batch(model)
    with torch.no_grad():  # no autograd: the blocks run directly
        features, _ = model.encode(batch)
    assert model.get_action(batch).shape == (2, 16, 32) and not features.requires_grad


# ---------------------------------------------------------------------------------------------------- LoRA
def test_lora_adapters_train_alone_and_merge_back() -> None:
    model, params = _tiny(RowSpec("action_head", "fp32", lora_rank=4))
    head = model.action_head
    adapted = [m for m in head.modules() if isinstance(m, LoRALinear)]
    assert len(adapted) == sum(isinstance(m, torch.nn.Linear) for m in head.modules())  # every head Linear
    assert not any(isinstance(m, LoRALinear) for m in model.backbone.modules())  # none of the VLM's
    assert {id(p) for p in params} == {id(p) for m in adapted for p in (m.lora_A, m.lora_B)}
    batch = _batch(model)
    base = _snapshot(head)
    train_step(model, fm.make_optimizer(params, 1e-2, "cpu"), batch, params, autocast=False)
    for name, p in head.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base[name]), name
    assert any(not torch.equal(m.lora_B, torch.zeros_like(m.lora_B)) for m in adapted)
    model.eval()
    with torch.no_grad():
        features, mask = model.encode(batch)
        noise = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(0))
        before = head.get_action(features, mask, batch["state"], batch["embodiment_id"], noise)
        assert merge_lora(head) == len(adapted)
        after = head.get_action(features, mask, batch["state"], batch["embodiment_id"], noise)
    assert not any(isinstance(m, LoRALinear) for m in head.modules())
    assert (before - after).abs().max() <= 1e-4


def test_lora_starts_as_the_base_layer() -> None:
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x = torch.randn(4, 8)
    ref = seq(x)
    assert apply_lora(seq, rank=2) == 2
    assert torch.equal(seq(x), ref) and not seq[0].weight.requires_grad and seq[0].lora_A.requires_grad
    assert set(seq.state_dict()) == {"0.weight", "0.bias", "0.lora_A", "0.lora_B", "2.weight", "2.bias",
                                     "2.lora_A", "2.lora_B"}
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoRALinear(torch.nn.Linear(2, 2), 0)


# ----------------------------------------------------------------------------------------------- the rows
def test_sweep_rows_and_json(tmp_path, capsys) -> None:
    """Every configuration of the sweep runs (a training step each) and prints its row; the JSON holds them."""
    out = tmp_path / "rows.json"
    rc = fm.main(["--preset", TINY, "--device", "cpu", "--batch-size", "1", "--steps", "1", "--warmup", "0",
                  "--sweep", "--lora-rank", "4", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    specs = fm.sweep_rows(4)
    for spec in specs:
        assert spec.label in text
    assert "Peak memory is not measured on CPU" in text
    data = json.loads(out.read_text())
    assert [r["config"] for r in data["rows"]] == [s.label for s in specs]
    for row in data["rows"]:
        assert row["status"] == "ok" and row["step_ms_median"] > 0 and row["loss"] == row["loss"], row
        assert row["peak_allocated_gib"] is None and row["note"] == "peak memory not measured on CPU"
    frozen = {r["config"]: r["trainable_params"] for r in data["rows"]}
    assert frozen["action_head, bf16, LoRA r4"] < frozen["action_head, bf16"] < frozen["full, bf16"]
    assert data["meta"]["vl_length"] == 16 + 34 and data["meta"]["image_tokens"] == 16
    assert data["command"] == (f"sage-bench finetune-memory --preset {TINY} --device cpu --batch-size 1 --steps 1 "
                               "--warmup 0 --lora-rank 4 --sweep")


def test_oom_and_failures_are_rows_not_crashes(monkeypatch, capsys) -> None:
    real = fm._train_and_measure

    def flaky(cfg, spec, config, row):
        if spec.dtype == "fp32":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if spec.gradient_checkpointing:
            raise RuntimeError("something else broke")
        return real(cfg, spec, config, row)

    monkeypatch.setattr(fm, "_train_and_measure", flaky)
    monkeypatch.setattr(fm, "sweep_rows", lambda rank: [RowSpec("full", "fp32"), RowSpec("action_head", "bf16", True),
                                                         RowSpec("action_head", "bf16")])
    rc = fm.main(["--preset", TINY, "--device", "cpu", "--batch-size", "1", "--steps", "1", "--warmup", "0",
                  "--sweep"])
    text = capsys.readouterr().out
    assert rc == 1  # a failed row (not an OOM) makes the exit status non-zero
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    assert "OOM" in lines["full, fp32"] and "CUDA out of memory" in lines["full, fp32"]
    assert "failed" not in lines["full, fp32"]
    assert "RuntimeError: something else broke" in lines["action_head, bf16, grad ckpt"]
    assert "peak memory not measured on CPU" in lines["action_head, bf16"]


def test_bad_flags_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit):
        fm.main(["--tune", "full", "--lora-rank", "8"])
    assert "use it with --tune action_head" in capsys.readouterr().err
    assert fm.main(["--preset", "nope", "--device", "cpu"]) == 2
    assert "Unknown preset 'nope'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the missing-CUDA line cannot be shown")
def test_cuda_requested_without_cuda_is_one_line(capsys) -> None:
    assert fm.main(["--preset", TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sage-bench finetune-memory: error: CUDA is not available") and "\n" not in err
