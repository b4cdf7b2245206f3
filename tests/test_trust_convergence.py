"""sage-bench trust-convergence: camera trust falls in a fault window and recovers; a failing subtask costs
sage_execution trust; the settling time reported is the one the recorded curve shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sage_gr00t.cli.bench.trust_convergence import (
    CAMERA,
    COMPONENTS,
    FailingSubtaskPolicy,
    TrustConvergenceConfig,
    run_scenario,
    settling,
)

ROOT = Path(__file__).resolve().parents[1]
PLANNER = ROOT / "assets/planner"
pytestmark = pytest.mark.skipif(not PLANNER.is_dir(), reason="shipped planner missing")


def test_settling_definition() -> None:
    curve = np.array([1.0, 1.0, 0.5, 0.3, 0.22, 0.2, 0.21, 0.2])
    before, final, steps = settling(curve, 2, len(curve), 0.05)
    assert before == 1.0 and final == 0.2
    assert steps == 2  # from index 2+2=4 on every value is within 0.05 of 0.2; index 3 (0.3) is not
    assert settling(np.full(5, 0.7), 1, 5, 0.05)[2] == 0  # never left the band
    assert settling(np.full(5, np.nan), 1, 5, 0.05)[2] is None


@pytest.fixture(scope="module")
def parts():
    import torch

    from sage_gr00t.policy.factory import make_policy
    from sage_gr00t.session import SessionConfig, build_env, build_session

    torch.set_num_threads(1)
    config = SessionConfig(task="sort_blocks", policy="expert", planner=str(PLANNER), controller="sage")
    env = build_env(config)
    wrapper = FailingSubtaskPolicy(make_policy("expert", env, "cpu"), index=0)
    session = build_session(config, env=env, policy=wrapper)
    wrapper.bind(session.bridge)
    yield env, session.bridge, wrapper
    session.close()
    env.close()


def test_camera_fault_window_trust_falls_then_recovers(parts) -> None:
    env, bridge, wrapper = parts
    cfg = TrustConvergenceConfig(scenario=["camera"], episodes=1, fault_from=40, fault_to=100,
                                 camera_fault="dropout", fail_from=0, fail_to=1)
    res = run_scenario("camera", cfg, env, bridge, wrapper, lambda _: None)
    cam = np.array(res["episodes"][0]["curves"][CAMERA], float)
    assert len(cam) > 140
    assert cam[99] < 0.3 < cam[39]  # trust fell during the window
    assert cam[-1] > cam[99] + 0.2  # and came back after it
    for row in res["events"]:
        start = 40 if row["event"] == "camera degrades" else 100
        end = 100 if row["event"] == "camera degrades" else len(cam)
        steps = row["settle_steps"]
        assert steps is not None and 0 <= steps < end - start  # finite, inside the phase
        assert row["after"] == pytest.approx(cam[end - 1])
        seg = cam[start + steps:end]
        assert np.all(np.abs(seg - row["after"]) <= cfg.band)  # stays in the band from there on ...
        if steps > 0:
            assert abs(cam[start + steps - 1] - row["after"]) > cfg.band  # ... and not one step earlier
    # every component trust was recorded each step, fed by outcomes only (they start at the priors)
    for name in COMPONENTS:
        assert len(res["episodes"][0]["curves"][name]) == len(cam)


def test_failing_subtask_lowers_execution_trust(parts) -> None:
    env, bridge, wrapper = parts
    cfg = TrustConvergenceConfig(scenario=["subtask"], episodes=1, fail_from=0, fail_to=1, fail_subtask=0)
    res = run_scenario("subtask", cfg, env, bridge, wrapper, lambda _: None)
    ep = res["episodes"][0]
    assert ep["failing_executor"] and ep["executor_held_steps"] > 0 and ep["failed"] >= 1
    execution = ep["curves"]["sage_execution"]
    assert execution[-1] < execution[0]
    assert False in ep["outcomes"]["sage_execution"]  # a real failed-subtask outcome moved it
    assert not wrapper.failing  # restored after the scenario
