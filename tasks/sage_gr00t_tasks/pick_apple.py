"""pick_apple: pick the apple and place it on the plate (novel variant: a pear-like fruit on a tray)."""

from __future__ import annotations

import numpy as np

from sage_gr00t.perceive.camera import RED, WHITE, VisualSignature
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import Geom, ObjectSpec, SceneAccess, Task, sample_positions

FRUIT_RADIUS = 0.033
PLATE_RADIUS = 0.095
FRUIT_FRICTION = (1.2, 0.02, 0.002)


class PickApple(Task):
    name = "pick_apple"
    example_command = "put the apple on the plate"

    @property
    def novel(self) -> bool:
        return self.variant == "novel"

    def objects(self) -> tuple[ObjectSpec, ...]:
        if self.novel:
            # Unseen shape and colour: a yellow-green pear-like ellipsoid on a square blue tray.
            fruit = Geom("ellipsoid", (0.033, 0.033, 0.038), (0.75, 0.8, 0.2, 1), friction=FRUIT_FRICTION)
            stem_z = 0.044
            plate = (Geom("box", (0.085, 0.085, 0.006), (0.2, 0.35, 0.8, 1), pos=(0, 0, 0.006)),)
        else:
            fruit = Geom("sphere", (FRUIT_RADIUS,), (0.8, 0.08, 0.06, 1), friction=FRUIT_FRICTION)
            stem_z = FRUIT_RADIUS + 0.006
            plate = (Geom("cylinder", (PLATE_RADIUS, 0.006), (0.95, 0.95, 0.92, 1), pos=(0, 0, 0.006)),
                     Geom("cylinder", (0.07, 0.0065), (0.85, 0.85, 0.82, 1), pos=(0, 0, 0.006), visual_only=True))
        stem = Geom("capsule", (0.004, 0.008), (0.35, 0.22, 0.1, 1), pos=(0, 0, stem_z), visual_only=True)
        fruit_name, plate_name = self._names()
        return (
            ObjectSpec("apple", (fruit, stem), kind=fruit_name, role="pickable", mass=0.12, radius=0.033,
                       # 3.3 cm sphere: top 3.3 cm above the origin; the brown stem fails the red threshold.
                       signature=VisualSignature(RED, z_range=(0.01, 0.30), radius=0.05, ref_to_origin=0.027,
                                                 layer_band=0.012, expected_pixels=45.0)),
            ObjectSpec("plate", plate, kind=plate_name, role="receptacle", movable=False, radius=PLATE_RADIUS,
                       # Plate top 1.2 cm above the table; white robot links are far above this band.
                       signature=VisualSignature(WHITE, z_range=(0.004, 0.02), radius=0.11, ref_to_origin=0.012,
                                                 layer_band=0.01, expected_pixels=500.0)),
        )

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        while True:
            apple, plate = sample_positions(
                rng, [((0.33, 0.45), (-0.17, 0.17)), ((0.33, 0.47), (-0.19, 0.19))], min_distance=0.17,
                scale=pose_scale,
            )
            if abs(apple[1] - plate[1]) <= 0.26:  # both within one arm's reach
                break
        z = scene.table_height
        scene.set_pose("apple", np.array([*apple, z + self._fruit_half_height() + 0.002]),
                       yaw=rng.uniform(-np.pi, np.pi))
        scene.set_pose("plate", np.array([*plate, z]))

    def is_success(self, scene: SceneAccess) -> bool:
        apple, plate = scene.body_pos("apple"), scene.body_pos("plate")
        on_plate = np.linalg.norm(apple[:2] - plate[:2]) < 0.085
        resting = apple[2] < scene.table_height + 0.012 + self._fruit_half_height() + 0.01
        return bool(on_plate and resting and not scene.touching_robot("apple"))

    def _fruit_half_height(self) -> float:
        return 0.038 if self.novel else FRUIT_RADIUS

    def _names(self) -> tuple[str, str]:
        return ("pear", "tray") if self.novel else ("apple", "plate")

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
        return [Subtask("pick_place", "apple", "plate", f"pick up the {fruit} and place it on the {plate}")]

    def place_height(self, object_name: str, target_name: str) -> float:
        return 0.05
