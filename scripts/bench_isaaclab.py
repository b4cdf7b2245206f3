#!/usr/bin/env python
"""Throughput of the Isaac Lab tasks (kit-less Newton) against the number of environments.

    python scripts/bench_isaaclab.py --task pick_apple --num-envs 1 4 --steps 20              # this CPU
    python scripts/bench_isaaclab.py --task pick_apple --num-envs 1 64 1024 --device cuda:0   # a GPU
    python scripts/bench_isaaclab.py --num-envs 16 --no-camera --solver warp --steps 10

Each N runs in its own process (Isaac Lab has one simulation context per process): it builds the env
the usual Isaac Lab way (`parse_env_cfg(task, device=, num_envs=)` + `gym.make(task, cfg=)`, inside
`launch_simulation`, which starts no Kit for Newton physics and the Newton Warp camera), resets it, then
times `--steps` control steps holding the home pose (env-steps/s = N x control steps/s; each control
step is `decimation` = 25 physics steps of 2 ms, plus rewards, observations and, with `--camera`, one
ego-view frame per env) and `--physics-steps` bare `sim.step()` calls (physics-only: the solver for all
N worlds; world-steps/s = N x physics steps/s). The solver follows the env count and device (C MuJoCo
for one env on the CPU, mujoco_warp otherwise) unless `--solver` forces one. The first step is timed
apart (Warp JIT compilation on a cold kernel cache, CUDA-graph capture). Prints a table and writes
JSON to outputs/ (`--out`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("isaaclab", "newton", "warp-lang", "mujoco", "mujoco-warp", "torch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pick_apple", help="task name (any registered task) or its Isaac Lab gym id")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4], help="env counts to measure (default: 1 4)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:0 (default: cpu)")
    p.add_argument("--steps", type=int, default=20, help="timed control steps per N (default: 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed control steps after the first (default: 2)")
    p.add_argument("--physics-steps", type=int, default=None,
                   help="timed bare physics steps per N (default: 2 x decimation = 50)")
    p.add_argument("--camera", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the ego-view camera (Newton Warp renderer) in the scene and observations")
    p.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"),
                   help="ego-view size (default: 224 224, GR00T's)")
    p.add_argument("--solver", choices=("auto", "cpu", "warp"), default="auto",
                   help="auto: C MuJoCo for 1 env on the CPU, else mujoco_warp; cpu / warp force one")
    p.add_argument("--njmax", type=int, default=None,
                   help="constraint rows (per world for mujoco_warp; default: the task config's)")
    p.add_argument("--nconmax", type=int, default=None,
                   help="contacts (per world for mujoco_warp; default: the task config's)")
    p.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                   help="capture the physics step as a CUDA graph (CUDA devices only)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per N (default: 1800)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: outputs/bench_isaaclab_<task>_<device>.json)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # one N, in a child process
    p.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from sage_gr00t.tasks import get_task, task_names

    ids = {name: get_task(name).ids().isaaclab for name in task_names()}
    args.task = ids.get(args.task, args.task)
    if args.task not in ids.values():
        p.error(f"unknown task {args.task!r}; choose from {', '.join(ids)}")
    return args


# ---------------------------------------------------------------------------------------------- worker
def _sync(device: str) -> None:
    import warp as wp

    if "cuda" in device:
        import torch

        wp.synchronize_device(device)
        torch.cuda.synchronize(device)


def run_one(args: argparse.Namespace, num_envs: int) -> dict:
    """Build, reset and time one env count (in this process)."""
    importlib.import_module("sage_gr00t")  # first, before mujoco / isaaclab (sets up GL and paths)
    import gymnasium as gym
    import torch
    from isaaclab.app import launch_simulation
    from isaaclab_tasks.utils import parse_env_cfg

    from sage_gr00t.sim.actions import home_action
    from sage_gr00t.sim.embodiment import get_embodiment
    from sage_gr00t.sim.isaaclab.env import action_tensor
    from sage_gr00t.sim.isaaclab.registration import register_installed_tasks

    register_installed_tasks()  # the gym ids (what the `isaaclab.tasks` entry point does)

    result: dict = {"num_envs": num_envs}
    cfg = parse_env_cfg(args.task, device=args.device, num_envs=num_envs)
    if args.camera:
        cfg.set_camera_size(*args.image_size)
    else:
        cfg.scene.ego_view = None
        cfg.observations.policy.ego_view = None
        cfg.events.ego_view_shapes = None
    cfg.sim.physics.solver_cfg.use_mujoco_cpu = {"auto": None, "cpu": True, "warp": False}[args.solver]
    cfg.sim.physics.solver_cfg.njmax = args.njmax
    cfg.sim.physics.solver_cfg.nconmax = args.nconmax
    cfg.sim.physics.use_cuda_graph = args.cuda_graph
    t0 = time.perf_counter()
    with launch_simulation(cfg, {}):
        if any(name.startswith("omni.kit") for name in sys.modules):
            result["warning"] = "Omniverse Kit was started"
        env = gym.make(args.task, cfg=cfg).unwrapped
        try:
            from isaaclab_newton.physics import NewtonManager

            solver = NewtonManager._solver
            result["solver"] = "mujoco_cpu" if solver.use_mujoco_cpu else "mujoco_warp"
            if not solver.use_mujoco_cpu:
                result["njmax_per_world"] = int(solver.mjw_data.njmax)
                result["naconmax"] = int(solver.mjw_data.naconmax)
            result["build_s"] = time.perf_counter() - t0
            t = time.perf_counter()
            env.reset(seed=0)
            _sync(args.device)
            result["reset_s"] = time.perf_counter() - t

            action = action_tensor(home_action(get_embodiment(env.cfg.embodiment)), env.device, num_envs)
            t = time.perf_counter()
            env.step(action)
            _sync(args.device)
            result["first_step_s"] = time.perf_counter() - t
            for _ in range(args.warmup):
                env.step(action)
            _sync(args.device)
            t = time.perf_counter()
            for _ in range(args.steps):
                obs, *_ = env.step(action)
            _sync(args.device)
            elapsed = time.perf_counter() - t
            result["control_steps_per_s"] = args.steps / elapsed
            result["env_steps_per_s"] = num_envs * args.steps / elapsed
            result["decimation"] = env.cfg.decimation
            result["realtime_factor"] = result["control_steps_per_s"] * env.step_dt
            if args.camera:
                image = obs["policy"]["ego_view"]
                result["image_shape"] = list(image.shape)

            # Where a control step goes besides physics: the success reward (the embedded predicate, a Python
            # loop over envs) and the ego-view render of all envs.
            timed = {"reward_ms": lambda: env.reward_manager.compute(dt=env.step_dt)}
            if args.camera:
                timed["render_ms"] = lambda: env.scene["ego_view"].update(env.step_dt, force_recompute=True)
            for key, compute in timed.items():
                t = time.perf_counter()
                for _ in range(3):
                    compute()
                _sync(args.device)
                result[key] = (time.perf_counter() - t) / 3 * 1000

            # Physics only: bare sim.step() calls (one physics step of every world each, or `decimation`
            # of them where the physics manager folds the decimation loop into one call).
            per_call = env.cfg.decimation if env._physics_handles_decimation else 1
            calls = max(1, (args.physics_steps or 2 * env.cfg.decimation) // per_call)
            env.sim.step(render=False)
            _sync(args.device)
            t = time.perf_counter()
            for _ in range(calls):
                env.sim.step(render=False)
            _sync(args.device)
            elapsed = time.perf_counter() - t
            result["physics_steps_per_s"] = calls * per_call / elapsed
            result["world_steps_per_s"] = num_envs * calls * per_call / elapsed
            state = env.scene["robot"].data.joint_pos.torch
            result["finite"] = bool(torch.isfinite(state).all())
            if not solver.use_mujoco_cpu:  # buffer use at the end (holding the home pose)
                result["max_nefc"] = int(solver.mjw_data.nefc.numpy().max())
                result["nacon"] = int(solver.mjw_data.nacon.numpy()[0])
        finally:
            env.close()
    return result


# ---------------------------------------------------------------------------------------------- parent
def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _device_name(device: str) -> str:
    if "cuda" in device:
        try:
            import torch

            return torch.cuda.get_device_name(torch.device(device))
        except Exception as exc:
            return f"unknown ({exc})"
    return platform.processor() or platform.machine()


def run_child(args: argparse.Namespace, argv: list[str], num_envs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, *argv, "--worker", str(num_envs), "--result", str(result_path)]
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"num_envs": num_envs, "error": f"timed out after {args.timeout:.0f} s"}
        if proc.returncode != 0 or not result_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            return {"num_envs": num_envs, "error": f"exit {proc.returncode}", "log_tail": tail}
        result = json.loads(result_path.read_text())
        result["process_s"] = time.perf_counter() - t
        return result


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    camera = f"camera {args.image_size[0]}x{args.image_size[1]}" if args.camera else "no camera"
    table = Table(title=f"{args.task} on {args.device} ({camera})")
    for column in ("N", "solver", "env-steps/s", "control steps/s", "x realtime", "physics steps/s",
                   "world-steps/s", "reward ms", "render ms", "build s", "first step s"):
        table.add_column(column, justify="right")
    for r in results:
        if "error" in r:
            table.add_row(str(r["num_envs"]), "[red]" + r["error"] + "[/red]", *[""] * 9)
            continue
        table.add_row(str(r["num_envs"]), r["solver"], f"{r['env_steps_per_s']:.2f}", f"{r['control_steps_per_s']:.2f}",
                      f"{r['realtime_factor']:.2f}", f"{r['physics_steps_per_s']:.1f}", f"{r['world_steps_per_s']:.1f}",
                      f"{r['reward_ms']:.1f}", f"{r.get('render_ms', 0):.1f}", f"{r['build_s']:.1f}",
                      f"{r['first_step_s']:.1f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 132))
    console.print(table)
    for r in results:
        if "log_tail" in r:
            print(f"N={r['num_envs']}: " + "\n  ".join(r["log_tail"]), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker is not None:
        result = run_one(args, args.worker)
        args.result.write_text(json.dumps(result))
        return 0
    results = []
    for num_envs in args.num_envs:
        print(f"N={num_envs} ...", flush=True)
        results.append(run_child(args, argv, num_envs))
    print_table(results, args)
    out = args.out or ROOT / "outputs" / f"bench_isaaclab_{args.task}_{args.device.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "task": args.task, "device": args.device, "device_name": _device_name(args.device),
        "cpu_count": os.cpu_count(), "camera": args.camera,
        "image_size": list(args.image_size) if args.camera else None,
        "solver": args.solver, "njmax": args.njmax, "nconmax": args.nconmax, "cuda_graph": args.cuda_graph,
        "steps": args.steps, "warmup": args.warmup,
        "time": datetime.now().isoformat(timespec="seconds"), "versions": _versions(), "results": results,
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
