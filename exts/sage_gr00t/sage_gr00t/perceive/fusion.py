"""Trust-weighted sensor fusion and the per-step perception loop.

`SensorFusion`: per object, estimates are averaged with weights trust x confidence; sensors with
trust <= 0.2 are dropped; when the remaining estimates disagree by more than a threshold the most
trusted sensor is followed (averaging two incompatible beliefs gives a position neither supports).

`PerceptionPipeline`: proprioception + camera (optionally fault-injected) + memory -> trust -> fusion,
with grasps/releases inferred from proprioception and fed back to the trust engine as confirmations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sage_gr00t.perceive.sensors import (
    Estimate,
    FrameSource,
    MemorySensor,
    ProprioceptionSensor,
    RobotStateSource,
    SensorReading,
)
from sage_gr00t.perceive.trust import TrustEngine


@dataclass
class FusionConfig:
    drop_threshold: float = 0.2  # sensors at or below this trust are ignored
    disagreement: float = 0.06  # m: beyond this spread, follow the most trusted sensor


@dataclass(frozen=True)
class FusedEstimate:
    position: np.ndarray
    confidence: float
    timestamp: float
    sources: tuple[str, ...]  # sensors that contributed
    followed: str | None = None  # set when sensors disagreed and one was followed


class SensorFusion:
    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config or FusionConfig()

    def fuse(
        self,
        readings: list[SensorReading],
        trust: dict[str, float],
        valid: dict[str, set[str]] | None = None,
        timestamp: float = 0.0,
    ) -> dict[str, FusedEstimate]:
        c = self.config
        candidates: dict[str, list[tuple[str, Estimate, float]]] = {}
        for r in readings:
            t = trust.get(r.sensor, 0.0)
            if t <= c.drop_threshold:
                continue
            for obj, est in r.estimates.items():
                if valid is not None and obj not in valid.get(r.sensor, set()):
                    continue
                candidates.setdefault(obj, []).append((r.sensor, est, t))
        out: dict[str, FusedEstimate] = {}
        for obj, cands in candidates.items():
            pos = np.array([e.position for _, e, _ in cands])
            spread = max((float(np.linalg.norm(a - b)) for i, a in enumerate(pos) for b in pos[i + 1 :]), default=0.0)
            if spread > c.disagreement:
                # Most trusted wins; self-reported confidence only breaks ties.
                sensor, est, _ = max(cands, key=lambda x: (x[2], x[1].confidence))
                out[obj] = FusedEstimate(est.position.copy(), est.confidence, timestamp, (sensor,), followed=sensor)
                continue
            w = np.array([max(t * e.confidence, 1e-6) for _, e, t in cands])
            conf = float(np.average([e.confidence for _, e, _ in cands], weights=w))
            out[obj] = FusedEstimate(np.average(pos, axis=0, weights=w), conf, timestamp,
                                     tuple(s for s, _, _ in cands))
        return out


class CameraLike(Protocol):
    name: str

    def read(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading: ...


class PerceptionEnv(FrameSource, RobotStateSource, Protocol):
    """What the perception loop reads from the robot: camera renders and its own joints only."""


@dataclass
class PipelineConfig:
    moving_threshold: float = 1e-3  # rad per control step: the robot is moving
    release_hold: float = 1.0  # s: proprioception vouches for a released object's resting place this long
    memory_min_trust: float = 0.5  # memory only takes positions supported by a sensor this trusted


@dataclass
class PerceptionStep:
    fused: dict[str, FusedEstimate]
    readings: list[SensorReading]
    valid: dict[str, set[str]]
    trust: dict[str, float]
    grasped: list[tuple[str, np.ndarray]] = field(default_factory=list)
    released: list[tuple[str, np.ndarray]] = field(default_factory=list)


class PerceptionPipeline:
    """One `step` per control step: read sensors, score trust, fuse, remember, infer grasps."""

    def __init__(
        self,
        camera: CameraLike,
        proprio: ProprioceptionSensor | None = None,
        memory: MemorySensor | None = None,
        trust: TrustEngine | None = None,
        fusion: SensorFusion | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        self.camera = camera
        self.proprio = proprio or ProprioceptionSensor()
        self.memory = memory or MemorySensor()
        self.trust = trust or TrustEngine()
        self.fusion = fusion or SensorFusion()
        self.config = config or PipelineConfig()
        self.fused: dict[str, FusedEstimate] = {}

    def step(self, env: PerceptionEnv, timestamp: float, rgb: np.ndarray | None = None) -> PerceptionStep:
        previous = self.proprio.last
        joints = self.proprio.read(env, timestamp)
        moving = self.proprio.motion(previous, joints) > self.config.moving_threshold
        held = self.proprio.estimate(joints)
        # Recently released objects: proprioception knows where it let go of them.
        for obj, est in self.proprio.released.items():
            if timestamp - est.timestamp <= self.config.release_hold and obj not in held.estimates:
                held.estimates[obj] = Estimate(est.position, est.confidence, timestamp)
        readings = [self.camera.read(env, timestamp, rgb), held, self.memory.estimate(timestamp)]
        valid = self.trust.observe(readings, moving, timestamp)
        trust = self.trust.trusts()
        fused = self.fusion.fuse(readings, trust, valid, timestamp)
        self.fused = fused
        fresh = {o: any(s != self.memory.name for s in f.sources) for o, f in fused.items()}
        as_estimates = {o: Estimate(f.position, f.confidence, timestamp) for o, f in fused.items()}
        # Only well-trusted evidence may overwrite memory: a weak sensor's leakage into the fused
        # estimate would otherwise accumulate there step after step.
        strong = {
            o: e for o, e in as_estimates.items()
            if o not in self.memory.store
            or any(trust.get(s, 0.0) >= self.config.memory_min_trust for s in fused[o].sources)
        }
        self.memory.update(strong, fresh, timestamp)
        grasped, released = self.proprio.update_grasps(joints, as_estimates)
        for obj, pos in grasped + released:
            self.trust.confirm(obj, pos, timestamp)
        for obj, _ in released:  # held -> resting: a jump that proprioception itself predicts
            self.trust.forget(self.proprio.name, obj)
        return PerceptionStep(fused, readings, valid, trust, grasped, released)
