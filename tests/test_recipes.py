"""The shipped training recipes (config/policy_v*.yaml) keep the evaluation held out: every expert episode comes
from the training seeds, no recipe collects a `novel` variant, and every entry names an installed task, variant
and randomization profile."""
from __future__ import annotations

from pathlib import Path

import pytest

from sage_gr00t.cli.eval import TRAINING_SEEDS
from sage_gr00t.data.shards import MixRecipe
from sage_gr00t.paths import REPO_ROOT
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.tasks import get_task

RECIPES = sorted((REPO_ROOT / "config").glob("policy_v*.yaml"))


def test_the_shipped_recipes_are_found() -> None:
    assert len(RECIPES) >= 5, RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_a_shipped_recipe_collects_only_training_seeds_of_installed_tasks(path: Path) -> None:
    recipe = MixRecipe.from_yaml(path)
    for entry in recipe.entries:
        assert entry.variant != "novel", f"{path.name}: {entry.task} collects the held-out novel variant"
        assert entry.variant in get_task(entry.task).variants, f"{path.name}: {entry.task}/{entry.variant}"
        DomainRandomizationConfig.from_yaml(profile=entry.randomization)  # raises on an unknown profile
        if entry.source == "expert":
            last = entry.seed_start + entry.seeds - 1
            assert entry.seed_start in TRAINING_SEEDS and last in TRAINING_SEEDS, \
                f"{path.name}: {entry.task}/{entry.variant} seeds {entry.seed_start}..{last} reach the evaluation's"
