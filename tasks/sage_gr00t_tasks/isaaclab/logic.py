"""The embedded tasks' logic (layouts, instructions, expert plans, success predicates) on Isaac Lab state.

`task_logic(env)` returns an object of the embedded task class (e.g. `PickAppleEnv`) with the
simulator-facing methods -- `body_pos`, `body_quat`, `set_free_body_pose`, `set_fixed_body_pos`,
`touching_robot`, `state` -- reimplemented on an Isaac Lab `ManagerBasedRLEnv`. Its MuJoCo
`__init__` never runs, so the task code (`place_objects`, `is_success`, `grasp_spec`, ...) is shared
verbatim between both backends and a seed gives the same layout in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mujoco
import numpy as np
import torch

from sage_gr00t.sim.embodiment import SAGE_HUMANOID, load_robot_spec
from sage_gr00t_tasks.base import TaskConfig
from sage_gr00t_tasks.registry import TASKS

# Extra distance (m) below which an object counts as touching a hand collider (contact proxy:
# the distance between the object's centre and the hand's box colliders, minus the object's radius).
TOUCH_MARGIN = 0.006
# Radius (m) of each object for the contact proxy (the half-width a finger meets when grasping).
OBJECT_RADIUS = {"apple": 0.033, "red_block": 0.022, "blue_block": 0.022, "green_block": 0.022,
                 "purple_block": 0.022, "pitcher": 0.04}


def _hand_boxes(side: str) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(body, centre in body frame, rotation body<-box, half sizes) of a hand's box colliders."""
    model = load_robot_spec(SAGE_HUMANOID).compile()
    boxes = []
    for body in (f"{side}_hand", f"{side}_finger_a", f"{side}_finger_b"):
        bid = model.body(body).id
        for g in range(model.ngeom):
            if model.geom_bodyid[g] == bid and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX and (
                model.geom_contype[g] or model.geom_conaffinity[g]
            ):
                rot = np.zeros(9)
                mujoco.mju_quat2Mat(rot, model.geom_quat[g])
                boxes.append((body, model.geom_pos[g].copy(), rot.reshape(3, 3), model.geom_size[g].copy()))
    return boxes


def _quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


