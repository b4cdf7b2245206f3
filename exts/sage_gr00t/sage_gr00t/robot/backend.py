"""`UnitreeG1Backend`: a G1 over DDS behind the simulators' `TaskEnv` interface.

Observations and actions are the simulators' dicts (`video.ego_view`, `state.<group>`, `action.<group>`), so the
policy, the safety filter and the bridge run unchanged. SAGE's camera perception renders through the same three
calls as on a simulator (`render_camera`, `render_depth`, `camera_pose_intrinsics`): here they answer from the
camera frame the newest observation was built from -- its colour, the depth streamed with it, the intrinsics
the stream sent (else the embodiment's declared camera), and the camera pose by forward kinematics of the
declared mount at the measured joints. A colour-only stream (Unitree's image server) serves the policy, but
`render_depth` then refuses with `NoDepthError`: SAGE's perception needs depth.
`step(action)` hands the arm and hand targets to a 50 Hz command loop and returns the observation one control
period (20 Hz) later, as the simulator's step does.

The command loop (its own thread, absolute deadlines) each tick:
  1. watchdog: rt/lowstate older than `state_timeout_s`, or no camera frame for `camera_timeout_s`, trips a hold:
     the arms are commanded to the last MEASURED pose with the arm_sdk weight kept (so Unitree's balance
     controller does not take the arms back), and no policy target is sent again until fresh state arrives;
  2. otherwise it interpolates from the previous control target to the newest one over the control period
     and ramps the arm_sdk weight (in at `engage`, out at `close`);
  3. the validator checks the packed command; one that fails is never published.
Every tick's period is logged (jitter), and the stand-in echoes the sequence number of the command its physics
applied, which gives the round-trip latency (command sent -> state reflecting it seen).

Resuming (hold -> active: the watchdog sees fresh state, the e-stop is released, a new episode starts) re-bases
everything that remembers earlier commands on the measured pose: the interpolation, the validator's jump
reference and the hands. It also starts a new control epoch. A controller's safety filter remembers its own last
command, which ran on while the arms were held, so:
  * an action computed from an observation of an earlier epoch is dropped (the arms keep the measured pose for
    that control period) -- it was rate-limited against a command the robot never followed;
  * the first observation of a new epoch comes with `info["rebased"] = True`: the controller resets its safety
    filter from that observation (`run_controlled_episode` does), and the next action starts from the pose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from sage_gr00t.modality import EGO_CAMERA, EGO_VIEW, LANGUAGE_KEY, action_key, group_of, state_key
from sage_gr00t.robot.dds import (
    ARM_SDK_TOPIC,
    LOWSTATE_TOPIC,
    RESET_WORD,
    SEQ_WORD,
    DdsDomain,
    hand_cmd_topic,
    hand_state_topic,
)
from sage_gr00t.robot.g1_map import ARM_SDK_WEIGHT_SLOT, BODY_MOTORS, LOWCMD_SLOTS, G1MotorMap
from sage_gr00t.robot.images import Frame, ImageSubscriber
from sage_gr00t.robot.realtime import ThreadPromoter, check_priority, promote_current_thread
from sage_gr00t.robot.validator import CommandValidator, RejectedCommandError, ValidatorConfig
from sage_gr00t.robot.world import WorldClient, WorldScene
from sage_gr00t.sim.actions import check_action
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.embodiment import SIDES, EmbodimentSpec, get_embodiment, load_robot_spec
from sage_gr00t.sim.task_env import DeclaredTaskEnv
from sage_gr00t.tasks.spec import Task

logger = logging.getLogger(__name__)

HOLD_REASONS = ("state", "camera", "estop")


class NoDepthError(RuntimeError):
    """The image stream carries colour only, and something (SAGE's camera perception) asked for depth."""


@dataclass
class RobotLinkConfig:
    """How to reach the robot (or the stand-in) and the link's real-time limits."""

    domain_id: int = 0  # DDS domain; a G1 out of the box uses 0
    interface: str = "lo"  # network interface on the robot's 192.168.123.x network (e.g. enp3s0); lo for the stand-in
    image_endpoint: str = "tcp://127.0.0.1:5555"  # image server (Unitree's runs on the G1's PC2, tcp://192.168.123.164:5555)
    world_endpoint: str = ""  # stand-in only: its world PUB (object poses, success); empty on a real robot
    world_control_endpoint: str = ""  # stand-in only: its reset REP
    command_hz: float = 50.0
    state_timeout_s: float = 0.05  # rt/lowstate silent longer than this -> hold
    camera_timeout_s: float = 0.5  # no camera frame for this long -> hold
    weight_ramp_s: float = 1.0  # arm_sdk weight 0 -> 1 at engage, 1 -> 0 at close
    connect_timeout_s: float = 10.0
    # SCHED_FIFO priority for the command loop and the rt/lowstate listener (0: off). Opt-in: it needs
    # CAP_SYS_NICE; without it the loop runs normally and says so once in the log.
    realtime_priority: int = 0
    validator: ValidatorConfig = field(default_factory=ValidatorConfig)

    def __post_init__(self) -> None:
        checks = ((10 <= self.command_hz <= 500, f"command_hz must be in 10..500, got {self.command_hz}"),
                  (0.005 <= self.state_timeout_s <= 1.0,
                   f"state_timeout_s must be in 0.005..1, got {self.state_timeout_s}"),
                  (self.camera_timeout_s > 0, f"camera_timeout_s must be > 0, got {self.camera_timeout_s}"),
                  (self.weight_ramp_s > 0, f"weight_ramp_s must be > 0, got {self.weight_ramp_s}"),
                  (bool(self.world_endpoint) == bool(self.world_control_endpoint),
                   "world_endpoint and world_control_endpoint go together (both for the stand-in, neither for a G1)"))
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Bad robot link option: {message}.")
        check_priority(self.realtime_priority)


@dataclass(frozen=True)
class WatchdogTrip:
    time: float  # monotonic time of the tick that tripped
    reason: str  # "state" or "camera"
    state_age_s: float
    camera_age_s: float
    last_state_time: float


@dataclass(frozen=True)
class SentCommand:
    seq: int
    time: float  # monotonic time just before publishing
    kind: str  # "policy" (a control target, interpolated), "hold" (measured pose: watchdog or e-stop), "ramp"
    q: np.ndarray  # (35,) arm_sdk q (slot 29 = weight)


class LinkStats:
    """Loop periods, round-trip latencies and counters, kept for the panel, the log and the benchmark."""

    def __init__(self, keep: int = 200_000) -> None:
        self.periods: deque[float] = deque(maxlen=keep)
        self.round_trips: deque[float] = deque(maxlen=keep)
        self.sent = 0
        self.rejected = 0
        self.stale_actions = 0  # actions dropped because they were computed before a resume
        self.last_rejection = ""
        self.overruns = 0

    @staticmethod
    def percentiles(values: deque[float] | list[float]) -> dict[str, float]:
        if not values:
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
        a = np.asarray(values)
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max()),
                "n": len(a)}


