"""Wake learning on the shipped compact policy and real MuJoCo frames: trust-gated updates from successful
subtasks only, a guard that restores the weights bit for bit, NaN frames refused, the session wiring."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from sage_gr00t.act.lmodule import DONE, FAILED, RUNNING
from sage_gr00t.act.safety import Intervention, SafeCommand
from sage_gr00t.learn.wake import REFUSED, UPDATED, WakeLearner, WakeLearningConfig
from sage_gr00t.tasks import make_env

ROOT = Path(__file__).resolve().parents[1]
POLICY, PLANNER = ROOT / "assets/policies/gr00t_compact", ROOT / "assets/planner"
SEED = 1000  # pick_apple, train scene: SAGE with the compact policy finishes its one subtask in ~70 steps
HIGH = {"gr00t_visual": 0.82, "gr00t_language": 0.91, "sage_execution": 0.64, "sage_planning": 0.73}

pytestmark = pytest.mark.skipif(not (POLICY.is_dir() and PLANNER.is_dir()), reason="shipped checkpoints missing")


@pytest.fixture(scope="module")
def parts():
    from sage_gr00t.plan.planner import HModulePlanner

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small CPU updates: more threads only contend on 2 cores
    env = make_env("pick_apple")
    yield env, HModulePlanner.load(PLANNER)
    env.close()
    torch.set_num_threads(threads)


def fresh_policy():
    from sage_gr00t.policy.gr00t import load_policy

    return load_policy(POLICY, embodiment="sage_humanoid")


@pytest.fixture(scope="module")
def frames(parts):
    """One real SAGE episode's control steps: (observation, the safe command sent, subtask) as the bridge's
    learn stage saw them, until the L-module closed the subtask."""
    from sage_gr00t.bridge import SAGEGr00TBridge
    from sage_gr00t.evaluation import run_bridge_episode

    env, planner = parts
    bridge = SAGEGr00TBridge(fresh_policy(), env, planner)
    steps: list[tuple[dict, SafeCommand, object, str]] = []
    learn = bridge.learn

    def record(obs, command, outcome, subtask=None):
        steps.append(({k: np.array(v, copy=True) for k, v in obs.items()}, command, subtask, outcome))
        return learn(obs, command, outcome, subtask)

    bridge.learn = record
    env.reset(seed=SEED)
    run_bridge_episode(env, bridge, SEED, env.instruction, stop_on_success=False)
    steps = [s for s in steps if s[2] is not None]
    assert len(steps) >= 16, f"only {len(steps)} steps with a subtask: {bridge.events}"
    return steps, env.instruction


def feed(learner: WakeLearner, frames, outcome: str, trust: dict, instruction: str = ""):
    """The recorded steps through `observe`, the last one closing the subtask with `outcome`."""
    steps, _ = frames
    event = None
    for i, (obs, command, subtask, _) in enumerate(steps):
        event = learner.observe(obs, command, subtask, outcome if i == len(steps) - 1 else RUNNING, trust,
                                instruction)
    return event


def weights(policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_successful_subtask_above_the_trust_gate_updates_the_weights(frames) -> None:
    policy = fresh_policy()
    learner = WakeLearner(policy, WakeLearningConfig(enabled=True, min_history=0, steps_per_update=2))
    before, rng = weights(policy), torch.get_rng_state()
    event = feed(learner, frames, DONE, HIGH, frames[1])
    assert event is not None and event.kind == UPDATED, event
    assert event.frames == len(frames[0]) and len(event.losses) == 2
    assert all(np.isfinite(event.losses))
    after = weights(policy)
    moved = max(float((after[k] - before[k]).abs().max()) for k in before if before[k].is_floating_point())
    assert 0 < moved < 1e-2, moved  # small steps, but real ones
    assert all(torch.isfinite(v).all() for v in after.values())
    assert torch.equal(torch.get_rng_state(), rng)  # the update's noise came from a forked RNG
    assert not policy.model.training  # the live policy acts in eval mode again
    print(f"\nwake update: {event.frames} frames, {event.seconds:.2f} s, losses {event.losses}, max |dw| {moved:.2e}")
    # The policy still acts (finite actions) on the updated weights.
    action = policy.get_action({**frames[0][0][0], "annotation.human.task_description": frames[1]})
    assert all(np.isfinite(v).all() for v in action.values())


@pytest.mark.parametrize("case", ["failed", "trust", "hazard", "disabled"])
def test_no_update_below_the_gate_on_a_failure_or_after_a_hazard(frames, case: str) -> None:
    policy = fresh_policy()
    learner = WakeLearner(policy, WakeLearningConfig(enabled=case != "disabled", min_history=0))
    before = weights(policy)
    outcome, trust, steps = DONE, dict(HIGH), frames[0]
    if case == "failed":
        outcome = FAILED
    elif case == "trust":
        trust["gr00t_visual"] = 0.3  # the policy's grasps have been missing: not a teacher now
    elif case == "hazard":  # the safety filter stopped a workspace violation in the middle of the segment
        obs, command, subtask, out = steps[len(steps) // 2]
        hazard = SafeCommand(command.action, [Intervention("workspace", "action.right_arm")])
        steps = [*steps[: len(steps) // 2], (obs, hazard, subtask, out), *steps[len(steps) // 2 + 1:]]
    event = feed(learner, (steps, frames[1]), outcome, trust)
    if case == "disabled":
        assert event is None and learner.events == []
    else:
        assert event is not None and event.kind == REFUSED and event.reason == case, event
    assert same(weights(policy), before)
    assert learner.optimizer.state_dict()["state"] == {}  # no step was ever taken
    assert learner.snapshot is None


def test_the_guard_restores_the_snapshot_bit_for_bit_when_success_drops(frames) -> None:
    policy = fresh_policy()
    cfg = WakeLearningConfig(enabled=True, min_history=3, guard_window=3, drop_threshold=0.2, pause_episodes=2)
    learner = WakeLearner(policy, cfg)
    before = weights(policy)
    optimizer_before = copy.deepcopy(learner.optimizer.state_dict())
    assert feed(learner, frames, DONE, HIGH).reason == "warmup"  # no baseline yet: no update
    for _ in range(3):  # the baseline: three successes before any update
        learner.end_episode(True)
    assert feed(learner, frames, DONE, HIGH).kind == UPDATED
    assert feed(learner, frames, DONE, HIGH).kind == UPDATED  # a second update in the same window
    assert not same(weights(policy), before)
    assert learner.baseline == 1.0 and learner.snapshot is not None
    assert learner.end_episode(True) is None  # 1/1: the window can still hold up
    guard = learner.end_episode(False)  # 1/2: at best 2/3 < 1.0 - 0.2, the drop is certain
    assert guard is not None and guard.kind == "reverted", guard
    assert same(weights(policy), before), "the restore must give back the exact weights"
    restored = learner.optimizer.state_dict()
    assert restored["state"] == optimizer_before["state"] == {}  # no Adam moments left from the reverted steps
    assert learner.reverts == 1
    # Paused: the next successful segments are refused for `pause_episodes` episodes, then learnt from again.
    assert feed(learner, frames, DONE, HIGH).reason == "paused"
    learner.end_episode(True)
    learner.end_episode(True)
    assert feed(learner, frames, DONE, HIGH).kind == UPDATED
    # The reverted window's episodes do not count in the new baseline (they ran on weights that were thrown away).
    assert learner.baseline == 1.0


def test_a_window_that_holds_up_keeps_the_weights(frames) -> None:
    policy = fresh_policy()
    learner = WakeLearner(policy, WakeLearningConfig(enabled=True, min_history=1, guard_window=2))
    learner.end_episode(False)  # baseline 0.0: nothing can drop below it
    before = weights(policy)
    assert feed(learner, frames, DONE, HIGH).kind == UPDATED
    learner.end_episode(False)
    guard = learner.end_episode(True)
    assert guard is not None and guard.kind == "accepted"
    assert learner.snapshot is None and not same(weights(policy), before)
    stats = learner.stats()
    assert stats["updates"] == 1 and stats["reverts"] == 0 and stats["accepted_windows"] == 1
    assert stats["mean_update_s"] > 0


@pytest.mark.parametrize("where", ["state", "action"])
def test_nan_frames_are_refused_without_touching_the_weights(frames, where: str) -> None:
    policy = fresh_policy()
    learner = WakeLearner(policy, WakeLearningConfig(enabled=True, min_history=0))
    before = weights(policy)
    steps = list(frames[0])
    i = len(steps) // 3
    obs, command, subtask, out = steps[i]
    if where == "state":
        obs = {**obs, "state.right_arm": np.full_like(obs["state.right_arm"], np.nan)}
    else:
        command = SafeCommand({**command.action, "action.left_arm": np.full_like(command.action["action.left_arm"],
                                                                              np.nan)}, [])
    steps[i] = (obs, command, subtask, out)
    event = feed(learner, (steps, frames[1]), DONE, HIGH)
    assert event is not None and event.kind == REFUSED and event.reason == "non_finite", event
    assert same(weights(policy), before)
    assert learner.optimizer.state_dict()["state"] == {}


def test_the_session_wires_wake_learning_into_the_bridge(parts) -> None:
    from sage_gr00t.evaluation import run_bridge_episode
    from sage_gr00t.session import SessionConfig, build_session

    env, planner = parts
    off = build_session(SessionConfig(controller="sage"), env=env, policy=fresh_policy(), planner=planner)
    assert off.wake is None and off.bridge.wake is None  # off by default
    with pytest.raises(ValueError, match="wake learning"):
        build_session(SessionConfig(controller="sage", policy="expert", wake=WakeLearningConfig(enabled=True)),
                      env=env, planner=planner)
    policy = fresh_policy()
    before = weights(policy)
    session = build_session(SessionConfig(controller="sage", wake=WakeLearningConfig(enabled=True, min_history=0)),
                            env=env, policy=policy, planner=planner)
    assert session.bridge.wake is session.wake
    env.reset(seed=SEED)
    result = run_bridge_episode(env, session.bridge, SEED, env.instruction, stop_on_success=False)
    events = session.wake.events
    assert [e.kind for e in events] == [UPDATED], (events, session.bridge.events)
    assert not same(weights(policy), before)
    assert session.wake.outcomes == [(result.success, False)]  # end_episode reached the guard
