"""The contract between simulators and SAGE (the other one, `SceneAccess`, is in `tasks.scene_access`).

`TaskEnv`: what the bridge, evaluation, experts, perception and the panel read from an environment
(the embedded MuJoCo env and the Isaac Lab adapter both satisfy it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sage_gr00t.tasks.scene_access import SceneAccess
from sage_gr00t.tasks.spec import Task

if TYPE_CHECKING:
    from sage_gr00t.sim.embodiment import EmbodimentSpec
    from sage_gr00t.skills import Subtask


@runtime_checkable
class TaskEnv(Protocol):
    """A task environment with GR00T-named observations and actions."""

    task: Task
    scene: SceneAccess  # the task's view of the simulator (experts and success predicates use it)
    embodiment: EmbodimentSpec
    config: Any  # sim.config.TaskConfig
    instruction: str
    step_count: int

    @property
    def task_name(self) -> str: ...

    @property
    def table_height(self) -> float: ...

    @property
    def sim_time(self) -> float: ...

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]: ...

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict, float, bool, bool, dict]: ...

    def render(self) -> np.ndarray: ...

    def close(self) -> None: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def ee_pos(self, side: str) -> np.ndarray: ...

    def home_action(self) -> dict[str, np.ndarray]: ...

    def action_ranges(self) -> dict[str, np.ndarray]: ...

    def body_pos(self, name: str) -> np.ndarray: ...

    def is_success(self) -> bool: ...

    def expert_plan(self) -> list[Subtask]: ...

    def object_names(self) -> list[str]: ...
