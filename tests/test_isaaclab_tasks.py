"""The tasks on Isaac Lab 3.0: kit-less Newton (C MuJoCo) on the CPU, GR00T dicts, scripted expert.

Needs the `isaaclab` extra (`pip install -e ".[isaaclab]"`); skipped when isaaclab is not importable.
"""

from __future__ import annotations

import importlib.metadata

import gymnasium as gym
import numpy as np
import pytest

isaaclab = pytest.importorskip("isaaclab", reason="isaaclab not installed (pip install -e '.[isaaclab]')")
pytest.importorskip("isaaclab_newton", reason="isaaclab_newton (Isaac Lab 3.0's Newton backend) not importable")

from sage_gr00t.experts.policy import ExpertPolicy  # noqa: E402
from sage_gr00t.modality import ACTION_KEYS, EGO_VIEW, LANGUAGE_KEY  # noqa: E402
from sage_gr00t.sim.actions import InvalidActionError  # noqa: E402
from sage_gr00t.sim.embodiment import get_embodiment, load_robot_spec  # noqa: E402
from sage_gr00t.skills import Subtask  # noqa: E402
from sage_gr00t.tasks import (  # noqa: E402
    Geom,
    ObjectSpec,
    SceneAccess,
    Task,
    TaskEnv,
    get_task,
    make_env,
    sample_positions,
)
from sage_gr00t.tasks import task_names as registered_tasks  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Isaac Lab 3.0 warns on every action write

IMAGE = 48  # small camera: the Newton Warp renderer runs on one CPU core
EMBODIMENT = get_embodiment("sage_humanoid")
_OPEN: list = []  # Isaac Lab has one simulation context per process: one env at a time


def _close_open_envs() -> None:
    while _OPEN:
        _OPEN.pop().close()


def _isaaclab_env(task, **overrides):
    _close_open_envs()
    env = make_env(task, backend="isaaclab", **{"image_height": IMAGE, "image_width": IMAGE, **overrides})
    _OPEN.append(env)
    return env


@pytest.fixture(scope="module")
def pick_apple():
    yield _isaaclab_env("pick_apple")
    _close_open_envs()


def test_tasks_registered_through_entry_point():
    """Every task of the registry gets an Isaac Lab id whose config Isaac Lab's own loader builds."""
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    from sage_gr00t.sim.isaaclab.env_cfg import TabletopEnvCfg
    from sage_gr00t.sim.isaaclab.registration import register_isaaclab_tasks

    points = [e for e in importlib.metadata.entry_points(group="isaaclab.tasks")
              if e.value == "sage_gr00t_tasks.isaaclab"]
    assert points, "pyproject.toml must declare the isaaclab.tasks entry point (reinstall with pip install -e .)"
    points[0].load()
    names = registered_tasks()
    assert {"pick_apple", "sort_blocks", "pour_water"} <= set(names)
    ids = {name: get_task(name).ids().isaaclab for name in names}
    assert ids["pick_apple"] == "SageGr00t-PickApple-v0"
    specs = {gym_id: gym.spec(gym_id) for gym_id in ids.values()}
    assert register_isaaclab_tasks() == [ids[name] for name in names]  # idempotent
    for name, gym_id in ids.items():
        spec = gym.spec(gym_id)
        assert spec is specs[gym_id], "registering again replaced a spec"
        assert spec.entry_point == "isaaclab.envs:ManagerBasedRLEnv" and spec.disable_env_checker
        # A "module:attr" string inside the entry-point package: `isaaclab list_envs` lists the project's tasks.
        assert spec.kwargs["env_cfg_entry_point"].startswith("sage_gr00t_tasks.isaaclab:")
        cfg = load_cfg_from_registry(gym_id, "env_cfg_entry_point")
        assert isinstance(cfg, TabletopEnvCfg) and cfg.task == name
        declared = [o.name for o in get_task(name)().objects()]
        assert all(isinstance(getattr(cfg.scene, n), isaaclab.assets.RigidObjectCfg) for n in declared)


