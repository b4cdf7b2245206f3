"""SNARC salience: which experiences are worth remembering (and replaying during sleep).

Five components, each in [0, 1]:
- Surprise: prediction error (predicted vs observed next state or progress), relative to a
  running scale of recent errors, so a model that is always a little wrong stops being surprising.
- Novelty: distance, in a feature space of hashed task text + randomly projected state, to a
  bounded set of prototypes (online leader clustering), discounted by how often the nearest
  prototype has been visited, so repeated similar experiences become familiar.
- Arousal: change of the commanded action relative to a running scale (sudden motion), or 1.0
  when a safety filter intervened.
- Reward: |reward| squashed by a reward scale, or the magnitude of a success / failure outcome
  (failure weighs more: it carries more information for the planner).
- Conflict: sensor disagreement (e.g. the trust engine's disagreement between cameras and
  proprioception), squashed by a scale.

total = weighted mean of the components; `is_salient` when total >= threshold.

The scorer is deterministic given its config and the sequence of inputs (no Python `hash`, which
is salted per process; projections come from a seeded generator). Non-finite inputs are sanitized
(NaN -> 0, +-inf -> +-1e6) so scores stay finite and in [0, 1].
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields, replace
from itertools import pairwise

import numpy as np

_BIG = 1e6  # clip for sanitized inputs: keeps norms finite (1e6 * sqrt(dim) << float64 max)


def _finite(x: np.ndarray | float | None) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(x if x is not None else 0.0, dtype=np.float64)).ravel()
    return np.clip(np.nan_to_num(arr, nan=0.0, posinf=_BIG, neginf=-_BIG), -_BIG, _BIG)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


@dataclass
class Experience:
    """One control step (or subtask outcome) as memory sees it.

    `predicted` / `observed` are the model's prediction and what happened (next state, or a
    scalar progress); `trajectory` is an optional short window of arrays (states, actions,
    images) kept with a salient experience for replay.
    """

    episode_id: int | None
    step: int
    task: str
    state: np.ndarray
    action: np.ndarray
    subtask: str = ""
    reward: float = 0.0
    progress: float | None = None
    predicted: np.ndarray | float | None = None
    observed: np.ndarray | float | None = None
    prev_action: np.ndarray | None = None  # if None the scorer uses the episode's previous action
    sensor_disagreement: float = 0.0
    safety_intervention: bool = False
    success: bool | None = None  # None: outcome unknown yet (mid-subtask)
    trajectory: dict[str, np.ndarray] | None = None
    scores: SNARCScores | None = None

    @property
    def salience(self) -> float:
        return self.scores.total if self.scores is not None else 0.0


@dataclass(frozen=True)
class SNARCScores:
    surprise: float
    novelty: float
    arousal: float
    reward: float
    conflict: float
    total: float

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class SNARCConfig:
    # Weights: surprise and reward dominate (they say the world model or the policy was wrong);
    # they are normalized to sum to 1, so any non-negative values work.
    w_surprise: float = 0.25
    w_novelty: float = 0.20
    w_arousal: float = 0.15
    w_reward: float = 0.25
    w_conflict: float = 0.15
    # Any single strong component (>= 0.8 x the smallest weight, 0.15) passes; routine steps score < 0.1.
    threshold: float = 0.12
    # Surprise / arousal: ratio r = value / running scale; component = 1 - exp(-max(r - 1, 0) / tau),
    # so errors at or below the typical error score 0 and 3x the typical error scores ~0.74.
    surprise_init_scale: float = 0.02  # prior prediction error (rad RMS) before any data
    arousal_init_scale: float = 0.02  # prior action change per step (rad RMS)
    scale_decay: float = 0.98  # EMA decay of the running scales (~50 steps memory)
    scale_floor: float = 1e-4  # keeps ratios finite when the model is perfect
    outlier_clip: float = 4.0  # an outlier moves the running scale by at most 4x the scale
    ratio_tau: float = 1.5
    # Novelty: feature = [task_weight * hashed task text, projected state / state_scale].
    task_dim: int = 32
    state_dim: int = 32
    task_weight: float = 1.0
    state_scale: float = 0.25  # rad: a quarter radian of joint change is "a different situation"
    novelty_scale: float = 0.5  # feature distance at which novelty is 1 - 1/e before discounting
    merge_radius: float = 0.3  # within this distance an experience updates its prototype
    max_prototypes: int = 512
    familiarity_n0: float = 1.0  # discount n / (n + n0) on visits n of the nearest prototype
    # Reward / conflict.
    reward_scale: float = 1.0
    success_salience: float = 0.6
    failure_salience: float = 1.0
    conflict_scale: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        weights = self.weights()
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("SNARC weights must be non-negative with a positive sum.")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("SNARC threshold must be in [0, 1].")
        if self.max_prototypes < 1 or self.task_dim < 1 or self.state_dim < 1:
            raise ValueError("max_prototypes, task_dim and state_dim must be >= 1.")

    def weights(self) -> tuple[float, float, float, float, float]:
        return (self.w_surprise, self.w_novelty, self.w_arousal, self.w_reward, self.w_conflict)


def hash_text(text: str, dim: int) -> np.ndarray:
    """Signed feature hashing of word unigrams and bigrams, unit norm (zeros for empty text).

    blake2b rather than `hash()` so features are the same in every process (persisted memories
    and sleep workers must agree).
    """
    words = text.lower().split()
    vec = np.zeros(dim)
    for tok in words + [f"{a} {b}" for a, b in pairwise(words)]:
        h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    n = np.linalg.norm(vec)
    return vec / n if n > 0 else vec


class _RunningScale:
    """EMA of a non-negative magnitude with an outlier clip (one crash must not blind the scorer)."""

    def __init__(self, init: float, decay: float, floor: float, clip: float) -> None:
        self.value, self.decay, self.floor, self.clip = init, decay, floor, clip
        self.count = 0

    def ratio(self, x: float) -> float:
        return x / max(self.value, self.floor)

    def update(self, x: float) -> None:
        x = min(x, self.clip * max(self.value, self.floor))
        self.value = self.decay * self.value + (1.0 - self.decay) * x
        self.count += 1


class SNARCScorer:
    """Scores experiences; `score` also updates the running statistics (pass update=False to peek)."""

    def __init__(self, config: SNARCConfig | None = None) -> None:
        self.config = config or SNARCConfig()
        c = self.config
        self._surprise_scale = _RunningScale(c.surprise_init_scale, c.scale_decay, c.scale_floor, c.outlier_clip)
        self._arousal_scale = _RunningScale(c.arousal_init_scale, c.scale_decay, c.scale_floor, c.outlier_clip)
        self._prototypes = np.zeros((0, c.task_dim + c.state_dim))
        self._counts = np.zeros(0)
        self._last_used = np.zeros(0, dtype=np.int64)
        self._projections: dict[int, np.ndarray] = {}  # state length -> projection matrix
        self._last_action: tuple[int | None, np.ndarray] | None = None  # (episode, action)
        self._n_scored = 0

    # ------------------------------------------------------------------ features
    def _projection(self, n: int) -> np.ndarray:
        # Random projection (Johnson-Lindenstrauss) so any state length maps to a fixed dim;
        # seeded by (seed, n) so it is the same across processes.
        if n not in self._projections:
            rng = np.random.default_rng([self.config.seed, n])
            self._projections[n] = rng.standard_normal((self.config.state_dim, n)) / math.sqrt(self.config.state_dim)
        return self._projections[n]

    def features(self, exp: Experience) -> np.ndarray:
        c = self.config
        text = f"{exp.task} {exp.subtask}".strip()
        state = _finite(exp.state)
        # RMS-normalized: "every joint differs by state_scale" is distance 1 for any robot size.
        state = state / (c.state_scale * math.sqrt(max(state.size, 1)))
        proj = self._projection(state.size) @ state if state.size else np.zeros(c.state_dim)
        return np.concatenate([c.task_weight * hash_text(text, c.task_dim), proj])

    # ------------------------------------------------------------------ components
    @staticmethod
    def _ratio_component(ratio: float, tau: float) -> float:
        return float(1.0 - math.exp(-max(ratio - 1.0, 0.0) / tau))

    def _prediction_error(self, exp: Experience) -> float | None:
        if exp.predicted is None or exp.observed is None:
            return None
        pred, obs = _finite(exp.predicted), _finite(exp.observed)
        if pred.shape != obs.shape:
            raise ValueError(f"predicted shape {pred.shape} != observed shape {obs.shape}")
        return _rms(pred - obs)

    def _action_change(self, exp: Experience) -> float | None:
        prev = exp.prev_action
        if prev is None and self._last_action is not None and self._last_action[0] == exp.episode_id:
            prev = self._last_action[1]
        if prev is None:
            return None
        a, p = _finite(exp.action), _finite(prev)
        return _rms(a - p) if a.shape == p.shape else None

    def _nearest(self, feat: np.ndarray) -> tuple[int, float]:
        if not len(self._prototypes):
            return -1, math.inf
        d = np.linalg.norm(self._prototypes - feat, axis=1)
        i = int(np.argmin(d))
        return i, float(d[i])

    def _novelty(self, idx: int, dist: float) -> float:
        if idx < 0:
            return 1.0
        c = self.config
        n = self._counts[idx]
        familiarity = math.exp(-dist / c.novelty_scale) * n / (n + c.familiarity_n0)
        return float(np.clip(1.0 - familiarity, 0.0, 1.0))

    def _reward(self, exp: Experience) -> float:
        c = self.config
        r = math.tanh(abs(float(_finite(exp.reward)[0])) / c.reward_scale)
        if exp.success is True:
            r = max(r, c.success_salience)
        elif exp.success is False:
            r = max(r, c.failure_salience)
        return r

    # ------------------------------------------------------------------ public
    def score(self, exp: Experience, update: bool = True) -> SNARCScores:
        c = self.config
        err = self._prediction_error(exp)
        surprise = 0.0 if err is None else self._ratio_component(self._surprise_scale.ratio(err), c.ratio_tau)
        change = self._action_change(exp)
        arousal = 0.0 if change is None else self._ratio_component(self._arousal_scale.ratio(change), c.ratio_tau)
        if exp.safety_intervention:
            arousal = 1.0
        feat = self.features(exp)
        idx, dist = self._nearest(feat)
        novelty = self._novelty(idx, dist)
        reward = self._reward(exp)
        conflict = 1.0 - math.exp(-max(float(_finite(exp.sensor_disagreement)[0]), 0.0) / c.conflict_scale)
        comps = np.clip(np.array([surprise, novelty, arousal, reward, conflict]), 0.0, 1.0)
        w = np.asarray(c.weights())
        total = float(np.clip(comps @ w / w.sum(), 0.0, 1.0))
        if update:
            self._update(exp, err, change, feat, idx, dist)
        return SNARCScores(*(float(v) for v in comps), total=total)

    def annotate(self, exp: Experience, update: bool = True) -> Experience:
        """The experience with `scores` filled in (a shallow copy; the input is not modified)."""
        return replace(exp, scores=self.score(exp, update=update))

    def is_salient(self, scores: SNARCScores | float) -> bool:
        total = scores.total if isinstance(scores, SNARCScores) else float(scores)
        return total >= self.config.threshold

    @property
    def n_prototypes(self) -> int:
        return len(self._prototypes)

    def _update(
        self, exp: Experience, err: float | None, change: float | None, feat: np.ndarray, idx: int, dist: float
    ) -> None:
        c = self.config
        self._n_scored += 1
        if err is not None:
            self._surprise_scale.update(err)
        if change is not None:
            self._arousal_scale.update(change)
        self._last_action = (exp.episode_id, _finite(exp.action).copy())
        if idx >= 0 and dist <= c.merge_radius:
            # Online mean of the prototype's members: it drifts toward where experience clusters.
            self._counts[idx] += 1
            self._prototypes[idx] += (feat - self._prototypes[idx]) / self._counts[idx]
            self._last_used[idx] = self._n_scored
            return
        if len(self._prototypes) >= c.max_prototypes:
            # Bounded memory: replace the least recently matched prototype (forgetting the oldest
            # situations keeps novelty meaningful for the current task distribution).
            j = int(np.argmin(self._last_used))
            self._prototypes[j], self._counts[j], self._last_used[j] = feat, 1, self._n_scored
            return
        self._prototypes = np.vstack([self._prototypes, feat])
        self._counts = np.append(self._counts, 1.0)
        self._last_used = np.append(self._last_used, self._n_scored)
