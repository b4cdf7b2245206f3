#!/usr/bin/env python
"""Camera faults through the SAGE bridge, with and without trust: does trust keep the task working?

    python scripts/bench_faults.py --seeds 20 --fault-steps 60      # the camera fails for 3 s
    python scripts/bench_faults.py --seeds 20                       # ... and stays broken
    python scripts/bench_faults.py --seeds 20 --fault-at estimator  # only the object estimator's input

Closed loop on sort_blocks from one command ("sort the blocks into the bins of the same colour") with
the shipped compact policy and H-module planner, pinned to one core. At `--fault-step` a camera fault
(perceive/faults.py) is switched on for `--fault-steps` control steps or the rest of the episode.
`--fault-at camera` (default): the camera itself fails (`image_noise` on the pixels, `frozen` frames,
`dropout` = black images), so the policy's image AND the object estimator's input are corrupted.
`--fault-at estimator`: only the estimator's input is (`noise` on its estimates, `frozen`, `dropout`);
the policy keeps seeing the true image.
Each episode runs twice: WITH trust (the normal pipeline: trust-weighted fusion, and the robot holds
still while the camera is distrusted, `BridgeConfig.camera_hold_below`) and WITHOUT
(`BridgeConfig(use_trust=False)`: fusion treats every sensor as fully trusted, drops nothing, ignores
the trust engine's validity checks, and nothing holds the robot). Per fault x mode: task success (the
task's own predicate), control steps from the fault until the camera's trust falls below 0.3 (the trust
engine runs in both modes; only with trust does anything act on it), the mean fused object-position
error during the fault (ground truth used for scoring only), and the steps held. The L-module judges
subtask completion from these fused positions, so wrong ones end subtasks early (the plan finishes and
the robot holds still) or stall them until they fail.

`--stop sage` removes the simulator's success oracle: an episode runs until SAGE itself decides the
plan is over (every subtask judged done or failed; it then holds still) or the step limit, and success
is the task's predicate at that moment. A real robot has no oracle, so it must know when it is done;
the table then also counts episodes where SAGE reported "done" and the task really was done.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sage_gr00t.bridge import SAGEGr00TBridge

ROOT = Path(__file__).resolve().parents[1]
FAULTS = {  # per --fault-at: pixel noise is what a faulty camera gives; position noise, a confused detector
    "camera": ("none", "image_noise", "frozen", "dropout"),
    "estimator": ("none", "noise", "frozen", "dropout"),
}
TRUST_LOW = 0.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20, help="episodes per fault and mode (held-out seeds; 20: ~6-8 min)")
    p.add_argument("--seed-start", type=int, default=1000)
    p.add_argument("--fault-at", choices=tuple(FAULTS), default="camera",
                   help="camera: the camera itself fails, so the policy's image is corrupted too; estimator: "
                        "only the object estimator's input is, the policy sees the true image")
    p.add_argument("--faults", nargs="+", default=None, choices=sorted({k for kinds in FAULTS.values() for k in kinds}),
                   help="default: none + the three faults of --fault-at")
    p.add_argument("--fault-step", type=int, default=40, help="control step at which the fault starts")
    p.add_argument("--fault-steps", type=int, default=0,
                   help="control steps the fault lasts (0: to the end of the episode)")
    p.add_argument("--policy", type=Path, default=ROOT / "assets/policies/gr00t_compact")
    p.add_argument("--planner", type=Path, default=ROOT / "assets/planner")
    p.add_argument("--command", default="sort the blocks into the bins of the same colour")
    p.add_argument("--language-mode", default="command", choices=("command", "subtask"),
                   help="language the policy gets: the whole command, or the L-module's current subtask")
    p.add_argument("--stop", choices=("oracle", "sage"), default="oracle",
                   help="end an episode at the simulator's success (oracle) or when SAGE's plan is over (sage)")
    p.add_argument("--core", type=int, default=None, help="CPU core to pin to (default: the first allowed)")
    p.add_argument("--json", type=Path, default=ROOT / "outputs/bench_faults.json")
    return p.parse_args(argv)


def run_episode(env, bridge: SAGEGr00TBridge, seed: int, command: str, fault: str, fault_step: int,
                stop: str = "oracle",
                fault_at: str = "camera", fault_steps: int = 0) -> dict:
    import torch

    from sage_gr00t.perceive.faults import FaultConfig, FaultyCamera

    torch.manual_seed(seed)
    bridge.policy.seed(seed)  # the policy's flow-matching noise: the same in both modes (paired comparison)
    obs, info = env.reset(seed=seed)
    bridge.reset(obs, meta={"seed": seed, "fault": fault})
    camera = FaultyCamera(bridge.camera, FaultConfig(
        seed=seed, duration=fault_steps or None, reaches_policy=fault_at == "camera"))
    bridge.pipeline.camera = camera
    bridge.command(command)
    names = env.object_body_names()
    errors: list[float] = []
    idle_steps, held_steps, success, step = 0, 0, bool(info["success"]), 0
    blind_travel, hands = 0.0, None  # how far the hands moved while the fault was on (moving on bad data)
    while step < env.config.max_steps:
        if step == fault_step and fault != "none":
            camera.set_fault(fault)
        faulty = camera.active
        action = bridge.step(camera.corrupt_observation(obs))  # unchanged unless the fault reaches the policy
        held_steps += bridge.camera_hold
        now = np.concatenate(list(bridge.pipeline.proprio.last.ee.values()))
        if faulty and hands is not None:
            blind_travel += float(np.linalg.norm((now - hands).reshape(-1, 3), axis=1).sum())
        hands = now
        if step >= fault_step:
            fused = bridge.pipeline.fused  # scored against ground truth (scoring only)
            err = [float(np.linalg.norm(fused[o].position - env.body_pos(o))) for o in names if o in fused]
            errors.append(float(np.mean(err)) if err else float("nan"))
            idle_steps += not bridge.active and not success
        obs, _, terminated, truncated, info = env.step(action)
        step += 1
        success = bool(info["success"])
        if truncated or (terminated and stop == "oracle"):
            break
        if stop == "sage" and bridge.plan_result is not None and not bridge.active:
            break  # SAGE judged its plan over and holds still: the outcome is what the world shows now
    bridge.end_episode(success)
    trust = bridge.trust.series("camera")[fault_step:]
    below = np.flatnonzero(trust < TRUST_LOW)
    return {
        "seed": seed, "fault": fault, "success": success, "steps": step,
        "trust_low_after": int(below[0]) + 1 if fault != "none" and below.size else None,
        "fused_error": float(np.nanmean(errors)) if errors else float("nan"),
        "done": len(bridge.completed), "failed": len(bridge.failed), "idle_after_fault": idle_steps,
        "held_steps": held_steps, "blind_travel": blind_travel,
        "off_table": sum(env.body_pos(o)[2] < env.table_height - 0.05 for o in names),
        "ended_early": idle_steps > 0 and not success,
        "message": bridge.message,
        "reported_done": bridge.message == "done",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    core = min(os.sched_getaffinity(0)) if args.core is None else args.core
    os.sched_setaffinity(0, {core})
    import torch
    from rich.console import Console
    from rich.table import Table

    import sage_gr00t  # noqa: F401  (MUJOCO_GL=egl before mujoco)
    from sage_gr00t.act.chunking import ChunkExecutorConfig
    from sage_gr00t.act.lmodule import LModuleConfig
    from sage_gr00t.bridge import BridgeConfig, SAGEGr00TBridge
    from sage_gr00t.plan.planner import HModulePlanner
    from sage_gr00t.policy.gr00t import load_policy
    from sage_gr00t_tasks import make_env

    torch.set_num_threads(1)
    console = Console(width=150)
    env = make_env("sort_blocks")
    policy = load_policy(args.policy, embodiment=env.embodiment.name, device="cpu")
    planner = HModulePlanner.load(args.planner, device="cpu")
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    faults = args.faults or list(FAULTS[args.fault_at])
    bridges = {
        mode: SAGEGr00TBridge(policy, env, planner, BridgeConfig(
            lmodule=LModuleConfig(language_mode=args.language_mode, chunking=ChunkExecutorConfig()),
            use_trust=mode == "trust"))
        for mode in ("trust", "no trust")
    }
    results: list[dict] = []
    start = time.perf_counter()
    for fault in faults:
        for mode, bridge in bridges.items():
            for seed in seeds:
                r = run_episode(env, bridge, seed, args.command, fault, args.fault_step, args.stop,
                                args.fault_at, args.fault_steps)
                r["mode"] = mode
                results.append(r)
                console.print(f"[{time.perf_counter() - start:6.0f} s] {fault:8s} {mode:8s} seed {seed}: "
                              f"{'success' if r['success'] else 'FAIL   '} in {r['steps']} steps, trust<0.3 after "
                              f"{r['trust_low_after']}, fused error {r['fused_error']:.3f} m, subtasks done "
                              f"{r['done']} failed {r['failed']}, held {r['held_steps']}; "
                              f"{r['message']}", highlight=False, markup=False)
    env.close()

    span = f"for {args.fault_steps} steps" if args.fault_steps else "to the end"
    table = Table(title=f"sort_blocks through the SAGE bridge, {args.fault_at} fault from step {args.fault_step} "
                        f"{span} "
                        f"(seeds {seeds[0]}..{seeds[-1]}, core {core}, episodes end: {args.stop})")
    for c in ("fault", "fusion", "success", "SAGE said done, and it was", f"steps to trust < {TRUST_LOW}",
              "fused error during fault (m)", "subtasks done / failed", "plan ended, task not done",
              "steps held (camera distrusted)", "hand travel during fault (m)", "objects off the table"):
        table.add_column(c, justify="left" if c in ("fault", "fusion") else "right")
    for fault in faults:
        for mode in bridges:
            rs = [r for r in results if r["fault"] == fault and r["mode"] == mode]
            lows = [r["trust_low_after"] for r in rs if r["trust_low_after"] is not None]
            if fault == "none":
                low = "-"
            elif lows:
                never = len(rs) - len(lows)
                low = f"{np.mean(lows):.1f} (max {max(lows)})" + (f", never {never}" if never else "")
            else:
                low = "never"
            table.add_row(
                fault, mode, f"{sum(r['success'] for r in rs)}/{len(rs)}",
                f"{sum(r['success'] and r['reported_done'] for r in rs)}/{len(rs)}", low,
                f"{np.nanmean([r['fused_error'] for r in rs]):.3f}",
                f"{sum(r['done'] for r in rs)} / {sum(r['failed'] for r in rs)}",
                f"{sum(r['ended_early'] for r in rs)} episodes",
                f"{np.mean([r['held_steps'] for r in rs]):.0f}",
                f"{np.mean([r['blind_travel'] for r in rs]):.2f}",
                f"{sum(r['off_table'] for r in rs)}",
            )
    console.print(table)
    console.print("fused error: mean over objects and over the steps from the fault start (for 'none': from the "
                  "same step); plan ended: the L-module judged every subtask finished (or failed) from perceived "
                  "state while the task was not done, so the bridge held the robot still.",
                  highlight=False)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"fault_at": args.fault_at, "fault_step": args.fault_step, "fault_steps": args.fault_steps,
            "stop": args.stop, "language_mode": args.language_mode, "seeds": seeds}
    args.json.write_text(json.dumps({**meta, "results": results}, indent=1))
    console.print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
