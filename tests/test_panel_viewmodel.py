"""Panel view-model on the real embedded simulator, the shipped compact policy and the shipped planner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sage_gr00t.memory.metabolic import MetabolicConfig
from sage_gr00t.panel import PanelConfig, PanelViewModel

ROOT = Path(__file__).resolve().parents[1]
POLICY, PLANNER = ROOT / "assets/policies/gr00t_compact", ROOT / "assets/planner"
COMMAND = "put the apple on the plate"  # a pick_apple phrasing the planner and the policy both know
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(not (POLICY.is_dir() and PLANNER.is_dir()), reason="shipped checkpoints missing")


@pytest.fixture(scope="module")
def parts():
    from sage_gr00t.plan.planner import HModulePlanner
    from sage_gr00t.policy.gr00t import load_policy
    from sage_gr00t.tasks import make_env

    env = make_env("pick_apple")
    policy = load_policy(POLICY, embodiment=env.embodiment.name)
    planner = HModulePlanner.load(PLANNER)
    yield env, policy, planner
    env.close()


def make_vm(parts, **overrides) -> PanelViewModel:
    env, policy, planner = parts
    config = PanelConfig(task="pick_apple", seed=1000, dream_episodes=0, **overrides)
    return PanelViewModel(config, env=env, policy=policy, planner=planner)


def still(vm: PanelViewModel, ticks: int) -> float:
    """Largest joint-position change over `ticks` control steps."""
    start = vm.joint_positions()
    moved = 0.0
    for _ in range(ticks):
        vm.tick()
        moved = max(moved, float(np.abs(vm.joint_positions() - start).max()))
    return moved


def test_command_is_planned_executed_and_trust_updates(parts) -> None:
    vm = make_vm(parts)
    for _ in range(2):
        vm.tick()
    before = vm.state()
    assert before["status"] == "idle" and before["plan"] == [] and before["example_command"] == COMMAND
    assert {"pick_apple", "sort_blocks", "pour_water"} <= set(before["tasks"])  # the installed tasks
    assert vm.run(COMMAND)
    assert vm.state()["status"] == "planning"
    vm.tick()  # the bridge plans from the perceived scene at its next step
    s = vm.state()
    assert s["status"] == "running", s["message"]
    assert [(p["skill"], p["object"], p["target"]) for p in s["plan"]] == [("pick_place", "apple", "plate")]
    assert s["plan"][0]["language"] == "pick up the apple and place it on the plate"
    assert s["plan"][0]["status"] == "running" and "pick up the apple" in s["message"]
    for _ in range(250):
        vm.tick()
        if vm.status not in ("planning", "running"):
            break
    s = vm.state()
    # Seed 1000: the shipped policy puts the apple on the plate in ~55 control steps.
    assert s["status"] == "succeeded", (s["message"], s["log"])
    assert s["success"] and s["succeeded_at"] is not None and s["plan"][0]["status"] == "done"
    # Trust: every sensor reported, values moved away from their priors, one history sample per tick.
    assert set(s["trust"]["sensors"]) >= {"camera", "proprioception", "memory"}
    prior = {k: v["trust"] for k, v in before["trust"]["sensors"].items()}
    assert any(abs(s["trust"]["sensors"][k]["trust"] - prior.get(k, 0.0)) > 1e-3 for k in s["trust"]["sensors"])
    history = s["history"]
    assert len(history["tick"]) == s["tick"] + 1 and len(history["sensors"]["camera"]) == len(history["tick"])
    assert np.nanstd(history["sensors"]["camera"]) > 0
    assert set(s["snarc"]) >= {"surprise", "novelty", "arousal", "reward", "conflict", "total", "salient"}
    assert s["metabolic"]["state"] in ("wake", "focus", "rest", "dream", "crisis")
    assert s["buffer"]["offered"] == s["step"]
    assert vm.image("ego", "png").startswith(PNG) and vm.image("ego", "jpeg")[:2] == b"\xff\xd8"
    json.dumps(s)
    # The robot holds still after success (stop_on_success, as the evaluation does).
    assert still(vm, 10) < 0.02


def test_emergency_stop_holds_the_robot(parts) -> None:
    vm = make_vm(parts)
    vm.run(COMMAND)
    for _ in range(20):  # the arm is on its way to the apple
        vm.tick()
    assert vm.status == "running"
    moving = vm.joint_positions()
    vm.tick()
    assert np.abs(vm.joint_positions() - moving).max() > 1e-3, "the robot should be moving before the e-stop"
    stops = vm.bridge.safety.stats["emergency_stop"]
    vm.emergency_stop()
    s = vm.state()
    assert s["status"] == "estop" and s["safety"]["estop"] and "EMERGENCY STOP" in s["message"]
    for _ in range(3):  # brakes onto the latched measured pose
        vm.tick()
    assert still(vm, 25) < 0.01
    assert vm.bridge.safety.stats["emergency_stop"] > stops  # the safety filter did the holding
    assert not vm.run(COMMAND) and "release" in vm.message  # no command while the e-stop is engaged
    assert vm.state()["plan"][0]["status"] == "aborted"
    vm.release_estop()
    s = vm.state()
    assert s["status"] == "stopped" and not s["safety"]["estop"]
    assert still(vm, 10) < 0.01  # released: still holding until Run


def test_speed_slider_reaches_the_safety_filter(parts) -> None:
    vm = make_vm(parts, speed_percent=50)
    safety = vm.bridge.safety
    assert safety.speed_scale == pytest.approx(0.5)
    assert vm.set_speed(35) == 35 and safety.speed_scale == pytest.approx(0.35)
    vmax, _ = safety.limits_per_step()
    cfg = safety.config
    assert vmax["action.left_arm"].max() == pytest.approx(cfg.max_velocity * 0.35 * cfg.control_dt)
    assert vm.set_speed(5) == 10 and safety.speed_scale == pytest.approx(0.1)  # clamped to the slider range
    assert vm.set_speed("150") == 100 and safety.speed_scale == pytest.approx(1.0)
    for bad in ("fast", None, float("nan")):
        with pytest.raises(ValueError, match="percent"):
            vm.set_speed(bad)
    assert vm.state()["safety"]["speed_percent"] == 100
    # At 10 % the commanded arm joints move at most 0.1 x 3 rad/s x 50 ms = 15 mrad per control step.
    vm.set_speed(10)
    vm.run(COMMAND)
    vm.tick()

    def arms() -> np.ndarray:
        action = vm.bridge.last_command.action  # the safe command sent to the robot
        return np.concatenate([action["action.left_arm"], action["action.right_arm"]])

    prev, biggest = arms(), 0.0
    for _ in range(15):
        vm.tick()
        biggest = max(biggest, float(np.abs(arms() - prev).max()))
        prev = arms()
    assert 0 < biggest <= cfg.max_velocity * 0.1 * cfg.control_dt + 1e-6


def test_empty_or_malformed_command_gives_a_message_and_the_robot_holds(parts) -> None:
    vm = make_vm(parts)
    vm.tick()
    for text in ("", "   \t\n", "\x00\x07", "?!? ... !!", "x" * 1000):
        assert not vm.run(text)
        s = vm.state()
        assert s["status"] == "idle" and s["plan"] == [] and s["message"], text
    assert not vm.run("") and vm.message.startswith("Type a command first")
    assert still(vm, 10) < 0.01
    # Words the planner cannot use: it refuses with its own message; the policy never runs.
    queries = vm.bridge.lmodule.executor.queries
    assert vm.run("blorp the zibble quickly")
    vm.tick()
    s = vm.state()
    assert s["status"] == "refused", s["message"]
    assert s["message"].startswith("The planner refused the command") and s["plan"] == []
    assert still(vm, 20) < 0.01
    assert vm.bridge.lmodule.executor.queries == queries
    # Something absent from the scene is named in the refusal.
    assert vm.run("put the banana on the plate")
    vm.tick()
    assert vm.status == "refused" and "banana" in vm.message


def test_metabolic_sleep_replays_salient_memories(parts) -> None:
    # Sleepy settings: rest after 5 idle steps, dream with >= 1 salient memory (no dreamer: replay only).
    vm = make_vm(parts, metabolic=MetabolicConfig(idle_steps_to_rest=5, dream_min_unconsolidated=1))
    vm.run(COMMAND)
    for _ in range(12):
        vm.tick()
    vm.stop()
    assert vm.status == "stopped" and vm.state()["buffer"]["unconsolidated"] > 0
    for _ in range(150):  # wake -> rest (5 idle steps; after a crisis, 40 calm steps first) -> dream
        vm.tick()
        if vm.dreams:
            break
    s = vm.state()
    assert s["dreams"], s["metabolic"]
    cycle = s["dreams"][0]
    assert cycle["replayed"] > 0 and cycle["thumbnails"] > 0 and not cycle["forced"]
    assert vm.dream_thumbnail(cycle["id"], 0).startswith(PNG)
    assert s["buffer"]["unconsolidated"] == 0
    assert any(t["state"] == "dream" for t in s["metabolic"]["transitions"])


def test_sleep_now_dreams_and_consolidates(parts) -> None:
    from sage_gr00t.policy.gr00t import load_policy

    env, _, planner = parts
    policy = load_policy(POLICY, embodiment=env.embodiment.name)  # its own copy: sleep trains it
    config = PanelConfig(task="pick_apple", seed=1000, dream_episodes=1, sleep_training_steps=2)
    vm = PanelViewModel(config, env=env, policy=policy, planner=planner)
    try:
        vm.run(COMMAND)
        vm.tick()
        assert not vm.sleep_now() and "running" in vm.message  # not while a command runs
        for _ in range(8):
            vm.tick()
        vm.stop()
        assert vm.sleep_now()
        vm.tick()
        s = vm.state()
        assert len(s["dreams"]) == 1 and not s["sleeping"]
        cycle = s["dreams"][0]
        assert cycle["forced"] and len(cycle["dreams"]) == 1 and cycle["dreams"][0]["steps"] > 0
        assert cycle["training"]["steps"] == 2 and np.isfinite(cycle["training"]["loss_after"])
        assert cycle["captions"][0].startswith("dreamt pick_apple")
        assert all(vm.dream_thumbnail(cycle["id"], k).startswith(PNG) for k in range(cycle["thumbnails"]))
        assert vm.run(COMMAND)  # awake again
    finally:
        vm.close()


def test_sleep_now_teaches_the_planner_a_command_that_just_succeeded(parts) -> None:
    """"apple => plate": deterministic grounding plans it, the learned H-module alone does not; once an episode
    under it succeeds, Sleep now teaches it to the learned module (the panel's planner, its own copy here)."""
    from sage_gr00t.plan.planner import HModulePlanner, plan_matches
    from sage_gr00t.plan.scene import Scene

    env, policy, _ = parts
    planner = HModulePlanner.load(PLANNER)
    vm = PanelViewModel(PanelConfig(task="pick_apple", seed=1000, dream_episodes=0), env=env, policy=policy,
                        planner=planner)
    try:
        scene = Scene.from_env(env)
        assert not plan_matches("ok", [("pick_place", "apple", "plate")], planner.learned_plan("apple => plate", scene))
        assert vm.run("apple => plate")
        for _ in range(250):
            vm.tick()
            if vm.status not in ("planning", "running"):
                break
        assert vm.status == "succeeded", vm.message
        assert vm.sleep_now()
        vm.tick()
        cycle = vm.state()["dreams"][0]
        assert cycle["planner"]["new"] == 1 and cycle["planner"]["decision"] == "kept", cycle["planner"]
        assert any("planner kept (1 new command)" in str(entry) for entry in vm.state()["log"])
        assert plan_matches("ok", [("pick_place", "apple", "plate")], planner.learned_plan("apple => plate", scene))
    finally:
        vm.close()
