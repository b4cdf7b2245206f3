"""SAGE-GR00T tabletop tasks for the embedded MuJoCo simulator (gymnasium environments)."""

from __future__ import annotations

import sage_gr00t  # noqa: F401  (first: selects headless rendering before mujoco loads)
from sage_gr00t_tasks.base import TabletopTaskEnv, TaskConfig
from sage_gr00t_tasks.registry import TASKS, make_env

__all__ = ["TASKS", "TabletopTaskEnv", "TaskConfig", "make_env"]
