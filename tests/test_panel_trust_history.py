"""The panel's view-model exposes the trust curves over time: camera trust and the four component trusts,
a bounded history (PanelConfig.history_len samples)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_gr00t.panel import PanelConfig, PanelViewModel

ROOT = Path(__file__).resolve().parents[1]
PLANNER = ROOT / "assets/planner"
COMPONENTS = ("sage_execution", "sage_planning", "gr00t_visual", "gr00t_language")
pytestmark = pytest.mark.skipif(not PLANNER.is_dir(), reason="shipped planner missing")


def test_history_has_camera_and_four_components_bounded() -> None:
    from sage_gr00t.plan.planner import HModulePlanner
    from sage_gr00t.policy.factory import make_policy
    from sage_gr00t.tasks import make_env

    env = make_env("pick_apple")
    try:
        vm = PanelViewModel(PanelConfig(task="pick_apple", seed=1000, dream_episodes=0, history_len=6), env=env,
                            policy=make_policy("expert", env, "cpu"), planner=HModulePlanner.load(PLANNER))
        assert vm.run("put the apple on the plate")
        for _ in range(12):
            vm.tick()
        history = vm.state()["history"]
        assert len(history["tick"]) == 6  # bounded: the last history_len samples
        assert history["tick"] == sorted(history["tick"]) and history["tick"][-1] == vm.state()["tick"]
        assert set(COMPONENTS) <= set(history["components"])
        assert "camera" in history["sensors"]
        for name in COMPONENTS:
            assert len(history["components"][name]) == 6
        assert len(history["sensors"]["camera"]) == 6
    finally:
        env.close()
