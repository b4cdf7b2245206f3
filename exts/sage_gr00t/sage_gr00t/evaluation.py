"""Closed-loop evaluation: run a policy in a task environment over seeds and score success."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, mean_squared_jerk
from sage_gr00t.modality import ARM_GROUPS, LANGUAGE_KEY, action_key
from sage_gr00t.policy.base import Policy
from sage_gr00t.tasks.protocols import TaskEnv

if TYPE_CHECKING:
    from sage_gr00t.bridge import SAGEGr00TBridge


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
    arm_jerk: float = 0.0  # mean squared jerk of the commanded arm joint targets (rad^2/s^6)
    policy_queries: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def rollout(env: TaskEnv, act: Callable[[dict], dict], obs: dict, info: dict, limit: int,
             on_frame: Callable[[TaskEnv, dict], None] | None, stop_on_success: bool,
             finished: Callable[[], bool] | None = None) -> tuple[bool, int, float, float]:
    """Step `env` with `act(obs)` until success (if `stop_on_success`), the controller says it has
    `finished`, truncation or `limit` steps. Success is the task's predicate at the last step.

    Returns (success, steps, wall seconds, mean squared jerk of the commanded arm targets).
    """
    start = time.perf_counter()
    success = bool(info["success"])
    arm_targets = []
    steps = 0
    while steps < limit:
        action = act(obs)
        arm_targets.append(np.concatenate([action[action_key(g)] for g in ARM_GROUPS]))
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if on_frame is not None:
            on_frame(env, obs)
        success = bool(info["success"])
        if (terminated and stop_on_success) or truncated or (finished is not None and finished()):
            break
    jerk = mean_squared_jerk(np.array(arm_targets), 1.0 / env.config.control_hz)
    return success, steps, time.perf_counter() - start, jerk


def _result(env: TaskEnv, seed: int, instruction: str, outcome: tuple[bool, int, float, float],
            queries: int) -> EpisodeResult:
    success, steps, wall_s, jerk = outcome
    return EpisodeResult(
        task=env.task_name, embodiment=env.embodiment.name, variant=env.config.variant, seed=seed,
        success=success, steps=steps, wall_s=wall_s, instruction=instruction, arm_jerk=jerk,
        policy_queries=queries,
    )


def run_episode(
    env: TaskEnv,
    policy: Policy,
    seed: int,
    max_steps: int | None = None,
    on_frame: Callable[[TaskEnv, dict], None] | None = None,
    stop_on_success: bool = True,
    chunking: ChunkExecutorConfig | None = None,
    instruction: str | None = None,
) -> EpisodeResult:
    """One closed-loop episode; action chunks go through a `ChunkExecutor` (smoothing at boundaries).

    `instruction` replaces the one the episode drew (the mismatched-instruction control: success is still the
    scene's own goal, so a policy that follows the words fails where they name another object)."""
    executor = ChunkExecutor(policy, chunking or ChunkExecutorConfig())
    obs, info = env.reset(seed=seed)
    if instruction is not None:
        env.instruction = instruction
        obs = {**obs, LANGUAGE_KEY: instruction}
    executor.reset()
    outcome = rollout(env, executor.act, obs, info, max_steps or env.config.max_steps, on_frame, stop_on_success)
    return _result(env, seed, env.instruction, outcome, executor.queries)


def run_bridge_episode(env: TaskEnv, bridge: SAGEGr00TBridge, seed: int, command: str,
                       on_frame: Callable[[TaskEnv, dict], None] | None = None,
                       stop_on_success: bool = True) -> EpisodeResult:
    """One closed-loop episode through the SAGE bridge; success is the task's own predicate.

    `stop_on_success=False` takes the simulator's success oracle away: the episode ends when SAGE
    judges its plan over (it then holds still) or at the step limit -- as a real robot would have to.
    """
    obs, info = env.reset(seed=seed)
    bridge.reset(obs, meta={"seed": seed})
    bridge.command(command)
    outcome = rollout(env, bridge.step, obs, info, env.config.max_steps, on_frame, stop_on_success,
                       finished=lambda: bridge.plan_result is not None and not bridge.active)
    bridge.end_episode(outcome[0])
    return _result(env, seed, command, outcome, bridge.lmodule.executor.queries)


def borrowed_instruction(env: TaskEnv, seeds: list[int], seed: int) -> str:
    """The instruction the next seed of `seeds` draws (cyclically): another episode's words for this scene."""
    other = seeds[(seeds.index(seed) + 1) % len(seeds)]
    env.reset(seed=other)
    return env.instruction


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    steps = sum(r.steps for r in results)
    wall = sum(r.wall_s for r in results)
    return {
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
        "mean_steps": float(np.mean([r.steps for r in results])) if results else 0.0,
        "env_steps_per_s": steps / wall if wall > 0 else 0.0,
        "arm_jerk": float(np.mean([r.arm_jerk for r in results])) if results else 0.0,
    }
