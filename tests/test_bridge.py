"""SAGEGr00TBridge closed loop: one command -> perceive -> plan -> L-module -> compact policy -> safety."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sage_gr00t.bridge import SAGEGr00TBridge
from sage_gr00t.memory import ExperienceStore
from sage_gr00t.perceive.faults import FaultConfig, FaultyCamera
from sage_gr00t.tasks import make_env

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


def test_lmodule_judges_completion_against_the_target_where_it_was_first_seen(parts) -> None:
    """A bin's camera estimate drifts once a same-coloured block lands in it; the anchor does not."""
    from sage_gr00t.act.lmodule import LModule, LModuleConfig, PerceivedState
    from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig
    from sage_gr00t.skills import Subtask

    env, policy, _ = parts
    safety = SafetyFilter(env.embodiment, env.action_ranges(), SafetyFilterConfig(table_height=env.table_height))
    subtask = Subtask("pick_place", "red_block", "red_bin", "pick up the red block and place it in the red bin")
    bin_at, block_in_bin = np.array([0.42, -0.24, 0.78]), np.array([0.42, -0.23, 0.805])
    drifted_bin = bin_at + np.array([0.0, 0.09, 0.0])  # 9 cm off: the block now looks outside it
    for anchored, expected in ((True, True), (False, False)):
        lmodule = LModule(policy, safety, LModuleConfig(anchor_targets=anchored))
        lmodule.is_complete(subtask, PerceivedState({"red_block": np.array([0.3, 0.0, 0.8]), "red_bin": bin_at}))
        seen = PerceivedState({"red_block": block_in_bin, "red_bin": drifted_bin})
        assert lmodule.is_complete(subtask, seen) is expected
    # A target a hand holds moves for real: its anchor follows.
    moved = bin_at + np.array([0.1, 0.0, 0.0])
    lmodule.config.anchor_targets = True
    lmodule.is_complete(subtask, PerceivedState({"red_block": block_in_bin, "red_bin": moved}, held={"red_bin"}))
    assert np.allclose(lmodule.target_position("red_bin", PerceivedState({"red_bin": bin_at})), moved)


def test_without_the_success_oracle_sage_ends_the_episode_itself(parts) -> None:
    """No simulator success check: the episode ends when SAGE judges every subtask done from what it
    perceives, and the world agrees."""
    from sage_gr00t.evaluation import run_bridge_episode

    env, policy, planner = parts
    bridge = SAGEGr00TBridge(policy, env, planner)
    result = run_bridge_episode(env, bridge, 1000, COMMAND, stop_on_success=False)
    print(f"\nended by SAGE after {result.steps} steps: {bridge.message}; events {bridge.events}")
    assert bridge.message == "done" and not bridge.active
    assert result.steps < env.config.max_steps
    assert result.success and env.is_success()


def _start_with_faulty_camera(env, bridge, seed: int, fault: FaultConfig) -> tuple[dict, FaultyCamera]:
    """Reset env and bridge on `seed` (the same policy noise whatever ran before), put a fault-injecting
    camera in the perception pipeline, give the command; returns the first observation and that camera."""
    import torch

    torch.manual_seed(seed)
    bridge.policy.seed(seed)
    obs, _ = env.reset(seed=seed)
    bridge.reset(obs)
    camera = FaultyCamera(bridge.camera, fault)
    bridge.pipeline.camera = camera
    bridge.command(COMMAND)
    return obs, camera


def _run_with_camera_outage(env, bridge, seed: int, duration: int, kind: str = "dropout") -> dict:
    """Drive the bridge until a hand carries an object (lifted 4 cm: ground truth, for the test's timing
    only), then break the camera (policy image and estimator: black for "dropout", the last frame for
    "frozen") for `duration` control steps; record holds, joint motion and what stays held."""
    obs, camera = _start_with_faulty_camera(env, bridge, seed, FaultConfig(duration=duration, reaches_policy=True))
    info = {"success": False}
    out: dict = {"fault_step": None, "hold_steps": [], "joints": [], "held": []}
    for step in range(env.config.max_steps):
        carried = {obj for obj, _ in bridge.pipeline.proprio.held.values()
                   if env.body_pos(obj)[2] > env.table_height + 0.06}
        if out["fault_step"] is None and carried:
            out["fault_step"], out["carried"] = step, carried
            camera.set_fault(kind)
        obs, _, terminated, truncated, info = env.step(bridge.step(camera.corrupt_observation(obs)))
        if bridge.camera_hold:
            out["hold_steps"].append(step)
            out["joints"].append(np.concatenate([np.ravel(v) for k, v in sorted(obs.items()) if "arm" in k]))
            out["held"].append({o: env.body_pos(o)[2] for o in out["carried"]})
        if terminated or truncated:
            break
    out["success"], out["steps"] = bool(info["success"]), step + 1
    return out


