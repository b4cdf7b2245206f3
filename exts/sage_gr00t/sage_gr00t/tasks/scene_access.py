"""`SceneAccess`: what a task's code may read and write in a simulator (each backend implements it)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


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
