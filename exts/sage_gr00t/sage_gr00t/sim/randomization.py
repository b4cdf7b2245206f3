"""Domain randomization (sim-to-real): ranges live in `config/domain_randomization.yaml`.

Every draw comes from the episode's seeded generator, so an episode is reproducible from its seed.
The model is compiled once; randomization perturbs copies of the nominal model arrays at reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import mujoco
import numpy as np
import yaml

from sage_gr00t.paths import config_dir


@dataclass
class DomainRandomizationConfig:
    enabled: bool = False
    object_pose_scale: float = 1.0  # multiplies each task's own placement ranges
    color_jitter: float = 0.0  # +- per RGB channel of task objects
    light_intensity: tuple[float, float] = (1.0, 1.0)  # scale of diffuse light
    light_direction_jitter: float = 0.0  # +- per direction component
    camera_position_jitter: float = 0.0  # metres, +- per axis
    camera_fovy_jitter: float = 0.0  # degrees, +-
    friction_scale: tuple[float, float] = (1.0, 1.0)
    mass_scale: tuple[float, float] = (1.0, 1.0)
    actuator_gain_scale: tuple[float, float] = (1.0, 1.0)
    state_noise_std: float = 0.0  # radians, added to observed joint positions
    image_noise_std: float = 0.0  # uint8 levels, added to camera pixels
    action_latency_steps: tuple[int, int] = (0, 0)  # inclusive range of control-step delays

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, profile: str = "train") -> DomainRandomizationConfig:
        """Load a profile (`none`, `train`, `train_wide_lighting`, `strong`) from the YAML file in config/."""
        path = Path(path) if path else config_dir() / "domain_randomization.yaml"
        data = yaml.safe_load(path.read_text())
        if profile not in data:
            raise ValueError(f"Unknown randomization profile {profile!r} in {path}; have {sorted(data)}.")
        known = {f.name for f in fields(cls)}
        unknown = set(data[profile]) - known
        if unknown:
            raise ValueError(f"Unknown randomization keys {sorted(unknown)} in {path} [{profile}].")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data[profile].items()}
        return cls(**values)


# The robustness sweep's factors (`sage-eval --sweep`): a name -> the config fields it scales together.
SWEEP_FACTORS: dict[str, tuple[str, ...]] = {
    "lighting": ("light_intensity", "light_direction_jitter"),
    "colors": ("color_jitter",),
    "camera": ("camera_position_jitter", "camera_fovy_jitter"),
    "friction": ("friction_scale",),
    "mass": ("mass_scale",),
    "actuator_gains": ("actuator_gain_scale",),
    "latency": ("action_latency_steps",),
    "observation_noise": ("state_noise_std", "image_noise_std"),
}


def one_factor(reference: DomainRandomizationConfig, factor: str, level: float) -> DomainRandomizationConfig:
    """Only `factor` randomized, over `level` x its range in `reference` (the training profile): 0 holds it at
    nominal, 1 is the training range, 2 twice as wide. Every other factor stays at nominal.

    Jitters scale as they are; a range of scales (lo, hi) around the nominal 1 scales its distance from 1
    (mass (0.8, 1.25) at 2x: (0.6, 1.5)); a latency range scales to the nearest whole steps."""
    if factor not in SWEEP_FACTORS:
        raise ValueError(f"Unknown randomization factor {factor!r}; have {sorted(SWEEP_FACTORS)}.")
    if not level >= 0:
        raise ValueError(f"A randomization level must be >= 0, got {level}.")
    scaled: dict[str, object] = {}
    for name in SWEEP_FACTORS[factor]:
        value = getattr(reference, name)
        if name == "action_latency_steps":
            scaled[name] = tuple(math.floor(v * level + 0.5) for v in value)
        elif isinstance(value, tuple):
            scaled[name] = tuple(1.0 + (v - 1.0) * level for v in value)
        else:
            scaled[name] = value * level
    return replace(DomainRandomizationConfig(enabled=True), **scaled)


@dataclass
class _Nominal:
    geom_rgba: np.ndarray
    geom_friction: np.ndarray
    body_mass: np.ndarray
    body_inertia: np.ndarray
    light_diffuse: np.ndarray
    light_dir: np.ndarray
    cam_pos: np.ndarray
    cam_fovy: np.ndarray
    gainprm: np.ndarray
    biasprm: np.ndarray


@dataclass
class DomainRandomizer:
    """Applies a `DomainRandomizationConfig` to a compiled model at every reset."""

    model: mujoco.MjModel
    config: DomainRandomizationConfig
    object_geom_ids: np.ndarray  # geoms whose colour may change (task objects)
    object_body_ids: np.ndarray  # bodies whose mass may change
    _nominal: _Nominal = field(init=False)

    def __post_init__(self) -> None:
        m = self.model
        self._nominal = _Nominal(
            m.geom_rgba.copy(), m.geom_friction.copy(), m.body_mass.copy(), m.body_inertia.copy(),
            m.light_diffuse.copy(), m.light_dir.copy(), m.cam_pos.copy(), m.cam_fovy.copy(),
            m.actuator_gainprm.copy(), m.actuator_biasprm.copy(),
        )

    def apply(self, rng: np.random.Generator) -> int:
        """Restore nominal values, then randomize. Returns the action latency (control steps)."""
        m, n, c = self.model, self._nominal, self.config
        m.geom_rgba[:] = n.geom_rgba
        m.geom_friction[:] = n.geom_friction
        m.body_mass[:] = n.body_mass
        m.body_inertia[:] = n.body_inertia
        m.light_diffuse[:] = n.light_diffuse
        m.light_dir[:] = n.light_dir
        m.cam_pos[:] = n.cam_pos
        m.cam_fovy[:] = n.cam_fovy
        m.actuator_gainprm[:] = n.gainprm
        m.actuator_biasprm[:] = n.biasprm
        if not c.enabled:
            return 0

        # Every factor draws whether its range is zero or not: the draws before the layout are then the same for
        # any enabled config, so a sweep's levels (one factor at 0, 1 or 2x) run on the same object layouts.
        ids = self.object_geom_ids
        if len(ids):
            jitter = rng.uniform(-c.color_jitter, c.color_jitter, size=(len(ids), 3))
            m.geom_rgba[ids, :3] = np.clip(n.geom_rgba[ids, :3] + jitter, 0.0, 1.0)
        m.light_diffuse[:] = n.light_diffuse * rng.uniform(*c.light_intensity)
        jitter = c.light_direction_jitter
        m.light_dir[:] = n.light_dir + rng.uniform(-jitter, jitter, n.light_dir.shape)
        m.cam_pos[:] = n.cam_pos + rng.uniform(-c.camera_position_jitter, c.camera_position_jitter, n.cam_pos.shape)
        m.cam_fovy[:] = n.cam_fovy + rng.uniform(-c.camera_fovy_jitter, c.camera_fovy_jitter, n.cam_fovy.shape)
        m.geom_friction[:, 0] = n.geom_friction[:, 0] * rng.uniform(*c.friction_scale)
        bodies = self.object_body_ids
        if len(bodies):
            scale = rng.uniform(*c.mass_scale, size=len(bodies))
            m.body_mass[bodies] = n.body_mass[bodies] * scale
            m.body_inertia[bodies] = n.body_inertia[bodies] * scale[:, None]
        gain = rng.uniform(*c.actuator_gain_scale, size=m.nu)
        # Position servo: force = kp * ctrl - kp * q - kv * qdot, so kp sits in gainprm[0] and -biasprm[1].
        m.actuator_gainprm[:, 0] = n.gainprm[:, 0] * gain
        m.actuator_biasprm[:, 1] = n.biasprm[:, 1] * gain
        lo, hi = c.action_latency_steps
        return int(rng.integers(lo, hi + 1))
