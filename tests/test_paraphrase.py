"""The policy's language augmentation: an episode's instruction in other words, with the same plan.

Paraphrases come from the planner's training templates and are checked by the shipped planner (a paraphrase
that plans to anything but the expert's plan would teach the policy the wrong words); the collector stores them
with real expert episodes, and the training sampler shows them only where the whole-task instruction would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sage_gr00t.data.shards import MixEntry, MixRecipe, collect_job
from sage_gr00t.evaluation import heldout_paraphrase
from sage_gr00t.plan.commands import instruction_paraphrases
from sage_gr00t.plan.planner import HModulePlanner
from sage_gr00t.plan.scene import Scene
from sage_gr00t.policy.gr00t.config import compact_config
from sage_gr00t.policy.gr00t.model import Gr00tModel
from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData
from sage_gr00t.tasks import make_env

PLANNER = Path(__file__).resolve().parents[1] / "assets" / "planner"
SCENES = [("pick_apple", "train"), ("pick_apple", "language"), ("sort_blocks", "train"),
          ("sort_blocks", "language"), ("pour_water", "train"), ("stack_blocks", "train")]


def _triples(subtasks: list) -> list[tuple[str, str, str]]:
    return [(s.skill, s.object_name, s.target_name) for s in subtasks]


@pytest.mark.parametrize(("task", "variant"), SCENES)
def test_paraphrases_plan_to_the_expert_plan(task: str, variant: str) -> None:
    planner = HModulePlanner.load(PLANNER)
    env = make_env(task, variant=variant, image_height=32, image_width=32)
    try:
        for seed in (3, 11):
            env.reset(seed=seed)
            scene, expert = Scene.from_env(env), _triples(env.task.expert_plan())
            train = instruction_paraphrases(env, 6, seed)
            heldout = instruction_paraphrases(env, 3, seed, split="heldout_phrasing")
            assert len(train) >= 3 and heldout, (task, variant, train, heldout)
            assert env.instruction not in train and not set(train) & set(heldout)
            for command in [*train, *heldout]:
                result = planner.plan(command, scene)
                assert result.ok and _triples(result.subtasks) == expert, (command, result.message)
    finally:
        env.close()


def test_no_paraphrase_where_words_cannot_single_out_an_object() -> None:
    from sage_gr00t.plan.commands import CommandGenerator
    from sage_gr00t.plan.scene import SceneObject

    cups = Scene((SceneObject("pitcher", "pitcher", "", (0.4, 0.0, 0.8)),
                  SceneObject("cup_a", "cup", "", (0.4, 0.2, 0.8)), SceneObject("cup_b", "cup", "", (0.4, -0.2, 0.8))))
    assert CommandGenerator("train").paraphrases(cups, [("pour", "pitcher", "cup_a")], 4) == []


def test_heldout_paraphrase_keeps_the_scene_and_says_its_goal() -> None:
    env = make_env("sort_blocks", variant="language", image_height=32, image_width=32)
    try:
        env.reset(seed=1004)
        drawn, layout = env.instruction, {n: tuple(env.body_pos(n)) for n in env.object_names()}
        words = heldout_paraphrase(env, 1004)
        env.reset(seed=1004)  # what run_episode does next: the same scene and goal
        assert {n: tuple(env.body_pos(n)) for n in env.object_names()} == layout and env.instruction == drawn
        assert words != drawn
        result = HModulePlanner.load(PLANNER).plan(words, Scene.from_env(env))
        assert result.ok and _triples(result.subtasks) == _triples(env.task.expert_plan()), words
    finally:
        env.close()


def test_collected_paraphrases_reach_only_whole_task_text(tmp_path) -> None:
    recipe = MixRecipe(image_size=64, cache_size=128, seeds_per_job=1, entries=[], paraphrases=4)
    entry = MixEntry(task="pick_apple", variant="train", seeds=1, seed_start=5)
    report = collect_job(entry, 5, 1, recipe, tmp_path, float("inf"))
    data = DemoData.load(tmp_path / report["shard"])
    assert data.paraphrase is not None and (data.paraphrase >= 0).sum(1).min() == 4
    own = data.tasks[int(data.task[0])]
    others = {data.tasks[i] for i in data.paraphrase[0]}
    subtask = data.tasks[int(data.subtask[0])]
    assert own not in others and len(others) == 4
    model = Gr00tModel(compact_config())

    def shown(**probs: float) -> set[str]:
        sampler = BatchSampler(data, model, data.metadata(), torch.device("cpu"), shift_pixels=0, **probs)
        batch = sampler(128, torch.Generator().manual_seed(0))
        texts = set()
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
            texts.add(bytes(ids[1:int(mask.sum()) - 1].tolist()).decode())
        return texts

    assert shown() == {own.lower()}
    assert shown(paraphrase_prob=1.0) == {t.lower() for t in others}
    mixed = shown(paraphrase_prob=0.5, subtask_language_prob=0.5)
    assert subtask.lower() in mixed and own.lower() in mixed and mixed & {t.lower() for t in others}
