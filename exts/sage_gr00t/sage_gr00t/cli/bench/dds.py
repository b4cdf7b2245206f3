"""pick_apple with the G1 expert through DDS against the stand-in robot vs the same controller in the simulator.

    sage-bench dds --seeds 20

The controller is the same in both columns: expert policy -> chunk executor -> safety filter (100% speed) -> env.
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

from sage_gr00t.cli._parsing import check, parse

PROG = "sage-bench dds"


@dataclass
class DdsBenchConfig:
    """Success and link timing of the G1 expert through DDS vs the direct simulator."""

    seeds: int = 20  # episodes per column, seeds seed_start .. seed_start + seeds - 1
    seed_start: int = 0
    task: str = "pick_apple"
    max_steps: int = 300  # control steps per episode (20 Hz)
    image_size: int = 64  # camera frames (the expert does not look at them)
    domain_id: int = 0  # 0: a random id in 100..230
    realtime_priority: int = 0  # SCHED_FIFO priority for the link's loops (0: normal scheduling)

    def __post_init__(self) -> None:
        check(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}.")
        check(self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}.")
        check(0 <= self.domain_id <= 232, f"--domain-id must be in 0..232, got {self.domain_id}.")


def _controller(env: object) -> tuple[object, object]:
    from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig
    from sage_gr00t.experts.policy import ExpertPolicy

    safety = SafetyFilter(env.embodiment, env.action_ranges(),  # type: ignore[attr-defined]
                          SafetyFilterConfig(table_height=float(env.table_height)))  # type: ignore[attr-defined]
    return ExpertPolicy(env), safety  # type: ignore[arg-type]


def run(cfg: DdsBenchConfig) -> int:
    import numpy as np

    from sage_gr00t.bench.stats import wilson_interval
    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.robot.backend import LinkStats, RobotLinkConfig, UnitreeG1Backend
    from sage_gr00t.robot.protocol import run_controlled_episode
    from sage_gr00t.robot.standin import StandinProcess
    from sage_gr00t.sim.config import TaskConfig
    from sage_gr00t.tasks import make_env

    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.seeds))
    results: dict[str, list[bool]] = {"direct": [], "DDS": []}
    env = make_env(cfg.task, embodiment="unitree_g1", image_height=cfg.image_size, image_width=cfg.image_size,
                   max_steps=cfg.max_steps)
    policy, safety = _controller(env)
    start = time.monotonic()
    for seed in seeds:
        ok, *_ = run_controlled_episode(env, policy, safety, seed, cfg.max_steps)  # type: ignore[arg-type]
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
            policy, safety = _controller(backend)
            start = time.monotonic()
            for seed in seeds:
                trips0, rejected0, stale0 = len(backend.trips), backend.stats.rejected, backend.stats.stale_actions
                ok, steps, kinds, _ = run_controlled_episode(backend, policy, safety, seed,  # type: ignore[arg-type]
                                                             cfg.max_steps)
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

    table = new_table(f"{cfg.task}, G1 expert, {cfg.seeds} seeds ({seeds[0]}..{seeds[-1]}), speed 100%",
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
    print_tables(table, link, width=140)
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
