"""Chunk execution: exact replay without smoothing, smoother boundaries with blending/ensembling."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig, mean_squared_jerk, rtc_weights
from sage_gr00t.paths import REPO_ROOT
from sage_gr00t.policy.gr00t import Gr00tModel, Gr00tNativePolicy, compact_config, load_policy
from sage_gr00t.tasks import make_env


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
    """A 65 ms inference at 20 Hz (50 ms steps) is ceil(1.3) = 2 steps of delay; the loop here runs faster than
    real time, so act() waits for late results (missed deadlines) but the timing contract is the same."""
    policy = StampPolicy(sleep_s=0.065)
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


# ---------------------------------------------------------------------------------------------- real-time chunking
SHIPPED = REPO_ROOT / "assets" / "policies" / "gr00t_compact"
DELAY, OFFSET = 4, 8  # the new chunk starts 8 steps into the old one; 4 steps execute during inference


@pytest.fixture(scope="module")
def rtc_case():
    """The shipped policy, the observation 8 steps into its first chunk on pick_apple, and that chunk's rest."""
    torch.set_num_threads(1)
    policy = load_policy(SHIPPED)
    env = make_env("pick_apple")
    try:
        obs, _ = env.reset(seed=2000)
        first = policy.get_action(obs)
        for i in range(OFFSET):
            obs, *_ = env.step({k: v[i] for k, v in first.items()})
    finally:
        env.close()
    prefix = {k: v[OFFSET:] for k, v in first.items()}
    return policy, obs, first, prefix, rtc_weights(16 - OFFSET, DELAY)


def _weighted_error(chunk: dict, prefix: dict, weights: np.ndarray, lo: int, hi: int) -> float:
    return float(sum((weights[lo:hi, None] * (chunk[k][lo:hi] - prefix[k][lo:hi]) ** 2).sum() for k in prefix))


def test_rtc_weights_follow_the_paper() -> None:
    w = rtc_weights(8, 4)
    assert np.array_equal(w[:4], np.ones(4)) and np.all(np.diff(w[3:]) < 0) and 0 < w[-1] < w[4] < 1
    c = (8 - np.arange(4, 8)) / (8 - 4 + 1)
    np.testing.assert_allclose(w[4:], c * (np.exp(c) - 1) / (np.e - 1))


def test_rtc_inpainting_keeps_the_frozen_prefix_exactly(rtc_case) -> None:
    """Asserted: the returned joint-unit float32 arrays' first DELAY rows are bitwise equal to the prefix
    (np.array_equal, after denormalization), and the rest is the model's own denoising: the soft-masked rows
    differ from the prefix, the rows past the overlap are finite and differ from the old chunk's last action."""
    policy, obs, first, prefix, weights = rtc_case
    policy.seed(7)
    new = policy.get_action_guided(obs, prefix, weights, DELAY)
    for key in prefix:
        assert new[key].dtype == np.float32 and new[key].shape == first[key].shape
        assert np.array_equal(new[key][:DELAY], prefix[key][:DELAY])
    arm = "action.right_arm"  # the moving arm
    assert np.abs(new[arm][DELAY:8] - prefix[arm][DELAY:]).max() > 1e-3
    assert np.all(np.isfinite(new[arm])) and np.abs(new[arm][8:] - first[arm][-1]).max() > 1e-3


def test_rtc_without_guidance_is_the_plain_denoiser(rtc_case) -> None:
    """beta = 0: on the same noise the guided sampler gives the plain chunk (up to rounding) past the frozen rows."""
    policy, obs, _, prefix, weights = rtc_case
    policy.seed(3)
    plain = policy.get_action(obs)
    policy.seed(3)
    unguided = policy.get_action_guided(obs, prefix, weights, DELAY, beta=0.0)
    for key in prefix:
        np.testing.assert_allclose(unguided[key][DELAY:], plain[key][DELAY:], atol=1e-5)


def test_guidance_pulls_the_soft_masked_region_toward_the_previous_chunk(rtc_case) -> None:
    """Same noise, with vs without guidance, on a randomly initialized compact GR00T model (its denoised estimate
    depends on the noisy actions, so the vector-Jacobian product is large) and on the shipped policy (nearly
    deterministic given the observation: a small pull, but in the right direction on every seed here)."""
    shipped, obs, _, prefix, weights = rtc_case
    torch.manual_seed(0)
    random_model = Gr00tNativePolicy(Gr00tModel(compact_config()), shipped.processor.embodiments, shipped.embodiment)
    for policy, seeds, factor in ((random_model, (0, 1), 0.8), (shipped, (0, 1, 2), 1.0)):
        for seed in seeds:
            policy.seed(seed)
            plain = policy.get_action(obs)
            policy.seed(seed)
            guided = policy.get_action_guided(obs, prefix, weights, DELAY)
            soft_plain = _weighted_error(plain, prefix, weights, DELAY, len(weights))
            soft_guided = _weighted_error(guided, prefix, weights, DELAY, len(weights))
            print(f"\nsoft-mask error {soft_plain:.5f} -> {soft_guided:.5f} (seed {seed})")
            assert soft_guided < factor * soft_plain


def test_rtc_executor_runs_the_old_chunk_through_the_delay(rtc_case) -> None:
    """Closed loop with delay 4: steps 8..11 execute the first chunk's rows 8..11 exactly; from step 12 the new
    chunk (computed on the observation of step 8) runs from its index 4."""
    policy, *_ = rtc_case
    env = make_env("pick_apple")
    executor = ChunkExecutor(policy, ChunkExecutorConfig(mode="rtc", execute_steps=8, delay_steps=DELAY))
    try:
        obs, _ = env.reset(seed=2000)
        policy.seed(0)
        first = policy.get_action(obs)
        policy.seed(0)
        executor.reset()
        sent = []
        for _ in range(14):
            sent.append(executor.act(obs))
            obs, *_ = env.step(sent[-1])
    finally:
        env.close()
    for step in range(12):
        for key in first:
            assert np.array_equal(sent[step][key], first[key][step])
    assert executor.switch_steps == [12] and executor.trace[12] == (12, 8, 4)


def test_identity_guidance_pulls_the_shipped_head_hard_and_keeps_the_prefix(rtc_case) -> None:
    """`guidance="identity"` (J taken as I) on the near-deterministic shipped head: the soft-masked error falls
    to under half of the plain chunk's (the paper's product moves it by a few percent), frozen rows still exact."""
    policy, obs, _, prefix, weights = rtc_case
    for seed in (0, 1):
        policy.seed(seed)
        plain = policy.get_action(obs)
        policy.seed(seed)
        guided = policy.get_action_guided(obs, prefix, weights, DELAY, guidance="identity")
        for key in prefix:
            assert np.array_equal(guided[key][:DELAY], prefix[key][:DELAY])
        soft_plain = _weighted_error(plain, prefix, weights, DELAY, len(weights))
        soft_guided = _weighted_error(guided, prefix, weights, DELAY, len(weights))
        print(f"\nidentity guidance: soft-mask error {soft_plain:.5f} -> {soft_guided:.5f} (seed {seed})")
        assert soft_guided < 0.5 * soft_plain
    with pytest.raises(ValueError, match="guidance"):
        policy.get_action_guided(obs, prefix, weights, DELAY, guidance="bogus")
