"""Closed-loop evaluation: run a policy in a task environment over seeds and score success."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from sage_gr00t.policy.base import Policy


@dataclass
class EpisodeResult:
    task: str
    embodiment: str
    variant: str
    seed: int
    success: bool
    steps: int
    wall_s: float
    instruction: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_episode(
    env,
    policy: Policy,
    seed: int,
    max_steps: int | None = None,
    on_frame: Callable[[object, dict], None] | None = None,
    stop_on_success: bool = True,
) -> EpisodeResult:
    """One episode; action chunks are executed step by step and re-queried when used up."""
    obs, info = env.reset(seed=seed)
    policy.reset()
    limit = max_steps or env.config.max_steps
    start = time.perf_counter()
    chunk: dict[str, np.ndarray] = {}
    cursor = 0
    success = bool(info["success"])
    steps = 0
    while steps < limit:
        if not chunk or cursor >= len(next(iter(chunk.values()))):
            chunk, cursor = policy.get_action(obs), 0
        action = {k: v[cursor] for k, v in chunk.items()}
        cursor += 1
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if on_frame is not None:
            on_frame(env, obs)
        success = bool(info["success"])
        if (terminated and stop_on_success) or truncated:
            break
    return EpisodeResult(
        task=env.task_name, embodiment=env.embodiment.name, variant=env.config.variant, seed=seed,
        success=success, steps=steps, wall_s=time.perf_counter() - start, instruction=env.instruction,
    )


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    steps = sum(r.steps for r in results)
    wall = sum(r.wall_s for r in results)
    return {
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
        "mean_steps": float(np.mean([r.steps for r in results])) if results else 0.0,
        "env_steps_per_s": steps / wall if wall > 0 else 0.0,
    }
