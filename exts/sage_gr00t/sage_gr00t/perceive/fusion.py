"""Trust-weighted sensor fusion and the per-step perception loop.

`SensorFusion`: per object, estimates are averaged with weights trust x confidence; sensors with
trust <= 0.2 are dropped; when the remaining estimates disagree by more than a threshold the most
trusted sensor is followed (averaging two incompatible beliefs gives a position neither supports),
among the estimates their sensors do not themselves rate as near-guesses.

`FusionConfig(use_trust=False)` is the ablation without trust: every sensor counts as fully trusted
(weights = self-reported confidence only), nothing is dropped, the trust engine's validity checks
(frozen stream, impossible jumps) are ignored and memory takes every fused estimate. The trust
engine still runs, so its scores can be reported, but nothing acts on them.

`PerceptionPipeline`: a list of sensors (`readings.Sensor`) -> trust -> fusion. By default
(`default_sensors`) the camera (optionally fault-injected), proprioception and memory; any other
sensor in the list is scored and fused like them. Grasps/releases are inferred from the
proprioception sensor and fed back to the trust engine as confirmations; the fused result is stored
in the memory sensor. The camera is read every `camera_every`-th control step (a 5-10 Hz camera at
20 Hz control); in between, fusion runs on the other sensors (proprioception: held objects; memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sage_gr00t.perceive.camera import POLICY_IMAGE, FrameSource, image_stream_reading
from sage_gr00t.perceive.memory import MemorySensor
from sage_gr00t.perceive.proprioception import ProprioceptionSensor, ProprioReading, RobotStateSource
from sage_gr00t.perceive.readings import CAMERA, MEMORY, PROPRIOCEPTION, ROLES, Estimate, Sensor, SensorReading
from sage_gr00t.perceive.trust import TrustEngine


@dataclass
class FusionConfig:
    drop_threshold: float = 0.2  # sensors at or below this trust are ignored
    disagreement: float = 0.06  # m: beyond this spread, follow the most trusted sensor
    # An estimate its own sensor rates below this (a detector's few stray pixels) is no claim to follow in a
    # disagreement, however trusted the sensor; it still joins averages, with its small weight.
    min_claim_confidence: float = 0.1
    use_trust: bool = True  # False: ablation, all sensors fully trusted, none dropped, validity ignored


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
        authority: str | None = None,
    ) -> dict[str, FusedEstimate]:
        """`authority`: a sensor whose (valid, not dropped) estimate of an object is taken alone --
        proprioception for what the robot's own hand holds or just let go of: a carried object moves
        with the hand, and averaging it with a lagging memory, or outvoting it, leaves it behind."""
        c = self.config
        if not c.use_trust:
            trust = {r.sensor: 1.0 for r in readings}
            valid = None
        candidates: dict[str, list[tuple[str, Estimate, float]]] = {}
        for r in readings:
            t = trust.get(r.sensor, 0.0)
            if c.use_trust and t <= c.drop_threshold:
                continue
            for obj, est in r.estimates.items():
                if valid is not None and obj not in valid.get(r.sensor, set()):
                    continue
                candidates.setdefault(obj, []).append((r.sensor, est, t))
        out: dict[str, FusedEstimate] = {}
        for obj, cands in candidates.items():
            if authority is not None and len(cands) > 1 and any(sensor == authority for sensor, _, _ in cands):
                cands = [x for x in cands if x[0] == authority]
            if len(cands) == 1:
                sensor, est, _ = cands[0]
                out[obj] = FusedEstimate(est.position.copy(), est.confidence, timestamp, (sensor,))
                continue
            pos = [e.position.tolist() for _, e, _ in cands]
            spread = max(math.dist(a, b) for i, a in enumerate(pos) for b in pos[i + 1 :])
            if spread > c.disagreement:
                # Most trusted wins; self-reported confidence only breaks ties, and near-zero confidence
                # makes no claim (followed once, a stray detection would be remembered as the object).
                claims = [x for x in cands if x[1].confidence >= c.min_claim_confidence] or cands
                sensor, est, _ = max(claims, key=lambda x: (x[2], x[1].confidence))
                out[obj] = FusedEstimate(est.position.copy(), est.confidence, timestamp, (sensor,), followed=sensor)
                continue
            # Weighted mean (trust x confidence) over a few 3-vectors, in plain Python.
            w = [max(t * e.confidence, 1e-6) for _, e, t in cands]
            total = sum(w)
            conf = sum(wi * e.confidence for wi, (_, e, _) in zip(w, cands, strict=True)) / total
            position = np.array([sum(wi * p[k] for wi, p in zip(w, pos, strict=True)) / total for k in range(3)])
            out[obj] = FusedEstimate(position, conf, timestamp, tuple(s for s, _, _ in cands))
        return out


class PerceptionEnv(FrameSource, RobotStateSource, Protocol):
    """What the perception loop reads from the robot: camera renders and its own joints only."""


@dataclass
class PipelineConfig:
    moving_threshold: float = 1e-3  # rad per control step: the robot is moving
    release_hold: float = 1.0  # s: proprioception vouches for a released object's resting place this long
    memory_min_trust: float = 0.5  # memory only takes positions supported by a sensor this trusted
    camera_every: int = 1  # read the camera every k-th step (k=4: 5 Hz at 20 Hz control)
    # Every control step, also judge the image the policy gets (the observation's) as a stream of its own
    # (`camera.POLICY_IMAGE`): the policy acts on it every step, so a black or missing frame is caught on
    # the step it arrives (a 5 Hz check let up to three reach the policy). The bridge holds the robot when
    # that stream is frozen or missing.
    watch_policy_image: bool = True
    reach: float = 0.15  # m: an object centred this close to an end effector can be touched by that hand

    def __post_init__(self) -> None:
        if self.camera_every < 1:
            raise ValueError(f"camera_every must be >= 1, got {self.camera_every}.")


@dataclass
class PerceptionStep:
    fused: dict[str, FusedEstimate]
    readings: list[SensorReading]
    valid: dict[str, set[str]]
    trust: dict[str, float]
    grasped: list[tuple[str, np.ndarray]] = field(default_factory=list)
    released: list[tuple[str, np.ndarray]] = field(default_factory=list)

    def reading(self, sensor: str) -> SensorReading | None:
        """This step's reading of `sensor` (None: not read this step, e.g. between camera frames)."""
        return next((r for r in self.readings if r.sensor == sensor), None)


