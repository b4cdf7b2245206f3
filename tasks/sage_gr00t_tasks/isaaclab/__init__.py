"""SAGE-GR00T tabletop tasks as Isaac Lab 3.0 manager-based environments (kit-less, Newton physics, CPU).

Registered through the `isaaclab.tasks` entry point (pyproject.toml), so `isaaclab list_envs` and
`isaaclab random_agent --task SageGr00t-PickApple-v0` find them. Importing this package needs only
gymnasium; the configs (`env_cfg`) and the GR00T-dict adapter (`adapter`) need `isaaclab`.

    from sage_gr00t_tasks.isaaclab import make_isaaclab_env
    env = make_isaaclab_env("pick_apple", seed=0)   # same interface as the embedded TabletopTaskEnv
"""

from __future__ import annotations

import gymnasium as gym

GYM_IDS = {
    "pick_apple": "SageGr00t-PickApple-v0",
    "sort_blocks": "SageGr00t-SortBlocks-v0",
    "pour_water": "SageGr00t-PourWater-v0",
}
_CFG_CLASSES = {"pick_apple": "PickAppleEnvCfg", "sort_blocks": "SortBlocksEnvCfg", "pour_water": "PourWaterEnvCfg"}


def _register() -> None:
    for task, gym_id in GYM_IDS.items():
        if gym_id not in gym.registry:
            gym.register(
                id=gym_id,
                entry_point="isaaclab.envs:ManagerBasedRLEnv",
                disable_env_checker=True,
                kwargs={"env_cfg_entry_point": f"{__name__}.env_cfg:{_CFG_CLASSES[task]}"},
            )


def make_isaaclab_env(task: str, seed: int | None = None, **kwargs):
    """Build the Isaac Lab version of an embedded task behind the embedded env's interface (see `adapter`)."""
    from sage_gr00t_tasks.isaaclab.adapter import make_isaaclab_env as _make

    return _make(task, seed=seed, **kwargs)


_register()

__all__ = ["GYM_IDS", "make_isaaclab_env"]
