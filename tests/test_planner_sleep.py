"""Planner updates in sleep: commands a successful SAGE episode confirmed, taught to the learned H-module.

Real parts throughout: the shipped planner (MiniLM features), the MuJoCo task, the SAGE bridge with the scripted
expert as its policy, the SQLite experience store, real optimizer steps. The panel's "Sleep now" path
(`bridge.sleep_cycle`) is tested in tests/test_panel_viewmodel.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sage_gr00t.evaluation import run_bridge_episode
from sage_gr00t.learn.planner_sleep import MetCommand, PlannerConsolidator, PlannerSleepConfig, met_commands
from sage_gr00t.memory.store import ExperienceStore
from sage_gr00t.plan.families import task_scenes
from sage_gr00t.plan.planner import HModulePlanner, plan_matches
from sage_gr00t.session import SessionConfig, build_session

PLANNER = Path(__file__).resolve().parents[1] / "assets" / "planner"
# Phrasings deterministic grounding plans and the learned H-module alone does not (checked below, not assumed).
NEW = [("pick_apple", "apple => plate", (("pick_place", "apple", "plate"),)),
       ("stack_blocks", "the red block belongs on the blue block", (("pick_place", "red_block", "blue_block"),)),
       ("sort_blocks", "leave the blue block alone", (("pick_place", "red_block", "red_bin"),))]


@pytest.fixture(scope="module")
def scenes() -> dict:
    return {task: scene for task, variant, scene in task_scenes() if variant == "train"}


def _met(scenes: dict) -> list[MetCommand]:
    return [MetCommand(command, scenes[task], steps) for task, command, steps in NEW]


def test_a_successful_sage_episode_stores_its_command_plan_and_scene(tmp_path) -> None:
    store_path = tmp_path / "memory.sqlite"
    session = build_session(SessionConfig(task="pick_apple", controller="sage", policy="expert",
                                          memory_path=str(store_path)))
    try:
        result = run_bridge_episode(session.env, session.bridge, 1000, "apple => plate")
        assert result.success
    finally:
        session.close()
    with ExperienceStore(store_path) as store:
        met = met_commands(store)
    assert len(met) == 1 and met[0].command == "apple => plate"
    assert met[0].steps == (("pick_place", "apple", "plate"),)
    assert {"apple", "plate"} <= set(met[0].scene.names())


def test_sleep_teaches_the_learned_module_what_grounding_decided(scenes: dict, tmp_path) -> None:
    planner = HModulePlanner.load(PLANNER)
    met = _met(scenes)
    for m in met:  # the premise: grounding plans them, the learned H-module alone does not
        assert plan_matches("ok", m.steps, planner.plan(m.command, m.scene))
        assert not plan_matches("ok", m.steps, planner.learned_plan(m.command, m.scene))
    out = tmp_path / "planner"
    consolidator = PlannerConsolidator(planner, PlannerSleepConfig(steps=30, guard_examples=64, out=str(out)))
    report = consolidator.consolidate(met, cycle=1)
    assert report["decision"] == "kept", report
    assert report["after"]["new"] > 0.5 and report["after"]["guard"] >= report["before"]["guard"]
    learned = sum(plan_matches("ok", m.steps, planner.learned_plan(m.command, m.scene)) for m in met)
    assert learned == round(report["after"]["new"] * len(met))  # the live planner took the new weights
    reloaded = HModulePlanner.load(out)  # and the checkpoint holds them
    assert all(torch.allclose(a, b.float(), atol=1e-3) for a, b in zip(
        planner.model.state_dict().values(), reloaded.model.state_dict().values(), strict=True))
    again = consolidator.consolidate([m for m in met if plan_matches(
        "ok", m.steps, planner.learned_plan(m.command, m.scene))], cycle=2)
    assert again["decision"] == "skipped"  # nothing new: no update at all


def test_a_cycle_that_loses_held_out_phrasings_is_rolled_back_bit_for_bit(scenes: dict) -> None:
    planner = HModulePlanner.load(PLANNER)
    before = {k: v.clone() for k, v in planner.model.state_dict().items()}
    consolidator = PlannerConsolidator(planner, PlannerSleepConfig(steps=4, lr=3.0, guard_examples=48))
    report = consolidator.consolidate(_met(scenes), cycle=1)
    assert report["decision"] == "rolled_back", report
    assert report["after"]["guard"] < report["before"]["guard"] or report["after"]["new"] == 0
    assert all(torch.equal(before[k], v) for k, v in planner.model.state_dict().items())
