"""The two contracts between tasks, simulators and SAGE.

`SceneAccess`: what a task's code may read and write in a simulator (each backend implements it).
`TaskEnv`: what the bridge, evaluation, experts, perception and the panel read from an environment
(the embedded MuJoCo env and the Isaac Lab adapter both satisfy it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from sage_gr00t.sim.embodiment import EmbodimentSpec
    from sage_gr00t.skills import Subtask
    from sage_gr00t.tasks.spec import Task


@runtime_checkable
class SceneAccess(Protocol):
    """Simulator state as a task sees it; positions in the env's frame (metres), quaternions (w, x, y, z)."""

    @property
    def table_height(self) -> float: ...

    def body_pos(self, name: str) -> np.ndarray: ...

    def body_quat(self, name: str) -> np.ndarray: ...

    def set_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        """Place an object (movable) or a setting (fixed: plate, bin) at reset; velocities zeroed."""

    def touching_robot(self, name: str) -> bool: ...

    def joint_state(self) -> dict[str, np.ndarray]:
        """`state.<group>` joint positions."""

    def particle_positions(self, name: str) -> np.ndarray:
        """(count, 3) positions of a `ParticleSpec`'s particles."""


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
