"""Language-following and procedural task variants on the real embedded simulator, the mismatched-instruction
control, and the demonstration mix (collector -> shards -> training steps)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sage_gr00t.data.shards import MixEntry, MixRecipe, collect_job, shard_dirs
from sage_gr00t.evaluation import borrowed_instruction, run_episode
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.modality import LANGUAGE_KEY
from sage_gr00t.policy.gr00t.training import DemoData, TrainConfig, train
from sage_gr00t.tasks import make_env

IMAGE = 64
TASKS = ("pick_apple", "sort_blocks", "pour_water")


def _env(task: str, variant: str):
    return make_env(task, variant=variant, image_height=IMAGE, image_width=IMAGE)


def _goal_object(env) -> str:
    return env.task.expert_plan()[0].object_name


@pytest.mark.parametrize("task", TASKS)
def test_language_scene_goal_comes_from_the_words(task: str) -> None:
    env = _env(task, "language")
    try:
        goals, instructions = set(), set()
        for seed in range(12):
            env.reset(seed=seed)
            plan = env.task.expert_plan()
            goals.add((plan[0].object_name, plan[0].target_name))
            instructions.add(env.instruction)
            # The instruction names the goal's object or target, so only the words tell the goals apart.
            spoken = {o.name: o for o in env.task.objects()}
            target = spoken[plan[0].target_name]
            obj = spoken[plan[0].object_name]
            words = env.instruction.lower()
            assert obj.kind in words or obj.role == "pour_source"  # "pour the water ..." names no pitcher
            assert target.color in words or "left" in words or "right" in words or target.kind in words
        assert len(goals) >= 2, f"{task}: every seed drew the same goal {goals}"
        assert len(instructions) >= 3
    finally:
        env.close()


@pytest.mark.parametrize("task", ["pick_apple", "sort_blocks"])
def test_language_success_needs_the_named_object_and_nothing_else_displaced(task: str) -> None:
    env = _env(task, "language")
    try:
        result = run_episode(env, ExpertPolicy(env), seed=5)
        assert result.success, f"expert failed the {task} language scene (seed 5)"
        goal = _goal_object(env)
        movable = [o.name for o in env.task.objects() if o.movable and o.name != goal]
        other = env.scene.body_pos(movable[0])
        env.scene.set_pose(movable[0], other + np.array([0.06, 0.0, 0.0]))
        import mujoco

        mujoco.mj_forward(env.model, env.data)
        assert not env.is_success(), "displacing an object the instruction did not name must fail the episode"
    finally:
        env.close()


def test_mismatched_instruction_is_another_episodes_words_and_reaches_the_policy() -> None:
    env = _env("sort_blocks", "language")
    try:
        seeds = [10, 11, 12]
        borrowed = borrowed_instruction(env, seeds, 10)
        env.reset(seed=11)
        assert borrowed == env.instruction
        seen: list[str] = []
        expert = ExpertPolicy(env)

        class Recording:  # the real expert, with a record of the language each query carried
            def reset(self) -> None:
                expert.reset()

            def get_action(self, obs: dict) -> dict:
                seen.append(obs[LANGUAGE_KEY])
                return expert.get_action(obs)

        result = run_episode(env, Recording(), seed=10, max_steps=5, instruction=borrowed)
        assert result.instruction == borrowed and seen and set(seen) == {borrowed}
    finally:
        env.close()


@pytest.mark.parametrize("task", TASKS)
def test_procedural_objects_change_per_episode_and_the_expert_still_succeeds(task: str) -> None:
    env = _env(task, "procedural")
    try:
        drawn = []
        for seed in (1, 2, 3):
            env.reset(seed=seed)
            drawn.append((env.task.objects(), env.instruction, env.model.ngeom, env.model.geom_rgba.copy()))
        assert len({d[0] for d in drawn}) == 3, "procedural objects did not change between episodes"
        env.reset(seed=1)  # the same seed draws the same objects again
        assert env.task.objects() == drawn[0][0] and env.instruction == drawn[0][1]
        assert np.array_equal(env.model.geom_rgba, drawn[0][3])
        if task != "pour_water":  # pour's episodes are long; its expert is checked by the collector test
            assert run_episode(env, ExpertPolicy(env), seed=2).success
    finally:
        env.close()


def test_novel_objects_stay_out_of_procedural_draws() -> None:
    from sage_gr00t.tasks import get_task

    for name in TASKS:
        task = get_task(name)("procedural")
        novel = {(o.geoms[0].shape, o.geoms[0].rgba) for o in get_task(name)("novel").objects() if o.movable}
        for seed in range(40):
            task.new_episode(np.random.default_rng(seed))
            for obj in task.objects():
                assert (obj.geoms[0].shape, obj.geoms[0].rgba) not in novel
                if name == "pick_apple" and obj.movable:
                    assert obj.geoms[0].shape != "ellipsoid" and obj.color != "yellow"
                if name == "sort_blocks" and obj.movable:
                    assert obj.geoms[0].shape != "cylinder" and obj.color != "purple"


def test_mix_collects_shards_that_train(tmp_path) -> None:
    recipe = MixRecipe([MixEntry("pick_apple", "language", "train", seeds=2), MixEntry("pour_water", "procedural",
                                                                                          seeds=1, seed_start=4)],
                       image_size=IMAGE, cache_size=128, seeds_per_job=2)
    reports = [collect_job(entry, start, count, recipe, tmp_path, deadline=float("inf"))
               for entry, start, count in recipe.jobs()]
    assert [r["kept"] for r in reports] == [2, 1], reports
    again = collect_job(*recipe.jobs()[0], recipe, tmp_path, deadline=float("inf"))
    assert again.get("skipped"), "a finished shard must not be collected again"
    shards = shard_dirs([tmp_path])
    data = DemoData.concat([DemoData.load(d) for d in shards])
    assert data.images.shape[1:] == (128, 128, 3) and len(np.unique(data.episode)) == 3
    assert all(0 <= t < len(data.tasks) for t in data.task) and (data.subtask >= 0).all()
    assert any("pour" in t for t in data.tasks) and any("plate" in t for t in data.tasks)
    from sage_gr00t.policy.gr00t import config as model_config

    model_config.PRESETS["tiny_test"] = lambda: model_config.compact_config(width=64)
    try:
        final = train(TrainConfig(shards=[str(tmp_path)], preset="tiny_test", out=str(tmp_path / "policy"), steps=3,
                                  batch_size=4, warmup_steps=1, checkpoint_every=3, log_every=1, device="cpu"))
    finally:
        del model_config.PRESETS["tiny_test"]
    assert (final / "model.safetensors").is_file()


def test_collect_mix_refuses_a_bad_recipe_in_one_line(tmp_path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("entries:\n  - {task: pick_apple, variant: nonsense}\n")
    out = subprocess.run([sys.executable, "-m", "sage_gr00t.cli.collect_mix", "--recipe", str(recipe),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "variant" in lines[0], lines


def test_isaaclab_refuses_per_episode_objects_and_builds_language_scenes() -> None:
    pytest.importorskip("isaaclab")
    from sage_gr00t.sim.isaaclab.env_cfg import build_env_cfg

    with pytest.raises(ValueError, match="draws new objects every episode"):
        build_env_cfg("sort_blocks", "procedural")
    cfg = build_env_cfg("pick_apple", "language")  # primitive fruits: spawned without USD
    assert cfg.variant == "language" and hasattr(cfg.scene, "orange")


def test_shipped_v8_policy_loads_and_acts_on_every_task() -> None:
    from sage_gr00t.paths import REPO_ROOT
    from sage_gr00t.policy.factory import make_policy

    for task in TASKS:
        env = _env(task, "train")
        try:
            obs, _ = env.reset(seed=1000)
            policy = make_policy(str(REPO_ROOT / "assets" / "policies" / "gr00t_v8"), env, "cpu")
            chunk = policy.get_action(obs)
            assert set(chunk) == set(env.action_space.spaces)
            for key, value in chunk.items():
                assert value.shape == (16, env.action_space.spaces[key].shape[0]) and np.all(np.isfinite(value))
        finally:
            env.close()


@pytest.mark.parametrize("task", TASKS)
def test_pinned_goals_share_one_scene_and_differ_only_in_the_words(task: str) -> None:
    env = _env(task, "language")
    try:
        choices = env.task.goal_choices()
        assert len(choices) >= 2
        scenes, goals, instructions = [], [], []
        for index in range(len(choices)):
            env.task.pin_goal(index)
            obs, _ = env.reset(seed=1234)
            scenes.append(np.concatenate([env.scene.body_pos(name) for name in env.object_names()]))
            goals.append(_goal_object(env))
            instructions.append(obs[LANGUAGE_KEY])
        assert all(np.array_equal(scene, scenes[0]) for scene in scenes)
        assert len(set(instructions)) == len(choices)  # every goal is asked for in other words
        env.task.pin_goal(None)  # drawn again: the seed's own goal is one of the choices
        env.reset(seed=1234)
        assert _goal_object(env) in goals
        with pytest.raises(ValueError, match="goal index"):
            env.task.pin_goal(len(choices))
    finally:
        env.close()


def test_a_recipe_entry_with_every_goal_records_one_episode_per_goal(tmp_path) -> None:
    entry = MixEntry("pour_water", "language", seeds=1, seed_start=410, goals="each")
    report = collect_job(entry, 410, 1, MixRecipe([entry], image_size=64, cache_size=64), tmp_path, float("inf"))
    assert report["kept"] + len(report["failed"]) == 2
    data = DemoData.load(shard_dirs([tmp_path])[0])
    instructions = {data.tasks[data.task[data.episode == ep][0]] for ep in np.unique(data.episode)}
    assert len(instructions) == report["kept"]  # one scene, each goal in its own words
    with pytest.raises(ValueError, match="goals"):
        MixEntry("pour_water", "language", goals="all")
