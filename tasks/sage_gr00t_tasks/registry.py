"""Task name -> environment class, plus gymnasium registration (`SageGr00t/PickApple-v0`, ...)."""

from __future__ import annotations

import gymnasium as gym

from sage_gr00t_tasks.base import TabletopTaskEnv, TaskConfig
from sage_gr00t_tasks.pick_apple import PickAppleEnv
from sage_gr00t_tasks.pour_water import PourWaterEnv
from sage_gr00t_tasks.sort_blocks import SortBlocksEnv

TASKS: dict[str, type[TabletopTaskEnv]] = {
    "pick_apple": PickAppleEnv,
    "sort_blocks": SortBlocksEnv,
    "pour_water": PourWaterEnv,
}

GYM_IDS = {name: "SageGr00t/" + "".join(p.title() for p in name.split("_")) + "-v0" for name in TASKS}


def make_env(task: str, config: TaskConfig | None = None, **overrides) -> TabletopTaskEnv:
    """Build a task environment by name; keyword overrides replace TaskConfig fields."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Available tasks: {sorted(TASKS)}.")
    config = config or TaskConfig()
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"Unknown task option {key!r}; TaskConfig has {sorted(vars(config))}.")
        setattr(config, key, value)
    return TASKS[task](config)


def _register() -> None:
    for name, gym_id in GYM_IDS.items():
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point=f"{TASKS[name].__module__}:{TASKS[name].__name__}",
                         disable_env_checker=True)


_register()
