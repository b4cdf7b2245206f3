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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from sage_gr00t.bench.video import EpisodeVideo
from sage_gr00t.evaluation import EpisodeResult, run_bridge_episode, run_episode, summarize
from sage_gr00t.policy.factory import PolicySpecError
from sage_gr00t.session import Session, SessionConfig, build_session
from sage_gr00t.tasks import UnknownTaskError, task_names


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

    task: list[str] = field(default_factory=lambda: ["all"])  # type: ignore[assignment]
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
    command: str = ""
    """User command for --controller sage (default: the task's example command)."""
    stop: str = "success"
    """success: end an episode at the simulator's success check (an oracle); controller: only when the
    controller decides it is done (SAGE: its plan is over; a plain policy never does: the step limit)."""
    task_option: list[str] = field(default_factory=list)
    """TaskConfig overrides KEY=VALUE, e.g. image_height=128 max_steps=300 settle_steps=50."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}.")
        if self.stop not in ("success", "controller"):
            raise ValueError(f"--stop must be 'success' or 'controller', got {self.stop!r}.")
        self.task_options = {**self.task_options, **parse_task_options(self.task_option)}
        super().__post_init__()

    def tasks(self) -> list[str]:
        names = task_names()
        chosen = names if self.task == ["all"] else list(self.task)
        unknown = [t for t in chosen if t not in names]
        if unknown:
            raise UnknownTaskError(f"Unknown task(s) {unknown}. Available: {names} or 'all'.")
        return chosen

    def session(self, task: str) -> SessionConfig:
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SessionConfig)}
        return SessionConfig(**{**shared, "task": task})


def evaluate_task(cfg: EvalConfig, session: Session, console: Console) -> list[EpisodeResult]:
    env, bridge = session.env, session.bridge
    if cfg.max_steps:
        env.config.max_steps = cfg.max_steps
    command = cfg.command or env.task.example_command
    results = []
    for i, seed in enumerate(tqdm(range(cfg.seed_start, cfg.seed_start + cfg.episodes), desc=env.task_name)):
        video = EpisodeVideo(enabled=cfg.video is not None and i == 0)
        if bridge is not None:
            results.append(run_bridge_episode(env, bridge, seed, command, on_frame=video.grab,
                                              stop_on_success=cfg.stop == "success"))
            if bridge.message and bridge.message != "done":
                tqdm.write(f"seed {seed}: {bridge.message}")
        else:
            results.append(run_episode(env, session.policy, seed, on_frame=video.grab, chunking=cfg.chunking,
                                       stop_on_success=cfg.stop == "success"))
        saved = video.save(cfg.video.with_name(f"{cfg.video.stem}_{env.task_name}{cfg.video.suffix}")) \
            if cfg.video is not None else None
        if saved is not None:
            console.print(f"video: {saved}")
    if bridge is not None:
        over = bridge.overhead_ms()
        console.print(f"{env.task_name}: bridge overhead per step (ms, policy + render excluded): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in over.items()))
    return results


def run(cfg: EvalConfig) -> Path:
    tasks = cfg.tasks()
    cfg.out.mkdir(parents=True, exist_ok=True)
    console = Console(width=120)
    table = Table(title=f"SAGE-GR00T evaluation: controller={cfg.controller}, policy={cfg.policy}, "
                        f"embodiment={cfg.embodiment}, backend={cfg.backend}, variant={cfg.variant}, "
                        f"seeds {cfg.seed_start}..{cfg.seed_start + cfg.episodes - 1}")
    for column in ("task", "episodes", "success", "mean steps", "env steps/s", "arm jerk"):
        table.add_column(column, justify="right" if column != "task" else "left")
    all_results: list[EpisodeResult] = []
    for task in tasks:
        session = build_session(cfg.session(task))
        try:
            results = evaluate_task(cfg, session, console)
        finally:
            session.close()
        summary = summarize(results)
        table.add_row(task, str(summary["episodes"]), f"{summary['success_rate']:.0%}",
                      f"{summary['mean_steps']:.0f}", f"{summary['env_steps_per_s']:.0f}",
                      f"{summary['arm_jerk']:.1f}")
        all_results += results
    console.print(table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = "eval_sage_" if cfg.controller == "sage" else "eval_"
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in cfg.policy)
    out = cfg.out / f"{prefix}{name}_{cfg.embodiment}_{stamp}.json"
    out.write_text(json.dumps([r.to_dict() for r in all_results], indent=1))
    console.print(f"results: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = tyro.cli(EvalConfig, args=argv, description=__doc__)
        run(cfg)
    except (ValueError, FileNotFoundError, PolicySpecError, ConnectionError) as exc:
        print(f"sage-eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