class UnitreeG1Backend(DeclaredTaskEnv):
    """A Unitree G1 (or the stand-in) as a `TaskEnv`. Use as a context manager, or call `close()`.

    The declaration-only `TaskEnv` methods come from `DeclaredTaskEnv`; success, joint state and action ranges
    are the robot's own (the world link's verdict, `rt/lowstate`, keys already GR00T action keys)."""

    def __init__(self, task: str | Task, config: TaskConfig | None = None, link: RobotLinkConfig | None = None,
                 domain: DdsDomain | None = None) -> None:
        self.config = config or TaskConfig(embodiment="unitree_g1")
        self.link = link or RobotLinkConfig()
        from sage_gr00t.tasks.registry import resolve_task

        self.task = resolve_task(task, self.config.variant)
        self.embodiment: EmbodimentSpec = get_embodiment(self.config.embodiment)
        self.motor_map = G1MotorMap.from_embodiment(self.embodiment)
        self._init_model()
        self.validator = CommandValidator(self.motor_map, self._ranges, self.link.validator)
        self.instruction = ""
        self.step_count = 0
        self.stats = LinkStats()
        self.trips: list[WatchdogTrip] = []
        self.sent_log: deque[SentCommand] = deque(maxlen=20_000)
        self._lock = threading.RLock()
        self._period = 1.0 / self.link.command_hz
        self._control_period = 1.0 / self.config.control_hz
        self._body_q: np.ndarray | None = None
        self._body_dq = np.zeros(BODY_MOTORS)
        self._state_time = -np.inf
        self._state_reset = 0  # the stand-in's reset count the newest rt/lowstate carries
        self._hand_q: dict[str, np.ndarray | None] = {action_key(f"{s}_hand"): None for s in SIDES}
        self._target = np.zeros(LOWCMD_SLOTS)
        self._prev_target = np.zeros(LOWCMD_SLOTS)
        self._target_time = 0.0
        self._hand_target: dict[str, np.ndarray] = {}
        self._hold_q: np.ndarray | None = None
        self._hold_hands: dict[str, np.ndarray] = {}
        self._hold_reason = ""
        self._trip_time = -np.inf
        self._weight = 0.0
        self._weight_goal = 0.0
        self._engaged = False  # nothing is sent before `engage()`
        self._paused = True
        self._last_sent_q: np.ndarray | None = None
        self._last_sent_weight: float | None = None
        self._seq = 0
        self._send_times: dict[int, float] = {}
        self._applied_seq = 0
        self._next_step = 0.0
        self._epoch = 0  # control epochs: +1 at every hold -> active transition (see the module docstring)
        self._obs_epoch = 0  # the epoch of the newest observation handed out
        self._obs_frame: Frame | None = None  # the camera frame of the newest observation (perception reads it)
        self._stop = threading.Event()
        self._rng = np.random.default_rng()
        self._owns_domain = domain is None
        self._promote_listener = ThreadPromoter(self.link.realtime_priority, "rt/lowstate listener")
        self.dds = domain or DdsDomain(self.link.domain_id, self.link.interface)
        self._open_channels()
        self.images = ImageSubscriber(self.link.image_endpoint)
        self.world = (WorldClient(self.link.world_endpoint, self.link.world_control_endpoint)
                      if self.link.world_endpoint else None)
        self.scene: Any = (WorldScene(self.world, self.config.table.height, self._group_state) if self.world
                           else _NoWorldScene(self.config.table.height, self._group_state))
        self._thread = threading.Thread(target=self._command_loop, name="g1-command-loop", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ setup
    def _init_model(self) -> None:
        """Joint ranges (the servos' ctrl ranges, as the simulator's) and a private model for end-effector FK."""
        self._model = load_robot_spec(self.embodiment).compile()
        self._data = mujoco.MjData(self._model)
        m = self._model
        joint_to_act = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        self._ranges: dict[str, np.ndarray] = {}
        self._qpos_adr: dict[str, np.ndarray] = {}
        for group, joints in self.embodiment.state_groups.items():
            jids = [m.joint(j).id for j in joints]
            self._ranges[action_key(group)] = m.actuator_ctrlrange[[joint_to_act[j] for j in jids]].astype(float)
            self._qpos_adr[group] = np.array([m.jnt_qposadr[j] for j in jids])
        self._ee_site = {s: m.site(self.embodiment.arm(s).ee_site).id for s in SIDES}
        self._camera_id = m.camera(EGO_CAMERA).id  # the embodiment's declared head camera (load_robot_spec adds it)
        self._kp = np.zeros(LOWCMD_SLOTS)
        self._kd = np.zeros(LOWCMD_SLOTS)
        for key, motors in self.motor_map.arm_motors.items():
            self._kp[list(motors)], self._kd[list(motors)] = self.motor_map.kp_kd(key)

    def _open_channels(self) -> None:
        t = self.dds.types
        self._arm_writer = self.dds.writer(ARM_SDK_TOPIC, t.LowCmd_)
        self._hand_writers = {action_key(f"{s}_hand"): self.dds.writer(hand_cmd_topic(s), t.HandCmd_) for s in SIDES}
        self.dds.reader(LOWSTATE_TOPIC, t.LowState_, self._on_lowstate)
        for side in SIDES:
            key = action_key(f"{side}_hand")
            self.dds.reader(hand_state_topic(side), t.HandState_, lambda msg, key=key: self._on_hand_state(key, msg))

    # ------------------------------------------------------------------ DDS handlers (listener threads)
    def _on_lowstate(self, msg: Any) -> None:
        now = time.monotonic()
        self._promote_listener()
        q = np.array([msg.motor_state[i].q for i in range(BODY_MOTORS)])
        dq = np.array([msg.motor_state[i].dq for i in range(BODY_MOTORS)])
        applied = int(msg.reserve[SEQ_WORD])
        reset_count = int(msg.reserve[RESET_WORD])
        with self._lock:
            self._body_q, self._body_dq, self._state_time = q, dq, now
            self._state_reset = reset_count
            if applied > self._applied_seq:
                sent = self._send_times.pop(applied, None)
                if sent is not None:
                    self.stats.round_trips.append(now - sent)
                self._applied_seq = applied

    def _on_hand_state(self, key: str, msg: Any) -> None:
        q = np.array([m.q for m in msg.motor_state], float)
        with self._lock:
            self._hand_q[key] = q

    # ------------------------------------------------------------------ the 50 Hz command loop
    def _command_loop(self) -> None:
        # time.sleep is clock_nanosleep on Linux (~0.1 ms late when the CPU is free): a late tick is the
        # scheduler's doing, which SCHED_FIFO (opt-in) fixes; deadlines are absolute, so lateness never accumulates.
        promote_current_thread(self.link.realtime_priority, "G1 command loop")
        next_tick = time.monotonic()
        last_tick: float | None = None
        last_log = next_tick
        while not self._stop.is_set():
            next_tick += self._period
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -self._period:  # more than a tick late: count it, and do not burst to catch up
                self.stats.overruns += 1
                next_tick = time.monotonic()
            now = time.monotonic()
            if last_tick is not None:
                self.stats.periods.append(now - last_tick)
            last_tick = now
            try:
                self._tick(now)
            except Exception:  # the loop must never die silently: log and hold on
                logger.exception("G1 command loop tick failed")
            if now - last_log > 10.0:
                p = LinkStats.percentiles(list(self.stats.periods)[-500:])
                logger.info("G1 command loop period p50 %.1f ms, p99 %.1f ms (nominal %.1f ms), %d rejected, %d trips",
                            1e3 * p["p50"], 1e3 * p["p99"], 1e3 * self._period, self.stats.rejected, len(self.trips))
                last_log = now

    def _camera_age(self, now: float) -> float:
        frame = self.images.latest
        return np.inf if frame is None else now - frame.received

    def _tick(self, now: float) -> None:
        with self._lock:
            if self._paused or not self._engaged or self._body_q is None:
                return
            state_age, camera_age = now - self._state_time, self._camera_age(now)
            stale = ("state" if state_age > self.link.state_timeout_s
                     else "camera" if camera_age > self.link.camera_timeout_s else "")
            if stale and self._hold_reason not in ("state", "camera"):
                self.trips.append(WatchdogTrip(now, stale, state_age, camera_age, self._state_time))
                logger.warning("watchdog: %s stale (lowstate %.0f ms, camera %.0f ms old): holding the arms",
                               stale, 1e3 * state_age, 1e3 * camera_age)
                self._trip_time = now
                if self._hold_reason != "estop":
                    self._latch_hold(stale)
            elif not stale and self._hold_reason in ("state", "camera") and self._state_time > self._trip_time:
                # Fresh state after the trip: resume from where the robot is, not from the stale target.
                self._rebase(now, self._hold_hands)
                logger.info("watchdog: fresh state again, resuming")
            if self._hold_q is not None:
                q, kind = self._hold_q.copy(), "hold"
                hands = self._hold_hands
            else:
                s = min(1.0, max(0.0, (now - self._target_time) / self._control_period))
                q = self._prev_target + s * (self._target - self._prev_target)
                kind = "policy" if self._weight >= 1.0 and self._weight_goal >= 1.0 else "ramp"
                hands = self._hand_target
                step = self._period / self.link.weight_ramp_s
                self._weight = float(np.clip(self._weight_goal, self._weight - step, self._weight + step))
            self._publish(q, self._weight, kind, hands, now)

    def _publish(self, q: np.ndarray, weight: float, kind: str, hands: dict[str, np.ndarray], now: float) -> None:
        """Validate, pack and write one arm_sdk command (and the hands'); a rejected command is never written."""
        # A hold goes to the measured pose, which may be far from the last target of a fast, lagging arm: it is
        # where the robot is, so no jump check (refusing it would leave the arm running to the old target).
        last_q = None if kind == "hold" else self._last_sent_q
        try:  # first, before anything touches it: the command may be of any shape or type
            self.validator.check_arm(q, self._kp, self._kd, weight, last_q, self._last_sent_weight)
            checked_hands = {k: self.validator.check_hand(k, v) for k, v in hands.items()}
        except RejectedCommandError as exc:
            self.stats.rejected += 1
            self.stats.last_rejection = str(exc)
            logger.error("command rejected, not sent: %s", exc)
            return
        q = np.asarray(q, np.float64).copy()
        q[ARM_SDK_WEIGHT_SLOT] = 0.0  # the weight travels in slot 29's q, set by the message builder
        self._seq += 1
        msg = self.dds.arm_sdk_command(q, self._kp, self._kd, weight, self._seq)
        self._send_times[self._seq] = time.monotonic()
        if len(self._send_times) > 1000:  # commands the robot never echoed (a real G1 echoes none)
            for old in list(self._send_times)[:500]:
                del self._send_times[old]
        self._arm_writer.Write(msg)
        for key, hq in checked_hands.items():
            kp, kd = self.validator.hand_gains(key)
            self._hand_writers[key].Write(self.dds.hand_command(hq, kp, kd, self._seq))
        self._last_sent_q, self._last_sent_weight = q, weight
        self.stats.sent += 1
        sent_q = q.copy()
        sent_q[ARM_SDK_WEIGHT_SLOT] = weight
        self.sent_log.append(SentCommand(self._seq, now, kind, sent_q))

    def publish_raw_arm_command(self, q: object, weight: object) -> bool:
        """Send one arm_sdk command as given, through the validator (tools and tests); False if it was refused."""
        with self._lock:
            before = self.stats.sent
            q = np.asarray(q)
            hands: dict[str, np.ndarray] = {}
            try:
                self._publish(q, weight, "raw", hands, time.monotonic())  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                self.stats.rejected += 1
                self.stats.last_rejection = str(exc)
            return self.stats.sent > before

    def _measured_cmd(self) -> np.ndarray:
        q = np.zeros(LOWCMD_SLOTS)
        assert self._body_q is not None
        for key, motors in self.motor_map.arm_motors.items():
            # Inside the ranges: a joint pressed a hair past its limit must still get a valid hold command.
            q[list(motors)] = np.clip(self._body_q[list(motors)], *self._ranges[key].T)
        return q

    def _measured_hands(self) -> dict[str, np.ndarray]:
        return {k: np.clip(v, *self._ranges[k].T) for k, v in self._hand_q.items() if v is not None}

    def _rebase(self, now: float, hands: dict[str, np.ndarray] | None = None) -> None:
        """Hold -> active (caller holds the lock): every command memory restarts from the measured pose, and a new
        control epoch begins (actions computed before it are dropped; see the module docstring)."""
        measured = self._measured_cmd()
        self._prev_target, self._target, self._target_time = measured, measured.copy(), now
        self._hand_target = {k: v.copy() for k, v in (hands or self._measured_hands()).items()}
        # The jump reference is the pose itself: the hold command before it is where the arm was told to stay,
        # but the arm may have settled a little off it, and the first resumed command is the measured pose.
        self._last_sent_q = measured.copy() if self._last_sent_q is not None else None
        self._hold_q, self._hold_reason = None, ""
        self._epoch += 1

    def _latch_hold(self, reason: str) -> None:
        self._hold_q = self._measured_cmd()
        self._hold_hands = self._measured_hands()
        self._hold_reason = reason

    # ------------------------------------------------------------------ engage / hold / e-stop
    def wait_for_link(self, timeout_s: float | None = None) -> None:
        """Block until rt/lowstate, both hand states and a camera frame arrived; one clear error otherwise."""
        deadline = time.monotonic() + (timeout_s or self.link.connect_timeout_s)
        while time.monotonic() < deadline:
            with self._lock:
                missing = [n for n, ok in ((LOWSTATE_TOPIC, self._body_q is not None),
                                           *((hand_state_topic(s), self._hand_q[action_key(f"{s}_hand")] is not None)
                                             for s in SIDES),
                                           (self.link.image_endpoint, self.images.latest is not None)) if not ok]
            if self.world is not None and self.world.latest is None:
                missing.append(self.link.world_endpoint)
            if not missing:
                return
            time.sleep(0.01)
        raise TimeoutError(f"No data from the robot on {', '.join(missing)} within "
                           f"{timeout_s or self.link.connect_timeout_s:.0f} s (DDS domain {self.link.domain_id} on "
                           f"{self.link.interface}): check --link.interface, --link.domain-id and the image server.")

    def engage(self) -> None:
        """Ramp the arm_sdk weight in, the arms commanded to their measured pose, and wait for the ramp."""
        with self._lock:
            measured = self._measured_cmd()
            self._prev_target, self._target, self._target_time = measured, measured.copy(), time.monotonic()
            self._hand_target = self._measured_hands()
            self._weight_goal, self._engaged, self._paused = 1.0, True, False
        self._wait_weight(1.0)

    def _wait_weight(self, goal: float) -> None:
        # A watchdog hold pauses the ramp (the weight is kept); the deadline covers a link that never comes back.
        deadline = time.monotonic() + self.link.weight_ramp_s * 2 + 1.0
        while time.monotonic() < deadline:
            with self._lock:
                if self._weight == goal or self._hold_reason == "estop":
                    return
            time.sleep(self._period)

    @property
    def weight(self) -> float:
        return self._weight

    def emergency_stop(self) -> None:
        """Hold the arms at their measured pose from the next command tick on, until `release_estop()`."""
        with self._lock:
            if self._body_q is not None:
                self._latch_hold("estop")

    def release_estop(self) -> None:
        with self._lock:
            if self._hold_reason != "estop":
                return
            self._rebase(time.monotonic(), self._hold_hands)

    @property
    def holding(self) -> str:
        """Why the arms are held ("state", "camera", "estop"), or "" while targets are followed."""
        return self._hold_reason

    # ------------------------------------------------------------------ TaskEnv
    @property
    def sim_time(self) -> float:
        return time.monotonic()

    def is_success(self) -> bool:
        return bool(self.scene.success)

    def action_ranges(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._ranges.items()}

    def _group_state(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._body_q is None:
                raise RuntimeError("no rt/lowstate received yet")
            out = {group_of(k): v for k, v in self.motor_map.arm_q(self._body_q).items()}
            for key, q in self._hand_q.items():
                out[group_of(key)] = (q if q is not None else np.zeros(7)).astype(np.float32)
            return out

    def state(self) -> dict[str, np.ndarray]:
        return {state_key(g): v for g, v in self._group_state().items()}

    def joint_velocities(self) -> dict[str, np.ndarray]:
        with self._lock:
            return {state_key(group_of(k)): self._body_dq[list(m)].astype(np.float32)
                    for k, m in self.motor_map.arm_motors.items()}

    def _forward_kinematics(self) -> mujoco.MjData:
        """The private model posed at the measured joints (the base is fixed, as in the simulator)."""
        state = self._group_state()
        for group, adr in self._qpos_adr.items():
            self._data.qpos[adr] = state[group]
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_camlight(self._model, self._data)  # camera poses (mj_kinematics leaves them out)
        return self._data

    def ee_pos(self, side: str) -> np.ndarray:
        return self._forward_kinematics().site_xpos[self._ee_site[side]].copy()

    def render(self) -> np.ndarray:
        frame = self.images.latest
        return frame.image if frame is not None else np.zeros((self.config.image_height, self.config.image_width, 3),
                                                              np.uint8)

    def _image(self, frame: Frame | None) -> np.ndarray:
        image = frame.image if frame is not None else self.render()
        h, w = self.config.image_height, self.config.image_width
        return _resized(image, h, w, "area")

    # ------------------------------------------------------------------ the camera, as perception reads it
    @property
    def has_depth(self) -> bool:
        """Whether the newest camera frame came with depth (False also while no frame arrived)."""
        frame = self.images.latest
        return frame is not None and frame.depth is not None

    def require_depth(self) -> None:
        """`NoDepthError` (one clear message) unless the image stream delivers depth with its colour."""
        if not self.has_depth:
            raise NoDepthError(self._no_depth_message())

    def _no_depth_message(self) -> str:
        return (f"The image stream at {self.link.image_endpoint} carries colour only (Unitree's image server sends "
                "JPEG colour frames): SAGE's camera perception needs depth. Stream the head camera's depth (the "
                "G1's RealSense D435i) beside the colour as the stand-in does (docs/ROBOT.md, 'Depth on the image "
                "stream'), or run without SAGE (--controller policy).")

    def _perception_frame(self, camera: str) -> Frame:
        if camera != EGO_CAMERA:
            raise ValueError(f"The G1 streams one camera, {EGO_CAMERA!r}; asked for {camera!r}.")
        frame = self._obs_frame or self.images.latest
        if frame is None:
            raise RuntimeError(f"No camera frame from {self.link.image_endpoint} yet.")
        return frame

    def render_camera(self, camera: str, height: int, width: int) -> np.ndarray:
        """The colour of the newest observation's frame at (height, width): what the policy saw."""
        return _resized(self._perception_frame(camera).image, height, width, "area")

    def render_depth(self, camera: str, height: int, width: int) -> np.ndarray:
        """(H, W) float32 metres of the same frame (NaN: no depth); `NoDepthError` on a colour-only stream."""
        frame = self._perception_frame(camera)
        if frame.depth is None:
            raise NoDepthError(self._no_depth_message())
        # Nearest, not area: averaging an object's edge with the table behind it invents points in mid-air.
        return _resized(frame.depth, height, width, "nearest")

    def camera_pose_intrinsics(self, camera: str, height: int,
                               width: int) -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
        """(position, world-from-camera rotation, fx, fy, cx, cy) at (height, width), as the simulator's: the pose
        by forward kinematics of the declared mount, the intrinsics the stream sent (scaled to the size asked),
        else the declared camera's field of view."""
        frame = self._perception_frame(camera)
        d = self._forward_kinematics()
        pos = d.cam_xpos[self._camera_id].copy()
        rot = d.cam_xmat[self._camera_id].reshape(3, 3).copy()
        if frame.intrinsics is None:
            fy = 0.5 * height / np.tan(np.deg2rad(self._model.cam_fovy[self._camera_id]) / 2)
            return pos, rot, float(fy), float(fy), (width - 1) / 2.0, (height - 1) / 2.0
        fx, fy, cx, cy = frame.intrinsics
        h0, w0 = frame.image.shape[:2]
        sx, sy = width / w0, height / h0
        # Pixel centres: u' + 0.5 = (u + 0.5) * s (the convention cx = (W - 1) / 2 follows from it).
        return pos, rot, fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5

    def observe(self) -> dict:
        """The current observation without stepping (pre-flight reads the rest pose through it)."""
        return self._observation()

    def _observation(self) -> dict:
        # The epoch is read before the state: an observation newer than its epoch costs one dropped action,
        # the other way round would let an action from a held pose through.
        epoch = self._epoch
        frame = self.images.latest  # one frame for the policy's image and for perception's colour and depth
        self._obs_frame = frame
        obs: dict = {EGO_VIEW: self._image(frame), **self.state()}
        obs[LANGUAGE_KEY] = self.instruction
        self._obs_epoch = epoch
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """New episode. On the stand-in its scene is reset to `seed` (a real G1's scene is reset by a person);
        the arms are then commanded to where they are measured, and the weight ramped in the first time."""
        self._rng = np.random.default_rng(seed)
        self.task.new_episode(self._rng)  # the same draws as the simulator's reset (procedural variants)
        with self._lock:
            self._paused = True
        if self.world is not None:
            asked = time.monotonic()
            reply = self.world.request({"op": "reset", "seed": seed})
            self.world.wait_for_reset(int(reply["reset"]), self.link.connect_timeout_s)
            self.instruction = str(reply["instruction"])
            self._wait_state_after(asked, int(reply["reset"]))
        else:
            phrasings = self.task.instructions()
            self.instruction = phrasings[int(self._rng.integers(len(phrasings)))]
            self.wait_for_link()
        if not self._engaged:
            self.engage()
        with self._lock:
            estop = (self._hold_q, self._hold_hands) if self._hold_reason == "estop" else None
            self._rebase(time.monotonic())
            if estop is not None:  # an engaged e-stop outlives the reset (only release_estop() ends it)
                self._hold_q, self._hold_hands, self._hold_reason = estop[0], estop[1], "estop"
            self._last_sent_q = None  # the stand-in's reset moved the arms: no jump check against before it
            self._paused = False
        self.step_count = 0
        self._next_step = time.monotonic() + self._control_period
        return self._observation(), {"success": self.is_success(), "instruction": self.instruction}

    def _wait_state_after(self, t: float, reset_count: int) -> None:
        """Until rt/lowstate and a camera frame from after the stand-in's reset arrived: received after `t` AND
        carrying the reset's count (a state sent before the reset may arrive after it was asked for; starting the
        safety filter from it would make the first commands jump to where the arm was at the end of the last
        episode; SAGE perceiving the frame of the old scene would plan from where the objects were left)."""
        deadline = time.monotonic() + self.link.connect_timeout_s
        while time.monotonic() < deadline:
            frame = self.images.latest
            fresh_frame = frame is not None and (frame.reset >= reset_count if frame.reset is not None
                                                 else frame.received > t)
            with self._lock:
                if self._state_time > t and self._state_reset >= reset_count and fresh_frame \
                        and all(v is not None for v in self._hand_q.values()):
                    return
            time.sleep(0.002)
        raise TimeoutError(f"No rt/lowstate and camera frame after the reset within "
                           f"{self.link.connect_timeout_s:.0f} s.")

    def set_targets(self, action: dict[str, np.ndarray]) -> None:
        """Check an action dict (as the simulator does) and make it the new control target; no waiting."""
        checked = check_action(action, {group_of(k): r for k, r in self._ranges.items()}, self.embodiment.name)
        now = time.monotonic()
        with self._lock:
            if self._obs_epoch != self._epoch:  # computed before a resume: the arms keep the measured pose
                self.stats.stale_actions += 1
                return
            s = min(1.0, max(0.0, (now - self._target_time) / self._control_period))
            self._prev_target = self._prev_target + s * (self._target - self._prev_target)  # where the ramp is now
            self._target = self._prev_target.copy()
            for key, motors in self.motor_map.arm_motors.items():
                self._target[list(motors)] = checked[key]
            self._target_time = now
            self._hand_target = {k: checked[k] for k in self.motor_map.hand_motors}

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict, float, bool, bool, dict]:
        """Targets from `action`, then the observation one control period later. `info["rebased"]`: the arms
        resumed from a hold since the last observation (reset the safety filter from this one)."""
        self.set_targets(action)
        delay = self._next_step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_step = max(self._next_step + self._control_period, time.monotonic())
        self.step_count += 1
        success = self.is_success()
        truncated = self.step_count >= self.config.max_steps
        before = self._obs_epoch
        obs = self._observation()
        info = {"success": success, "holding": self.holding, "watchdog_trips": len(self.trips),
                "rebased": self._obs_epoch != before}
        return obs, float(success), success, truncated, info

    def close(self) -> None:
        """Ramp the arm_sdk weight out (arms at their measured pose), then stop the loop and the links."""
        if self._stop.is_set():
            return
        with self._lock:
            live = self._engaged and self._body_q is not None and time.monotonic() - self._state_time < 0.5
            if live:
                measured = self._measured_cmd()
                self._prev_target, self._target, self._target_time = measured, measured.copy(), time.monotonic()
                self._weight_goal = 0.0
        if live:
            self._wait_weight(0.0)
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.images.close()
        if self.world is not None:
            self.world.close()
        if self._owns_domain:
            self.dds.close()

    def __enter__(self) -> UnitreeG1Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ panel
    def link_state(self) -> dict:
        """Link health for the panel: 'up', 'held' (watchdog or e-stop) or 'down' (no state yet / stale)."""
        now = time.monotonic()
        with self._lock:
            state_age, camera_age = now - self._state_time, self._camera_age(now)
            if self._body_q is None or state_age > self.link.state_timeout_s:
                status = "down"
            elif self._hold_reason:
                status = "held"
            else:
                status = "up"
            periods = LinkStats.percentiles(list(self.stats.periods)[-500:])
            rtt = LinkStats.percentiles(list(self.stats.round_trips)[-500:])
            return {"status": status, "holding": self._hold_reason, "weight": round(self._weight, 3),
                    "state_age_ms": _ms(state_age), "camera_age_ms": _ms(camera_age),
                    "watchdog_trips": len(self.trips), "rejected_commands": self.stats.rejected,
                    "loop_period_ms": {"p50": _ms(periods["p50"]), "p99": _ms(periods["p99"]),
                                       "nominal": round(1e3 * self._period, 1)},
                    "round_trip_ms": {"p50": _ms(rtt["p50"]), "p99": _ms(rtt["p99"])},
                    "domain_id": self.link.domain_id, "interface": self.link.interface}


def _resized(image: np.ndarray, height: int, width: int, how: str) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    import cv2

    interpolation = cv2.INTER_AREA if how == "area" else cv2.INTER_NEAREST_EXACT
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _ms(seconds: float) -> float | None:
    return round(1e3 * seconds, 2) if np.isfinite(seconds) else None


class _NoWorldScene:
    """A real robot's `SceneAccess`: joint state only; object poses come from perception, success from a person."""

    success = False

    def __init__(self, table_height: float, joint_state: Any) -> None:
        self._table_height, self._joint_state = table_height, joint_state

    @property
    def table_height(self) -> float:
        return self._table_height

    def _no(self, what: str) -> Any:
        raise RuntimeError(f"A real G1 has no {what} oracle: use a perceiving policy (not the privileged expert).")

    def body_pos(self, name: str) -> np.ndarray:
        return self._no("object pose")

    def body_quat(self, name: str) -> np.ndarray:
        return self._no("object pose")

    def set_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        self._no("scene placement")

    def touching_robot(self, name: str) -> bool:
        return self._no("contact")

    def joint_state(self) -> dict[str, np.ndarray]:
        return {state_key(g): v for g, v in self._joint_state().items()}

    def particle_positions(self, name: str) -> np.ndarray:
        return self._no("particle")
