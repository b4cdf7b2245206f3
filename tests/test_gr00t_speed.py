"""The optimized inference path (`OptimizedGr00t`, `FlowMatchingActionHead.denoise`): parity with the eager path,
one graph without breaks under `torch.compile(fullgraph=True)`, and N1.5's real image-token count in the ids."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from sage_gr00t.policy.gr00t.action_head import FlowMatchingActionHead
from sage_gr00t.policy.gr00t.backbone import IMAGE_TOKEN_INDEX, EagleBackbone
from sage_gr00t.policy.gr00t.checkpoint import load_checkpoint
from sage_gr00t.policy.gr00t.config import BackboneConfig, compact_config, n15_config
from sage_gr00t.policy.gr00t.model import CHUNK_INPUTS, Gr00tModel, OptimizedGr00t, OptimizeOptions
from sage_gr00t.policy.gr00t.processor import (
    EAGLE_PROMPT,
    Gr00tProcessor,
    ObservationError,
    eagle_input_ids,
)

COMPACT = Path(__file__).resolve().parents[1] / "assets" / "policies" / "gr00t_compact"
TOL = 1e-4
EAGER = OptimizeOptions(compile=False)


class FakeEagleTokenizer:
    """Stands in for Eagle 2.5's Qwen3 tokenizer (not shipped): special tokens map to their real ids, every other
    character to one id below them."""

    SPECIAL: ClassVar[dict[str, int]] = {"<IMG_CONTEXT>": IMAGE_TOKEN_INDEX, "<img>": 151665, "</img>": 151666,
                                         "<|im_start|>": 151644,
                                         "<|im_end|>": 151645}
    pad_token_id = 151643

    def __init__(self, image_id: int = IMAGE_TOKEN_INDEX) -> None:
        self.special = {**self.SPECIAL, "<IMG_CONTEXT>": image_id}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        pattern = "(" + "|".join(re.escape(s) for s in self.special) + ")"
        ids: list[int] = []
        for piece in re.split(pattern, text):
            ids += [self.special[piece]] if piece in self.special else [10 + ord(c) % 1000 for c in piece]
        return {"input_ids": ids}


def _tiny_eagle(**head) -> Gr00tModel:
    """Eagle-kind backbone at tiny widths (56 px: 16 image tokens) over the compact action head."""
    cfg = compact_config()
    cfg.preset = "tiny_eagle"
    cfg.backbone = BackboneConfig(kind="eagle", image_size=56, vision_hidden_size=32, vision_layers=2, vision_heads=2,
                                  vision_intermediate_size=64, patch_size=14, llm_hidden_size=64, select_layer=2,
                                  llm_heads=4, llm_kv_heads=2, llm_intermediate_size=128, vocab_size=151700)
    cfg.action_head = dataclasses.replace(cfg.action_head, **{"backbone_embedding_dim": 64, "mask_vl_padding": False,
                                                              **head})
    cfg.action_head.diffusion_model_cfg.cross_attention_dim = 64
    cfg.action_head.vl_self_attention_cfg.num_attention_heads = 2
    torch.manual_seed(0)
    return Gr00tModel(cfg).eval()


def _eagle_batch(model: Gr00tModel, texts: list[str], vl_length: int | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size, batch = model.config.backbone.image_size, len(texts)
    processor = Gr00tProcessor(model.config, {}, vl_length=vl_length)
    model.backbone._tokenizer = FakeEagleTokenizer()
    ids, mask = processor.tokenize(texts, model)
    return {"pixel_values": torch.rand(batch, 3, size, size, generator=g) * 2 - 1, "input_ids": ids,
            "attention_mask": mask, "state": torch.rand(batch, 1, 64, generator=g) * 2 - 1,
            "embodiment_id": torch.arange(batch) % 4}


def _noise(model: Gr00tModel, batch: int, seed: int = 2) -> torch.Tensor:
    head = model.config.action_head
    return torch.randn(batch, head.action_horizon, head.action_dim, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("masked", [False, True])
def test_optimized_tiny_eagle_matches_eager(masked: bool) -> None:
    """Whole chunk (Eagle backbone + 4 Euler steps) on a padded batch, DiT masking VL padding or not."""
    model = _tiny_eagle(mask_vl_padding=masked)
    batch = _eagle_batch(model, ["pick up the apple", "sort the red blocks into the bin"])
    assert batch["attention_mask"][0, 0] == 0  # left padding is really there
    noise = _noise(model, 2)
    ref = model.get_action(batch, noise)
    got = OptimizedGr00t(model, EAGER).get_action(batch, noise)
    assert got.shape == (2, 16, 32) and (ref - got).abs().max() <= TOL
    assert (ref[0] - ref[1]).abs().max() > 1e-3  # the check compares something that varies


def test_optimized_compact_checkpoint_matches_eager() -> None:
    """The shipped compact policy (masked VL padding, byte tokenizer) through the optimized path."""
    model, _, _ = load_checkpoint(COMPACT)
    ids, mask = model.backbone.tokenizer(["pick up the apple", "pour"], pad_to_longest=True)
    g = torch.Generator().manual_seed(0)
    batch = {"pixel_values": torch.rand(2, 3, 128, 128, generator=g) * 2 - 1, "input_ids": ids,
             "attention_mask": mask, "state": torch.rand(2, 1, 64, generator=g) * 2 - 1,
             "embodiment_id": torch.tensor([0, 1])}
    noise = _noise(model, 2)
    assert (model.get_action(batch, noise) - OptimizedGr00t(model, EAGER).get_action(batch, noise)).abs().max() <= TOL


def test_n15_width_denoise_matches_get_action() -> None:
    """N1.5 widths (VL 2048, DiT 32 x 48, hidden 1024), 2 DiT blocks (cross + self), padded VL features: the
    precomputed AdaLN schedule and the cached DiT step give get_action's chunk."""
    cfg = n15_config().action_head
    cfg = dataclasses.replace(cfg, max_num_embodiments=2,
                              diffusion_model_cfg=dataclasses.replace(cfg.diffusion_model_cfg, num_layers=2),
                              vl_self_attention_cfg=dataclasses.replace(cfg.vl_self_attention_cfg, num_layers=1))
    torch.manual_seed(0)
    head = FlowMatchingActionHead(cfg).eval()
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 40, 2048, generator=g)
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, :12] = 0
    state, emb = torch.rand(2, 1, 64, generator=g), torch.tensor([0, 1])
    noise = torch.randn(2, 16, 32, generator=g)
    schedule = head.denoise_schedule()
    assert schedule.buckets == [0, 250, 500, 750] and len(schedule.block_modulations[0]) == 2
    with torch.inference_mode():
        got = head.denoise(features, mask, state, emb, noise, schedule)
    ref = head.get_action(features, mask, state, emb, noise)
    assert (ref - got).abs().max() <= TOL


