"""Isaac Lab gym ids for every declared task (`SageGr00t-PickApple-v0`, ...).

Isaac Lab imports this at startup (through the `isaaclab.tasks` entry point, `sage_gr00t_tasks.isaaclab`),
so it needs only gymnasium and the task registry; the config is built when an id is used.

Each id's `env_cfg_entry_point` resolves to the bound `build` method of an `EnvCfgEntryPoint`: one generic
config builder, no class per task. Isaac Lab's `load_cfg_from_registry` (behind `parse_env_cfg`, Hydra's task
registration and `isaaclab train`) calls a callable entry point (after `inspect.getfile` on it, which takes
methods but not `functools.partial`). Given a `namespace` (the entry-point module's globals), the builders are
bound there as `<Task>EnvCfg` and the ids name them as "module:attr" strings: `isaaclab list_envs` lists a
project's tasks only when their config entry point is such a string inside the project's task module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym

from sage_gr00t.tasks.registry import TASKS

if TYPE_CHECKING:
    from sage_gr00t.sim.isaaclab.env_cfg import TabletopEnvCfg

ENV_ENTRY_POINT = "isaaclab.envs:ManagerBasedRLEnv"


@dataclass(frozen=True)
class EnvCfgEntryPoint:
    """Builds the Isaac Lab config of one task (its default variant and embodiment)."""

    task: str

    def build(self) -> TabletopEnvCfg:
        from sage_gr00t.sim.isaaclab.env_cfg import build_env_cfg

        return build_env_cfg(self.task)


def register_isaaclab_tasks(namespace: dict[str, object] | None = None, module: str = "") -> list[str]:
    """Register the Isaac Lab id of every task in the registry (entry points loaded); ids already registered
    are kept, so calling it again is harmless. With `namespace` and `module` (a module's `globals()` and
    `__name__`), each config builder is bound in that module and the id refers to it by name. Returns the
    ids, in task-name order."""
    ids = []
    for name in TASKS.names():
        gym_id = TASKS.get(name).ids().isaaclab
        build = EnvCfgEntryPoint(name).build
        entry: object = build
        if namespace is not None:
            attr = "".join(p.title() for p in name.split("_")) + "EnvCfg"
            namespace[attr] = build
            entry = f"{module}:{attr}"
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point=ENV_ENTRY_POINT, disable_env_checker=True,
                         kwargs={"env_cfg_entry_point": entry})
        ids.append(gym_id)
    return ids


def register_installed_tasks() -> list[str]:
    """What Isaac Lab does at startup (load every `isaaclab.tasks` entry point, ours binds its config builders
    in `sage_gr00t_tasks.isaaclab`), then an id for any task whose package declares no such entry point."""
    import importlib.metadata

    for point in importlib.metadata.entry_points(group="isaaclab.tasks"):
        point.load()
    return register_isaaclab_tasks()
