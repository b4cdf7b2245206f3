"""Smoothness at action-chunk boundaries under inference delay: success and jerk for every chunk execution mode.

    sage-bench chunking --policy assets/policies/gr00t_compact --task pick_apple sort_blocks --episodes 20 --workers 16

Runs the same seeds closed loop for every mode (`none`: execute the chunk, re-query every `--execute-steps`;
`blend`: cross-fade old/new chunk over 4 steps; `ensemble`: ACT-style temporal ensembling; `rtc`: real-time
chunking, the next chunk inpainted toward the current one by guided flow-matching denoising) at every
inference delay in `--delays` (control steps; 20 Hz: 0, 2, 4, 8 steps = 0, 100, 200, 400 ms; simulated:
inference starts on the observation of step t and its chunk is used from step t + d, index d). The policy's
flow-matching noise is seeded per episode (the seed), so results do not depend on which worker ran what.

Columns: success k/n with its Wilson 95% interval; boundary jerk: mean squared jerk (rad^2/s^6) of the arm
joint targets over the jerk samples centred within 2 steps of each switch to a newly arrived chunk
(`sage_gr00t.act.chunking.boundary_jerk`, pooled over episodes); overall jerk: per-episode mean squared jerk
of the whole trajectory, averaged. The scripted expert (one-step chunks) is the reference. At delay 0 `rtc`
is `none` with guidance toward the old chunk's overlap.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

from sage_gr00t.bench.stats import wilson_interval
from sage_gr00t.cli._parsing import check, error, parse

PROG = "sage-bench chunking"
ALL_MODES = ("none", "blend", "ensemble", "rtc")  # sage_gr00t.act.chunking.MODES (spelled here: no numpy import)
RTC_IDENTITY = "rtc_identity"  # rtc with the Jacobian taken as the identity (ChunkExecutorConfig.rtc_guidance)
EXPERT = "expert"


@dataclass
class ChunkingBenchConfig:
    """One policy on the same seeds under every chunk execution mode and inference delay, and the scripted expert."""

    policy: str = "assets/policies/gr00t_compact"  # expert | checkpoint folder | zmq://HOST:PORT | upstream:CKPT
    task: list[str] = field(default_factory=lambda: ["pick_apple", "sort_blocks"])  # task names, or all
    modes: list[str] = field(default_factory=lambda: [*ALL_MODES, RTC_IDENTITY])  # chunk execution modes
    delays: list[int] = field(default_factory=lambda: [0, 2, 4, 8])  # inference delays in control steps
    episodes: int = 20  # seeds per task, mode and delay
    seed_start: int = 2000  # first seed (held out from the demonstrations' 0, 1, ...)
    execute_steps: int = 8  # steps between queries (each chunk contributes this many actions)
    workers: int = 1  # episodes run in this many processes (spawned, one torch/OpenMP thread each)
    expert: bool = True  # also run the scripted expert (reference row per task)
    out: str | None = None  # write every episode's result as JSON here

    def __post_init__(self) -> None:
        from sage_gr00t.cli.bench._common import resolve_tasks  # here: the registry loads mujoco

        self.task = resolve_tasks(self.task)  # UnknownTaskError (a ValueError) lists the installed tasks
        bad = [m for m in self.modes if m not in (*ALL_MODES, RTC_IDENTITY)]
        check(not bad and bool(self.modes),
              f"--modes must be some of {[*ALL_MODES, RTC_IDENTITY]}, got {self.modes}.")
        check(bool(self.delays) and all(d >= 0 for d in self.delays), f"--delays must be >= 0, got {self.delays}.")
        check(self.episodes >= 1, f"--episodes must be >= 1, got {self.episodes}.")
        check(self.execute_steps >= 1, f"--execute-steps must be >= 1, got {self.execute_steps}.")
        check(max(self.delays) <= self.execute_steps,
              f"--delays must be <= --execute-steps ({self.execute_steps}), got {self.delays}.")
        check(self.workers >= 1, f"--workers must be >= 1, got {self.workers}.")


# ---------------------------------------------------------------------------------------------- workers
_CACHE: dict = {}


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    torch.set_num_threads(1)


def _resources(spec: str, task: str, expert: bool):
    from sage_gr00t.policy.factory import make_policy
    from sage_gr00t.tasks import make_env

    if task not in _CACHE:
        _CACHE[task] = make_env(task)
    env = _CACHE[task]
    key = (EXPERT if expert else spec, task)
    if key not in _CACHE:
        _CACHE[key] = make_policy(EXPERT, env) if expert else make_policy(spec, env, "cpu")
    return env, _CACHE[key]


def run_job(job: tuple[str, str, str, int, int, int]) -> dict:
    """One episode: (policy spec, task, mode or 'expert', delay, execute steps, seed) -> result dict."""
    import numpy as np

    from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, boundary_jerk
    from sage_gr00t.evaluation import rollout
    from sage_gr00t.modality import ARM_GROUPS, action_key

    spec, task, mode, delay, execute_steps, seed = job
    result = {"task": task, "mode": mode, "delay": delay, "seed": seed}
    try:
        env, policy = _resources(spec, task, mode == EXPERT)
        config = (ChunkExecutorConfig() if mode == EXPERT else
                  ChunkExecutorConfig(mode="rtc" if mode == RTC_IDENTITY else mode, execute_steps=execute_steps,
                                      delay_steps=delay, rtc_guidance="identity" if mode == RTC_IDENTITY else "vjp"))
        executor = ChunkExecutor(policy, config)
        if hasattr(policy, "seed"):
            policy.seed(seed)  # the same flow-matching noise for this seed whichever worker runs it
        obs, info = env.reset(seed=seed)
        executor.reset()
        arm: list[np.ndarray] = []

        def act(o: dict) -> dict:
            action = executor.act(o)
            arm.append(np.concatenate([action[action_key(g)] for g in ARM_GROUPS]))
            return action

        success, steps, wall_s, jerk = rollout(env, act, obs, info, env.config.max_steps, None, True)
        dt = 1.0 / env.config.control_hz
        jerk_sum, jerk_count = boundary_jerk(np.array(arm), dt, executor.switch_steps)
        result.update(success=bool(success), steps=steps, wall_s=wall_s, jerk=jerk, boundary_sum=jerk_sum,
                      boundary_count=jerk_count, queries=executor.queries, switches=len(executor.switch_steps))
    except Exception as exc:
        result.update(error=f"{type(exc).__name__}: {exc}")
    return result


def summarize_group(results: list[dict]) -> dict:
    ok = [r for r in results if "error" not in r]
    k = sum(r["success"] for r in ok)
    n = len(results)
    count = sum(r["boundary_count"] for r in ok)
    return {
        "k": k, "n": n, "errors": n - len(ok), "wilson": wilson_interval(k, n),
        "boundary_jerk": sum(r["boundary_sum"] for r in ok) / count if count else float("nan"),
        "jerk": sum(r["jerk"] for r in ok) / len(ok) if ok else float("nan"),
        "steps": sum(r["steps"] for r in ok) / len(ok) if ok else float("nan"),
    }


# ---------------------------------------------------------------------------------------------- run
def jobs_for(cfg: ChunkingBenchConfig) -> list[tuple[str, str, str, int, int, int]]:
    seeds = range(cfg.seed_start, cfg.seed_start + cfg.episodes)
    jobs = []
    for task in cfg.task:
        if cfg.expert:
            jobs += [(cfg.policy, task, EXPERT, 0, cfg.execute_steps, s) for s in seeds]
        jobs += [(cfg.policy, task, mode, d, cfg.execute_steps, s) for d in cfg.delays for mode in cfg.modes
                 for s in seeds]
    return jobs


def _execute(jobs: list, workers: int) -> list[dict]:
    results = []
    if workers == 1:
        _init_worker()
        iterator = map(run_job, jobs)
        pool = None
    else:
        import multiprocessing

        os.environ["OMP_NUM_THREADS"] = "1"  # children read it when torch loads
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
        iterator = pool.imap_unordered(run_job, jobs, chunksize=1)
    try:
        for i, result in enumerate(iterator, 1):
            results.append(result)
            if "error" in result:
                print(f"{PROG}: episode {result['task']} {result['mode']} d={result['delay']} seed={result['seed']} "
                      f"failed: {result['error']}", file=sys.stderr)
            if i % max(1, len(jobs) // 20) == 0 or i == len(jobs):
                print(f"[{i}/{len(jobs)} episodes]", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return results


def run(cfg: ChunkingBenchConfig) -> int:
    from sage_gr00t.policy.factory import PolicySpec, PolicySpecError

    try:
        PolicySpec.parse(cfg.policy)
    except PolicySpecError as exc:
        return error(PROG, str(exc))
    results = _execute(jobs_for(cfg), cfg.workers)
    if cfg.out:
        import json
        from pathlib import Path

        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps({"config": vars(cfg), "episodes": results}, indent=1))
    print_table(cfg, results)
    return 1 if any("error" in r for r in results) else 0


def print_table(cfg: ChunkingBenchConfig, results: list[dict]) -> None:
    from sage_gr00t.bench.tables import new_table, print_tables

    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["task"], r["mode"], r["delay"]), []).append(r)
    table = new_table(f"Chunk execution with inference delay: {cfg.policy}, {cfg.episodes} seeds from "
                      f"{cfg.seed_start}, a query every {cfg.execute_steps} steps, 20 Hz",
                      ("task", "mode", "delay", "success", "95% CI", "boundary jerk", "vs none", "overall jerk",
                       "steps"), left=("task", "mode"))
    for task in cfg.task:
        rows = [(EXPERT, 0)] if cfg.expert else []
        rows += [(m, d) for d in cfg.delays for m in cfg.modes]
        for mode, delay in rows:
            if (task, mode, delay) not in groups:
                continue
            s = summarize_group(groups[(task, mode, delay)])
            none = groups.get((task, "none", delay))
            ref = summarize_group(none)["boundary_jerk"] if none else float("nan")
            ratio = s["boundary_jerk"] / ref if math.isfinite(ref) and ref > 0 and mode != EXPERT else float("nan")
            lo, hi = s["wilson"]
            errors = f" ({s['errors']} errors)" if s["errors"] else ""
            table.add_row(task, mode, "-" if mode == EXPERT else f"{delay} ({delay * 50} ms)",
                          f"{s['k']}/{s['n']}{errors}", f"{lo:.0%}-{hi:.0%}", f"{s['boundary_jerk']:,.0f}",
                          f"{ratio:.2f}x" if math.isfinite(ratio) else "-", f"{s['jerk']:,.0f}", f"{s['steps']:.0f}")
    print_tables(table, width=140)


def main(argv: list[str] | None = None) -> int:
    return run(parse(ChunkingBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
