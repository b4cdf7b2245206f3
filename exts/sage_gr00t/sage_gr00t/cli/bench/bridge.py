"""SAGE bridge overhead per control step on ONE CPU core: perceive / plan / act / learn.

    sage-bench bridge --seeds 5 --camera-every 4 1

Runs the real `SAGEGr00TBridge` with the shipped compact policy (assets/policies/gr00t_compact) and H-module
planner (assets/planner) closed loop on sort_blocks from one command, pinned to one
core (`os.sched_setaffinity`, `torch.set_num_threads(1)`). Overhead is the bridge's own work: the policy's inference
and the simulator's depth render are measured but excluded (`SAGEGr00TBridge.overhead_ms`). The planner runs
once per command; its call is reported per command and, amortized over the episode's steps, in the second
total, so "per step" never hides it. `--camera-every 1` is the camera on every control step (20 Hz); the
bridge's default is every 4th (5 Hz).

`--clock wall` is the bridge's own wall-clock timing; `--clock cpu` swaps the bridge's and L-module's clocks
for this thread's CPU time (`time.thread_time`), which leaves out time slices taken by other processes on a
shared core (it still counts cache misses caused by them). Both run by default.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from sage_gr00t.bench.process import pin_to_core
from sage_gr00t.cli._parsing import check, error, parse

if TYPE_CHECKING:
    from sage_gr00t.session import Session, SessionConfig

PROG = "sage-bench bridge"
TASK = "sort_blocks"
TARGET_MS = 2.0
Clock = Literal["wall", "cpu"]


@dataclass
class BridgeBenchConfig:
    """Per-stage bridge overhead on sort_blocks, one row per clock x camera rate."""

    seeds: int = 5  # episodes (held-out seeds from --seed-start)
    seed_start: int = 1000  # first seed (held out: demonstrations are collected from seed 0 up)
    camera_every: list[int] = field(default_factory=lambda: [4, 1])  # camera frame every k-th step; a row each
    # The session's policy and planner (SessionConfig's defaults; written out because importing SessionConfig
    # loads numpy and torch, whose threads must start after this process is pinned to its core).
    policy: str = "assets/policies/gr00t_compact"  # expert | checkpoint folder | zmq://HOST:PORT | upstream:CKPT
    planner: str = "assets/planner"  # H-module checkpoint folder
    command: str = "sort the blocks into the bins of the same colour"  # the user command of every episode
    core: int | None = None  # CPU core to pin to (None: the first allowed)
    clock: list[Clock] = field(default_factory=lambda: ["wall", "cpu"])  # wall: perf_counter; cpu: thread CPU time

    def __post_init__(self) -> None:
        check(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}.")
        check(bool(self.camera_every) and min(self.camera_every) >= 1,
              f"--camera-every needs one or more values >= 1, got {self.camera_every}.")
        check(bool(self.clock), "--clock needs wall, cpu or both.")
        check(bool(self.command.strip()), "--command must not be empty.")

    def session(self) -> SessionConfig:
        """The SAGE session every row runs (each row with its own `camera_every`)."""
        from sage_gr00t.session import SessionConfig

        return SessionConfig(task=TASK, policy=self.policy, planner=self.planner, device="cpu", controller="sage",
                             language_mode="command", camera_every=self.camera_every[0])


def use_clock(kind: str) -> Callable[[], float]:
    """Point the bridge's and L-module's timers at `kind`'s clock; returns that clock."""
    import sage_gr00t.act.lmodule as lmodule
    import sage_gr00t.bridge as bridge

    clock = time.perf_counter if kind == "wall" else time.thread_time
    for module in (bridge, lmodule):
        module.time = SimpleNamespace(perf_counter=clock) if kind == "cpu" else time
    return clock


