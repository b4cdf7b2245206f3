"""`IsaacLabTaskEnv`: an Isaac Lab `ManagerBasedRLEnv` behind the embedded `TabletopTaskEnv` interface.

The same bridge, policies, scripted experts and `sage_gr00t.evaluation.run_episode` drive both:
    reset(seed=...) -> (obs, info)        obs: video.ego_view, state.<group>, annotation.human.task_description
    step(action_dict) -> (obs, reward, terminated, truncated, info)   action.<group>: joint targets
    state(), home_action(), action_ranges(), body_pos(name), is_success(), expert_plan(), ...
A seed gives the embedded simulator's object layout and instruction (the task's own sampler runs in
the EventManager's reset event with a generator seeded by the episode seed).
"""

from __future__ import annotations

import collections
import contextlib

import numpy as np
import torch

from sage_gr00t.sim.embodiment import SAGE_HUMANOID, load_robot_spec
from sage_gr00t_tasks.base import LANGUAGE_KEY, STATE_GROUPS, TaskConfig, check_action, home_action
from sage_gr00t_tasks.isaaclab.logic import task_logic

# Task-logic methods answered by the embedded task class (run on Isaac Lab state).
_DELEGATED = {"body_pos", "body_quat", "is_success", "expert_plan", "grasp_spec", "place_height", "pour_spec",
              "instructions", "touching_robot", "table_height", "object_body_names", "particles_in_cup",
              "block_in_bin"}


def action_tensor(action: dict[str, np.ndarray], device: str | torch.device, num_envs: int = 1) -> torch.Tensor:
    """A GR00T action dict (`action.<group>` joint targets) as the Isaac Lab action tensor, the same for
    each of `num_envs` environments: (num_envs, d), groups in `STATE_GROUPS` order."""
    flat = np.concatenate([np.asarray(action[f"action.{g}"], np.float32) for g in STATE_GROUPS])
    return torch.as_tensor(flat, device=device).repeat(num_envs, 1)


def env_cfg_class(task: str):
    from sage_gr00t_tasks.isaaclab import env_cfg

    classes = {"pick_apple": env_cfg.PickAppleEnvCfg, "sort_blocks": env_cfg.SortBlocksEnvCfg}
    if hasattr(env_cfg, "PourWaterEnvCfg"):
        classes["pour_water"] = env_cfg.PourWaterEnvCfg
    if task not in classes:
        raise ValueError(f"No Isaac Lab version of task {task!r}; available: {sorted(classes)}.")
    return classes[task]


