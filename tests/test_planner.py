"""H-module planner: shipped checkpoint on real simulator scenes, refusals, trainability, held-out accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sage_gr00t.plan.commands import CommandGenerator
from sage_gr00t.plan.hmodule import FrozenTextEncoder, HModule, HModuleConfig, build_batch, deep_supervision_loss
from sage_gr00t.plan.planner import HModulePlanner
from sage_gr00t.plan.scene import Scene
from sage_gr00t.tasks import make_env

CKPT = Path(__file__).resolve().parents[1] / "assets" / "planner"


@pytest.fixture(scope="module")
def planner() -> HModulePlanner:
    return HModulePlanner.load(CKPT)


@pytest.fixture(scope="module")
def scenes() -> dict[str, tuple[Scene, list]]:
    out = {}
    for task in ("pick_apple", "sort_blocks", "pour_water"):
        env = make_env(task, image_height=64, image_width=64)
        try:
            env.reset(seed=0)
            out[task] = (Scene.from_env(env), env.expert_plan(), env.task.instructions())
        finally:
            env.close()
    return out


def _triples(subtasks: list) -> list[tuple[str, str, str]]:
    return [(s.skill, s.object_name, s.target_name) for s in subtasks]


@pytest.mark.parametrize("task", ["pick_apple", "sort_blocks", "pour_water"])
def test_plans_task_commands_to_expert_plan(planner: HModulePlanner, scenes: dict, task: str) -> None:
    scene, expert, instructions = scenes[task]
    for command in instructions:
        if "blue block in the blue bin and the red" in command:
            continue  # speaks blue first: planned in spoken order, checked below
        res = planner.plan(command, scene)
        assert res.ok, f"{command!r}: {res.message}"
        assert _triples(res.subtasks) == _triples(expert), command
        assert [s.language for s in res.subtasks] == [s.language for s in expert]


def test_spoken_order_is_kept(planner: HModulePlanner, scenes: dict) -> None:
    scene = scenes["sort_blocks"][0]
    res = planner.plan("put the blue block in the blue bin and the red block in the red bin", scene)
    assert _triples(res.subtasks) == [("pick_place", "blue_block", "blue_bin"), ("pick_place", "red_block", "red_bin")]


def test_refuses_garbage_and_unknown_objects(planner: HModulePlanner, scenes: dict) -> None:
    scene = scenes["pick_apple"][0]
    for text in ["", "   ", "asd;lkj 12#", "what's the weather like today", "tell me a joke"]:
        res = planner.plan(text, scene)
        assert res.refusal == "garbage" and not res.subtasks and res.message, text
    res = planner.plan("put the banana on the plate", scene)
    assert res.refusal == "unknown_object" and not res.subtasks
    assert "'banana'" in res.message and "apple" in res.message and "plate" in res.message
    res = planner.plan("pour the water into the cup", scene)
    assert res.refusal == "unknown_object"
    res = planner.plan("put the yellow block in the red bin", scenes["sort_blocks"][0])
    assert res.refusal == "unknown_object" and "yellow block" in res.message


def test_refuses_impossible(planner: HModulePlanner, scenes: dict) -> None:
    res = planner.plan("pour the water from the red block into the blue bin", scenes["sort_blocks"][0])
    assert res.refusal == "impossible" and not res.subtasks and res.message


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    enc = FrozenTextEncoder()
    ex = CommandGenerator("train", 3).dataset(16)
    b = build_batch(enc, [e.command for e in ex], [e.scene for e in ex], ex)
    model = HModule(HModuleConfig(d_model=64, h_layers=1, l_layers=1, max_segments=2))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _ = deep_supervision_loss(model(b.tok, b.tok_mask, b.obj, b.obj_mask), b.targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_heldout_exact_match(planner: HModulePlanner) -> None:
    # Plans only: full held-out eval (sage-eval-planner, 400/split on an H100) measured 0.960 on
    # held-out phrasings and 0.997 on held-out object combinations.
    hits, n = 0, 0
    for split in ("heldout_phrasing", "heldout_combos"):
        gen = CommandGenerator(split, 99)
        for _ in range(20):
            e = gen.sample()
            while e.refusal != "ok":
                e = gen.sample()
            res = planner.plan(e.command, e.scene)
            hits += res.ok and _triples(res.subtasks) == list(e.steps)
            n += 1
    assert hits / n >= 0.95, hits / n


def test_declared_objects_extend_the_planner_vocabulary() -> None:
    from sage_gr00t.plan.scene import SceneObject
    from sage_gr00t.plan.vocabulary import Vocabulary, task_vocabulary
    from sage_gr00t.tasks import Geom, ObjectSpec, get_task

    # The shipped tasks bring no kind the base vocabulary lacks: the planner's training data is unchanged.
    shipped = [o for name in ("pick_apple", "sort_blocks", "pour_water") for variant in ("train", "novel")
               for o in get_task(name)(variant).objects()]
    assert Vocabulary.base().extended(shipped) == Vocabulary.base()
    assert set(Vocabulary.base().kinds()) <= set(task_vocabulary().kinds())  # whatever else is installed
    mango = ObjectSpec("mango", (Geom("sphere", (0.03,), (1.0, 0.6, 0.0, 1.0)),), kind="mango", role="pickable",
                       words=("mango", "ripe mango"))
    vocab = Vocabulary.base().extended([mango])
    assert vocab.pickable[-1] == "mango" and vocab.kind_words("mango") == ["mango", "ripe mango"]
    generator = CommandGenerator("train", seed=0, vocabulary=vocab)
    texts = [generator.sample().command for _ in range(600)]
    assert any("mango" in t for t in texts)
    # Declared roles decide what a skill may do with an object the planner has never seen.
    fruit, plate = SceneObject("mango", "mango", role="pickable"), SceneObject("plate", "plate", role="receptacle")
    assert HModulePlanner._check("pick_place", fruit, plate) == ""
    assert "pour" in HModulePlanner._check("pour", fruit, plate)
