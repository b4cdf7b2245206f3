"""sage-eval: closed-loop evaluation of a controller over a grid of tasks x embodiments x variants x randomization
x seeds; a success table with 95% Wilson intervals, results.json, summary.json and report.md in --out.

    sage-eval --policy assets/policies/gr00t_compact --task pick_apple sort_blocks --episodes 50
    sage-eval --policy expert --task all --variant train novel --randomization none strong --workers 2
    sage-eval --policy expert --task all --ray auto                   # the same cells on a Ray cluster
    sage-eval --policy assets/policies/gr00t_compact --task pick_apple --sweep friction mass --episodes 20
    sage-eval --policy zmq://127.0.0.1:5555 --task pick_apple         # a GR00T server (sage-serve or upstream's)
    sage-eval --controller sage --task sort_blocks --command "sort the blocks by colour"

A cell is one episode: (task, embodiment, variant, randomization, seed), or with --sweep (task, embodiment,
variant, factor, level, seed). Each finished episode is added to <out>/results.json at once (atomically), and
running the same command with the same --out again skips the cells already there (resume; the default --out is
named after the policy and a hash of the settings that decide an episode, so the same command resumes itself).
Seeds start at --seed-start (default 1000: demonstrations are collected from seeds 0..999, so these are held out).
Success is the task's own predicate on simulator state. An episode is a function of its cell, so --workers N and
--ray give the per-seed results of a serial run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from tqdm import tqdm

from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig
from sage_gr00t.bench.results import ResultsStore, write_json_atomic
from sage_gr00t.bench.stats import episode_metrics
from sage_gr00t.bench.tables import new_table
from sage_gr00t.bench.video import EpisodeVideo, NoVideoWriterError, overlay_caption
from sage_gr00t.cli._parsing import parse
from sage_gr00t.evaluation import (
    EpisodeResult,
    borrowed_instruction,
    heldout_paraphrase,
    run_bridge_episode,
    run_episode,
)
from sage_gr00t.parallel import FanOut, WorkerError, fan_out, ray_session
from sage_gr00t.policy.factory import PolicySpec, PolicySpecError
from sage_gr00t.policy.gr00t.checkpoint import CheckpointError
from sage_gr00t.session import RANDOMIZATION_PROFILES, Session, SessionConfig, build_session
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.randomization import SWEEP_FACTORS, DomainRandomizationConfig, one_factor
from sage_gr00t.tasks import ALL_TASKS, TaskEnv, get_task, make_env, select_tasks

PROG = "sage-eval"
TRAINING_SEEDS = range(0, 1000)  # demonstrations (sage-collect, config/policy_v2.yaml) come from these seeds
SWEEP_REFERENCE = "train"  # the profile whose ranges a sweep scales
SWEEP = "sweep"  # the randomization name of a sweep cell
# Fields of the grid and of how it is run: they decide which episodes run, not what one episode does.
_GRID_FIELDS = ("task", "embodiment", "variant", "randomization", "episodes", "seed_start", "out", "video", "workers",
                "ray", "sweep", "sweep_levels", "videos", "report")


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
    """Evaluate a controller closed loop over a grid of held-out episodes; every session option applies per cell."""

    task: list[str] = field(default_factory=lambda: [ALL_TASKS])  # type: ignore[assignment]
    """Task names, or 'all' (every installed task)."""
    embodiment: list[str] = field(default_factory=lambda: ["sage_humanoid"])  # type: ignore[assignment]
    """Robots (sage_humanoid, unitree_g1); every task runs on each."""
    variant: list[str] = field(default_factory=lambda: ["train"])  # type: ignore[assignment]
    """Task variants (train, novel, language, procedural: those the tasks declare); every task runs each."""
    randomization: list[str] = field(default_factory=lambda: ["none"])  # type: ignore[assignment]
    """Domain-randomization profiles of config/domain_randomization.yaml (none, train, train_wide_lighting, strong)."""
    policy: str = "expert"
    """expert | a checkpoint folder | zmq://HOST:PORT (a GR00T server) | upstream:CHECKPOINT."""
    episodes: int = 50
    """Seeds per grid point: --seed-start .. --seed-start + episodes - 1."""
    seed_start: int = 1000
    max_steps: int | None = None
    """Steps per episode (default: the task's limit)."""
    video: Path | None = None
    """mp4 of the first episode of each task (front view with the ego camera inset); one file per task."""
    out: Path | None = None
    """Run folder: results.json (resumable), summary.json, report.md, videos/. Default: outputs/eval/<policy>-<hash>,
    the hash of the settings that decide an episode (same command again: resumed; other settings: a new folder)."""
    command: str | None = None
    """User command for --controller sage (default: the task's example command)."""
    stop: str = "success"
    """success: end an episode at the simulator's success check (an oracle); controller: only when the
    controller decides it is done (SAGE: its plan is over; a plain policy never does: the step limit)."""
    task_option: list[str] = field(default_factory=list)
    """TaskConfig overrides KEY=VALUE, e.g. image_height=128 max_steps=300 settle_steps=50."""
    instruction: str = "task"
    """task: each episode's own instruction; mismatched: the instruction another episode drew (the control run of
    the language-following scenes: a policy that listens then fails where the words name another object);
    paraphrase: the episode's own goal in held-out words (templates no training used; under --controller sage they
    are SAGE's command)."""
    workers: int = 1
    """Worker processes (one torch thread each); 1 runs in this process. With --ray: actors (1: one per CPU)."""
    ray: str | None = None
    """auto (the running Ray cluster) | HOST:PORT | ray://HOST:PORT: run the cells as Ray actors (every node needs
    this package and the policy's files at the same paths)."""
    sweep: list[str] = field(default_factory=list)
    """Robustness sweep: these randomization factors (or 'all') one at a time over --sweep-levels x their
    training range, in place of --randomization. Factors: lighting, colors, camera, friction, mass,
    actuator_gains, latency, observation_noise."""
    sweep_levels: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0])
    """Scales of the training range a sweep runs (0: the factor off, 1: training, 2: twice as wide)."""
    videos: int = 2
    """Episodes filmed for report.md (the first seed of the first grid points, replayed after the grid)."""
    report: bool = True
    """Write report.md with its plots (matplotlib) beside summary.json."""
    safety: bool = False
    """Plain policy: pass its actions through the safety filter SAGE uses, and count the filter's interventions
    (SAGE always runs it)."""
    adapter_option: list[str] = field(default_factory=list)
    """With --adapter: SimToRealAdapterConfig overrides KEY=VALUE, e.g. calibration=histogram smoothing=1
    ramp_steps=0 latency_steps=2 (calibration=none, latency_steps=measured; seeds as 0,1,2)."""

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
        if self.instruction not in ("task", "mismatched", "paraphrase"):
            raise ValueError(f"--instruction must be 'task', 'mismatched' or 'paraphrase', got {self.instruction!r}.")
        if self.instruction == "paraphrase" and self.controller == "sage" and self.command is not None:
            raise ValueError("--instruction paraphrase gives SAGE each episode's own command in held-out words; "
                             "drop --command.")
        if self.instruction == "mismatched" and (self.controller == "sage" or self.episodes < 2):
            raise ValueError("--instruction mismatched needs the plain policy controller and --episodes >= 2.")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}.")
        if self.videos < 0:
            raise ValueError(f"--videos must be >= 0, got {self.videos}.")
        for flag, values in (("--embodiment", self.embodiment), ("--variant", self.variant),
                             ("--randomization", self.randomization)):
            if not values:
                raise ValueError(f"{flag} needs at least one value.")
        unknown = [p for p in self.randomization if p not in RANDOMIZATION_PROFILES]
        if unknown:
            raise ValueError(f"Unknown randomization profile(s) {unknown}; have {list(RANDOMIZATION_PROFILES)}.")
        if self.sweep == [ALL_TASKS]:
            self.sweep = list(SWEEP_FACTORS)
        unknown = [f for f in self.sweep if f not in SWEEP_FACTORS]
        if unknown:
            raise ValueError(f"Unknown randomization factor(s) {unknown} for --sweep; have "
                             f"{', '.join(SWEEP_FACTORS)} (or 'all').")
        if self.sweep and (not self.sweep_levels or any(not level >= 0 for level in self.sweep_levels)):
            raise ValueError(f"--sweep-levels must be scales >= 0, got {self.sweep_levels}.")
        self.task_options = {**self.task_options, **parse_task_options(self.task_option)}
        if self.adapter_option and not self.adapter:
            raise ValueError("--adapter-option needs --adapter.")
        self.adapter_options = {**self.adapter_options, **parse_task_options(self.adapter_option)}
        # The session options of every grid point, checked now as SessionConfig checks them (one clear line).
        for embodiment, variant in itertools.product(self.embodiment, self.variant):
            self.session("-", embodiment, variant)

    def tasks(self) -> list[str]:
        return select_tasks(self.task)

    def seeds(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.episodes))

    def session(self, task: str, embodiment: str, variant: str) -> SessionConfig:
        """The session of one grid point (its randomization is built per cell: a profile or a sweep level)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SessionConfig)}
        return SessionConfig(**{**shared, "task": task, "embodiment": embodiment, "variant": variant,
                                "randomization": "none"})

    def run_settings(self) -> dict[str, Any]:
        """What decides an episode's outcome besides its cell: a resumed --out must have been run with these."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in _GRID_FIELDS
                and f.name not in ("task_option", "task_options", "adapter_option", "adapter_options")} | {
                    "task_options": self.task_options, "adapter_options": self.adapter_options}

    def changed_settings(self) -> dict[str, Any]:
        """The run settings that differ from the defaults (a field added later leaves the folder name alone)."""
        defaults = EvalConfig().run_settings()
        return {k: v for k, v in self.run_settings().items() if k not in defaults or v != defaults[k]}

    @property
    def folder(self) -> Path:
        """--out, or the default folder of these settings."""
        if self.out is not None:
            return self.out
        digest = hashlib.sha256(json.dumps(self.changed_settings(), sort_keys=True, default=str).encode()).hexdigest()
        name = "".join(c if c.isalnum() or c in "-." else "_" for c in Path(self.policy).name or self.policy)
        return Path("outputs/eval") / f"{self.controller}_{name}-{digest[:8]}"

    def fan_out_plan(self) -> FanOut:
        return FanOut(workers=self.workers, ray=self.ray)


