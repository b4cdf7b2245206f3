"""What several benchmark commands share: task-name resolution after the core is pinned."""

from __future__ import annotations

ALL = "all"  # --task all: every installed task (the registry's ALL_TASKS; spelled here so defaults cost no import)


def resolve_tasks(names: list[str]) -> list[str]:
    """`sage_gr00t.tasks.select_tasks`, imported only when called: the task registry pulls in numpy and mujoco,
    which must start their threads after the benchmark pinned its core."""
    from sage_gr00t.tasks import select_tasks

    return select_tasks(names)
