"""Isaac Lab 3.0 versions of the tasks: kit-less Newton (C MuJoCo) on the CPU, GR00T dicts, scripted expert.

Needs the `isaaclab` extra (`pip install -e ".[isaaclab]"`); skipped when isaaclab is not importable.
"""

from __future__ import annotations

import importlib.metadata
import re

import gymnasium as gym
import numpy as np
import pytest

isaaclab = pytest.importorskip("isaaclab", reason="isaaclab not installed (pip install -e '.[isaaclab]')")
pytest.importorskip("isaaclab_newton", reason="isaaclab_newton (Isaac Lab 3.0's Newton backend) not importable")

from sage_gr00t.experts.policy import ExpertPolicy  # noqa: E402
from sage_gr00t.sim.embodiment import load_robot_spec  # noqa: E402
from sage_gr00t_tasks import make_env  # noqa: E402
from sage_gr00t_tasks.base import ACTION_KEYS, LANGUAGE_KEY, InvalidActionError  # noqa: E402
from sage_gr00t_tasks.isaaclab import GYM_IDS, make_isaaclab_env  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Isaac Lab 3.0 warns on every action write

IMAGE = 48  # small camera: the Newton Warp renderer runs on one CPU core
_OPEN: list = []  # Isaac Lab has one simulation context per process: one env at a time


def _close_open_envs() -> None:
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture(scope="module")
def pick_apple():
    _close_open_envs()
    env = make_isaaclab_env("pick_apple", image_height=IMAGE, image_width=IMAGE)
    _OPEN.append(env)
    yield env
    _close_open_envs()


def test_tasks_registered_through_entry_point():
    points = [e for e in importlib.metadata.entry_points(group="isaaclab.tasks")
              if e.value == "sage_gr00t_tasks.isaaclab"]
    assert points, "pyproject.toml must declare the isaaclab.tasks entry point (reinstall with pip install -e .)"
    points[0].load()
    for gym_id in ("SageGr00t-PickApple-v0", "SageGr00t-SortBlocks-v0", "SageGr00t-PourWater-v0"):
        spec = gym.spec(gym_id)
        assert spec.entry_point == "isaaclab.envs:ManagerBasedRLEnv"
        assert spec.kwargs["env_cfg_entry_point"].startswith("sage_gr00t_tasks.isaaclab.env_cfg:")
    assert set(GYM_IDS) == {"pick_apple", "sort_blocks", "pour_water"}


def test_explicit_gains_match_the_mjcf():
    from sage_gr00t_tasks.isaaclab.env_cfg import ACTUATOR_GAINS, EMB, ROBOT_CFG

    model = load_robot_spec(EMB).compile()
    for name, (regex, kp, kv, force, armature, _) in ACTUATOR_GAINS.items():
        actuator = ROBOT_CFG.actuators[name]
        assert actuator.joint_names_expr == [regex] and actuator.stiffness == kp and actuator.damping == kv
        joints = [model.joint(j) for j in range(model.njnt) if re.fullmatch(regex, model.joint(j).name)]
        assert joints, name
        for joint in joints:
            act = next(a for a in range(model.nu) if model.actuator_trnid[a, 0] == joint.id)
            assert model.actuator_gainprm[act, 0] == pytest.approx(kp)
            assert -model.actuator_biasprm[act, 2] == pytest.approx(kv)
            assert model.actuator_forcerange[act, 1] == pytest.approx(force)
            assert model.dof_armature[joint.dofadr[0]] == pytest.approx(armature)


def test_pick_apple_observations_match_the_embedded_env(pick_apple):
    env = pick_apple
    obs, info = env.reset(seed=1000)
    embedded = make_env("pick_apple", image_height=IMAGE, image_width=IMAGE)
    try:
        ref, ref_info = embedded.reset(seed=1000)
        assert set(obs) == set(ref)
        for key, value in ref.items():
            if key == LANGUAGE_KEY:
                assert obs[key] == value == env.instruction  # same seeded phrasing
                continue
            assert obs[key].shape == value.shape and obs[key].dtype == value.dtype, key
            if key.startswith("state."):
                np.testing.assert_allclose(obs[key], value, atol=2e-3)  # home pose after settling
        # The same seed gives the same object layout (the task's own sampler runs in the reset event).
        for name in ("apple", "plate"):
            np.testing.assert_allclose(env.body_pos(name)[:2], embedded.body_pos(name)[:2], atol=2e-3)
        assert info["success"] is False and ref_info["success"] is False
    finally:
        embedded.close()
    image = obs["video.ego_view"]
    assert image.std() > 5, "ego_view from the Newton Warp camera is blank"


