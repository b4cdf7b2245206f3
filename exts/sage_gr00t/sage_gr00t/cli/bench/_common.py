"""What several benchmark commands share: task-name resolution after the core is pinned."""

from __future__ import annotations

ALL = "all"  # --task all: every installed task


def resolve_tasks(names: list[str]) -> list[str]:
    """`names`, with `all` -> every installed task (sage_gr00t.tasks.task_names()); unknown names are one
    ValueError listing the installed ones. Imports the task registry (numpy, mujoco): call after pinning."""
    from sage_gr00t.tasks import task_names

    known = task_names()
    tasks = known if names == [ALL] else names
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise ValueError(f"Unknown task(s) {unknown or names}; installed: {', '.join(known)} (or {ALL!r}).")
    return tasks
