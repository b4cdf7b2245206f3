"""Isaac Lab tasks with several environments: real Newton with mujoco_warp on Warp's CPU device.

Built the usual Isaac Lab way (`parse_env_cfg(..., num_envs=, device=)` + `gym.make(..., cfg=)`, the config
from the registered id's entry point); the solver follows the env count (`physics.SageMujocoSolverCfg`).
Needs the `isaaclab` extra; skipped when isaaclab is not importable. The first run on a machine JIT-compiles
mujoco_warp's kernels (~30 s more, cached in Warp's kernel cache afterwards).

The same tests on a GPU with more envs (what was run on a lent H100, see README):
    SAGE_ISAACLAB_TEST_DEVICE=cuda:0 SAGE_ISAACLAB_TEST_ENVS=256 pytest tests/test_isaaclab_multienv.py
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

isaaclab = pytest.importorskip("isaaclab", reason="isaaclab not installed (pip install -e '.[isaaclab]')")
pytest.importorskip("isaaclab_newton", reason="isaaclab_newton (Isaac Lab 3.0's Newton backend) not importable")
pytest.importorskip("mujoco_warp", reason="mujoco_warp (Newton's multi-world MuJoCo backend) not installed")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

from sage_gr00t.modality import JOINT_GROUPS  # noqa: E402
from sage_gr00t.sim.actions import home_action  # noqa: E402
from sage_gr00t.sim.config import TaskConfig  # noqa: E402
from sage_gr00t.sim.embodiment import get_embodiment  # noqa: E402
from sage_gr00t.sim.isaaclab.env import action_tensor  # noqa: E402
from sage_gr00t.sim.isaaclab.registration import register_installed_tasks  # noqa: E402
from sage_gr00t.tasks import get_task  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

DEVICE = os.environ.get("SAGE_ISAACLAB_TEST_DEVICE", "cpu")
N = int(os.environ.get("SAGE_ISAACLAB_TEST_ENVS", "4"))
IMAGE = 32
STEPS = 24  # control steps (x 25 physics steps) holding the home pose
SETTLE = 6  # objects placed at reset settle onto the table first (the plate sinks ~1.6 cm, C MuJoCo alike)
TASK = get_task("pick_apple").ids().isaaclab
EMBODIMENT = get_embodiment("sage_humanoid")
register_installed_tasks()  # what the `isaaclab.tasks` entry point does when Isaac Lab starts


def _make(num_envs: int, device: str = DEVICE, randomization=None):
    from isaaclab.app import launch_simulation
    from isaaclab_tasks.utils import parse_env_cfg

    cfg = parse_env_cfg(TASK, device=device, num_envs=num_envs)
    cfg.set_camera_size(IMAGE, IMAGE)
    if randomization is not None:
        cfg.apply_randomization(randomization)
    stack = contextlib.ExitStack()
    stack.enter_context(launch_simulation(cfg, {}))
    env = gym.make(TASK, cfg=cfg).unwrapped
    stack.callback(env.close)
    return env, stack


def _home(env) -> torch.Tensor:
    return action_tensor(home_action(EMBODIMENT), env.device, env.num_envs)


def _object_xyz(env) -> dict[str, np.ndarray]:
    origins = env.scene.env_origins.cpu().numpy()
    return {name: env.scene[name].data.root_link_pose_w.torch.cpu().numpy()[:, :3] - origins
            for name in env.scene.rigid_objects}


def test_backend_follows_env_count_and_device():
    """C MuJoCo only for one env on the CPU; mujoco_warp (per-world buffers) for several envs or CUDA."""
    from isaaclab_tasks.utils import parse_env_cfg

    from sage_gr00t.sim.isaaclab.physics import resolve_solver_cfg

    cfg = parse_env_cfg(TASK, device="cuda:0", num_envs=64)  # only configs: nothing is built on a GPU here
    assert cfg.scene.num_envs == 64 and cfg.sim.device == "cuda:0"
    solver = cfg.sim.physics.solver_cfg
    assert solver.use_mujoco_cpu is None  # decided at build time
    cpu1, cpu4, cuda1 = (resolve_solver_cfg(solver, n, d) for n, d in ((1, "cpu"), (4, "cpu"), (1, "cuda:0")))
    assert cpu1.use_mujoco_cpu and (cpu1.njmax, cpu1.nconmax) == (solver.cpu_njmax, solver.cpu_nconmax)
    for warp in (cpu4, cuda1):
        assert warp.use_mujoco_cpu is False and (warp.njmax, warp.nconmax) == (solver.warp_njmax, solver.warp_nconmax)
    solver.use_mujoco_cpu = True
    with pytest.raises(ValueError, match="single environment"):
        resolve_solver_cfg(solver, 4, "cpu")


def test_many_envs_on_mujoco_warp():
    """N envs through mujoco_warp (Warp's CPU here): per-env layouts and images, stable under the home pose."""
    env, stack = _make(N)
    with stack:
        _check_many_envs(env)


def _check_many_envs(env) -> None:
    from isaaclab_newton.physics import NewtonManager

    table_z = TaskConfig().table.height
    solver = NewtonManager._solver
    assert not solver.use_mujoco_cpu and solver.mjw_data.nworld == N, "expected mujoco_warp with one world per env"

    obs, _ = env.reset(seed=0)
    start = _object_xyz(env)
    # Each env draws its own layout from the task's sampler: no two envs share one. (Compared as whole
    # layouts: with hundreds of envs, two may place one object, or even all, within a centimetre by chance.)
    layouts = np.concatenate([xyz[:, :2] for xyz in start.values()], axis=1)
    gaps = np.linalg.norm(layouts[:, None] - layouts[None], axis=-1)[np.triu_indices(N, 1)]
    assert gaps.min() > 1e-3, f"two envs share a layout: {layouts.round(3).tolist()}"
    env.reset(seed=0)
    for name, xyz in _object_xyz(env).items():
        np.testing.assert_allclose(xyz, start[name], atol=1e-5, err_msg=f"{name}: seed does not reproduce layouts")

    home = _home(env)
    for step in range(STEPS):
        if step == SETTLE:
            settled = _object_xyz(env)
        obs, *_ = env.step(home)
        joints = env.scene["robot"].data.joint_pos.torch
        assert torch.isfinite(joints).all(), "non-finite joint state"
    data = solver.mjw_data  # no constraint / contact overflow in mujoco_warp's per-world buffers
    assert data.nefc.numpy().max() < data.njmax and data.nacon.numpy()[0] < data.naconmax
    end = _object_xyz(env)
    for name, xyz in end.items():
        assert np.isfinite(xyz).all(), name
        assert np.all(np.abs(xyz[:, 2] - table_z) < 0.06), f"{name} left the table: z={xyz[:, 2].round(3).tolist()}"
        drift = np.linalg.norm(xyz - settled[name], axis=1)
        assert drift.max() < 0.005, f"{name} moved {drift.round(4).tolist()} m while the robot held still"
        speed = np.linalg.norm(env.scene[name].data.root_lin_vel_w.torch.cpu().numpy(), axis=1)
        assert speed.max() < 0.05, f"{name} still moving at {speed.round(3).tolist()} m/s"
    robot = env.scene["robot"]
    columns = [robot.joint_names.index(j) for j in _action_joint_order()]
    np.testing.assert_allclose(robot.data.joint_pos.torch.cpu().numpy()[:, columns], home.cpu().numpy(), atol=0.03)

    images = obs["policy"]["ego_view"]
    assert images.shape == (N, IMAGE, IMAGE, 3) and images.dtype == torch.uint8
    images = images.cpu().numpy().astype(int)
    assert min(image.std() for image in images) > 20, "a blank ego view"
    # Envs whose layouts differ by a few centimetres see different frames (each env renders its own world,
    # not env 0's, not a blank). At 32 px the apple covers 0-3 pixels, so a few pairs among hundreds of envs
    # may still render alike by chance (0.75% of pairs at 32 envs); a rendering bug makes nearly all alike.
    final = np.concatenate([xyz[:, :2] for xyz in end.values()], axis=1)
    pairs = [(i, j) for i in range(N) for j in range(i + 1, N) if np.linalg.norm(final[i] - final[j]) > 0.03]
    assert len(pairs) >= N * (N - 1) // 4, "too few distinct layouts to compare frames"
    alike = [(i, j) for i, j in pairs if np.abs(images[i] - images[j]).mean() < 0.1]
    assert len(alike) <= 0.05 * len(pairs), f"envs render the same frame: {len(alike)} of {len(pairs)} pairs"
    _check_batched_reads(env)


def _check_batched_reads(env) -> None:
    """The task predicates read all envs' state through one host snapshot (`reading_all_envs`): the same
    values as reading each env on its own, and no writes into it."""
    from sage_gr00t.sim.isaaclab.mdp import task_scene

    scene = task_scene(env)
    names = scene.task.object_names()

    def read_env(index: int) -> tuple:
        scene.env_index = index
        return ([scene.body_pos(n) for n in names], [scene.body_quat(n) for n in names], scene.joint_state(),
                [scene.touching_robot(n) for n in names], scene.task.is_success(scene))

    single = [read_env(i) for i in range(N)]
    with scene.reading_all_envs():
        batched = [read_env(i) for i in range(N)]
        with pytest.raises(RuntimeError, match="read-only snapshot"):
            scene.set_pose(names[0], single[0][0][0])
    assert scene.env_index == 0
    for index, (one, many) in enumerate(zip(single, batched, strict=True)):
        np.testing.assert_allclose(np.array(many[0]), np.array(one[0]), err_msg=f"env {index}: positions")
        np.testing.assert_allclose(np.array(many[1]), np.array(one[1]), err_msg=f"env {index}: orientations")
        for key in one[2]:
            np.testing.assert_array_equal(many[2][key], one[2][key], err_msg=f"env {index}: {key}")
        assert many[3:] == one[3:], f"env {index}: contacts / success differ"


def _action_joint_order() -> list[str]:
    return [j for g in JOINT_GROUPS for j in EMBODIMENT.state_groups[g]]


def _camera_state(env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    camera = env.scene["ego_view"]
    pos, _ = camera._view.get_local_poses()
    colors = env.scene["ego_view"]._renderer.backend.model.shape_color.numpy().copy()
    return pos.torch.cpu().numpy().copy(), np.array(camera.data.intrinsic_matrices.torch.cpu()).copy(), colors


def test_randomization_events_per_env():
    """'train' profile with N envs: per-env layouts, colours, camera offsets and lights; one shared FOV (Newton
    Warp traces one ray field for all worlds); a partial reset re-draws only the reset envs."""
    from sage_gr00t.sim.randomization import DomainRandomizationConfig

    config = DomainRandomizationConfig.from_yaml(profile="train")
    env, stack = _make(N, randomization=config)
    with stack:
        terms = env.event_manager.active_terms["reset"]
        assert {"object_colors", "ego_camera"} <= set(terms)
        env.reset(seed=1)
        from sage_gr00t.sim.isaaclab.mdp import scene_lit_ego_view

        lights = scene_lit_ego_view(env).directions.cpu().numpy()  # the scene's lights, drawn per env
        assert len({light.round(6).tobytes() for light in lights}) == N, "light directions shared between envs"
        pos, intrinsics, colors = _camera_state(env)
        offsets = pos - np.asarray(EMBODIMENT.ego_camera.pos)
        assert np.all(np.abs(offsets) <= config.camera_position_jitter + 1e-5)
        assert len({tuple(o.round(6)) for o in offsets}) == N, "camera offsets shared between envs"
        np.testing.assert_allclose(intrinsics, np.broadcast_to(intrinsics[0], intrinsics.shape))
        shapes = env.event_manager.get_term_cfg("object_colors").func._shapes
        object_colors = [colors[shapes[i]].round(5).tobytes() for i in range(N)]
        assert len(set(object_colors)) == N, "object colours shared between envs"

        home = _home(env)
        for _ in range(2):
            obs, *_ = env.step(home)
        assert obs["policy"]["ego_view"].shape == (N, IMAGE, IMAGE, 3)
        assert all(torch.isfinite(obs["policy"][g]).all() for g in JOINT_GROUPS)
        from isaaclab_newton.physics import NewtonManager

        model = NewtonManager._solver.mjw_model  # mass / friction / gain draws reach mujoco_warp's worlds
        for field in ("body_mass", "geom_friction", "actuator_gainprm"):
            rows = getattr(model, field).numpy().reshape(N, -1)
            assert len(np.unique(rows.round(5), axis=0)) == N, f"{field} shared between mujoco_warp worlds"

        before, layouts = _camera_state(env), _object_xyz(env)
        env.reset(env_ids=torch.tensor([1, 3], device=env.device))
        after, relaid = _camera_state(env), _object_xyz(env)
        kept, redrawn = [0, 2], [1, 3]
        np.testing.assert_allclose(after[0][kept], before[0][kept])
        assert not np.allclose(after[0][redrawn], before[0][redrawn]), "reset envs kept their camera offsets"
        for name in layouts:
            np.testing.assert_allclose(relaid[name][kept, :2], layouts[name][kept, :2], atol=1e-3)
            assert np.abs(relaid[name][redrawn, :2] - layouts[name][redrawn, :2]).max() > 0.005, name
        for index in kept:
            np.testing.assert_array_equal(after[2][shapes[index]], before[2][shapes[index]])
