"""Proprioception: the robot's own joint sensors, end effectors by forward kinematics, and what its hands hold.

A grasp is inferred from proprioception alone (the hand closes next to an object's fused estimate);
the held object then moves with the hand, and on release it is predicted to rest below it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sage_gr00t.modality import state_key
from sage_gr00t.perceive.readings import PROPRIOCEPTION, Estimate, SensorReading


class RobotStateSource(Protocol):
    def state(self) -> dict[str, np.ndarray]: ...
    def ee_pos(self, side: str) -> np.ndarray: ...


@dataclass
class ProprioConfig:
    confidence: float = 0.95
    hand_open: float = 0.052  # finger joint opening when open (sage_humanoid)
    hand_closed: float = 0.0
    grasp_closure: float = 0.35  # closure fraction above which the hand holds whatever is between its fingers
    release_closure: float = 0.2
    grasp_radius: float = 0.05  # an object this close to the ee when the hand closes is taken as grasped
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # held object origin minus ee site
    table_height: float = 0.78
    rest_heights: dict[str, float] = field(  # origin height above the support after a release (m)
        default_factory=lambda: {"apple": 0.033, "default": 0.022}
    )
    support_offset: float = 0.006  # bins and plates lift released objects by their floor thickness


@dataclass
class ProprioReading:
    joints: dict[str, np.ndarray]
    ee: dict[str, np.ndarray]
    closure: dict[str, float]
    timestamp: float


class ProprioceptionSensor:
    """Joint state (high confidence) and the position of an object held in a hand.

    A grasp is inferred from proprioception alone: the hand closes while an object's (fused)
    estimate is within `grasp_radius` of that hand's end effector. The held object then moves with
    the end effector (offset fixed at grasp); on release it is predicted to rest below the hand.
    """

    name = "proprioception"
    role = PROPRIOCEPTION

    def __init__(self, config: ProprioConfig | None = None) -> None:
        self.config = config or ProprioConfig()
        self.held: dict[str, tuple[str, np.ndarray]] = {}  # side -> (object, offset object - ee)
        self.released: dict[str, Estimate] = {}  # object -> predicted resting position
        self.last: ProprioReading | None = None

    def reset(self) -> None:
        self.held.clear()
        self.released.clear()
        self.last = None

    def read(self, robot: RobotStateSource, timestamp: float) -> ProprioReading:
        c = self.config
        joints = {k: np.array(v, float) for k, v in robot.state().items()}
        ee = {side: np.array(robot.ee_pos(side), float) for side in ("left", "right")}
        closure = {}
        span = c.hand_open - c.hand_closed
        for side in ("left", "right"):
            q = joints.get(state_key(f"{side}_hand"))
            if q is None:
                closure[side] = 0.0
                continue
            fingers = q.tolist()
            closure[side] = min(max(sum((c.hand_open - x) / span for x in fingers) / len(fingers), 0.0), 1.0)
        self.last = ProprioReading(joints, ee, closure, timestamp)
        return self.last

    def motion(self, previous: ProprioReading | None, current: ProprioReading) -> float:
        """Largest joint change since the previous reading (rad): is the robot moving?"""
        if previous is None:
            return 0.0
        return max(float(np.abs(current.joints[k] - previous.joints[k]).max()) for k in current.joints)

    def update_grasps(
        self, reading: ProprioReading, fused: dict[str, Estimate]
    ) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
        """Track grasps and releases; returns (grasped, released) as (object, confirmed position)."""
        c = self.config
        grasped, released = [], []
        for side in ("left", "right"):
            closure, ee = reading.closure[side], reading.ee[side]
            if side in self.held and closure < c.release_closure:
                obj, offset = self.held.pop(side)
                rest = c.rest_heights.get(obj, c.rest_heights["default"])
                # Released objects fall onto whatever is below: a bin/plate floor or the table.
                pos = np.array([*(ee + offset)[:2], c.table_height + c.support_offset + rest])
                self.released[obj] = Estimate(pos, c.confidence, reading.timestamp)
                released.append((obj, pos))
            elif side not in self.held and closure > c.grasp_closure:
                held_objects = {o for o, _ in self.held.values()}
                hand = ee.tolist()
                distances = ((math.dist(e.position.tolist(), hand), o)
                             for o, e in fused.items() if o not in held_objects)
                candidates = [(d, o) for d, o in distances if d < c.grasp_radius]
                if candidates:
                    # The closed hand, not the (possibly corrupted) belief, says where the object is.
                    _, obj = min(candidates)
                    self.held[side] = (obj, np.asarray(c.grasp_offset, float))
                    self.released.pop(obj, None)
                    grasped.append((obj, ee + np.asarray(c.grasp_offset, float)))
        return grasped, released

    def estimate(self, reading: ProprioReading) -> SensorReading:
        """Object estimates that follow from the robot's own body: held objects."""
        est = {
            obj: Estimate(reading.ee[side] + offset, self.config.confidence, reading.timestamp)
            for side, (obj, offset) in self.held.items()
        }
        fingerprint = hashlib.blake2b(
            b"".join(v.tobytes() for v in reading.joints.values()), digest_size=16
        ).hexdigest()
        return SensorReading(self.name, est, reading.timestamp, fingerprint)

    def sense(self, env: RobotStateSource, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading:
        """Standalone use: read the joints and report the held objects (`PerceptionPipeline` calls `read`
        and `estimate` itself, since it also needs the joint reading for motion and grasps)."""
        return self.estimate(self.read(env, timestamp))
