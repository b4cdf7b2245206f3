"""Deploy SAGE's controller on a Unitree G1 (or the stand-in) with the deployment protocol.

    sage-deploy --link.interface enp3s0 --link.domain-id 0 --link.image-endpoint tcp://192.168.123.164:5555 \\
        --policy assets/policies/g1 --episodes 20 --record-dir outputs/g1_deploy

Pre-flight first (link, joint limits and workspace, calibration against the home pose, the e-stop exercised
with the robot seen to hold); then episodes under the slow start: 10% speed, one stage up after
--ramp.clean-episodes clean episodes, one stage down on any intervention. Every episode is recorded as a
LeRobot dataset in --record-dir. --preflight-only stops after pre-flight.

--controller policy (the default) runs the policy behind the safety filter on each episode's instruction;
--controller sage runs SAGE itself: its camera perception (which needs depth on the image stream), its
H-module planner (--planner) on --command (default: each episode's instruction), and its L-module driving
--policy through SAGE's safety filter. With no trained G1 policy, `--policy expert` is SAGE's executor on the
stand-in, as elsewhere in the project.
"""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.robot.backend import RobotLinkConfig
from sage_gr00t.robot.protocol import PreflightConfig, SpeedRampConfig

if TYPE_CHECKING:
    from sage_gr00t.bridge import SAGEGr00TBridge
    from sage_gr00t.robot.backend import UnitreeG1Backend

PROG = "sage-deploy"
CONTROLLERS = ("policy", "sage")


@dataclass
class DeployConfig:
    """Robot link, controller and protocol settings of one deployment run."""

    task: str = "pick_apple"
    variant: str = "train"
    policy: str = "expert"  # expert (stand-in only: it reads object poses) | checkpoint folder | zmq://HOST:PORT
    controller: str = "policy"  # policy: the policy -> safety filter; sage: SAGE (perceive -> plan -> act) around it
    planner: str = "assets/planner"  # SAGE's H-module checkpoint (--controller sage)
    command: str = ""  # what SAGE is asked to do (--controller sage); empty: each episode's instruction
    camera_every: int = 4  # SAGE's camera perception every k-th control step (--controller sage)
    device: str = "cpu"
    episodes: int = 10
    seed_start: int = 0
    max_steps: int = 400  # control steps per episode (20 Hz)
    image_size: int = 224  # policy image (camera frames are resized to it)
    record_dir: str = ""  # LeRobot dataset folder (empty: do not record)
    preflight_only: bool = False
    panel_state_file: str = ""  # JSON the panel state is written to after every episode (empty: none)
    link: RobotLinkConfig = field(default_factory=RobotLinkConfig)
    preflight: PreflightConfig = field(default_factory=PreflightConfig)
    ramp: SpeedRampConfig = field(default_factory=SpeedRampConfig)

    def __post_init__(self) -> None:
        check(self.episodes >= 0, f"--episodes must be >= 0, got {self.episodes}.")
        check(self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}.")
        check(16 <= self.image_size <= 1024, f"--image-size must be in 16..1024, got {self.image_size}.")
        check(self.controller in CONTROLLERS, f"--controller must be one of {', '.join(CONTROLLERS)}, "
              f"got {self.controller!r}.")
        check(self.camera_every >= 1, f"--camera-every must be >= 1, got {self.camera_every}.")


def _sage(cfg: DeployConfig, backend: UnitreeG1Backend) -> SAGEGr00TBridge:
    """SAGE's session on the backend: the one session builder, as sage-eval and the panel assemble it."""
    from sage_gr00t.session import SessionConfig, build_session

    session = build_session(SessionConfig(task=cfg.task, embodiment="unitree_g1", variant=cfg.variant,
                                          policy=cfg.policy, device=cfg.device, controller="sage",
                                          planner=cfg.planner, camera_every=cfg.camera_every),
                            env=backend)
    assert session.bridge is not None
    return session.bridge


def run(cfg: DeployConfig) -> int:
    from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig
    from sage_gr00t.policy.factory import make_policy
    from sage_gr00t.robot.backend import NoDepthError, UnitreeG1Backend
    from sage_gr00t.robot.protocol import DeploymentRunner, PreflightError, SpeedRamp, open_recorder
    from sage_gr00t.sim.config import TaskConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    task_config = TaskConfig(embodiment="unitree_g1", variant=cfg.variant, image_height=cfg.image_size,
                             image_width=cfg.image_size, max_steps=cfg.max_steps)
    try:
        backend = UnitreeG1Backend(cfg.task, task_config, cfg.link)
    except (ValueError, ImportError, FileNotFoundError) as exc:
        return error(PROG, str(exc))
    # SIGTERM (a supervisor stopping the run) unwinds like Ctrl-C: the weight ramps out, the dataset finalizes.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    writer = None
    try:
        try:
            backend.wait_for_link()  # a policy (the expert) reads the robot's state when it is made
        except TimeoutError as exc:
            return error(PROG, str(exc))
        bridge = None
        if cfg.controller == "sage":
            try:
                backend.require_depth()  # before anything moves: SAGE cannot perceive from colour alone
            except NoDepthError as exc:
                return error(PROG, str(exc))
            bridge = _sage(cfg, backend)
            policy, safety = bridge.policy, bridge.safety
        else:
            policy = make_policy(cfg.policy, backend, cfg.device)
            safety = SafetyFilter(backend.embodiment, backend.action_ranges(),
                                  SafetyFilterConfig(table_height=float(backend.table_height),
                                                     control_dt=1.0 / task_config.control_hz))
        runner = DeploymentRunner(backend, policy, safety, SpeedRamp(cfg.ramp), bridge=bridge, command=cfg.command)
        try:
            report = runner.preflight(cfg.preflight)
        except (PreflightError, TimeoutError) as exc:
            return error(PROG, str(exc))
        print(f"pre-flight passed: {', '.join(report.steps)} (e-stop held within {report.estop_max_motion:.4f} rad)")
        if cfg.preflight_only:
            return 0
        if cfg.record_dir:
            writer = open_recorder(cfg.record_dir, backend)
            runner.writer = writer
        for seed in range(cfg.seed_start, cfg.seed_start + cfg.episodes):
            ep = runner.run_episode(seed, cfg.max_steps)
            sage = f"; SAGE: {bridge.message}" if bridge is not None else ""
            print(f"seed {seed}: {'success' if ep.success else 'no success'} in {ep.steps} steps at "
                  f"{100 * ep.speed_scale:.0f}% speed, {'clean' if ep.clean else ep.reason}; speed {ep.ramp_change} "
                  f"-> {100 * runner.ramp.scale:.0f}%{sage}")
            if cfg.panel_state_file:
                path = Path(cfg.panel_state_file)
                path.write_text(json.dumps(runner.panel_state(), indent=1))
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if writer is not None:
            writer.finalize()
        backend.close()


def main(argv: list[str] | None = None) -> int:
    return run(parse(DeployConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
