"""sort_blocks: put each coloured block into the bin of its colour (distractor blocks stay put)."""

from __future__ import annotations

import mujoco
import numpy as np

from sage_gr00t.sim.scene import add_free_body, add_static_body
from sage_gr00t.skills import Subtask
from sage_gr00t_tasks.base import GraspSpec, TabletopTaskEnv

_BOX = mujoco.mjtGeom.mjGEOM_BOX
_CYL = mujoco.mjtGeom.mjGEOM_CYLINDER

COLORS = {
    "red": [0.85, 0.1, 0.08, 1],
    "blue": [0.1, 0.25, 0.85, 1],
    "green": [0.1, 0.7, 0.2, 1],
    "purple": [0.55, 0.2, 0.7, 1],
}
SORTED_COLORS = ("red", "blue")


class SortBlocksEnv(TabletopTaskEnv):
    task_name = "sort_blocks"
    BLOCK_HALF = 0.022
    BIN_INNER_HALF = 0.07
    BIN_WALL_HEIGHT = 0.04

    def _distractor_color(self) -> str:
        return "purple" if self.config.variant == "novel" else "green"

    def build_objects(self, spec: mujoco.MjSpec) -> None:
        novel = self.config.variant == "novel"
        h = self.BLOCK_HALF
        for color in (*SORTED_COLORS, self._distractor_color()):
            if novel:  # unseen shape: cylinders instead of cubes
                geom = dict(type=_CYL, size=[h, h, 0], rgba=COLORS[color])
            else:
                geom = dict(type=_BOX, size=[h, h, h], rgba=COLORS[color])
            add_free_body(spec, f"{color}_block", [geom | {"friction": [1.2, 0.02, 0.002]}], mass=0.08)
        for color in SORTED_COLORS:
            add_static_body(spec, f"{color}_bin", self._bin_geoms(color))

    def _bin_geoms(self, color: str) -> list[dict]:
        a, t, wh = self.BIN_INNER_HALF, 0.006, self.BIN_WALL_HEIGHT
        rgba = [c * 0.8 for c in COLORS[color][:3]] + [1]
        walls = [
            dict(type=_BOX, size=[a + 2 * t, a + 2 * t, 0.003], pos=[0, 0, 0.003], rgba=rgba),
            dict(type=_BOX, size=[t, a + 2 * t, wh / 2], pos=[a + t, 0, wh / 2], rgba=rgba),
            dict(type=_BOX, size=[t, a + 2 * t, wh / 2], pos=[-a - t, 0, wh / 2], rgba=rgba),
            dict(type=_BOX, size=[a, t, wh / 2], pos=[0, a + t, wh / 2], rgba=rgba),
            dict(type=_BOX, size=[a, t, wh / 2], pos=[0, -a - t, wh / 2], rgba=rgba),
        ]
        return walls

    def object_body_names(self) -> list[str]:
        return [f"{c}_block" for c in (*SORTED_COLORS, self._distractor_color())] + [
            f"{c}_bin" for c in SORTED_COLORS
        ]

    def place_objects(self, rng: np.random.Generator) -> None:
        z = self.table_height
        left_color = SORTED_COLORS[int(rng.integers(2))]
        for color in SORTED_COLORS:
            side = 1.0 if color == left_color else -1.0
            x, y = rng.uniform(0.37, 0.45), side * rng.uniform(0.22, 0.25)
            self.set_fixed_body_pos(f"{color}_bin", np.array([x, y, z]))
        blocks = self.sample_positions(rng, [((0.31, 0.47), (-0.06, 0.06))] * 3, min_distance=0.085)
        for color, xy in zip((*SORTED_COLORS, self._distractor_color()), blocks, strict=True):
            self.set_free_body_pose(f"{color}_block", np.array([*xy, z + self.BLOCK_HALF + 0.001]),
                                    yaw=rng.uniform(-np.pi, np.pi))

    def block_in_bin(self, color: str) -> bool:
        block, bin_pos = self.body_pos(f"{color}_block"), self.body_pos(f"{color}_bin")
        inside = np.all(np.abs(block[:2] - bin_pos[:2]) < self.BIN_INNER_HALF)
        released = not self.touching_robot(f"{color}_block")
        return bool(inside and released and block[2] < self.table_height + 0.06)

    def is_success(self) -> bool:
        return all(self.block_in_bin(c) for c in SORTED_COLORS)

    def instructions(self) -> list[str]:
        shape = "cylinders" if self.config.variant == "novel" else "blocks"
        return [
            f"sort the {shape} into the bins of the same colour",
            f"put each {shape[:-1]} in the bin that matches its colour",
            f"put the red {shape[:-1]} in the red bin and the blue {shape[:-1]} in the blue bin",
            f"put the blue {shape[:-1]} in the blue bin and the red {shape[:-1]} in the red bin",
            f"sort the red and blue {shape} by colour",
            f"place the coloured {shape} into their matching bins",
        ]

    def expert_plan(self) -> list[Subtask]:
        shape = "cylinder" if self.config.variant == "novel" else "block"
        return [
            Subtask("pick_place", f"{c}_block", f"{c}_bin", f"pick up the {c} {shape} and place it in the {c} bin")
            for c in SORTED_COLORS
        ]

    def grasp_spec(self, object_name: str) -> GraspSpec:
        # Align the fingers with the block's faces: yaw modulo 90 degrees, in [-45, 45].
        quat = self.body_quat(object_name)
        yaw = np.arctan2(2 * (quat[0] * quat[3] + quat[1] * quat[2]), 1 - 2 * (quat[2] ** 2 + quat[3] ** 2))
        yaw = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
        if self.config.variant == "novel":
            yaw = 0.0  # cylinders: any yaw grips
        return GraspSpec(height=0.0, yaw=float(yaw), lift=0.12)

    def place_height(self, object_name: str, target_name: str) -> float:
        return 0.07
