"""pour_water: pour the "water" (small frictionless spheres) from a pitcher into a cup.

Success: at least 80% of the particles rest inside the cup.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sage_gr00t.sim.scene import add_free_body, add_static_body, ring_walls
from sage_gr00t.skills import Subtask
from sage_gr00t_tasks.base import GraspSpec, PourSpec, TabletopTaskEnv

_CYL = mujoco.mjtGeom.mjGEOM_CYLINDER
_SPHERE = mujoco.mjtGeom.mjGEOM_SPHERE


class PourWaterEnv(TabletopTaskEnv):
    task_name = "pour_water"
    N_PARTICLES = 30
    PARTICLE_RADIUS = 0.0075
    PITCHER_RADIUS = 0.034  # inner
    PITCHER_HEIGHT = 0.10
    CUP_RADIUS = 0.052  # inner
    CUP_HEIGHT = 0.075
    SUCCESS_FRACTION = 0.8

    def build_objects(self, spec: mujoco.MjSpec) -> None:
        novel = self.config.variant == "novel"
        pitcher_rgba = [0.2, 0.6, 0.35, 1] if novel else [0.92, 0.55, 0.15, 1]
        cup_rgba = [0.85, 0.85, 0.3, 1] if novel else [0.3, 0.55, 0.85, 1]
        wall = dict(friction=[1.5, 0.02, 0.002])
        pitcher = [dict(type=_CYL, size=[self.PITCHER_RADIUS + 0.006, 0.004, 0], pos=[0, 0, 0.004],
                        rgba=pitcher_rgba, **wall)]
        pitcher += ring_walls(self.PITCHER_RADIUS, self.PITCHER_HEIGHT, 0.006, 12, 0.0, pitcher_rgba, "pitcher",
                              **wall)
        add_free_body(spec, "pitcher", pitcher, mass=0.15)
        cup_radius = self.CUP_RADIUS * (0.92 if novel else 1.0)
        cup = [dict(type=_CYL, size=[cup_radius + 0.005, 0.003, 0], pos=[0, 0, 0.003], rgba=cup_rgba)]
        cup += ring_walls(cup_radius, self.CUP_HEIGHT, 0.005, 14, 0.0, cup_rgba, "cup")
        add_static_body(spec, "cup", cup)
        water_rgba = [0.35, 0.75, 0.95, 1]
        for i in range(self.N_PARTICLES):
            body = spec.worldbody.add_body(name=f"water{i}", pos=[0, 0, 2.0])
            body.add_freejoint(name=f"water{i}_free")
            # Frictionless spheres flow like a coarse liquid and keep contacts cheap (condim 1).
            body.add_geom(name=f"water{i}_g", type=_SPHERE, size=[self.PARTICLE_RADIUS, 0, 0], rgba=water_rgba,
                          condim=1, contype=3, conaffinity=1, mass=0.002, solref=[0.01, 1])

    def object_body_names(self) -> list[str]:
        return ["pitcher", "cup"]

    def place_objects(self, rng: np.random.Generator) -> None:
        z = self.table_height
        # The cup stands to one side of the robot's midline: pouring over the midline would
        # need the arm to cross the torso.
        side = 1.0 if rng.random() < 0.5 else -1.0
        while True:
            pitcher, cup = self.sample_positions(
                rng, [((0.45, 0.50), (-0.16, 0.16)), ((0.35, 0.39), (0.06, 0.15))], min_distance=0.11
            )
            cup[1] *= side
            if abs(pitcher[1] - cup[1]) <= 0.08 and np.linalg.norm(pitcher - cup) >= 0.11:
                break
        self.set_free_body_pose("pitcher", np.array([*pitcher, z + 0.001]), yaw=rng.uniform(-np.pi, np.pi))
        self.set_fixed_body_pos("cup", np.array([*cup, z]))
        # Particles in a loose grid inside the pitcher; they settle during reset.
        spacing = 2 * self.PARTICLE_RADIUS + 0.002
        offsets = [np.array([dx, dy]) for dx in (-1.5, -0.5, 0.5, 1.5) for dy in (-1.5, -0.5, 0.5, 1.5)
                   if np.hypot(dx, dy) <= 2.0]
        for i in range(self.N_PARTICLES):
            layer, slot = divmod(i, len(offsets))
            xy = pitcher + offsets[slot] * spacing + rng.uniform(-0.001, 0.001, 2)
            self.set_free_body_pose(f"water{i}", np.array([*xy, z + 0.015 + layer * spacing]))

    def particles_in_cup(self) -> int:
        cup = self.body_pos("cup")
        count = 0
        for i in range(self.N_PARTICLES):
            p = self.data.xpos[self.body_id(f"water{i}")]
            if np.hypot(*(p[:2] - cup[:2])) < self.CUP_RADIUS and cup[2] < p[2] < cup[2] + self.CUP_HEIGHT:
                count += 1
        return count

    def is_success(self) -> bool:
        return self.particles_in_cup() >= self.SUCCESS_FRACTION * self.N_PARTICLES

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

    def grasp_spec(self, object_name: str) -> GraspSpec:
        # Fingers straddle the pitcher's upper wall from above.
        return GraspSpec(height=0.085, yaw=0.0, lift=0.14)

    def pour_spec(self) -> PourSpec:
        # The pitcher is carried over the cup, its bottom just above the rim, then tilted about
        # world -y: the mouth turns toward the robot (the fingers end up pointing forward-up,
        # a comfortable wrist pose) and the water falls into the cup below.
        return PourSpec(
            container_offset=(0.015, 0.0, 0.0),
            pour_height=self.CUP_HEIGHT + 0.015,
            tilt_axis=(0.0, -1.0, 0.0),
            tilt_angle=2.1,
            tilt_shift=(0.0, 0.0, 0.0),
            tilt_steps=34,
            hold_steps=30,
        )