def test_pick_apple_rejects_bad_actions(pick_apple):
    env = pick_apple
    env.reset(seed=3)
    action = env.home_action()
    with pytest.raises(InvalidActionError):
        env.step({k: v for k, v in action.items() if k != "action.left_hand"})
    with pytest.raises(InvalidActionError):
        env.step(action | {"action.left_arm": np.full(7, np.nan)})
    with pytest.raises(InvalidActionError):
        env.step(action | {"action.left_arm": np.full(7, 10.0)})
    obs, *_ = env.step(action)
    assert set(ACTION_KEYS) == {f"action.{k.removeprefix('state.')}" for k in obs if k.startswith("state.")}


def test_rendering_randomization_off_without_a_profile(pick_apple):
    """The default ('none') profile adds no rendering events: nominal camera offset and FOV."""
    from sage_gr00t_tasks.isaaclab.env_cfg import EMB

    env = pick_apple
    terms = env.env.event_manager.active_terms["reset"]
    assert not {"object_colors", "ego_camera", "light_direction"} & set(terms)
    first = _render_randomization_state(env)
    env.reset(seed=5)
    second = _render_randomization_state(env)
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key], err_msg=key)
    np.testing.assert_allclose(first["camera_pos"][0], EMB.ego_camera.pos, atol=1e-5)


def test_expert_completes_pick_apple_in_isaaclab(pick_apple):
    """The embedded simulator's scripted expert, unchanged, on the Isaac Lab env: >= 80% of 20 seeds."""
    env = pick_apple
    policy = ExpertPolicy(env)
    from sage_gr00t.evaluation import run_episode

    results = [run_episode(env, policy, seed) for seed in range(1000, 1020)]
    successes = sum(r.success for r in results)
    assert successes >= 16, [(r.seed, r.success, r.steps) for r in results]


@pytest.mark.parametrize("task", ["sort_blocks"])
def test_other_tasks_build_reset_and_step_with_the_expert(task):
    _close_open_envs()
    env = make_isaaclab_env(task, image_height=IMAGE, image_width=IMAGE)
    try:
        obs, _ = env.reset(seed=1000)
        assert obs["video.ego_view"].shape == (IMAGE, IMAGE, 3)
        policy = ExpertPolicy(env)
        policy.reset()
        start = obs["state.left_arm"].copy(), obs["state.right_arm"].copy()
        for _ in range(15):
            action = {k: v[0] for k, v in policy.get_action(obs).items()}
            obs, *_ = env.step(action)
        moved = max(np.abs(obs["state.left_arm"] - start[0]).max(), np.abs(obs["state.right_arm"] - start[1]).max())
        assert moved > 0.05, "the expert's arm did not move"
        assert all(np.all(np.isfinite(v)) for k, v in obs.items() if k.startswith("state."))
    finally:
        env.close()


def test_expert_completes_pour_water_in_isaaclab():
    """The water stays in the pitcher while settling and the expert pours it: all of 4 seeds.

    Regression test for MuJoCo's midphase, which `physics.NewtonMujocoManager` switches off for C MuJoCo: with
    the bounding-volume hierarchies Newton leaves in a stale inertial frame, the fingers passed
    through the pitcher's thin walls and particles leaked out of it.
    """
    import mujoco

    from sage_gr00t.evaluation import run_episode
    from sage_gr00t_tasks.pour_water import PourWaterEnv

    _close_open_envs()
    env = make_isaaclab_env("pour_water", image_height=IMAGE, image_width=IMAGE)
    try:
        from isaaclab_newton.physics import NewtonManager

        assert NewtonManager._solver.mj_model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_MIDPHASE
        obs, _ = env.reset(seed=1000)
        assert obs["video.ego_view"].shape == (IMAGE, IMAGE, 3)
        pitcher = env.body_pos("pitcher")
        inside = [np.hypot(*(env.body_pos(f"water{i}")[:2] - pitcher[:2])) < PourWaterEnv.PITCHER_RADIUS
                  for i in range(PourWaterEnv.N_PARTICLES)]
        assert all(inside), f"{inside.count(False)} particles left the pitcher while settling"
        policy = ExpertPolicy(env)
        results = [run_episode(env, policy, seed) for seed in range(1000, 1004)]
        assert all(r.success for r in results), [(r.seed, r.success, r.steps) for r in results]
    finally:
        env.close()


