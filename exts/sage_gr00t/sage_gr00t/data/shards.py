"""A demonstration mix collected in parallel straight into training-cache shards (no LeRobot, no video codec).

A recipe (`config/policy_v2.yaml`) lists (task, variant, randomization profile, seeds) entries. Each entry is
split into jobs of a few seeds; worker processes run the entry's source on them and write each job's
successful episodes as one shard folder. The source is the scripted expert (`source: expert`), or dreams
(`source: mimic`): MimicGen-style episodes made from a LeRobot dataset of recorded demonstrations
(`demos`, its first `demo_count` episodes) by `learn.mimic`, one attempt per seed, with no expert involved.
A shard's meta.json keeps what it came from (entry, kept / attempted, each dream's provenance), which
`provenance` sums into the checkpoint's `provenance.json`. Shard folder: `frames.npy` uint8 at the
backbone's resolution, `arrays.npz`, `meta.json` (the training cache's layout, see
`policy.gr00t.training.DemoData`). A job is written whole or not at all (atomic rename), so an interrupted
run keeps every finished shard and a re-run skips them.
"""

from __future__ import annotations

import functools
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
    source: str = "expert"  # "expert": the scripted expert; "mimic": dreams from the `demos` recordings
    demos: str = ""  # mimic: a LeRobot dataset of recorded demonstrations (the project's recorder)
    demo_count: int | None = None  # mimic: dream from its first N episodes only (None: all)

    def __post_init__(self) -> None:
        where = f"Recipe entry {self.task}/{self.variant}"
        if self.goals not in ("drawn", "each"):
            raise ValueError(f"{where}: goals must be 'drawn' or 'each', not {self.goals!r}.")
        if self.source not in ("expert", "mimic"):
            raise ValueError(f"{where}: source must be 'expert' or 'mimic', not {self.source!r}.")
        if self.source == "mimic" and not self.demos:
            raise ValueError(f"{where}: source 'mimic' needs `demos`, a dataset of recorded demonstrations.")
        if self.demo_count is not None and self.demo_count < 1:
            raise ValueError(f"{where}: demo_count must be >= 1, got {self.demo_count}.")


@dataclass
class MixRecipe:
    entries: list[MixEntry] = field(default_factory=list)
    image_size: int = 224  # rendered ego_view size (the shards store it resized to the backbone's size)
    cache_size: int = 128  # stored frame size (the compact backbone's input)
    seeds_per_job: int = 8
    # Each episode also stores its instruction in this many other words (plan/commands.py's training templates;
    # `sage-train --paraphrase-prob` shows them). 0: none.
    paraphrases: int = 0

    @classmethod
    def from_yaml(cls, path: str | Path) -> MixRecipe:
        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - {"entries", "image_size", "cache_size", "seeds_per_job", "paraphrases"}
        if unknown:
            raise ValueError(f"Recipe {path}: unknown keys {sorted(unknown)}.")
        entries = [MixEntry(**e) for e in data.get("entries", [])]
        if not entries:
            raise ValueError(f"Recipe {path} lists no entries.")
        recipe = cls(entries, **{k: v for k, v in data.items() if k != "entries"})
        names = [shard_name(entry, start) for entry, start, _ in recipe.jobs()]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Recipe {path}: entries overlap (the same task, variant, source, randomization and "
                             f"seeds): shards {twice[:3]} would be written twice; give them other seed_start.")
        return recipe

    def jobs(self) -> list[tuple[MixEntry, int, int]]:
        """(entry, first seed, seed count) per job, the entries interleaved: a time budget that ends the run
        early then cuts every entry by about the same share."""
        per_entry = [[(entry, start, min(self.seeds_per_job, entry.seed_start + entry.seeds - start))
                      for start in range(entry.seed_start, entry.seed_start + entry.seeds, self.seeds_per_job)]
                     for entry in self.entries]
        return [job for round_ in itertools.zip_longest(*per_entry) for job in round_ if job is not None]


def shard_name(entry: MixEntry, start: int) -> str:
    goals = "-each" if entry.goals == "each" else ""
    source = f"-mimic{entry.demo_count or 'all'}" if entry.source == "mimic" else ""
    return f"{entry.task}-{entry.variant}{goals}{source}-{entry.randomization}-{start:05d}"


@functools.lru_cache(maxsize=4)
def _mimic_sources(task: str, demos: str, demo_count: int | None) -> tuple:
    """Parsed source demonstrations, once per worker process (every job of an entry dreams from the same)."""
    from sage_gr00t.data.lerobot_dataset import read_episode_records
    from sage_gr00t.learn.mimic import dataset_recordings, parse_recordings

    total = len(read_episode_records(demos))
    count = total if demo_count is None else demo_count
    if count > total:
        raise ValueError(f"Recipe entry {task}: demo_count {count} but {demos} holds {total} episodes.")
    return tuple(parse_recordings(dataset_recordings(demos, range(count)), task))


