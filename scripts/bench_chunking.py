#!/usr/bin/env python
"""Smoothness at action-chunk boundaries: mean squared jerk and success with each execution mode.

    python scripts/bench_chunking.py [--policy assets/policies/gr00t_compact] [--task pick_apple] [--episodes 20]

Runs the same seeds closed loop with `none` (execute 8 of 16 steps, then re-query: upstream's
behaviour), `blend` (cross-fade old/new chunk over 4 steps) and `ensemble` (ACT-style temporal
ensembling); the scripted expert (one-step chunks) is the reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sage_gr00t.act.chunking import MODES, ChunkExecutorConfig
from sage_gr00t.evaluation import run_episode, summarize
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.paths import assets_dir
from sage_gr00t.policy.gr00t import load_policy
from sage_gr00t_tasks import make_env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, default=assets_dir() / "policies" / "gr00t_compact")
    p.add_argument("--task", default="pick_apple")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed-start", type=int, default=2000)
    p.add_argument("--execute-steps", type=int, default=8)
    args = p.parse_args()

    env = make_env(args.task)
    seeds = range(args.seed_start, args.seed_start + args.episodes)
    rows = []
    expert = [run_episode(env, ExpertPolicy(env), s) for s in seeds]
    rows.append(("scripted expert (reference)", summarize(expert)))
    for mode in MODES:
        policy = load_policy(args.policy, embodiment=env.embodiment.name, seed=0)
        config = ChunkExecutorConfig(mode=mode, execute_steps=args.execute_steps)
        results = [run_episode(env, policy, s, chunking=config) for s in seeds]
        rows.append((f"GR00T compact, {mode}", summarize(results)))
    env.close()

    table = Table(title=f"Chunk execution on {args.task}, {args.episodes} seeds from {args.seed_start}, "
                        f"re-query every {args.execute_steps} steps")
    for col in ("executor", "success", "mean squared jerk (rad^2/s^6)", "jerk vs none"):
        table.add_column(col, justify="left" if col == "executor" else "right")
    none_jerk = next(s["arm_jerk"] for name, s in rows if name.endswith("none"))
    for name, summary in rows:
        table.add_row(name, f"{summary['success_rate']:.0%}", f"{summary['arm_jerk']:,.0f}",
                      f"{summary['arm_jerk'] / none_jerk:.2f}x" if np.isfinite(none_jerk) and none_jerk else "-")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
