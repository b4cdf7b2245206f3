#!/usr/bin/env python
"""Benchmark the embedded simulator on ONE CPU core and print a table.

    python scripts/bench_sim.py [--embodiment sage_humanoid unitree_g1] [--task pick_apple ...]

Columns: raw physics steps/s (mj_step, 2 ms), ms per 224x224 ego-camera render (EGL/llvmpipe,
one rendering thread), and env steps/s at 20 Hz control with the ego camera (25 physics steps +
one render + observation assembly per step), timed while the scripted expert drives the robot
(expert/IK time excluded). Target for sage_humanoid: >= 100 env steps/s (5x real time).
"""

from __future__ import annotations

import os

# Pin to one core before any native library starts threads (llvmpipe honours LP_NUM_THREADS).
os.environ.setdefault("LP_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")  # headless; must precede the first mujoco import
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse
import time

import mujoco
from rich.console import Console
from rich.table import Table

from sage_gr00t.experts.scripted import ScriptedExpert
from sage_gr00t_tasks import TASKS, make_env


def bench(task: str, embodiment: str, physics_steps: int, renders: int, env_steps: int) -> dict[str, float]:
    env = make_env(task, embodiment=embodiment)
    obs, _ = env.reset(seed=0)

    data = mujoco.MjData(env.model)
    data.qpos[:] = env.data.qpos
    data.ctrl[:] = env.data.ctrl
    start = time.perf_counter()
    for _ in range(physics_steps):
        mujoco.mj_step(env.model, data)
    physics_rate = physics_steps / (time.perf_counter() - start)

    env.render_camera("ego_view", 224, 224)  # warm up the GL context
    start = time.perf_counter()
    for _ in range(renders):
        env.render_camera("ego_view", 224, 224)
    render_ms = 1000 * (time.perf_counter() - start) / renders

    expert = ScriptedExpert(env)
    stepped, step_time = 0, 0.0
    while stepped < env_steps:
        obs, _ = env.reset(seed=stepped)
        expert.reset()
        for _ in range(env.config.max_steps):
            action = expert.act(obs)
            t0 = time.perf_counter()
            obs, _, terminated, truncated, _ = env.step(action)
            step_time += time.perf_counter() - t0
            stepped += 1
            if terminated or truncated or stepped >= env_steps:
                break
    env.close()
    return {"physics": physics_rate, "render_ms": render_ms, "env": stepped / step_time}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embodiment", nargs="+", default=["sage_humanoid"])
    p.add_argument("--task", nargs="+", default=list(TASKS))
    p.add_argument("--physics-steps", type=int, default=5000)
    p.add_argument("--renders", type=int, default=200)
    p.add_argument("--env-steps", type=int, default=300)
    args = p.parse_args()

    table = Table(title=f"Embedded simulator, 1 CPU core (affinity {sorted(os.sched_getaffinity(0))})")
    for col in ("embodiment", "task", "physics steps/s", "ms / 224x224 render", "env steps/s @20 Hz + ego cam",
                "x real time"):
        table.add_column(col, justify="left" if col in ("embodiment", "task") else "right")
    for embodiment in args.embodiment:
        for task in args.task:
            r = bench(task, embodiment, args.physics_steps, args.renders, args.env_steps)
            table.add_row(embodiment, task, f"{r['physics']:,.0f}", f"{r['render_ms']:.2f}", f"{r['env']:.0f}",
                          f"{r['env'] / 20:.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
