#!/usr/bin/env python
"""Latency of the compact GR00T-architecture policy on ONE CPU core, per 16-step action chunk.

    python scripts/bench_policy.py [--policy assets/policies/gr00t_compact] [--calls 50]

Breaks a `get_action` call into preprocessing (validation, resize, tokenize, normalize), the VL
backbone, and the action head's 4 Euler denoising steps. Target: <= 20 ms per chunk.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from sage_gr00t.paths import assets_dir
from sage_gr00t.policy.gr00t import count_parameters, load_policy
from sage_gr00t_tasks import make_env


def median_ms(fn, calls: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, default=assets_dir() / "policies" / "gr00t_compact")
    p.add_argument("--calls", type=int, default=50)
    args = p.parse_args()
    torch.set_num_threads(1)

    policy = load_policy(args.policy)
    env = make_env("pick_apple", embodiment=policy.embodiment)
    obs, _ = env.reset(seed=0)
    env.close()
    model, processor, meta = policy.model, policy.processor, policy.meta
    batch = processor.observation_batch(obs, meta, model)
    with torch.no_grad():
        features, mask = model.encode(batch)

    def preprocess() -> None:
        processor.observation_batch(obs, meta, model)

    def backbone() -> None:
        with torch.no_grad():
            model.encode(batch)

    def head() -> None:
        model.action_head.get_action(features, mask, batch["state"], batch["embodiment_id"])

    def full() -> None:
        policy.get_action(obs)

    rows = [("preprocess (validate, resize 224->128, tokenize)", median_ms(preprocess, args.calls)),
            ("VL backbone", median_ms(backbone, args.calls)),
            (f"action head ({model.config.action_head.num_inference_timesteps} denoising steps)",
             median_ms(head, args.calls)),
            ("full get_action (one 16-step chunk)", median_ms(full, args.calls))]
    table = Table(title=f"Compact GR00T policy, {count_parameters(model) / 1e6:.1f}M parameters, 1 CPU core, "
                        f"torch {torch.__version__}")
    table.add_column("stage")
    table.add_column("median ms", justify="right")
    for name, ms in rows:
        table.add_row(name, f"{ms:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
