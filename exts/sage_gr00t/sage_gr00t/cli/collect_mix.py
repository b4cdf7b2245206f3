"""Collect a demonstration mix (tasks x variants x randomization profiles) in parallel into training shards.

    sage-collect-mix --recipe config/policy_v2.yaml --out outputs/shards_v2 --workers 16
    sage-train --shards outputs/shards_v2 --preset compact_v2 --out outputs/policy_v2

Each job (a few seeds of one recipe entry) is written as one shard when it ends; an interrupted run keeps the
finished shards and a re-run with the same --out skips them. `--budget-minutes` stops starting new episodes
after that long (what is finished is kept).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sage_gr00t.cli._parsing import check, parse

PROG = "sage-collect-mix"


@dataclass
class CollectMixConfig:
    """Which recipe to collect, where to, and on how many processes."""

    recipe: Path = Path("config/policy_v2.yaml")  # entries: task, variant, randomization, seeds, plan_order
    out: Path = Path("outputs/shards")  # one shard folder per job (re-runs skip finished shards)
    workers: int = max(1, (os.cpu_count() or 2) - 1)  # collector processes (one torch thread each)
    budget_minutes: float | None = None  # stop starting episodes after this long (None: no limit)

    def __post_init__(self) -> None:
        check(self.recipe.is_file(), f"--recipe {self.recipe} does not exist.")
        check(self.workers >= 1, f"--workers must be >= 1, got {self.workers}.")
        check(self.budget_minutes is None or self.budget_minutes > 0,
              f"--budget-minutes must be > 0, got {self.budget_minutes}.")


def main(argv: list[str] | None = None) -> int:
    cfg = parse(CollectMixConfig, argv, prog=PROG, description=__doc__)
    from sage_gr00t.data.shards import MixRecipe, collect_mix
    from sage_gr00t.tasks import get_task

    try:
        recipe = MixRecipe.from_yaml(cfg.recipe)
        for entry in recipe.entries:
            get_task(entry.task)(entry.variant)  # unknown task or variant: one clear line before any work
    except (ValueError, TypeError) as exc:
        print(f"{PROG}: error: {exc}")
        return 2
    reports = collect_mix(recipe, cfg.out, cfg.workers, cfg.budget_minutes)
    kept = sum(r.get("kept", 0) for r in reports)
    failed = sum(len(r.get("failed", [])) for r in reports)
    skipped = sum(bool(r.get("skipped")) for r in reports)
    print(f"{kept} episodes kept, {failed} expert failures dropped, {skipped} shards already there -> {cfg.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
