"""Language grounding labels and the auxiliary grounding loss, on real expert episodes and real training steps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from sage_gr00t.data.shards import MixEntry, MixRecipe, collect_job
from sage_gr00t.policy.gr00t.config import compact_config
from sage_gr00t.policy.gr00t.grounding import GroundingHead, grounding_loss
from sage_gr00t.policy.gr00t.model import Gr00tModel
from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData, TrainConfig, losses_with_grounding, train


@pytest.fixture(scope="module")
def labelled_shards(tmp_path_factory):
    """One language-scene shard (one goal per episode) and one plain sort_blocks shard (three subtasks)."""
    out = tmp_path_factory.mktemp("grounding_shards")
    recipe = MixRecipe(image_size=64, cache_size=128, seeds_per_job=1, entries=[])
    language = MixEntry(task="sort_blocks", variant="language", seeds=1, seed_start=7, goals="each")
    plain = MixEntry(task="sort_blocks", variant="train", seeds=1, seed_start=3)
    reports = [collect_job(entry, entry.seed_start, 1, recipe, out, float("inf")) for entry in (language, plain)]
    assert all(r["kept"] >= 1 for r in reports), reports
    return out, [out / r["shard"] for r in reports]


def test_labels_locate_the_named_object_and_target(labelled_shards):
    from sage_gr00t.tasks import make_env

    _, (language, plain) = labelled_shards
    lang = DemoData.load(language)
    assert lang.grounding is not None and np.isfinite(lang.grounding).all()
    assert lang.grounding_task.all()  # each language-scene episode moves one named block to one named bin
    sort = DemoData.load(plain)
    assert not sort.grounding_task.any()  # "sort the blocks" does not say which block comes first
    # The first frame's label is where the named block and bin stood when the scene was reset.
    meta = json.loads((language / "meta.json").read_text())
    env = make_env("sort_blocks", variant="language", image_height=64, image_width=64)
    try:
        env.task.pin_goal(0)
        env.reset(seed=meta["seeds"][0])
        first = lang.grounding[np.flatnonzero(lang.episode == lang.episode[0])[0]]
        subtask_text = lang.tasks[lang.subtask[0]]
        positions = {n: np.asarray(env.scene.body_pos(n)) for n in env.object_names()}
        named_object = min(positions, key=lambda n: np.linalg.norm(positions[n] - first[:3]))
        named_target = min(positions, key=lambda n: np.linalg.norm(positions[n] - first[3:]))
        assert np.linalg.norm(positions[named_object] - first[:3]) < 1e-4
        assert np.linalg.norm(positions[named_target] - first[3:]) < 1e-4
        for name in (named_object, named_target):
            assert all(word in subtask_text for word in name.split("_")), (name, subtask_text)
    finally:
        env.close()


def test_sampler_grades_only_text_that_names_the_label(labelled_shards):
    _, (language, plain) = labelled_shards
    data = DemoData.concat([DemoData.load(language), DemoData.load(plain)])
    model = Gr00tModel(compact_config())
    sampler = BatchSampler(data, model, data.metadata(), torch.device("cpu"), shift_pixels=0,
                           subtask_language_prob=0.0, language_dropout=0.0)
    batch = sampler(256, torch.Generator().manual_seed(0))
    # Whole-task text only: sort_blocks' plain frames are never graded, the language scene's always.
    plain_rows = batch["input_ids"][:, 1:6].eq(torch.tensor(list(b"sort "))).all(1)
    assert not batch["grounding_valid"][plain_rows].any()
    assert batch["grounding_valid"][~plain_rows].all()
    muted = BatchSampler(data, model, data.metadata(), torch.device("cpu"), shift_pixels=0,
                         subtask_language_prob=1.0, language_dropout=0.5)
    batch = muted(256, torch.Generator().manual_seed(1))
    no_text = batch["attention_mask"].sum(1) == 2  # BOS + EOS only
    assert 0 < int(no_text.sum()) < 256
    assert not batch["grounding_valid"][no_text].any()  # nothing is named without words
    assert batch["grounding_valid"][~no_text].all()  # subtask words name both things everywhere
    whole = BatchSampler(data, model, data.metadata(), torch.device("cpu"), shift_pixels=0,
                         subtask_language_prob=0.0, grounding_whole_task=True)
    batch = whole(256, torch.Generator().manual_seed(0))
    # Graded on "sort the blocks" frames too, wherever the demonstrator had a current subtask (a finite label).
    plain_rows = batch["input_ids"][:, 1:6].eq(torch.tensor(list(b"sort "))).all(1)
    assert plain_rows.any()
    assert torch.equal(batch["grounding_valid"], torch.isfinite(batch["grounding"]))
    assert batch["grounding_valid"][plain_rows].any()


def test_grounding_loss_ignores_invalid_entries():
    head = GroundingHead(32, heads=2)
    features, mask = torch.randn(4, 5, 32), torch.ones(4, 5, dtype=torch.long)
    prediction = head(features, mask)
    target = torch.full((4, 6), float("nan"))
    valid = torch.zeros(4, 6, dtype=torch.bool)
    assert float(grounding_loss(prediction, target, valid)) == 0.0
    target[0], valid[0] = 1.0, True
    assert float(grounding_loss(prediction, target, valid)) > 0.0


def test_training_with_grounding_lowers_its_loss(labelled_shards, tmp_path):
    root, _ = labelled_shards
    cfg = TrainConfig(shards=[str(root)], out=str(tmp_path / "run"), preset="compact", steps=80, batch_size=16,
                      lr=1e-3, warmup_steps=5, log_every=10, checkpoint_every=1000, device="cpu",
                      grounding_weight=1.0, language_dropout=0.1, subtask_language_prob=0.5)
    final = train(cfg)
    rows = list(csv.DictReader((tmp_path / "run" / "loss.csv").open()))
    aux = [float(r["grounding"]) for r in rows]
    assert aux[-1] < 0.7 * aux[0], aux
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=False)
    assert "grounder" in state  # resumable with the auxiliary head
    assert (final / "model.safetensors").is_file()
    # The shipped checkpoint keeps GR00T's layout: no grounding-head tensors in it.
    from safetensors import safe_open

    with safe_open(str(final / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and not any("ground" in k for k in names)


def test_head_warmup_keeps_the_grounding_gradient_out_of_the_backbone(labelled_shards):
    _, (language, plain) = labelled_shards
    data = DemoData.concat([DemoData.load(language), DemoData.load(plain)])
    model = Gr00tModel(compact_config())
    head = GroundingHead(model.backbone.output_dim)
    sampler = BatchSampler(data, model, data.metadata(), torch.device("cpu"), shift_pixels=0,
                           subtask_language_prob=1.0)
    batch = sampler(8, torch.Generator().manual_seed(0))

    def grads(head_only: bool) -> tuple[float, float]:
        model.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        _, aux = losses_with_grounding(model, head, batch, head_only)
        aux.backward()  # the grounding loss alone
        backbone = sum(float(p.grad.abs().sum()) for p in model.backbone.parameters() if p.grad is not None)
        return backbone, sum(float(p.grad.abs().sum()) for p in head.parameters())

    backbone, probe = grads(head_only=True)
    assert backbone == 0.0 and probe > 0.0
    backbone, probe = grads(head_only=False)
    assert backbone > 0.0 and probe > 0.0


def test_grounding_without_labels_is_refused(labelled_shards, tmp_path):
    _, (language, _) = labelled_shards
    data = DemoData.load(language)
    data.grounding = data.grounding_task = None
    bare = data.save(tmp_path / "bare")
    cfg = TrainConfig(shards=[str(bare)], out=str(tmp_path / "run"), preset="compact", steps=2, batch_size=4,
                      device="cpu", grounding_weight=1.0)
    with pytest.raises(ValueError, match="grounding labels"):
        train(cfg)


def test_language_guidance_changes_the_chunk_only_when_asked():
    """Classifier-free guidance: guidance 1 is the plain chunk exactly; another value moves it along
    (text - no text), and a bad value in a policy spec is one clear error."""
    from sage_gr00t.policy.factory import PolicySpecError, make_policy
    from sage_gr00t.tasks import make_env

    folder = "assets/policies/gr00t_v8"  # trained with language dropout
    env = make_env("pick_apple", image_height=128, image_width=128)
    try:
        obs, _ = env.reset(seed=0)
        noise = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
        plain = make_policy(folder, env).get_action(obs, noise)
        same = make_policy(f"{folder}?guidance=1", env).get_action(obs, noise)
        pushed = make_policy(f"{folder}?guidance=3", env).get_action(obs, noise)
        for key in plain:
            np.testing.assert_array_equal(same[key], plain[key])
        assert any(not np.allclose(pushed[k], plain[k], atol=1e-4) for k in plain)
        for bad in ("?guidance=-1", "?guidance=abc", "?guidance=inf", "?scale=2"):
            with pytest.raises(PolicySpecError, match="guidance"):
                make_policy(f"{folder}{bad}", env)
    finally:
        env.close()
