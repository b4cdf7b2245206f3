"""Tasks: declarations (`Task`, `ObjectSpec`, ...), the two contracts (`SceneAccess`, `TaskEnv`), discovery
through the `sage_gr00t.tasks` entry-point group, and `make_env` for either simulator.

    from sage_gr00t.tasks import make_env, task_names
    env = make_env("pick_apple")                       # embedded MuJoCo
    env = make_env("pick_apple", backend="isaaclab")   # Isaac Lab 3.0 (kit-less Newton), same interface
"""

from __future__ import annotations

from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.tasks.protocols import TaskEnv
from sage_gr00t.tasks.registry import (
    ALL_TASKS,
    BACKENDS,
    ENTRY_POINT_GROUP,
    TASKS,
    UnknownTaskError,
    get_task,
    resolve_task,
    select_tasks,
    task_names,
)
from sage_gr00t.tasks.scene_access import SceneAccess
from sage_gr00t.tasks.shapes import open_box, ring_walls
from sage_gr00t.tasks.spec import (
    LANGUAGE_VARIANT,
    PROCEDURAL_VARIANT,
    Geom,
    GraspSpec,
    ObjectSpec,
    ParticleSpec,
    PourSpec,
    Task,
    TaskIds,
    sample_positions,
    yaw_of,
)


def make_env(task: str | Task | type[Task], backend: str = "mujoco", config: TaskConfig | None = None,
             **overrides: object) -> TaskEnv:
    """Build a task environment by name (or from a Task) on `backend`; keyword overrides replace
    `TaskConfig` fields (e.g. `variant="novel"`, `image_height=96`)."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; use one of {BACKENDS}.")
    config = (config or TaskConfig()).with_overrides(**overrides)
    if backend == "mujoco" and config.lighting != "scene":
        raise ValueError(f"lighting={config.lighting!r} is an Isaac Lab option (the renderer's own default light); "
                         "the embedded MuJoCo renderer draws the scene's lights only.")
    resolved = resolve_task(task, config.variant)  # each backend takes the variant from `config`
    if backend == "isaaclab":
        from sage_gr00t.sim.isaaclab.env import IsaacLabTaskEnv

        return IsaacLabTaskEnv(resolved, config)
    from sage_gr00t.sim.mujoco_env import MujocoTaskEnv

    return MujocoTaskEnv(resolved, config)


__all__ = [
    "ALL_TASKS", "BACKENDS", "ENTRY_POINT_GROUP", "LANGUAGE_VARIANT", "PROCEDURAL_VARIANT", "TASKS", "Geom",
    "GraspSpec", "ObjectSpec", "ParticleSpec",
    "PourSpec", "SceneAccess", "Task", "TaskConfig", "TaskEnv", "TaskIds", "UnknownTaskError", "get_task", "make_env",
    "open_box", "resolve_task", "ring_walls", "sample_positions", "select_tasks", "task_names", "yaw_of",
]
