"""`SimToRealAdapter`: a trained policy moved to another domain (another simulator as the proxy, or a real robot).

It wraps any `Policy` (same observation / action-chunk dicts) and adds, in the order of the data flow:

1. image colour and intensity calibration (observation -> perceive): the ego view is mapped onto the training
   domain's colour statistics (`perceive.calibration.ColourCalibration`, fitted from a few reset frames of the
   target domain alone and reference statistics of training-domain frames: no paired images);
2. latency compensation (the chunk): a chunk is planned from the observation it was computed on, so when the
   target domain executes commands `k` control steps later than the source domain did, the chunk's first `k`
   actions are stale by the time they act; they are dropped (`LatencyCompensation`). `k` is configured, or
   measured on the target and the source by a small probe motion (`measure_actuation_latency`);
3. action smoothing (each step, after the chunk executor): an exponential low-pass on the arm joint targets
   whose lag is bounded (`ActionSmoother`: the output never trails the raw target by more than `max_lag`);
4. the slow-start speed protocol (each step): the safety filter's `speed_scale`, raised stepwise 10% -> 100%
   through the deployment protocol's `SpeedRamp` stages -- one stage per `ramp_steps` control steps without a
   hazard intervention, one stage down on a hazard -- so a new domain starts slow in every episode.

Steps 1-2 happen in `get_action` (the `Policy` interface, so a `ChunkExecutor` drives it unchanged); steps 3-4 in
`condition(action, obs)`, which the closed loop (`evaluation.run_episode`) calls on every action it sends.
`sage-eval --adapter` builds it through `session.build_session`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sage_gr00t.act.safety import HAZARD_KINDS, SafetyFilter, SafetyFilterConfig
from sage_gr00t.modality import ARM_GROUPS, EGO_VIEW, action_key, state_key, state_of
from sage_gr00t.perceive.calibration import CALIBRATION_MODES, ColourCalibration, ColourStats
from sage_gr00t.policy.base import Policy
from sage_gr00t.robot.protocol import SpeedRamp, SpeedRampConfig


@dataclass
class SimToRealAdapterConfig:
    """Each part can be switched off on its own (the ablations)."""

    calibration: str | None = "affine"  # None, or a `perceive.calibration` mode: affine | linear | histogram
    source_seeds: tuple[int, ...] = tuple(range(8))  # training-domain reset frames of the reference statistics
    target_seeds: tuple[int, ...] = tuple(range(900, 908))  # target-domain reset frames the map is fitted on
    latency_steps: int | None = None  # stale actions dropped per chunk; None: measured (target - source)
    smoothing: float = 0.5  # EMA weight of the new target (1: off); lag of a steady ramp (1 - a) / a steps
    max_lag: float = 0.05  # rad: the smoothed arm target stays within this of the raw one
    speed_stages: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)  # slow start (the deployment protocol's)
    ramp_steps: int = 4  # control steps per stage while no hazard intervention occurs (0: no slow start)

    def __post_init__(self) -> None:
        if self.calibration is not None and self.calibration not in CALIBRATION_MODES:
            raise ValueError(f"calibration must be None or one of {CALIBRATION_MODES}, got {self.calibration!r}.")
        if self.calibration is not None and (not self.source_seeds or not self.target_seeds):
            raise ValueError("Colour calibration needs source_seeds and target_seeds (a few reset frames each).")
        if self.latency_steps is not None and (not isinstance(self.latency_steps, int) or self.latency_steps < 0):
            raise ValueError(f"latency_steps must be None (measured) or an int >= 0, got {self.latency_steps!r}.")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1] (1: off), got {self.smoothing}.")
        if not self.max_lag > 0:
            raise ValueError(f"max_lag must be > 0, got {self.max_lag}.")
        if self.ramp_steps < 0:
            raise ValueError(f"ramp_steps must be >= 0, got {self.ramp_steps}.")
        SpeedRampConfig(stages=tuple(self.speed_stages))  # the protocol's own check (10% ... 100%, rising)
        self.speed_stages = tuple(float(s) for s in self.speed_stages)
        self.source_seeds, self.target_seeds = tuple(self.source_seeds), tuple(self.target_seeds)


# ------------------------------------------------------------------------------------------------ parts
@dataclass
class LatencyCompensation:
    """Drop a chunk's first `steps` actions: they were planned for control steps that have passed by the time the
    target domain executes them."""

    steps: int = 0

    def apply(self, chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.steps == 0:
            return chunk
        horizon = min(len(v) for v in chunk.values())
        if self.steps >= horizon:
            raise ValueError(f"Latency compensation of {self.steps} steps leaves nothing of a {horizon}-step chunk.")
        return {k: np.asarray(v)[self.steps:] for k, v in chunk.items()}


@dataclass
class ActionSmoother:
    """Exponential low-pass on joint targets with bounded lag: y_t = y_{t-1} + a (x_t - y_{t-1}), then
    |y_t - x_t| <= max_lag per joint. For a target moving at a steady rate the lag is (1 - a) / a steps; a jump
    is followed within max_lag at once. `groups`: the smoothed action groups (arms: the hands are binary
    grippers, a delayed close only loses the grasp)."""

    alpha: float = 0.5
    max_lag: float = 0.05
    groups: tuple[str, ...] = ARM_GROUPS
    _state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def reset(self, start: dict[str, np.ndarray] | None = None) -> None:
        """Forget the past; `start`: `state.<group>` or `action.<group>` arrays to start from (else the first
        target)."""
        self._state = {}
        for group in self.groups:
            for key in (action_key(group), state_key(group)):
                if start is not None and key in start:
                    self._state[action_key(group)] = np.asarray(start[key], np.float64).copy()
                    break

    def __call__(self, action: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(action)
        for group in self.groups:
            key = action_key(group)
            if key not in action:
                continue
            target = np.asarray(action[key], np.float64)
            previous = self._state.get(key, target)
            smoothed = previous + self.alpha * (target - previous)
            smoothed = np.clip(smoothed, target - self.max_lag, target + self.max_lag)
            self._state[key] = smoothed
            out[key] = smoothed.astype(np.float32)
        return out


class SlowStart:
    """The slow-start speed protocol within an episode: the safety filter's speed scale starts at the first stage
    (10%) and goes up one stage every `steps_per_stage` control steps without a hazard intervention; a hazard
    steps it down one stage. The stage logic is the deployment protocol's `SpeedRamp` (one "clean episode"
    there is one clean window of steps here)."""

    def __init__(self, safety: SafetyFilter, stages: Sequence[float], steps_per_stage: int) -> None:
        self.safety = safety
        self.config = SpeedRampConfig(stages=tuple(stages), clean_episodes=1)
        self.steps_per_stage = steps_per_stage
        self.reset()

    def reset(self) -> None:
        self.ramp = SpeedRamp(self.config)
        if self.steps_per_stage == 0:  # no slow start: full speed from the first step
            self.ramp.stage = len(self.config.stages) - 1
        self._window = 0
        self._hazard = False
        self.safety.set_speed_scale(self.ramp.scale)
        self.scales: list[float] = []  # the speed scale each step ran at

    def record(self, hazard: bool) -> None:
        """After one filtered step: its speed was `scales[-1]`; `hazard` whether the filter stopped a hazard."""
        self.scales.append(self.safety.speed_scale)
        if self.steps_per_stage == 0:
            return
        self._window += 1
        self._hazard |= hazard
        if hazard or self._window >= self.steps_per_stage:
            self.ramp.record(clean=not self._hazard, reason="hazard" if self._hazard else "")
            self._window, self._hazard = 0, False
            self.safety.set_speed_scale(self.ramp.scale)


# ------------------------------------------------------------------------------------------------ probes
def reset_frames(env, seeds: Sequence[int]) -> list[np.ndarray]:
    """The ego view after each reset (objects settled, robot at home)."""
    frames = []
    for seed in seeds:
        obs, _ = env.reset(seed=int(seed))
        frames.append(np.asarray(obs[EGO_VIEW]).copy())
    return frames


def measure_actuation_latency(env, seed: int = 0, joint: int = 0, delta: float = 0.1, max_steps: int = 8) -> int:
    """Control steps from commanding a step change of one arm joint (home + `delta` rad, the first arm group) to
    the first step its measured position has moved by a fifth of it: 0 when the command acts within the step
    it is sent in."""
    obs, _ = env.reset(seed=seed)
    home = env.home_action()
    group = ARM_GROUPS[0]
    q0 = float(np.asarray(obs[state_key(group)])[joint])
    target = {k: np.asarray(v, np.float32).copy() for k, v in home.items()}
    target[action_key(group)][joint] += delta
    for step in range(max_steps):
        obs, *_ = env.step(target)
        if abs(float(np.asarray(obs[state_key(group)])[joint]) - q0) > 0.2 * abs(delta):
            return step
    return max_steps


# ------------------------------------------------------------------------------------------------ adapter
class SimToRealAdapter:
    """A `Policy` for the target domain: the wrapped policy behind colour calibration, latency compensation, action
    smoothing and the slow-start protocol (module docstring). Build it with `SimToRealAdapter.calibrated` (fits
    the colour map and measures latency on the target env), or directly from fitted parts."""

    def __init__(self, policy: Policy, safety: SafetyFilter, config: SimToRealAdapterConfig | None = None,
                 colour: ColourCalibration | None = None, latency_steps: int = 0) -> None:
        self.policy = policy
        self.config = config = config or SimToRealAdapterConfig()
        self.colour = colour
        self.latency = LatencyCompensation(latency_steps)
        self.smoother = ActionSmoother(config.smoothing, config.max_lag)
        self.safety = safety
        self.slow_start = SlowStart(safety, config.speed_stages, config.ramp_steps)
        self.calibration_report: dict = {}
        self._fresh = True

    @classmethod
    def calibrated(cls, policy: Policy, env, config: SimToRealAdapterConfig | None = None,
                   source_env_factory=None) -> SimToRealAdapter:
        """Fit the colour map on `env` (the target) against the source domain's reference frames, measure the
        latency difference, and build the safety filter from `env`'s robot. `source_env_factory()`: a training-
        domain env (default: the embedded MuJoCo env of the same task, variant, embodiment and camera size)."""
        config = config or SimToRealAdapterConfig()
        report: dict = {}
        colour, reference = None, None
        need_source = config.calibration is not None or config.latency_steps is None
        source_latency = 0
        if need_source:
            source = (source_env_factory or _embedded_twin(env))()
            try:
                if config.calibration is not None:
                    reference = ColourStats.of_frames(reset_frames(source, config.source_seeds))
                if config.latency_steps is None:
                    source_latency = measure_actuation_latency(source, config.source_seeds[0])
            finally:
                source.close()
        if reference is not None:
            target_frames = reset_frames(env, config.target_seeds)
            colour = ColourCalibration.fit(target_frames, reference, config.calibration)
            target = ColourStats.of_frames(target_frames)
            report["colour"] = {"mode": config.calibration, "source_mean": reference.mean.round(2).tolist(),
                                "target_mean": target.mean.round(2).tolist(), **colour.to_dict()}
            report["colour"].pop("lut")
        if config.latency_steps is None:
            target_latency = measure_actuation_latency(env, config.target_seeds[0])
            latency = max(0, target_latency - source_latency)
            report["latency"] = {"source_steps": source_latency, "target_steps": target_latency, "dropped": latency}
        else:
            latency = config.latency_steps
            report["latency"] = {"dropped": latency}
        safety = SafetyFilter(env.embodiment, env.action_ranges(), SafetyFilterConfig(
            table_height=float(env.table_height), control_dt=1.0 / env.config.control_hz,
            speed_scale=config.speed_stages[0]))
        adapter = cls(policy, safety, config, colour, latency)
        adapter.calibration_report = report
        return adapter

    # ------------------------------------------------------------------ Policy
    def reset(self) -> None:
        self.policy.reset()
        self._fresh = True

    def seed(self, seed: int) -> None:
        reseed = getattr(self.policy, "seed", None)
        if callable(reseed):
            reseed(seed)

    def calibrate_observation(self, obs: dict) -> dict:
        if self.colour is None or EGO_VIEW not in obs:
            return obs
        return {**obs, EGO_VIEW: self.colour.apply(obs[EGO_VIEW])}

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        return self.latency.apply(self.policy.get_action(self.calibrate_observation(observation)))

    # ------------------------------------------------------------------ per step
    def condition(self, action: dict[str, np.ndarray], obs: dict) -> dict[str, np.ndarray]:
        """One control step's action (from the chunk executor) -> smoothed, speed-limited, safe command."""
        state = state_of(obs)
        if self._fresh:  # first step of an episode: start from the measured pose, at the first speed stage
            self.smoother.reset(state)
            self.safety.reset(state)
            self.slow_start.reset()
            self._fresh = False
        command = self.safety.filter(self.smoother(action), state)
        self.slow_start.record(any(i.kind in HAZARD_KINDS for i in command.interventions))
        return command.action


