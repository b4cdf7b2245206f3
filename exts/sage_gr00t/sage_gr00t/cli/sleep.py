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
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.learn.mimic import MimicConfig
from sage_gr00t.learn.sleep import SleepCycleConfig

PROG = "sage-sleep"


@dataclass
class SleepCommandConfig:
    task: str = "pick_apple"  # the task to live, dream and be evaluated on
    policy: str = "assets/policies/gr00t_compact"  # the live policy's checkpoint folder (read, never written)
    datasets: list[str] = field(default_factory=list)  # LeRobot datasets of source demonstrations (recorded)
    memory: str | None = None  # SQLite experience store: wake episodes, stored dreams (None: none)
    cycles: int = 1  # sleep cycles to run
    wake_episodes: int = 0  # policy episodes before each sleep (needs --memory)
    wake_seed_start: int = 3_000_000  # wake episodes' seeds (apart from training, evaluation and dream seeds)
    store_sources: int = 10  # newest successful stored episodes also used as dream sources
    device: str = "cpu"
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    mimic: MimicConfig = field(default_factory=MimicConfig)  # the dream generator (its task is --task)
    sleep: SleepCycleConfig = field(default_factory=SleepCycleConfig)  # one cycle's selection, training, eval

    def __post_init__(self) -> None:
        check(self.cycles >= 1, f"--cycles must be >= 1, got {self.cycles}.")
        check(self.wake_episodes >= 0, f"--wake-episodes must be >= 0, got {self.wake_episodes}.")
        check(self.wake_episodes == 0 or self.memory is not None, "--wake-episodes needs --memory (a store).")
        check(bool(self.datasets) or self.memory is not None,
              "Give source demonstrations (--datasets) or a memory store (--memory) to dream from.")


def main(argv: list[str] | None = None) -> int:
    cfg = parse(SleepCommandConfig, argv, prog=PROG, description=__doc__)
    import torch

    from sage_gr00t.learn.mimic import (
        MimicDreamGenerator,
        _make_env,
        dataset_recordings,
        parse_recordings,
        store_recordings,
    )
    from sage_gr00t.learn.sleep import SleepCycleRunner, dataset_episodes, record_episode
    from sage_gr00t.memory.store import ExperienceStore
    from sage_gr00t.policy.factory import resolve_path
    from sage_gr00t.policy.gr00t import load_policy

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    mimic = replace(cfg.mimic, task=cfg.task)
    policy = load_policy(resolve_path(cfg.policy), embodiment=mimic.embodiment, device=cfg.device)
    store = ExperienceStore(cfg.memory) if cfg.memory else None
    demos = [r for d in cfg.datasets for r in dataset_recordings(d)]
    replay = [e for d in cfg.datasets for e in dataset_episodes(d)]
    wake_env = (_make_env(cfg.task, mimic.embodiment, mimic.variant, "none", cfg.sleep.eval_image_size)
                if cfg.wake_episodes else None)
    runner: SleepCycleRunner | None = None
    wake_seed = cfg.wake_seed_start
    try:
        for cycle in range(cfg.cycles):
            wake = []
            if cfg.wake_episodes:
                print(f"{PROG}: cycle {cycle + 1}: {cfg.wake_episodes} wake episodes", file=sys.stderr)
            for _ in range(cfg.wake_episodes):
                wake.append(bool(record_episode(store, wake_env, policy, wake_seed, cfg.task,
                                                meta={"randomization": "none", "wake": True}).success))
                wake_seed += 1
            own = store_recordings(store, cfg.task, limit=cfg.store_sources) if store is not None else []
            sources = parse_recordings(demos + own, cfg.task, mimic.skill_margin)
            if not sources:
                raise SystemExit(f"{PROG}: error: no usable source episode (recorded demonstrations or stored "
                                 "successes that replay) to dream from.")
            generator = MimicDreamGenerator(sources, replace(mimic, seed_start=mimic.seed_start + 10_000 * cycle))
            try:
                if runner is None:
                    runner = SleepCycleRunner(policy, generator, cfg.sleep, store=store, replay=replay,
                                              on_phase=lambda phase: print(f"{PROG}: {phase}", file=sys.stderr))
                runner.generator = generator
                report = runner.run()
            finally:
                generator.close()
            print(json.dumps({
                "cycle": report["cycle"], "decision": report["decision"], "wake_successes": sum(wake),
                "wake_episodes": len(wake), "sources": len(sources), "own_sources": len(own),
                "dreams": report.get("dreams"), "before": (report.get("before") or {}).get("success_rate"),
                "after": (report.get("after") or {}).get("success_rate"), "seconds": report["seconds"]}))
    finally:
        if runner is not None:
            runner.close()
        if wake_env is not None:
            wake_env.close()
        if store is not None:
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
