"""Evaluation throughput: episodes per minute of sage-eval's grid at 1, 2, ... worker processes.

    sage-bench eval-throughput --workers 1 2 --episodes 16
    sage-bench eval-throughput --policy expert --task pick_apple sort_blocks --workers 1 2 4 16

The same cells (tasks x seeds, the shipped checkpoint by default) run through `sage_gr00t.parallel.fan_out` at
each worker count. Every worker (this process for 1) runs one OpenMP and one llvmpipe rendering thread.
Columns: wall-clock episodes/min including process start (1 worker runs in this process,
already warm; N > 1 spawn and import first), steady episodes/min once every worker has finished its first
episode (start-up excluded), and the speed-up of both over 1 worker. A run also checks that every worker count
gave the per-seed successes and step counts of the first. Target: >= 1.8x steady on 2 workers with 2 free cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.cli.bench._common import resolve_tasks

PROG = "sage-bench eval-throughput"


@dataclass
class EvalThroughputBenchConfig:
    """Episodes per minute of the evaluation grid at several worker counts."""

    workers: list[int] = field(default_factory=lambda: [1, 2])  # worker counts timed, one row each
    task: list[str] = field(default_factory=lambda: ["pick_apple"])  # task names, or all
    policy: str = "assets/policies/gr00t_compact"  # expert | a checkpoint folder
    episodes: int = 12  # seeds per task (1000 ..)
    max_steps: int = 120  # steps per episode (a fixed length keeps the work per episode comparable)
    image_size: int = 128  # ego-camera height and width

    def __post_init__(self) -> None:
        check(bool(self.workers) and all(w >= 1 for w in self.workers), "--workers must be counts >= 1.")
        check(self.episodes >= 2, f"--episodes must be >= 2, got {self.episodes}.")
        check(self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}.")


def timed_grid(eval_cfg: object, cells: list, workers: int) -> tuple[float, float | None, dict]:
    """(wall seconds, steady episodes/min, {seed key: (success, steps)}) of `cells` on `workers` processes."""
    import functools

    from sage_gr00t.cli.eval import EpisodeRunner
    from sage_gr00t.parallel import FanOut, fan_out

    start = time.perf_counter()
    arrivals: list[float] = []
    outcomes = {}
    for index, record in fan_out(functools.partial(EpisodeRunner, eval_cfg), cells, FanOut(workers=workers)):
        arrivals.append(time.perf_counter() - start)
        outcomes[cells[index].sort_key()] = (record["success"], record["steps"])
    wall = time.perf_counter() - start
    warm = min(workers, len(cells))  # the arrival by which every worker has finished one episode (roughly)
    span = arrivals[-1] - arrivals[warm - 1]
    steady = 60.0 * (len(cells) - warm) / span if len(cells) > warm and span > 0 else None
    return wall, steady, outcomes


def run(cfg: EvalThroughputBenchConfig) -> int:
    from sage_gr00t.bench.process import limit_native_threads

    # The 1-worker row on the same footing as a spawned worker's: one OpenMP and one llvmpipe thread (read when
    # those libraries load, so before the imports below); else the baseline renders on every core.
    limit_native_threads()
    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.cli.eval import EvalConfig, grid_cells

    try:
        tasks = resolve_tasks(cfg.task)
        eval_cfg = EvalConfig(task=tasks, policy=cfg.policy, episodes=cfg.episodes, max_steps=cfg.max_steps,
                              stop="controller", videos=0, report=False,
                              task_options={"image_height": cfg.image_size, "image_width": cfg.image_size})
    except ValueError as exc:
        return error(PROG, str(exc))
    cells = grid_cells(eval_cfg, tasks)
    rows, reference = [], None
    for workers in cfg.workers:
        wall, steady, outcomes = timed_grid(eval_cfg, cells, workers)
        if reference is None:
            reference = outcomes
        rows.append((workers, wall, steady, outcomes == reference))
    base_wall, base_steady = rows[0][1], rows[0][2]
    table = new_table(f"{PROG}: {len(cells)} episodes of {cfg.max_steps} steps ({', '.join(tasks)}, {cfg.policy}, "
                      f"{cfg.image_size}px)", ("workers", "wall s", "episodes/min", "speed-up", "steady episodes/min",
                                               "steady speed-up", "same results"))
    for workers, wall, steady, same in rows:
        table.add_row(str(workers), f"{wall:.1f}", f"{60 * len(cells) / wall:.1f}", f"{base_wall / wall:.2f}x",
                      "-" if steady is None else f"{steady:.1f}",
                      "-" if steady is None or base_steady is None else f"{steady / base_steady:.2f}x",
                      "yes" if same else "NO")
    print_tables(table)
    return 0 if all(same for *_, same in rows) else 1


def main(argv: list[str] | None = None) -> int:
    return run(parse(EvalThroughputBenchConfig, argv, prog=PROG, description=__doc__))
