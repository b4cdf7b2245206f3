"""sage-eval: closed-loop evaluation of a controller on the tasks, a success table and a JSON of episodes.

    sage-eval --policy assets/policies/gr00t_compact --task pick_apple sort_blocks --episodes 50
    sage-eval --policy expert --task all --backend isaaclab --episodes 20
    sage-eval --policy zmq://127.0.0.1:5555 --task pick_apple         # a GR00T server (sage-serve or upstream's)
    sage-eval --controller sage --task sort_blocks --command "sort the blocks by colour"

Seeds start at --seed-start (default 1000: demonstrations are collected from seed 0 up, so these are
held out). Success is the task's own predicate on simulator state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from sage_gr00t.bench.stats import wilson_interval
from sage_gr00t.bench.video import EpisodeVideo
from sage_gr00t.cli._parsing import parse
from sage_gr00t.evaluation import EpisodeResult, borrowed_instruction, run_bridge_episode, run_episode, summarize
from sage_gr00t.policy.factory import PolicySpecError
from sage_gr00t.session import Session, SessionConfig, build_session
from sage_gr00t.tasks import ALL_TASKS, select_tasks


def parse_task_options(items: list[str]) -> dict:
    """KEY=VALUE strings -> TaskConfig overrides (values parsed as int, float or str)."""
    options: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--task-option expects KEY=VALUE, got {item!r}.")
        for cast in (int, float):
            try:
                options[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return options


@dataclass
class EvalConfig(SessionConfig):
    """Evaluate a controller closed loop over held-out seeds; every session option applies per task."""

    task: list[str] = field(default_factory=lambda: [ALL_TASKS])  # type: ignore[assignment]
    """Task names, or 'all' (every installed task)."""
    policy: str = "expert"
    """expert | a checkpoint folder | zmq://HOST:PORT (a GR00T server) | upstream:CHECKPOINT."""
    episodes: int = 50
    seed_start: int = 1000
    max_steps: int | None = None
    """Steps per episode (default: the task's limit)."""
    video: Path | None = None
    """mp4 of the first episode of each task (front view with the ego camera inset); one file per task."""
    out: Path = Path("outputs/eval")
    """Folder for the JSON results."""
    command: str | None = None
    """User command for --controller sage (default: the task's example command)."""
    stop: str = "success"
    """success: end an episode at the simulator's success check (an oracle); controller: only when the
    controller decides it is done (SAGE: its plan is over; a plain policy never does: the step limit)."""
    task_option: list[str] = field(default_factory=list)
    """TaskConfig overrides KEY=VALUE, e.g. image_height=128 max_steps=300 settle_steps=50."""
    instruction: str = "task"
    """task: each episode's own instruction; mismatched: the instruction another episode drew (the control run of
    the language-following scenes: a policy that listens then fails where the words name another object)."""
    workers: int = 1
    """Processes sharing each task's seeds (one torch thread each); 1 runs in this process."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}.")
        if self.command is not None and not self.command.strip():
            raise ValueError("--command is empty; give a command such as 'put the apple on the plate', or leave "
                             "the flag out for the task's example command.")
        if self.stop not in ("success", "controller"):
            raise ValueError(f"--stop must be 'success' or 'controller', got {self.stop!r}.")
        if self.instruction not in ("task", "mismatched"):
            raise ValueError(f"--instruction must be 'task' or 'mismatched', got {self.instruction!r}.")
        if self.instruction == "mismatched" and (self.controller == "sage" or self.episodes < 2):
            raise ValueError("--instruction mismatched needs the plain policy controller and --episodes >= 2.")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}.")
        self.task_options = {**self.task_options, **parse_task_options(self.task_option)}
        super().__post_init__()

    def tasks(self) -> list[str]:
        return select_tasks(self.task)

    def session(self, task: str) -> SessionConfig:
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SessionConfig)}
        return SessionConfig(**{**shared, "task": task})


def evaluate_task(cfg: EvalConfig, session: Session, console: Console,
                  on_result: Callable[[EpisodeResult], None] | None = None,
                  seeds: list[int] | None = None, progress: bool = True) -> list[EpisodeResult]:
    env, bridge = session.env, session.bridge
    if cfg.max_steps:
        env.config.max_steps = cfg.max_steps
    command = cfg.command if cfg.command is not None else env.task.example_command
    if bridge is not None and not command.strip():
        raise ValueError(f"--controller sage needs --command: task {env.task_name} declares no example command.")
    all_seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.episodes))
    results = []
    for seed in tqdm(seeds if seeds is not None else all_seeds, desc=env.task_name, disable=not progress):
        video = EpisodeVideo(enabled=cfg.video is not None and seed == cfg.seed_start)
        if bridge is not None:
            results.append(run_bridge_episode(env, bridge, seed, command, on_frame=video.grab,
                                              stop_on_success=cfg.stop == "success"))
            if bridge.message and bridge.message != "done":
                tqdm.write(f"seed {seed}: {bridge.message}")
        else:
            borrowed = borrowed_instruction(env, all_seeds, seed) if cfg.instruction == "mismatched" else None
            results.append(run_episode(env, session.policy, seed, on_frame=video.grab, chunking=cfg.chunking,
                                       stop_on_success=cfg.stop == "success", instruction=borrowed))
        if on_result is not None:
            on_result(results[-1])
        saved = video.save(cfg.video.with_name(f"{cfg.video.stem}_{env.task_name}{cfg.video.suffix}")) \
            if cfg.video is not None else None
        if saved is not None:
            console.print(f"video: {saved}")
    if bridge is not None and progress:
        over = bridge.overhead_ms()
        console.print(f"{env.task_name}: bridge overhead per step (ms, policy + render excluded): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in over.items()))
    return results


def _evaluate_seeds(job: tuple[EvalConfig, str, list[int]]) -> list[EpisodeResult]:
    """One worker process: its own session for `task`, the given seeds."""
    import torch

    torch.set_num_threads(1)
    cfg, task, seeds = job
    session = build_session(cfg.session(task))
    try:
        return evaluate_task(cfg, session, Console(width=120, quiet=True), seeds=seeds, progress=False)
    finally:
        session.close()


def evaluate_parallel(cfg: EvalConfig, task: str, on_result: Callable[[EpisodeResult], None]) -> list[EpisodeResult]:
    """The task's seeds split over `cfg.workers` spawned processes; results come back as each worker ends."""
    import multiprocessing as mp

    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.episodes))
    jobs = [(cfg, task, seeds[i::cfg.workers]) for i in range(min(cfg.workers, len(seeds)))]
    results: list[EpisodeResult] = []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        for batch in tqdm(pool.imap_unordered(_evaluate_seeds, jobs), total=len(jobs), desc=f"{task} (workers)"):
            for result in batch:
                results.append(result)
                on_result(result)
    return sorted(results, key=lambda r: r.seed)