def test_explicit_gains_match_the_mjcf():
    """The robot cfg's servos are the MJCF's: every actuated joint in exactly one group, with its gains."""
    import re

    from sage_gr00t.sim.isaaclab.env_cfg import build_env_cfg

    model = load_robot_spec(EMBODIMENT).compile()
    actuators = build_env_cfg("pick_apple").scene.robot.actuators
    covered: dict[str, str] = {}
    for name, actuator in actuators.items():
        joints = [model.joint(j) for j in range(model.njnt)
                  if any(re.fullmatch(expr, model.joint(j).name) for expr in actuator.joint_names_expr)]
        assert joints, name
        for joint in joints:
            assert joint.name not in covered, f"{joint.name} in {covered.get(joint.name)} and {name}"
            covered[joint.name] = name
            act = next(a for a in range(model.nu) if model.actuator_trnid[a, 0] == joint.id)
            assert actuator.stiffness == pytest.approx(model.actuator_gainprm[act, 0])
            assert actuator.damping == pytest.approx(-model.actuator_biasprm[act, 2])
            assert actuator.joint_effort_limit == pytest.approx(model.actuator_forcerange[act, 1])
            assert actuator.armature == pytest.approx(model.dof_armature[joint.dofadr[0]])
            assert actuator.friction == pytest.approx(model.dof_frictionloss[joint.dofadr[0]])
    assert set(covered) == {model.joint(int(model.actuator_trnid[a, 0])).name for a in range(model.nu)}
    assert len(actuators) == 4  # shoulder, elbow, wrist, finger servos of the sage_humanoid MJCF


def test_embodiment_without_usd_is_a_clear_error():
    from sage_gr00t.sim.isaaclab.env_cfg import build_env_cfg

    with pytest.raises(FileNotFoundError, match=r"convert_assets.py --embodiment unitree_g1"):
        build_env_cfg("pick_apple", embodiment="unitree_g1")
    with pytest.raises(FileNotFoundError, match="unitree_g1"):
        make_env("pick_apple", backend="isaaclab", embodiment="unitree_g1")


def test_physics_settings_follow_the_task_config():
    """Step, decimation, episode length and MuJoCo options as the embedded simulator has them; mujoco_warp
    buffers per task (an unknown task gets the defaults)."""
    from sage_gr00t.sim.config import TaskConfig
    from sage_gr00t.sim.isaaclab.env_cfg import build_env_cfg
    from sage_gr00t.sim.isaaclab.physics import SageMujocoSolverCfg

    config = TaskConfig()
    buffers = {}
    for name in ("pick_apple", "sort_blocks", "pour_water"):
        cfg = build_env_cfg(name)
        assert cfg.sim.dt == config.physics.timestep and cfg.decimation == 25
        assert cfg.episode_length_s == pytest.approx(config.max_steps / config.control_hz)
        solver = cfg.sim.physics.solver_cfg
        assert (solver.integrator, solver.cone) == ("implicitfast", "elliptic")
        assert solver.impratio == config.physics.impratio
        assert (solver.solver, solver.iterations, solver.ls_iterations) == ("newton", 100, 50)
        buffers[name] = (solver.warp_njmax, solver.warp_nconmax)
    assert buffers == {"pick_apple": (200, 40), "sort_blocks": (600, 150), "pour_water": (1600, 500)}
    defaults = SageMujocoSolverCfg()
    assert (defaults.warp_njmax, defaults.warp_nconmax) == buffers["sort_blocks"]


def test_pick_apple_observations_match_the_embedded_env(pick_apple):
    env = pick_apple
    assert isinstance(env, TaskEnv) and isinstance(env.scene, SceneAccess)
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
        for side in ("left", "right"):  # forward kinematics of the MJCF on Isaac Lab's joint state
            np.testing.assert_allclose(env.ee_pos(side), embedded.ee_pos(side), atol=2e-3)
        assert env.sim_time == pytest.approx(embedded.sim_time)
        assert info["success"] is False and ref_info["success"] is False
    finally:
        embedded.close()
    image = obs[EGO_VIEW]
    assert image.std() > 5, "ego_view from the Newton Warp camera is blank"


