"""Safety filter cost on one core, and what it does to the scripted expert.

    sage-bench safety --embodiments sage_humanoid unitree_g1 --calls 2000

Per embodiment: median microseconds for the FK check alone (both arms, one `mj_kinematics`), a `filter` call
on the expert's own commands (the normal case), on random joint-space jumps (rate limits + workspace
bisection: the worst case) and on NaN input (hold); then the scripted expert through the filter on each
task (seed 0): success and interventions per kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sage_gr00t.bench.process import pin_to_core, use_local_menagerie
from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.cli.bench._common import ALL, resolve_tasks

if TYPE_CHECKING:
    from sage_gr00t.act.safety import SafetyFilter

PROG = "sage-bench safety"
IMAGE_SIZE = 64  # the filter never looks at images: small ones keep the episodes fast


@dataclass
class SafetyBenchConfig:
    """Safety filter cost per call, per embodiment, and the scripted expert through it on each task."""

    # Robots (unitree_g1 loads from MENAGERIE_ROOT, default ../shared/menagerie; skipped when missing).
    embodiments: list[str] = field(default_factory=lambda: ["sage_humanoid", "unitree_g1"])
    tasks: list[str] = field(default_factory=lambda: [ALL])  # task names for the expert runs, or all
    calls: int = 2000  # timed filter calls per case

    def __post_init__(self) -> None:
        check(bool(self.embodiments), "--embodiments needs at least one embodiment.")
        check(self.calls >= 1, f"--calls must be >= 1, got {self.calls}.")


def median_us(fn: Callable[[int], object], n: int) -> float:
    import numpy as np

    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def expert_episode(env: Any, filt: SafetyFilter | None, seed: int = 0) -> tuple[bool, list[dict], list[dict]]:
    """Run the expert (optionally through the filter); returns success, raw actions, states."""
    from sage_gr00t.policy.factory import make_policy

    obs, _ = env.reset(seed=seed)
    policy = make_policy("expert", env)
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
    import numpy as np

    from sage_gr00t.act.safety import SafetyFilter
    from sage_gr00t.modality import ACTION_KEYS, group_of, state_key
    from sage_gr00t.tasks import make_env

    env = make_env("pick_apple", image_height=IMAGE_SIZE, image_width=IMAGE_SIZE, embodiment=emb)
    filt = SafetyFilter(env.embodiment, env.action_ranges())
    _, actions, states = expert_episode(env, None)
    ranges = env.action_ranges()
    env.close()
    rng = np.random.default_rng(0)
    jumps = [{k: rng.uniform(*ranges[k].T) for k in ACTION_KEYS} for _ in range(64)]
    nan = {k: np.full(len(ranges[k]), np.nan) for k in ACTION_KEYS}
    start = states[0]
    home = {k: start[state_key(group_of(k))] for k in ACTION_KEYS}

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


def run(cfg: SafetyBenchConfig) -> int:
    use_local_menagerie()
    pin_to_core()
    from sage_gr00t.act.safety import SafetyFilter
    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.tasks import make_env

    try:
        tasks = resolve_tasks(cfg.tasks)
    except ValueError as exc:
        return error(PROG, str(exc))
    cost = new_table("Safety filter, median us per call (one core)",
                     ("embodiment", "FK check (2 arms)", "filter: expert stream", "filter: random jumps",
                      "filter: NaN hold"), left=("embodiment",))
    effect = new_table("Scripted expert through the filter (default limits, speed_scale 1.0, seed 0)",
                       ("embodiment", "task", "success without", "success with", "steps", "interventions"),
                       left=("embodiment", "task", "interventions"))

    for emb in cfg.embodiments:
        try:
            row = bench_cost(emb, cfg.calls)
        except FileNotFoundError as exc:
            print(f"skipping {emb}: {exc}")
            continue
        cost.add_row(emb, *(f"{us:.1f}" for us in row))
        for task in tasks:
            env = make_env(task, image_height=IMAGE_SIZE, image_width=IMAGE_SIZE, embodiment=emb)
            plain, _, _ = expert_episode(env, None)
            filt = SafetyFilter(env.embodiment, env.action_ranges())
            filtered, steps, _ = expert_episode(env, filt)
            counts = ", ".join(f"{k} {v}" for k, v in filt.stats.items() if v) or "none"
            effect.add_row(emb, task, str(plain), str(filtered), str(len(steps)), counts)
            env.close()

    print_tables(cost, effect, width=140)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(SafetyBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
