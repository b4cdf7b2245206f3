"""Chunk execution: exact replay without smoothing, smoother boundaries with blending/ensembling."""

from __future__ import annotations

import numpy as np
import pytest

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, mean_squared_jerk


class DisagreeingPolicy:
    """Chunks follow a smooth ramp but each query adds its own offset, like resampled flow noise."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        self.calls += 1
        t0 = observation["t"]
        offset = self.rng.normal(0, 0.05)
        ramp = 0.01 * (t0 + np.arange(16))[:, None] + offset
        return {"action.left_arm": np.repeat(ramp, 7, 1), "action.right_arm": np.zeros((16, 7))}


def _rollout(mode: str, steps: int = 96) -> tuple[np.ndarray, int]:
    policy = DisagreeingPolicy()
    executor = ChunkExecutor(policy, ChunkExecutorConfig(mode=mode, execute_steps=8))
    executor.reset()
    out = [executor.act({"t": t})["action.left_arm"] for t in range(steps)]
    return np.array(out), executor.queries


def test_none_mode_replays_chunk_prefixes_exactly() -> None:
    policy = DisagreeingPolicy(seed=1)
    executor = ChunkExecutor(policy, ChunkExecutorConfig(mode="none", execute_steps=8))
    reference = DisagreeingPolicy(seed=1)
    for t in range(24):
        action = executor.act({"t": t})
        if t % 8 == 0:
            chunk = reference.get_action({"t": t})["action.left_arm"]
        np.testing.assert_allclose(action["action.left_arm"], chunk[t % 8])
    assert executor.queries == 3


# Ensembling with a query every 8 steps still has two half-size steps per chunk (one when a chunk
# joins the average, one when the oldest expires), so it removes less jerk than cross-fading.
@pytest.mark.parametrize(("mode", "max_ratio"), [("blend", 0.5), ("ensemble", 0.75)])
def test_smoothing_lowers_jerk_at_chunk_boundaries(mode: str, max_ratio: float) -> None:
    raw, raw_queries = _rollout("none")
    smooth, queries = _rollout(mode)
    assert queries == raw_queries == 12  # smoothing costs no extra policy queries
    jerk_raw, jerk_smooth = mean_squared_jerk(raw, 0.05), mean_squared_jerk(smooth, 0.05)
    print(f"\n{mode}: mean squared jerk {jerk_raw:.1f} -> {jerk_smooth:.1f}")
    assert jerk_smooth < max_ratio * jerk_raw
    # Smoothing must still follow the commanded motion (no lag beyond the per-query offsets).
    assert np.abs(smooth - raw).max() < 0.2


def test_single_step_chunks_query_every_step() -> None:
    class OneStep:
        def reset(self) -> None: ...

        def get_action(self, observation: dict) -> dict[str, np.ndarray]:
            return {"action.left_arm": np.full((1, 7), observation["t"], float)}

    executor = ChunkExecutor(OneStep(), ChunkExecutorConfig(mode="blend"))
    values = [executor.act({"t": t})["action.left_arm"][0] for t in range(5)]
    assert values == [0, 1, 2, 3, 4] and executor.queries == 5


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown chunk execution mode"):
        ChunkExecutorConfig(mode="smooth")
