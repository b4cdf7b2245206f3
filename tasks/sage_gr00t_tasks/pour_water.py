"""pour_water: pour the "water" (small frictionless spheres) from a pitcher into a cup.

Success: at least 80% of the particles rest inside the cup.
"""

from __future__ import annotations

import numpy as np

from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import (
    GraspSpec,
    ObjectSpec,
    ParticleSpec,
    PourSpec,
    SceneAccess,
    Task,
    ring_walls,
    sample_positions,
)
from sage_gr00t.tasks.spec import Geom

N_PARTICLES = 30
PARTICLE_RADIUS = 0.0075
PITCHER_RADIUS = 0.034  # inner
PITCHER_HEIGHT = 0.10
CUP_RADIUS = 0.052  # inner
CUP_HEIGHT = 0.075
SUCCESS_FRACTION = 0.8
WALL_FRICTION = (1.5, 0.02, 0.002)


def particles_in_cup(cup: np.ndarray, particles: np.ndarray) -> int:
    """How many particles lie inside the cup standing at `cup` (its origin on the table)."""
    inside_xy = np.hypot(*(particles[:, :2] - cup[:2]).T) < CUP_RADIUS
    inside_z = (cup[2] < particles[:, 2]) & (particles[:, 2] < cup[2] + CUP_HEIGHT)
    return int(np.count_nonzero(inside_xy & inside_z))


class PourWater(Task):
    name = "pour_water"
    example_command = "pour the water into the cup"

    def objects(self) -> tuple[ObjectSpec, ...]:
        novel = self.variant == "novel"
        pitcher_rgba = (0.2, 0.6, 0.35, 1) if novel else (0.92, 0.55, 0.15, 1)
        cup_rgba = (0.85, 0.85, 0.3, 1) if novel else (0.3, 0.55, 0.85, 1)
        pitcher = (Geom("cylinder", (PITCHER_RADIUS + 0.006, 0.004), pitcher_rgba, pos=(0, 0, 0.004),
                        friction=WALL_FRICTION),
                   *ring_walls(PITCHER_RADIUS, PITCHER_HEIGHT, 0.006, 12, pitcher_rgba, "pitcher",
                               friction=WALL_FRICTION))
        cup_radius = CUP_RADIUS * (0.92 if novel else 1.0)
        cup = (Geom("cylinder", (cup_radius + 0.005, 0.003), cup_rgba, pos=(0, 0, 0.003)),
               *ring_walls(cup_radius, CUP_HEIGHT, 0.005, 14, cup_rgba, "cup"))
        return (
            ObjectSpec("pitcher", pitcher, kind="pitcher", role="pour_source", mass=0.15, radius=0.04),
            ObjectSpec("cup", cup, kind="cup", role="pour_target", movable=False, radius=CUP_RADIUS),
        )

    def particles(self) -> tuple[ParticleSpec, ...]:
        return (ParticleSpec("water", N_PARTICLES, PARTICLE_RADIUS, (0.35, 0.75, 0.95, 1)),)

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        z = scene.table_height
        # The cup stands to one side of the robot's midline: pouring over the midline would
        # need the arm to cross the torso.
        side = 1.0 if rng.random() < 0.5 else -1.0
        while True:
            pitcher, cup = sample_positions(
                rng, [((0.45, 0.50), (-0.16, 0.16)), ((0.35, 0.39), (0.06, 0.15))], min_distance=0.11,
                scale=pose_scale,
            )
            cup[1] *= side
            if abs(pitcher[1] - cup[1]) <= 0.08 and np.linalg.norm(pitcher - cup) >= 0.11:
                break
        scene.set_pose("pitcher", np.array([*pitcher, z + 0.001]), yaw=rng.uniform(-np.pi, np.pi))
        scene.set_pose("cup", np.array([*cup, z]))
        # Particles in a loose grid inside the pitcher; they settle during reset.
        spacing = 2 * PARTICLE_RADIUS + 0.002
        offsets = [np.array([dx, dy]) for dx in (-1.5, -0.5, 0.5, 1.5) for dy in (-1.5, -0.5, 0.5, 1.5)
                   if np.hypot(dx, dy) <= 2.0]
        for i in range(N_PARTICLES):
            layer, slot = divmod(i, len(offsets))
            xy = pitcher + offsets[slot] * spacing + rng.uniform(-0.001, 0.001, 2)
            scene.set_pose(f"water{i}", np.array([*xy, z + 0.015 + layer * spacing]))

    def water_in_cup(self, scene: SceneAccess) -> int:
        return particles_in_cup(scene.body_pos("cup"), scene.particle_positions("water"))

    def is_success(self, scene: SceneAccess) -> bool:
        return self.water_in_cup(scene) >= SUCCESS_FRACTION * N_PARTICLES

    def instructions(self) -> list[str]:
        return [
            "pour the water into the cup",
            "pour the water from the pitcher into the cup",
            "fill the cup with water from the pitcher",
            "empty the pitcher into the cup",
            "pick up the pitcher and pour it into the cup",
            "could you pour some water into the cup?",
        ]

    def expert_plan(self) -> list[Subtask]:
        return [Subtask("pour", "pitcher", "cup", "pour the water from the pitcher into the cup")]

    def grasp(self, scene: SceneAccess, object_name: str) -> GraspSpec:
        # Fingers straddle the pitcher's upper wall from above.
        return GraspSpec(height=0.085, yaw=0.0, lift=0.14)

    def pour(self) -> PourSpec:
        # The pitcher is carried over the cup, its bottom just above the rim, then tilted about
        # world -y: the mouth turns toward the robot (the fingers end up pointing forward-up,
        # a comfortable wrist pose) and the water falls into the cup below.
        return PourSpec(
            container_offset=(0.015, 0.0, 0.0),
            pour_height=CUP_HEIGHT + 0.015,
            tilt_axis=(0.0, -1.0, 0.0),
            tilt_angle=2.1,
            tilt_shift=(0.0, 0.0, 0.0),
            tilt_steps=34,
            hold_steps=30,
        )