@dataclass(frozen=True)
class Cell:
    """One episode of the grid. `factor`/`level` are set for a sweep cell (randomization "sweep")."""

    task: str
    embodiment: str
    variant: str
    randomization: str
    factor: str | None
    level: float | None
    seed: int

    @property
    def point(self) -> tuple:
        """The grid point: everything but the seed (one simulator and policy serve all its seeds)."""
        return self.task, self.embodiment, self.variant, self.randomization, self.factor, self.level

    def sort_key(self) -> tuple:
        return (*point_key(self.point), self.seed)

    @classmethod
    def of(cls, record: dict[str, Any]) -> Cell:
        return cls(record["task"], record["embodiment"], record["variant"], record["randomization"],
                   record.get("factor"), record.get("level"), int(record["seed"]))

    def label(self) -> str:
        randomization = f"{self.factor}@{self.level:g}" if self.factor else self.randomization
        return f"{self.task}_{self.embodiment}_{self.variant}_{randomization}_{self.seed}"

    def randomization_config(self) -> DomainRandomizationConfig:
        if self.factor is not None:
            assert self.level is not None
            return one_factor(DomainRandomizationConfig.from_yaml(profile=SWEEP_REFERENCE), self.factor, self.level)
        return DomainRandomizationConfig.from_yaml(profile=self.randomization)


