"""pour_water: pour the "water" (small frictionless spheres) from a pitcher into a cup.

Success: at least 80% of the particles rest inside the cup.

Variants: `novel` (a green pitcher, a smaller yellow cup: never trained on), `language` (a red and a blue cup,
either side: the instruction names the cup by colour or side) and `procedural` (pitcher and cup of random
colours, the cup of a random width).
"""

from __future__ import annotations

import numpy as np

from sage_gr00t.perceive.camera import COLOR_RANGES, VisualSignature
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import (
    LANGUAGE_VARIANT,
    PROCEDURAL_VARIANT,
    GraspSpec,
    ObjectSpec,
    ParticleSpec,
    PourSpec,
    SceneAccess,
    Task,
    ring_walls,
    sample_positions,
)
from sage_gr00t.tasks.episode import pick_color, rgba
from sage_gr00t.tasks.spec import Geom

N_PARTICLES = 30
PARTICLE_RADIUS = 0.0075
PITCHER_RADIUS = 0.034  # inner
PITCHER_HEIGHT = 0.10
CUP_RADIUS = 0.052  # inner
CUP_HEIGHT = 0.075
SUCCESS_FRACTION = 0.8
WALL_FRICTION = (1.5, 0.02, 0.002)


LANGUAGE_CUPS = ("red", "blue")
NOVEL_COLORS = ("green", "yellow")  # the novel pitcher's and cup's colours: procedural scenes avoid them


def _pitcher_signature(color: str) -> VisualSignature:
    # The rim of the walls, 10 cm above the origin, is centred over it; carried and tilted it rises.
    return VisualSignature(COLOR_RANGES[color], z_range=(0.0, 0.35), radius=0.06, ref_to_origin=PITCHER_HEIGHT,
                           layer_band=0.012, expected_pixels=40.0)


def _cup_signature(color: str) -> VisualSignature:
    # The rim (7.5 cm) is a ring centred on the origin; the light-blue water is outside the blue hue band.
    return VisualSignature(COLOR_RANGES[color], z_range=(0.0, CUP_HEIGHT + 0.015), radius=0.08,
                           ref_to_origin=CUP_HEIGHT, layer_band=0.012, expected_pixels=60.0)


def particles_in_cup(cup: np.ndarray, particles: np.ndarray, radius: float = CUP_RADIUS) -> int:
    """How many particles lie inside the cup standing at `cup` (its origin on the table)."""
    inside_xy = np.hypot(*(particles[:, :2] - cup[:2]).T) < radius
    inside_z = (cup[2] < particles[:, 2]) & (particles[:, 2] < cup[2] + CUP_HEIGHT)
    return int(np.count_nonzero(inside_xy & inside_z))


