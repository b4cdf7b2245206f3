"""Settings of one task environment, shared by both simulators (MuJoCo and Isaac Lab read the same values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.sim.scene import PhysicsConfig, TableConfig


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
        return self
