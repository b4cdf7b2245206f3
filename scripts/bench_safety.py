#!/usr/bin/env python
"""Safety filter cost on one core, and what it does to the scripted expert.

    python scripts/bench_safety.py [--embodiments sage_humanoid unitree_g1] [--calls 2000]

Per embodiment: median microseconds for the FK check alone (both arms, one `mj_kinematics`), a
`filter` call on the expert's own commands (the normal case), on random joint-space jumps (rate
limits + workspace bisection: the worst case) and on NaN input (hold); then the scripted expert
through the filter on each task (seed 0): success and interventions per kind.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sage_gr00t.act.safety import SafetyFilter
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t_tasks import make_env
from sage_gr00t_tasks.base import ACTION_KEYS

# Offline Menagerie copy beside the repository for the Unitree G1 (as tests/conftest.py does).
_LOCAL_MENAGERIE = Path(__file__).resolve().parents[2] / "shared" / "menagerie"
if "MENAGERIE_ROOT" not in os.environ and _LOCAL_MENAGERIE.is_dir():
    os.environ["MENAGERIE_ROOT"] = str(_LOCAL_MENAGERIE)
os.environ.setdefault("MUJOCO_GL", "egl")


def median_us(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def expert_episode(env, filt: SafetyFilter | None, seed: int = 0) -> tuple[bool, list[dict], list[dict]]:
    """Run the expert (optionally through the filter); returns success, raw actions, states."""
    obs, _ = env.reset(seed=seed)
    policy = ExpertPolicy(env)
    policy.reset()
    if filt is not None:
        filt.reset(env.state())
    actions, states, success = [], [], False
    for _ in range(env.config.max_steps):
        action = {k: v[0] for k, v in policy.get_action(obs).items()}
        actions.append(action)
        states.append(env.state())
        obs, _, success, truncated, _ = env.step(filt.filter(action, env.state()).action if filt else action)
        if success or truncated:
            break
    return bool(success), actions, states


def bench_cost(emb: str, calls: int) -> tuple[float, float, float, float]:
    """Median us: FK check, filter on the expert's stream, on random jumps, on NaN."""
    env = make_env("pick_apple", image_height=64, image_width=64, embodiment=emb)
    filt = SafetyFilter(env.embodiment, env.action_ranges())
    _, actions, states = expert_episode(env, None)
    ranges = env.action_ranges()
    env.close()
    rng = np.random.default_rng(0)
    jumps = [{k: rng.uniform(*ranges[k].T) for k in ACTION_KEYS} for _ in range(64)]
    nan = {k: np.full(len(ranges[k]), np.nan) for k in ACTION_KEYS}
    start = states[0]
    home = {k: start["state." + k.removeprefix("action.")] for k in ACTION_KEYS}

    def stream(i: int, seq: list[dict]) -> None:
        if i % len(seq) == 0:
            filt.reset(start)
        filt.filter(seq[i % len(seq)], start)

    filt.reset(start)
    fk = median_us(lambda i: filt.ee_positions(home), calls)
    nominal = median_us(lambda i: stream(i, actions), calls)
    worst = median_us(lambda i: stream(i, jumps), calls)
    filt.reset(start)
    hold = median_us(lambda i: filt.filter(nan, start), calls)
    return fk, nominal, worst, hold


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embodiments", nargs="+", default=["sage_humanoid", "unitree_g1"])
    p.add_argument("--tasks", nargs="+", default=["pick_apple", "sort_blocks", "pour_water"])
    p.add_argument("--calls", type=int, default=2000)
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    cost = Table(title="Safety filter, median us per call (one core)")
    for col in ("embodiment", "FK check (2 arms)", "filter: expert stream", "filter: random jumps", "filter: NaN hold"):
        cost.add_column(col, justify="left" if col == "embodiment" else "right")
    effect = Table(title="Scripted expert through the filter (default limits, speed_scale 1.0, seed 0)")
    for col in ("embodiment", "task", "success without", "success with", "steps", "interventions"):
        effect.add_column(col, justify="left" if col in ("embodiment", "task", "interventions") else "right")

    for emb in args.embodiments:
        try:
            row = bench_cost(emb, args.calls)
        except FileNotFoundError as exc:
            print(f"skipping {emb}: {exc}")
            continue
        cost.add_row(emb, *(f"{us:.1f}" for us in row))
        for task in args.tasks:
            env = make_env(task, image_height=64, image_width=64, embodiment=emb)
            plain, _, _ = expert_episode(env, None)
            filt = SafetyFilter(env.embodiment, env.action_ranges())
            filtered, steps, _ = expert_episode(env, filt)
            counts = ", ".join(f"{k} {v}" for k, v in filt.stats.items() if v) or "none"
            effect.add_row(emb, task, str(plain), str(filtered), str(len(steps)), counts)
            env.close()

    console = Console(width=140)
    console.print(cost)
    console.print(effect)


if __name__ == "__main__":
    main()
