"""pick_apple: pick the apple and place it on the plate."""

from __future__ import annotations

import mujoco
import numpy as np

from sage_gr00t.sim.scene import add_free_body, add_static_body
from sage_gr00t.skills import Subtask
from sage_gr00t_tasks.base import GraspSpec, TabletopTaskEnv

_BOX = mujoco.mjtGeom.mjGEOM_BOX
_SPHERE = mujoco.mjtGeom.mjGEOM_SPHERE
_CYL = mujoco.mjtGeom.mjGEOM_CYLINDER
_ELLIPSOID = mujoco.mjtGeom.mjGEOM_ELLIPSOID
_CAPSULE = mujoco.mjtGeom.mjGEOM_CAPSULE


class PickAppleEnv(TabletopTaskEnv):
    task_name = "pick_apple"
    FRUIT_RADIUS = 0.033
    PLATE_RADIUS = 0.095

    def build_objects(self, spec: mujoco.MjSpec) -> None:
        novel = self.config.variant == "novel"
        stem = dict(type=_CAPSULE, size=[0.004, 0.008], pos=[0, 0, self.FRUIT_RADIUS + 0.006],
                    rgba=[0.35, 0.22, 0.1, 1], contype=0, conaffinity=0, group=1)
        if novel:
            # Unseen shape and colour: a yellow-green pear-like ellipsoid on a square blue tray.
            fruit = dict(type=_ELLIPSOID, size=[0.033, 0.033, 0.038], rgba=[0.75, 0.8, 0.2, 1])
            stem["pos"] = [0, 0, 0.044]
            plate = [dict(type=_BOX, size=[0.085, 0.085, 0.006], pos=[0, 0, 0.006], rgba=[0.2, 0.35, 0.8, 1])]
        else:
            fruit = dict(type=_SPHERE, size=[self.FRUIT_RADIUS, 0, 0], rgba=[0.8, 0.08, 0.06, 1])
            plate = [dict(type=_CYL, size=[self.PLATE_RADIUS, 0.006, 0], pos=[0, 0, 0.006], rgba=[0.95, 0.95, 0.92, 1]),
                     dict(type=_CYL, size=[0.07, 0.0065, 0], pos=[0, 0, 0.006], rgba=[0.85, 0.85, 0.82, 1],
                          contype=0, conaffinity=0, group=1)]
        add_free_body(spec, "apple", [fruit | {"friction": [1.2, 0.02, 0.002]}, stem], mass=0.12)
        add_static_body(spec, "plate", plate)

    def object_body_names(self) -> list[str]:
        return ["apple", "plate"]

    def place_objects(self, rng: np.random.Generator) -> None:
        while True:
            apple, plate = self.sample_positions(
                rng, [((0.33, 0.45), (-0.17, 0.17)), ((0.33, 0.47), (-0.19, 0.19))], min_distance=0.17
            )
            if abs(apple[1] - plate[1]) <= 0.26:  # both within one arm's reach
                break
        z = self.table_height
        self.set_free_body_pose("apple", np.array([*apple, z + self._fruit_half_height() + 0.002]),
                                yaw=rng.uniform(-np.pi, np.pi))
        self.set_fixed_body_pos("plate", np.array([*plate, z]))

    def is_success(self) -> bool:
        apple, plate = self.body_pos("apple"), self.body_pos("plate")
        on_plate = np.linalg.norm(apple[:2] - plate[:2]) < 0.085
        resting = apple[2] < self.table_height + 0.012 + self._fruit_half_height() + 0.01
        return bool(on_plate and resting and not self.touching_robot("apple"))

    def _fruit_half_height(self) -> float:
        return 0.038 if self.config.variant == "novel" else self.FRUIT_RADIUS

    def _names(self) -> tuple[str, str]:
        return ("pear", "tray") if self.config.variant == "novel" else ("apple", "plate")

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

    def grasp_spec(self, object_name: str) -> GraspSpec:
        return GraspSpec(height=0.0, yaw=0.0)

    def place_height(self, object_name: str, target_name: str) -> float:
        return 0.05
