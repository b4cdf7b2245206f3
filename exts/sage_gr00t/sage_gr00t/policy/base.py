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


@runtime_checkable
class GuidedPolicy(Policy, Protocol):
    """A policy that can inpaint a chunk toward a previous one (real-time chunking; the native GR00T model)."""

    def get_action_guided(self, observation: dict, prefix: dict[str, np.ndarray], weights: np.ndarray,
                          frozen_steps: int, beta: float = 5.0, guidance: str = "vjp") -> dict[str, np.ndarray]:
        """Chunk whose first `frozen_steps` rows equal `prefix`'s exactly, steered toward `prefix` by `weights`."""
        ...


def get_action_guided(policy: Policy, observation: dict, prefix: dict[str, np.ndarray], weights: np.ndarray,
                      frozen_steps: int, beta: float = 5.0, guidance: str = "vjp") -> dict[str, np.ndarray]:
    """`policy.get_action_guided(...)` where the policy has it (guided flow-matching inpainting); otherwise the
    fallback for policies that cannot inpaint (scripted expert, ZMQ server, upstream wrapper): plain
    `get_action`, then the first `frozen_steps` rows overwritten with `prefix` (no soft guidance).

    `prefix`: {action.<group>: (n, d)} in joint units, the previous chunk's actions for this chunk's steps
    0..n-1; `weights` (n,) the soft mask (1 frozen ... 0). Either way rows < `frozen_steps` equal the prefix
    exactly (float32), for every key the prefix and the chunk share.
    """
    guided = getattr(policy, "get_action_guided", None)
    if callable(guided):
        return guided(observation, prefix, weights, frozen_steps, beta=beta, guidance=guidance)
    chunk = {k: np.array(v, copy=True) for k, v in policy.get_action(observation).items()}
    for key, value in chunk.items():
        if key in prefix and frozen_steps:
            n = min(frozen_steps, len(value), len(prefix[key]))
            value[:n] = np.asarray(prefix[key][:n], value.dtype)
    return chunk
