"""MDP terms for the SAGE-GR00T Isaac Lab tasks: object placement, success reward, randomization profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from isaaclab.managers import EventTermCfg, ManagerTermBase, SceneEntityCfg

from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t_tasks.isaaclab.logic import task_logic

if TYPE_CHECKING:
    from isaaclab.envs import ManagerBasedRLEnv


class PlaceTaskObjects(ManagerTermBase):
    """Reset event: the embedded task's own seeded layout sampler (`place_objects`), per environment.

    Draws come from `task_logic(env).episode_rng` when set (the adapter seeds it with the episode seed,
    so a seed gives the embedded simulator's layout), otherwise from a generator seeded by torch's RNG
    (so `env.seed(...)` makes the layouts reproducible).
    """

    def __init__(self, cfg: EventTermCfg, env: ManagerBasedRLEnv):
        super().__init__(cfg, env)

    def __call__(self, env: ManagerBasedRLEnv, env_ids: torch.Tensor | slice | None, object_pose_scale: float = 1.0):
        logic = task_logic(env)
        ids = range(env.num_envs) if env_ids is None or isinstance(env_ids, slice) else env_ids.tolist()
        randomization = logic.config.randomization
        randomization.enabled = object_pose_scale != 1.0
        randomization.object_pose_scale = object_pose_scale
        for index in ids:
            logic.env_index = int(index)
            rng = logic.episode_rng
            if rng is None:
                rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
            logic.place_objects(rng)
        logic.env_index = 0


def task_success(env: ManagerBasedRLEnv) -> torch.Tensor:
    """1.0 where the embedded task's success predicate holds (computed from Isaac Lab state)."""
    logic = task_logic(env)
    values = []
    for index in range(env.num_envs):
        logic.env_index = index
        values.append(float(logic.is_success()))
    logic.env_index = 0
    return torch.tensor(values, device=env.device)


def apply_randomization_profile(cfg, config: DomainRandomizationConfig) -> None:
    """Map a `config/domain_randomization.yaml` profile onto EventManager / observation-noise terms.

    Applied: object pose range scale, object mass scale, object friction scale, actuator gain scale
    (reset events) and joint-state noise (observation corruption). The rendering-side terms
    (colours, lights, camera jitter, image noise) and action latency are embedded-simulator only.
    """
    import isaaclab.envs.mdp as mdp
    from isaaclab.utils.noise import GaussianNoiseCfg

    if not config.enabled:
        return
    objects = [name for name, value in cfg.scene.__dict__.items()
               if name not in ("robot", "table", "ego_view") and hasattr(value, "spawn")
               and getattr(getattr(value.spawn, "rigid_props", None), "kinematic_enabled", None) is not True
               and hasattr(value, "init_state")]
    cfg.events.place_objects.params["object_pose_scale"] = config.object_pose_scale
    for name in objects:
        setattr(cfg.events, f"{name}_mass", EventTermCfg(
            func=mdp.randomize_rigid_body_mass, mode="reset",
            params={"asset_cfg": SceneEntityCfg(name), "mass_distribution_params": tuple(config.mass_scale),
                    "operation": "scale"}))
        lo, hi = config.friction_scale
        setattr(cfg.events, f"{name}_friction", EventTermCfg(
            func=mdp.randomize_rigid_body_material, mode="reset",
            params={"asset_cfg": SceneEntityCfg(name), "static_friction_range": (1.2 * lo, 1.2 * hi),
                    "dynamic_friction_range": (1.2 * lo, 1.2 * hi), "restitution_range": (0.0, 0.0),
                    "num_buckets": 64}))
    cfg.events.actuator_gains = EventTermCfg(
        func=mdp.randomize_actuator_gains, mode="reset",
        params={"asset_cfg": SceneEntityCfg("robot"), "operation": "scale",
                "stiffness_distribution_params": tuple(config.actuator_gain_scale),
                "damping_distribution_params": tuple(config.actuator_gain_scale)})
    if config.state_noise_std > 0:
        group = cfg.observations.policy
        group.enable_corruption = True
        for term in ("left_arm", "right_arm", "left_hand", "right_hand"):
            getattr(group, term).noise = GaussianNoiseCfg(std=config.state_noise_std)