def test_ego_view_matches_the_embedded_renderer(pick_apple):
    """The same seed's ego view in both backends: per-object mean colours within a few levels, the background
    black, the white plate resting on the table and visible (it used to sink into the table top: Newton's
    MuJoCo solver ran without multi-point convex contacts), the robot's materials as bright as MuJoCo draws them
    (Newton decoded their sRGB-tagged colours). Regression test of `sim.isaaclab.lighting`."""
    import mujoco

    env = pick_apple
    obs, _ = env.reset(seed=1000)
    embedded = make_env("pick_apple", image_height=IMAGE, image_width=IMAGE)
    try:
        ref, _ = embedded.reset(seed=1000)
        renderer = mujoco.Renderer(embedded.model, IMAGE, IMAGE)
        renderer.enable_segmentation_rendering()
        renderer.update_scene(embedded.data, camera="ego_view")
        seg = renderer.render()
        renderer.close()
        geom = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
        body = np.where(geom >= 0, embedded.model.geom_bodyid[np.maximum(geom, 0)], -1)
        names = {b: embedded.model.body(b).name for b in np.unique(body) if b >= 0}
    finally:
        embedded.close()
    assert env.body_pos("plate")[2] == pytest.approx(env.table_height, abs=3e-3)
    image, reference = obs[EGO_VIEW].astype(float), ref[EGO_VIEW].astype(float)
    np.testing.assert_array_equal(image[geom < 0], 0)  # MuJoCo's black background
    robot = np.isin(body, [b for b, n in names.items() if n not in ("world", "table", "plate", "apple")])
    for name, mask in {"table": body == next(b for b, n in names.items() if n == "table"),
                       "plate": body == next(b for b, n in names.items() if n == "plate"), "robot": robot}.items():
        assert mask.sum() > 10, name
        diff = np.abs(image[mask].mean(0) - reference[mask].mean(0)).max()
        assert diff < 6, (name, image[mask].mean(0), reference[mask].mean(0))
    assert np.abs(image - reference).mean() < 6


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
    env = pick_apple
    terms = env.env.event_manager.active_terms["reset"]
    assert not {"object_colors", "ego_camera", "light_direction"} & set(terms)
    first = _render_randomization_state(env)
    env.reset(seed=5)
    second = _render_randomization_state(env)
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key], err_msg=key)
    np.testing.assert_allclose(first["camera_pos"][0], EMBODIMENT.ego_camera.pos, atol=1e-5)


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
    env = _isaaclab_env(task)
    obs, _ = env.reset(seed=1000)
    assert obs[EGO_VIEW].shape == (IMAGE, IMAGE, 3)
    policy = ExpertPolicy(env)
    policy.reset()
    start = obs["state.left_arm"].copy(), obs["state.right_arm"].copy()
    for _ in range(15):
        action = {k: v[0] for k, v in policy.get_action(obs).items()}
        obs, *_ = env.step(action)
    moved = max(np.abs(obs["state.left_arm"] - start[0]).max(), np.abs(obs["state.right_arm"] - start[1]).max())
    assert moved > 0.05, "the expert's arm did not move"
    assert all(np.all(np.isfinite(v)) for k, v in obs.items() if k.startswith("state."))
    _close_open_envs()


def test_expert_completes_pour_water_in_isaaclab():
    """The water stays in the pitcher while settling and the expert pours it: all of 4 seeds.

    Regression test for MuJoCo's midphase, which `physics.NewtonMujocoManager` switches off for C MuJoCo: with
    the bounding-volume hierarchies Newton leaves in a stale inertial frame, the fingers passed
    through the pitcher's thin walls and particles leaked out of it.
    """
    import mujoco

    from sage_gr00t.evaluation import run_episode
    from sage_gr00t_tasks.pour_water import N_PARTICLES, PITCHER_RADIUS

    env = _isaaclab_env("pour_water")
    from isaaclab_newton.physics import NewtonManager

    assert NewtonManager._solver.mj_model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_MIDPHASE
    obs, _ = env.reset(seed=1000)
    assert obs[EGO_VIEW].shape == (IMAGE, IMAGE, 3)
    pitcher = env.body_pos("pitcher")
    water = env.scene.particle_positions("water")
    assert water.shape == (N_PARTICLES, 3)
    inside = np.hypot(*(water[:, :2] - pitcher[:2]).T) < PITCHER_RADIUS
    assert inside.all(), f"{np.count_nonzero(~inside)} particles left the pitcher while settling"
    policy = ExpertPolicy(env)
    results = [run_episode(env, policy, seed) for seed in range(1000, 1004)]
    assert all(r.success for r in results), [(r.seed, r.success, r.steps) for r in results]
    _close_open_envs()


