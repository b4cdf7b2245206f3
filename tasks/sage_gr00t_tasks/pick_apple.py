"""pick_apple: pick the apple and place it on the plate.

Variants: `novel` (a pear-like fruit on a tray, never trained on), `language` (an apple, an orange and a lime:
only the instruction says which fruit goes on the plate) and `procedural` (a primitive object of a random
shape, size and colour on a plate or tray of a random colour, the instruction naming both).
"""

from __future__ import annotations

import numpy as np

from sage_gr00t.perceive.camera import BLUE, RED, WHITE, YELLOW, VisualSignature
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import (
    LANGUAGE_VARIANT,
    PROCEDURAL_VARIANT,
    Geom,
    ObjectSpec,
    SceneAccess,
    Task,
    sample_positions,
)
from sage_gr00t.tasks.episode import SHAPE_NOUNS, DisplacementCheck, pick_color, rgba

FRUIT_RADIUS = 0.033
PLATE_RADIUS = 0.095
FRUIT_FRICTION = (1.2, 0.02, 0.002)
# The language scene's fruits: name -> (sphere radius, colour).
FRUITS = {"apple": (FRUIT_RADIUS, (0.8, 0.08, 0.06, 1)), "orange": (0.036, (0.95, 0.5, 0.08, 1)),
          "lime": (0.029, (0.35, 0.8, 0.15, 1))}
# Procedural objects: shapes a pinch grasp holds from above (the novel pear's ellipsoid stays unseen).
PROCEDURAL_SHAPES = ("sphere", "box", "cylinder", "capsule")
NOVEL_COLORS = ("yellow",)  # the pear's colour family: procedural objects avoid it, so `novel` stays novel


def _stem(z: float) -> Geom:
    return Geom("capsule", (0.004, 0.008), (0.35, 0.22, 0.1, 1), pos=(0, 0, z), visual_only=True)


