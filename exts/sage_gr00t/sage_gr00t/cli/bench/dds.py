"""pick_apple on the G1 through DDS against the stand-in robot vs the same controller in the simulator.

    sage-bench dds --seeds 20                       # the expert -> safety filter
    sage-bench dds --seeds 20 --controller sage     # SAGE: perceive -> plan -> L-module (expert) -> safety filter

The controller is the same in both columns. --controller expert: expert policy -> chunk executor -> safety filter
(100% speed) -> env. --controller sage: a SAGE session (the one session builder) whose camera perception reads the
stand-in's streamed colour + depth, whose planner plans each episode's instruction (or --command), and whose
L-module drives the expert through SAGE's safety filter (100% speed); it also prints how far the first frame's
perceived objects are from where the scene has them (direct: the simulator's render; DDS: the streamed frame).
"direct" steps the MuJoCo env in-process; "DDS" drives the stand-in (`sage-standin`, real time, 500 Hz physics)
only through rt/arm_sdk, the Dex3 topics and the image stream, through `UnitreeG1Backend` (50 Hz command loop).
Printed: success with Wilson 95% intervals, the DDS round trip (command sent -> the stand-in's state echoing
that command seen) median and p99, the command-loop period p50 / p99 against the nominal 20 ms, watchdog trips,
each DDS episode's trips / rejected commands / steps, and the load average (the link's timing is the machine's).
--realtime-priority N runs the command loop, the rt/lowstate listener and the stand-in's physics loop under
SCHED_FIFO N where permitted.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sage_gr00t.cli._parsing import check, parse

PROG = "sage-bench dds"


CONTROLLERS = ("expert", "sage")


@dataclass
class DdsBenchConfig:
    """Success and link timing of a G1 controller (the expert, or SAGE around it) through DDS vs direct."""

    seeds: int = 20  # episodes per column, seeds seed_start .. seed_start + seeds - 1
    seed_start: int = 0
    task: str = "pick_apple"
    controller: str = "expert"  # expert: expert -> safety filter; sage: SAGE (perceive, plan, L-module) around it
    command: str = ""  # --controller sage: what SAGE is asked (empty: each episode's instruction)
    planner: str = "assets/planner"  # --controller sage: the H-module checkpoint
    max_steps: int = 300  # control steps per episode (20 Hz)
    image_size: int = 0  # camera frames; 0: 64 for the expert (it does not look at them), 96 for SAGE (it does)
    domain_id: int = 0  # 0: a random id in 100..230
    realtime_priority: int = 0  # SCHED_FIFO priority for the link's loops (0: normal scheduling)

    def __post_init__(self) -> None:
        check(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}.")
        check(self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}.")
        check(0 <= self.domain_id <= 232, f"--domain-id must be in 0..232, got {self.domain_id}.")
        check(self.controller in CONTROLLERS, f"--controller must be one of {', '.join(CONTROLLERS)}, "
              f"got {self.controller!r}.")
        check(self.image_size == 0 or 16 <= self.image_size <= 1024,
              f"--image-size must be 0 or in 16..1024, got {self.image_size}.")
        if self.image_size == 0:
            self.image_size = 96 if self.controller == "sage" else 64


class _Episodes:
    """One column's controller on one env: `run(seed)` -> (success, steps, filter interventions by kind)."""

    def __init__(self, cfg: DdsBenchConfig, env: Any, planner: Any) -> None:
        self.cfg, self.env = cfg, env
        self.perception_errors: list[float] = []  # SAGE: first frame, per object, perceived vs the scene (m)
        if cfg.controller == "sage":
            from sage_gr00t.session import SessionConfig, build_session

            session = build_session(SessionConfig(task=cfg.task, embodiment="unitree_g1", controller="sage",
                                                  policy="expert", planner=cfg.planner), env=env, planner=planner)
            self.bridge = session.bridge
        else:
            from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig
            from sage_gr00t.experts.policy import ExpertPolicy

            self.bridge = None
            self.policy = ExpertPolicy(env)
            self.safety = SafetyFilter(env.embodiment, env.action_ranges(),
                                       SafetyFilterConfig(table_height=float(env.table_height)))

    def run(self, seed: int) -> tuple[bool, int, dict[str, int]]:
        from sage_gr00t.robot.protocol import run_controlled_episode, run_sage_episode

        if self.bridge is None:
            ok, steps, kinds, _ = run_controlled_episode(self.env, self.policy, self.safety, seed, self.cfg.max_steps)
            return ok, steps, kinds
        bridge, first = self.bridge, True

        def check_perception(step: int, obs: dict, action: dict) -> None:
            nonlocal first
            reading = bridge.perceived.reading("camera") if bridge.perceived is not None else None
            if first and reading is not None:  # the first frame, before anything moved
                first = False
                for name, estimate in reading.estimates.items():
                    self.perception_errors.append(float(np.linalg.norm(estimate.position
                                                                       - self.env.scene.body_pos(name))))

        ok, steps, kinds, _ = run_sage_episode(self.env, bridge, seed, self.cfg.max_steps, self.cfg.command,
                                               on_step=check_perception)
        return ok, steps, kinds


