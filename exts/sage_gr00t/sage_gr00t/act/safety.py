"""Safety filter between the policy and the robot: every command passes here, whatever the policy says.

A learned policy can output anything (NaN after a bad checkpoint, a jump when a chunk is resampled,
a target under the table). `SafetyFilter.filter(action, state)` turns any input into a command that
satisfies, in this priority order:

1. well-formed: every action key present with the right shape, finite; otherwise HOLD (the target
   becomes the last safe command for every group, reached within the acceleration limit);
2. emergency stop: while engaged, command the measured joint positions (holds the robot where it is;
   exempt from the rate limits by design -- stopping now beats stopping smoothly);
3. joint limits (the actuator ctrl ranges `env.validate_action` checks), including a braking bound so a
   joint moving toward a limit can always stop inside it without exceeding the acceleration limit;
4. end-effector workspace box and table clearance, from forward kinematics of the commanded arm
   configuration on a private robot-only MuJoCo model: a step that would leave the allowed region is
   scaled back toward the previous safe command by bisection (an arm already outside may only move
   so that its violation does not grow);
5. per-step velocity |dq| <= v_max * s * dt and acceleration |dq - dq_prev| <= a_max * s * dt^2, where s
   is the slow-start `speed_scale`. Only a workspace scale-back (4) may brake harder than (5).

Every clamp is recorded as an `Intervention`; `SafetyFilter.stats` counts them per kind (the safety
violation metric: how often the policy asked for something unsafe).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import mujoco
import numpy as np

from sage_gr00t.modality import action_key, group_of, state_key
from sage_gr00t.sim.embodiment import SIDES, EmbodimentSpec, load_robot_spec

INTERVENTION_KINDS = (
    "joint_limit",
    "velocity",
    "acceleration",
    "workspace",
    "table_clearance",
    "non_finite",
    "emergency_stop",
    "malformed",
)
# Interventions that stopped a hazardous command (out of the workspace, into the table, non-finite or
# malformed), as opposed to rate and range limits that only smooth a fast one. Every kind counts in
# `stats`; only hazards count as safety violations for the metabolic controller's crisis rule.
HAZARD_KINDS = frozenset({"workspace", "table_clearance", "non_finite", "malformed"})
SPEED_SCALE_RANGE = (0.1, 1.0)
_UNLIMITED = 1e9  # stands in for "no rate limit" (keeps the braking formula finite)
_TOL = 1e-9


def _default_workspace() -> dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]]:
    # The table region in front of the robot (table x in [0.22, 0.82], y in [-0.55, 0.55], top z = 0.78),
    # extended 7 cm toward the robot so both embodiments' home poses (ee x ~ 0.33-0.38) sit well inside.
    box = ((0.15, -0.55, 0.78), (0.82, 0.55, 1.30))
    return {side: box for side in SIDES}


@dataclass
class SafetyFilterConfig:
    """Limits of the safety filter. Rate limits are in joint units (rad, or m for prismatic fingers)."""

    # Arm joints. The scripted expert peaks at ~4.5 rad/s and ~60 rad/s^2 on a wrist for a step or two
    # (pick_apple); 3 rad/s and 40 rad/s^2 clip only those peaks, the arm catches up within a few steps.
    max_velocity: float = 3.0
    max_acceleration: float = 40.0
    # Hands: None = joint limits only. The project's gripper switches open <-> closed in one control step
    # by design (a binary gripper; its servo's force limit is what keeps a grasp safe).
    hand_max_velocity: float | None = None
    hand_max_acceleration: float | None = None
    control_dt: float = 0.05
    # Axis-aligned box (low xyz, high xyz) in the world frame for each arm's end-effector site.
    workspace: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = field(
        default_factory=_default_workspace
    )
    table_height: float = 0.78
    table_x: tuple[float, float] = (0.22, 0.82)
    table_y: tuple[float, float] = (-0.55, 0.55)
    # Minimum ee-site height above the table top over its footprint. The ee site is the grasp point and
    # the expert grasps objects whose centre is 2-4 cm up (ee z >= table + 0.03), so 1 cm leaves margin.
    table_clearance: float = 0.01
    speed_scale: float = 1.0  # slow-start protocol: scales the velocity and acceleration limits
    bisection_steps: int = 8  # workspace scale-back resolution: 2^-8 of the step

    def __post_init__(self) -> None:
        check_speed_scale(self.speed_scale)
        for name in ("max_velocity", "max_acceleration", "control_dt"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SafetyFilterConfig.{name} must be > 0, got {getattr(self, name)}.")
        for name in ("hand_max_velocity", "hand_max_acceleration"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"SafetyFilterConfig.{name} must be > 0 or None, got {value}.")
        if set(self.workspace) != set(SIDES):
            raise ValueError(f"workspace needs a box for each arm {SIDES}, got {sorted(self.workspace)}.")
        for side, (lo, hi) in self.workspace.items():
            if side not in SIDES or len(lo) != 3 or len(hi) != 3 or not all(a < b for a, b in zip(lo, hi, strict=True)):
                raise ValueError(f"Workspace for {side!r} must be ((x0, y0, z0), (x1, y1, z1)) with low < high.")
        if self.table_clearance < 0 or self.bisection_steps < 1:
            raise ValueError("table_clearance must be >= 0 and bisection_steps >= 1.")


def check_speed_scale(scale: float) -> float:
    lo, hi = SPEED_SCALE_RANGE
    if not (isinstance(scale, int | float) and lo <= scale <= hi):
        raise ValueError(
            f"speed_scale must be in [{lo}, {hi}] (slow-start protocol: start at {lo}, raise toward {hi} as "
            f"trust grows), got {scale!r}."
        )
    return float(scale)


@dataclass(frozen=True)
class Intervention:
    kind: str  # one of INTERVENTION_KINDS
    group: str  # action key it applied to, or "all"
    detail: str = ""


@dataclass
class SafeCommand:
    action: dict[str, np.ndarray]  # float32 joint targets, always valid for `env.validate_action`
    interventions: list[Intervention]

    @property
    def intervened(self) -> bool:
        return bool(self.interventions)

    @property
    def hazard(self) -> bool:
        return any(i.kind in HAZARD_KINDS for i in self.interventions)


class SafetyFilter:
    """Makes any policy output safe to send to the robot; see the module docstring for the rules."""

    def __init__(
        self,
        embodiment: EmbodimentSpec,
        action_ranges: dict[str, np.ndarray],
        config: SafetyFilterConfig | None = None,
    ) -> None:
        self.embodiment = embodiment
        self.config = config or SafetyFilterConfig()
        self.keys = tuple(action_ranges)
        sizes = [len(np.asarray(action_ranges[k])) for k in self.keys]
        self._slices = dict(zip(self.keys, _slices(sizes), strict=True))
        bounds = np.concatenate([np.asarray(action_ranges[k], np.float64).reshape(-1, 2) for k in self.keys])
        self._lo, self._hi = bounds[:, 0].copy(), bounds[:, 1].copy()
        self._is_hand = np.concatenate(
            [np.full(n, k.endswith("_hand")) for k, n in zip(self.keys, sizes, strict=True)]
        )
        self._sizes = dict(zip(self.keys, sizes, strict=True))
        self._init_kinematics()
        self._speed_scale = self.config.speed_scale
        self._update_rate_limits()
        self.stats: Counter[str] = Counter({k: 0 for k in INTERVENTION_KINDS})
        self.calls = 0
        self._estop = False
        self._estop_hold: np.ndarray | None = None
        self._prev: np.ndarray | None = None  # last safe command (float64 copy of the float32 output)
        self._prev_step = np.zeros(len(self._lo))  # its change from the command before
        self._prev_violation = np.zeros(len(self._arms))

    # ------------------------------------------------------------------ setup
    def _init_kinematics(self) -> None:
        """Private robot-only model (same base pose as the scene) for end-effector FK."""
        self._model = load_robot_spec(self.embodiment).compile()
        self._data = mujoco.MjData(self._model)
        m = self._model
        self._arms: list[tuple[str, slice, np.ndarray, int]] = []  # (side, slice in flat cmd, qpos adr, site)
        self._qpos_of: list[tuple[slice, np.ndarray]] = []  # every group's joints, so FK sees the full pose
        for key in self.keys:
            group = group_of(key)
            side, part = group.split("_", 1)
            arm = self.embodiment.arm(side)
            joints = arm.arm_joints if part == "arm" else arm.hand_joints
            adr = np.array([m.jnt_qposadr[m.joint(j).id] for j in joints])
            self._qpos_of.append((self._slices[key], adr))
            if part == "arm":
                self._arms.append((side, self._slices[key], adr, m.site(arm.ee_site).id))
        cfg = self.config
        self._box = {side: (np.array(lo, float), np.array(hi, float)) for side, (lo, hi) in cfg.workspace.items()}

    def _update_rate_limits(self) -> None:
        cfg, s, dt = self.config, self._speed_scale, self.config.control_dt
        hand_v = _UNLIMITED if cfg.hand_max_velocity is None else cfg.hand_max_velocity * s * dt
        hand_a = _UNLIMITED if cfg.hand_max_acceleration is None else cfg.hand_max_acceleration * s * dt * dt
        self._vstep = np.where(self._is_hand, hand_v, cfg.max_velocity * s * dt)  # max |dq| per step
        self._astep = np.where(self._is_hand, hand_a, cfg.max_acceleration * s * dt * dt)  # max |ddq| per step

    @property
    def speed_scale(self) -> float:
        return self._speed_scale

    def set_speed_scale(self, scale: float) -> None:
        """Slow-start protocol knob. Lowering it mid-motion brakes at once (velocity beats acceleration)."""
        self._speed_scale = check_speed_scale(scale)
        self._update_rate_limits()

    def limits_per_step(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(max |dq|, max |dq - dq_prev|) per action key at the current speed scale, for checks and logs."""
        return ({k: self._vstep[s].copy() for k, s in self._slices.items()},
                {k: self._astep[s].copy() for k, s in self._slices.items()})

    # ------------------------------------------------------------------ episode control
    def reset(self, state: dict[str, np.ndarray]) -> None:
        """Start an episode from the measured joint state (the robot is assumed at rest)."""
        measured = self._measured(state)
        if measured is None:
            raise ValueError(f"SafetyFilter.reset needs finite state.<group> arrays for groups {self._groups()}.")
        self._prev = np.clip(measured, self._lo, self._hi).astype(np.float32).astype(np.float64)
        self._prev_step = np.zeros_like(self._prev)
        self._prev_violation = self._violations(self._prev)
        self._estop_hold = None  # an engaged e-stop re-latches at the new pose

    def engage_estop(self) -> None:
        """Hold the robot at its measured pose (latched at the next `filter` call) until released."""
        self._estop = True

    def release_estop(self) -> None:
        """Resume from the held pose at rest; the policy's next command is rate-limited from there."""
        self._estop = False
        self._estop_hold = None

    @property
    def estop_engaged(self) -> bool:
        return self._estop

    # ------------------------------------------------------------------ the filter
    def filter(self, action: dict, state: dict) -> SafeCommand:
        """One control step: any `action` in, a safe command out (never raises on bad actions)."""
        self.calls += 1
        if self._prev is None:  # no reset: start from the measured state
            self.reset(state)
        assert self._prev is not None
        prev = self._prev
        interventions: list[Intervention] = []

        if self._estop:
            if self._estop_hold is None:
                # Latch the measured pose once: re-commanding the measured pose every step would let the
                # arm creep down under gravity (a position servo settles a little below its target).
                measured = self._measured(state)
                hold = prev if measured is None else np.clip(measured, self._lo, self._hi)
                self._estop_hold = hold.astype(np.float32).astype(np.float64)
                self._prev_violation = self._violations(self._estop_hold)
            interventions.append(Intervention("emergency_stop", "all", "holding the measured joint positions"))
            return self._emit(self._estop_hold, np.zeros_like(prev), interventions)

        raw, problem = self._parse(action)
        if raw is None:
            kind, detail = problem
            interventions.append(Intervention(kind, "all", detail + "; holding the last safe command"))
            raw = prev  # hold: brake toward the last safe command within the acceleration limit
        else:
            outside = (raw < self._lo - _TOL) | (raw > self._hi + _TOL)
            if outside.any():
                interventions += self._per_group(outside, "joint_limit", "target outside the joint range")

        target, step = self._rate_limit(raw, prev, interventions)
        target, step = self._workspace(target, step, prev, interventions)
        return self._emit(target, step, interventions)

    def _emit(self, target: np.ndarray, step: np.ndarray, interventions: list[Intervention]) -> SafeCommand:
        self._prev, self._prev_step = target, step
        for item in interventions:
            self.stats[item.kind] += 1
        out = target.astype(np.float32)
        return SafeCommand({k: out[s].copy() for k, s in self._slices.items()}, interventions)

    # ------------------------------------------------------------------ input checks
    def _groups(self) -> list[str]:
        return [group_of(k) for k in self.keys]

    def _parse(self, action: object) -> tuple[np.ndarray | None, tuple[str, str]]:
        if not isinstance(action, dict):
            return None, ("malformed", f"action is a {type(action).__name__}, not a dict")
        parts = []
        for key in self.keys:
            if key not in action:
                return None, ("malformed", f"missing key {key}")
            try:
                value = np.asarray(action[key], dtype=np.float64)
            except (TypeError, ValueError):
                return None, ("malformed", f"{key} is not numeric")
            if value.shape != (self._sizes[key],):
                return None, ("malformed", f"{key} has shape {value.shape}, expected ({self._sizes[key]},)")
            parts.append(value)
        raw = np.concatenate(parts)
        if not np.all(np.isfinite(raw)):
            return None, ("non_finite", "NaN or inf in the action")
        return raw, ("", "")

    def _measured(self, state: object) -> np.ndarray | None:
        if not isinstance(state, dict):
            return None
        parts = []
        for key in self.keys:
            value = state.get(state_key(group_of(key)))
            if value is None:
                return None
            try:
                value = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                return None
            if value.shape != (self._sizes[key],):
                return None
            parts.append(value)
        measured = np.concatenate(parts)
        return measured if np.all(np.isfinite(measured)) else None

    def _per_group(self, mask: np.ndarray, kind: str, detail: str) -> list[Intervention]:
        return [Intervention(kind, k, detail) for k, s in self._slices.items() if mask[s].any()]

    # ------------------------------------------------------------------ joint limits + rate limits
    def _rate_limit(
        self, raw: np.ndarray, prev: np.ndarray, interventions: list[Intervention]
    ) -> tuple[np.ndarray, np.ndarray]:
        v, c, dprev = self._vstep, self._astep, self._prev_step
        # Braking bound: the largest step toward a limit at distance d after which decelerating by c per
        # step still stops inside: max(min(d, c), sqrt(2cd) - c/2). It is invariant under the
        # acceleration limit, so joint limits, velocity and acceleration can always be met together.
        d_hi = np.maximum(self._hi - prev, 0.0)
        d_lo = np.maximum(prev - self._lo, 0.0)
        brake_hi = np.maximum(np.minimum(d_hi, c), np.sqrt(2 * c * d_hi) - c / 2)
        brake_lo = np.maximum(np.minimum(d_lo, c), np.sqrt(2 * c * d_lo) - c / 2)
        hard_lo, hard_hi = np.maximum(-v, -brake_lo), np.minimum(v, brake_hi)  # never violated
        # Acceleration window, moved into the hard window if they are disjoint (only after lowering the
        # speed scale mid-motion): velocity and joint limits win.
        lo = np.clip(dprev - c, hard_lo, hard_hi)
        hi = np.clip(dprev + c, hard_lo, hard_hi)
        wanted = np.clip(raw, self._lo, self._hi) - prev
        step = np.clip(wanted, lo, hi)
        clipped = np.abs(step - wanted) > _TOL
        if clipped.any():
            at_v = clipped & (np.isclose(step, v) | np.isclose(step, -v))
            at_a = clipped & ~at_v & (np.isclose(step, dprev + c) | np.isclose(step, dprev - c))
            at_j = clipped & ~at_v & ~at_a
            interventions += self._per_group(at_v, "velocity", "step above the velocity limit")
            interventions += self._per_group(at_a, "acceleration", "step change above the acceleration limit")
            interventions += self._per_group(at_j, "joint_limit", "braking to stop inside the joint range")
        target = np.clip(prev + step, self._lo, self._hi).astype(np.float32).astype(np.float64)
        return target, target - prev

    # ------------------------------------------------------------------ workspace + table
    def ee_positions(self, action: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """World positions of the end-effector sites for a (well-formed) action dict, by the filter's FK."""
        q = np.concatenate([np.asarray(action[k], np.float64) for k in self.keys])
        self._violation_parts(q)
        return {side: self._data.site_xpos[site].copy() for side, _s, _adr, site in self._arms}

    def _violations(self, q: np.ndarray) -> np.ndarray:
        """Per arm: metres outside the workspace box plus metres below the table clearance."""
        return np.array([sum(parts) for parts in self._violation_parts(q)])

    def _violation_parts(self, q: np.ndarray) -> list[tuple[float, float]]:
        data, cfg = self._data, self.config
        for s, adr in self._qpos_of:
            data.qpos[adr] = q[s]
        mujoco.mj_kinematics(self._model, data)
        out = []
        for side, _s, _adr, site in self._arms:
            p = data.site_xpos[site]
            lo, hi = self._box[side]
            box = float(np.maximum(lo - p, 0.0).sum() + np.maximum(p - hi, 0.0).sum())
            table = 0.0
            if cfg.table_x[0] <= p[0] <= cfg.table_x[1] and cfg.table_y[0] <= p[1] <= cfg.table_y[1]:
                table = max(cfg.table_height + cfg.table_clearance - float(p[2]), 0.0)
            out.append((box, table))
        return out

    def _workspace(
        self, target: np.ndarray, step: np.ndarray, prev: np.ndarray, interventions: list[Intervention]
    ) -> tuple[np.ndarray, np.ndarray]:
        parts = self._violation_parts(target)
        # An arm may go where its violation does not grow (inside stays inside; outside may recover).
        allowed = self._prev_violation + 1e-12
        bad = [i for i, (box, table) in enumerate(parts) if box + table > allowed[i]]
        if not bad:
            self._prev_violation = np.array([a + b for a, b in parts])
            return target, step
        for i in bad:
            side, s = self._arms[i][:2]
            kind = "table_clearance" if parts[i][1] > 0 and parts[i][0] <= allowed[i] else "workspace"
            detail = "step scaled back toward the last safe command"
            interventions.append(Intervention(kind, action_key(f"{side}_arm"), detail))
        # Bisection on the fraction of the step for the offending arms, all arms per FK call.
        good = np.zeros(len(bad))
        bad_frac = np.ones(len(bad))
        candidate = target.copy()
        for _ in range(self.config.bisection_steps):
            mid = (good + bad_frac) / 2
            for j, i in enumerate(bad):
                s = self._arms[i][1]
                candidate[s] = prev[s] + mid[j] * step[s]
            candidate = candidate.astype(np.float32).astype(np.float64)
            viol = self._violations(candidate)
            for j, i in enumerate(bad):
                if viol[i] <= allowed[i]:
                    good[j] = mid[j]
                else:
                    bad_frac[j] = mid[j]
        for j, i in enumerate(bad):
            s = self._arms[i][1]
            candidate[s] = prev[s] + good[j] * step[s]
        candidate = candidate.astype(np.float32).astype(np.float64)
        viol = self._violations(candidate)
        for i in bad:  # float32 rounding could cross the boundary: then hold that arm
            if viol[i] > allowed[i]:
                s = self._arms[i][1]
                candidate[s] = prev[s]
        self._prev_violation = self._violations(candidate)
        return candidate, candidate - prev


def _slices(sizes: list[int]) -> list[slice]:
    starts = np.cumsum([0, *sizes])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(starts)]