def point_key(point: tuple) -> tuple:
    """A grid point in table order (task, robot, variant, profile, then factor and level; None first)."""
    task, embodiment, variant, randomization, factor, level = point
    return task, embodiment, variant, randomization, factor or "", -1.0 if level is None else level


def grid_cells(cfg: EvalConfig, tasks: list[str]) -> list[Cell]:
    """Every cell, grid point by grid point (a worker keeps one simulator while it walks a point's seeds)."""
    if cfg.sweep:
        settings = [(SWEEP, factor, float(level)) for factor in cfg.sweep for level in cfg.sweep_levels]
    else:
        settings = [(profile, None, None) for profile in cfg.randomization]
    return [Cell(task, embodiment, variant, randomization, factor, level, seed)
            for task, embodiment, variant, (randomization, factor, level), seed
            in itertools.product(tasks, cfg.embodiment, cfg.variant, settings, cfg.seeds())]


class EpisodeRunner:
    """A worker: runs cells, keeping the simulator and policy of the grid point it is on (built anew when the
    point changes). One torch thread, in every mode: the reduction order of a matmul depends on the thread
    count, and the same arithmetic everywhere is what makes a parallel run's episodes those of a serial one."""

    def __init__(self, cfg: EvalConfig) -> None:
        import torch

        self._threads_before = torch.get_num_threads()  # given back at close (a serial run is in the caller's process)
        torch.set_num_threads(1)
        self.cfg = cfg
        self._point: tuple | None = None
        self._session: Session | None = None
        self._safety: SafetyFilter | None = None

    def session(self, cell: Cell) -> Session:
        if self._point != cell.point or self._session is None:
            self._close_session()
            cfg = self.cfg.session(cell.task, cell.embodiment, cell.variant)
            env = make_env(cell.task, backend=cfg.backend, embodiment=cell.embodiment, variant=cell.variant,
                           randomization=cell.randomization_config(), **cfg.task_options)
            try:
                if self.cfg.max_steps:
                    env.config.max_steps = self.cfg.max_steps
                self._session = build_session(cfg, env=env)
                # With --adapter its own filter runs (and is counted) on every action: no second one.
                self._safety = SafetyFilter(env.embodiment, env.action_ranges(), SafetyFilterConfig(
                    table_height=float(env.table_height))) if self.cfg.safety and not self.cfg.adapter else None
                report = getattr(self._session.policy, "calibration_report", None)
                if report:
                    write_json_atomic(self.cfg.folder / f"adapter_{cell.task}_{cell.embodiment}_{cell.variant}_"
                                      f"{cell.randomization}.json", report)
            except BaseException:
                env.close()
                raise
            self._point = cell.point
        return self._session

    def episode(self, cell: Cell, video: EpisodeVideo | None = None) -> EpisodeResult:
        session = self.session(cell)
        env, bridge, cfg = session.env, session.bridge, self.cfg
        hook = video.grab if video is not None else None
        if bridge is not None:
            command = heldout_paraphrase(env, cell.seed) if cfg.instruction == "paraphrase" else self.command(env)
            result = run_bridge_episode(env, bridge, cell.seed, command, on_frame=hook,
                                        stop_on_success=cfg.stop == "success")
        else:
            borrowed = (borrowed_instruction(env, cfg.seeds(), cell.seed) if cfg.instruction == "mismatched" else
                        heldout_paraphrase(env, cell.seed) if cfg.instruction == "paraphrase" else None)
            result = run_episode(env, session.policy, cell.seed, on_frame=hook, chunking=cfg.chunking,
                                 stop_on_success=cfg.stop == "success", instruction=borrowed, safety=self._safety)
        return dataclasses.replace(result, randomization=cell.randomization, factor=cell.factor, level=cell.level)

    def command(self, env: TaskEnv) -> str:
        command = self.cfg.command if self.cfg.command is not None else env.task.example_command
        if not command.strip():
            raise ValueError(f"--controller sage needs --command: task {env.task_name} declares no example command.")
        return command

    def __call__(self, cell: Cell) -> dict[str, Any]:
        return self.episode(cell).to_dict()

    def film(self, cell: Cell, path: Path) -> Path | None:
        """Replay `cell` with a camera on (the same episode: it is a function of its cell) and write the mp4 with
        the controller's command across the bottom."""
        video = EpisodeVideo()
        result = self.episode(cell, video)  # the caption after it: a policy's instruction is drawn at reset
        video.frames = [overlay_caption(frame, result.instruction) for frame in video.frames]
        return video.save(path)

    def close(self) -> None:
        self._close_session()
        import torch

        torch.set_num_threads(self._threads_before)

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session.env.close()  # the runner built the env (the session does not own it)
        self._session, self._point = None, None


