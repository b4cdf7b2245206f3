"""SAGE-GR00T: a trust-governed hierarchical controller around a GR00T N1.5-architecture policy.

Data flow (one folder per stage):
    sim/ (observation) -> perceive/ -> plan/ -> act/ -> sim/ (actions)
    experience -> memory/ -> sleep/ -> better policy and planner

This package holds the embedded MuJoCo simulator (`sim`), scripted experts (`experts`) and
LeRobot/GR00T dataset I/O (`data`). Tasks are found through the `sage_gr00t.tasks` entry points (`tasks`);
the project's own live in the sibling package `sage_gr00t_tasks`, which the core never imports.
"""

__version__ = "0.1.0"

import os as _os

# Headless offscreen rendering by default (no display on robots' compute boxes or CI);
# MUJOCO_GL must be set before mujoco is first imported. Users may override it.
_os.environ.setdefault("MUJOCO_GL", "egl")