def run(cfg: DdsBenchConfig) -> int:
    from sage_gr00t.bench.stats import wilson_interval
    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.robot.backend import LinkStats, RobotLinkConfig, UnitreeG1Backend
    from sage_gr00t.robot.standin import StandinProcess
    from sage_gr00t.sim.config import TaskConfig
    from sage_gr00t.tasks import make_env

    planner = None
    if cfg.controller == "sage":  # loaded once: both columns plan with the same H-module
        from sage_gr00t.plan.planner import HModulePlanner
        from sage_gr00t.policy.factory import resolve_path

        planner = HModulePlanner.load(resolve_path(cfg.planner))
    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.seeds))
    results: dict[str, list[bool]] = {"direct": [], "DDS": []}
    env = make_env(cfg.task, embodiment="unitree_g1", image_height=cfg.image_size, image_width=cfg.image_size,
                   max_steps=cfg.max_steps)
    direct = _Episodes(cfg, env, planner)
    start = time.monotonic()
    for seed in seeds:
        ok, *_ = direct.run(seed)
        results["direct"].append(ok)
    env.close()
    direct_s = time.monotonic() - start

    domain_id = cfg.domain_id or random.randint(100, 230)
    trips = 0
    load_before = os.getloadavg()
    rt = ("--realtime-priority", str(cfg.realtime_priority)) if cfg.realtime_priority else ()
    with StandinProcess(domain_id, image_size=cfg.image_size, extra_args=rt) as standin:
        task_config = TaskConfig(embodiment="unitree_g1", image_height=cfg.image_size, image_width=cfg.image_size,
                                 max_steps=cfg.max_steps)
        backend = UnitreeG1Backend(cfg.task, task_config, RobotLinkConfig(**standin.link_kwargs(),
                                                                          connect_timeout_s=60.0,
                                                                          realtime_priority=cfg.realtime_priority))
        try:
            backend.wait_for_link(60.0)
            if cfg.controller == "sage":
                backend.require_depth()
            dds = _Episodes(cfg, backend, planner)
            start = time.monotonic()
            for seed in seeds:
                trips0, rejected0, stale0 = len(backend.trips), backend.stats.rejected, backend.stats.stale_actions
                ok, steps, kinds = dds.run(seed)
                results["DDS"].append(ok)
                hazards = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) or "none"
                print(f"  seed {seed}: direct {'ok' if results['direct'][len(results['DDS']) - 1] else 'fail'}, "
                      f"DDS {'ok' if ok else 'fail'} in {steps} steps; trips {len(backend.trips) - trips0}, rejected "
                      f"{backend.stats.rejected - rejected0}, dropped stale actions "
                      f"{backend.stats.stale_actions - stale0}; filter interventions: {hazards}", flush=True)
            dds_s = time.monotonic() - start
            rtt = LinkStats.percentiles(backend.stats.round_trips)
            period = LinkStats.percentiles(backend.stats.periods)
            trips = len(backend.trips)
            rejected = backend.stats.rejected
        finally:
            backend.close()

    who = "SAGE (expert as its executor)" if cfg.controller == "sage" else "G1 expert"
    table = new_table(f"{cfg.task}, {who}, {cfg.seeds} seeds ({seeds[0]}..{seeds[-1]}), {cfg.image_size} px, "
                      "speed 100%",
                      ("controller", "success", "Wilson 95%", "wall s"), left=("controller",))
    for name, wall in (("direct simulator", direct_s), ("DDS vs stand-in", dds_s)):
        outcomes = results["direct" if name.startswith("direct") else "DDS"]
        k = int(sum(outcomes))
        lo, hi = wilson_interval(k, len(outcomes))
        share = f"{k}/{len(outcomes)} ({100 * k / len(outcomes):.0f}%)"
        table.add_row(name, share, f"[{100 * lo:.0f}%, {100 * hi:.0f}%]", f"{wall:.0f}")
    link = new_table(f"DDS link (domain {domain_id}, loopback)", ("measure", "p50 ms", "p99 ms", "max ms", "n"),
                     left=("measure",))
    link.add_row("round trip (command sent -> state echoing it)", f"{1e3 * rtt['p50']:.1f}", f"{1e3 * rtt['p99']:.1f}",
                 f"{1e3 * rtt['max']:.1f}", str(rtt["n"]))
    link.add_row("command-loop period (nominal 20.0 ms)", f"{1e3 * period['p50']:.1f}", f"{1e3 * period['p99']:.1f}",
                 f"{1e3 * period['max']:.1f}", str(period["n"]))
    tables = [table, link]
    if cfg.controller == "sage":
        seen = new_table("SAGE perception, first frame of each episode: perceived vs the scene's object position",
                         ("camera frames", "objects seen", "mean cm", "max cm"), left=("camera frames",))
        for name, column in (("direct simulator (rendered depth)", direct), ("DDS (streamed 16-bit mm depth)", dds)):
            e = np.asarray(column.perception_errors)
            seen.add_row(name, str(len(e)), f"{100 * e.mean():.2f}" if len(e) else "-",
                         f"{100 * e.max():.2f}" if len(e) else "-")
        tables.append(seen)
    print_tables(*tables, width=140)
    print(f"watchdog trips: {trips}; rejected commands: {rejected}; p99 period / nominal = "
          f"{period['p99'] / 0.02:.2f}x; success difference DDS - direct = "
          f"{100 * (np.mean(results['DDS']) - np.mean(results['direct'])):+.0f} points")
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min) on {os.cpu_count()} CPUs: before the DDS column "
          f"{'/'.join(f'{x:.2f}' for x in load_before)}, after {'/'.join(f'{x:.2f}' for x in load_after)}; "
          f"SCHED_FIFO {cfg.realtime_priority or 'off'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(DdsBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
