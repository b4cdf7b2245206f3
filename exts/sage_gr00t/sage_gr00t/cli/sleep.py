"""Run SAGE's sleep cycles from the command line: wake, remember, dream from experience, keep what helps.

    sage-sleep --task pick_apple --policy assets/policies/gr00t_compact \
        --datasets outputs/datasets/pick_apple_sage --memory outputs/memory.db --out outputs/sleep \
        --cycles 3 --wake-episodes 5

Each cycle: the live policy works through `--wake-episodes` episodes in a private simulator and what succeeded
and failed goes to the memory store; then one sleep cycle (`learn/sleep.py`): salient experience (failures
first) -> mimic dreams (`learn/mimic.py`) from the demonstrations in `--datasets` and the robot's own
successful stored episodes -> fine-tune a copy of the policy on dreams plus replayed demonstrations ->
evaluate before / after on held-out seeds -> keep it only if it is not worse -> checkpoint
(`<out>/cycle-NNN/`, `<out>/live.json`) and report (`<out>/sleep_report.json`, `.png`). The policy folder
given is never written. Prints one JSON line per cycle.

Wake episodes are commanded through SAGE (`--wake-controller sage`: the bridge plans the task's example
command, or `--command`, and runs the policy subtask by subtask) or by the bare policy. With `--workers N` (or
`--ray auto|ADDRESS`, as in `sage-eval`) the wake episodes, the dream attempts and the held-out evaluation run
in N spawned processes, each with its own simulator and a CPU copy of the weights (read from a checkpoint
folder under `<out>/work/`); the results are those of `--workers 1` for the same seeds, and everything is
written to the store by this process. Fine-tuning runs on `--device` (cuda: the GPU). `--budget-minutes`
gives each cycle's fine-tuning its share of the time left; `--progress FILE` gets one line per phase.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.learn.mimic import MimicConfig
from sage_gr00t.learn.planner_sleep import PlannerSleepConfig
from sage_gr00t.learn.sleep import CONTROLLERS, SleepCycleConfig

PROG = "sage-sleep"
MIN_TRAIN_SECONDS = 15.0


@dataclass
class SleepCommandConfig:
    task: str = "pick_apple"  # the task to live, dream and be evaluated on
    policy: str = "assets/policies/gr00t_compact"  # the live policy's checkpoint folder (read, never written)
    datasets: list[str] = field(default_factory=list)  # LeRobot datasets of source demonstrations (recorded)
    memory: str | None = None  # SQLite experience store: wake episodes, stored dreams (None: none)
    cycles: int = 1  # sleep cycles to run
    wake_episodes: int = 0  # policy episodes before each sleep (needs --memory)
    wake_max_steps: int | None = None  # a wake episode's step limit (None: the task's own)
    wake_seed_start: int = 3_000_000  # wake episodes' seeds (apart from training, evaluation and dream seeds)
    store_sources: int = 10  # newest successful stored episodes also used as dream sources
    wake_controller: str = "sage"  # sage: commanded through the SAGE bridge; policy: the bare policy
    planner: str = "assets/planner"  # SAGE's H-module (--wake-controller sage)
    # Each cycle also teaches the H-module the commands the store's successful episodes confirmed (needs
    # --memory); kept weights go to <sleep.out>/planner, which later wake episodes plan with.
    learn_planner: bool = False
    planner_sleep: PlannerSleepConfig = field(default_factory=PlannerSleepConfig)  # the planner's consolidation
    command: str | None = None  # SAGE's command while awake (None: the task's example command)
    device: str = "cpu"  # fine-tuning device (cuda: the GPU); episodes in workers always run on the CPU
    num_threads: int | None = None  # torch CPU threads of this process (None: torch's default)
    workers: int = 1  # processes for wake episodes, dream attempts and evaluation (1: in this process)
    ray: str | None = None  # auto | HOST:PORT | ray://HOST:PORT: Ray actors instead (paths must exist on every node)
    # Wall-clock budget of the whole run (None: none): each cycle's fine-tuning gets at most its share of what
    # is left (the other phases timed on the cycle before); a cycle is skipped only when not even
    # MIN_TRAIN_SECONDS of training would fit.
    budget_minutes: float | None = None
    progress: str | None = None  # append one line per phase here (elapsed seconds, cycle, phase)
    mimic: MimicConfig = field(default_factory=MimicConfig)  # the dream generator (its task is --task)
    sleep: SleepCycleConfig = field(default_factory=SleepCycleConfig)  # one cycle's selection, training, eval

    def __post_init__(self) -> None:
        check(self.cycles >= 1, f"--cycles must be >= 1, got {self.cycles}.")
        check(self.wake_episodes >= 0, f"--wake-episodes must be >= 0, got {self.wake_episodes}.")
        check(self.wake_episodes == 0 or self.memory is not None, "--wake-episodes needs --memory (a store).")
        check(bool(self.datasets) or self.memory is not None,
              "Give source demonstrations (--datasets) or a memory store (--memory) to dream from.")
        check(self.wake_controller in CONTROLLERS,
              f"--wake-controller must be one of {CONTROLLERS}, got {self.wake_controller!r}.")
        check(self.workers >= 1, f"--workers must be >= 1, got {self.workers}.")
        check(self.budget_minutes is None or self.budget_minutes > 0, "--budget-minutes must be > 0.")
        check(not self.learn_planner or self.memory is not None, "--learn-planner needs --memory (a store).")


def main(argv: list[str] | None = None) -> int:
    cfg = parse(SleepCommandConfig, argv, prog=PROG, description=__doc__)
    t0 = time.monotonic()
    import torch

    from sage_gr00t.learn.mimic import MimicDreamGenerator, dataset_recordings, parse_recordings, store_recordings
    from sage_gr00t.learn.sleep import EpisodeSpec, SleepCycleRunner, live_curve, replayed_episodes, wake
    from sage_gr00t.memory.store import ExperienceStore
    from sage_gr00t.parallel import FanOut, ray_session
    from sage_gr00t.policy.factory import resolve_path
    from sage_gr00t.policy.gr00t import load_policy

    progress = Path(cfg.progress) if cfg.progress else None
    if progress is not None:
        progress.parent.mkdir(parents=True, exist_ok=True)
    cycle_now = [0]

    def note(text: str) -> None:
        line = f"{time.monotonic() - t0:7.1f}s cycle {cycle_now[0]} {text}"
        print(f"{PROG}: {line}", file=sys.stderr)
        if progress is not None:
            with progress.open("a") as f:
                f.write(line + "\n")

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    plan = FanOut(workers=cfg.workers, ray=cfg.ray)  # a bad --ray address fails here, in seconds
    mimic = replace(cfg.mimic, task=cfg.task)
    policy = load_policy(resolve_path(cfg.policy), embodiment=mimic.embodiment, device=cfg.device)
    store = ExperienceStore(cfg.memory) if cfg.memory else None
    demos = [r for d in cfg.datasets for r in dataset_recordings(d)]
    # The demonstrations' frames re-rendered from their seeds and actions: no LeRobot needed to read them.
    replay = replayed_episodes(demos, cfg.task, cfg.sleep.eval_image_size)
    note(f"start: {len(demos)} demonstrations, {cfg.workers} workers, training on {cfg.device}")
    planner_sleep = None
    if cfg.learn_planner:
        from sage_gr00t.learn.planner_sleep import PlannerConsolidator
        from sage_gr00t.plan.planner import HModulePlanner

        planner_out = str(Path(cfg.sleep.out) / "planner")
        planner_sleep = PlannerConsolidator(HModulePlanner.load(resolve_path(cfg.planner)),
                                            replace(cfg.planner_sleep, out=planner_out))
    runner = SleepCycleRunner(policy, None, cfg.sleep, store=store, replay=replay, plan=plan,
                              on_phase=lambda phase: note(phase), planner_sleep=planner_sleep)
    wake_spec = EpisodeSpec(cfg.task, mimic.embodiment, mimic.variant, cfg.sleep.eval_image_size, cfg.wake_max_steps,
                            controller=cfg.wake_controller, planner=cfg.planner, command=cfg.command)
    wake_seed = cfg.wake_seed_start
    other_s: float | None = None  # the last cycle's seconds outside fine-tuning
    try:
        with ray_session(cfg.ray) if cfg.ray else contextlib.nullcontext():
            for cycle in range(cfg.cycles):
                cycle_now[0] = cycle + 1
                started = time.monotonic()
                if cfg.budget_minutes is not None:
                    share = (60 * cfg.budget_minutes - (started - t0)) / (cfg.cycles - cycle)
                    train_s = share - other_s if other_s is not None else cfg.sleep.max_train_seconds
                    if train_s is not None and train_s < MIN_TRAIN_SECONDS:
                        note(f"stop: no time left for another cycle in the {cfg.budget_minutes:g} min budget")
                        break
                    if train_s is not None and cfg.sleep.max_train_seconds is not None:
                        train_s = min(train_s, cfg.sleep.max_train_seconds)
                    runner.config = replace(cfg.sleep, max_train_seconds=train_s)
                wake_ok = []
                if cfg.wake_episodes:
                    assert store is not None
                    note(f"wake: {cfg.wake_episodes} episodes ({cfg.wake_controller})")
                    seeds = list(range(wake_seed, wake_seed + cfg.wake_episodes))
                    wake_seed += cfg.wake_episodes
                    wake_ok = [e.success for e in wake(store, wake_spec, runner.live_checkpoint(), seeds, plan,
                                                       {"controller": cfg.wake_controller, "cycle": cycle + 1})]
                    note(f"wake: {sum(wake_ok)}/{len(wake_ok)} succeeded")
                own = store_recordings(store, cfg.task, limit=cfg.store_sources) if store is not None else []
                sources = parse_recordings(demos + own, cfg.task, mimic.skill_margin)
                if not sources:
                    raise SystemExit(f"{PROG}: error: no usable source episode (recorded demonstrations or stored "
                                     "successes that replay) to dream from.")
                generator = MimicDreamGenerator(sources, replace(mimic, seed_start=mimic.seed_start + 10_000 * cycle))
                try:
                    runner.generator = generator
                    report = runner.run({"wake": {"controller": cfg.wake_controller, "episodes": len(wake_ok),
                                                  "successes": sum(wake_ok)}, "sources": len(sources),
                                         "own_sources": len(own)})
                finally:
                    generator.close()
                if (report.get("planner") or {}).get("decision") == "kept":  # wake plans with what sleep taught
                    wake_spec = replace(wake_spec, planner=report["planner"]["checkpoint"])
                last_cycle_s = time.monotonic() - started
                other_s = last_cycle_s - float(report.get("train_seconds") or 0.0)
                before = (report.get("before") or {}).get("success_rate")
                after = (report.get("after") or {}).get("success_rate")
                dreams = report.get("dreams") or {}
                note(f"end: {report['decision']} before={before} after={after} "
                     f"dreams={dreams.get('kept')}/{dreams.get('attempted')} steps={report.get('steps')} "
                     f"train_s={report.get('train_seconds')} cycle_s={last_cycle_s:.0f}")
                print(json.dumps({
                    "cycle": report["cycle"], "decision": report["decision"], "wake_successes": sum(wake_ok),
                    "wake_episodes": len(wake_ok), "sources": len(sources), "own_sources": len(own),
                    "dreams": report.get("dreams"), "before": before, "after": after,
                    "steps": report.get("steps"), "seconds": report["seconds"],
                    "planner": {k: v for k, v in (report.get("planner") or {}).items() if k != "new_commands"}}),
                    flush=True)
        note("live curve " + " ".join(f"{x}:{y:.2f}" for x, y in live_curve(runner.history)))
    finally:
        runner.close()
        if store is not None:
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
