"""SimToRealAdapter: colour calibration, latency compensation, action smoothing, slow start; its eval hook.

On the embedded MuJoCo simulator (fast); the Isaac Lab rendering checks live in test_isaaclab_tasks.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from sage_gr00t.act.chunking import ChunkExecutor, mean_squared_jerk
from sage_gr00t.act.safety import SafetyFilter, SafetyFilterConfig
from sage_gr00t.act.sim_to_real import (
    ActionSmoother,
    LatencyCompensation,
    SimToRealAdapter,
    SimToRealAdapterConfig,
    SlowStart,
    adapter_config,
    measure_actuation_latency,
    reset_frames,
)
from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.modality import ARM_GROUPS, EGO_VIEW, action_key
from sage_gr00t.perceive.calibration import CALIBRATION_MODES, ColourCalibration, ColourStats
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.tasks import make_env

IMAGE = 64


@pytest.fixture(scope="module")
def env():
    e = make_env("pick_apple", image_height=IMAGE, image_width=IMAGE)
    yield e
    e.close()


@pytest.fixture(scope="module")
def frames(env) -> dict[str, list[np.ndarray]]:
    """Rendered reset frames: a 'source' set and a disjoint 'other' set of seeds."""
    return {"source": reset_frames(env, range(4)), "other": reset_frames(env, range(4, 8))}


def distort(frames: list[np.ndarray], gain=(0.7, 0.85, 0.6), offset=(30.0, 10.0, 40.0)) -> list[np.ndarray]:
    """A per-channel affine colour distortion (no pixel clips: 255 * gain + offset < 255)."""
    return [np.clip(np.rint(f * np.asarray(gain) + np.asarray(offset)), 0, 255).astype(np.uint8) for f in frames]


# ------------------------------------------------------------------------------------------------ colour
@pytest.mark.parametrize("mode", CALIBRATION_MODES)
def test_calibration_recovers_a_known_affine_distortion(frames, mode):
    """Fitted on the distorted frames alone plus the statistics of the undistorted ones, the map undoes it."""
    source = frames["source"]
    target = distort(source)
    before = np.abs(np.stack(target).astype(float) - np.stack(source)).mean()
    calibration = ColourCalibration.fit(target, ColourStats.of_frames(source), mode)
    recovered = np.stack([calibration.apply(f) for f in target]).astype(float)
    error = np.abs(recovered - np.stack(source)).mean()
    assert before > 20 and error < 1.5, (mode, before, error)
    if mode == "affine":  # the per-channel gains are the inverse of the distortion's
        np.testing.assert_allclose(np.diag(calibration.matrix), 1 / np.array([0.7, 0.85, 0.6]), rtol=0.02)
        np.testing.assert_allclose(calibration.matrix - np.diag(np.diag(calibration.matrix)), 0, atol=1e-12)


@pytest.mark.parametrize("mode", CALIBRATION_MODES)
def test_calibration_from_other_scenes_generalizes(frames, mode):
    """The fair setting: source statistics from some layouts, target frames of other layouts (no pairs); the
    map still removes most of the distortion from the target frames."""
    source_stats = ColourStats.of_frames(frames["source"])
    clean = frames["other"]
    target = distort(clean)
    calibration = ColourCalibration.fit(target, source_stats, mode)
    before = np.abs(np.stack(target).astype(float) - np.stack(clean)).mean()
    after = np.abs(np.stack([calibration.apply(f) for f in target]).astype(float) - np.stack(clean)).mean()
    assert after < 0.25 * before, (mode, before, after)


def test_colour_stats_round_trip_and_identity(frames):
    stats = ColourStats.of_frames(frames["source"])
    again = ColourStats.from_dict(stats.to_dict())
    np.testing.assert_allclose(again.cov, stats.cov)
    image = frames["source"][0]
    np.testing.assert_array_equal(ColourCalibration.identity().apply(image), image)
    with pytest.raises(ValueError, match="mode"):
        ColourCalibration.fit(frames["source"], stats, "gamma")


# ------------------------------------------------------------------------------------------------ smoothing
def expert_arm_targets(env, seed: int = 1000, steps: int = 120) -> list[dict]:
    """The scripted expert's commanded actions through the chunk executor (a real action sequence)."""
    executor = ChunkExecutor(ExpertPolicy(env))
    obs, _ = env.reset(seed=seed)
    executor.reset()
    actions = []
    for _ in range(steps):
        action = executor.act(obs)
        actions.append(action)
        obs, *_ = env.step(action)
    return actions


