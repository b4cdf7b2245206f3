"""Camera faults through the SAGE bridge, with and without trust: does trust keep the task working?

    sage-bench faults --seeds 20 --fault-steps 60      # the camera fails for 3 s (~25 min)
    sage-bench faults --seeds 20 --fault-step 40       # ... once, reaching for the first block
    sage-bench faults --seeds 20                       # ... and stays broken
    sage-bench faults --seeds 20 --fault-at estimator  # only the object estimator's input

Closed loop on sort_blocks from one command ("sort the blocks into the bins of the same colour") with the
shipped compact policy and H-module planner, pinned to one core. At `--fault-step` a camera
fault (perceive/faults.py) is switched on for `--fault-steps` control steps or the rest of the episode; by default
once in each phase of the task (reaching for the first block, carrying it, the second block), because what a
fault costs depends on what the robot is doing when it strikes (`sage_gr00t.bench.faults`). `--fault-at
camera` (default): the camera itself fails (`image_noise` on the pixels, `frozen` frames, `dropout` = black
images), so the policy's image AND the object estimator's input are corrupted. `--fault-at estimator`: only
the estimator's input is (`noise` on its estimates, `frozen`, `dropout`); the policy keeps seeing the true
image.

Each episode runs twice: WITH trust (the normal pipeline: trust-weighted fusion, and the robot holds still on
missing or black images and while frozen ones are distrusted, `BridgeConfig.camera_hold_below`) and
WITHOUT (`use_trust=False`: fusion treats every sensor as fully trusted, drops nothing, ignores the trust engine's
validity checks, and nothing holds the robot). Per fault x mode: task success (the task's own predicate),
control steps from the fault until the camera's trust falls below 0.3 (the trust engine runs in both modes;
only with trust does anything act on it), the mean fused object-position error during the fault (ground
truth used for scoring only), and the steps held. The L-module judges subtask completion from these fused
positions, so wrong ones end subtasks early (the plan finishes and the robot holds still) or stall them
until they fail. Both modes see the same seeds and the same policy noise, so the comparison is paired: the
table counts the episodes only one mode solved and gives the exact McNemar p-value (a sign test over those).

`--stop sage` removes the simulator's success oracle: an episode runs until SAGE itself decides the plan is
over (every subtask judged done or failed; it then holds still) or the step limit, and success is the task's
predicate at that moment. A real robot has no oracle, so it must know when it is done; the table then also
counts episodes where SAGE reported "done" and the task really was done.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from sage_gr00t.bench.faults import ALL_FAULTS, DEFAULT_STARTS, TRUST_LOW, FaultSchedule
from sage_gr00t.bench.process import pin_to_core
from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.paths import REPO_ROOT

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from sage_gr00t.session import SessionConfig

PROG = "sage-bench faults"
TASK = "sort_blocks"
FaultKind = Literal["dropout", "frozen", "image_noise", "noise", "none"]
if get_args(FaultKind) != ALL_FAULTS:  # the flag's choices are the library's fault kinds
    raise ImportError(f"FaultKind {get_args(FaultKind)} != sage_gr00t.bench.faults.ALL_FAULTS {ALL_FAULTS}")


@dataclass
class FaultsBenchConfig:
    """The fault schedule, the SAGE session around it, and where the results go."""

    seeds: int = 20  # episodes per fault, phase and mode (held-out seeds; 20: ~25 min with the defaults)
    seed_start: int = 1000  # first seed (held out: demonstrations are collected from seed 0 up)
    # camera: the camera itself fails, so the policy's image is corrupted too; estimator: only the object
    # estimator's input is, the policy sees the true image.
    fault_at: Literal["camera", "estimator"] = "camera"
    faults: list[FaultKind] | None = None  # None: none + the three faults of --fault-at
    # Control steps at which the fault starts, one run each (the task's phases: reaching for the first block,
    # carrying it, the second block; a clean episode takes ~140).
    fault_step: list[int] = field(default_factory=lambda: list(DEFAULT_STARTS))
    fault_steps: int = 0  # control steps the fault lasts (0: to the end of the episode)
    # Episode step limit (None: the task's, 400); with a long outage, add its length so the robot keeps its
    # usual working time.
    max_steps: int | None = None
    # The session's policy and planner (SessionConfig's defaults; written out because importing SessionConfig
    # loads numpy and torch, whose threads must start after this process is pinned to its core).
    policy: str = "assets/policies/gr00t_compact"  # expert | checkpoint folder | zmq://HOST:PORT | upstream:CKPT
    planner: str = "assets/planner"  # H-module checkpoint folder
    command: str = "sort the blocks into the bins of the same colour"  # the user command of every episode
    # Language the policy gets: the whole command, or the L-module's current subtask.
    language_mode: Literal["command", "subtask"] = "command"
    # End an episode at the simulator's success (oracle) or when SAGE's plan is over (sage).
    stop: Literal["oracle", "sage"] = "oracle"
    core: int | None = None  # CPU core to pin to (None: the first allowed)
    json: Path = REPO_ROOT / "outputs" / "bench_faults.json"  # results of every episode, and the settings
    # Print one table of these saved --json results (runs of the same settings split over cores, e.g. by
    # --faults) instead of running.
    tabulate: list[Path] | None = None

    def __post_init__(self) -> None:
        check(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}.")
        check(bool(self.fault_step) and min(self.fault_step) >= 0,
              f"--fault-step needs one or more control steps >= 0, got {self.fault_step}.")
        check(self.fault_steps >= 0, f"--fault-steps must be >= 0 (0: to the end), got {self.fault_steps}.")
        check(self.max_steps is None or self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}.")
        check(bool(self.command.strip()), "--command must not be empty.")
        check(self.tabulate is None or bool(self.tabulate), "--tabulate needs one or more JSON files.")
        self.schedule()

    def schedule(self) -> FaultSchedule:
        return FaultSchedule(fault_at=self.fault_at, faults=tuple(self.faults or ()), starts=tuple(self.fault_step),
                             duration=self.fault_steps)

    def session(self) -> SessionConfig:
        """The SAGE session with trust; the no-trust one is the same with `use_trust=False`."""
        from sage_gr00t.session import SessionConfig

        return SessionConfig(task=TASK, policy=self.policy, planner=self.planner, device="cpu", controller="sage",
                             language_mode=self.language_mode,
                             task_options={"max_steps": self.max_steps} if self.max_steps else {})


def results_table(results: list[dict], meta: dict) -> Table:
    """One row per fault x phase x mode, and the fault's phases pooled; `meta`: the run's settings."""
    import numpy as np

    from sage_gr00t.bench.stats import paired_mcnemar
    from sage_gr00t.bench.tables import new_table

    faults = list(dict.fromkeys(r["fault"] for r in results))
    modes = list(dict.fromkeys(r["mode"] for r in results))
    seeds = meta["seeds"]
    span = f"for {meta['fault_steps']} steps" if meta["fault_steps"] else "to the end"
    table = new_table(
        f"{TASK} through the SAGE bridge, {meta['fault_at']} fault {span} from step "
        f"{', '.join(map(str, meta['fault_steps_at']))} (seeds {seeds[0]}..{seeds[-1]}, core "
        f"{meta['core']}, episodes end: {meta['stop']} or step {meta.get('max_steps', 400)}, policy "
        f"given the {meta['language_mode']})",
        ("fault", "from step", "fusion", "success", "paired: only trust / only no trust (p)",
         "SAGE said done, and it was", f"steps to trust < {TRUST_LOW}", "fused error during fault (m)",
         "subtasks done / failed", "plan ended, task not done", "steps held (camera distrusted)",
         "hand travel during fault (m)", "objects off the table"),
        left=("fault", "fusion"))
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

    def episode(r: dict) -> tuple:  # the same episode in both modes
        return r["seed"], r["fault"], r["fault_step"]

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
                    only_trust, only_blind, pvalue = paired_mcnemar(
                        rs, [r for r in group if r["mode"] == modes[1]], key=episode)
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


def print_report(console: Console, results: list[dict], meta: dict) -> None:
    console.print(results_table(results, meta))
    console.print("fused error: mean over objects and over the steps from the fault start (for 'none': from the "
                  "same step); plan ended: the L-module judged every subtask finished (or failed) from perceived "
                  "state while the task was not done, so the bridge held the robot still. 'all phases' pools the "
                  "fault's runs; paired: episodes (same seed, fault and phase) only trust / only no trust solved, with "
                  "the exact McNemar p-value.", highlight=False)


def tabulate(paths: list[Path]) -> int:
    """One table of runs split over several processes (one per core)."""
    from rich.console import Console

    try:
        runs = [json.loads(p.read_text()) for p in paths]
    except (OSError, ValueError) as exc:
        return error(PROG, f"cannot read --tabulate results: {exc}")
    meta = {k: v for k, v in runs[0].items() if k != "results"}
    meta["core"] = ", ".join(str(r.get("core")) for r in runs)
    meta["seeds"] = sorted({seed for r in runs for seed in r["seeds"]})
    print_report(Console(width=200), [r for run in runs for r in run["results"]], meta)
    return 0


def run(cfg: FaultsBenchConfig) -> int:
    if cfg.tabulate:
        return tabulate(cfg.tabulate)
    try:
        core = pin_to_core(cfg.core)  # before numpy / torch start their threads
    except ValueError as exc:
        return error(PROG, str(exc))
    import torch
    from rich.console import Console

    from sage_gr00t.bench.faulted_episode import run_faulted_episode
    from sage_gr00t.policy.factory import PolicySpecError
    from sage_gr00t.session import build_session

    torch.set_num_threads(1)
    console = Console(width=200)
    session_config = cfg.session()
    try:
        with_trust = build_session(session_config)
    except (PolicySpecError, FileNotFoundError) as exc:
        return error(PROG, str(exc))
    env = with_trust.env
    # The same env, policy and planner without trust: the two modes differ only in the bridge.
    blind = build_session(replace(session_config, use_trust=False), env=env, policy=with_trust.policy,
                          planner=with_trust.planner)
    bridges = {"trust": with_trust.bridge, "no trust": blind.bridge}
    schedule = cfg.schedule()
    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.seeds))
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        for fault, fault_step in schedule.runs():
            for mode, bridge in bridges.items():
                for seed in seeds:
                    r = run_faulted_episode(env, bridge, seed, cfg.command, fault, fault_step, schedule, cfg.stop)
                    r["mode"] = mode
                    results.append(r)
                    console.print(f"[{time.perf_counter() - start:6.0f} s] {fault:8s} at {fault_step:3d} {mode:8s} "
                                  f"seed {seed}: {'success' if r['success'] else 'FAIL   '} in {r['steps']} steps, "
                                  f"trust<0.3 after {r['trust_low_after']}, fused error {r['fused_error']:.3f} m, "
                                  f"subtasks done {r['done']} failed {r['failed']}, held {r['held_steps']}; "
                                  f"{r['message']}", highlight=False, markup=False)
        max_steps = env.config.max_steps
    finally:
        with_trust.close()
    meta = {"fault_at": cfg.fault_at, "fault_steps_at": cfg.fault_step, "fault_steps": cfg.fault_steps,
            "max_steps": max_steps,
            "stop": cfg.stop, "language_mode": cfg.language_mode, "seeds": seeds, "core": core}
    cfg.json.parent.mkdir(parents=True, exist_ok=True)
    cfg.json.write_text(json.dumps({**meta, "results": results}, indent=1))
    print_report(console, results, meta)
    console.print(f"results: {cfg.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(FaultsBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