def test_camera_outage_holds_the_robot_still_keeps_its_grip_and_resumes(parts) -> None:
    """Black images reach the policy: with trust the robot holds still (not moving on bad data) with the
    object still in its hand, then goes on when the camera is back; without trust it never holds."""
    from sage_gr00t.bridge import BridgeConfig

    env, policy, planner = parts
    duration = 40
    bridge = SAGEGr00TBridge(policy, env, planner)
    r = _run_with_camera_outage(env, bridge, 1001, duration)  # a seed where a hand latched at its measured
    # pose drops the block (hands must keep their last command)
    holds = r["hold_steps"]
    print(f"\noutage at step {r['fault_step']} for {duration} steps carrying {r['carried']}: held "
          f"{holds[0]}..{holds[-1] if holds else None}; success {r['success']} in {r['steps']} steps")
    assert r["fault_step"] is not None and holds, "the bridge never held still during the camera outage"
    assert holds[0] == r["fault_step"], "black frames reached the policy before the robot held still"
    assert holds == list(range(holds[0], holds[-1] + 1)), "the hold flickered"
    assert 0 < holds[-1] + 1 - (r["fault_step"] + duration) <= 20  # resumed soon after live images came back
    joints = np.array(r["joints"][5:])  # after the arms have settled on the latched pose
    assert np.abs(joints - joints[0]).max() < 0.02, "the arms moved while holding"
    for obj, z in r["held"][-1].items():  # still carried: lifted above the table, not dropped
        assert z > env.table_height + 0.04, f"{obj} fell out of the hand while holding (z={z:.3f})"
    assert any(e["kind"] == "camera_resume" for e in bridge.events)

    blind = SAGEGr00TBridge(policy, env, planner, BridgeConfig(use_trust=False))
    assert not _run_with_camera_outage(env, blind, 1001, duration)["hold_steps"]


def test_frozen_camera_holds_the_robot_once_the_image_stream_is_distrusted(parts) -> None:
    """A repeated frame is weaker evidence than a black one: the robot holds once the policy image's
    trust has fallen below `camera_hold_below` (within 20 control steps), not on the first repeat."""
    from sage_gr00t.perceive.camera import POLICY_IMAGE

    env, policy, planner = parts
    bridge = SAGEGr00TBridge(policy, env, planner)
    r = _run_with_camera_outage(env, bridge, 1001, 40, kind="frozen")
    holds = r["hold_steps"]
    assert r["fault_step"] is not None and holds, "the bridge never held still on frozen frames"
    assert 3 <= holds[0] - r["fault_step"] <= 20
    assert holds == list(range(holds[0], holds[-1] + 1)), "the hold flickered"
    hold = next(e for e in bridge.events if e["kind"] == "camera_hold")
    assert hold["trust"] < bridge.config.camera_hold_below
    assert any(e["kind"] == "camera_resume" for e in bridge.events)
    assert bridge.trust.stream_ok(POLICY_IMAGE)


def test_a_faulty_estimator_with_live_policy_images_does_not_hold_the_robot(parts) -> None:
    """Only the object estimator's frames drop out; the policy's own images stay live. The camera
    estimator loses trust, but the robot keeps working: holding is for images the policy acts on."""
    from sage_gr00t.perceive.camera import POLICY_IMAGE

    env, policy, planner = parts
    bridge = SAGEGr00TBridge(policy, env, planner)
    obs, camera = _start_with_faulty_camera(env, bridge, 1000, FaultConfig(kind="dropout", start_step=10))
    for _ in range(50):
        obs, *_ = env.step(bridge.step(camera.corrupt_observation(obs)))
        assert not bridge.camera_hold, bridge.message
    assert bridge.trust.trust("camera") < 0.3
    assert bridge.trust.trust(POLICY_IMAGE) > 0.8
    assert bridge.lmodule.executor.queries > 0


def _executor_parts(parts, **lmodule_config):
    """A PlanExecutor on the shipped policy and a real L-module, the sort_blocks plan, a live observation
    and a perceived scene with both bins where they stand (the L-module anchors them on first sight)."""
    from sage_gr00t.act.lmodule import LModule, LModuleConfig
    from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig
    from sage_gr00t.modality import state_of
    from sage_gr00t.skills import Subtask

    env, policy, _ = parts
    obs, _ = env.reset(seed=1000)
    safety = SafetyFilter(env.embodiment, env.action_ranges(), SafetyFilterConfig(table_height=env.table_height))
    safety.reset(state_of(obs))
    lmodule = LModule(policy, safety, LModuleConfig(table_height=env.table_height, **lmodule_config))
    red = Subtask("pick_place", "red_block", "red_bin", "pick up the red block and place it in the red bin")
    blue = Subtask("pick_place", "blue_block", "blue_bin", "pick up the blue block and place it in the blue bin")
    z = env.table_height + 0.02
    bins = {"red_bin": np.array([0.42, -0.24, z]), "blue_bin": np.array([0.42, 0.24, z])}
    away = {"red_block": np.array([0.30, 0.0, z]), "blue_block": np.array([0.30, 0.05, z])}
    return lmodule, obs, (red, blue), bins, away


