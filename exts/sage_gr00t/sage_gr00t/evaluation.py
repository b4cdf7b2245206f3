"""Closed-loop evaluation: run a policy in a task environment over seeds and score success.

An episode is a function of its seed: the simulator draws layout and randomization from it, and a policy
with a noise stream (the flow-matching head) is re-seeded with it at reset, so a seed gives the same episode
in any process and in any order (`sage-eval --workers` / `--ray` rely on this)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, mean_squared_jerk
from sage_gr00t.act.safety import SafetyFilter
from sage_gr00t.act.sim_to_real import SimToRealAdapter
from sage_gr00t.modality import ARM_GROUPS, LANGUAGE_KEY, action_key, state_of
from sage_gr00t.policy.base import Policy
from sage_gr00t.tasks.protocols import TaskEnv

if TYPE_CHECKING:
    from sage_gr00t.bridge import SAGEGr00TBridge
    from sage_gr00t.perceive.trust import TrustEngine


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
    completion_s: float | None = None  # simulated seconds to the end of a successful episode (None: failed)
    energy_j: float | None = None  # sum |actuator torque x joint velocity| x dt (None: the simulator exposes none)
    safety_interventions: int | None = None  # safety-filter clamps (None: no filter in the loop)
    camera_trust: float | None = None  # SAGE: the camera's trust at the episode's end
    trust_settle_s: float | None = None  # SAGE: simulated seconds until camera trust stayed within 0.05 of it
    randomization: str = "none"  # the profile, or "sweep" for a one-factor level
    factor: str | None = None  # sweep: the randomization factor scaled alone
    level: float | None = None  # sweep: its scale of the training range

    def to_dict(self) -> dict:
        return asdict(self)


class EnergyMeter:
    """An `on_frame(env, obs)` hook summing mechanical power |torque x joint velocity| over the actuators.

    Power is sampled once per control step (the end of its physics substeps) and held for the control period;
    a simulator without MuJoCo's `data` (actuator_force / actuator_velocity) gives None."""

    def __init__(self, env: TaskEnv) -> None:
        data = getattr(env, "data", None)
        self._data = data if hasattr(data, "actuator_force") and hasattr(data, "actuator_velocity") else None
        self._dt = 1.0 / env.config.control_hz
        self.joules = 0.0

    def __call__(self, env: TaskEnv, obs: dict) -> None:
        if self._data is not None:
            self.joules += float(np.abs(self._data.actuator_force * self._data.actuator_velocity).sum()) * self._dt

    @property
    def energy_j(self) -> float | None:
        return self.joules if self._data is not None else None


def _hooks(*hooks: Callable[[TaskEnv, dict], None] | None) -> Callable[[TaskEnv, dict], None]:
    chosen = [h for h in hooks if h is not None]

    def call(env: TaskEnv, obs: dict) -> None:
        for hook in chosen:
            hook(env, obs)

    return call


def trust_convergence(trust: TrustEngine, sensor: str = "camera", band: float = 0.05) -> tuple[float | None,
                                                                                            float | None]:
    """(`sensor`'s final trust, seconds from its first reading until it stayed within `band` of that value);
    (None, None) when the sensor never reported."""
    values = trust.series(sensor)
    reported = np.nonzero(~np.isnan(values))[0]
    if not len(reported):
        return None, None
    final = float(values[reported[-1]])
    away = [i for i in reported if abs(values[i] - final) > band]
    settled = away[-1] + 1 if away else reported[0]
    times = [float(h["t"]) for h in trust.history]
    return final, times[settled] - times[reported[0]]