class IsaacLabTaskLogic:
    """Mixin placed before an embedded task class: simulator access goes to Isaac Lab instead of MuJoCo."""

    sim_env = None  # the ManagerBasedRLEnv
    env_index = 0  # which of its environments the methods read and write
    _snapshot: dict[str, np.ndarray] | None = None  # host copies of all envs' state, see `reading_all_envs`

    def _init_isaaclab(self, env, config: TaskConfig) -> None:
        self.sim_env = env
        self.config = config
        self.embodiment = SAGE_HUMANOID
        self.instruction = ""
        self.step_count = 0
        self.env_index = 0
        self.episode_rng: np.random.Generator | None = None
        self._boxes = _hand_boxes("left") + _hand_boxes("right")
        robot = env.scene["robot"]
        names = sorted({b[0] for b in self._boxes})
        ids, found = robot.find_bodies(names, preserve_order=True)
        self._hand_body_ids = dict(zip(found, ids, strict=True))
        self._joint_ids = {
            group: robot.find_joints(list(joints), preserve_order=True)[0]
            for group, joints in self.embodiment.state_groups.items()
        }

    # ------------------------------------------------------------------ state access
    @contextmanager
    def reading_all_envs(self) -> Iterator[None]:
        """Within, the task code may run once per env (setting `env_index`) on a host copy of the state:
        each quantity is copied off the device once for all envs, not once per env and call (on a GPU
        each copy waits for the device). Read-only: writes raise."""
        self._snapshot = {}
        try:
            yield
        finally:
            self._snapshot = None
            self.env_index = 0

    def _read(self, key: str, fetch: Callable[[], torch.Tensor]) -> np.ndarray:
        """This env's row of a per-env state tensor (from the snapshot while `reading_all_envs`)."""
        if self._snapshot is None:
            return fetch()[self.env_index].cpu().numpy()
        if key not in self._snapshot:
            self._snapshot[key] = fetch().cpu().numpy()
        return self._snapshot[key][self.env_index]

    def _origin(self) -> np.ndarray:
        return self._read("env_origins", lambda: self.sim_env.scene.env_origins).astype(np.float64)

    def _root_pose(self, name: str) -> np.ndarray:
        return self._read(name, lambda: self.sim_env.scene[name].data.root_link_pose_w.torch).astype(np.float64)

    def body_id(self, name: str) -> str:  # names identify scene entities here
        if name not in self.sim_env.scene.keys():  # noqa: SIM118 (InteractiveScene has no __contains__)
            raise ValueError(f"Task {self.task_name}: no object named {name!r} in the Isaac Lab scene.")
        return name

    def body_pos(self, name: str) -> np.ndarray:
        return self._root_pose(self.body_id(name))[:3] - self._origin()

    def body_quat(self, name: str) -> np.ndarray:
        """(w, x, y, z), MuJoCo's order (Isaac Lab 3 stores x, y, z, w)."""
        x, y, z, w = self._root_pose(self.body_id(name))[3:]
        return np.array([w, x, y, z])

    def _write_pose(self, name: str, pos: np.ndarray, quat_wxyz: np.ndarray) -> None:
        if self._snapshot is not None:
            raise RuntimeError(f"Cannot move {name!r} while reading all envs' state (a read-only snapshot).")
        asset = self.sim_env.scene[self.body_id(name)]
        w, x, y, z = quat_wxyz
        pose = torch.tensor([[*(np.asarray(pos, float) + self._origin()), x, y, z, w]], dtype=torch.float32,
                            device=self.sim_env.device)
        ids = torch.tensor([self.env_index], dtype=torch.long, device=self.sim_env.device)
        asset.write_root_pose_to_sim_index(root_pose=pose, env_ids=ids)
        asset.write_root_velocity_to_sim_index(root_velocity=torch.zeros((1, 6), device=self.sim_env.device),
                                               env_ids=ids)

    def set_free_body_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        self._write_pose(name, pos, np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]))

    def set_fixed_body_pos(self, name: str, pos: np.ndarray) -> None:
        self._write_pose(name, pos, np.array([1.0, 0.0, 0.0, 0.0]))  # kinematic body

    def touching_robot(self, name: str) -> bool:
        """Contact proxy: the object's centre is within its radius (+ margin) of a hand box collider."""
        centre = self._root_pose(self.body_id(name))[:3]
        radius = OBJECT_RADIUS.get(name, 0.03)
        poses = self._read("robot.body_link_pose_w", lambda: self.sim_env.scene["robot"].data.body_link_pose_w.torch)
        for body, pos, rot, half in self._boxes:
            pose = poses[self._hand_body_ids[body]].astype(np.float64)
            body_rot = _quat_xyzw_to_mat(pose[3:])
            local = (body_rot @ rot).T @ (centre - (pose[:3] + body_rot @ pos))
            gap = np.linalg.norm(local - np.clip(local, -half, half))
            if gap < radius + TOUCH_MARGIN:
                return True
        return False

    def state(self) -> dict[str, np.ndarray]:
        q = self._read("robot.joint_pos", lambda: self.sim_env.scene["robot"].data.joint_pos.torch)
        return {f"state.{g}": q[ids].astype(np.float32) for g, ids in self._joint_ids.items()}

    def particles_in_cup(self) -> int:
        cup = self.body_pos("cup")
        count = 0
        for i in range(self.N_PARTICLES):
            p = self.body_pos(f"water{i}")
            if np.hypot(*(p[:2] - cup[:2])) < self.CUP_RADIUS and cup[2] < p[2] < cup[2] + self.CUP_HEIGHT:
                count += 1
        return count


def task_logic(env) -> IsaacLabTaskLogic:
    """The (cached) task-logic object of an Isaac Lab env built from a `TabletopEnvCfg`."""
    logic = getattr(env, "_sage_task_logic", None)
    if logic is None:
        base = TASKS[env.cfg.task]
        cls = type(f"IsaacLab{base.__name__}", (IsaacLabTaskLogic, base), {})
        logic = cls.__new__(cls)
        logic._init_isaaclab(env, TaskConfig(variant=env.cfg.variant))
        env._sage_task_logic = logic
    return logic
