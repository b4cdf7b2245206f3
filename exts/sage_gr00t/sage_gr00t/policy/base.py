"""The `Policy` protocol shared by the scripted expert, the native GR00T model and remote servers.

Like upstream `Gr00tPolicy.get_action`, a policy takes one observation dict in GR00T's modality
format (`video.*`, `state.*`, `annotation.human.task_description`) and returns an action chunk:
`action.<group>` arrays of shape (horizon, dim).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    def reset(self) -> None:
        """Forget per-episode state (called after every env.reset)."""

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        """Action chunk: `action.<group>` arrays of shape (horizon, dim)."""
        ...
