"""SAGEGr00TBridge closed loop: one command -> perceive -> plan -> L-module -> compact policy -> safety."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sage_gr00t.bridge import SAGEGr00TBridge
from sage_gr00t.memory import ExperienceStore
from sage_gr00t_tasks import make_env

ROOT = Path(__file__).resolve().parents[1]
POLICY, PLANNER = ROOT / "assets/policies/gr00t_compact", ROOT / "assets/planner"
COMMAND = "sort the blocks into the bins of the same colour"

pytestmark = pytest.mark.skipif(not (POLICY.is_dir() and PLANNER.is_dir()), reason="shipped checkpoints missing")


@pytest.fixture(scope="module")
def parts():
    from sage_gr00t.plan.planner import HModulePlanner
    from sage_gr00t.policy.gr00t import load_policy

    env = make_env("sort_blocks")
    policy = load_policy(POLICY, embodiment=env.embodiment.name)
    planner = HModulePlanner.load(PLANNER)
    yield env, policy, planner
    env.close()


def test_bridge_completes_sort_blocks_from_one_command(parts, tmp_path) -> None:
    env, policy, planner = parts
    with ExperienceStore(tmp_path / "exp.sqlite") as store:
        bridge = SAGEGr00TBridge(policy, env, planner, store=store)
        obs, _ = env.reset(seed=1000)  # the plain compact policy also succeeds on this seed (135-152 steps)
        bridge.reset(obs)
        bridge.command(COMMAND)
        info = {"success": False}
        for _ in range(env.config.max_steps):
            obs, _, terminated, truncated, info = env.step(bridge.step(obs))
            if terminated or truncated:
                break
        bridge.end_episode(info["success"])
        assert bridge.plan_result is not None and bridge.plan_result.ok, bridge.message
        assert sorted(s.object_name for s in bridge.plan_result.subtasks) == ["blue_block", "red_block"]
        assert info["success"], f"task not completed in {bridge.steps} steps: {bridge.events}"
        assert bridge.completed, "no subtask was detected as complete from perceived state"
        assert not bridge.failed
        assert bridge.trust.components["sage_execution"] > 0.6  # raised by subtask successes
        assert len(bridge.buffer) > 0
        assert store.episodes()[0].n_experiences == bridge.steps
        print(f"\nbridge: success in {bridge.steps} steps; events {bridge.events}")
        print("bridge overhead per step (ms; policy inference and depth render excluded):",
              {k: round(v, 3) for k, v in bridge.overhead_ms().items()})
        # Sleep only when the metabolic controller says so (it is in FOCUS/WAKE right after a task).
        assert (bridge.sleep_cycle() is None) == (not bridge.metabolic.should_sleep)


def test_refused_command_keeps_the_robot_still(parts) -> None:
    env, policy, planner = parts
    bridge = SAGEGr00TBridge(policy, env, planner)
    obs, _ = env.reset(seed=1000)
    bridge.reset(obs)
    bridge.command("put the banana in the red bin")
    start = np.concatenate([env.state()[k] for k in sorted(env.state())])
    for _ in range(30):
        obs, *_ = env.step(bridge.step(obs))
    assert bridge.refused, bridge.message
    assert "banana" in bridge.message
    assert bridge.lmodule.executor.queries == 0  # the policy never ran
    end = np.concatenate([env.state()[k] for k in sorted(env.state())])
    assert np.abs(end - start).max() < 0.02, np.abs(end - start).max()
    print(f"\nrefused: {bridge.message}")