def seed_policy(policy: Policy, seed: int) -> None:
    """Restart a policy's noise stream at `seed` where it has one (the native GR00T head); others are
    deterministic (the expert) or draw their noise elsewhere (a remote server)."""
    reseed = getattr(policy, "seed", None)
    if callable(reseed):
        reseed(seed)


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
            queries: int, energy: EnergyMeter, interventions: int | None = None) -> EpisodeResult:
    success, steps, wall_s, jerk = outcome
    return EpisodeResult(
        task=env.task_name, embodiment=env.embodiment.name, variant=env.config.variant, seed=seed,
        success=success, steps=steps, wall_s=wall_s, instruction=instruction, arm_jerk=jerk,
        policy_queries=queries, completion_s=steps / env.config.control_hz if success else None,
        energy_j=energy.energy_j, safety_interventions=interventions,
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
    safety: SafetyFilter | None = None,
) -> EpisodeResult:
    """One closed-loop episode; action chunks go through a `ChunkExecutor` (smoothing at boundaries).

    `instruction` replaces the one the episode drew (the mismatched-instruction control: success is still the
    scene's own goal, so a policy that follows the words fails where they name another object). With `safety`,
    every action passes the safety filter first (as under SAGE) and the result counts its interventions. A
    `SimToRealAdapter` policy conditions every action (smoothing, slow start through its own safety filter,
    whose interventions are counted)."""
    executor = ChunkExecutor(policy, chunking or ChunkExecutorConfig())
    obs, info = env.reset(seed=seed)
    if instruction is not None:
        env.instruction = instruction
        obs = {**obs, LANGUAGE_KEY: instruction}
    executor.reset()
    seed_policy(policy, seed)
    energy = EnergyMeter(env)
    act = executor.act
    if isinstance(policy, SimToRealAdapter):  # its own filter (slow start) after its smoothing, on every step
        if safety is not None and safety is not policy.safety:
            raise ValueError("A SimToRealAdapter runs its own safety filter; pass no other one.")
        adapter, safety = policy, policy.safety
        clamps_before = sum(safety.stats.values())

        def act(obs: dict) -> dict:
            return adapter.condition(executor.act(obs), obs)
    elif safety is not None:
        safety.reset(state_of(obs))
        clamps_before = sum(safety.stats.values())

        def act(obs: dict) -> dict:
            return safety.filter(executor.act(obs), state_of(obs)).action

    outcome = rollout(env, act, obs, info, max_steps or env.config.max_steps, _hooks(energy, on_frame),
                      stop_on_success)
    clamps = sum(safety.stats.values()) - clamps_before if safety is not None else None
    return _result(env, seed, env.instruction, outcome, executor.queries, energy, clamps)


def run_bridge_episode(env: TaskEnv, bridge: SAGEGr00TBridge, seed: int, command: str,
                       on_frame: Callable[[TaskEnv, dict], None] | None = None,
                       stop_on_success: bool = True) -> EpisodeResult:
    """One closed-loop episode through the SAGE bridge; success is the task's own predicate.

    `stop_on_success=False` takes the simulator's success oracle away: the episode ends when SAGE
    judges its plan over (it then holds still) or at the step limit -- as a real robot would have to.
    """
    obs, info = env.reset(seed=seed)
    bridge.reset(obs, meta={"seed": seed})
    seed_policy(bridge.policy, seed)
    bridge.command(command)
    clamps_before = sum(bridge.safety.stats.values())
    energy = EnergyMeter(env)
    outcome = rollout(env, bridge.step, obs, info, env.config.max_steps, _hooks(energy, on_frame), stop_on_success,
                       finished=lambda: bridge.plan_result is not None and not bridge.active)
    bridge.end_episode(outcome[0])
    result = _result(env, seed, command, outcome, bridge.lmodule.executor.queries, energy,
                     sum(bridge.safety.stats.values()) - clamps_before)
    result.camera_trust, result.trust_settle_s = trust_convergence(bridge.trust)
    return result


def borrowed_instruction(env: TaskEnv, seeds: list[int], seed: int) -> str:
    """The instruction the next seed of `seeds` draws (cyclically): another episode's words for this scene."""
    other = seeds[(seeds.index(seed) + 1) % len(seeds)]
    env.reset(seed=other)
    return env.instruction


def heldout_paraphrase(env: TaskEnv, seed: int) -> str:
    """The episode's own goal in words no training saw (the planner's held-out phrasing templates, which neither
    the policy's paraphrase augmentation nor the planner's training uses); its drawn instruction where those
    words could not single out its objects."""
    from sage_gr00t.plan.commands import instruction_paraphrases

    env.reset(seed=seed)
    words = instruction_paraphrases(env, 1, seed, split="heldout_phrasing")
    return words[0] if words else env.instruction


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
