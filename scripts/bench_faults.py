#!/usr/bin/env python
"""Camera faults through the SAGE bridge, with and without trust: does trust keep the task working?

    python scripts/bench_faults.py --seeds 20 --fault-steps 60      # the camera fails for 3 s (~25 min)
    python scripts/bench_faults.py --seeds 20 --fault-step 40       # ... once, reaching for the first block
    python scripts/bench_faults.py --seeds 20                       # ... and stays broken
    python scripts/bench_faults.py --seeds 20 --fault-at estimator  # only the object estimator's input

Closed loop on sort_blocks from one command ("sort the blocks into the bins of the same colour") with
the shipped compact policy and H-module planner, pinned to one core. At `--fault-step` a camera fault
(perceive/faults.py) is switched on for `--fault-steps` control steps or the rest of the episode; by
default once in each phase of the task (reaching for the first block, carrying it, the second block),
because what a fault costs depends on what the robot is doing when it strikes.
`--fault-at camera` (default): the camera itself fails (`image_noise` on the pixels, `frozen` frames,
`dropout` = black images), so the policy's image AND the object estimator's input are corrupted.
`--fault-at estimator`: only the estimator's input is (`noise` on its estimates, `frozen`, `dropout`);
the policy keeps seeing the true image.
Each episode runs twice: WITH trust (the normal pipeline: trust-weighted fusion, and the robot holds
still on missing or black images and while frozen ones are distrusted, `BridgeConfig.camera_hold_below`)
and WITHOUT
(`BridgeConfig(use_trust=False)`: fusion treats every sensor as fully trusted, drops nothing, ignores
the trust engine's validity checks, and nothing holds the robot). Per fault x mode: task success (the
task's own predicate), control steps from the fault until the camera's trust falls below 0.3 (the trust
engine runs in both modes; only with trust does anything act on it), the mean fused object-position
error during the fault (ground truth used for scoring only), and the steps held. The L-module judges
subtask completion from these fused positions, so wrong ones end subtasks early (the plan finishes and
the robot holds still) or stall them until they fail. Both modes see the same seeds and the same policy
noise, so the comparison is paired: the table counts the episodes only one mode solved and gives the
exact McNemar p-value (a sign test over those).

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
    from sage_gr00t.perceive.faults import FaultyCamera

ROOT = Path(__file__).resolve().parents[1]
FAULTS = {  # per --fault-at: pixel noise is what a faulty camera gives; position noise, a confused detector
    "camera": ("none", "image_noise", "frozen", "dropout"),
    "estimator": ("none", "noise", "frozen", "dropout"),
}
TRUST_LOW = 0.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20,
                   help="episodes per fault, phase and mode (held-out seeds; 20: ~25 min with the defaults)")
    p.add_argument("--seed-start", type=int, default=1000)
    p.add_argument("--fault-at", choices=tuple(FAULTS), default="camera",
                   help="camera: the camera itself fails, so the policy's image is corrupted too; estimator: "
                        "only the object estimator's input is, the policy sees the true image")
    p.add_argument("--faults", nargs="+", default=None, choices=sorted({k for kinds in FAULTS.values() for k in kinds}),
                   help="default: none + the three faults of --fault-at")
    p.add_argument("--fault-step", type=int, nargs="+", default=[40, 70, 100],
                   help="control steps at which the fault starts, one run each (the task's phases: reaching "
                        "for the first block, carrying it, the second block; a clean episode takes ~140)")
    p.add_argument("--fault-steps", type=int, default=0,
                   help="control steps the fault lasts (0: to the end of the episode)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="episode step limit (default: the task's, 400); with a long outage, add its length so the "
                        "robot keeps its usual working time")
    p.add_argument("--policy", type=Path, default=ROOT / "assets/policies/gr00t_compact")
    p.add_argument("--planner", type=Path, default=ROOT / "assets/planner")
    p.add_argument("--command", default="sort the blocks into the bins of the same colour")
    p.add_argument("--language-mode", default="command", choices=("command", "subtask"),
                   help="language the policy gets: the whole command, or the L-module's current subtask")
    p.add_argument("--stop", choices=("oracle", "sage"), default="oracle",
                   help="end an episode at the simulator's success (oracle) or when SAGE's plan is over (sage)")
    p.add_argument("--core", type=int, default=None, help="CPU core to pin to (default: the first allowed)")
    p.add_argument("--json", type=Path, default=ROOT / "outputs/bench_faults.json")
    p.add_argument("--tabulate", type=Path, nargs="+", default=None,
                   help="print one table of these saved --json results (runs of the same settings split over "
                        "cores, e.g. by --faults) instead of running")
    return p.parse_args(argv)


class FaultedSteps:
    """The controller of one faulted episode: `act(obs)` switches the fault on at `fault_step`, hands the
    bridge the observation as the (possibly faulty) camera delivers it, and measures the step."""

    def __init__(self, env, bridge: SAGEGr00TBridge, camera: FaultyCamera, fault: str, fault_step: int) -> None:
        self.env, self.bridge, self.camera = env, bridge, camera
        self.fault, self.fault_step = fault, fault_step
        self.names = env.object_body_names()
        self.step = 0
        self.errors: list[float] = []
        self.held_steps = 0
        self.blind_travel = 0.0  # how far the hands moved while the fault was on (moving on bad data)
        self._hands: np.ndarray | None = None

    def act(self, obs: dict) -> dict:
        bridge = self.bridge
        if self.step == self.fault_step and self.fault != "none":
            self.camera.set_fault(self.fault)
        faulty = self.camera.active
        action = bridge.step(self.camera.corrupt_observation(obs))  # unchanged unless it reaches the policy
        self.held_steps += bridge.camera_hold
        hands = np.concatenate(list(bridge.pipeline.proprio.last.ee.values()))
        if faulty and self._hands is not None:
            self.blind_travel += float(np.linalg.norm((hands - self._hands).reshape(-1, 3), axis=1).sum())
        self._hands = hands
        if self.step >= self.fault_step:
            fused = bridge.pipeline.fused  # scored against ground truth (scoring only)
            err = [float(np.linalg.norm(fused[o].position - self.env.body_pos(o))) for o in self.names if o in fused]
            self.errors.append(float(np.mean(err)) if err else float("nan"))
        self.step += 1
        return action


def run_episode(env, bridge: SAGEGr00TBridge, seed: int, command: str, fault: str, fault_step: int,
                stop: str = "oracle", fault_at: str = "camera", fault_steps: int = 0) -> dict:
    import torch

    from sage_gr00t.evaluation import rollout
    from sage_gr00t.perceive.faults import FaultConfig, FaultyCamera

    torch.manual_seed(seed)
    bridge.policy.seed(seed)  # the policy's flow-matching noise: the same in both modes (paired comparison)
    obs, info = env.reset(seed=seed)
    bridge.reset(obs, meta={"seed": seed, "fault": fault})
    camera = FaultyCamera(bridge.camera, FaultConfig(
        seed=seed, duration=fault_steps or None, reaches_policy=fault_at == "camera"))
    bridge.pipeline.camera = camera
    bridge.command(command)
    run = FaultedSteps(env, bridge, camera, fault, fault_step)
    success, steps, _, _ = rollout(env, run.act, obs, info, env.config.max_steps, None, stop == "oracle",
                                   finished=lambda: stop == "sage" and bridge.plan_result is not None
                                   and not bridge.active)  # SAGE judged its plan over and holds still
    bridge.end_episode(success)
    trust = bridge.trust.series("camera")[fault_step:]
    below = np.flatnonzero(trust < TRUST_LOW)
    names = run.names
    return {
        "seed": seed, "fault": fault, "fault_step": fault_step, "success": success, "steps": steps,
        "trust_low_after": int(below[0]) + 1 if fault != "none" and below.size else None,
        "fused_error": float(np.nanmean(run.errors)) if run.errors else float("nan"),
        "done": len(bridge.completed), "failed": len(bridge.failed),
        "held_steps": run.held_steps, "blind_travel": run.blind_travel,
        "off_table": int(sum(env.body_pos(o)[2] < env.table_height - 0.05 for o in names)),
        # SAGE judged every subtask finished (or failed) from perceived state and holds still
        "ended_early": not success and bridge.plan_result is not None and not bridge.active,
        "message": bridge.message,
        "reported_done": bridge.message == "done",
    }


def paired(rs_trust: list[dict], rs_blind: list[dict]) -> tuple[int, int, float]:
    """Episodes only one mode solved (same seed, fault and phase): (trust only, no-trust only, exact
    two-sided McNemar p-value, i.e. a sign test over those discordant pairs)."""
    from scipy.stats import binomtest

    def key(r: dict) -> tuple:
        return r["seed"], r["fault"], r["fault_step"]

    blind = {key(r): r["success"] for r in rs_blind}
    trust_only = sum(r["success"] and not blind[key(r)] for r in rs_trust)
    blind_only = sum(not r["success"] and blind[key(r)] for r in rs_trust)
    n = trust_only + blind_only
    return trust_only, blind_only, float(binomtest(trust_only, n).pvalue) if n else 1.0


def results_table(results: list[dict], meta: dict):
    """One row per fault x phase x mode, and the fault's phases pooled; `meta`: the run's settings."""
    from rich.table import Table

    faults = list(dict.fromkeys(r["fault"] for r in results))
    modes = list(dict.fromkeys(r["mode"] for r in results))
    seeds = meta["seeds"]
    span = f"for {meta['fault_steps']} steps" if meta["fault_steps"] else "to the end"
    table = Table(title=f"sort_blocks through the SAGE bridge, {meta['fault_at']} fault {span} from step "
                        f"{', '.join(map(str, meta['fault_steps_at']))} (seeds {seeds[0]}..{seeds[-1]}, core "
                        f"{meta['core']}, episodes end: {meta['stop']} or step {meta.get('max_steps', 400)}, policy "
                        f"given the {meta['language_mode']})")
    for c in ("fault", "from step", "fusion", "success", "paired: only trust / only no trust (p)",
              "SAGE said done, and it was", f"steps to trust < {TRUST_LOW}", "fused error during fault (m)",
              "subtasks done / failed", "plan ended, task not done", "steps held (camera distrusted)",
              "hand travel during fault (m)", "objects off the table"):
        table.add_column(c, justify="left" if c in ("fault", "fusion") else "right")
    sections = []
    for fault in faults:
        phases = sorted({r["fault_step"] for r in results if r["fault"] == fault})
        groups = [(str(p), [r for r in results if r["fault"] == fault and r["fault_step"] == p]) for p in phases]
        if len(phases) > 1:
            groups.append(("all phases", [r for r in results if r["fault"] == fault]))
        sections.append((fault, groups))
    faulty = [r for r in results if r["fault"] != "none"]
    if len({r["fault"] for r in faulty}) > 1:
        sections.append(("all faults", [("all phases", faulty)]))
    for fault, groups in sections:
        for phase, group in groups:
            for mode in modes:
                rs = [r for r in group if r["mode"] == mode]
                lows = [r["trust_low_after"] for r in rs if r["trust_low_after"] is not None]
                if fault == "none":
                    low = "-"
                elif lows:
                    never = len(rs) - len(lows)
                    low = f"{np.mean(lows):.1f} (max {max(lows)})" + (f", never {never}" if never else "")
                else:
                    low = "never"
                if mode == modes[0] and len(modes) == 2:
                    only_trust, only_blind, pvalue = paired(rs, [r for r in group if r["mode"] == modes[1]])
                    pairs = f"{only_trust} / {only_blind} (p={pvalue:.2g})"
                else:
                    pairs = ""
                table.add_row(
                    fault, phase, mode, f"{sum(r['success'] for r in rs)}/{len(rs)}", pairs,
                    f"{sum(r['success'] and r['reported_done'] for r in rs)}/{len(rs)}", low,
                    f"{np.nanmean([r['fused_error'] for r in rs]):.3f}",
                    f"{sum(r['done'] for r in rs)} / {sum(r['failed'] for r in rs)}",
                    f"{sum(r['ended_early'] for r in rs)} episodes",
                    f"{np.mean([r['held_steps'] for r in rs]):.0f}",
                    f"{np.mean([r['blind_travel'] for r in rs]):.2f}",
                    f"{sum(r['off_table'] for r in rs)}",
                    end_section=mode == modes[-1],
                )
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tabulate:  # runs split over several processes (one per core): one table of them all
        from rich.console import Console

        runs = [json.loads(p.read_text()) for p in args.tabulate]
        meta = {k: v for k, v in runs[0].items() if k != "results"}
        meta["core"] = ", ".join(str(r.get("core")) for r in runs)
        meta["seeds"] = sorted({seed for r in runs for seed in r["seeds"]})
        print_report(Console(width=200), [r for run in runs for r in run["results"]], meta)
        return 0
    core = min(os.sched_getaffinity(0)) if args.core is None else args.core
    os.sched_setaffinity(0, {core})
    import torch
    from rich.console import Console

    import sage_gr00t  # noqa: F401  (MUJOCO_GL=egl before mujoco)
    from sage_gr00t.act.chunking import ChunkExecutorConfig
    from sage_gr00t.act.lmodule import LModuleConfig
    from sage_gr00t.bridge import BridgeConfig, SAGEGr00TBridge
    from sage_gr00t.plan.planner import HModulePlanner
    from sage_gr00t.policy.gr00t import load_policy
    from sage_gr00t_tasks import make_env

    torch.set_num_threads(1)
    console = Console(width=200)
    env = make_env("sort_blocks", **({"max_steps": args.max_steps} if args.max_steps else {}))
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
        for fault_step in args.fault_step if fault != "none" else args.fault_step[:1]:
            for mode, bridge in bridges.items():
                for seed in seeds:
                    r = run_episode(env, bridge, seed, args.command, fault, fault_step, args.stop,
                                    args.fault_at, args.fault_steps)
                    r["mode"] = mode
                    results.append(r)
                    console.print(f"[{time.perf_counter() - start:6.0f} s] {fault:8s} at {fault_step:3d} {mode:8s} "
                                  f"seed {seed}: {'success' if r['success'] else 'FAIL   '} in {r['steps']} steps, "
                                  f"trust<0.3 after {r['trust_low_after']}, fused error {r['fused_error']:.3f} m, "
                                  f"subtasks done {r['done']} failed {r['failed']}, held {r['held_steps']}; "
                                  f"{r['message']}", highlight=False, markup=False)
    env.close()
    meta = {"fault_at": args.fault_at, "fault_steps_at": args.fault_step, "fault_steps": args.fault_steps,
            "max_steps": env.config.max_steps,
            "stop": args.stop, "language_mode": args.language_mode, "seeds": seeds, "core": core}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**meta, "results": results}, indent=1))
    print_report(console, results, meta)
    console.print(f"results: {args.json}")
    return 0


def print_report(console, results: list[dict], meta: dict) -> None:
    console.print(results_table(results, meta))
    console.print("fused error: mean over objects and over the steps from the fault start (for 'none': from the "
                  "same step); plan ended: the L-module judged every subtask finished (or failed) from perceived "
                  "state while the task was not done, so the bridge held the robot still. 'all phases' pools the "
                  "fault's runs; paired: episodes (same seed, fault and phase) only trust / only no trust solved, with "
                  "the exact McNemar p-value.", highlight=False)


if __name__ == "__main__":
    raise SystemExit(main())
