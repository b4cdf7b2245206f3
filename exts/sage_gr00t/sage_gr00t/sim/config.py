"""Settings of one task environment, shared by both simulators (MuJoCo and Isaac Lab read the same values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.sim.scene import PhysicsConfig, TableConfig

# How the ego view is lit: "scene", the lights `sim.scene.new_scene` declares (every backend); "renderer", the
# renderer's own default lighting where a backend has one (Isaac Lab's Newton Warp: one unit directional light,
# hemispheric ambient, sRGB output), a lighting-gap condition for transfer studies. MuJoCo has scene lights only.
LIGHTINGS = ("scene", "renderer")


@dataclass
class TaskConfig:
    embodiment: str = "sage_humanoid"
    variant: str = "train"
    image_height: int = 224
    image_width: int = 224
    control_hz: float = 20.0
    max_steps: int = 400
    settle_steps: int = 100  # physics steps after placing objects, before the first observation
    randomization: DomainRandomizationConfig = field(default_factory=DomainRandomizationConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    table: TableConfig = field(default_factory=TableConfig)
    lighting: str = "scene"  # see LIGHTINGS

    def __post_init__(self) -> None:
        checks = (
            (isinstance(self.image_height, int) and isinstance(self.image_width, int)
             and 16 <= self.image_height <= 2048 and 16 <= self.image_width <= 2048,
             f"image_height and image_width must be integers in 16..2048, got {self.image_height} x "
             f"{self.image_width}"),
            (isinstance(self.control_hz, int | float) and 1 <= self.control_hz <= 1000,
             f"control_hz must be in 1..1000, got {self.control_hz}"),
            (isinstance(self.max_steps, int) and self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (isinstance(self.settle_steps, int) and self.settle_steps >= 0,
             f"settle_steps must be >= 0, got {self.settle_steps}"),
            (isinstance(self.variant, str) and bool(self.variant), f"variant must be a name, got {self.variant!r}"),
            (self.lighting in LIGHTINGS, f"lighting must be one of {LIGHTINGS}, got {self.lighting!r}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Bad task option: {message}.")

    @property
    def physics_steps_per_control_step(self) -> int:
        return max(1, round(1.0 / (self.control_hz * self.physics.timestep)))

    def with_overrides(self, **overrides: object) -> TaskConfig:
        """This config with fields replaced; an unknown field is one clear error."""
        for key, value in overrides.items():
            if not hasattr(self, key) or key.startswith("_"):
                raise ValueError(f"Unknown task option {key!r}; TaskConfig has "
                                 f"{sorted(k for k in vars(self) if not k.startswith('_'))}.")
            setattr(self, key, value)
        self.__post_init__()  # the overridden values are checked like constructor arguments
        return self
