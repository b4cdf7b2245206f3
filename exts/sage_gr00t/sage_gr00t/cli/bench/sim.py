"""Benchmark the embedded simulator on ONE CPU core and print a table.

    sage-bench sim --embodiment sage_humanoid unitree_g1 --task pick_apple sort_blocks

Columns: raw physics steps/s (mj_step, 2 ms), ms per 224x224 ego-camera render (EGL/llvmpipe, one rendering
thread), and env steps/s at 20 Hz control with the ego camera (25 physics steps + one render + observation
assembly per step), timed while the scripted expert drives the robot (expert/IK time excluded). Target for
sage_humanoid: >= 100 env steps/s (5x real time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sage_gr00t.bench.process import allowed_cores, limit_native_threads, pin_to_core
from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.cli.bench._common import ALL, resolve_tasks

PROG = "sage-bench sim"


@dataclass
class SimBenchConfig:
    """Physics, rendering and env-step rates of the embedded MuJoCo simulator on one core."""

    embodiment: list[str] = field(default_factory=lambda: ["sage_humanoid"])  # robots, one row each per task
    task: list[str] = field(default_factory=lambda: [ALL])  # task names, or all (every installed task)
    physics_steps: int = 5000  # raw mj_step calls timed
    renders: int = 200  # 224x224 ego-camera renders timed
    env_steps: int = 300  # env steps timed while the scripted expert drives

    def __post_init__(self) -> None:
        check(bool(self.embodiment), "--embodiment needs at least one embodiment.")
        for flag, value in (("--physics-steps", self.physics_steps), ("--renders", self.renders),
                            ("--env-steps", self.env_steps)):
            check(value >= 1, f"{flag} must be >= 1, got {value}.")


def bench(task: str, embodiment: str, physics_steps: int, renders: int, env_steps: int) -> dict[str, float]:
    import mujoco

    from sage_gr00t.experts.scripted import ScriptedExpert
    from sage_gr00t.modality import EGO_CAMERA
    from sage_gr00t.tasks import make_env

    env = make_env(task, embodiment=embodiment)
    obs, _ = env.reset(seed=0)

    data = mujoco.MjData(env.model)
    data.qpos[:] = env.data.qpos
    data.ctrl[:] = env.data.ctrl
    start = time.perf_counter()
    for _ in range(physics_steps):
        mujoco.mj_step(env.model, data)
    physics_rate = physics_steps / (time.perf_counter() - start)

    env.render_camera(EGO_CAMERA, 224, 224)  # warm up the GL context
    start = time.perf_counter()
    for _ in range(renders):
        env.render_camera(EGO_CAMERA, 224, 224)
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


def run(cfg: SimBenchConfig) -> int:
    # One core, one thread per native library, before mujoco / numpy start any.
    limit_native_threads()
    pin_to_core()
    from sage_gr00t.bench.tables import new_table, print_tables

    try:
        tasks = resolve_tasks(cfg.task)
    except ValueError as exc:
        return error(PROG, str(exc))
    table = new_table(f"Embedded simulator, 1 CPU core (affinity {allowed_cores()})",
                      ("embodiment", "task", "physics steps/s", "ms / 224x224 render",
                       "env steps/s @20 Hz + ego cam", "x real time"), left=("embodiment", "task"))
    for embodiment in cfg.embodiment:
        for task in tasks:
            r = bench(task, embodiment, cfg.physics_steps, cfg.renders, cfg.env_steps)
            table.add_row(embodiment, task, f"{r['physics']:,.0f}", f"{r['render_ms']:.2f}", f"{r['env']:.0f}",
                          f"{r['env'] / 20:.1f}")
    print_tables(table, width=160)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(SimBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
