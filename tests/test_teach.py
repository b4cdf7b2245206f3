"""Teaching a new task from a few recorded demonstrations: the `stack_blocks` task, recipe entries whose
episodes are dreams made from a demonstration dataset (no expert), and the provenance a checkpoint keeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_mimic import record_demos

from sage_gr00t.data.shards import MixEntry, MixRecipe, collect_mix, provenance, shard_dirs
from sage_gr00t.evaluation import run_episode
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.tasks import make_env, task_names
from sage_gr00t_tasks.stack_blocks import BLOCK_HALF


def test_stack_blocks_is_registered_and_its_expert_stacks() -> None:
    assert "stack_blocks" in task_names()
    env = make_env("stack_blocks", image_height=32, image_width=32)
    try:
        for seed in (0, 1):
            env.reset(seed=seed)
            assert not env.is_success()  # two blocks side by side on the table
            result = run_episode(env, ExpertPolicy(env), seed=seed)
            assert result.success, f"seed {seed}: red {env.body_pos('red_block')}, blue {env.body_pos('blue_block')}"
            top, base = env.body_pos("red_block"), env.body_pos("blue_block")
            assert top[2] - base[2] == pytest.approx(2 * BLOCK_HALF, abs=0.01)
    finally:
        env.close()


def test_a_block_beside_the_other_is_not_stacked() -> None:
    env = make_env("stack_blocks", image_height=32, image_width=32)
    try:
        env.reset(seed=0)
        base = env.body_pos("blue_block")
        env.scene.set_pose("red_block", base + np.array([0.05, 0.0, 0.0]))  # touching it, on the table
        env.step(env.home_action())
        assert not env.is_success()
        env.scene.set_pose("red_block", base + np.array([0.0, 0.0, 2 * BLOCK_HALF + 0.002]))  # on top
        for _ in range(5):
            env.step(env.home_action())
        assert env.is_success()
    finally:
        env.close()


def test_mimic_entries_dream_from_a_dataset_and_the_provenance_counts_them(tmp_path: Path) -> None:
    demos = tmp_path / "demos"
    record_demos(demos, "stack_blocks", 2)
    recipe = MixRecipe([MixEntry("stack_blocks", source="mimic", demos=str(demos), demo_count=2, seeds=4,
                                 randomization="train"),
                        MixEntry("pick_apple", seeds=1)], image_size=48, cache_size=48, seeds_per_job=4)
    reports = collect_mix(recipe, tmp_path / "shards", workers=1, progress=False)
    dreamt = [r for r in reports if "mimic" in r["shard"]]
    assert len(dreamt) == 1 and dreamt[0]["attempted"] == 4
    kept = dreamt[0]["kept"]
    assert kept >= 1, "no dream of 4 attempts from 2 stack_blocks demonstrations was kept"
    shards = shard_dirs([tmp_path / "shards"])
    meta = json.loads((tmp_path / "shards" / dreamt[0]["shard"] / "meta.json").read_text())
    assert meta["source_demos"] == 2 and len(meta["dreams"]) == 4
    assert all(d["generator"] == "mimic" and d["source_episodes"] for d in meta["dreams"])
    assert sum(d["success"] for d in meta["dreams"]) == kept
    counts = provenance(shards)
    assert counts["stack_blocks"]["source_demos"] == 2 and counts["stack_blocks"]["dreams"] == kept
    assert counts["stack_blocks"]["datasets"] == [str(demos)] and counts["stack_blocks"]["expert_episodes"] == 0
    assert counts["pick_apple"]["dreams"] == 0 and counts["pick_apple"]["source_demos"] == 1
    # A re-run skips the finished shards.
    again = collect_mix(recipe, tmp_path / "shards", workers=1, progress=False)
    assert all(r.get("skipped") for r in again)


def test_a_mimic_entry_without_demonstrations_is_refused() -> None:
    with pytest.raises(ValueError, match="needs `demos`"):
        MixEntry("stack_blocks", source="mimic")
    with pytest.raises(ValueError, match="source must be"):
        MixEntry("stack_blocks", source="teleport")


@pytest.mark.parametrize("task", ["stack_blocks", "push_block"])
def test_the_planner_plans_the_new_tasks_with_their_skills(task: str) -> None:
    """A pad is pushed onto (its declared place_skill), a block stacked on: the plan is the expert's, words too."""
    from sage_gr00t.plan.planner import HModulePlanner
    from sage_gr00t.plan.scene import Scene

    planner = HModulePlanner.load(Path(__file__).resolve().parents[1] / "assets" / "planner")
    env = make_env(task, image_height=32, image_width=32)
    try:
        env.reset(seed=0)
        scene, want = Scene.from_env(env), env.expert_plan()
        commands = [c for c in env.task.instructions() if "tower" not in c and "along the table" not in c]
    finally:
        env.close()
    assert len(commands) >= 4
    for command in commands:
        got = planner.plan(command, scene).subtasks
        assert [(s.skill, s.object_name, s.target_name, s.language) for s in got] == \
            [(s.skill, s.object_name, s.target_name, s.language) for s in want], command