# -------------------------------------------------------------------------------------------------- compile
def test_whole_chunk_compiles_as_one_graph() -> None:
    """`torch.compile(fullgraph=True)` of the whole chunk (backbone with its image-token scatter, VL
    self-attention, 4 unrolled Euler steps): dynamo traces one graph with no break (the eager backbone broke on
    `.item()`). Traced with the `eager` backend (no code generation: seconds, not minutes, on a CPU)."""
    model = _tiny_eagle()
    batch = _eagle_batch(model, ["pick up the apple", "pour the water"], vl_length=64)
    noise = _noise(model, 2)
    fast = OptimizedGr00t(model, EAGER)
    args = [batch[k] for k in CHUNK_INPUTS] + [noise]
    with torch.inference_mode():
        explanation = torch._dynamo.explain(fast._chunk)(*args)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons
    torch._dynamo.reset()
    compiled = OptimizedGr00t(model, OptimizeOptions(backend="eager"))
    assert (compiled.get_action(batch, noise) - model.get_action(batch, noise)).abs().max() <= TOL
    torch._dynamo.reset()


def test_image_feature_insertion_matches_masked_scatter() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX, 7], [IMAGE_TOKEN_INDEX, 3, 4, IMAGE_TOKEN_INDEX]])
    embeds, vit = torch.randn(2, 4, 8, generator=g), torch.randn(2, 2, 8, generator=g)
    ref = embeds.masked_scatter((ids == IMAGE_TOKEN_INDEX).unsqueeze(-1), vit.reshape(-1, 8))
    assert torch.equal(EagleBackbone.insert_image_features(embeds, ids, vit), ref)
    with pytest.raises(ValueError, match="hold 3 image tokens but the images give 4"):
        EagleBackbone.insert_image_features(embeds, ids[:, :3].contiguous(), vit)


# ------------------------------------------------------------------------------------------- image tokens
def test_n15_prompt_holds_256_image_tokens_per_frame() -> None:
    """N1.5 (`use_pixel_shuffle: false`): 16 x 16 SigLIP patches of a 224 px frame = 256 <IMG_CONTEXT> ids."""
    cfg = n15_config()
    assert cfg.backbone.image_tokens_per_frame == 256
    with torch.device("meta"):
        model = Gr00tModel(cfg)
    model.backbone._tokenizer = FakeEagleTokenizer()
    ids, mask = Gr00tProcessor(cfg, {}).tokenize(["pick up the apple", "pour"], model)
    assert ((ids == IMAGE_TOKEN_INDEX).sum(1) == 256).all()
    assert mask[1, 0] == 0 and mask[0].all() and mask[:, -1].all()  # left-padded to the longest prompt
    row = ids[0].tolist()
    start = row.index(151665)
    assert row[start + 1:start + 257] == [IMAGE_TOKEN_INDEX] * 256 and row[start + 257] == 151666
    shuffled = dataclasses.replace(cfg.backbone, use_pixel_shuffle=True)
    assert shuffled.image_tokens_per_frame == 64


def test_fixed_vl_length_and_tokenizer_errors() -> None:
    tok = FakeEagleTokenizer()
    ids, mask = eagle_input_ids(tok, ["pour"], image_tokens=16, vl_length=80)
    text_only = len(tok(EAGLE_PROMPT.format(text="pour").replace("<image-1>", ""))["input_ids"])
    assert ids.shape == (1, 80) and int(mask.sum()) == text_only + 16 + 2  # + <img> ... </img>
    assert (ids[0, : 80 - int(mask.sum())] == tok.pad_token_id).all()
    with pytest.raises(ObservationError, match="more than the fixed VL length 20"):
        eagle_input_ids(tok, ["pour"], image_tokens=16, vl_length=20)
    with pytest.raises(ValueError, match=r"use Eagle 2\.5.s tokenizer"):
        eagle_input_ids(FakeEagleTokenizer(image_id=5), ["pour"], image_tokens=16)


def test_eager_eagle_runs_on_processor_ids() -> None:
    """The processor's ids feed the eager backbone (the count check passes: 16 tokens at 56 px)."""
    model = _tiny_eagle()
    batch = _eagle_batch(model, ["pick"])
    assert int((batch["input_ids"] == IMAGE_TOKEN_INDEX).sum()) == model.config.backbone.image_tokens_per_frame == 16
    assert model.get_action(batch, _noise(model, 1)).shape == (1, 16, 32)
