"""Roll out the scripted expert and keep its successful episodes in a GR00T LeRobot dataset."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sage_gr00t.data.lerobot_dataset import COLLECTION_FILE, SUBTASK_KEY, GrootDatasetWriter, _write_json_atomic
from sage_gr00t.tasks.protocols import TaskEnv


class StopRequested(Exception):  # noqa: N818 -- a request, not an error
    """Raised inside an episode when the caller asked to stop (SIGINT/SIGTERM)."""


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    steps: int
    seconds: float
    episode_index: int | None = None  # index in the dataset when kept
    # Every object's pose right after reset, {name: [x, y, z, qw, qx, qy, qz]}: what a dream generator
    # transforms recorded motion from (learn/mimic.py); also in the episode's record when kept.
    object_poses: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class CollectionState:
    """What a resumed run needs: the run's settings, the next unused seed, and the failures so far."""

    settings: dict = field(default_factory=dict)
    next_seed: int = 0
    failed_seeds: list[int] = field(default_factory=list)
    attempts: int = 0

    @classmethod
    def load(cls, root: Path) -> CollectionState | None:
        path = Path(root) / COLLECTION_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, root: Path) -> None:
        _write_json_atomic(Path(root) / COLLECTION_FILE, asdict(self))


def object_poses(env: TaskEnv) -> dict[str, list[float]]:
    """{name: [x, y, z, qw, qx, qy, qz]} of every declared object, as the scene holds them now."""
    return {name: [*map(float, env.scene.body_pos(name)), *map(float, env.scene.body_quat(name))]
            for name in env.object_names()}


def run_expert_episode(
    env: TaskEnv,
    expert: Any,
    seed: int,
    on_step: Callable[[dict, dict], None] | None = None,
    tail_steps: int = 5,
    should_stop: Callable[[], bool] | None = None,
    after_reset: Callable[[], None] | None = None,
) -> EpisodeOutcome:
    """Reset with `seed` and run the expert until its plan is done (+ `tail_steps`) or the env truncates.

    `after_reset()` runs once env and expert are reset, before the first step (e.g. to reorder the plan).

    `on_step(obs, action)` sees every (observation, action taken from it) pair; when the expert exposes
    its current subtask, the observation carries its language under SUBTASK_KEY (GR00T's per-step
    annotation). The tail steps keep recording after the plan finishes so a learned policy also sees
    the "hold still" end of the task.
    """
    start = time.perf_counter()
    obs, info = env.reset(seed=seed)
    poses = object_poses(env)
    expert.reset(seed=seed)
    if after_reset is not None:
        after_reset()
    steps, after_done = 0, 0
    while True:
        if should_stop is not None and should_stop():
            raise StopRequested
        action = expert.act(obs)
        if on_step is not None:
            current = getattr(expert, "current", None)
            on_step({**obs, SUBTASK_KEY: current.language} if current is not None else obs, action)
        obs, _reward, _terminated, truncated, info = env.step(action)
        steps += 1
        if expert.done:
            after_done += 1
        if truncated or after_done > tail_steps:
            break
    return EpisodeOutcome(seed, bool(info["success"]), steps, time.perf_counter() - start, object_poses=poses)


def collect_episodes(
    env: TaskEnv,
    expert: Any,
    writer: GrootDatasetWriter,
    *,
    target_episodes: int,
    state: CollectionState,
    max_attempts: int | None = None,
    tail_steps: int = 5,
    should_stop: Callable[[], bool] | None = None,
    on_outcome: Callable[[EpisodeOutcome], None] | None = None,
    episode_extra: dict | None = None,
) -> list[EpisodeOutcome]:
    """Try seeds `state.next_seed, +1, ...` until the dataset holds `target_episodes` episodes.

    Each successful episode is saved the moment it ends; failures are dropped and their seeds kept in
    `state.failed_seeds`. `state` is written to the dataset after every attempt, so a resumed run never
    repeats a seed. Returns the outcomes of this call's attempts; stops early (without error) when
    `should_stop()` turns true or after `max_attempts` attempts.
    """
    outcomes: list[EpisodeOutcome] = []
    while writer.num_episodes < target_episodes:
        if max_attempts is not None and len(outcomes) >= max_attempts:
            break
        seed = state.next_seed
        try:
            outcome = run_expert_episode(env, expert, seed, writer.add_step, tail_steps, should_stop)
        except StopRequested:
            writer.discard_episode()
            break
        except Exception:
            writer.discard_episode()
            raise
        if outcome.success:
            outcome.episode_index = writer.save_episode(seed=seed, success=True, steps=outcome.steps,
                                                        object_poses=outcome.object_poses, **(episode_extra or {}))
        else:
            writer.discard_episode()
            state.failed_seeds.append(seed)
        state.next_seed = seed + 1
        state.attempts += 1
        state.save(writer.root)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