class IsaacLabTaskEnv:
    """One Isaac Lab environment (num_envs=1, CPU, kit-less Newton) with the embedded env's interface."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012

    def __init__(self, task: str, config: TaskConfig | None = None) -> None:
        from isaaclab.envs import ManagerBasedRLEnv

        self.config = config or TaskConfig()
        if self.config.embodiment != SAGE_HUMANOID.name:
            raise ValueError(f"The Isaac Lab tasks have only the {SAGE_HUMANOID.name} embodiment's USD, "
                             f"not {self.config.embodiment!r}.")
        cfg = env_cfg_class(task)()
        cfg.variant = self.config.variant
        cfg.set_camera_size(self.config.image_height, self.config.image_width)
        cfg.apply_randomization(self.config.randomization)
        if abs(1.0 / (cfg.sim.dt * cfg.decimation) - self.config.control_hz) > 1e-6:
            cfg.decimation = max(1, round(1.0 / (self.config.control_hz * cfg.sim.dt)))
        self.cfg = cfg
        self._launch = contextlib.ExitStack()
        self._launch_simulation(cfg)
        self.env = ManagerBasedRLEnv(cfg)
        self.task_name = task
        self.embodiment = SAGE_HUMANOID
        self.logic = task_logic(self.env)
        self.logic.config = self.config
        self.render_mode = "rgb_array"
        model = load_robot_spec(self.embodiment).compile()
        self._ctrl_range = {
            g: np.array([model.jnt_range[model.joint(j).id] for j in joints])
            for g, joints in self.embodiment.state_groups.items()
        }
        self._action_queue: collections.deque[torch.Tensor] = collections.deque()
        self._latency = 0
        self._rng = np.random.default_rng()
        self._last_image: np.ndarray | None = None
        self.step_count = 0

    def _launch_simulation(self, cfg) -> None:
        """Isaac Lab's launcher: validates the config and starts nothing for kit-less Newton + Warp camera."""
        try:
            from isaaclab.app import launch_simulation
        except ImportError:  # pragma: no cover - older layouts
            return
        self._launch.enter_context(launch_simulation(cfg, {}))

    # ------------------------------------------------------------------ delegation to the task logic
    def __getattr__(self, name: str):
        if name in _DELEGATED:
            return getattr(self.__dict__["logic"], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def instruction(self) -> str:
        return self.logic.instruction

    @property
    def num_physics_substeps(self) -> int:
        return self.cfg.decimation

    # ------------------------------------------------------------------ gym-style API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._rng = np.random.default_rng(seed)
        self.logic.episode_rng = self._rng
        self.env.reset(seed=seed)
        self.logic.episode_rng = None
        lo, hi = self.config.randomization.action_latency_steps if self.config.randomization.enabled else (0, 0)
        self._latency = int(self._rng.integers(lo, hi + 1)) if hi > 0 else 0
        self._action_queue.clear()
        # Settle the objects under the home pose (the embedded env runs `settle_steps` physics steps).
        home = action_tensor(self.home_action(), self.env.device)
        settle = int(np.ceil(self.config.settle_steps / self.cfg.decimation))
        obs = None
        for _ in range(settle):
            obs, *_ = self.env.step(home)
        if obs is None:
            obs = self.env.observation_manager.compute()
        self.step_count = 0
        phrasings = self.logic.instructions()
        self.logic.instruction = phrasings[int(self._rng.integers(len(phrasings)))]
        return self._observation(obs), {"success": self.logic.is_success(), "instruction": self.instruction}

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict, float, bool, bool, dict]:
        command = action_tensor(self.validate_action(action), self.env.device)
        self._action_queue.append(command)
        if len(self._action_queue) > self._latency:
            self._current = self._action_queue.popleft()
        obs, *_ = self.env.step(getattr(self, "_current", command))
        state = self.logic.state()
        if not all(np.all(np.isfinite(v)) for v in state.values()):
            raise RuntimeError(f"Task {self.task_name} (Isaac Lab): simulation diverged (non-finite state).")
        self.step_count += 1
        success = self.logic.is_success()
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

    # ------------------------------------------------------------------ actions
    def home_action(self) -> dict[str, np.ndarray]:
        return home_action(self.embodiment)

    def action_ranges(self) -> dict[str, np.ndarray]:
        return {f"action.{g}": r.copy() for g, r in self._ctrl_range.items()}

    def validate_action(self, action: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The embedded env's checks (keys, shapes, finite, joint ranges); raises before touching the simulator."""
        return check_action(action, self._ctrl_range, self.embodiment.name)

    # ------------------------------------------------------------------ observations
    def state(self) -> dict[str, np.ndarray]:
        return self.logic.state()

    def _observation(self, obs: dict) -> dict:
        group = obs["policy"]
        image = group["ego_view"][0].cpu().numpy().astype(np.uint8)
        c = self.config
        if c.randomization.enabled and c.randomization.image_noise_std > 0:
            noisy = image.astype(np.float32) + self._rng.normal(0, c.randomization.image_noise_std, image.shape)
            image = np.clip(noisy, 0, 255).astype(np.uint8)
        self._last_image = image
        out: dict = {"video.ego_view": image}
        for g in STATE_GROUPS:
            out[f"state.{g}"] = group[g][0].cpu().numpy().astype(np.float32)
        out[LANGUAGE_KEY] = self.instruction
        return out


def make_isaaclab_env(task: str, seed: int | None = None, config: TaskConfig | None = None,
                      **overrides) -> IsaacLabTaskEnv:
    """Build the Isaac Lab version of an embedded task; keyword overrides replace `TaskConfig` fields.

    `seed` seeds torch/numpy for Isaac Lab's own randomness; episode layouts come from `reset(seed=...)`.
    """
    config = config or TaskConfig()
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"Unknown task option {key!r}; TaskConfig has {sorted(vars(config))}.")
        setattr(config, key, value)
    if seed is not None:
        torch.manual_seed(seed)
        np.random.seed(seed)
    return IsaacLabTaskEnv(task, config)
