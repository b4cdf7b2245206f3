"""The last gate before the wire: a command that fails any check is never published.

The safety filter already makes a policy's output safe; this validator guards the few lines of code after it
(interpolation, message packing, the hold logic) and anything that calls the publisher directly. A rejected
arm command leaves the robot on the last command that passed (the arm_sdk keeps its last target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sage_gr00t.robot.g1_map import ARM_SDK_WEIGHT_SLOT, LOWCMD_SLOTS, G1MotorMap


class RejectedCommandError(ValueError):
    """A command the validator refused; its message names the first failed check."""


@dataclass(frozen=True)
class ValidatorConfig:
    range_tolerance: float = 1e-4  # rad outside a joint's range still accepted (float32 rounding)
    max_step: float = 0.25  # rad per command tick (50 Hz: 12.5 rad/s) -- a gross jump guard, not a rate limit
    max_weight_step: float = 0.1  # arm_sdk weight change per tick (the weight is ramped, never switched)


class CommandValidator:
    """Checks rt/arm_sdk LowCmd_ contents and Dex3 hand commands against joint ranges and the embodiment's gains."""

    def __init__(self, motor_map: G1MotorMap, ranges: dict[str, np.ndarray], config: ValidatorConfig | None = None):
        self.config = config or ValidatorConfig()
        self._lo = np.full(LOWCMD_SLOTS, np.nan)
        self._hi = np.full(LOWCMD_SLOTS, np.nan)
        self._kp_max = np.zeros(LOWCMD_SLOTS)
        self._kd_max = np.zeros(LOWCMD_SLOTS)
        for key, motors in motor_map.arm_motors.items():
            idx = list(motors)
            self._lo[idx], self._hi[idx] = ranges[key][:, 0], ranges[key][:, 1]
            kp, kd = motor_map.kp_kd(key)
            self._kp_max[idx], self._kd_max[idx] = kp, kd
        self._arm = np.isfinite(self._lo)
        self._hand_ranges = {k: np.asarray(ranges[k], float) for k in motor_map.hand_motors}
        self._hand_gains = {k: motor_map.kp_kd(k) for k in motor_map.hand_motors}

    def check_arm(self, q: object, kp: object, kd: object, weight: object, last_q: np.ndarray | None,
                  last_weight: float | None) -> None:
        """Raise `RejectedCommandError` unless this 35-slot arm_sdk command is well-formed and inside every bound."""
        arrays = {}
        for name, value in (("q", q), ("kp", kp), ("kd", kd)):
            a = np.asarray(value)
            if a.dtype.kind not in "iuf" or a.shape != (LOWCMD_SLOTS,):
                raise RejectedCommandError(f"arm_sdk {name} must be {LOWCMD_SLOTS} real numbers, got dtype {a.dtype} "
                                      f"shape {a.shape}")
            a = a.astype(np.float64)
            if not np.all(np.isfinite(a)):
                bad = np.flatnonzero(~np.isfinite(a)).tolist()
                raise RejectedCommandError(f"arm_sdk {name} holds NaN or inf at slots {bad}")
            arrays[name] = a
        if not isinstance(weight, int | float) or not np.isfinite(weight) or not 0.0 <= weight <= 1.0:
            raise RejectedCommandError(f"arm_sdk weight must be in [0, 1], got {weight!r}")
        q, kp, kd = arrays["q"], arrays["kp"], arrays["kd"]
        tol = self.config.range_tolerance
        arm = self._arm
        bad = arm & ((q < self._lo - tol) | (q > self._hi + tol))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RejectedCommandError(f"arm_sdk motor {i} target {q[i]:.4f} outside its range "
                                  f"[{self._lo[i]:.4f}, {self._hi[i]:.4f}]")
        others = ~arm
        others[ARM_SDK_WEIGHT_SLOT] = False
        if np.any(kp[others] != 0) or np.any(kd[others] != 0):
            raise RejectedCommandError("arm_sdk may only drive arm motors (15-28): legs, waist and spare slots need "
                                  "kp = kd = 0")
        if np.any(kp[arm] < 0) or np.any(kp[arm] > self._kp_max[arm] + 1e-6) or np.any(kd[arm] < 0) \
                or np.any(kd[arm] > self._kd_max[arm] + 1e-6):
            raise RejectedCommandError("arm_sdk kp / kd outside [0, the embodiment's gains]")
        if last_q is not None:
            jump = np.abs(q[arm] - last_q[arm])
            if jump.max() > self.config.max_step:
                raise RejectedCommandError(f"arm_sdk target jumps {jump.max():.3f} rad in one tick "
                                      f"(limit {self.config.max_step})")
        if last_weight is not None and abs(weight - last_weight) > self.config.max_weight_step + 1e-9:
            raise RejectedCommandError(f"arm_sdk weight jumps {last_weight:.2f} -> {weight:.2f} in one tick")

    def check_hand(self, key: str, q: object) -> np.ndarray:
        """The 7 Dex3 targets of `key` as float64, or `RejectedCommandError`."""
        a = np.asarray(q)
        rng = self._hand_ranges[key]
        if a.dtype.kind not in "iuf" or a.shape != (len(rng),):
            raise RejectedCommandError(f"{key} must be {len(rng)} real numbers, got dtype {a.dtype} shape {a.shape}")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise RejectedCommandError(f"{key} holds NaN or inf")
        tol = self.config.range_tolerance
        if np.any(a < rng[:, 0] - tol) or np.any(a > rng[:, 1] + tol):
            raise RejectedCommandError(f"{key} target outside the Dex3 joint ranges")
        return a

    def hand_gains(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self._hand_gains[key]