def test_smoothing_bounds_lag_and_reduces_jerk(env):
    actions = expert_arm_targets(env)
    rng = np.random.default_rng(0)
    # The expert's targets plus the step-to-step jitter a learned policy adds (0.01 rad, white).
    noisy = [{k: v + (rng.normal(0, 0.01, v.shape).astype(np.float32) if k in map(action_key, ARM_GROUPS) else 0)
              for k, v in a.items()} for a in actions]
    smoother = ActionSmoother(alpha=0.5, max_lag=0.05)
    smoother.reset(noisy[0])
    smoothed = [smoother(a) for a in noisy]
    raw = np.array([np.concatenate([a[action_key(g)] for g in ARM_GROUPS]) for a in noisy])
    out = np.array([np.concatenate([a[action_key(g)] for g in ARM_GROUPS]) for a in smoothed])
    assert np.abs(out - raw).max() <= 0.05 + 1e-6  # bounded lag
    dt = 1 / env.config.control_hz
    assert mean_squared_jerk(out, dt) < 0.3 * mean_squared_jerk(raw, dt)
    for a, s in zip(noisy, smoothed, strict=True):  # the grippers pass unchanged
        np.testing.assert_array_equal(a["action.left_hand"], s["action.left_hand"])


def test_smoothing_lag_of_a_ramp_is_its_time_constant():
    smoother = ActionSmoother(alpha=0.5, max_lag=1.0, groups=("left_arm",))
    smoother.reset({"action.left_arm": np.zeros(7)})
    rate = 0.01
    out = [smoother({"action.left_arm": np.full(7, rate * t)})["action.left_arm"][0] for t in range(1, 60)]
    lag_steps = (rate * 59 - out[-1]) / rate
    assert lag_steps == pytest.approx((1 - 0.5) / 0.5, abs=1e-3)
    tight = ActionSmoother(alpha=0.1, max_lag=0.02, groups=("left_arm",))
    tight.reset({"action.left_arm": np.zeros(7)})
    jump = tight({"action.left_arm": np.ones(7)})["action.left_arm"]
    np.testing.assert_allclose(jump, 0.98, atol=1e-6)  # a jump is followed to within max_lag at once


# ------------------------------------------------------------------------------------------------ slow start
def test_slow_start_ramps_stepwise_from_10_to_100_percent(env):
    safety = SafetyFilter(env.embodiment, env.action_ranges(), SafetyFilterConfig(speed_scale=0.1))
    ramp = SlowStart(safety, (0.1, 0.25, 0.5, 0.75, 1.0), steps_per_stage=4)
    for _ in range(24):
        ramp.record(hazard=False)
    assert ramp.scales == [0.1] * 4 + [0.25] * 4 + [0.5] * 4 + [0.75] * 4 + [1.0] * 8
    ramp.record(hazard=True)  # a hazard: one stage down at once
    assert safety.speed_scale == 0.75
    ramp.reset()
    assert safety.speed_scale == 0.1 and ramp.scales == []
    off = SlowStart(safety, (0.1, 1.0), steps_per_stage=0)
    assert safety.speed_scale == 1.0
    off.record(hazard=False)
    assert off.scales == [1.0]


def test_adapter_starts_each_episode_slow(env):
    """Through the adapter the first commands move at most 10% of the filter's velocity limit; full speed later."""
    config = SimToRealAdapterConfig(calibration=None, latency_steps=0, smoothing=1.0, ramp_steps=4)
    adapter = SimToRealAdapter.calibrated(ExpertPolicy(env), env, config)
    executor = ChunkExecutor(adapter)
    limit = adapter.safety.config.max_velocity * adapter.safety.config.control_dt
    for _ in range(2):  # two episodes: the ramp starts over
        obs, _ = env.reset(seed=1000)
        executor.reset()
        previous = np.concatenate([obs[f"state.{g}"] for g in ARM_GROUPS])
        for step in range(20):
            command = adapter.condition(executor.act(obs), obs)
            arms = np.concatenate([command[action_key(g)] for g in ARM_GROUPS])
            if step < 4:
                assert np.abs(arms - previous).max() <= 0.1 * limit + 1e-6
            previous = arms
            obs, *_ = env.step(command)
        assert adapter.slow_start.scales[:4] == [0.1] * 4 and adapter.slow_start.scales[-1] == 1.0