def _render_randomization_state(env) -> dict[str, np.ndarray]:
    """Camera local offset / intrinsics, apple + plate shape colours and light direction, as Newton renders them."""
    camera = env.env.scene["ego_view"]
    pos, _ = camera._view.get_local_poses()
    renderer = camera._renderer
    context = renderer.newton_sensor._SensorTiledCamera__render_context
    model = renderer.backend.model
    assert context.shape_colors.ptr == model.shape_color.ptr  # the renderer draws the model's colour array
    return {"camera_pos": pos.torch.cpu().numpy().copy(),
            "intrinsics": np.array(camera.data.intrinsic_matrices.torch.cpu()).copy(),
            "colors": model.shape_color.numpy().copy(),
            "light": context.lights_orientation.numpy().copy()}


def test_rendering_randomization_ported_to_isaaclab():
    """'train' profile: colour, camera position / FOV and light direction jitter as EventManager reset events.

    Different seeds give different colours, camera offsets, FOVs, light directions and images; the same
    seed the same ones; all within the YAML ranges. The expert still succeeds under randomization.
    """
    from sage_gr00t.evaluation import run_episode
    from sage_gr00t.sim.randomization import DomainRandomizationConfig
    from sage_gr00t_tasks.isaaclab.env_cfg import EMB
    from sage_gr00t_tasks.isaaclab.mdp import NEWTON_DEFAULT_LIGHT_DIRECTION

    config = DomainRandomizationConfig.from_yaml(profile="train")
    _close_open_envs()
    env = make_isaaclab_env("pick_apple", image_height=IMAGE, image_width=IMAGE, randomization=config)
    try:
        terms = env.env.event_manager.active_terms["reset"]
        assert {"object_colors", "ego_camera", "light_direction"} <= set(terms)
        states, images = [], []
        for seed in (1, 2, 1):
            obs, _ = env.reset(seed=seed)
            states.append(_render_randomization_state(env))
            images.append(obs["video.ego_view"].astype(int))
        a, b, again = states
        nominal_colors = env.env.event_manager.get_term_cfg("object_colors").func._nominal
        for key in a:
            assert not np.array_equal(a[key], b[key]), f"{key} not randomized between seeds"
            np.testing.assert_array_equal(a[key], again[key], err_msg=f"{key} not reproducible from the seed")
        assert np.abs(images[0] - images[1]).mean() > 1.0
        # A camera jittered into the head's visor box must not see its inside (mount shapes hidden).
        means = [image.mean() for image in images]
        assert min(means) > 0.8 * max(means), means
        # Within the YAML ranges.
        offset = a["camera_pos"][0] - np.asarray(EMB.ego_camera.pos)
        assert np.all(np.abs(offset) <= config.camera_position_jitter + 1e-5) and np.abs(offset).max() > 0
        fovy = np.rad2deg(2 * np.arctan(IMAGE / 2 / a["intrinsics"][0, 1, 1]))
        assert abs(fovy - EMB.ego_camera.fovy) <= config.camera_fovy_jitter + 1e-3
        changed = np.abs(a["colors"] - nominal_colors).max(axis=1) > 0
        assert changed.any() and np.abs(a["colors"] - nominal_colors).max() <= config.color_jitter + 1e-5
        model = env.env.scene["ego_view"]._renderer.backend.model
        labels = [model.body_label[b] for b in model.shape_body.numpy()[changed]]
        assert {label.split("/")[4] for label in labels} <= {"apple", "plate"}, labels  # task objects only
        light = a["light"][0] / np.linalg.norm(a["light"][0])
        assert np.degrees(np.arccos(np.clip(light @ NEWTON_DEFAULT_LIGHT_DIRECTION, -1, 1))) < 30
        policy = ExpertPolicy(env)
        results = [run_episode(env, policy, seed) for seed in (1000, 1001)]
        assert all(r.success for r in results), [(r.seed, r.success, r.steps) for r in results]
    finally:
        env.close()
