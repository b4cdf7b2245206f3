"""What both simulator backends answer from the task declaration and their `SceneAccess` alone."""

from __future__ import annotations

import numpy as np

from sage_gr00t.modality import action_key
from sage_gr00t.sim.actions import home_action
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.embodiment import EmbodimentSpec
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks.scene_access import SceneAccess
from sage_gr00t.tasks.spec import Task


class DeclaredTaskEnv:
    """Base of `MujocoTaskEnv` and `IsaacLabTaskEnv`: the `TaskEnv` methods that need no simulator code.
    Subclasses set `task`, `scene`, `embodiment`, `config` and `_ctrl_range` ({group: (d, 2) bounds})."""

    task: Task
    scene: SceneAccess
    embodiment: EmbodimentSpec
    config: TaskConfig
    _ctrl_range: dict[str, np.ndarray]

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def table_height(self) -> float:
        return self.config.table.height

    def object_names(self) -> list[str]:
        return self.task.object_names()

    def body_pos(self, name: str) -> np.ndarray:
        return self.scene.body_pos(name)

    def is_success(self) -> bool:
        return self.task.is_success(self.scene)

    def expert_plan(self) -> list[Subtask]:
        return self.task.expert_plan()

    def state(self) -> dict[str, np.ndarray]:
        """Noise-free joint positions per group (the robot's proprioception)."""
        return self.scene.joint_state()

    def home_action(self) -> dict[str, np.ndarray]:
        return home_action(self.embodiment)

    def action_ranges(self) -> dict[str, np.ndarray]:
        """(d, 2) lower/upper joint-target bounds per action key (the servos' ctrlrange)."""
        return {action_key(g): r.copy() for g, r in self._ctrl_range.items()}