def _embedded_twin(env):
    """A factory of the embedded MuJoCo env with `env`'s task, variant, embodiment and camera (the source domain the
    shipped policies were trained in), without randomization."""
    def make():
        from sage_gr00t.tasks import make_env

        c = env.config
        return make_env(type(env.task), embodiment=c.embodiment, variant=c.variant, image_height=c.image_height,
                        image_width=c.image_width, control_hz=c.control_hz, settle_steps=c.settle_steps)
    return make


def adapter_config(options: dict | None = None) -> SimToRealAdapterConfig:
    """A config from KEY=VALUE overrides as the command line gives them (`sage-eval --adapter-option`): numbers as
    numbers, "none" for no calibration, "measured" for a measured latency, sequences as "0,1,2" or "0-7"."""
    values: dict = {}
    known = {f.name for f in dataclasses.fields(SimToRealAdapterConfig)}
    for key, value in (options or {}).items():
        if key not in known:
            raise ValueError(f"Unknown adapter option {key!r}; have {sorted(known)}.")
        nothing = {"calibration": ("none",), "latency_steps": ("measured", "none")}.get(key, ())
        if str(value).lower() in nothing:  # no calibration; a measured latency
            value = None
        elif key in ("source_seeds", "target_seeds", "speed_stages") and not isinstance(value, tuple | list):
            cast = float if key == "speed_stages" else int
            text = str(value)
            if key != "speed_stages" and "-" in text and "," not in text:
                lo, hi = (int(v) for v in text.split("-", 1))
                value = tuple(range(lo, hi + 1))
            else:
                value = tuple(cast(v) for v in text.split(",") if v)
        values[key] = value
    return SimToRealAdapterConfig(**values)


def ramp_length(config: SimToRealAdapterConfig) -> int:
    """Control steps from the first stage to full speed without hazards."""
    return config.ramp_steps * (len(config.speed_stages) - 1)


__all__ = ["ActionSmoother", "LatencyCompensation", "SimToRealAdapter", "SimToRealAdapterConfig", "SlowStart",
           "adapter_config", "measure_actuation_latency", "ramp_length", "reset_frames"]
