"""The project's G1 joint groups on Unitree's motor indices, with per-joint servo gains from the embodiment.

Unitree numbers the G1's 29 body motors 0-28 (legs 0-11, waist 12-14, left arm 15-21, right arm 22-28, each arm
shoulder pitch / roll / yaw, elbow, wrist roll / pitch / yaw: the order of `UNITREE_G1.left.arm_joints`). The
`rt/arm_sdk` topic reuses LowCmd_ and reads slot 29 (unused by the body) as the blend weight between its
command and the built-in locomotion controller. Each Dex3 hand has 7 motors in the order thumb 0-2, middle
0-1, index 0-1 -- the order of `UNITREE_G1.<side>.hand_joints`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from sage_gr00t.modality import action_key
from sage_gr00t.sim.embodiment import SIDES, EmbodimentSpec

BODY_MOTORS = 29  # G1 29-DoF body
LOWCMD_SLOTS = 35  # unitree_hg LowCmd_.motor_cmd length
ARM_SDK_WEIGHT_SLOT = 29  # rt/arm_sdk: motor_cmd[29].q is the arm_sdk blend weight in [0, 1]
ARM_MOTOR_START = {"left": 15, "right": 22}
WAIST_MOTORS = (12, 13, 14)  # yaw, roll, pitch: held at zero (the embodiment locks the waist)
HAND_MOTORS = 7
SERVO_MODE_ENABLE = 1  # motor_cmd.mode: 1 = servo on (PMSM), 0 = off


def dex3_mode(motor_id: int, status: int = 0x01, timeout: bool = False) -> int:
    """Dex3 `MotorCmd_.mode` byte: motor id (4 bits) | status (3 bits, 1 = enabled) | timeout flag (1 bit)."""
    return (motor_id & 0x0F) | ((status & 0x07) << 4) | ((1 if timeout else 0) << 7)


@dataclass(frozen=True)
class JointGains:
    kp: float
    kd: float


@dataclass(frozen=True)
class G1MotorMap:
    """Motor indices and gains per joint group of one G1 embodiment."""

    arm_motors: dict[str, tuple[int, ...]]  # action key -> body motor indices
    hand_motors: dict[str, tuple[int, ...]]  # action key -> Dex3 motor indices
    gains: dict[str, tuple[JointGains, ...]]  # action key -> per-joint gains

    @classmethod
    def from_embodiment(cls, embodiment: EmbodimentSpec) -> G1MotorMap:
        arm_motors, hand_motors, gains = {}, {}, {}
        for side in SIDES:
            arm = embodiment.arm(side)
            start = ARM_MOTOR_START[side]
            arm_motors[action_key(f"{side}_arm")] = tuple(range(start, start + len(arm.arm_joints)))
            hand_motors[action_key(f"{side}_hand")] = tuple(range(len(arm.hand_joints)))
            if len(arm.arm_joints) != 7 or len(arm.hand_joints) != HAND_MOTORS:
                raise ValueError(f"Embodiment {embodiment.name} is not a G1 with Dex3 hands (7 arm + 7 hand joints "
                                 f"per side, got {len(arm.arm_joints)} + {len(arm.hand_joints)}).")
            gains[action_key(f"{side}_arm")] = tuple(_gains(embodiment, j) for j in arm.arm_joints)
            gains[action_key(f"{side}_hand")] = tuple(_gains(embodiment, j) for j in arm.hand_joints)
        return cls(arm_motors, hand_motors, gains)

    def arm_q(self, body_q: np.ndarray) -> dict[str, np.ndarray]:
        """29 (or 35) body motor positions -> {action.<side>_arm: (7,)}."""
        return {key: np.asarray(body_q, np.float32)[list(idx)] for key, idx in self.arm_motors.items()}

    def kp_kd(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        g = self.gains[key]
        return np.array([x.kp for x in g], np.float32), np.array([x.kd for x in g], np.float32)


def _gains(embodiment: EmbodimentSpec, joint: str) -> JointGains:
    """The servo gains the simulator uses for `joint` (the embodiment's `replace_actuators` patterns)."""
    for g in embodiment.replace_actuators:
        if re.search(g.pattern, joint):
            return JointGains(g.kp, g.kv)
    raise ValueError(f"Embodiment {embodiment.name} has no servo gains for joint {joint}; add an ActuatorGains.")
