"""Executing 16-step action chunks at control rate without jerks at chunk boundaries.

Users of GR00T see the arm jump when a new chunk starts: consecutive chunks are sampled from
different noise and disagree where they overlap. Modes:
- `none`: execute the first `execute_steps` of each chunk, then query again (upstream default).
- `blend`: when a new chunk arrives, cross-fade from the old chunk's remaining predictions to the
  new chunk over `blend_steps` (linear weights).
- `ensemble`: ACT-style temporal ensembling: every prediction made for the current step is
  averaged with weights exp(-decay * age), oldest first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from sage_gr00t.policy.base import Policy

MODES = ("none", "blend", "ensemble")


@dataclass
class ChunkExecutorConfig:
    mode: str = "blend"
    execute_steps: int = 8  # actions executed from each chunk before the next query
    blend_steps: int = 4
    ensemble_decay: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"Unknown chunk execution mode {self.mode!r}; use one of {MODES}.")
        if self.execute_steps < 1:
            raise ValueError("execute_steps must be >= 1.")


class ChunkExecutor:
    """Wraps a `Policy`; `act(obs)` returns one control step's action dict."""

    def __init__(self, policy: Policy, config: ChunkExecutorConfig | None = None) -> None:
        self.policy = policy
        self.config = config or ChunkExecutorConfig()
        self.reset()

    def reset(self) -> None:
        self.policy.reset()
        self._chunk: dict[str, np.ndarray] = {}
        self._cursor = 0
        self._previous: dict[str, np.ndarray] = {}  # old chunk's unexecuted tail, for blending
        self._blend_n = self._blend_i = 0
        self._predictions: deque[tuple[int, dict[str, np.ndarray]]] = deque()  # (start step, chunk)
        self._step = 0
        self.queries = 0

    def _query(self, obs: dict) -> dict[str, np.ndarray]:
        self.queries += 1
        return {k: np.asarray(v, np.float64) for k, v in self.policy.get_action(obs).items()}

    def act(self, obs: dict) -> dict[str, np.ndarray]:
        if self.config.mode == "ensemble":
            action = self._ensemble(obs)
        else:
            chunk_len = len(next(iter(self._chunk.values()))) if self._chunk else 0
            if self._cursor >= min(self.config.execute_steps, chunk_len):
                tail = {k: v[self._cursor :] for k, v in self._chunk.items()}
                tail_len = min((len(v) for v in tail.values()), default=0)
                self._chunk, self._cursor = self._query(obs), 0
                self._previous = tail if self.config.mode == "blend" and tail_len > 0 else {}
                self._blend_n = min(self.config.blend_steps, tail_len) if self._previous else 0
                self._blend_i = 0
            action = {k: v[self._cursor] for k, v in self._chunk.items()}
            if self._blend_i < self._blend_n:  # cross-fade from the old chunk's plan to the new one
                w = (self._blend_i + 1) / (self._blend_n + 1)
                action = {k: w * action[k] + (1 - w) * self._previous[k][self._blend_i] for k in action}
                self._blend_i += 1
            self._cursor += 1
        self._step += 1
        return {k: v.astype(np.float32) for k, v in action.items()}

    def _ensemble(self, obs: dict) -> dict[str, np.ndarray]:
        if self._step % self.config.execute_steps == 0 or not self._predictions:
            self._predictions.append((self._step, self._query(obs)))
        while self._predictions:  # drop chunks that no longer cover the current step
            start, chunk = self._predictions[0]
            if self._step - start >= len(next(iter(chunk.values()))):
                self._predictions.popleft()
            else:
                break
        weights, values = [], []
        for start, chunk in self._predictions:
            age = len(weights)
            weights.append(np.exp(-self.config.ensemble_decay * age))
            values.append({k: v[self._step - start] for k, v in chunk.items()})
        total = sum(weights)
        return {k: sum(w * v[k] for w, v in zip(weights, values, strict=True)) / total for k in values[0]}


def mean_squared_jerk(actions: np.ndarray, dt: float) -> float:
    """Mean squared third derivative of a (T, D) joint-target trajectory (rad^2 / s^6)."""
    actions = np.asarray(actions, np.float64)
    if len(actions) < 4:
        return 0.0
    jerk = np.diff(actions, n=3, axis=0) / dt**3
    return float(np.mean(jerk**2))