def check_grid(cfg: EvalConfig) -> list[str]:
    """Everything about the arguments that can be wrong, found before any simulator starts; returns the tasks.
    A seed range reaching into the training seeds is a warning (it is legitimate for a training-set check)."""
    tasks = cfg.tasks()
    from sage_gr00t.sim.embodiment import get_embodiment

    for embodiment in cfg.embodiment:
        get_embodiment(embodiment)
    for task, variant in itertools.product(tasks, cfg.variant):
        declared = get_task(task).variants
        if variant not in declared:
            raise ValueError(f"Task {task} has no variant {variant!r}; it declares {', '.join(declared)}.")
    TaskConfig().with_overrides(**cfg.task_options)  # a bad --task-option, before any simulator is built
    spec = PolicySpec.parse(cfg.policy)
    if spec.kind == "checkpoint":  # missing, truncated or non-finite weights: refused before the grid starts
        from sage_gr00t.policy.gr00t.checkpoint import read_config, read_state_dict

        read_config(Path(spec.target))
        read_state_dict(Path(spec.target))
    overlap = sorted(set(cfg.seeds()) & set(TRAINING_SEEDS))
    if overlap:
        print(f"{PROG}: warning: seeds {overlap[0]}..{overlap[-1]} overlap the training seeds "
              f"{TRAINING_SEEDS.start}..{TRAINING_SEEDS.stop - 1}: those episodes are not held out.", file=sys.stderr)
    return tasks