def default_sensors(camera: Sensor) -> list[Sensor]:
    """The built-in sensor set: `camera` (a `CameraSensor`, possibly wrapped), fresh proprioception and memory."""
    return [camera, ProprioceptionSensor(), MemorySensor()]


class PerceptionPipeline:
    """One `step` per control step: read sensors, score trust, fuse, remember, infer grasps.

    `sensors`: every evidence source, in the order their readings are listed (and fused). It must hold
    one proprioception sensor and one memory sensor (`role` attribute; see `readings.ROLES`), and may
    hold one camera; every other sensor is read each step (`sense`; None: nothing this step).
    """

    def __init__(
        self,
        sensors: list[Sensor],
        trust: TrustEngine | None = None,
        fusion: SensorFusion | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        self._sensors = list(sensors)
        names = [s.name for s in self._sensors]
        if len(set(names)) != len(names):
            raise ValueError(f"Sensor names must be unique (trust is kept per name), got {names}.")
        roles: dict[str, int] = {}
        for i, s in enumerate(self._sensors):
            role = getattr(s, "role", None)
            if role is None:
                continue
            if role not in ROLES:
                raise ValueError(f"Unknown sensor role {role!r} of {s.name!r}; use one of {ROLES}.")
            if role in roles:
                raise ValueError(f"Two sensors in the {role!r} role: {self._sensors[roles[role]].name!r}, {s.name!r}.")
            roles[role] = i
        missing = [r for r in (PROPRIOCEPTION, MEMORY) if r not in roles]
        if missing:
            raise ValueError(f"No sensor in the role(s) {missing}; `default_sensors(camera)` has them all.")
        self._roles = roles
        self.trust = trust or TrustEngine()
        self.fusion = fusion or SensorFusion()
        self.config = config or PipelineConfig()
        self.fused: dict[str, FusedEstimate] = {}
        self.steps = 0
        self._moved = False  # the robot moved since the last camera frame
        self._moved_since_image = False  # ... since the previous policy image (judged every step)
        self.travel: dict[str, float] = {}  # object -> hand travel while within reach of it (m)

    @property
    def sensors(self) -> tuple[Sensor, ...]:
        return tuple(self._sensors)

    @property
    def proprio(self) -> ProprioceptionSensor:
        return self._sensors[self._roles[PROPRIOCEPTION]]  # type: ignore[return-value]

    @property
    def memory(self) -> MemorySensor:
        return self._sensors[self._roles[MEMORY]]  # type: ignore[return-value]

    @property
    def camera(self) -> Sensor | None:
        i = self._roles.get(CAMERA)
        return None if i is None else self._sensors[i]

    @camera.setter
    def camera(self, camera: Sensor) -> None:
        """Swap the camera in place (e.g. for a `FaultyCamera` around it), keeping its slot in the list."""
        role = getattr(camera, "role", CAMERA)
        if role != CAMERA:
            raise ValueError(f"{camera.name!r} is not a camera (role {role!r}).")
        i = self._roles.get(CAMERA)
        if i is None:
            self._roles[CAMERA] = len(self._sensors)
            self._sensors.append(camera)
        else:
            self._sensors[i] = camera

    def _update_travel(self, previous: ProprioReading | None, current: ProprioReading) -> None:
        """Per-object odometer: how far a hand within `reach` of the object's belief moved this step."""
        if previous is None:
            return
        now = {s: e.tolist() for s, e in current.ee.items()}
        before = {s: e.tolist() for s, e in previous.ee.items()}
        moved = {s: math.dist(now[s], before[s]) for s in now}
        holding = {side: obj for side, (obj, _) in self.proprio.held.items()}
        for obj, f in self.fused.items():
            p = f.position.tolist()
            # A hand that holds the object carries it however stale the belief is; otherwise a belief
            # left behind would cap the odometer and reject the hand's own reports of its load forever.
            near = [m for s, m in moved.items() if holding.get(s) == obj
                    or min(math.dist(p, now[s]), math.dist(p, before[s])) <= self.config.reach]
            self.travel[obj] = self.travel.get(obj, 0.0) + max(near, default=0.0)

    def camera_due(self) -> bool:
        """Whether the next `step` reads the camera."""
        return self.steps % self.config.camera_every == 0

    def step(self, env: PerceptionEnv, timestamp: float, rgb: np.ndarray | None = None) -> PerceptionStep:
        proprio, memory, camera = self.proprio, self.memory, self.camera
        previous = proprio.last
        joints = proprio.read(env, timestamp)
        moving = proprio.motion(previous, joints) > self.config.moving_threshold
        self._moved |= moving
        self._moved_since_image |= moving
        self._update_travel(previous, joints)
        held = proprio.estimate(joints)
        # Recently released objects: proprioception knows where it let go of them.
        for obj, est in proprio.released.items():
            if timestamp - est.timestamp <= self.config.release_hold and obj not in held.estimates:
                held.estimates[obj] = Estimate(est.position, est.confidence, timestamp)
        # Frozen-frame check, per stream: did the robot move since that stream's previous frame?
        moved = {camera.name: self._moved} if camera is not None else {}
        moved[POLICY_IMAGE] = self._moved_since_image
        camera_due = self.camera_due()
        readings: list[SensorReading] = []
        for sensor in self._sensors:
            if sensor is proprio:
                reading: SensorReading | None = held
            elif sensor is camera:
                if camera_due:
                    reading = camera.sense(env, timestamp, rgb)
                    self._moved = False
                else:
                    reading = None
                    if hasattr(camera, "skip"):
                        camera.skip()  # time passes for the camera (fault schedules count control steps)
            else:
                reading = sensor.sense(env, timestamp, rgb)
            if reading is not None:
                readings.append(reading)
        if self.config.watch_policy_image and rgb is not None:
            readings.append(image_stream_reading(rgb, timestamp))
            self._moved_since_image = False
        self.steps += 1
        valid = self.trust.observe(readings, moved, timestamp, robot_travel=self.travel)
        trust = self.trust.trusts()
        fused = self.fusion.fuse(readings, trust, valid, timestamp, authority=proprio.name)
        self.fused = fused
        fresh = {o: any(s != memory.name for s in f.sources) for o, f in fused.items()}
        as_estimates = {o: Estimate(f.position, f.confidence, timestamp) for o, f in fused.items()}
        # Only well-trusted evidence may overwrite memory: a weak sensor's leakage into the fused
        # estimate would otherwise accumulate there step after step.
        strong = {
            o: e for o, e in as_estimates.items()
            if not self.fusion.config.use_trust
            or o not in memory.store
            or any(trust.get(s, 0.0) >= self.config.memory_min_trust for s in fused[o].sources)
        }
        memory.update(strong, fresh, timestamp)
        grasped, released = proprio.update_grasps(joints, as_estimates)
        for obj, pos in grasped + released:
            self.trust.confirm(obj, pos, timestamp)
        for obj, _ in released:  # held -> resting: a jump (a fall) that proprioception itself predicts
            for sensor in self.trust.sensors:
                self.trust.forget(sensor, obj)
        return PerceptionStep(fused, readings, valid, trust, grasped, released)
