"""A demonstration mix collected in parallel straight into training-cache shards (no LeRobot, no video codec).

A recipe (`config/policy_v2.yaml`) lists (task, variant, randomization profile, seeds) entries. Each entry is
split into jobs of a few seeds; worker processes run the scripted expert on them and write each job's
successful episodes as one shard folder (`frames.npy` uint8 at the backbone's resolution, `arrays.npz`,
`meta.json`: the training cache's layout, see `policy.gr00t.training.DemoData`). A job is written whole or
not at all (atomic rename), so an interrupted run keeps every finished shard and a re-run skips them.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from sage_gr00t.data.lerobot_dataset import SUBTASK_KEY
from sage_gr00t.modality import EGO_VIEW, JOINT_GROUPS, action_key, state_key


@dataclass(frozen=True)
class MixEntry:
    task: str
    variant: str = "train"
    randomization: str = "none"  # a profile of config/domain_randomization.yaml
    seeds: int = 100  # seeds tried: seed_start .. seed_start + seeds - 1 (failed expert episodes are dropped)
    seed_start: int = 0
    plan_order: str = "shuffled"  # the expert's subtask order (see ExpertConfig)
    # "drawn": one episode per seed with the goal the seed draws; "each": one episode per goal of the variant
    # (Task.goal_choices) in the seed's one scene, so that only the instruction tells the goals apart.
    goals: str = "drawn"

    def __post_init__(self) -> None:
        if self.goals not in ("drawn", "each"):
            raise ValueError(f"Recipe entry {self.task}/{self.variant}: goals must be 'drawn' or 'each', "
                             f"not {self.goals!r}.")


@dataclass
class MixRecipe:
    entries: list[MixEntry] = field(default_factory=list)
    image_size: int = 224  # rendered ego_view size (the shards store it resized to the backbone's size)
    cache_size: int = 128  # stored frame size (the compact backbone's input)
    seeds_per_job: int = 8

    @classmethod
    def from_yaml(cls, path: str | Path) -> MixRecipe:
        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - {"entries", "image_size", "cache_size", "seeds_per_job"}
        if unknown:
            raise ValueError(f"Recipe {path}: unknown keys {sorted(unknown)}.")
        entries = [MixEntry(**e) for e in data.get("entries", [])]
        if not entries:
            raise ValueError(f"Recipe {path} lists no entries.")
        return cls(entries, **{k: v for k, v in data.items() if k != "entries"})

    def jobs(self) -> list[tuple[MixEntry, int, int]]:
        """(entry, first seed, seed count) per job, the entries interleaved: a time budget that ends the run
        early then cuts every entry by about the same share."""
        per_entry = [[(entry, start, min(self.seeds_per_job, entry.seed_start + entry.seeds - start))
                      for start in range(entry.seed_start, entry.seed_start + entry.seeds, self.seeds_per_job)]
                     for entry in self.entries]
        return [job for round_ in itertools.zip_longest(*per_entry) for job in round_ if job is not None]


def shard_name(entry: MixEntry, start: int) -> str:
    goals = "-each" if entry.goals == "each" else ""
    return f"{entry.task}-{entry.variant}{goals}-{entry.randomization}-{start:05d}"


def collect_job(entry: MixEntry, start: int, count: int, recipe: MixRecipe, out: Path, deadline: float) -> dict:
    """Run the expert on seeds start..start+count-1 and write their successful episodes as one shard."""
    import torch

    torch.set_num_threads(1)
    from sage_gr00t.data.collect import run_expert_episode
    from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert
    from sage_gr00t.policy.gr00t.training import DemoData
    from sage_gr00t.sim.randomization import DomainRandomizationConfig
    from sage_gr00t.tasks import make_env

    target = out / shard_name(entry, start)
    if (target / "meta.json").is_file():
        return {"shard": target.name, "skipped": True}
    env = make_env(entry.task, variant=entry.variant,
                   randomization=DomainRandomizationConfig.from_yaml(profile=entry.randomization),
                   image_height=recipe.image_size, image_width=recipe.image_size)
    expert = ScriptedExpert(env, ExpertConfig(plan_order=entry.plan_order))
    goal_count = len(env.task.goal_choices()) if entry.goals == "each" else 0
    if entry.goals == "each" and goal_count == 0:
        raise ValueError(f"Recipe entry {entry.task}/{entry.variant}: goals 'each' needs a variant with several "
                         "goals (a language-following scene).")
    episodes, failed = [], []
    trials = [(seed, goal) for seed in range(start, start + count) for goal in (range(goal_count) or [None])]
    try:
        for seed, goal in trials:
            if time.time() > deadline:
                break
            env.task.pin_goal(goal)
            steps: list[tuple[dict, dict]] = []
            outcome = run_expert_episode(env, expert, seed, lambda obs, act, steps=steps: steps.append((obs, act)))
            if not outcome.success:
                failed.append(seed if goal is None else [seed, goal])
                continue
            episodes.append({
                "images": np.stack([o[EGO_VIEW] for o, _ in steps]),
                **{state_key(g): np.stack([o[state_key(g)] for o, _ in steps]) for g in JOINT_GROUPS},
                **{action_key(g): np.stack([a[action_key(g)] for _, a in steps]) for g in JOINT_GROUPS},
                "task": env.instruction,
                "subtask": [o.get(SUBTASK_KEY, env.instruction) for o, _ in steps],
            })
        robot = env.embodiment.name
    finally:
        env.close()
    if episodes:
        data = DemoData.from_episodes(episodes, recipe.cache_size, robot)
        tmp = out / f".{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        data.save(tmp, extra={"entry": asdict(entry), "seeds": [start, start + count], "failed_seeds": failed})
        tmp.replace(target)
    frames = sum(len(e["images"]) for e in episodes)
    return {"shard": target.name, "kept": len(episodes), "failed": failed, "frames": frames}


def _worker(args: tuple) -> dict:
    return collect_job(*args)


def collect_mix(recipe: MixRecipe, out: Path, workers: int, budget_minutes: float | None = None,
                progress: bool = True) -> list[dict]:
    """Run every job of `recipe` on `workers` processes; returns one report per job."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    deadline = time.time() + 60 * budget_minutes if budget_minutes else float("inf")
    jobs = [(entry, start, count, recipe, out, deadline) for entry, start, count in recipe.jobs()]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    reports = []
    from tqdm import tqdm

    with mp.get_context("spawn").Pool(workers, maxtasksperchild=8) as pool:
        for report in tqdm(pool.imap_unordered(_worker, jobs), total=len(jobs), disable=not progress, unit="job"):
            reports.append(report)
    (out / "collection.json").write_text(json.dumps(reports, indent=1))
    return reports


def shard_dirs(roots: list[str | Path]) -> list[Path]:
    """Every shard folder (one with meta.json) under `roots` (a root may itself be a shard)."""
    found: list[Path] = []
    for root in map(Path, roots):
        if (root / "meta.json").is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(p.parent for p in root.glob("*/meta.json")))
        else:
            raise FileNotFoundError(f"No training shards at {root}: run sage-collect-mix first.")
    if not found:
        raise FileNotFoundError(f"No training shards (folders with meta.json) under {[str(r) for r in roots]}.")
    return found
