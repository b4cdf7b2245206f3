"""Trust engine: per-sensor trust from four smoothed components, per-component (module) trust.

Sensor trust = 0.3 consistency + 0.3 reliability + 0.2 accuracy + 0.2 quality (SAGE's defaults,
RESEARCH.md section 4), each component an exponential moving average of per-step scores in [0, 1]:
- consistency: agreement of the sensor's estimates with the trust-weighted estimate of the *other*
  sensors (leave-one-out, so a sensor cannot agree with itself);
- reliability: the step delivered valid, fresh, non-frozen data (dropouts, frozen frames while the
  robot moves, non-finite or physically impossible jumps count against it). Objects on the table
  move only when the robot moves them, so when the caller passes per-object odometers
  (`robot_travel`: how far the hands travelled while near each object) an estimate may move at
  most that far since the sensor's previous one (plus detector jitter), capped by `max_speed`;
- accuracy: agreement with positions confirmed later (`confirm`, e.g. where a grasp closed);
- quality: the sensor's self-reported confidence of its valid estimates (0 for invalid ones:
  a detector's confidence means nothing when its data is stale or impossible).
Component trust (gr00t_visual, ...) is an exponential average of its outcomes (1 success, 0 failure) at rate
`outcome_rate`, within [0.1, 1]: it settles at the component's success rate, so a component that fails one
subtask in two ends near 0.5 (fixed +0.05 / -0.03 steps rose at any success rate above 37.5%).

The EMA rate is defined per `control_dt` of time: a sensor that reports less often (a 5 Hz camera
at 20 Hz control) takes correspondingly larger steps, so its trust reacts in the same time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from sage_gr00t.perceive.camera import POLICY_IMAGE
from sage_gr00t.perceive.readings import Estimate, SensorReading

TRUST_WEIGHTS = {"consistency": 0.3, "reliability": 0.3, "accuracy": 0.2, "quality": 0.2}
COMPONENTS_INITIAL = {"gr00t_visual": 0.8, "gr00t_language": 0.9, "sage_planning": 0.7, "sage_execution": 0.6}


@dataclass
class TrustConfig:
    weights: dict[str, float] = field(default_factory=lambda: dict(TRUST_WEIGHTS))
    smoothing: float = 0.2  # EMA rate per control_dt: a broken sensor loses trust within ~10 control steps
    control_dt: float = 0.05  # s: the time `smoothing` refers to (20 Hz control)
    accuracy_smoothing: float = 0.5  # confirmations are rare, so each one counts more
    initial: dict[str, dict[str, float]] = field(  # per-sensor priors of the four components
        default_factory=lambda: {
            "default": {"consistency": 0.8, "reliability": 1.0, "accuracy": 0.8, "quality": 0.8},
            # Forward kinematics of the robot's own joint encoders: known-accurate by construction.
            "proprioception": {"consistency": 0.9, "reliability": 1.0, "accuracy": 0.95, "quality": 0.95},
        }
    )
    consistency_scale: float = 0.03  # m: agreement score exp(-d^2 / 2 s^2)
    accuracy_scale: float = 0.03
    frozen_steps: int = 3  # identical data this many readings in a row while the robot moves = frozen
    # sensors whose raw data must change when the robot moves (the camera estimator's frames, and the
    # policy's own image stream)
    frozen_checked: tuple[str, ...] = ("camera", POLICY_IMAGE)
    # Raw streams that carry no estimates: nothing to agree with or be confident about, so a fresh, valid
    # frame counts as full consistency and quality (and a frozen or missing one as none).
    stream_only: tuple[str, ...] = (POLICY_IMAGE,)
    max_speed: float = 0.6  # m/s: faster apparent motion of an object is impossible here
    jump_tolerance: float = 0.03  # m, added to the motion bound (detector jitter, partial occlusion)
    gap_reset: float = 0.5  # s: an object not reported this long may reappear anywhere
    confirm_max_age: float = 1.0  # s: estimates older than this are not judged by a confirmation
    component_initial: dict[str, float] = field(default_factory=lambda: dict(COMPONENTS_INITIAL))
    outcome_rate: float = 0.1  # weight of each new outcome: about 10 outcomes to follow a change
    component_bounds: tuple[float, float] = (0.1, 1.0)


@dataclass
class SensorTrust:
    consistency: float
    reliability: float
    accuracy: float
    quality: float

    def total(self, weights: dict[str, float]) -> float:
        return float(sum(w * getattr(self, k) for k, w in weights.items()))


@dataclass
class _SensorState:
    scores: SensorTrust
    last_fingerprint: str | None = None
    repeats: int = 0
    frozen: bool = False
    stream_ok: bool = True  # the latest reading delivered fresh, valid raw data (not frozen, not a dropout)
    delivered: bool = True  # the latest reading delivered usable raw data at all (not missing, not black)
    last: dict[str, Estimate] = field(default_factory=dict)  # last delivered estimate per object
    reported: dict[str, tuple[Estimate, float]] = field(default_factory=dict)  # previous report, odometer
    last_seen: float | None = None  # timestamp of the sensor's previous reading


def _agreement(distance: float, scale: float) -> float:
    return math.exp(-0.5 * (distance / scale) ** 2)


def _finite(position: np.ndarray) -> bool:
    return math.isfinite(float(position.sum()))  # NaN or inf anywhere makes the sum non-finite


# Per-step work is on a handful of 3-vectors: plain Python math avoids numpy's per-call overhead.
def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return math.dist(a.tolist(), b.tolist())


class TrustEngine:
    """Tracks sensor and component trust over an episode, with full history for plots."""

    def __init__(self, config: TrustConfig | None = None) -> None:
        self.config = config or TrustConfig()
        self.sensors: dict[str, _SensorState] = {}
        self.components: dict[str, float] = dict(self.config.component_initial)
        self.history: list[dict] = []
        self.events: list[dict] = []  # confirmations and component outcomes

    # ------------------------------------------------------------------ sensors
    def _state(self, sensor: str) -> _SensorState:
        if sensor not in self.sensors:
            prior = self.config.initial.get(sensor, self.config.initial["default"])
            self.sensors[sensor] = _SensorState(SensorTrust(**prior))
        return self.sensors[sensor]

    def trust(self, sensor: str) -> float:
        return self._state(sensor).scores.total(self.config.weights)

    def trusts(self) -> dict[str, float]:
        return {name: self.trust(name) for name in self.sensors}

    def is_frozen(self, sensor: str) -> bool:
        return self._state(sensor).frozen

    def stream_ok(self, sensor: str) -> bool:
        """Whether the sensor's latest reading delivered fresh, valid raw data (not frozen, not missing)."""
        return self._state(sensor).stream_ok

    def delivered(self, sensor: str) -> bool:
        """Whether the sensor's latest reading delivered usable raw data at all. False (a missing or black
        frame) is unambiguous, unlike a repeated frame, which a robot that barely moves can also see."""
        return self._state(sensor).delivered

    def _ema(self, old: float, new: float, rate: float | None = None) -> float:
        rate = self.config.smoothing if rate is None else rate
        return min(max((1 - rate) * old + rate * new, 0.0), 1.0)

    def _rate(self, state: _SensorState, timestamp: float) -> float:
        """EMA rate for a reading `timestamp - last_seen` after the previous one (`smoothing` per control_dt)."""
        c = self.config
        if state.last_seen is None or not np.isfinite(timestamp) or timestamp - state.last_seen <= c.control_dt:
            return c.smoothing
        steps = min((timestamp - state.last_seen) / c.control_dt, 20.0)
        return float(1.0 - (1.0 - c.smoothing) ** steps)

    def _valid(self, state: _SensorState, obj: str, est: Estimate, travel: dict[str, float] | None = None) -> bool:
        """Finite, and no impossible jump from the sensor's own previous report of the object.

        The previous REPORT, valid or not: a sensor whose consecutive reports jump around is unreliable
        even if it keeps returning near an old position; a single glitch costs two invalid reports.
        """
        c = self.config
        if not _finite(est.position) or not math.isfinite(est.confidence):
            return False
        prev, prev_travel = state.reported.get(obj, (None, 0.0))
        if prev is None or not np.isfinite(prev.timestamp) or est.timestamp - prev.timestamp > c.gap_reset:
            return True
        if travel is not None and obj in travel:
            # Measured: how far a hand near (or holding) the object moved -- a carried object goes as
            # fast as the hand, which may exceed the assumed speed limit below.
            bound = travel[obj] - prev_travel
        else:
            bound = c.max_speed * max(est.timestamp - prev.timestamp, 0.0)
        return _dist(est.position, prev.position) <= c.jump_tolerance + bound

    def observe(
        self, readings: Iterable[SensorReading], robot_moving: Mapping[str, bool], timestamp: float,
        robot_travel: dict[str, float] | None = None,
    ) -> dict[str, set[str]]:
        """Score one control step; returns sensor -> objects whose estimates are valid (fusable).

        `robot_moving`: per frozen-checked sensor, whether the robot moved since that sensor's previous
        reading (streams are read at different rates); a stream that repeats itself while it moves is frozen.
        `robot_travel`: object -> cumulative path length (m, monotone) of the robot's hands while near
        it, i.e. the farthest the robot can have moved it; objects not listed are bounded by `max_speed`.
        """
        c = self.config
        readings = list(readings)
        valid: dict[str, set[str]] = {}
        step_ok: dict[str, bool] = {}
        for r in readings:
            state = self._state(r.sensor)
            # Frozen data: the raw stream repeats while the robot moves (it would change the image).
            if r.sensor in c.frozen_checked and r.fingerprint is not None:
                if r.fingerprint == state.last_fingerprint:
                    state.repeats += 1 if robot_moving.get(r.sensor, False) else 0
                else:
                    state.repeats = 0
                state.frozen = state.repeats >= c.frozen_steps - 1
                state.last_fingerprint = r.fingerprint
            state.delivered = r.raw_valid
            ok = r.raw_valid and not state.frozen
            step_ok[r.sensor] = state.stream_ok = ok
            valid[r.sensor] = {o for o, e in r.estimates.items() if ok and self._valid(state, o, e, robot_travel)}
            if ok:
                for o, e in r.estimates.items():
                    if _finite(e.position):
                        state.reported[o] = (e, (robot_travel or {}).get(o, 0.0))

        trusts = {r.sensor: self.trust(r.sensor) for r in readings}
        for r in readings:
            state = self._state(r.sensor)
            s = state.scores
            rate = self._rate(state, timestamp)
            state.last_seen = timestamp
            if not step_ok[r.sensor]:
                # Nothing usable this step: no reliability, and no evidence of consistency or quality.
                s.reliability = self._ema(s.reliability, 0.0, rate)
                s.consistency = self._ema(s.consistency, 0.0, rate)
                s.quality = self._ema(s.quality, 0.0, rate)
                continue
            n = len(r.estimates)
            s.reliability = self._ema(s.reliability, len(valid[r.sensor]) / n if n else 1.0, rate)
            if r.sensor in c.stream_only:
                s.consistency = self._ema(s.consistency, 1.0, rate)
                s.quality = self._ema(s.quality, 1.0, rate)
                continue
            if n:
                s.quality = self._ema(
                    s.quality, sum(e.confidence for o, e in r.estimates.items() if o in valid[r.sensor]) / n, rate
                )
            agreements = []
            for obj, est in r.estimates.items():
                ref = self._reference(obj, r.sensor, readings, valid, trusts)
                if ref is None:
                    continue
                ok_obj = obj in valid[r.sensor]
                agreements.append(_agreement(_dist(est.position, ref), c.consistency_scale) if ok_obj else 0.0)
            if agreements:
                s.consistency = self._ema(s.consistency, sum(agreements) / len(agreements), rate)
            for obj, est in r.estimates.items():
                if obj in valid[r.sensor]:
                    state.last[obj] = est
        self._record(timestamp)
        return valid

    @staticmethod
    def _reference(
        obj: str, exclude: str, readings: list[SensorReading], valid: dict[str, set[str]], trusts: dict[str, float]
    ) -> np.ndarray | None:
        """Trust- and confidence-weighted position of `obj` from all valid sensors but `exclude`."""
        pos, weights = [], []
        for r in readings:
            if r.sensor == exclude or obj not in valid[r.sensor]:
                continue
            e = r.estimates[obj]
            pos.append(e.position)
            weights.append(max(trusts[r.sensor] * e.confidence, 1e-6))
        if not pos:
            return None
        if len(pos) == 1:
            return pos[0]
        return sum(w * p for w, p in zip(weights, pos, strict=True)) / sum(weights)

    def confirm(self, obj: str, position: np.ndarray, timestamp: float | None = None) -> dict[str, float]:
        """Ground a past belief: `obj` really was at `position` (grasp closed / object placed there).

        Every sensor whose recent estimate of `obj` exists is scored on it; returns sensor -> score.
        """
        c = self.config
        scores = {}
        for name, state in self.sensors.items():
            est = state.last.get(obj)
            if est is None or (timestamp is not None and timestamp - est.timestamp > c.confirm_max_age):
                continue
            score = _agreement(_dist(est.position, np.asarray(position, float)), c.accuracy_scale)
            state.scores.accuracy = self._ema(state.scores.accuracy, score, c.accuracy_smoothing)
            scores[name] = score
        self.events.append({"t": timestamp, "kind": "confirm", "object": obj,
                            "position": np.asarray(position).tolist(), "scores": scores})
        return scores

    def forget(self, sensor: str, obj: str) -> None:
        """The sensor knows its model of `obj` changed discontinuously (e.g. the hand let go of it):
        its next estimate is not judged against the previous one."""
        self._state(sensor).last.pop(obj, None)
        self._state(sensor).reported.pop(obj, None)

    # ------------------------------------------------------------------ components
    def record_outcome(self, component: str, success: bool, timestamp: float | None = None) -> float:
        c = self.config
        if component not in self.components:
            raise ValueError(f"Unknown component {component!r}; have {sorted(self.components)}.")
        trust = self.components[component]
        trust += c.outcome_rate * (float(success) - trust)
        self.components[component] = float(np.clip(trust, *c.component_bounds))
        self.events.append({"t": timestamp, "kind": "outcome", "component": component, "success": success,
                            "trust": self.components[component]})
        return self.components[component]

    # ------------------------------------------------------------------ history
    def _record(self, timestamp: float) -> None:
        self.history.append({
            "t": timestamp,
            "sensors": {
                name: {**vars(st.scores), "trust": st.scores.total(self.config.weights), "frozen": st.frozen}
                for name, st in self.sensors.items()
            },
            "components": dict(self.components),
        })

    def series(self, sensor: str, key: str = "trust") -> np.ndarray:
        """One trust value of one sensor over time (NaN before the sensor first reported)."""
        return np.array([h["sensors"].get(sensor, {}).get(key, np.nan) for h in self.history], dtype=float)

    def component_series(self, component: str) -> np.ndarray:
        return np.array([h["components"][component] for h in self.history], dtype=float)
