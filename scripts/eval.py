#!/usr/bin/env python
"""Evaluate a policy closed loop on the embedded MuJoCo tasks and print a success table.

    python scripts/eval.py --policy expert --task all --episodes 50 --video outputs/eval/expert.mp4

`--policy expert` runs the scripted experts (privileged state). Seeds start at `--seed-start`
(default 1000: demonstrations are collected from seed 0 up, so these are held out).
Results are also written as JSON next to the video (or to outputs/eval/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from sage_gr00t.act.chunking import MODES, ChunkExecutorConfig
from sage_gr00t.evaluation import EpisodeResult, run_bridge_episode, run_episode, summarize
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t_tasks import TASKS, make_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="expert", help="'expert' or a policy checkpoint folder")
    p.add_argument("--task", nargs="+", default=["all"], help=f"task names or 'all' ({', '.join(TASKS)})")
    p.add_argument("--embodiment", default="sage_humanoid")
    p.add_argument("--variant", default="train", choices=("train", "novel"))
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed-start", type=int, default=1000)
    p.add_argument("--randomization", default="none", choices=("none", "train", "strong"))
    p.add_argument("--max-steps", type=int, default=None, help="per episode (default: the task's limit)")
    p.add_argument("--video", type=Path, default=None, help="mp4 of the first episode of each task")
    p.add_argument("--out", type=Path, default=Path("outputs/eval"), help="folder for the JSON results")
    p.add_argument("--chunk-mode", default="blend", choices=MODES, help="action-chunk execution (smoothing)")
    p.add_argument("--execute-steps", type=int, default=8, help="steps executed per chunk before re-querying")
    p.add_argument("--device", default="cpu")
    p.add_argument("--controller", default="policy", choices=("policy", "sage"),
                   help="'policy': the policy alone on the task's instruction; 'sage': SAGEGr00TBridge "
                        "(perceive -> H-module plan -> L-module -> policy -> safety) from --command")
    p.add_argument("--command", default="sort the blocks into the bins of the same colour",
                   help="user command for --controller sage")
    p.add_argument("--planner", default="assets/planner", help="H-module checkpoint for --controller sage")
    p.add_argument("--language-mode", default="subtask", choices=("command", "subtask"),
                   help="--controller sage: language the policy gets (the whole command or each subtask's)")
    p.add_argument("--backend", default="mujoco", choices=("mujoco", "isaaclab"),
                   help="embedded MuJoCo simulator, or the Isaac Lab 3.0 tasks (needs the isaaclab extra)")
    p.add_argument("--stop", default="success", choices=("success", "controller"),
                   help="'success': end an episode at the simulator's success check (an oracle); 'controller': "
                        "only when the controller decides it is done (SAGE: its plan is over; a plain policy never "
                        "decides, so the step limit), success = the task's predicate at that moment")
    p.add_argument("--task-option", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override TaskConfig fields, e.g. image_height=128 max_steps=300 settle_steps=50")
    return p.parse_args(argv)


def parse_task_options(items: list[str]) -> dict:
    """KEY=VALUE strings -> TaskConfig overrides (values parsed as int, float or str)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--task-option expects KEY=VALUE, got {item!r}.")
        for cast in (int, float):
            try:
                options[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return options


def make_bridge(args: argparse.Namespace, env, policy, chunking: ChunkExecutorConfig):
    from sage_gr00t.act.lmodule import LModuleConfig
    from sage_gr00t.bridge import BridgeConfig, SAGEGr00TBridge
    from sage_gr00t.plan.planner import HModulePlanner

    config = BridgeConfig(lmodule=LModuleConfig(language_mode=args.language_mode, chunking=chunking))
    return SAGEGr00TBridge(policy, env, HModulePlanner.load(args.planner, device=args.device), config)


def make_policy(spec: str, env, device: str):
    if spec == "expert":
        return ExpertPolicy(env)
    if not Path(spec).is_dir():
        raise SystemExit(f"Policy {spec!r} is neither 'expert' nor a checkpoint folder. Train one with "
                         "scripts/train_policy.py or use the shipped assets/policies/gr00t_compact.")
    from sage_gr00t.policy.gr00t import load_policy

    return load_policy(spec, embodiment=env.embodiment.name, device=device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = list(TASKS) if args.task == ["all"] else args.task
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        print(f"Unknown task(s) {unknown}. Available: {sorted(TASKS)} or 'all'.", file=sys.stderr)
        return 2
    randomization = DomainRandomizationConfig.from_yaml(profile=args.randomization)
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console(width=120)
    table = Table(title=f"SAGE-GR00T evaluation: controller={args.controller}, policy={args.policy}, "
                        f"embodiment={args.embodiment}, "
                        f"variant={args.variant}, seeds {args.seed_start}..{args.seed_start + args.episodes - 1}")
    for column in ("task", "episodes", "success", "mean steps", "env steps/s", "arm jerk"):
        table.add_column(column, justify="right" if column != "task" else "left")

    all_results: list[EpisodeResult] = []
    for task in tasks:
        make = make_env
        if args.backend == "isaaclab":  # Isaac Lab 3.0 manager-based env (kit-less Newton) behind the same API
            from sage_gr00t_tasks.isaaclab import make_isaaclab_env as make
        env = make(task, embodiment=args.embodiment, variant=args.variant, randomization=randomization,
                   **parse_task_options(args.task_option))
        if args.max_steps:
            env.config.max_steps = args.max_steps
        policy = make_policy(args.policy, env, args.device)
        chunking = ChunkExecutorConfig(mode=args.chunk_mode, execute_steps=args.execute_steps)
        bridge = None
        if args.controller == "sage":
            bridge = make_bridge(args, env, policy, chunking)
        results = []
        for i, seed in enumerate(tqdm(range(args.seed_start, args.seed_start + args.episodes), desc=task)):
            frames: list[np.ndarray] = []
            record = args.video is not None and i == 0

            def grab(env_, obs, frames=frames, record=record) -> None:
                if record and env_.step_count % 2 == 0:
                    ego = obs["video.ego_view"]
                    front = env_.render()  # front view with the ego camera as an inset
                    h, w = min(ego.shape[0], front.shape[0]), min(ego.shape[1], front.shape[1])
                    front[:h, :w] = ego[:h, :w]
                    frames.append(front)

            if bridge is not None:
                results.append(run_bridge_episode(env, bridge, seed, args.command, on_frame=grab,
                                                  stop_on_success=args.stop == "success"))
                if bridge.message and bridge.message != "done":
                    tqdm.write(f"seed {seed}: {bridge.message}")
            else:
                results.append(run_episode(env, policy, seed, on_frame=grab, chunking=chunking,
                                           stop_on_success=args.stop == "success"))
            if record and frames:
                import imageio

                path = args.video.with_name(f"{args.video.stem}_{task}{args.video.suffix}")
                path.parent.mkdir(parents=True, exist_ok=True)
                imageio.mimsave(path, frames, fps=10)
                console.print(f"video: {path}")
        if bridge is not None:
            over = bridge.overhead_ms()
            console.print(f"{task}: bridge overhead per step (ms, policy + render excluded): "
                          + ", ".join(f"{k} {v:.2f}" for k, v in over.items()))
        env.close()
        summary = summarize(results)
        table.add_row(task, str(summary["episodes"]), f"{summary['success_rate']:.0%}",
                      f"{summary['mean_steps']:.0f}", f"{summary['env_steps_per_s']:.0f}",
                      f"{summary['arm_jerk']:.1f}")
        all_results += results

    console.print(table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = "eval_sage_" if args.controller == "sage" else "eval_"
    out = args.out / f"{prefix}{args.policy.replace('/', '_')}_{args.embodiment}_{stamp}.json"
    out.write_text(json.dumps([r.to_dict() for r in all_results], indent=1))
    console.print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
