"""Chunk execution: exact replay without smoothing, smoother boundaries with blending/ensembling."""

from __future__ import annotations

import time

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


# ---------------------------------------------------------------------------------------------- inference delay
class StampPolicy:
    """Chunk values encode (observation step, index) as 1000 * obs_t + index: a sent action names its source."""

    def __init__(self, horizon: int = 16, sleep_s: float = 0.0) -> None:
        self.horizon, self.sleep_s, self.calls = horizon, sleep_s, 0

    def reset(self) -> None: ...

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
        values = 1000.0 * observation["t"] + np.arange(self.horizon, dtype=float)
        return {"action.left_arm": np.repeat(values[:, None], 7, 1)}


def _decode(action: dict[str, np.ndarray]) -> tuple[int, int]:
    value = round(float(action["action.left_arm"][0]))
    return value // 1000, value % 1000


@pytest.mark.parametrize("mode", ["none", "rtc"])
@pytest.mark.parametrize(("delay", "execute_steps"), [(0, 8), (2, 8), (4, 8), (8, 8), (3, 5)])
def test_delayed_actions_stay_within_the_staleness_budget(mode: str, delay: int, execute_steps: int) -> None:
    """Every action sent at step k comes from a chunk computed on the observation of step t with
    delay <= k - t <= execute_steps + delay - 1 (the first chunk, computed at once at step 0, excepted), and
    each new chunk is first used at its index `delay` (its steps before that happened during inference)."""
    executor = ChunkExecutor(StampPolicy(), ChunkExecutorConfig(mode=mode, execute_steps=execute_steps,
                                                                delay_steps=delay))
    sent = [_decode(executor.act({"t": k})) for k in range(100)]
    for k, (obs_t, index) in enumerate(sent):
        assert index == k - obs_t  # the chunk's own index for this step: no action is shifted in time
        assert k - obs_t <= execute_steps + delay - 1
        if obs_t > 0:
            assert k - obs_t >= delay
    assert [(s.step, s.obs_step, s.index) for s in executor.trace] == [(k, t, i) for k, (t, i) in enumerate(sent)]
    firsts = [sent[k] for k in executor.switch_steps]
    assert len(firsts) >= 100 // execute_steps - 2 and all(index == delay for _, index in firsts)
    assert executor.queries == 1 + len(executor.switch_steps) + (executor._pending is not None)
    assert executor.delays == [0] + [delay] * (executor.queries - 1)


@pytest.mark.parametrize("mode", ["blend", "ensemble"])
def test_smoothing_modes_take_delayed_chunks_from_index_delay(mode: str) -> None:
    executor = ChunkExecutor(StampPolicy(), ChunkExecutorConfig(mode=mode, execute_steps=8, delay_steps=4))
    for k in range(64):
        executor.act({"t": k})
    trace = list(executor.trace)
    assert all(4 <= s.step - s.obs_step <= 11 for s in trace if s.obs_step > 0)
    assert all(trace[k].index == 4 for k in executor.switch_steps)


def test_thread_mode_measures_the_delay() -> None:
    """A 70 ms inference at 20 Hz (50 ms steps) is ceil(1.4) = 2 steps of delay; the loop here runs faster than
    real time, so act() waits for late results (missed deadlines) but the timing contract is the same."""
    policy = StampPolicy(sleep_s=0.07)
    executor = ChunkExecutor(policy, ChunkExecutorConfig(mode="none", execute_steps=8, async_mode="thread"))
    sent = []
    for k in range(40):
        sent.append(_decode(executor.act({"t": k})))
        time.sleep(0.005)
    executor.close()
    assert executor.delays[0] == 0 and set(executor.delays[1:]) == {2}
    assert all(index == 2 for k, (_, index) in enumerate(sent) if k in executor.switch_steps)
    assert all(2 <= k - t <= 9 for k, (t, _) in enumerate(sent) if t > 0)
    assert all(index == k - t for k, (t, index) in enumerate(sent))


def test_bad_delay_configs_are_one_clear_value_error() -> None:
    for kwargs, message in [({"delay_steps": -1}, "delay_steps must be an int >= 0"),
                            ({"delay_steps": 9, "execute_steps": 8}, "must be <= execute_steps"),
                            ({"async_mode": "process"}, "Unknown async_mode"),
                            ({"control_hz": 0.0}, "control_hz"),
                            ({"rtc_beta": -1.0}, "rtc_beta"),
                            ({"mode": "rtc2"}, "Unknown chunk execution mode")]:
        with pytest.raises(ValueError, match=message) as info:
            ChunkExecutorConfig(**kwargs)
        assert "\n" not in str(info.value)
    # The chunk length is known only once the policy answers: a delay the chunks cannot cover fails on first use.
    executor = ChunkExecutor(StampPolicy(horizon=16), ChunkExecutorConfig(mode="none", execute_steps=12,
                                                                          delay_steps=9))
    with pytest.raises(ValueError, match="needs chunks of at least 18 steps") as info:
        for k in range(20):
            executor.act({"t": k})
    assert "\n" not in str(info.value)
