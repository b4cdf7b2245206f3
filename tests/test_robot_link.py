"""The G1 backend against the stand-in robot over real DDS on loopback: what reaches rt/arm_sdk, the e-stop,
and the watchdog when the robot vanishes (the stand-in is SIGKILLed mid-episode)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("unitree_sdk2py", reason="the [robot] extra (Unitree SDK + Cyclone DDS) is not installed")
pytestmark = pytest.mark.skipif(not os.environ.get("MENAGERIE_ROOT"),
                                reason="no local MuJoCo Menagerie: set MENAGERIE_ROOT to a checkout")

from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig  # noqa: E402
from sage_gr00t.experts.policy import ExpertPolicy  # noqa: E402
from sage_gr00t.experts.scripted import ScriptedExpert  # noqa: E402
from sage_gr00t.modality import action_key, state_key  # noqa: E402
from sage_gr00t.robot.backend import RobotLinkConfig, UnitreeG1Backend  # noqa: E402
from sage_gr00t.robot.dds import ARM_SDK_TOPIC, SEQ_WORD, DdsDomain, command_q  # noqa: E402
from sage_gr00t.robot.g1_map import ARM_SDK_WEIGHT_SLOT, LOWCMD_SLOTS  # noqa: E402
from sage_gr00t.robot.protocol import run_controlled_episode  # noqa: E402
from sage_gr00t.robot.standin import StandinProcess  # noqa: E402
from sage_gr00t.sim.actions import InvalidActionError  # noqa: E402
from sage_gr00t.sim.config import TaskConfig  # noqa: E402

IMAGE = 64


class ArmSdkSpy:
    """Every LowCmd_ seen on rt/arm_sdk: (receive time, seq, 35 q, kp)."""

    def __init__(self, domain: DdsDomain) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[float, int, np.ndarray, np.ndarray]] = []
        domain.reader(ARM_SDK_TOPIC, domain.types.LowCmd_, self._on)

    def _on(self, msg) -> None:
        kp = np.array([m.kp for m in msg.motor_cmd])
        with self.lock:
            self.seen.append((time.monotonic(), int(msg.reserve[SEQ_WORD]), command_q(msg), kp))

    def snapshot(self) -> list[tuple[float, int, np.ndarray, np.ndarray]]:
        with self.lock:
            return list(self.seen)


@pytest.fixture(scope="module")
def rig():
    """Stand-in + backend + an rt/arm_sdk spy on the backend's DDS domain (a random id of this module's own)."""
    domain_id = random.randint(100, 230)
    standin = StandinProcess(domain_id, image_size=IMAGE)
    domain = DdsDomain(domain_id, "lo")
    spy = ArmSdkSpy(domain)
    backend = UnitreeG1Backend("pick_apple", TaskConfig(embodiment="unitree_g1", image_height=IMAGE, image_width=IMAGE),
                               RobotLinkConfig(**standin.link_kwargs(), weight_ramp_s=0.3, connect_timeout_s=60.0),
                               domain=domain)
    try:
        backend.wait_for_link(60.0)
        yield standin, backend, spy
    finally:
        backend.close()
        standin.stop()
        domain.close()


def arm_q(obs: dict) -> np.ndarray:
    return np.concatenate([obs[state_key("left_arm")], obs[state_key("right_arm")]]).astype(float)


def test_malformed_and_out_of_range_commands_never_reach_arm_sdk(rig) -> None:
    _, backend, spy = rig
    backend.reset(seed=1)
    time.sleep(0.1)
    valid = backend.sent_log[-1].q.copy()
    valid[ARM_SDK_WEIGHT_SLOT] = 0.0
    lo, hi = backend.action_ranges()[action_key("left_arm")].T
    nan = valid.copy()
    nan[18] = np.nan
    out_of_range = valid.copy()
    out_of_range[15] = hi[0] + 0.5
    jump = valid.copy()
    jump[18] += 0.4 * np.sign(lo[3] + hi[3] - 2 * valid[18])  # toward the middle of the range, but in one tick
    bad = [(nan, 1.0), (out_of_range, 1.0), (jump, 1.0), (valid, 1.5), (valid, float("nan")), (valid[:20], 1.0),
           (np.array(["x"] * LOWCMD_SLOTS), 1.0)]
    with backend._lock:  # the loop's own ticks must not move "last sent" between these checks
        backend._paused = True
    try:
        for q, weight in bad:
            assert backend.publish_raw_arm_command(q, weight) is False
        rejected = backend.stats.rejected
        assert backend.publish_raw_arm_command(valid, 1.0) is True  # the gate passes a good command
    finally:
        with backend._lock:
            backend._paused = False
    assert rejected >= len(bad)
    # Actions are refused before they become targets, as the simulator refuses them.
    action = backend.home_action()
    for key, value in ((action_key("left_arm"), np.full(7, np.nan)), (action_key("right_arm"), np.full(7, 9.0)),
                       (action_key("left_hand"), np.zeros(3))):
        with pytest.raises(InvalidActionError):
            backend.step({**action, key: value})
    time.sleep(0.2)
    seen = spy.snapshot()
    assert len(seen) > 10, "the spy saw no arm_sdk traffic: the check below would prove nothing"
    ranges = backend.action_ranges()
    for _, _, q, kp in seen:
        assert np.all(np.isfinite(q)) and 0.0 <= q[ARM_SDK_WEIGHT_SLOT] <= 1.0
        for key, motors in backend.motor_map.arm_motors.items():
            r = ranges[key]
            assert np.all(q[list(motors)] >= r[:, 0] - 1e-4) and np.all(q[list(motors)] <= r[:, 1] + 1e-4)
        legs = [i for i in range(LOWCMD_SLOTS) if i < 15 or i >= 29]
        assert np.all(kp[legs] == 0)
    assert not any(abs(q[15] - out_of_range[15]) < 1e-6 for _, _, q, _ in seen)


def test_estop_stops_motion_through_dds(rig) -> None:
    _, backend, _ = rig
    obs, _ = backend.reset(seed=2)
    expert = ScriptedExpert(backend)
    moving = 0.0
    for _ in range(40):  # reach toward the apple until the arm is clearly moving
        before = arm_q(obs)
        obs, *_ = backend.step(expert.act(obs))
        moving = float(np.abs(arm_q(obs) - before).max())
        if moving > 0.02:
            break
    assert moving > 0.02, "the expert never moved the arm: the e-stop check would prove nothing"
    backend.emergency_stop()
    time.sleep(0.3)  # the arm brakes onto the latched pose (a position servo from ~1 rad/s: a few cm of overshoot)
    settled = arm_q(backend.observe())
    drift = 0.0
    for _ in range(10):  # the expert keeps commanding motion; the e-stop must hold
        obs, _, _, _, info = backend.step(expert.act(obs))
        assert info["holding"] == "estop"
        drift = max(drift, float(np.abs(arm_q(obs) - settled).max()))
    assert drift < 0.01, f"arm moved {drift:.4f} rad under the e-stop ({backend.stats.last_rejection})"
    speeds = np.concatenate(list(backend.joint_velocities().values()))
    assert np.abs(speeds).max() < 0.05
    assert backend.sent_log[-1].kind == "hold"
    backend.release_estop()
    assert backend.holding == ""


class Freezer:
    """SIGSTOP the stand-in process for `seconds` from another thread (the robot's state stream stalls), then
    SIGCONT it; `thawed` is when it runs again."""

    def __init__(self, standin: StandinProcess, seconds: float) -> None:
        self.pid, self.seconds, self.thawed = standin.process.pid, seconds, float("inf")
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        try:
            time.sleep(self.seconds)
        finally:
            os.kill(self.pid, signal.SIGCONT)
            self.thawed = time.monotonic()

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=5)


def _safety(backend: UnitreeG1Backend) -> SafetyFilter:
    return SafetyFilter(backend.embodiment, backend.action_ranges(),
                        SafetyFilterConfig(table_height=float(backend.table_height)))


def test_a_controller_stepping_through_a_hold_gets_no_command_rejected_after_the_resume(rig) -> None:
    """The controller keeps asking for fast motion while the stand-in is frozen: its safety filter's command runs
    on >1 rad ahead of the held arm. On resume the backend drops the action computed before it and says so
    (`info["rebased"]`); the filter restarts from the measured pose, and nothing is refused for a jump."""
    standin, backend, _ = rig
    obs, _ = backend.reset(seed=5)
    safety = _safety(backend)
    safety.reset({k: v for k, v in obs.items() if k.startswith("state.")})
    goal = backend.home_action()
    key = action_key("left_arm")
    goal[key] = goal[key].copy()
    goal[key][0] -= 1.2  # shoulder pitch: the arm swings forward at the filter's velocity limit
    trips_before, rejected_before = len(backend.trips), backend.stats.rejected
    freezer = Freezer(standin, 0.6)
    rebased = 0
    for step in range(40):
        if step == 3:
            freezer.start()
        command = safety.filter(goal, {k: v for k, v in obs.items() if k.startswith("state.")})
        obs, _, _, _, info = backend.step(command.action)
        if info["rebased"]:
            rebased += 1
            safety.reset({k: v for k, v in obs.items() if k.startswith("state.")})
    freezer.join()
    assert backend.trips[trips_before:], "freezing the stand-in did not trip the watchdog"
    assert backend.stats.rejected == rejected_before, f"rejected after the resume: {backend.stats.last_rejection}"
    assert sum(c.kind == "policy" and c.time > freezer.thawed for c in backend.sent_log) > 10
    assert rebased >= 1, "the backend never said it resumed"
    assert obs[state_key("left_arm")][0] < goal[key][0] + 0.3, "the arm did not go on toward the goal"


def test_resume_after_a_watchdog_trip_rejects_nothing_and_the_episode_goes_on(rig) -> None:
    """The stand-in is frozen mid-reach while the expert's episode runs: the watchdog holds, the policy waits, and
    after the resume the episode goes on from the measured pose, with no command refused, to success."""
    standin, backend, _ = rig
    trips_before, rejected_before = len(backend.trips), backend.stats.rejected
    freezer = Freezer(standin, 0.6)

    def on_step(step: int, obs: dict, action: dict) -> None:
        if step == 12:  # mid-reach: the arm is moving
            freezer.start()

    success, steps, _, _ = run_controlled_episode(backend, ExpertPolicy(backend), _safety(backend), seed=4,
                                                  max_steps=300, on_step=on_step)
    freezer.join()
    trips = backend.trips[trips_before:]
    assert trips and trips[0].reason == "state", "freezing the stand-in did not trip the watchdog"
    assert backend.stats.rejected == rejected_before, f"rejected after the resume: {backend.stats.last_rejection}"
    assert sum(c.kind == "policy" and c.time > freezer.thawed for c in backend.sent_log) > 20
    assert success, f"the episode did not finish after the resume ({steps} steps)"


def test_killing_the_standin_holds_within_the_timeout_and_sends_no_policy_command(rig) -> None:
    standin, backend, spy = rig
    obs, _ = backend.reset(seed=3)
    expert = ScriptedExpert(backend)
    for _ in range(15):
        obs, *_ = backend.step(expert.act(obs))
    trips_before = len(backend.trips)
    standin.kill()  # mid-episode: the robot is gone
    killed = time.monotonic()
    for _ in range(10):  # the controller goes on asking for motion
        obs, _, _, _, info = backend.step(expert.act(obs))
    timeout = backend.link.state_timeout_s
    trips = backend.trips[trips_before:]
    assert trips and trips[0].reason == "state", "the watchdog did not trip on a silent rt/lowstate"
    trip = trips[0]
    # The trip is seen at the first command tick past the timeout (one 20 ms tick; 30 ms of scheduling margin).
    assert trip.last_state_time <= killed + 0.01
    assert trip.time - trip.last_state_time <= timeout + backend._period + 0.03
    assert info["holding"] == "state" and backend.link_state()["status"] == "down"
    after = [c for c in backend.sent_log if c.time > trip.last_state_time + timeout]
    assert after, "nothing was sent after the timeout: the hold is not being commanded"
    assert all(c.kind == "hold" for c in after), "a policy command went out after the watchdog timeout"
    held = after[0].q
    assert all(np.array_equal(c.q, held) for c in after), "the held pose changed after the timeout"
    # On the wire too: every arm_sdk message from the first hold on carries the same (held) pose.
    seqs = {c.seq for c in after}
    wire = [q for _, seq, q, _ in spy.snapshot() if seq in seqs]
    assert wire and all(np.allclose(q[15:29], held[15:29], atol=1e-6) for q in wire)
    assert held[ARM_SDK_WEIGHT_SLOT] == 1.0  # the weight is kept: Unitree's controller does not take the arms back
