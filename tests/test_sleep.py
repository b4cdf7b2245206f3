"""Sleep: dreams are real expert episodes in a private simulator; consolidation really trains the policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sage_gr00t.learn import DreamConfig, DreamGenerator, SleepTrainer, SleepTrainingConfig

ROOT = Path(__file__).resolve().parents[1]
POLICY, PLANNER = ROOT / "assets/policies/gr00t_compact", ROOT / "assets/planner"
FOCUS = "pick up the blue block and place it in the blue bin"

pytestmark = pytest.mark.skipif(not (POLICY.is_dir() and PLANNER.is_dir()), reason="shipped checkpoints missing")


def test_sleep_cycle_dreams_and_consolidates_into_the_policy() -> None:
    from sage_gr00t.bridge import SAGEGr00TBridge
    from sage_gr00t.memory import Experience
    from sage_gr00t.plan.planner import HModulePlanner
    from sage_gr00t.policy.gr00t import load_policy
    from sage_gr00t.tasks import make_env

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small CPU updates: more threads only contend on 2 cores
    env = make_env("sort_blocks", image_height=128, image_width=128)
    dreamer = DreamGenerator(DreamConfig(task="sort_blocks", episodes_per_cycle=1, image_size=128))
    try:
        policy = load_policy(POLICY, embodiment=env.embodiment.name)
        weights = {k: v.clone() for k, v in policy.model.state_dict().items()}
        trainer = SleepTrainer(policy, SleepTrainingConfig(steps=8, batch_size=8, lr=1e-4))
        bridge = SAGEGr00TBridge(policy, env, HModulePlanner.load(PLANNER), dreamer=dreamer, sleep_trainer=trainer)
        obs, _ = env.reset(seed=1000)
        bridge.reset(obs)
        # A failure while awake: the salient memory that steers what is dreamt.
        bridge.buffer.offer(bridge.scorer.annotate(Experience(
            episode_id=None, step=0, task="sort", state=np.zeros(18), action=np.zeros(18), subtask=FOCUS,
            success=False, reward=0.0)))
        assert bridge.sleep_cycle() is None or bridge.metabolic.should_sleep  # not sleepy: nothing happens
        summary = bridge.sleep_cycle(force=True)
        # Shutdown cancels a sleep cycle: no further dream, no further update.
        dreamer.cancel()
        trainer.cancel()
        assert dreamer.dream() == []
        stopped = trainer.consolidate(list(bridge.dreams))
        assert stopped["steps"] == 0 and stopped["cancelled"]
    finally:
        torch.set_num_threads(threads)
        dreamer.close()
        env.close()
    assert summary is not None and summary["replayed"] >= 1
    dream = bridge.dreams[-1]
    assert dream.subtasks[0] == FOCUS and len(dream.subtasks) == 2  # the failed subtask is dreamt first
    assert dream.episode["images"].shape == (dream.steps, 128, 128, 3) and dream.thumbnail.shape == (64, 64, 3)
    training = summary["training"]
    print("\nsleep cycle:", summary["dreams"], training)
    assert training["steps"] == 8 and training["frames"] == dream.steps
    assert training["loss_after"] < training["loss_before"]  # the dream is learnt
    changed = [k for k, v in policy.model.state_dict().items() if not torch.equal(v, weights[k])]
    assert changed, "consolidation did not change the policy's weights"
    action = policy.get_action(obs)  # the updated policy still drives the robot
    assert all(np.isfinite(v).all() for v in action.values())