class CubeOnPad(Task):
    """A task with no USD files: a box (plus a visual-only stud) and a setting whose disc sits above its origin,
    spawned by Isaac Lab's shape spawners from the declaration."""

    name = "isaaclab_test_cube_on_pad"

    def objects(self) -> tuple[ObjectSpec, ...]:
        cube = ObjectSpec("cube", (Geom("box", (0.02, 0.02, 0.02), (0.9, 0.5, 0.1, 1), friction=(1.2, 0.02, 0.002)),
                                   Geom("sphere", (0.006,), (0.1, 0.1, 0.1, 1), pos=(0, 0, 0.02), visual_only=True)),
                          kind="cube", role="pickable", mass=0.05, radius=0.02)
        pad = ObjectSpec("pad", (Geom("cylinder", (0.07, 0.005), (0.2, 0.3, 0.8, 1), pos=(0, 0, 0.005)),),
                         kind="pad", role="receptacle", movable=False, radius=0.07)
        return cube, pad

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        z = scene.table_height
        cube, pad = sample_positions(rng, [((0.34, 0.42), (-0.12, -0.02)), ((0.34, 0.42), (0.06, 0.16))], 0.12,
                                     scale=pose_scale)
        scene.set_pose("cube", np.array([*cube, z + 0.021]), yaw=rng.uniform(-np.pi, np.pi))
        scene.set_pose("pad", np.array([*pad, z]))

    def is_success(self, scene: SceneAccess) -> bool:
        cube, pad = scene.body_pos("cube"), scene.body_pos("pad")
        return bool(np.linalg.norm(cube[:2] - pad[:2]) < 0.06 and cube[2] < scene.table_height + 0.04
                    and not scene.touching_robot("cube"))

    def instructions(self) -> list[str]:
        return ["put the cube on the pad"]

    def expert_plan(self) -> list[Subtask]:
        return [Subtask("pick_place", "cube", "pad", "pick up the cube and place it on the pad")]

    def place_height(self, object_name: str, target_name: str) -> float:
        return 0.05


def test_compound_object_without_usd_is_a_clear_error():
    from sage_gr00t.sim.isaaclab.spawners import object_spawner_cfg

    cup = get_task("pour_water")().object("cup")
    with pytest.raises(ValueError, match="15 colliding geoms and no USD file"):
        object_spawner_cfg(cup, "Convert it.")


def test_variants_use_the_usd_of_identical_declarations_only():
    """The converted USD files are the default variant's: another variant uses one only where it declares the
    object identically (sort_blocks' bins), spawns what it can from primitives (its cylinders) and names the
    file to convert for the rest (a pear-like ellipsoid)."""
    from sage_gr00t.sim.isaaclab.env_cfg import build_env_cfg

    scene = build_env_cfg("sort_blocks", "novel").scene
    assert type(scene.red_bin.spawn).__name__ == "UsdFileCfg"
    assert type(scene.purple_block.spawn).__name__ == "DeclaredObjectCfg"
    assert type(scene.red_block.spawn.body.shape).__name__ == "CylinderCfg"
    assert type(build_env_cfg("sort_blocks").scene.red_block.spawn).__name__ == "UsdFileCfg"
    with pytest.raises(ValueError, match=r"\(ellipsoid\).*objects/pick_apple/novel/apple.usdc"):
        build_env_cfg("pick_apple", "novel")


