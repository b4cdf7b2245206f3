"""`IsaacLabScene`: the task's `SceneAccess` on an Isaac Lab `ManagerBasedRLEnv` built by `build_env_cfg`.

The task's own code (`place`, `is_success`, `grasp`) runs unchanged on Isaac Lab state: one environment at a
time (`env_index`), positions in that env's frame (its origin subtracted), quaternions (w, x, y, z).
Contacts with the robot are a geometric proxy (Isaac Lab's Newton path has no contact sensor here): an
object touches the robot when its declared `radius` (+ `TOUCH_MARGIN`) reaches a hand collider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import mujoco
import numpy as np
import torch

from sage_gr00t.modality import state_key
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.embodiment import SIDES, get_embodiment
from sage_gr00t.sim.isaaclab.robot import RobotKinematics, hand_colliders, robot_model
from sage_gr00t.tasks.registry import get_task
from sage_gr00t.tasks.spec import Task

if TYPE_CHECKING:
    from isaaclab.envs import ManagerBasedRLEnv

# Extra distance (m) within which an object counts as touching a hand collider (the contact proxy).
TOUCH_MARGIN = 0.006


def quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of an Isaac Lab quaternion (x, y, z, w), through MuJoCo's (w, x, y, z) routine."""
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, np.array([q[3], q[0], q[1], q[2]], dtype=np.float64))
    return rot.reshape(3, 3)


class IsaacLabScene:
    """`SceneAccess` on environment `env_index` of a `ManagerBasedRLEnv` whose scene entities are the task's
    objects and particles (named as declared)."""

    def __init__(self, env: ManagerBasedRLEnv, task: Task, config: TaskConfig) -> None:
        self.env = env
        self.task = task
        self.config = config
        self.embodiment = get_embodiment(config.embodiment)
        self.env_index = 0  # which environment the methods read and write
        # Set by `IsaacLabTaskEnv.reset` around `env.reset`: the placement event draws the layout from it, so a
        # seed gives the embedded simulator's layout. None: the event seeds a generator from torch's RNG.
        self.episode_rng: np.random.Generator | None = None
        self._snapshot: dict[str, np.ndarray] | None = None  # host copies of all envs' state (`reading_all_envs`)
        self._entities = set(env.scene.rigid_objects) | set(env.scene.articulations)
        self._radius = {o.name: o.radius for o in task.objects()}
        self._particles: dict[str, list[str]] = {}
        for p in task.particles():
            self._particles[p.name] = [f"{p.name}{i}" for i in range(p.count)]
            self._radius.update(dict.fromkeys(self._particles[p.name], p.radius))
        model = robot_model(self.embodiment.name)
        self._colliders = [c for side in SIDES for c in hand_colliders(model, self.embodiment, side)]
        robot = env.scene["robot"]
        names = sorted({c.body for c in self._colliders})
        ids, found = robot.find_bodies(names, preserve_order=True)
        self._hand_body_ids = dict(zip(found, ids, strict=True))
        self._joint_ids = {group: robot.find_joints(list(joints), preserve_order=True)[0]
                           for group, joints in self.embodiment.state_groups.items()}
        self._kinematics = RobotKinematics(model, robot.joint_names)

    @classmethod
    def for_env(cls, env: ManagerBasedRLEnv) -> IsaacLabScene:
        """The scene of an env built from a `TabletopEnvCfg` (e.g. by `gym.make`): the task from the registry."""
        cfg = env.cfg
        return cls(env, get_task(cfg.task)(cfg.variant), TaskConfig(embodiment=cfg.embodiment, variant=cfg.variant))

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

    def env_origin(self) -> np.ndarray:
        return self._read("env_origins", lambda: self.env.scene.env_origins).astype(np.float64)

    def _entity(self, name: str) -> str:
        if name not in self._entities:
            raise ValueError(f"Task {self.task.name}: no object named {name!r} in the Isaac Lab scene.")
        return name

    def _root_pose(self, name: str) -> np.ndarray:
        """(x, y, z, qx, qy, qz, qw) in the world frame."""
        return self._read(name, lambda: self.env.scene[name].data.root_link_pose_w.torch).astype(np.float64)

    def _joint_pos(self) -> np.ndarray:
        return self._read("robot.joint_pos", lambda: self.env.scene["robot"].data.joint_pos.torch)

    # ------------------------------------------------------------------ SceneAccess
    @property
    def table_height(self) -> float:
        return self.config.table.height

    def body_pos(self, name: str) -> np.ndarray:
        return self._root_pose(self._entity(name))[:3] - self.env_origin()

    def body_quat(self, name: str) -> np.ndarray:
        """(w, x, y, z), MuJoCo's order (Isaac Lab 3 stores x, y, z, w)."""
        x, y, z, w = self._root_pose(self._entity(name))[3:]
        return np.array([w, x, y, z])

    def set_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        """Movable objects and settings alike: settings are dynamic bodies resting on the table here (see
        `env_cfg`), written once per reset; velocities zeroed."""
        if self._snapshot is not None:
            raise RuntimeError(f"Cannot move {name!r} while reading all envs' state (a read-only snapshot).")
        asset = self.env.scene[self._entity(name)]
        device = self.env.device
        xyz = np.asarray(pos, float) + self.env_origin()
        pose = torch.tensor([[*xyz, 0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]], dtype=torch.float32, device=device)
        ids = torch.tensor([self.env_index], dtype=torch.long, device=device)
        asset.write_root_pose_to_sim_index(root_pose=pose, env_ids=ids)
        asset.write_root_velocity_to_sim_index(root_velocity=torch.zeros((1, 6), device=device), env_ids=ids)

    def touching_robot(self, name: str) -> bool:
        """Contact proxy: the object's centre is within its declared radius (+ margin) of a hand collider."""
        centre = self._root_pose(self._entity(name))[:3]
        reach = self._radius.get(name, 0.0) + TOUCH_MARGIN
        poses = self._read("robot.body_link_pose_w", lambda: self.env.scene["robot"].data.body_link_pose_w.torch)
        for collider in self._colliders:
            pose = poses[self._hand_body_ids[collider.body]].astype(np.float64)
            body_rot = quat_xyzw_to_mat(pose[3:])
            local = (body_rot @ collider.rot).T @ (centre - (pose[:3] + body_rot @ collider.pos))
            if np.linalg.norm(local - np.clip(local, -collider.half, collider.half)) < reach:
                return True
        return False

    def joint_state(self) -> dict[str, np.ndarray]:
        q = self._joint_pos()
        return {state_key(g): q[ids].astype(np.float32) for g, ids in self._joint_ids.items()}

    def particle_positions(self, name: str) -> np.ndarray:
        if name not in self._particles:
            raise ValueError(f"Task {self.task.name}: no particles named {name!r}.")
        return np.array([self.body_pos(p) for p in self._particles[name]])

    # ------------------------------------------------------------------ beyond SceneAccess
    def ee_pos(self, side: str) -> np.ndarray:
        """End-effector site position (env frame): forward kinematics of the MJCF from the joint state."""
        return self._kinematics.site_pos(self._joint_pos().astype(np.float64), self.embodiment.arm(side).ee_site)