def dream_job(entry: MixEntry, start: int, count: int, recipe: MixRecipe, out: Path, deadline: float) -> dict:
    """Attempt one dream per seed start..start+count-1 from the entry's demonstrations; write the kept ones."""
    import torch

    torch.set_num_threads(1)
    from sage_gr00t.learn.mimic import MimicConfig, MimicDreamGenerator

    target = out / shard_name(entry, start)
    if (target / "meta.json").is_file():
        return {"shard": target.name, "skipped": True}
    sources = _mimic_sources(entry.task, entry.demos, entry.demo_count)
    config = MimicConfig(task=entry.task, variant=entry.variant, randomization=entry.randomization,
                         image_size=recipe.image_size, task_paraphrases=recipe.paraphrases)
    generator = MimicDreamGenerator(sources, config)
    attempts = []
    try:
        for seed in range(start, start + count):
            if time.time() > deadline:
                break
            attempts.append(generator.attempt(config.seed_start + seed))
        robot = generator.env.embodiment.name
    finally:
        generator.close()
    kept = [a.dream.episode for a in attempts if a.dream is not None]
    provenance = [a.provenance for a in attempts]
    if kept:
        write_shard(target, kept, recipe.cache_size, robot,
                    {"entry": asdict(entry), "seeds": [start, start + count], "kept": len(kept),
                     "attempted": len(attempts), "source_demos": len(sources),
                     "source_episodes": [s.id for s in sources], "dreams": provenance})
    return {"shard": target.name, "kept": len(kept), "attempted": len(attempts),
            "frames": sum(len(e["images"]) for e in kept)}


def write_shard(target: Path, episodes: list[dict], cache_size: int, robot: str, extra: dict) -> None:
    """Write `episodes` as the training-cache shard `target`, whole or not at all (a temporary folder renamed)."""
    from sage_gr00t.policy.gr00t.training import DemoData

    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    DemoData.from_episodes(episodes, cache_size, robot).save(tmp, extra=extra)
    tmp.replace(target)


def collect_job(entry: MixEntry, start: int, count: int, recipe: MixRecipe, out: Path, deadline: float) -> dict:
    """Run the expert on seeds start..start+count-1 and write their successful episodes as one shard."""
    import torch

    torch.set_num_threads(1)
    from sage_gr00t.data.collect import run_expert_episode
    from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert
    from sage_gr00t.plan.commands import instruction_paraphrases
    from sage_gr00t.policy.gr00t.grounding import grounding_label, names_one_goal
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
            labels: list[np.ndarray] = []
            subtasks: list = []

            def record(obs: dict, act: dict, steps: list = steps, labels: list = labels,
                       subtasks: list = subtasks) -> None:
                steps.append((obs, act))
                # Where the current subtask's object and target are: the grounding loss's label (see
                # policy/gr00t/grounding.py).
                labels.append(grounding_label(env, expert.current))
                subtasks.append(expert.current)

            outcome = run_expert_episode(env, expert, seed, record)
            if not outcome.success:
                failed.append(seed if goal is None else [seed, goal])
                continue
            episodes.append({
                "images": np.stack([o[EGO_VIEW] for o, _ in steps]),
                **{state_key(g): np.stack([o[state_key(g)] for o, _ in steps]) for g in JOINT_GROUPS},
                **{action_key(g): np.stack([a[action_key(g)] for _, a in steps]) for g in JOINT_GROUPS},
                "task": env.instruction,
                "subtask": [o.get(SUBTASK_KEY, env.instruction) for o, _ in steps],
                "grounding": np.stack(labels),
                "grounding_task": names_one_goal((s.object_name, s.target_name) for s in subtasks if s is not None),
                "task_paraphrases": instruction_paraphrases(env, recipe.paraphrases, seed * 1000 + (goal or 0))
                if recipe.paraphrases else [],
            })
        robot = env.embodiment.name
    finally:
        env.close()
    if episodes:
        write_shard(target, episodes, recipe.cache_size, robot,
                    {"entry": asdict(entry), "seeds": [start, start + count], "failed_seeds": failed,
                     "kept": len(episodes)})
    frames = sum(len(e["images"]) for e in episodes)
    return {"shard": target.name, "kept": len(episodes), "failed": failed, "frames": frames}


def _worker(args: tuple) -> dict:
    return (dream_job if args[0].source == "mimic" else collect_job)(*args)


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


def provenance(shards: list[Path]) -> dict[str, dict]:
    """Where a training mix's episodes came from, per task: `source_demos` (expert demonstrations trained on
    directly, plus the recorded demonstrations dreams were made from), `dreams` (kept dreams), `dream_attempts`,
    and `datasets` (the recorded datasets behind the dreams)."""
    out: dict[str, dict] = {}
    demo_sets: dict[str, dict[str, int]] = {}
    for shard in shards:
        meta = json.loads((shard / "meta.json").read_text())
        entry = meta.get("entry", {})
        task = entry.get("task") or (meta["tasks"][0] if meta.get("tasks") else "unknown")
        row = out.setdefault(task, {"source_demos": 0, "expert_episodes": 0, "dreams": 0, "dream_attempts": 0,
                                    "datasets": []})
        kept = int(meta.get("kept", len(np.unique(np.load(shard / "arrays.npz")["episode"]))))
        if entry.get("source") == "mimic":
            row["dreams"] += kept
            row["dream_attempts"] += int(meta.get("attempted", kept))
            demo_sets.setdefault(task, {})[entry["demos"]] = max(demo_sets.get(task, {}).get(entry["demos"], 0),
                                                                 int(meta.get("source_demos", 0)))
        else:
            row["expert_episodes"] += kept
    for task, row in out.items():
        row["datasets"] = sorted(demo_sets.get(task, {}))
        row["source_demos"] = row["expert_episodes"] + sum(demo_sets.get(task, {}).values())
    return out