def test_objects_without_usd_spawn_from_their_declaration(monkeypatch):
    """A task without USD files builds from primitives: layout, resting height, colours and mass as declared,
    and the unchanged expert succeeds on it, as on the embedded simulator."""
    from sage_gr00t.evaluation import run_episode
    from sage_gr00t.tasks import TASKS

    TASKS.names()
    monkeypatch.setattr(TASKS, "_tasks", dict(TASKS._tasks))  # make_env registers the class: only for this test

    env = _isaaclab_env(CubeOnPad)
    cfg = env.cfg.scene
    assert type(cfg.cube.spawn).__name__ == "DeclaredObjectCfg" and type(cfg.pad.spawn).__name__ == "DeclaredObjectCfg"
    env.reset(seed=3)
    embedded = make_env(CubeOnPad, image_height=IMAGE, image_width=IMAGE)
    try:
        embedded.reset(seed=3)
        np.testing.assert_allclose(env.body_pos("cube"), embedded.body_pos("cube"), atol=2e-3)
        np.testing.assert_allclose(env.scene.body_quat("cube"), embedded.scene.body_quat("cube"), atol=1e-3)
        np.testing.assert_allclose(env.body_pos("pad")[:2], embedded.body_pos("pad")[:2], atol=2e-3)
        model = env.env.scene["ego_view"]._renderer.backend.model
        bodies = {label.rsplit("/", 1)[-1]: b for b, label in enumerate(model.body_label) if "env_0" in label}
        assert model.body_mass.numpy()[bodies["cube"]] == pytest.approx(0.05)
        colors = model.shape_color.numpy()[model.shape_body.numpy() == bodies["cube"]]
        srgb = np.where(np.array([0.9, 0.5, 0.1]) <= 0.0031308, 12.92 * np.array([0.9, 0.5, 0.1]),
                        1.055 * np.array([0.9, 0.5, 0.1]) ** (1 / 2.4) - 0.055)  # Newton draws linear RGB as sRGB
        assert len(colors) == 2 and np.abs(colors - srgb).max(axis=1).min() < 1e-3  # the box and its stud
        results = [run_episode(e, ExpertPolicy(e), seed) for e in (env, embedded) for seed in (3, 4)]
        assert all(r.success for r in results), [(r.seed, r.success, r.steps) for r in results]
    finally:
        embedded.close()
        _close_open_envs()


def _render_randomization_state(env) -> dict[str, np.ndarray]:
    """Camera local offset / intrinsics, apple + plate shape colours, and the scene lights' directions and diffuse
    (the ego view's `SceneLitEgoView` term lights Newton's albedo with them), as rendered."""
    from sage_gr00t.sim.isaaclab.mdp import scene_lit_ego_view

    camera = env.env.scene["ego_view"]
    pos, _ = camera._view.get_local_poses()
    renderer = camera._renderer
    context = renderer.newton_sensor._SensorTiledCamera__render_context
    model = renderer.backend.model
    assert context.shape_colors.ptr == model.shape_color.ptr  # the renderer draws the model's colour array
    lights = scene_lit_ego_view(env.env)
    return {"camera_pos": pos.torch.cpu().numpy().copy(),
            "intrinsics": np.array(camera.data.intrinsic_matrices.torch.cpu()).copy(),
            "colors": model.shape_color.numpy().copy(),
            "light": lights.directions.cpu().numpy().copy(), "light_diffuse": lights.diffuse.cpu().numpy().copy()}


