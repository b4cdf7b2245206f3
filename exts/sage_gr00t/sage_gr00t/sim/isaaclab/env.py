"""`IsaacLabTaskEnv`: a declared task on an Isaac Lab `ManagerBasedRLEnv`, behind the `TaskEnv` interface.

The same bridge, policies, scripted experts and `sage_gr00t.evaluation.run_episode` drive it and the embedded
`MujocoTaskEnv`:
    reset(seed=...) -> (obs, info)        obs: video.ego_view, state.<group>, annotation.human.task_description
    step(action_dict) -> (obs, reward, terminated, truncated, info)   action.<group>: joint targets
    state(), home_action(), action_ranges(), body_pos(name), ee_pos(side), is_success(), expert_plan(), ...
A seed gives the embedded simulator's object layout and instruction (the task's own sampler runs in the
EventManager's reset event with a generator seeded by the episode seed). One environment (num_envs=1, CPU,
C MuJoCo); Isaac Lab has one simulation context per process, so one `IsaacLabTaskEnv` at a time.
"""

from __future__ import annotations

import collections
import contextlib

import numpy as np
import torch
from isaaclab.app import launch_simulation
from isaaclab.envs import ManagerBasedRLEnv

from sage_gr00t.modality import EGO_CAMERA, EGO_VIEW, JOINT_GROUPS, LANGUAGE_KEY, action_key, state_key
from sage_gr00t.sim.actions import check_action
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.embodiment import EmbodimentSpec, get_embodiment
from sage_gr00t.sim.isaaclab.env_cfg import TabletopEnvCfg, build_env_cfg
from sage_gr00t.sim.isaaclab.mdp import bind_task_scene, camera_tensor
from sage_gr00t.sim.isaaclab.robot import ctrl_ranges, robot_model
from sage_gr00t.sim.isaaclab.scene import IsaacLabScene, quat_xyzw_to_mat
from sage_gr00t.sim.task_env import DeclaredTaskEnv
from sage_gr00t.tasks.registry import TASKS
from sage_gr00t.tasks.spec import Task


def action_tensor(action: dict[str, np.ndarray], device: str | torch.device, num_envs: int = 1) -> torch.Tensor:
    """A GR00T action dict (`action.<group>` joint targets) as the Isaac Lab action tensor, the same for
    each of `num_envs` environments: (num_envs, d), groups in `JOINT_GROUPS` order (the action terms')."""
    flat = np.concatenate([np.asarray(action[action_key(g)], np.float32) for g in JOINT_GROUPS])
    return torch.as_tensor(flat, device=device).repeat(num_envs, 1)