class PourWater(Task):
    name = "pour_water"
    example_command = "pour the water into the cup"

    variants = ("train", "novel", LANGUAGE_VARIANT, PROCEDURAL_VARIANT)

    def __init__(self, variant: str = "train") -> None:
        super().__init__(variant)
        self.goal = "cup"  # the cup the instruction names (language scenes: red_cup or blue_cup)
        self._goal_words = ("red cup",)
        # (pitcher, cup) colours: the novel variant's are never trained on.
        self._colors = ((0.2, 0.6, 0.35, 1), (0.85, 0.85, 0.3, 1)) if variant == "novel" else \
            ((0.92, 0.55, 0.15, 1), (0.3, 0.55, 0.85, 1))
        self._cup_radius = CUP_RADIUS * (0.92 if variant == "novel" else 1.0)
        self._cup_words = "cup"
        if variant == PROCEDURAL_VARIANT:
            self.new_episode(np.random.default_rng(0))

    def objects(self) -> tuple[ObjectSpec, ...]:
        pitcher_rgba, cup_rgba = self._colors
        pitcher = (Geom("cylinder", (PITCHER_RADIUS + 0.006, 0.004), pitcher_rgba, pos=(0, 0, 0.004),
                        friction=WALL_FRICTION),
                   *ring_walls(PITCHER_RADIUS, PITCHER_HEIGHT, 0.006, 12, pitcher_rgba, "pitcher",
                               friction=WALL_FRICTION))
        # The camera knows the fixed colours (procedural ones are drawn per episode: not looked for).
        pitcher_color, cup_color = {"train": ("orange", "blue"), "novel": ("green", "yellow")}.get(
            self.variant, ("orange", None))
        source = ObjectSpec("pitcher", pitcher, kind="pitcher", role="pour_source", mass=0.15, radius=0.04,
                            signature=_pitcher_signature(pitcher_color) if self.variant != PROCEDURAL_VARIANT else None)
        if self.variant == LANGUAGE_VARIANT:
            cups = tuple(ObjectSpec(f"{c}_cup", self._cup_geoms(CUP_RADIUS, rgba(c), f"{c}_cup"), kind="cup",
                                    role="pour_target", color=c, movable=False, radius=CUP_RADIUS,
                                    signature=_cup_signature(c))
                         for c in LANGUAGE_CUPS)
            return (source, *cups)
        return (source, ObjectSpec("cup", self._cup_geoms(self._cup_radius, cup_rgba, "cup"), kind="cup",
                                   role="pour_target", movable=False, radius=CUP_RADIUS,
                                   signature=_cup_signature(cup_color) if cup_color else None))

    @staticmethod
    def _cup_geoms(radius: float, color: tuple[float, float, float, float], name: str) -> tuple[Geom, ...]:
        return (Geom("cylinder", (radius + 0.005, 0.003), color, pos=(0, 0, 0.003)),
                *ring_walls(radius, CUP_HEIGHT, 0.005, 14, color, name))

    def new_episode(self, rng: np.random.Generator) -> None:
        if self.variant != PROCEDURAL_VARIANT:
            return
        pitcher = pick_color(rng, exclude=NOVEL_COLORS)
        cup = pick_color(rng, exclude=(*NOVEL_COLORS, pitcher))
        self._colors = (rgba(pitcher, rng, 0.05), rgba(cup, rng, 0.05))
        self._cup_radius = float(rng.uniform(0.047, 0.056))
        self._cup_words = f"{cup} cup"

    def particles(self) -> tuple[ParticleSpec, ...]:
        return (ParticleSpec("water", N_PARTICLES, PARTICLE_RADIUS, (0.35, 0.75, 0.95, 1)),)

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        z = scene.table_height
        if self.variant == LANGUAGE_VARIANT:
            self._fill_pitcher(scene, rng, self._place_two_cups(scene, rng, pose_scale))
            return
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
        self._fill_pitcher(scene, rng, pitcher)

    def _place_two_cups(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float) -> np.ndarray:
        """Pitcher near the midline, one cup on each side within reach of a pour from it."""
        z = scene.table_height
        left = LANGUAGE_CUPS[int(rng.integers(2))]
        while True:
            pitcher, cup_a, cup_b = sample_positions(
                rng, [((0.45, 0.50), (-0.02, 0.02)), ((0.35, 0.39), (0.07, 0.10)), ((0.35, 0.39), (-0.10, -0.07))],
                min_distance=0.11, scale=pose_scale,
            )
            if all(abs(pitcher[1] - c[1]) <= 0.1 for c in (cup_a, cup_b)):
                break
        right = next(c for c in LANGUAGE_CUPS if c != left)
        scene.set_pose("pitcher", np.array([*pitcher, z + 0.001]), yaw=rng.uniform(-np.pi, np.pi))
        scene.set_pose(f"{left}_cup", np.array([*cup_a, z]))
        scene.set_pose(f"{right}_cup", np.array([*cup_b, z]))
        color = LANGUAGE_CUPS[int(rng.integers(2))]
        if self.pinned_goal is not None:
            color = LANGUAGE_CUPS[self.pinned_goal]
        self.goal = f"{color}_cup"
        side = "left" if color == left else "right"
        # The cup named by its colour or by its side (the robot's left: +y).
        self._goal_words = (f"{color} cup", f"cup on the {side}", f"{side} cup")
        return pitcher

    def goal_choices(self) -> tuple[str, ...]:
        return tuple(f"{c}_cup" for c in LANGUAGE_CUPS) if self.variant == LANGUAGE_VARIANT else ()

    def _fill_pitcher(self, scene: SceneAccess, rng: np.random.Generator, pitcher: np.ndarray) -> None:
        z = scene.table_height
        # Particles in a loose grid inside the pitcher; they settle during reset.
        spacing = 2 * PARTICLE_RADIUS + 0.002
        offsets = [np.array([dx, dy]) for dx in (-1.5, -0.5, 0.5, 1.5) for dy in (-1.5, -0.5, 0.5, 1.5)
                   if np.hypot(dx, dy) <= 2.0]
        for i in range(N_PARTICLES):
            layer, slot = divmod(i, len(offsets))
            xy = pitcher + offsets[slot] * spacing + rng.uniform(-0.001, 0.001, 2)
            scene.set_pose(f"water{i}", np.array([*xy, z + 0.015 + layer * spacing]))

    def water_in_cup(self, scene: SceneAccess) -> int:
        radius = CUP_RADIUS if self.variant == LANGUAGE_VARIANT else self._cup_radius
        return particles_in_cup(scene.body_pos(self.goal), scene.particle_positions("water"), radius)

    def is_success(self, scene: SceneAccess) -> bool:
        return self.water_in_cup(scene) >= SUCCESS_FRACTION * N_PARTICLES

    def instructions(self) -> list[str]:
        if self.variant == LANGUAGE_VARIANT:
            return [phrase.format(cup=cup) for cup in self._goal_words for phrase in (
                "pour the water into the {cup}", "pour the water from the pitcher into the {cup}",
                "fill the {cup} with water from the pitcher", "empty the pitcher into the {cup}")]
        if self.variant == PROCEDURAL_VARIANT:
            cup = self._cup_words
            return [f"pour the water into the {cup}", f"pour the water from the pitcher into the {cup}",
                    f"fill the {cup} with water from the pitcher", f"empty the pitcher into the {cup}"]
        return [
            "pour the water into the cup",
            "pour the water from the pitcher into the cup",
            "fill the cup with water from the pitcher",
            "empty the pitcher into the cup",
            "pick up the pitcher and pour it into the cup",
            "could you pour some water into the cup?",
        ]

    def expert_plan(self) -> list[Subtask]:
        cup = self._goal_words[0] if self.variant == LANGUAGE_VARIANT else self._cup_words
        return [Subtask("pour", "pitcher", self.goal, f"pour the water from the pitcher into the {cup}")]

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