def grid_points(records: Iterable[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    points: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        points.setdefault(Cell.of(record).point, []).append(record)
    return points


def summarize_grid(records: list[dict[str, Any]]) -> dict[str, Any]:
    """summary.json: metrics per grid point, per task and overall, and sweep curves (success per level)."""
    points = []
    for (task, embodiment, variant, randomization, factor, level), group in sorted(
            grid_points(records).items(), key=lambda item: point_key(item[0])):
        points.append({"task": task, "embodiment": embodiment, "variant": variant, "randomization": randomization,
                       "factor": factor, "level": level, **episode_metrics(group)})
    per_task: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        per_task.setdefault(record["task"], []).append(record)
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for point in points:
        if point["factor"] is not None:
            curves.setdefault(point["factor"], {}).setdefault(point["task"], []).append(
                {k: point[k] for k in ("level", "episodes", "successes", "success_rate", "success_ci95")})
    return {"points": points, "tasks": {task: episode_metrics(group) for task, group in sorted(per_task.items())},
            "overall": episode_metrics(records), "sweep": curves}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(cfg: EvalConfig, summary: dict[str, Any], console: Console) -> None:
    title = (f"SAGE-GR00T evaluation: controller={cfg.controller}, policy={cfg.policy}, backend={cfg.backend}, "
             f"instruction={cfg.instruction}, seeds {cfg.seed_start}..{cfg.seed_start + cfg.episodes - 1}")
    labels = ("task", "embodiment", "variant", "randomization")
    table = new_table(title, (*labels, "episodes", "success", "95% CI", "steps", "done s", "arm jerk", "energy J",
                              "safety", "steps/s"), left=labels)
    for column in table.columns[:len(labels) + 2]:
        column.no_wrap = True  # labels and the success count stay whole; the other numbers give way

    def row(names: tuple[str, ...], m: dict[str, Any], end_section: bool = False) -> None:
        low, high = m["success_ci95"]
        table.add_row(*names, str(m["episodes"]), f"{m['successes']}/{m['episodes']} ({m['success_rate']:.0%})",
                      f"{low:.0%}-{high:.0%}", _fmt(m["mean_steps"], ".0f"), _fmt(m["mean_completion_s"], ".1f"),
                      _fmt(m["mean_arm_jerk"], ".1f"), _fmt(m["mean_energy_j"], ".1f"),
                      _fmt(m["mean_safety_interventions"], ".1f"), _fmt(m["env_steps_per_s"], ".0f"),
                      end_section=end_section)

    points = summary["points"]
    for i, p in enumerate(points):
        randomization = f"{p['factor']} x{p['level']:g}" if p["factor"] else p["randomization"]
        last_of_task = i + 1 == len(points) or points[i + 1]["task"] != p["task"]
        row((p["task"], p["embodiment"], p["variant"], randomization), p, end_section=last_of_task)
    if len(points) > len(summary["tasks"]):  # a task over several grid points: its own total
        for task, m in summary["tasks"].items():
            row((f"{task} (all)", "", "", ""), m)
    row(("overall", "", "", ""), summary["overall"])
    console.print(table)


def film_cells(cfg: EvalConfig, cells: list[Cell]) -> list[tuple[Cell, Path]]:
    """The episodes filmed after the grid: --video's first episode of each task, and --videos for the report
    (the first seed of the first grid points, one task after another)."""
    chosen: list[tuple[Cell, Path]] = []
    if cfg.video is not None:
        for task in dict.fromkeys(c.task for c in cells):
            first = next(c for c in cells if c.task == task)
            chosen.append((first, cfg.video.with_name(f"{cfg.video.stem}_{task}{cfg.video.suffix}")))
    by_task: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.seed == cfg.seed_start:
            by_task.setdefault(cell.task, []).append(cell)
    # Round-robin over the tasks: each task's first grid point, then each task's second, ...
    order = [c for row in itertools.zip_longest(*by_task.values()) for c in row if c is not None]
    for cell in order[:cfg.videos]:
        chosen.append((cell, cfg.folder / "videos" / f"{cell.label()}.mp4"))
    return chosen


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


def run_grid(cfg: EvalConfig, cells: list[Cell], store: ResultsStore) -> None:
    """Run the cells `store` does not hold yet, adding each record the moment it arrives."""
    done = {Cell.of(r) for r in store.records}
    pending = [c for c in cells if c not in done]
    if len(pending) < len(cells):
        tqdm.write(f"resuming {store.path}: {len(cells) - len(pending)} of {len(cells)} episodes already done")
    wins = 0
    with tqdm(total=len(pending), desc="episodes", unit="ep") as bar:
        for _, record in fan_out(functools.partial(EpisodeRunner, cfg), pending, cfg.fan_out_plan()):
            store.add(record)
            wins += bool(record["success"])
            bar.set_postfix_str(f"{record['task']} seed {record['seed']}; success {wins}/{bar.n + 1}")
            bar.update()


def run(cfg: EvalConfig) -> Path:
    tasks = check_grid(cfg)
    folder = cfg.folder
    writable_folder(folder, "--out")
    if cfg.video is not None:
        writable_folder(cfg.video.parent, "--video's folder")
    cfg.fan_out_plan()  # an unreachable --ray address fails here, in seconds
    # Connected before anything is written or a progress bar shown: no cluster at --ray is one line.
    with ray_session(cfg.ray) if cfg.ray else contextlib.nullcontext():
        return evaluate_grid(cfg, tasks, folder)


def evaluate_grid(cfg: EvalConfig, tasks: list[str], folder: Path) -> Path:
    """The grid's missing cells, then the table, summary.json, the filmed episodes and report.md."""
    store = ResultsStore.open(folder, cfg.run_settings(), defaults=EvalConfig().run_settings())
    cells = grid_cells(cfg, tasks)
    console = Console(width=180)  # a log keeps the table whole; a terminal wraps it
    wanted = set(cells)
    try:
        run_grid(cfg, cells, store)
    except KeyboardInterrupt:
        kept = [r for r in store.records if Cell.of(r) in wanted]
        if kept:
            print_table(cfg, summarize_grid(kept), console)
        console.print(f"interrupted: {len(store.records)} finished episodes kept in {store.path}; run the same "
                      "command again to resume")
        raise
    records = sorted((r for r in store.records if Cell.of(r) in wanted), key=lambda r: Cell.of(r).sort_key())
    summary = summarize_grid(records)
    print_table(cfg, summary, console)
    write_json_atomic(folder / "summary.json", summary)
    videos: list[tuple[Cell, Path]] = []
    chosen = film_cells(cfg, cells)
    if chosen:
        runner = EpisodeRunner(cfg)
        try:
            for cell, path in chosen:
                try:
                    filmed = runner.film(cell, path)
                except NoVideoWriterError as exc:  # the results are written: a missing writer costs only videos
                    console.print(f"videos skipped: {exc}", markup=False)
                    break
                if filmed is not None:
                    videos.append((cell, path))
                    console.print(f"video: {path}")
        finally:
            runner.close()
    if cfg.report:
        from sage_gr00t.bench.report import write_report

        report = write_report(folder, summary, [(c.label(), p) for c, p in videos if p.parent == folder / "videos"],
                              title=f"{cfg.controller} / {cfg.policy}")
        console.print(f"report: {report}")
    console.print(f"results: {store.path}")
    return store.path


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse(EvalConfig, argv, prog=PROG, description=__doc__)
        run(cfg)
    except (ValueError, FileNotFoundError, PolicySpecError, ConnectionError, CheckpointError, WorkerError) as exc:
        text = str(exc).strip()
        if isinstance(exc, WorkerError):  # a worker's traceback: its last line says what went wrong
            text = text.splitlines()[-1] if text else ""
        message = " ".join(text.split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
