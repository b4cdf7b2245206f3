"""The deployment protocol as code: pre-flight, slow start, recording, and the panel's view of it.

Pre-flight, before any policy command (`preflight`):
  1. link: rt/lowstate, both Dex3 states and camera frames arrive (`UnitreeG1Backend.wait_for_link`);
  2. limits: the joint ranges (the servos' ranges in the embodiment's model) and the safety filter's workspace
     box are loaded, and the measured pose is inside the ranges;
  3. calibration: the measured rest pose is compared with the embodiment's home pose; any arm joint further
     off than the tolerance refuses the run (one line naming the joint) -- nothing has moved yet;
  4. e-stop: the arm_sdk weight is ramped in holding the measured pose, the e-stop is engaged, a displaced target
     is commanded for a while, and the robot must be seen to hold (measured motion under a tolerance).
Slow start (`SpeedRamp`): the safety filter's speed scale starts at the first stage (10%) and steps up one stage
after `clean_episodes` clean episodes in a row; any intervention steps it down one stage at once. Clean means no
hazard intervention of the safety filter (workspace, table, non-finite, malformed), no e-stop, no watchdog trip
and no rejected command. Every episode is recorded as a LeRobot dataset, finalized after each episode (a crash
loses at most the episode in flight).
The controller is either a policy behind a safety filter (`run_controlled_episode`) or SAGE itself
(`run_sage_episode`: the bridge perceives the streamed camera, plans the command, and its L-module drives the
policy through the bridge's own safety filter, which is then the one pre-flight exercises and the ramp slows).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig
from sage_gr00t.act.safety import HAZARD_KINDS, SPEED_SCALE_RANGE, SafetyFilter
from sage_gr00t.modality import ARM_GROUPS, action_key, state_key, state_of
from sage_gr00t.policy.base import Policy
from sage_gr00t.robot.g1_map import G1MotorMap
from sage_gr00t.sim.embodiment import SIDES

logger = logging.getLogger(__name__)


class PreflightError(RuntimeError):
    """The robot failed a pre-flight check; the message is one line naming the problem and the fix."""


class CalibrationError(PreflightError):
    pass


@dataclass
class PreflightConfig:
    calibration_tolerance: float = 0.1  # rad: measured rest pose vs the home pose, per arm joint
    estop_check_s: float = 0.5  # how long the e-stop is held against a displaced target
    estop_probe: float = 0.3  # rad: how far the displaced target is from the measured pose (elbows)
    hold_tolerance: float = 0.02  # rad: the most any arm joint may move while the e-stop holds
    limit_tolerance: float = 0.02  # rad a measured joint may sit past its range (encoder noise)

    def __post_init__(self) -> None:
        for name in ("calibration_tolerance", "estop_check_s", "estop_probe", "hold_tolerance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PreflightConfig.{name} must be > 0, got {getattr(self, name)}.")


@dataclass
class PreflightReport:
    limits: dict[str, list[list[float]]] = field(default_factory=dict)
    workspace: dict[str, Any] = field(default_factory=dict)
    calibration_offsets: dict[str, float] = field(default_factory=dict)  # joint -> measured - home (rad)
    estop_max_motion: float = float("nan")
    passed: bool = False
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "steps": list(self.steps),
                "calibration_worst_rad": round(max(map(abs, self.calibration_offsets.values()), default=0.0), 4),
                "estop_max_motion_rad": None if np.isnan(self.estop_max_motion) else round(self.estop_max_motion, 4)}


def check_calibration(backend: Any, tolerance: float) -> dict[str, float]:
    """Measured rest pose minus home pose per arm joint; `CalibrationError` beyond `tolerance`."""
    state, emb = backend.state(), backend.embodiment
    motor_map = G1MotorMap.from_embodiment(emb)
    offsets: dict[str, float] = {}
    worst: tuple[float, str, int] = (0.0, "", -1)
    for side in SIDES:
        arm = emb.arm(side)
        measured = np.asarray(state[state_key(f"{side}_arm")], float)
        for joint, motor, q, home in zip(arm.arm_joints, motor_map.arm_motors[action_key(f"{side}_arm")],
                                         measured, arm.arm_home, strict=True):
            offsets[joint] = float(q - home)
            if abs(q - home) > abs(worst[0]):
                worst = (float(q - home), joint, motor)
    if abs(worst[0]) > tolerance:
        raise CalibrationError(
            f"Calibration refused: {worst[1]} (motor {worst[2]}) reads {worst[0]:+.3f} rad from its home pose "
            f"(tolerance {tolerance:.3f} rad): put the arms in the home pose, or re-zero that joint's encoder, "
            "then run pre-flight again.")
    return offsets


def check_limits(backend: Any, safety: SafetyFilter, tolerance: float) -> dict[str, list[list[float]]]:
    ranges = backend.action_ranges()
    state = backend.state()
    for key, rng in ranges.items():
        q = np.asarray(state[state_key(key.removeprefix("action."))], float)
        bad = (q < rng[:, 0] - tolerance) | (q > rng[:, 1] + tolerance)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PreflightError(f"Pre-flight: {key}[{i}] measures {q[i]:.3f} rad, outside its range "
                                 f"[{rng[i, 0]:.3f}, {rng[i, 1]:.3f}]: move the joint back inside by hand (robot "
                                 "in damping mode) and run pre-flight again.")
    if not safety.config.workspace:
        raise PreflightError("Pre-flight: no workspace bounds loaded in the safety filter.")
    return {k: v.round(4).tolist() for k, v in ranges.items()}


def exercise_estop(backend: Any, safety: SafetyFilter, cfg: PreflightConfig) -> float:
    """E-stop engaged, a displaced target commanded for `estop_check_s`: the largest arm-joint motion seen (rad);
    `PreflightError` if it exceeds the hold tolerance. Leaves the e-stop released and the robot holding."""
    obs = backend.observe()
    safety.reset(state_of(obs))
    start = np.concatenate([backend.state()[state_key(g)] for g in ARM_GROUPS]).astype(float)
    probe = {k: np.asarray(v, np.float32).copy() for k, v in state_of(obs).items()}
    action = {action_key(k.removeprefix("state.")): v for k, v in probe.items()}
    ranges = backend.action_ranges()
    for side in SIDES:  # bend each elbow by the probe angle (inside its range): what the e-stop must refuse
        key = action_key(f"{side}_arm")
        target = action[key].copy()
        target[3] += cfg.estop_probe
        action[key] = np.clip(target, *ranges[key].T).astype(np.float32)
    safety.engage_estop()
    backend.emergency_stop()
    worst = 0.0
    try:
        deadline = time.monotonic() + cfg.estop_check_s
        while time.monotonic() < deadline:
            command = safety.filter(action, state_of(obs))
            obs, *_ = backend.step(command.action)
            now = np.concatenate([obs[state_key(g)] for g in ARM_GROUPS]).astype(float)
            worst = max(worst, float(np.abs(now - start).max()))
    finally:
        safety.release_estop()
        backend.release_estop()
    if worst > cfg.hold_tolerance:
        raise PreflightError(f"Pre-flight: with the e-stop engaged an arm joint still moved {worst:.3f} rad "
                             f"(tolerance {cfg.hold_tolerance:.3f}): the robot does not hold; check that nothing else "
                             "commands rt/arm_sdk and that the arm motors are enabled.")
    return worst


def preflight(backend: Any, safety: SafetyFilter, cfg: PreflightConfig | None = None) -> PreflightReport:
    """Link, limits, calibration (nothing moves), then the e-stop exercise (the weight ramps in to hold)."""
    cfg = cfg or PreflightConfig()
    report = PreflightReport()
    backend.wait_for_link()
    report.steps.append("link")
    report.limits = check_limits(backend, safety, cfg.limit_tolerance)
    report.workspace = {s: [list(lo), list(hi)] for s, (lo, hi) in safety.config.workspace.items()}
    report.steps.append("limits")
    report.calibration_offsets = check_calibration(backend, cfg.calibration_tolerance)
    report.steps.append("calibration")
    backend.engage()
    report.estop_max_motion = exercise_estop(backend, safety, cfg)
    report.steps.append("estop")
    report.passed = True
    logger.info("pre-flight passed: worst calibration offset %.3f rad, e-stop held within %.4f rad",
                max(map(abs, report.calibration_offsets.values())), report.estop_max_motion)
    return report


# ---------------------------------------------------------------------------------------- slow start
@dataclass
class SpeedRampConfig:
    stages: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)  # safety-filter speed scales, first to last
    clean_episodes: int = 3  # clean episodes in a row before the next stage

    def __post_init__(self) -> None:
        lo, hi = SPEED_SCALE_RANGE
        s = tuple(float(x) for x in self.stages)
        if not s or s[0] != lo or s[-1] != hi or any(b <= a for a, b in itertools.pairwise(s)):
            raise ValueError(f"Speed stages must rise strictly from {lo} to {hi} (e.g. 0.1 0.25 0.5 1.0), got {s}.")
        if self.clean_episodes < 1:
            raise ValueError(f"clean_episodes must be >= 1, got {self.clean_episodes}.")
        self.stages = s


class SpeedRamp:
    """Slow start: up one stage after N clean episodes in a row, down one stage on any intervention."""

    def __init__(self, config: SpeedRampConfig | None = None) -> None:
        self.config = config or SpeedRampConfig()
        self.stage = 0
        self.streak = 0
        self.history: list[dict] = []

    @property
    def scale(self) -> float:
        return self.config.stages[self.stage]

    def record(self, clean: bool, reason: str = "") -> str:
        """One finished episode -> 'up', 'down', 'hold' (the stage change it caused)."""
        before = self.stage
        if clean:
            self.streak += 1
            if self.streak >= self.config.clean_episodes and self.stage < len(self.config.stages) - 1:
                self.stage += 1
                self.streak = 0
        else:
            self.stage = max(0, self.stage - 1)
            self.streak = 0
        change = "up" if self.stage > before else "down" if self.stage < before or not clean else "hold"
        self.history.append({"clean": clean, "reason": reason, "scale": self.scale, "change": change})
        return change

    def panel_state(self) -> dict:
        return {"stage": self.stage, "stages": list(self.config.stages), "speed_percent": round(100 * self.scale, 1),
                "clean_streak": self.streak, "clean_needed": self.config.clean_episodes}


# ---------------------------------------------------------------------------------------- episodes
@dataclass
class EpisodeReport:
    seed: int
    success: bool
    steps: int
    speed_scale: float
    interventions: dict[str, int]
    watchdog_trips: int
    rejected_commands: int
    estop: bool
    clean: bool
    reason: str  # why not clean ("" when clean)
    ramp_change: str = ""

    def as_dict(self) -> dict:
        return dict(vars(self))


StepHook = Callable[[int, dict, dict], None]  # (step, observation, safe action) after each step


def run_controlled_episode(env: Any, policy: Policy, safety: SafetyFilter, seed: int, max_steps: int,
                           chunking: ChunkExecutorConfig | None = None, stop_on_success: bool = True,
                           on_step: StepHook | None = None) -> tuple[bool, int, dict[str, int], bool]:
    """policy -> chunk executor -> safety filter -> env, on any `TaskEnv` (the simulator or the G1 backend).

    Returns (success, steps (held ones included: an episode is wall-clock time on a robot), interventions by kind,
    e-stop engaged at any step). When the G1 backend resumed from
    a hold (`info["rebased"]`), the filter restarts from the measured pose: the robot did not follow its commands
    while it was held, so rate-limiting against them would ask for a jump."""
    executor = ChunkExecutor(policy, chunking or ChunkExecutorConfig())
    obs, info = env.reset(seed=seed)
    executor.reset()
    safety.reset(state_of(obs))
    kinds: dict[str, int] = {}
    success, steps, estop = bool(info["success"]), 0, False
    held = False
    action: dict = {}
    while steps < max_steps:
        # While the watchdog holds the robot the policy waits (and nothing is recorded): an open-loop expert's
        # timed segments would otherwise run on without the robot (a grasp "closes" while the hand stands still).
        if not held:
            raw = executor.act(obs)
            command = safety.filter(raw, state_of(obs))
            for item in command.interventions:
                kinds[item.kind] = kinds.get(item.kind, 0) + 1
            estop = estop or safety.estop_engaged
            if on_step is not None:
                on_step(steps, obs, command.action)
            action = command.action
        obs, _, terminated, truncated, info = env.step(action)  # held: the backend ignores the target
        steps += 1
        success = bool(info["success"])
        held = info.get("holding", "") in ("state", "camera")
        if info.get("rebased"):
            safety.reset(state_of(obs))
        if (terminated and stop_on_success) or truncated:
            break
    return success, steps, kinds, estop


def run_sage_episode(env: Any, bridge: Any, seed: int, max_steps: int, command: str = "",
                     stop_on_success: bool = True,
                     on_step: StepHook | None = None) -> tuple[bool, int, dict[str, int], bool]:
    """SAGE (a `SAGEGr00TBridge`) on any `TaskEnv`: perceive -> plan `command` (empty: the episode's instruction)
    -> L-module -> policy -> the bridge's safety filter -> env. Returns what `run_controlled_episode` returns.

    The episode ends on success (if `stop_on_success`), when SAGE judges its plan over (as `run_bridge_episode`
    does: a real robot has no success oracle), at truncation or at `max_steps`. Holds and resumes of the G1
    backend are handled as `run_controlled_episode` handles them: while the watchdog holds, the bridge is not
    stepped (its perception would read frozen frames as a failing camera); after a resume its safety filter
    restarts from the measured pose."""
    from sage_gr00t.evaluation import seed_policy

    safety: SafetyFilter = bridge.safety
    obs, info = env.reset(seed=seed)
    bridge.reset(obs, meta={"seed": seed})
    seed_policy(bridge.policy, seed)
    bridge.command(command or env.instruction)
    before = dict(safety.stats)
    success, steps, estop, held = bool(info["success"]), 0, False, False
    action: dict = {}
    while steps < max_steps:
        if not held:
            action = bridge.step(obs)
            estop = estop or safety.estop_engaged
            if on_step is not None:
                on_step(steps, obs, action)
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        success = bool(info["success"])
        held = info.get("holding", "") in ("state", "camera")
        if info.get("rebased"):
            safety.reset(state_of(obs))
        finished = bridge.plan_result is not None and not bridge.active
        if (terminated and stop_on_success) or truncated or finished:
            break
    bridge.end_episode(success)
    kinds = {k: n - before.get(k, 0) for k, n in safety.stats.items() if n - before.get(k, 0)}
    return success, steps, kinds, estop


class DeploymentRunner:
    """Runs episodes on the G1 backend under the slow-start ramp, recording each one; `panel_state()` for the UI.

    With `bridge` (a `SAGEGr00TBridge` on the backend), SAGE drives each episode (`run_sage_episode`) on
    `command` (empty: each episode's instruction); `policy` and `safety` must then be the bridge's own."""

    def __init__(self, backend: Any, policy: Policy, safety: SafetyFilter, ramp: SpeedRamp,
                 writer: Any = None, chunking: ChunkExecutorConfig | None = None, bridge: Any = None,
                 command: str = "") -> None:
        if bridge is not None and (bridge.safety is not safety or bridge.policy is not policy):
            raise ValueError("Under SAGE the runner's policy and safety filter are the bridge's own (bridge.policy, "
                             "bridge.safety): pre-flight and the slow start act on the filter SAGE commands through.")
        self.backend, self.policy, self.safety, self.ramp, self.writer = backend, policy, safety, ramp, writer
        self.chunking = chunking
        self.bridge, self.command = bridge, command
        self.preflight_report: PreflightReport | None = None
        self.episodes: list[EpisodeReport] = []
        self._estop_requests = 0

    def preflight(self, cfg: PreflightConfig | None = None) -> PreflightReport:
        self.preflight_report = preflight(self.backend, self.safety, cfg)
        return self.preflight_report

    def emergency_stop(self) -> None:
        """Operator e-stop: the backend holds at the next command tick, the safety filter holds every step."""
        self._estop_requests += 1
        self.backend.emergency_stop()
        self.safety.engage_estop()

    def release_estop(self) -> None:
        self.safety.release_estop()
        self.backend.release_estop()

    def run_episode(self, seed: int, max_steps: int, on_step: StepHook | None = None) -> EpisodeReport:
        if self.preflight_report is None or not self.preflight_report.passed:
            raise PreflightError("Run pre-flight first: no policy command goes out before it passed.")
        self.safety.set_speed_scale(self.ramp.scale)
        trips, rejected, estops = len(self.backend.trips), self.backend.stats.rejected, self._estop_requests

        def record(step: int, obs: dict, action: dict) -> None:
            if self.writer is not None:
                self.writer.add_step(obs, action)
            if on_step is not None:
                on_step(step, obs, action)

        try:
            if self.bridge is not None:
                success, steps, kinds, estop = run_sage_episode(self.backend, self.bridge, seed, max_steps,
                                                                self.command, on_step=record)
            else:
                success, steps, kinds, estop = run_controlled_episode(self.backend, self.policy, self.safety, seed,
                                                                      max_steps, self.chunking, on_step=record)
        except BaseException:
            if self.writer is not None:
                self.writer.discard_episode()
            raise
        new_trips = len(self.backend.trips) - trips
        new_rejected = self.backend.stats.rejected - rejected
        estop = estop or self._estop_requests > estops
        hazards = {k: n for k, n in kinds.items() if k in HAZARD_KINDS}
        reasons = [*(f"{k} x{n}" for k, n in sorted(hazards.items())), *(["e-stop"] if estop else []),
                   *([f"watchdog x{new_trips}"] if new_trips else []),
                   *([f"rejected commands x{new_rejected}"] if new_rejected else [])]
        report = EpisodeReport(seed, success, steps, self.ramp.scale, kinds, new_trips, new_rejected, estop,
                               clean=not reasons, reason=", ".join(reasons))
        report.ramp_change = self.ramp.record(report.clean, report.reason)
        if self.writer is not None and self.writer.pending_frames:
            self.writer.save_episode(seed=seed, success=success, speed_scale=report.speed_scale, clean=report.clean,
                                     reason=report.reason)
        self.episodes.append(report)
        logger.info("episode seed %d: %s in %d steps at %.0f%% speed, %s -> speed %s (%.0f%%)", seed,
                    "success" if success else "no success", steps, 100 * report.speed_scale,
                    "clean" if report.clean else report.reason, report.ramp_change, 100 * self.ramp.scale)
        return report

    def panel_state(self) -> dict:
        """Link state, speed stage and watchdog trips as the panel shows them (JSON-ready)."""
        trips = [{"reason": t.reason, "state_age_ms": round(1e3 * t.state_age_s, 1)} for t in self.backend.trips[-5:]]
        return {"link": self.backend.link_state(), "speed": self.ramp.panel_state(),
                "watchdog": {"trips": len(self.backend.trips), "recent": trips},
                "estop": self.safety.estop_engaged or self.backend.holding == "estop",
                "preflight": self.preflight_report.as_dict() if self.preflight_report else {"passed": False},
                "episodes": len(self.episodes),
                "last_episode": self.episodes[-1].as_dict() if self.episodes else None}


def dataset_layout(backend: Any) -> Any:
    """The LeRobot layout of the backend's observations (the simulator's layout for the same embodiment)."""
    from sage_gr00t.data.lerobot_dataset import DatasetLayout
    from sage_gr00t.modality import JOINT_GROUPS

    state = backend.state()
    sizes = tuple((g, int(np.asarray(state[state_key(g)]).shape[0])) for g in JOINT_GROUPS)
    c = backend.config
    return DatasetLayout(sizes, (c.image_height, c.image_width, 3), round(c.control_hz), backend.embodiment.name)


def open_recorder(root: str | Path, backend: Any) -> Any:
    """A LeRobot writer that finalizes after every episode (a crash loses only the episode in flight)."""
    from sage_gr00t.data.lerobot_dataset import GrootDatasetWriter

    return GrootDatasetWriter(root, dataset_layout(backend), checkpoint_every=1)
