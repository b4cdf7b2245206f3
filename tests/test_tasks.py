"""Tasks on the real embedded MuJoCo simulator: reset, render, step, success predicates, experts, errors."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

from sage_gr00t.evaluation import run_episode
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.modality import ACTION_KEYS, EGO_VIEW, LANGUAGE_KEY
from sage_gr00t.sim.actions import InvalidActionError
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.tasks import get_task, make_env, task_names
from sage_gr00t_tasks.pour_water import N_PARTICLES

# The G1 comes from a local MuJoCo Menagerie (conftest points MENAGERIE_ROOT at ../shared/menagerie);
# without one the mujoco-menagerie package would need GitHub, which tests must not.
EMBODIMENTS = ("sage_humanoid", pytest.param("unitree_g1", marks=pytest.mark.skipif(
    not os.environ.get("MENAGERIE_ROOT"), reason="no local MuJoCo Menagerie: set MENAGERIE_ROOT to a checkout")))
IMAGE = 96  # small ego images keep the suite fast; the default is 224


def _env(task: str, embodiment: str = "sage_humanoid", **kw):
    return make_env(task, embodiment=embodiment, image_height=IMAGE, image_width=IMAGE, **kw)


@pytest.mark.parametrize("embodiment", EMBODIMENTS)
@pytest.mark.parametrize("task", ["pick_apple", "sort_blocks", "pour_water"])
def test_reset_render_step_and_expert_success(task: str, embodiment: str) -> None:
    env = _env(task, embodiment)
    try:
        obs, info = env.reset(seed=3)
        assert obs[EGO_VIEW].shape == (IMAGE, IMAGE, 3) and obs[EGO_VIEW].dtype == np.uint8
        assert obs[EGO_VIEW].std() > 5, "ego camera rendered a blank image"
        for group in ("left_arm", "right_arm", "left_hand", "right_hand"):
            assert obs[f"state.{group}"].dtype == np.float32
        assert isinstance(obs[LANGUAGE_KEY], str) and obs[LANGUAGE_KEY] in env.task.instructions()
        assert env.observation_space.contains(obs)
        assert not info["success"] and not env.is_success(), "success must be false at reset"
        front = env.render()
        assert front.shape == (480, 640, 3) and front.std() > 5

        result = run_episode(env, ExpertPolicy(env), seed=3)
        assert result.success, f"expert failed {task} on {embodiment} (seed 3, {result.steps} steps)"
        assert env.is_success()
    finally:
        env.close()


@pytest.mark.parametrize("task", ["pick_apple", "sort_blocks", "pour_water"])
def test_novel_variant_differs_and_expert_succeeds(task: str) -> None:
    train, novel = _env(task), _env(task, variant="novel")
    try:
        assert train.model.ngeom != novel.model.ngeom or not np.allclose(
            train.model.geom_rgba, novel.model.geom_rgba
        ) or not np.array_equal(train.model.geom_type, novel.model.geom_type)
        assert set(novel.task.instructions()) != set(train.task.instructions()) or task == "pour_water"
        assert run_episode(novel, ExpertPolicy(novel), seed=5).success
    finally:
        train.close()
        novel.close()


def test_layout_is_reproducible_by_seed() -> None:
    env = _env("sort_blocks")
    try:
        env.reset(seed=11)
        first = env.data.qpos.copy(), env.model.body_pos.copy()
        env.reset(seed=11)
        np.testing.assert_array_equal(first[0], env.data.qpos)
        np.testing.assert_array_equal(first[1], env.model.body_pos)
        env.reset(seed=12)
        assert not np.allclose(first[0], env.data.qpos)
    finally:
        env.close()


def _home(env) -> dict[str, np.ndarray]:
    return env.home_action()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.pop("action.left_arm"), "missing keys"),
        (lambda a: a.__setitem__("action.right_arm", np.zeros(6)), "shape"),
        (lambda a: a.__setitem__("action.right_arm", np.zeros((16, 7))), "one control step"),
        (lambda a: a["action.left_arm"].__setitem__(2, np.nan), "NaN"),
        (lambda a: a["action.left_hand"].__setitem__(0, 5.0), "out of joint range"),
    ],
)
def test_invalid_actions_are_rejected_before_the_simulator(mutate, message: str) -> None:
    env = _env("pick_apple")
    try:
        env.reset(seed=0)
        time_before, qpos_before = env.data.time, env.data.qpos.copy()
        action = _home(env)
        mutate(action)
        with pytest.raises(InvalidActionError, match=message):
            env.step(action)
        assert env.data.time == time_before
        np.testing.assert_array_equal(env.data.qpos, qpos_before)
        with pytest.raises(InvalidActionError):
            env.step("not a dict")  # type: ignore[arg-type]
    finally:
        env.close()


def test_unknown_task_and_embodiment_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="Available tasks"):
        make_env("juggle")
    with pytest.raises(ValueError, match="Unknown embodiment"):
        make_env("pick_apple", embodiment="r2d2")
    with pytest.raises(ValueError, match="Unknown task option"):
        make_env("pick_apple", camera="x")


def test_gymnasium_registration() -> None:
    assert {"pick_apple", "sort_blocks", "pour_water"} <= set(task_names())  # entry points loaded: ids registered
    env = gym.make(get_task("pick_apple").ids().gym)
    try:
        obs, _ = env.reset(seed=0)
        assert set(ACTION_KEYS) <= set(env.unwrapped.action_space.spaces)
        assert EGO_VIEW in obs
    finally:
        env.close()


def test_domain_randomization_changes_the_world_and_is_seeded() -> None:
    config = DomainRandomizationConfig.from_yaml(profile="strong")
    env = _env("pick_apple", randomization=config)
    try:
        env.reset(seed=1)
        snap = (env.model.geom_friction.copy(), env.model.actuator_gainprm.copy(), env.model.cam_pos.copy(),
                env.model.light_diffuse.copy(), env._latency)
        env.reset(seed=2)
        assert not np.allclose(snap[0], env.model.geom_friction)
        assert not np.allclose(snap[1], env.model.actuator_gainprm)
        assert not np.allclose(snap[2], env.model.cam_pos)
        assert not np.allclose(snap[3], env.model.light_diffuse)
        env.reset(seed=1)
        np.testing.assert_array_equal(snap[0], env.model.geom_friction)
        # A randomized world must still be solvable by the expert.
        assert run_episode(env, ExpertPolicy(env), seed=4).success
    finally:
        env.close()


def test_randomization_profiles_reject_unknown_names_and_keys(tmp_path) -> None:
    with pytest.raises(ValueError, match="Unknown randomization profile"):
        DomainRandomizationConfig.from_yaml(profile="extreme")
    bad = tmp_path / "dr.yaml"
    bad.write_text("train:\n  enabled: true\n  gravity_scale: [0.5, 2]\n")
    with pytest.raises(ValueError, match="gravity_scale"):
        DomainRandomizationConfig.from_yaml(bad, profile="train")


def test_pour_success_counts_particles_in_the_cup() -> None:
    env = _env("pour_water")
    try:
        env.reset(seed=0)
        assert env.task.water_in_cup(env.scene) == 0
        cup = env.body_pos("cup")
        # Drop every particle into the cup by hand: the predicate must follow the state.
        for i in range(N_PARTICLES):
            offset = np.array([0.02 * np.cos(i), 0.02 * np.sin(i), 0.02 + 0.016 * (i // 6)])
            env.scene.set_pose(f"water{i}", cup + offset)
        import mujoco

        for _ in range(300):
            mujoco.mj_step(env.model, env.data)
        assert env.task.water_in_cup(env.scene) >= 0.9 * N_PARTICLES
        assert env.is_success()
    finally:
        env.close()


@pytest.mark.parametrize("value", [np.array(["0.1"] * 7), np.array([1 + 2j] * 7), np.array([True] * 7), [None] * 7])
def test_actions_of_non_real_dtype_are_refused_with_their_key(value) -> None:
    env = _env("pick_apple")
    try:
        env.reset(seed=0)
        action = {**env.home_action(), "action.left_arm": value}
        with pytest.raises(InvalidActionError, match=r"action\.left_arm must hold real numbers"):
            env.step(action)
    finally:
        env.close()


def test_a_crash_shows_its_own_error_not_renderer_teardown_noise() -> None:
    """Renderers left open by a crashing program are closed before MuJoCo's EGL teardown at exit."""
    import subprocess
    import sys

    script = ("from sage_gr00t.tasks import make_env\n"
              "env = make_env('pick_apple', image_height=32, image_width=32)\n"
              "env.reset(seed=0); env.render_depth('ego_view', 32, 32)\n"
              "raise RuntimeError('the real error')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "RuntimeError: the real error" in proc.stderr
    assert "EGLError" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_expert_plan_order_follows_the_words_else_the_task_or_a_coin() -> None:
    """"instruction" orders the subtasks as the words do, else as the task does (never at random);
    "shuffled" draws an order per seed where the words set none."""
    from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert

    env = make_env("sort_blocks", image_height=32, image_width=32)
    try:
        env.reset(seed=0)
        task_order = [s.object_name for s in env.expert_plan()]

        def first_blocks(order: str, instruction: str) -> set[str]:
            env.instruction = instruction
            expert = ScriptedExpert(env, ExpertConfig(plan_order=order))
            firsts = set()
            for seed in range(8):
                expert.reset(seed)
                assert sorted(s.object_name for s in expert.plan) == sorted(task_order)
                firsts.add(expert.plan[0].object_name)
            return firsts

        generic = "sort the blocks into the bins of the same colour"
        assert first_blocks("instruction", generic) == {task_order[0]}
        assert first_blocks("shuffled", generic) == set(task_order)  # a coin flip over 8 seeds
        blue_first = "put the blue block in the blue bin and the red block in the red bin"
        assert first_blocks("instruction", blue_first) == {"blue_block"}
        assert first_blocks("shuffled", blue_first) == {"blue_block"}
        with pytest.raises(ValueError, match="plan_order must be one of"):
            ExpertConfig(plan_order="random")
    finally:
        env.close()