def run_config(base: Session, camera_every: int, seeds: list[int], command: str,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """One row: a fresh bridge (`camera_every`) around the base session's env, policy and planner."""
    import torch

    from sage_gr00t.evaluation import run_bridge_episode
    from sage_gr00t.session import build_session

    env = base.env
    session = build_session(replace(base.config, camera_every=camera_every), env=env, policy=base.policy,
                            planner=base.planner)
    bridge = session.bridge
    planner_s: list[float] = []
    frame_s: list[float] = []  # perceive time on steps with a camera frame / without
    between_s: list[float] = []
    plan_method, step_method = bridge.plan, bridge.step

    def timed_plan() -> Any:
        t0 = clock()
        try:
            return plan_method()
        finally:
            planner_s.append(clock() - t0)

    def timed_step(obs: dict) -> dict:
        due = bridge.pipeline.camera_due()
        before = bridge.timing["perceive"]
        action = step_method(obs)
        (frame_s if due else between_s).append(bridge.timing["perceive"] - before)
        return action

    bridge.plan, bridge.step = timed_plan, timed_step
    render_s, successes, steps = 0.0, 0, 0
    policy0 = bridge.lmodule.policy.elapsed
    for seed in seeds:
        torch.manual_seed(seed)  # the policy's flow-matching noise
        result = run_bridge_episode(env, bridge, seed, command)
        render_s += bridge.camera.capture_s  # depth render (+ calibration) of this episode's camera frames
        successes += result.success
        steps += result.steps
    n = bridge.timed_steps
    over = bridge.overhead_ms()

    def ms(s: float) -> float:
        return 1e3 * s

    plan_step = over["plan"] - ms(sum(planner_s)) / n  # the stage's per-step work without the planner call
    steady = over["perceive"] + plan_step + over["act"] + over["learn"]
    return {
        "clock": "cpu" if clock is time.thread_time else "wall", "camera_every": camera_every,
        "episodes": len(seeds), "success": successes, "steps": steps,
        "perceive": over["perceive"], "perceive_frame": ms(sum(frame_s)) / max(len(frame_s), 1),
        "perceive_between": ms(sum(between_s)) / max(len(between_s), 1),
        "plan_step": plan_step, "act": over["act"], "learn": over["learn"], "steady": steady,
        "planner_calls": [ms(s) for s in planner_s], "total": over["total"],
        "render": ms(render_s) / n, "policy": ms(bridge.lmodule.policy.elapsed - policy0) / n,
    }


def run(cfg: BridgeBenchConfig) -> int:
    try:
        core = pin_to_core(cfg.core)  # before numpy / torch start their threads
    except ValueError as exc:
        return error(PROG, str(exc))
    import torch
    from rich.console import Console

    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.policy.factory import PolicySpecError
    from sage_gr00t.session import build_session

    torch.set_num_threads(1)
    console = Console(width=190)
    try:
        # Env, policy and planner for every row; each row builds its own bridge around them (run_config).
        base = build_session(cfg.session())
    except (PolicySpecError, FileNotFoundError) as exc:
        return error(PROG, str(exc))
    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.seeds))
    rows = []
    try:
        for kind in cfg.clock:
            clock = use_clock(kind)
            for k in cfg.camera_every:
                console.print(f"{kind} clock, camera every {k}: seeds {seeds[0]}..{seeds[-1]} ...")
                rows.append(run_config(base, k, seeds, cfg.command, clock))
    finally:
        use_clock("wall")
        base.close()

    cols = ["clock", "camera", "success", "steps", "perceive", "frame/between", "plan/step", "act", "learn",
            "TOTAL", "planner/command", "total+planner", f"< {TARGET_MS:g} ms", "(render)", "(policy)"]
    table = new_table(f"SAGE bridge overhead, ms per control step ({TASK}, core {core}, torch threads 1, "
                      f"seeds {seeds[0]}..{seeds[-1]}); policy inference and depth render excluded", cols,
                      left=("clock", "camera"))
    for r in rows:
        calls = r["planner_calls"]
        hz = 20.0 / r["camera_every"]
        table.add_row(
            r["clock"], f"{hz:g} Hz (1/{r['camera_every']})", f"{r['success']}/{r['episodes']}", str(r["steps"]),
            f"{r['perceive']:.2f}", f"{r['perceive_frame']:.2f}/{r['perceive_between']:.2f}",
            f"{r['plan_step']:.3f}", f"{r['act']:.2f}", f"{r['learn']:.2f}", f"{r['steady']:.2f}",
            f"{sum(calls) / len(calls):.0f} (max {max(calls):.0f})" if calls else "-",
            f"{r['total']:.2f}",
            "yes" if r["steady"] < TARGET_MS else "NO",
            f"{r['render']:.2f}", f"{r['policy']:.2f}",
        )
    print_tables(table, console=console)
    console.print("TOTAL = perceive + plan/step + act + learn (steady state, what '< 2 ms' judges); total+planner "
                  "adds the one-off planner call per command (ms, mean and max), amortized over the episode's steps. "
                  "frame/between: perceive on steps with / without a camera frame. (render): depth render per "
                  "step (simulator, excluded); (policy): policy inference per step (excluded). "
                  "wall: perf_counter; cpu: this thread's CPU time (other processes' time "
                  f"slices on the core left out). Load average at the end: {os.getloadavg()[0]:.1f} "
                  f"({os.cpu_count()} cores).")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(BridgeBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
