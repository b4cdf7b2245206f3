"""Task discovery: the `sage_gr00t.tasks` entry-point group, the way Isaac Lab finds external task packages.

A task package declares, in its pyproject.toml,

    [project.entry-points."sage_gr00t.tasks"]
    push_block = "my_tasks.push_block:PushBlock"

and every command, the panel, the Kit extension, dreams and evaluation can then build it by name on
either simulator. The core never imports a task package by name.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from dataclasses import dataclass, field

from sage_gr00t.tasks.spec import Task

ENTRY_POINT_GROUP = "sage_gr00t.tasks"
BACKENDS = ("mujoco", "isaaclab")
ALL_TASKS = "all"  # on command lines: every installed task


class UnknownTaskError(ValueError):
    """A task name no installed task package declares."""


@dataclass
class TaskRegistry:
    """Task name -> Task class, filled from the entry points on first use and by `register`."""

    group: str = ENTRY_POINT_GROUP
    _tasks: dict[str, type[Task]] = field(default_factory=dict)
    _loaded: bool = False

    def register(self, task: type[Task]) -> type[Task]:
        """Add a Task class (usable as a class decorator). Re-registering the same class is a no-op."""
        if not (inspect.isclass(task) and issubclass(task, Task)) or not getattr(task, "name", ""):
            raise TypeError(f"{task!r} is not a Task subclass with a `name`.")
        known = self._tasks.get(task.name)
        if known is not None and known is not task and known.__qualname__ != task.__qualname__:
            raise ValueError(f"Two tasks are named {task.name!r}: {known.__module__}.{known.__qualname__} "
                             f"and {task.__module__}.{task.__qualname__}.")
        self._tasks[task.name] = task
        self._register_gym(task)
        return task

    @staticmethod
    def _register_gym(task: type[Task]) -> None:
        """`gym.make("SageGr00t/PickApple-v0")` on the embedded simulator."""
        import gymnasium as gym

        gym_id = task.ids().gym
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point="sage_gr00t.sim.mujoco_env:make_gym_env",
                         kwargs={"task": task.name}, disable_env_checker=True)

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for point in importlib.metadata.entry_points(group=self.group):
            try:
                loaded = point.load()
            except Exception as exc:  # a broken third-party package must not hide the others
                raise ImportError(f"Task entry point {point.name!r} = {point.value!r} failed to load: {exc}") from exc
            self.register(loaded)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._tasks)

    def get(self, name: str) -> type[Task]:
        self._load_entry_points()
        if name not in self._tasks:
            raise UnknownTaskError(
                f"Unknown task {name!r}. Available tasks: {', '.join(sorted(self._tasks)) or 'none'} "
                f"(task packages declare them under the {self.group!r} entry-point group; reinstall with "
                "`pip install -e .` after adding one).")
        return self._tasks[name]


TASKS = TaskRegistry()  # the process's registry (entry points are process-wide too)


def task_names() -> list[str]:
    return TASKS.names()


def select_tasks(names: list[str]) -> list[str]:
    """Task names from a command line: `["all"]` -> every installed task; an unknown name is one ValueError
    listing the installed ones."""
    known = task_names()
    tasks = known if names == [ALL_TASKS] else list(names)
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise UnknownTaskError(f"Unknown task(s) {unknown or names}; installed: {', '.join(known)} "
                               f"(or {ALL_TASKS!r}).")
    return tasks


def get_task(name: str) -> type[Task]:
    return TASKS.get(name)


def resolve_task(task: str | Task | type[Task], variant: str = "train") -> Task:
    """A Task instance from a name, a Task class or an instance (classes and instances get registered,
    so the Isaac Lab config builder can find them by name)."""
    if isinstance(task, Task):
        TASKS.register(type(task))
        return task
    if inspect.isclass(task):
        return TASKS.register(task)(variant)
    return get_task(task)(variant)
