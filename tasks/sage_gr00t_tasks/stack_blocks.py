"""stack_blocks: put the red block on top of the blue block.

A task taught from a handful of demonstrations (issue 13): the policy learns it from at most 10 recorded
episodes multiplied into dreams (`learn/mimic.py`), never from this module's expert plan directly.
Variant `novel`: a green block on a yellow block (colours never stacked in training).
"""

from __future__ import annotations

import numpy as np

from sage_gr00t.perceive.camera import COLOR_RANGES, VisualSignature
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import GraspSpec, ObjectSpec, SceneAccess, Task, sample_positions, yaw_of
from sage_gr00t.tasks.episode import rgba
from sage_gr00t.tasks.spec import Geom

BLOCK_HALF = 0.022
BLOCK_FRICTION = (1.2, 0.02, 0.002)
# Stacked: the top block's centre within this of the base's axis, and one block height above it.
CENTRE_TOLERANCE = 0.02
HEIGHT_TOLERANCE = 0.012
RELEASE_CLEARANCE = 0.006  # m the top block's bottom is let go above the base's top face


def _signature(color: str) -> VisualSignature:
    # A 4.4 cm cube resting on the table (or on another): top face 2.2 cm above its origin.
    return VisualSignature(COLOR_RANGES[color], z_range=(0.014, 0.30), radius=0.035, ref_to_origin=BLOCK_HALF,
                           expected_pixels=40.0)


class StackBlocks(Task):
    name = "stack_blocks"
    example_command = "stack the red block on the blue block"

    @property
    def colors(self) -> tuple[str, str]:
        """(top block, base block) colours."""
        return ("green", "yellow") if self.variant == "novel" else ("red", "blue")

    @property
    def top(self) -> str:
        return f"{self.colors[0]}_block"

    @property
    def base(self) -> str:
        return f"{self.colors[1]}_block"

    def objects(self) -> tuple[ObjectSpec, ...]:
        h = BLOCK_HALF
        top, base = self.colors
        return (
            ObjectSpec(self.top, (Geom("box", (h, h, h), rgba(top), friction=BLOCK_FRICTION),), kind="block",
                       role="pickable", color=top, mass=0.08, radius=h, signature=_signature(top)),
            # The base is a free block too (it can be knocked over), the place target of the top one.
            ObjectSpec(self.base, (Geom("box", (h, h, h), rgba(base), friction=BLOCK_FRICTION),), kind="block",
                       role="receptacle", color=base, mass=0.12, radius=h, signature=_signature(base)),
        )

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        z = scene.table_height + BLOCK_HALF + 0.001
        points = sample_positions(rng, [((0.31, 0.45), (-0.12, 0.12))] * 2, min_distance=0.09, scale=pose_scale)
        for name, xy in zip((self.top, self.base), points, strict=True):
            scene.set_pose(name, np.array([*xy, z]), yaw=rng.uniform(-np.pi, np.pi))

    def is_success(self, scene: SceneAccess) -> bool:
        top, base = scene.body_pos(self.top), scene.body_pos(self.base)
        centred = np.linalg.norm(top[:2] - base[:2]) < CENTRE_TOLERANCE
        on_top = abs(top[2] - base[2] - 2 * BLOCK_HALF) < HEIGHT_TOLERANCE
        base_down = base[2] < scene.table_height + BLOCK_HALF + 0.01  # the base still stands on the table
        return bool(centred and on_top and base_down and not scene.touching_robot(self.top))

    def instructions(self) -> list[str]:
        top, base = self.colors
        return [
            f"stack the {top} block on the {base} block",
            f"put the {top} block on top of the {base} block",
            f"place the {top} block onto the {base} block",
            f"put the {top} block on the {base} one",
            f"build a tower with the {top} block on the {base} block",
            f"could you stack the {top} block on top of the {base} block?",
        ]

    def expert_plan(self) -> list[Subtask]:
        top, base = self.colors
        return [Subtask("pick_place", self.top, self.base, f"pick up the {top} block and place it on the {base} block")]

    def grasp(self, scene: SceneAccess, object_name: str) -> GraspSpec:
        # Fingers on the block's faces: its yaw modulo 90 degrees, in [-45, 45].
        yaw = (yaw_of(scene.body_quat(object_name)) + np.pi / 4) % (np.pi / 2) - np.pi / 4
        return GraspSpec(height=0.0, yaw=float(yaw), lift=0.12)

    def place_height(self, object_name: str, target_name: str) -> float:
        # The held block's centre when released: one block height above the table, plus its half and a clearance.
        return 3 * BLOCK_HALF + RELEASE_CLEARANCE