def test_plan_executor_confirms_a_later_subtask_done_out_of_order_and_finishes_the_plan(parts) -> None:
    """The policy puts the blue block away first: after confirm_steps perceived steps the executor closes
    that later subtask (out of order) and keeps on the red one; the plan ends when red is confirmed."""
    from sage_gr00t.act.lmodule import DONE, RUNNING, PerceivedState
    from sage_gr00t.act.plan_executor import PlanExecutor

    lmodule, obs, (red, blue), bins, away = _executor_parts(parts)
    executor = PlanExecutor(lmodule, COMMAND)
    executor.load([red, blue])
    assert executor.current == red and lmodule.subtask == red and executor.active
    blue_in = PerceivedState({**bins, **away, "blue_block": bins["blue_bin"] + [0.0, 0.01, 0.005]})
    confirm = lmodule.config.confirm_steps
    for i in range(confirm):
        step = executor.act(obs, blue_in)
        assert step.status == RUNNING and not step.finished
        assert bool(step.events) == (i == confirm - 1), step.events  # closed on the confirm_steps-th step
    (event,) = step.events
    assert event.closes and event.ok and event.out_of_order and event.subtask == blue
    assert event.as_dict() == {"kind": DONE, "subtask": blue.language, "out_of_order": True}
    assert executor.pending == [red] and executor.completed == [blue] and lmodule.subtask == red

    both_in = PerceivedState({**blue_in.positions, "red_block": bins["red_bin"] + [0.01, 0.0, 0.005]})
    steps = [executor.act(obs, both_in) for _ in range(confirm)]
    assert [s.status for s in steps] == [RUNNING] * (confirm - 1) + [DONE]
    assert steps[-1].finished and [e.as_dict() for e in steps[-1].events] == [{"kind": DONE, "subtask": red.language}]
    assert not executor.active and executor.completed == [blue, red] and not executor.failed and executor.succeeded
    # A replan keeps what is done: nothing is asked for again.
    executor.load([red, blue])
    assert not executor.active


def test_plan_executor_reports_retries_and_failure_and_replans_only_when_asked(parts) -> None:
    """No progress: a retry after stall_steps, then the subtask fails; with replan_on_failure the next
    subtask is not started (the new plan starts it), without it the plan goes on to the next."""
    from sage_gr00t.act.lmodule import FAILED, PerceivedState
    from sage_gr00t.act.plan_executor import RETRY, PlanExecutor

    for replan in (False, True):
        lmodule, obs, (red, blue), bins, away = _executor_parts(parts, stall_steps=2, max_retries=1)
        executor = PlanExecutor(lmodule, COMMAND, replan_on_failure=replan)
        executor.load([red, blue])
        still = PerceivedState({**bins, **away})
        steps = [executor.act(obs, still) for _ in range(5)]  # best set, 2 idle -> retry, 2 idle -> failed
        kinds = [[e.kind for e in s.events] for s in steps]
        assert kinds == [[], [], [RETRY], [], [FAILED]], kinds
        assert steps[-1].status == FAILED and steps[-1].replan is replan and not steps[-1].finished
        assert executor.failed == [red] and executor.pending == [blue] and not executor.succeeded
        assert lmodule.subtask == (red if replan else blue)


@pytest.mark.parametrize("named, language_rises", [("red", True), ("blue", False)])
def test_the_policys_grasps_move_its_visual_and_language_trust(parts, named: str, language_rises: bool) -> None:
    """The expert always grasps the scene's own goal (the red block here); SAGE's subtask names `named`. A grasp
    of the named block raises gr00t_language, a grasp of another lowers it; either grasp raises gr00t_visual."""
    from sage_gr00t.experts.policy import ExpertPolicy

    _, _, planner = parts
    env = make_env("sort_blocks", variant="language", image_height=128, image_width=128)
    try:
        env.task.pin_goal(env.task.goal_choices().index("red->red"))
        policy = ExpertPolicy(env)
        bridge = SAGEGr00TBridge(policy, env, planner)
        obs, _ = env.reset(seed=1000)
        policy.reset()
        bridge.reset(obs)
        bridge.command(f"put the {named} block in the red bin")
        before = dict(bridge.trust.components)
        for _ in range(60):  # the expert has grasped the red block by then
            obs, *_ = env.step(bridge.step(obs))
        assert bridge.plan_result is not None and bridge.plan_result.ok, bridge.message
        assert bridge.plan_result.subtasks[0].object_name == f"{named}_block"
        after = bridge.trust.components
        assert after["gr00t_visual"] > before["gr00t_visual"]
        assert after["gr00t_language"] != before["gr00t_language"]
        assert (after["gr00t_language"] > before["gr00t_language"]) == language_rises
    finally:
        env.close()