def test_rendering_randomization_ported_to_isaaclab():
    """'train' profile: colour and camera position / FOV jitter as EventManager reset events, light direction and
    intensity jitter of the scene's lights drawn by the ego view's term at each reset.

    Different seeds give different colours, camera offsets, FOVs, lights and images; the same seed the same
    ones; all within the YAML ranges. The expert still succeeds under randomization.
    """
    from sage_gr00t.evaluation import run_episode
    from sage_gr00t.sim.isaaclab.lighting import SceneLighting, srgb_to_linear
    from sage_gr00t.sim.randomization import DomainRandomizationConfig

    config = DomainRandomizationConfig.from_yaml(profile="train")
    env = _isaaclab_env("pick_apple", randomization=config)
    terms = env.env.event_manager.active_terms["reset"]
    assert {"object_colors", "ego_camera"} <= set(terms) and "light_direction" not in terms
    states, images = [], []
    for seed in (1, 2, 1):
        obs, _ = env.reset(seed=seed)
        states.append(_render_randomization_state(env))
        images.append(obs[EGO_VIEW].astype(int))
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
    offset = a["camera_pos"][0] - np.asarray(EMBODIMENT.ego_camera.pos)
    assert np.all(np.abs(offset) <= config.camera_position_jitter + 1e-5) and np.abs(offset).max() > 0
    height = env.env.scene["ego_view"].cfg.height  # the rendered (supersampled) height the intrinsics are for
    fovy = np.rad2deg(2 * np.arctan(height / 2 / a["intrinsics"][0, 1, 1]))
    assert abs(fovy - EMBODIMENT.ego_camera.fovy) <= config.camera_fovy_jitter + 1e-3
    changed = np.abs(a["colors"] - nominal_colors).max(axis=1) > 1e-6
    # The jitter applies to the MJCF rgba (Newton stores it sRGB-encoded), as the embedded simulator's does.
    jitter = np.abs(srgb_to_linear(a["colors"]) - srgb_to_linear(nominal_colors)).max()
    assert changed.any() and jitter <= config.color_jitter + 1e-4
    model = env.env.scene["ego_view"]._renderer.backend.model
    labels = [model.body_label[b] for b in model.shape_body.numpy()[changed]]
    assert {label.split("/")[4] for label in labels} <= {"apple", "plate"}, labels  # task objects only
    nominal = SceneLighting.of_scene("sage_humanoid")
    assert np.abs(a["light"][0] - nominal.directions).max() <= config.light_direction_jitter + 1e-5
    scale = a["light_diffuse"][0] / nominal.diffuse
    assert np.allclose(scale, scale.flat[0], atol=1e-5)  # one intensity draw for all lights
    assert config.light_intensity[0] - 1e-5 <= scale.flat[0] <= config.light_intensity[1] + 1e-5
    policy = ExpertPolicy(env)
    results = [run_episode(env, policy, seed) for seed in (1000, 1001)]
    assert all(r.success for r in results), [(r.seed, r.success, r.steps) for r in results]
    _close_open_envs()


def test_depth_and_calibration_let_sage_perceive_in_isaaclab():
    """SAGE's camera perception on Isaac Lab's frames: planar depth (NaN where nothing is hit), the camera's pose
    and intrinsics in the embedded simulator's convention, so the colour + depth estimator finds each object where
    it is. Compared with the embedded env on the same seed; a size other than the camera's is one clear error."""
    from sage_gr00t.perceive.camera import CameraConfig, CameraObjectEstimator, capture_frame

    size = 96  # the estimator's smallest objects (the apple) need more than the 48 px of the other tests
    env = _isaaclab_env("pick_apple", image_height=size, image_width=size)
    embedded = make_env("pick_apple", image_height=size, image_width=size)
    try:
        obs, _ = env.reset(seed=1000)
        embedded.reset(seed=1000)
        depth, reference = env.render_depth("ego_view", size, size), embedded.render_depth("ego_view", size, size)
        assert depth.shape == (size, size) and depth.dtype == np.float32
        hit = np.isfinite(depth)
        assert 0.5 < hit.mean() < 1.0  # the table and robot, not the sky behind them
        assert np.all(reference[~hit] > 3.0), "Isaac Lab missed surfaces that MuJoCo renders"
        assert np.median(np.abs(depth[hit] - reference[hit])) < 0.005
        pos, rot, *k = env.camera_pose_intrinsics("ego_view", size, size)
        ref_pos, ref_rot, *ref_k = embedded.camera_pose_intrinsics("ego_view", size, size)
        np.testing.assert_allclose(pos, ref_pos, atol=1e-3)
        np.testing.assert_allclose(rot, ref_rot, atol=1e-4)
        np.testing.assert_allclose(k, ref_k, rtol=1e-5)
        config = CameraConfig(height=size, width=size, table_height=float(env.table_height))
        frame = capture_frame(env, config, env.sim_time, obs[EGO_VIEW])
        estimates = CameraObjectEstimator(env.task.signatures(), config).estimate(frame).estimates
        assert set(estimates) >= {"apple", "plate"}
        for name, estimate in estimates.items():
            true = env.body_pos(name)
            assert np.linalg.norm(estimate.position - true) < 0.025, f"{name}: {estimate.position.round(3)} vs {true}"
        with pytest.raises(ValueError, match="renders one camera"):
            env.render_depth("ego_view", size * 2, size * 2)
    finally:
        embedded.close()
        _close_open_envs()
