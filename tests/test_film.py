"""Language FiLM in the compact backbone (preset compact_v3): a compact_v2 checkpoint loads into it and acts the
same until trained, training reaches the FiLM layers, and once trained the instruction changes the image features."""

from __future__ import annotations

import torch

from sage_gr00t.policy.gr00t.checkpoint import check_state_dict, load_checkpoint, save_checkpoint
from sage_gr00t.policy.gr00t.config import PRESETS
from sage_gr00t.policy.gr00t.model import Gr00tModel


def _film_model_from_v2(tmp_path) -> tuple[Gr00tModel, Gr00tModel]:
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "v2", Gr00tModel(PRESETS["compact_v2"]()), {}, dtype=torch.float16)  # as shipped
    base, _, _ = load_checkpoint(tmp_path / "v2")
    film = Gr00tModel(PRESETS["compact_v3"]())
    state = {k: v.float() for k, v in base.state_dict().items()}
    report = check_state_dict(film, state)
    assert not report["unexpected"] and not report["shape_mismatch"]
    assert report["missing"] and all(k.startswith("backbone.vision_film.") for k in report["missing"])
    film.load_state_dict(state, strict=False)
    return base.float().eval(), film.eval()


def _inputs(model: Gr00tModel, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    pixels = torch.rand(1, 3, 128, 128).repeat(len(texts), 1, 1, 1) * 2 - 1
    ids, mask = model.backbone.tokenizer(texts)
    return pixels, ids, mask


def test_v2_weights_in_the_film_preset_give_the_same_features(tmp_path) -> None:
    base, film = _film_model_from_v2(tmp_path)
    pixels, ids, mask = _inputs(base, ["put the lime on the plate", "put the orange on the plate"])
    with torch.no_grad():
        expected, _ = base.backbone(pixels, ids, mask)
        got, _ = film.backbone(pixels, ids, mask)
    torch.testing.assert_close(got, expected)


def test_training_reaches_film_and_then_the_words_change_the_image_features(tmp_path) -> None:
    _, film = _film_model_from_v2(tmp_path)
    film.train()
    texts = ["put the lime on the plate", "put the orange on the plate"]
    pixels, ids, mask = _inputs(film, texts)
    optimizer = torch.optim.SGD([p for n, p in film.named_parameters() if "vision_film" in n], lr=1.0)
    # Any loss on the image tokens sends gradient into the zero-initialized FiLM layers.
    features, _ = film.backbone(pixels, ids, mask)
    features[:, :64].pow(2).mean().backward()
    grads = [p.grad for n, p in film.named_parameters() if "vision_film" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    optimizer.step()
    film.eval()
    with torch.no_grad():
        image_tokens = film.backbone._encode_image(pixels, film.backbone.text_encoder(
            film.backbone.text_embed(ids) + film.backbone.text_pos[:, : ids.shape[1]],
            src_key_padding_mask=mask == 0), mask)
    # Same image, two instructions: different image features (the FiLM-free encoder gives the same ones).
    assert (image_tokens[0] - image_tokens[1]).abs().max() > 1e-4
    assert torch.equal(film.backbone.vision(pixels)[0], film.backbone.vision(pixels)[1])