# ------------------------------------------------------------------------------------------------ latency
def test_latency_compensation_drops_exactly_the_stale_actions():
    chunk = {"action.left_arm": np.arange(16)[:, None] * np.ones((16, 7)),
             "action.left_hand": np.arange(16)[:, None] * np.ones((16, 7)) + 100}
    out = LatencyCompensation(3).apply(chunk)
    for key, value in chunk.items():
        np.testing.assert_array_equal(out[key], value[3:])
    assert LatencyCompensation(0).apply(chunk) is chunk
    with pytest.raises(ValueError, match="leaves nothing"):
        LatencyCompensation(16).apply(chunk)


def test_actuation_latency_is_measured(env):
    """The probe finds the simulator's action latency: 0 nominally, k with a k-step command delay."""
    assert measure_actuation_latency(env) == 0
    delayed = make_env("pick_apple", image_height=IMAGE, image_width=IMAGE, randomization=DomainRandomizationConfig(
        enabled=True, action_latency_steps=(2, 2)))
    try:
        assert measure_actuation_latency(delayed) == 2
    finally:
        delayed.close()


class Recorder:
    """A policy returning numbered chunks and keeping the images it saw."""

    def __init__(self, horizon: int = 16) -> None:
        self.images: list[np.ndarray] = []
        self.horizon = horizon

    def reset(self) -> None:
        pass

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        self.images.append(observation[EGO_VIEW])
        return {"action.left_arm": np.tile(np.arange(self.horizon, dtype=np.float32)[:, None], (1, 7))}


def test_adapter_wraps_a_policy(env, frames):
    """get_action: the inner policy sees the calibrated image, the chunk comes back without its stale actions."""
    safety = SafetyFilter(env.embodiment, env.action_ranges())
    colour = ColourCalibration.fit(distort(frames["source"]), ColourStats.of_frames(frames["source"]))
    inner = Recorder()
    adapter = SimToRealAdapter(inner, safety, SimToRealAdapterConfig(calibration="affine"), colour, latency_steps=2)
    distorted = distort(frames["source"][:1])[0]
    chunk = adapter.get_action({EGO_VIEW: distorted})
    assert np.abs(inner.images[0].astype(float) - frames["source"][0]).mean() < 1.5
    np.testing.assert_array_equal(chunk["action.left_arm"][:, 0], np.arange(2, 16))


def test_adapter_options_parse():
    config = adapter_config({"calibration": "none", "latency_steps": "measured", "smoothing": 1,
                             "target_seeds": "900-903", "speed_stages": "0.1,0.5,1.0"})
    assert config.calibration is None and config.latency_steps is None and config.smoothing == 1
    assert config.target_seeds == (900, 901, 902, 903) and config.speed_stages == (0.1, 0.5, 1.0)
    with pytest.raises(ValueError, match="Unknown adapter option"):
        adapter_config({"gain": 2})
    with pytest.raises(ValueError, match="stages"):
        adapter_config({"speed_stages": "0.5,1.0"})


def test_sage_eval_with_the_adapter(tmp_path):
    """`sage-eval --adapter` on the embedded simulator: the calibration report is written, the expert (which
    ignores images) still succeeds through smoothing and slow start, and the filter's clamps are counted."""
    import json

    from sage_gr00t.cli.eval import main

    out = tmp_path / "run"
    code = main(["--policy", "expert", "--task", "pick_apple", "--episodes", "1", "--videos", "0", "--no-report",
                 "--adapter", "--adapter-option", "source_seeds=0,1", "target_seeds=2,3", "--out", str(out),
                 "--task-option", f"image_height={IMAGE}", f"image_width={IMAGE}"])
    assert code == 0
    report = json.loads(next(out.glob("adapter_pick_apple_*.json")).read_text())
    assert report["colour"]["mode"] == "affine" and report["latency"] == {"source_steps": 0, "target_steps": 0,
                                                                           "dropped": 0}
    records = json.loads((out / "results.json").read_text())
    records = records["episodes"] if isinstance(records, dict) else records
    assert records[0]["success"] and records[0]["safety_interventions"] is not None