class ResultsFile:
    """Episode records written as they finish (one JSON line each, flushed to disk), so an interrupted run keeps
    every finished episode; `finish()` writes the whole list as one JSON file beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = path.with_suffix(".jsonl")
        with open(self.lines, "w"):  # fail now, not after the first episode, if the folder is not writable
            pass

    def add(self, result: EpisodeResult) -> None:
        with open(self.lines, "a") as f:
            f.write(json.dumps(result.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())

    @property
    def records(self) -> list[dict]:
        """Every episode on disk. The JSON lines are the record: a Ctrl-C can land anywhere in `add`, and a line
        cut short by it is not an episode."""
        out = []
        for line in self.lines.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def finish(self) -> Path:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.records, indent=1))
        tmp.replace(self.path)
        return self.path


def writable_folder(path: Path, flag: str) -> None:
    """Create `path` if needed and check it is a writable folder, before minutes of setup."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; give a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{flag} {path} cannot be created ({exc.strerror}); give a writable folder.") from exc
    if not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path} is not writable; give a writable folder.")


def run(cfg: EvalConfig) -> Path:
    tasks = cfg.tasks()
    writable_folder(cfg.out, "--out")
    if cfg.video is not None:
        writable_folder(cfg.video.parent, "--video's folder")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = "eval_sage_" if cfg.controller == "sage" else "eval_"
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in cfg.policy)
    results_file = ResultsFile(cfg.out / f"{prefix}{name}_{cfg.embodiment}_{stamp}.json")
    console = Console(width=120)
    table = Table(title=f"SAGE-GR00T evaluation: controller={cfg.controller}, policy={cfg.policy}, "
                        f"embodiment={cfg.embodiment}, backend={cfg.backend}, variant={cfg.variant}, "
                        f"randomization={cfg.randomization}, instruction={cfg.instruction}, "
                        f"seeds {cfg.seed_start}..{cfg.seed_start + cfg.episodes - 1}")
    for column in ("task", "episodes", "success", "95% CI", "mean steps", "env steps/s", "arm jerk"):
        table.add_column(column, justify="right" if column != "task" else "left")
    try:
        for task in tasks:
            if cfg.workers > 1:
                results = evaluate_parallel(cfg, task, results_file.add)
            else:
                session = build_session(cfg.session(task))
                try:
                    results = evaluate_task(cfg, session, console, on_result=results_file.add)
                finally:
                    session.close()
            summary = summarize(results)
            wins = sum(r.success for r in results)
            low, high = wilson_interval(wins, len(results))
            table.add_row(task, str(summary["episodes"]), f"{wins}/{len(results)} ({summary['success_rate']:.0%})",
                          f"{low:.0%}-{high:.0%}",
                          f"{summary['mean_steps']:.0f}", f"{summary['env_steps_per_s']:.0f}",
                          f"{summary['arm_jerk']:.1f}")
    except KeyboardInterrupt:
        out = results_file.finish()
        console.print(table)
        console.print(f"interrupted: {len(results_file.records)} finished episodes kept in {out}")
        raise
    console.print(table)
    out = results_file.finish()
    console.print(f"results: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse(EvalConfig, argv, prog="sage-eval", description=__doc__)
        run(cfg)
    except (ValueError, FileNotFoundError, PolicySpecError, ConnectionError) as exc:
        print(f"sage-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