class IsaacLabTaskEnv(DeclaredTaskEnv):
    """One Isaac Lab environment (num_envs=1, CPU, kit-less Newton) with the embedded env's interface."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012

    def __init__(self, task: Task, config: TaskConfig | None = None) -> None:
        self.config = config or TaskConfig()
        self.task = task = task.with_variant(self.config.variant)
        TASKS.register(type(task))  # `build_env_cfg` (and the env's terms) find the task by name
        self.embodiment: EmbodimentSpec = get_embodiment(self.config.embodiment)
        cfg = build_env_cfg(task.name, task.variant, self.embodiment.name, config=self.config)
        # This env truncates at `max_steps` itself, as the embedded one does; Isaac Lab's time-out would also
        # count the settling steps and reset the env inside `step()`, a new layout mid-episode.
        cfg.terminations.time_out = None
        self.cfg: TabletopEnvCfg = cfg
        self._launch = contextlib.ExitStack()
        # Isaac Lab's launcher validates the config; it starts nothing for kit-less Newton and the Warp camera.
        self._launch.enter_context(launch_simulation(cfg, {}))
        try:
            self.env = ManagerBasedRLEnv(cfg)
        except BaseException:
            self._launch.close()
            raise
        self.scene = IsaacLabScene(self.env, task, self.config)
        bind_task_scene(self.env, self.scene)
        self.render_mode = "rgb_array"
        self._ctrl_range = ctrl_ranges(robot_model(self.embodiment.name), self.embodiment)
        self._action_queue: collections.deque[torch.Tensor] = collections.deque()
        self._latency = 0
        self._command = action_tensor(self.home_action(), self.env.device)  # the command the servos hold
        self._rng = np.random.default_rng()
        self._last_image: np.ndarray | None = None
        self._physics_steps = 0
        self.instruction = ""
        self.step_count = 0

    # ------------------------------------------------------------------ TaskEnv (the rest: DeclaredTaskEnv)
    @property
    def sim_time(self) -> float:
        """Simulated seconds since the last reset began (settling included, like the embedded `data.time`)."""
        return self._physics_steps * self.cfg.sim.dt

    def ee_pos(self, side: str) -> np.ndarray:
        return self.scene.ee_pos(side)

    # ------------------------------------------------------------------ gym-style API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._rng = np.random.default_rng(seed)
        self.scene.episode_rng = self._rng
        try:
            self.env.reset(seed=seed)
        finally:
            self.scene.episode_rng = None
        r = self.config.randomization
        lo, hi = r.action_latency_steps if r.enabled else (0, 0)
        self._latency = int(self._rng.integers(lo, hi + 1)) if hi > 0 else 0
        self._action_queue.clear()
        # Settle the objects under the home pose (the embedded env runs `settle_steps` physics steps).
        home = action_tensor(self.home_action(), self.env.device)
        self._command = home
        settle = int(np.ceil(self.config.settle_steps / self.cfg.decimation))
        obs = None
        for _ in range(settle):
            obs, *_ = self.env.step(home)
        if obs is None:
            obs = self.env.observation_manager.compute()
        self._physics_steps = settle * self.cfg.decimation
        self.step_count = 0
        phrasings = self.task.instructions()
        self.instruction = phrasings[int(self._rng.integers(len(phrasings)))]
        return self._observation(obs), {"success": self.is_success(), "instruction": self.instruction}

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict, float, bool, bool, dict]:
        self._action_queue.append(self.validate_action(action))
        # Action latency: the command applied now is the one sent `latency` steps ago (until then the
        # servos hold the previous one, as the embedded env's `data.ctrl` does).
        if len(self._action_queue) > self._latency:
            self._command = self._action_queue.popleft()
        obs, *_ = self.env.step(self._command)
        self._physics_steps += self.cfg.decimation
        if not all(np.all(np.isfinite(v)) for v in self.state().values()):
            raise RuntimeError(f"Task {self.task_name} (Isaac Lab): simulation diverged (non-finite state).")
        self.step_count += 1
        success = self.is_success()
        truncated = self.step_count >= self.config.max_steps
        return self._observation(obs), float(success), success, truncated, {"success": success}

    def render(self) -> np.ndarray:
        """The latest ego-camera frame (the Isaac Lab scene has no separate front camera)."""
        if self._last_image is None:
            raise RuntimeError("render() before reset().")
        return self._last_image.copy()

    def close(self) -> None:
        if getattr(self, "env", None) is not None:
            self.env.close()
            self.env = None
        self._launch.close()

    # ------------------------------------------------------------------ the camera, for SAGE's perception
    def _ego_camera(self, camera: str, height: int, width: int):
        """The ego camera sensor, after checking that (camera, H, W) is what it renders: one camera, one size."""
        h, w = self.config.image_height, self.config.image_width
        if camera != EGO_CAMERA or (height, width) != (h, w):
            raise ValueError(f"Task {self.task_name} (Isaac Lab) renders one camera, {EGO_CAMERA!r} at {h}x{w}; "
                             f"asked for {camera!r} at {height}x{width}. Set the perception camera's size to the "
                             f"task's image size (TaskConfig image_height / image_width).")
        if self._last_image is None:
            raise RuntimeError("The Isaac Lab camera has no frame before reset().")
        return self.env.scene[EGO_CAMERA]

    def _supersample(self, sensor) -> int:
        return int(sensor.cfg.height) // self.config.image_height

    def render_camera(self, camera: str, height: int, width: int) -> np.ndarray:
        """The ego-camera image of the newest observation (what the policy saw)."""
        self._ego_camera(camera, height, width)
        return self._last_image.copy()

    def render_depth(self, camera: str, height: int, width: int) -> np.ndarray:
        """(H, W) float32 metres along the camera axis (NaN: nothing hit), rendered with the newest observation's
        image. A supersampled camera keeps one sample per output pixel: averaging an object's edge with the table
        behind it would invent points in mid-air."""
        sensor = self._ego_camera(camera, height, width)
        depth = camera_tensor(sensor.data.output["distance_to_image_plane"])[0, ..., 0].to(torch.float32).cpu().numpy()
        s = self._supersample(sensor)
        depth = np.ascontiguousarray(depth[s // 2::s, s // 2::s][:height, :width])
        depth[~(depth > 0)] = np.nan  # Newton writes 0 where a ray hits nothing (MuJoCo: the far plane)
        return depth

    def camera_pose_intrinsics(self, camera: str, height: int,
                               width: int) -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
        """(position in this env's frame, world-from-camera rotation, fx, fy, cx, cy) at H x W, in the embedded
        simulator's convention: the OpenGL camera frame (looking along -z, +y up), pixel centres at integers."""
        sensor = self._ego_camera(camera, height, width)
        data = sensor.data
        pos = camera_tensor(data.pos_w)[0].cpu().numpy().astype(np.float64) - self.scene.env_origin()
        rot = quat_xyzw_to_mat(camera_tensor(data.quat_w_opengl)[0].cpu().numpy())
        k = camera_tensor(data.intrinsic_matrices)[0].cpu().numpy().astype(np.float64)
        s = self._supersample(sensor)
        # Isaac Lab's K puts the principal point at W / 2 (pixel corners at integers) for the supersampled image;
        # here pixel centres are at integers in the image as observed (MuJoCo's (W - 1) / 2).
        return pos, rot, k[0, 0] / s, k[1, 1] / s, k[0, 2] / s - 0.5, k[1, 2] / s - 0.5

    # ------------------------------------------------------------------ actions
    def validate_action(self, action: dict[str, np.ndarray]) -> torch.Tensor:
        """Check an action dict (keys, shapes, finite, joint ranges) and turn it into the Isaac Lab action
        tensor; raise before touching the simulator."""
        return action_tensor(check_action(action, self._ctrl_range, self.embodiment.name), self.env.device)

    # ------------------------------------------------------------------ observations
    def _observation(self, obs: dict) -> dict:
        group = obs["policy"]
        image = group[EGO_CAMERA][0].cpu().numpy().astype(np.uint8)
        c = self.config
        if c.randomization.enabled and c.randomization.image_noise_std > 0:
            noisy = image.astype(np.float32) + self._rng.normal(0, c.randomization.image_noise_std, image.shape)
            image = np.clip(noisy, 0, 255).astype(np.uint8)
        self._last_image = image
        out: dict = {EGO_VIEW: image}
        for g in JOINT_GROUPS:
            out[state_key(g)] = group[g][0].cpu().numpy().astype(np.float32)
        out[LANGUAGE_KEY] = self.instruction
        return out
