"""The deployment protocol on the stand-in over real DDS: pre-flight (calibration refuses an offset joint; the
e-stop is exercised), the slow-start ramp 10% -> 100% after clean episodes and down on an intervention, every
episode recorded as a LeRobot dataset, and the panel's robot indicators."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("unitree_sdk2py", reason="the [robot] extra (Unitree SDK + Cyclone DDS) is not installed")
pytestmark = pytest.mark.skipif(not os.environ.get("MENAGERIE_ROOT"),
                                reason="no local MuJoCo Menagerie: set MENAGERIE_ROOT to a checkout")

from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig  # noqa: E402
from sage_gr00t.experts.policy import ExpertPolicy  # noqa: E402
from sage_gr00t.modality import action_key  # noqa: E402
from sage_gr00t.panel.viewmodel import robot_summary  # noqa: E402
from sage_gr00t.robot.backend import RobotLinkConfig, UnitreeG1Backend  # noqa: E402
from sage_gr00t.robot.protocol import (  # noqa: E402
    CalibrationError,
    DeploymentRunner,
    PreflightError,
    SpeedRamp,
    SpeedRampConfig,
    open_recorder,
    preflight,
)
from sage_gr00t.robot.standin import StandinProcess  # noqa: E402
from sage_gr00t.sim.config import TaskConfig  # noqa: E402

IMAGE = 64
LEFT_ELBOW_MOTOR = 18


def _backend(standin: StandinProcess, state_timeout_s: float = 0.05) -> UnitreeG1Backend:
    backend = UnitreeG1Backend("pick_apple", TaskConfig(embodiment="unitree_g1", image_height=IMAGE, image_width=IMAGE),
                               RobotLinkConfig(**standin.link_kwargs(), weight_ramp_s=0.3, connect_timeout_s=60.0,
                                               state_timeout_s=state_timeout_s))
    backend.wait_for_link(60.0)  # the stand-in process is still starting
    return backend


def _safety(backend: UnitreeG1Backend) -> SafetyFilter:
    return SafetyFilter(backend.embodiment, backend.action_ranges(),
                        SafetyFilterConfig(table_height=float(backend.table_height)))


def test_speed_ramp_steps_up_only_after_clean_episodes_and_down_on_an_intervention() -> None:
    ramp = SpeedRamp(SpeedRampConfig(stages=(0.1, 0.5, 1.0), clean_episodes=2))
    assert ramp.scale == 0.1
    assert [ramp.record(True), ramp.record(True)] == ["hold", "up"] and ramp.scale == 0.5
    assert ramp.record(True) == "hold" and ramp.record(False, "workspace x1") == "down" and ramp.scale == 0.1
    assert ramp.record(False) == "down" and ramp.scale == 0.1  # the floor stays the floor
    for _ in range(4):
        ramp.record(True)
    assert ramp.scale == 1.0
    ramp.record(True)
    assert ramp.scale == 1.0
    with pytest.raises(ValueError, match=r"rise strictly from 0\.1 to 1\.0"):
        SpeedRampConfig(stages=(0.2, 1.0))


class GlitchPolicy:
    """The expert, but one step of its output is NaN (a bad checkpoint's glitch) when `glitch` is set."""

    def __init__(self, expert: ExpertPolicy) -> None:
        self.expert, self.glitch, self.calls = expert, False, 0

    def reset(self) -> None:
        self.expert.reset()
        self.calls = 0

    def get_action(self, observation: dict) -> dict:
        action = self.expert.get_action(observation)
        self.calls += 1
        if self.glitch and self.calls == 2:
            action[action_key("left_arm")] = np.full_like(action[action_key("left_arm")], np.nan)
        return action


@pytest.fixture(scope="module")
def standin():
    """One stand-in for the tests that take turns driving it (each closes its controller before the next)."""
    robot = StandinProcess(random.randint(100, 230), image_size=IMAGE)
    try:
        yield robot
    finally:
        robot.stop()


def test_preflight_then_slow_start_ramp_recording_and_panel(tmp_path, standin) -> None:
    # A watchdog trip makes an episode unclean, and a shared 2-core CI machine can starve a process for 50 ms:
    # this test is about the ramp, so its watchdog waits 300 ms (test_robot_link tests the 50 ms one).
    backend = _backend(standin, state_timeout_s=0.3)
    try:
        safety = _safety(backend)
        policy = GlitchPolicy(ExpertPolicy(backend))
        ramp = SpeedRamp(SpeedRampConfig(stages=(0.1, 0.5, 1.0), clean_episodes=1))
        writer = open_recorder(tmp_path / "deploy", backend)
        runner = DeploymentRunner(backend, policy, safety, ramp, writer=writer)
        with pytest.raises(PreflightError, match="Run pre-flight first"):
            runner.run_episode(0, 4)
        assert backend.stats.sent == 0, "a command went out before pre-flight"
        report = runner.preflight()
        assert report.passed and report.steps == ["link", "limits", "calibration", "estop"]
        assert report.estop_max_motion < 0.02
        scales = []
        for seed in range(2):  # two clean episodes: 10% -> 50% -> 100%
            scales.append(runner.run_episode(seed, max_steps=5).speed_scale)
        assert scales == [0.1, 0.5] and ramp.scale == 1.0
        policy.glitch = True  # one NaN action: the safety filter intervenes -> one stage down at once
        ep = runner.run_episode(2, max_steps=5)
        assert not ep.clean and "non_finite" in ep.reason and ep.ramp_change == "down" and ramp.scale == 0.5
        panel = runner.panel_state()
        assert panel["link"]["status"] == "up" and panel["speed"]["speed_percent"] == 50.0
        assert panel["watchdog"]["trips"] == len(backend.trips) and panel["preflight"]["passed"]
        json.dumps(panel)  # what the web panel serves
        summary = robot_summary(panel)  # the Kit panel's lines
        assert "Robot link UP" in summary and "Speed stage 2/3: 50%" in summary and "Watchdog trips" in summary
        assert robot_summary(None) == ""
        writer.finalize()
    finally:
        backend.close()
    from sage_gr00t.data.lerobot_dataset import load_episode, read_episode_records

    records = read_episode_records(tmp_path / "deploy")
    assert [r["seed"] for r in records] == [0, 1, 2] and [r["extra"]["clean"] for r in records] == [True, True, False]
    episode = load_episode(tmp_path / "deploy", 2)
    assert episode.groups("action")[action_key("left_arm")].shape == (5, 7)


def test_a_killed_deployment_loses_no_finished_episode(tmp_path, standin) -> None:
    """sage-deploy records episodes to a LeRobot dataset in a real subprocess; SIGKILL while the second episode
    is in flight leaves the first one on disk, loadable by LeRobot's loader, and a new writer resumes the dataset."""
    import signal
    import threading
    import time

    root = tmp_path / "deploy"
    steps = 20
    flags = [f"--link.{k.replace('_', '-')}={v}" for k, v in standin.link_kwargs().items()]
    deploy = subprocess.Popen([sys.executable, "-m", "sage_gr00t.cli.deploy", *flags, "--image-size", str(IMAGE),
                               "--link.connect-timeout-s", "60", "--link.state-timeout-s", "0.3",
                               "--episodes", "5", "--max-steps", str(steps), "--record-dir", str(root)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    first_done = threading.Event()

    def read() -> None:
        assert deploy.stdout is not None
        for line in deploy.stdout:
            lines.append(line)
            if line.startswith("seed 0:"):
                first_done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first_done.wait(180), f"sage-deploy never finished its first episode: {lines}"
        time.sleep(0.5)  # well into the second episode (20 steps take 1 s)
        assert deploy.poll() is None and not any(x.startswith("seed 1:") for x in lines), "killed too late"
        deploy.send_signal(signal.SIGKILL)
        deploy.wait(timeout=10)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == -signal.SIGKILL
    # What is on disk, read as the killed process left it (no recovery first), through LeRobot's loader.
    from sage_gr00t.data.lerobot_dataset import load_dataset, load_episode, read_episode_records

    assert load_dataset(root).meta.total_episodes == 1
    records = read_episode_records(root)
    assert [r["seed"] for r in records] == [0]
    episode = load_episode(root, 0)
    frames = episode.action.shape[0]
    assert 0 < frames <= steps and frames == records[0]["length"] == episode.images.shape[0] == len(episode.state)
    assert episode.images.shape[1:] == (IMAGE, IMAGE, 3) and np.all(np.isfinite(episode.action))


def test_calibration_refuses_a_robot_with_an_offset_joint() -> None:
    offset = ("--encoder-offset-motor", str(LEFT_ELBOW_MOTOR), "--encoder-offset-rad", "0.3")
    standin = StandinProcess(random.randint(100, 230), image_size=IMAGE, extra_args=offset)
    try:
        backend = _backend(standin)
        try:
            with pytest.raises(CalibrationError, match=r"left_elbow_joint \(motor 18\) reads \+0\.3"):
                preflight(backend, _safety(backend))
            assert backend.weight == 0.0 and backend.stats.sent == 0, "the arms were engaged before calibration"
        finally:
            backend.close()
        # The command line says the same in one line, and exits with the usage status.
        link = standin.link_kwargs()
        flags = [f"--link.{k.replace('_', '-')}={v}" for k, v in link.items()]
        done = subprocess.run([sys.executable, "-m", "sage_gr00t.cli.deploy", *flags, "--image-size", str(IMAGE),
                               "--preflight-only"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("sage-deploy: error: Calibration refused: left_elbow_joint")
    finally:
        standin.stop()
