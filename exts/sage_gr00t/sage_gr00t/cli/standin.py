"""Run a stand-in Unitree G1 (MuJoCo) behind the robot's DDS topics, for tests and demos.

    sage-standin --domain-id 17 --interface lo --task pick_apple

It steps physics at 500 Hz, publishes rt/lowstate at 100 Hz (--state-every 1: 500 Hz) and head-camera frames
on --image-endpoint (colour and 16-bit depth with the intrinsics, as SAGE's perception needs; --no-depth: colour
only, as Unitree's image server streams), obeys rt/arm_sdk and the Dex3 hand commands, and serves object poses /
resets on the world endpoints. Stop it with Ctrl-C.
"""

from __future__ import annotations

import logging

from sage_gr00t.cli._parsing import error, parse

PROG = "sage-standin"


def run(cfg: object) -> int:
    from sage_gr00t.robot.standin import StandinRobot

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        robot = StandinRobot(cfg)  # type: ignore[arg-type]
    except (ValueError, FileNotFoundError, ImportError) as exc:
        return error(PROG, str(exc))
    try:
        robot.run()
    except KeyboardInterrupt:
        pass
    finally:
        robot.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    from sage_gr00t.robot.standin import StandinConfig

    return run(parse(StandinConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
