"""Shared gymnasium environment for humanoid tabletop tasks on the embedded MuJoCo simulator.

Observations and actions use GR00T's modality names:
    video.ego_view (H, W, 3) uint8, state.{left,right}_{arm,hand} float32,
    annotation.human.task_description str;  actions action.{left,right}_{arm,hand} (joint targets).
"""

from __future__ import annotations

import collections
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import gymnasium as gym
import mujoco
import numpy as np

from sage_gr00t.sim.embodiment import ROBOT_COLLISION_BIT, EmbodimentSpec, get_embodiment
from sage_gr00t.sim.randomization import DomainRandomizationConfig, DomainRandomizer
from sage_gr00t.sim.scene import PhysicsConfig, TableConfig, new_scene
from sage_gr00t.skills import Subtask

VARIANTS = ("train", "novel")
STATE_GROUPS = ("left_arm", "right_arm", "left_hand", "right_hand")
ACTION_KEYS = tuple(f"action.{g}" for g in STATE_GROUPS)
LANGUAGE_KEY = "annotation.human.task_description"


@dataclass
class TaskConfig:
    embodiment: str = "sage_humanoid"
    variant: str = "train"
    image_height: int = 224
    image_width: int = 224
    control_hz: float = 20.0
    max_steps: int = 400
    settle_steps: int = 100  # physics steps after placing objects, before the first observation
    randomization: DomainRandomizationConfig = field(default_factory=DomainRandomizationConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    table: TableConfig = field(default_factory=TableConfig)


@dataclass(frozen=True)
class GraspSpec:
    """How to grasp an object: ee-site height above the body origin, yaw, and hand closure."""

    height: float
    yaw: float = 0.0
    lift: float = 0.15
    close_fraction: float = 1.0


@dataclass(frozen=True)
class PourSpec:
    """How to pour: where the end effector goes relative to the target, and the tilt."""

    container_offset: tuple[float, float, float]  # ee target minus target body origin (x, y; z ignored)
    pour_height: float  # ee height above the table while pouring
    tilt_axis: tuple[float, float, float]  # world axis of the tilt
    tilt_angle: float
    tilt_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ee motion during the tilt
    tilt_steps: int = 20
    hold_steps: int = 30


class InvalidActionError(ValueError):
    """An action dict that must not reach the simulator."""


def home_action(embodiment: EmbodimentSpec) -> dict[str, np.ndarray]:
    """Arms at their home pose, hands open: every backend's neutral command."""
    return {
        "action.left_arm": np.array(embodiment.left.arm_home, np.float32),
        "action.right_arm": np.array(embodiment.right.arm_home, np.float32),
        "action.left_hand": np.array(embodiment.left.hand_open, np.float32),
        "action.right_hand": np.array(embodiment.right.hand_open, np.float32),
    }


def check_action(action: dict, ctrl_range: dict[str, np.ndarray], embodiment: str) -> dict[str, np.ndarray]:
    """Keys, shapes, finiteness and joint ranges of an action dict -> {action key: float64 values}.

    Every backend runs this before touching its simulator; `ctrl_range` is (d, 2) bounds per group.
    """
    if not isinstance(action, dict):
        raise InvalidActionError(f"Action must be a dict with keys {ACTION_KEYS}, got {type(action).__name__}.")
    missing = [k for k in ACTION_KEYS if k not in action]
    if missing:
        raise InvalidActionError(f"Action is missing keys {missing}; expected {ACTION_KEYS}.")
    out = {}
    for key in ACTION_KEYS:
        group = key.removeprefix("action.")
        value = np.asarray(action[key], dtype=np.float64)
        expected = (len(ctrl_range[group]),)
        if value.shape != expected:
            raise InvalidActionError(
                f"{key} has shape {value.shape}, expected {expected} for embodiment "
                f"{embodiment} (one control step; execute action chunks step by step)."
            )
        if not np.all(np.isfinite(value)):
            raise InvalidActionError(f"{key} contains NaN or inf: {value}. The robot holds its pose.")
        lo, hi = ctrl_range[group].T
        bad = (value < lo - 1e-6) | (value > hi + 1e-6)
        if np.any(bad):
            idx = np.flatnonzero(bad)
            raise InvalidActionError(
                f"{key} out of joint range at indices {idx.tolist()}: values {value[idx].round(4).tolist()}, "
                f"limits {ctrl_range[group][idx].round(4).tolist()}. Clip with a safety filter first."
            )
        out[key] = value
    return out


class TabletopTaskEnv(gym.Env, ABC):
    """Base class: scene construction, reset/step, rendering, validation, randomization."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012
    task_name: str = ""

    def __init__(self, config: TaskConfig | None = None, render_mode: str | None = "rgb_array") -> None:
        self.config = config or TaskConfig()
        if self.config.variant not in VARIANTS:
            raise ValueError(f"Unknown variant {self.config.variant!r}; use one of {VARIANTS}.")
        self.render_mode = render_mode
        self.embodiment: EmbodimentSpec = get_embodiment(self.config.embodiment)
        spec = new_scene(self.embodiment, self.config.physics, self.config.table)
        self.build_objects(spec)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, round(1.0 / (self.config.control_hz * self.model.opt.timestep)))
        self._index_robot()
        self._index_objects()
        self.randomizer = DomainRandomizer(
            self.model, self.config.randomization, self._object_geom_ids, self._object_body_ids
        )
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._depth_renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._rng = np.random.default_rng()
        self._action_queue: collections.deque[np.ndarray] = collections.deque()
        self._latency = 0
        self.instruction = ""
        self.step_count = 0
        self.observation_space = self._make_observation_space()
        self.action_space = self._make_action_space()

    # ------------------------------------------------------------------ task interface
    @abstractmethod
    def build_objects(self, spec: mujoco.MjSpec) -> None:
        """Add the task's objects to the scene spec (called once)."""

    @abstractmethod
    def place_objects(self, rng: np.random.Generator) -> None:
        """Randomize object poses for a new episode (qpos of free bodies, body_pos of fixed ones)."""

    @abstractmethod
    def is_success(self) -> bool:
        """Success predicate computed from simulator state."""

    @abstractmethod
    def instructions(self) -> list[str]:
        """Natural-language phrasings of the current episode's goal."""

    @abstractmethod
    def expert_plan(self) -> list[Subtask]:
        """The subtasks a scripted expert (or SAGE's planner) executes for this episode."""

    @abstractmethod
    def grasp_spec(self, object_name: str) -> GraspSpec:
        """How to grasp one of this task's objects."""

    def place_height(self, object_name: str, target_name: str) -> float:
        """Height above the table at which the expert releases `object_name` over `target_name`."""
        return 0.12

    def object_body_names(self) -> list[str]:
        """Task bodies (movable or fixed) whose colours and masses randomization may change."""
        return []

    # ------------------------------------------------------------------ indices
    def _index_robot(self) -> None:
        m = self.model
        self._qpos_adr: dict[str, np.ndarray] = {}
        self._ctrl_ids: dict[str, np.ndarray] = {}
        self._ctrl_range: dict[str, np.ndarray] = {}
        joint_to_act = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        for group, joints in self.embodiment.state_groups.items():
            jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
            if min(jids) < 0:
                missing = [j for j, i in zip(joints, jids, strict=True) if i < 0]
                raise ValueError(f"Embodiment {self.embodiment.name}: joints {missing} not in model.")
            self._qpos_adr[group] = np.array([m.jnt_qposadr[j] for j in jids])
            self._ctrl_ids[group] = np.array([joint_to_act[j] for j in jids])
            self._ctrl_range[group] = m.actuator_ctrlrange[self._ctrl_ids[group]].copy()
        self._ee_site = {
            side: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, self.embodiment.arm(side).ee_site)
            for side in ("left", "right")
        }

    def _index_objects(self) -> None:
        m = self.model
        body_ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in self.object_body_names()]
        self._object_body_ids = np.array([b for b in body_ids if b >= 0], dtype=int)
        self._object_geom_ids = np.array(
            [g for g in range(m.ngeom) if m.geom_bodyid[g] in set(self._object_body_ids)], dtype=int
        )

    def body_id(self, name: str) -> int:
        bid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)
        if bid < 0:
            raise ValueError(f"Task {self.task_name}: no body named {name!r}.")
        return bid

    # ------------------------------------------------------------------ object pose helpers
    def set_free_body_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        jid = self.model.body_jntadr[self.body_id(name)]
        adr = self.model.jnt_qposadr[jid]
        quat = np.zeros(4)
        mujoco.mju_axisAngle2Quat(quat, np.array([0.0, 0.0, 1.0]), yaw)
        self.data.qpos[adr : adr + 3] = pos
        self.data.qpos[adr + 3 : adr + 7] = quat
        dof = self.model.jnt_dofadr[jid]
        self.data.qvel[dof : dof + 6] = 0.0

    def set_fixed_body_pos(self, name: str, pos: np.ndarray) -> None:
        self.model.body_pos[self.body_id(name)] = pos

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.xpos[self.body_id(name)].copy()

    def body_quat(self, name: str) -> np.ndarray:
        return self.data.xquat[self.body_id(name)].copy()

    def touching_robot(self, name: str) -> bool:
        """Whether any robot geom is in contact with body `name` (e.g. it is still held)."""
        bid = self.body_id(name)
        robot = self.model.geom_conaffinity == ROBOT_COLLISION_BIT
        for contact in self.data.contact[: self.data.ncon]:
            g1, g2 = contact.geom1, contact.geom2
            bodies = (self.model.geom_bodyid[g1], self.model.geom_bodyid[g2])
            if bid in bodies and (robot[g1] or robot[g2]):
                return True
        return False

    def ee_pos(self, side: str) -> np.ndarray:
        return self.data.site_xpos[self._ee_site[side]].copy()

    @property
    def table_height(self) -> float:
        return self.config.table.height

    def sample_positions(
        self,
        rng: np.random.Generator,
        regions: list[tuple[tuple[float, float], tuple[float, float]]],
        min_distance: float,
        max_tries: int = 200,
    ) -> list[np.ndarray]:
        """Sample one xy point per region ((x range), (y range)), all at least min_distance apart."""
        scale = self.config.randomization.object_pose_scale if self.config.randomization.enabled else 1.0
        for _ in range(max_tries):
            points = []
            for (x0, x1), (y0, y1) in regions:
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                hx, hy = (x1 - x0) / 2 * scale, (y1 - y0) / 2 * scale
                points.append(np.array([rng.uniform(cx - hx, cx + hx), rng.uniform(cy - hy, cy + hy)]))
            if all(
                np.linalg.norm(a - b) >= min_distance for i, a in enumerate(points) for b in points[i + 1 :]
            ):
                return points
        raise RuntimeError(f"Task {self.task_name}: could not place objects {min_distance} m apart.")

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self._latency = self.randomizer.apply(self._rng)
        home = self.home_action()
        for group, adr in self._qpos_adr.items():
            self.data.qpos[adr] = home[f"action.{group}"]
        self._write_ctrl(home)
        self.place_objects(self._rng)
        mujoco.mj_forward(self.model, self.data)
        for _ in range(self.config.settle_steps):
            mujoco.mj_step(self.model, self.data)
        self._action_queue.clear()
        self.step_count = 0
        phrasings = self.instructions()
        self.instruction = phrasings[int(self._rng.integers(len(phrasings)))]
        obs = self._observation()
        return obs, {"success": self.is_success(), "instruction": self.instruction}

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict, float, bool, bool, dict]:
        ctrl = self.validate_action(action)
        self._action_queue.append(ctrl)
        # Action latency: the command applied now is the one sent `latency` steps ago.
        if len(self._action_queue) > self._latency:
            self.data.ctrl[:] = self._action_queue.popleft()
        for _ in range(self.n_substeps):
            mujoco.mj_step(self.model, self.data)
        if not np.all(np.isfinite(self.data.qpos)):
            raise RuntimeError(f"Task {self.task_name}: simulation diverged (non-finite state).")
        self.step_count += 1
        success = self.is_success()
        truncated = self.step_count >= self.config.max_steps
        obs = self._observation()
        return obs, float(success), success, truncated, {"success": success}

    def render(self) -> np.ndarray:
        return self.render_camera("front_view", 480, 640)

    def close(self) -> None:
        for renderer in (*self._renderers.values(), *self._depth_renderers.values()):
            renderer.close()
        self._renderers.clear()
        self._depth_renderers.clear()

    # ------------------------------------------------------------------ actions
    def home_action(self) -> dict[str, np.ndarray]:
        return home_action(self.embodiment)

    def action_ranges(self) -> dict[str, np.ndarray]:
        """(d, 2) lower/upper joint-target bounds per action key."""
        return {f"action.{g}": r.copy() for g, r in self._ctrl_range.items()}

    def validate_action(self, action: dict[str, np.ndarray]) -> np.ndarray:
        """Check an action dict and turn it into a ctrl vector; raise before touching the simulator."""
        checked = check_action(action, self._ctrl_range, self.embodiment.name)
        ctrl = self.data.ctrl.copy()
        for key, value in checked.items():
            ctrl[self._ctrl_ids[key.removeprefix("action.")]] = value
        return ctrl

    def _write_ctrl(self, action: dict[str, np.ndarray]) -> None:
        self.data.ctrl[:] = self.validate_action(action)

    # ------------------------------------------------------------------ observations
    def state(self) -> dict[str, np.ndarray]:
        """Noise-free joint positions per group (the robot's proprioception)."""
        return {f"state.{g}": self.data.qpos[adr].astype(np.float32) for g, adr in self._qpos_adr.items()}

    def render_camera(self, camera: str, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._renderers:
            try:
                renderer = mujoco.Renderer(self.model, height=height, width=width)
            except mujoco.FatalError as exc:
                raise RuntimeError(
                    f"MuJoCo could not create an offscreen OpenGL context ({exc}). On a machine without a "
                    "display, export MUJOCO_GL=egl (or osmesa) before starting Python, or import sage_gr00t "
                    "before mujoco so it can select EGL; scripts/setup.sh installs the EGL libraries."
                ) from exc
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            self._renderers[key] = renderer
        renderer = self._renderers[key]
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def render_depth(self, camera: str, height: int, width: int) -> np.ndarray:
        """(H, W) float32 depth in metres along the camera axis (a separate renderer per size)."""
        key = (height, width)
        if key not in self._depth_renderers:
            renderer = mujoco.Renderer(self.model, height=height, width=width)
            renderer.enable_depth_rendering()
            self._depth_renderers[key] = renderer
        renderer = self._depth_renderers[key]
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().astype(np.float32)

    def camera_pose_intrinsics(
        self, camera: str, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
        """(position, world-from-camera rotation, fx, fy, cx, cy) of a pinhole camera rendered at H x W.

        MuJoCo cameras look along their -z axis with +y up; fovy is the vertical field of view.
        """
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cid < 0:
            raise ValueError(f"Task {self.task_name}: no camera named {camera!r}.")
        fy = 0.5 * height / np.tan(np.deg2rad(self.model.cam_fovy[cid]) / 2)
        fx = fy  # square pixels
        pos = self.data.cam_xpos[cid].copy()
        rot = self.data.cam_xmat[cid].reshape(3, 3).copy()
        return pos, rot, float(fx), float(fy), (width - 1) / 2.0, (height - 1) / 2.0

    def _observation(self) -> dict:
        c = self.config
        image = self.render_camera("ego_view", c.image_height, c.image_width)
        obs: dict = {"video.ego_view": image}
        noise = c.randomization.state_noise_std if c.randomization.enabled else 0.0
        for key, value in self.state().items():
            if noise > 0:
                value = value + self._rng.normal(0.0, noise, value.shape).astype(np.float32)
            obs[key] = value
        if c.randomization.enabled and c.randomization.image_noise_std > 0:
            noisy = image.astype(np.float32) + self._rng.normal(0, c.randomization.image_noise_std, image.shape)
            obs["video.ego_view"] = np.clip(noisy, 0, 255).astype(np.uint8)
        obs[LANGUAGE_KEY] = self.instruction
        return obs

    def _make_observation_space(self) -> gym.spaces.Dict:
        c = self.config
        spaces: dict[str, gym.Space] = {
            "video.ego_view": gym.spaces.Box(0, 255, (c.image_height, c.image_width, 3), np.uint8)
        }
        for group, adr in self._qpos_adr.items():
            spaces[f"state.{group}"] = gym.spaces.Box(-np.inf, np.inf, (len(adr),), np.float32)
        spaces[LANGUAGE_KEY] = gym.spaces.Text(max_length=256, min_length=0, charset=string.printable)
        return gym.spaces.Dict(spaces)

    def _make_action_space(self) -> gym.spaces.Dict:
        return gym.spaces.Dict(
            {
                f"action.{g}": gym.spaces.Box(r[:, 0].astype(np.float32), r[:, 1].astype(np.float32), dtype=np.float32)
                for g, r in self._ctrl_range.items()
            }
        )