class PickApple(Task):
    name = "pick_apple"
    example_command = "put the apple on the plate"
    variants = ("train", "novel", LANGUAGE_VARIANT, PROCEDURAL_VARIANT)

    def __init__(self, variant: str = "train") -> None:
        super().__init__(variant)
        self.goal = "apple"  # the fruit the instruction names (language scenes draw it per episode)
        self._others = DisplacementCheck()
        self._drawn: tuple[ObjectSpec, ...] = ()
        self._drawn_words: tuple[str, str] = ("object", "plate")
        self._half_height = FRUIT_RADIUS
        if variant == PROCEDURAL_VARIANT:
            self.new_episode(np.random.default_rng(0))

    @property
    def novel(self) -> bool:
        return self.variant == "novel"

    # ------------------------------------------------------------------ objects
    def objects(self) -> tuple[ObjectSpec, ...]:
        if self.variant == PROCEDURAL_VARIANT:
            return self._drawn
        if self.variant == LANGUAGE_VARIANT:
            fruits = tuple(
                ObjectSpec(name, (Geom("sphere", (r,), color, friction=FRUIT_FRICTION), _stem(r + 0.006)),
                           kind=name, role="pickable", mass=0.12, radius=r)
                for name, (r, color) in FRUITS.items()
            )
            return (*fruits, self._plate())
        if self.novel:
            # Unseen shape and colour: a yellow-green pear-like ellipsoid on a square blue tray. SAGE's camera looks
            # for their own colours (hue 0.18: yellow; 0.63: blue), the pear's reference point scaled to its height.
            fruit = Geom("ellipsoid", (0.033, 0.033, 0.038), (0.75, 0.8, 0.2, 1), friction=FRUIT_FRICTION)
            stem_z = 0.044
            plate = (Geom("box", (0.085, 0.085, 0.006), (0.2, 0.35, 0.8, 1), pos=(0, 0, 0.006)),)
            fruit_color, plate_color, fruit_ref = YELLOW, BLUE, 0.031
        else:
            fruit = Geom("sphere", (FRUIT_RADIUS,), FRUITS["apple"][1], friction=FRUIT_FRICTION)
            stem_z = FRUIT_RADIUS + 0.006
            plate = self._plate().geoms
            fruit_color, plate_color, fruit_ref = RED, WHITE, 0.027
        fruit_name, plate_name = self._names()
        return (
            ObjectSpec("apple", (fruit, _stem(stem_z)), kind=fruit_name, role="pickable", mass=0.12, radius=0.033,
                       # 3.3 cm sphere: top 3.3 cm above the origin; the brown stem fails the red threshold.
                       signature=VisualSignature(fruit_color, z_range=(0.01, 0.30), radius=0.05,
                                                 ref_to_origin=fruit_ref, layer_band=0.012, expected_pixels=45.0)),
            ObjectSpec("plate", plate, kind=plate_name, role="receptacle", movable=False, radius=PLATE_RADIUS,
                       # Plate top 1.2 cm above the table; white robot links are far above this band.
                       signature=VisualSignature(plate_color, z_range=(0.004, 0.02), radius=0.11, ref_to_origin=0.012,
                                                 layer_band=0.01, expected_pixels=500.0)),
        )

    @staticmethod
    def _plate(rgb: tuple[float, float, float, float] = (0.95, 0.95, 0.92, 1),
               rim: tuple[float, float, float, float] = (0.85, 0.85, 0.82, 1), color: str = "") -> ObjectSpec:
        geoms = (Geom("cylinder", (PLATE_RADIUS, 0.006), rgb, pos=(0, 0, 0.006)),
                 Geom("cylinder", (0.07, 0.0065), rim, pos=(0, 0, 0.006), visual_only=True))
        return ObjectSpec("plate", geoms, kind="plate", role="receptacle", color=color, movable=False,
                          radius=PLATE_RADIUS)

    def new_episode(self, rng: np.random.Generator) -> None:
        if self.variant != PROCEDURAL_VARIANT:
            return
        shape = PROCEDURAL_SHAPES[int(rng.integers(len(PROCEDURAL_SHAPES)))]
        color = pick_color(rng, exclude=NOVEL_COLORS)
        r = float(rng.uniform(0.022, 0.034))  # half-width the fingers close on
        if shape == "sphere":
            size: tuple[float, ...] = (r,)
        elif shape == "box":
            half = float(rng.uniform(0.02, 0.035))
            size = (r, float(rng.uniform(0.02, 0.034)), half)
        elif shape == "cylinder":
            size = (r, float(rng.uniform(0.02, 0.04)))
        else:  # an upright capsule: radius + half length of its cylinder part
            r = min(r, 0.028)
            size = (r, float(rng.uniform(0.005, 0.02)))
        noun = SHAPE_NOUNS[shape][int(rng.integers(len(SHAPE_NOUNS[shape])))]
        obj = ObjectSpec("apple", (Geom(shape, size, rgba(color, rng, 0.05), friction=FRUIT_FRICTION),),
                         kind=noun, role="pickable", color=color, mass=float(rng.uniform(0.06, 0.15)), radius=r)
        plate_color = pick_color(rng, exclude=(color,))
        plate_rgba = rgba(plate_color, rng, 0.04)
        plate = self._plate(plate_rgba, (*(0.9 * c for c in plate_rgba[:3]), 1.0), color=plate_color)
        self._drawn, self._half_height = (obj, plate), obj.geoms[0].half_height
        self._drawn_words = (f"{color} {noun}", f"{plate_color} plate")

    # ------------------------------------------------------------------ layout and success
    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        z = scene.table_height
        if self.variant == LANGUAGE_VARIANT:
            self._place_fruits(scene, rng, pose_scale)
            return
        while True:
            apple, plate = sample_positions(
                rng, [((0.33, 0.45), (-0.17, 0.17)), ((0.33, 0.47), (-0.19, 0.19))], min_distance=0.17,
                scale=pose_scale,
            )
            if abs(apple[1] - plate[1]) <= 0.26:  # both within one arm's reach
                break
        scene.set_pose("apple", np.array([*apple, z + self._fruit_half_height() + 0.002]),
                       yaw=rng.uniform(-np.pi, np.pi))
        scene.set_pose("plate", np.array([*plate, z]))

    def _place_fruits(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float) -> None:
        z = scene.table_height
        names = list(FRUITS)
        self.goal = names[int(rng.integers(len(names)))]
        if self.pinned_goal is not None:
            self.goal = names[self.pinned_goal]
        while True:
            plate, *fruits = sample_positions(
                rng, [((0.36, 0.46), (-0.2, 0.2))] + [((0.30, 0.46), (-0.2, 0.2))] * len(names),
                min_distance=0.09, scale=pose_scale,
            )
            # A pinned goal's layout must suit every goal (one scene for all of them).
            reachable = fruits if self.pinned_goal is not None else [fruits[names.index(self.goal)]]
            clear = all(np.linalg.norm(f - plate) >= 0.16 for f in fruits)
            if clear and all(abs(f[1] - plate[1]) <= 0.26 for f in reachable):
                break
        scene.set_pose("plate", np.array([*plate, z]))
        for name, xy in zip(names, fruits, strict=True):
            scene.set_pose(name, np.array([*xy, z + FRUITS[name][0] + 0.002]), yaw=rng.uniform(-np.pi, np.pi))
        self._others.arm(tuple(n for n in names if n != self.goal))

    def goal_choices(self) -> tuple[str, ...]:
        return tuple(FRUITS) if self.variant == LANGUAGE_VARIANT else ()

    def is_success(self, scene: SceneAccess) -> bool:
        fruit, plate = scene.body_pos(self._fruit_body()), scene.body_pos("plate")
        on_plate = np.linalg.norm(fruit[:2] - plate[:2]) < 0.085
        resting = fruit[2] < scene.table_height + 0.012 + self._fruit_half_height() + 0.01
        done = bool(on_plate and resting and not scene.touching_robot(self._fruit_body()))
        if self.variant == LANGUAGE_VARIANT:
            return done and not self._others.displaced(scene)
        return done

    def _fruit_body(self) -> str:
        return self.goal if self.variant == LANGUAGE_VARIANT else "apple"

    def _fruit_half_height(self) -> float:
        if self.variant == LANGUAGE_VARIANT:
            return FRUITS[self.goal][0]
        if self.variant == PROCEDURAL_VARIANT:
            return self._half_height
        return 0.038 if self.novel else FRUIT_RADIUS

    def _names(self) -> tuple[str, str]:
        if self.variant == LANGUAGE_VARIANT:
            return self.goal, "plate"
        if self.variant == PROCEDURAL_VARIANT:
            return self._drawn_words
        return ("pear", "tray") if self.novel else ("apple", "plate")

    # ------------------------------------------------------------------ language and expert
    def instructions(self) -> list[str]:
        fruit, plate = self._names()
        return [
            f"pick the {fruit} and place it on the {plate}",
            f"put the {fruit} on the {plate}",
            f"move the {fruit} onto the {plate}",
            f"place the {fruit} on the {plate}",
            f"grab the {fruit} and set it down on the {plate}",
            f"could you put the {fruit} on the {plate}?",
        ]

    def expert_plan(self) -> list[Subtask]:
        fruit, plate = self._names()
        return [Subtask("pick_place", self._fruit_body(), "plate", f"pick up the {fruit} and place it on the {plate}")]

    def place_height(self, object_name: str, target_name: str) -> float:
        return 0.05
