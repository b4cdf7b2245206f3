"""sort_blocks: put each coloured block into the bin of its colour (the distractor block stays put).

Variants: `novel` (cylinders, a purple distractor: never trained on), `language` (red, blue and green blocks:
the instruction names one block and one bin, any pairing) and `procedural` (blocks of random sizes and shades,
a distractor of a random shape and colour).
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
    SceneAccess,
    Task,
    open_box,
    sample_positions,
    yaw_of,
)
from sage_gr00t.tasks.episode import SHAPE_NOUNS, DisplacementCheck, pick_color, rgba
from sage_gr00t.tasks.spec import Geom

COLORS = {
    "red": (0.85, 0.1, 0.08, 1),
    "blue": (0.1, 0.25, 0.85, 1),
    "green": (0.1, 0.7, 0.2, 1),
    "purple": (0.55, 0.2, 0.7, 1),
}
SORTED_COLORS = ("red", "blue")
BLOCK_HALF = 0.022
BIN_INNER_HALF = 0.07
BIN_WALL_HEIGHT = 0.04
BLOCK_FRICTION = (1.2, 0.02, 0.002)
DISTRACTOR_SHAPES = ("box", "sphere", "capsule")  # procedural distractors; cylinders stay the novel variant's


def _block_signature(color: str) -> VisualSignature:
    # A 4.4 cm cube: its upper part stands above the bin floor/table, top face 2.2 cm above the origin.
    return VisualSignature(COLOR_RANGES[color], z_range=(0.014, 0.30), radius=0.035, ref_to_origin=0.022,
                           expected_pixels=40.0)


def _bin_signature(color: str) -> VisualSignature:
    # Floor top 6 mm above the bin origin (which sits on the table); walls 4 cm high.
    return VisualSignature(COLOR_RANGES[color], z_range=(-0.01, 0.045), radius=0.11, layer="bottom",
                           ref_to_origin=0.006, expected_pixels=500.0, container=True, outer_half=0.082)


class SortBlocks(Task):
    name = "sort_blocks"
    example_command = "sort the blocks into the bins of the same colour"
    variants = ("train", "novel", LANGUAGE_VARIANT, PROCEDURAL_VARIANT)

    def __init__(self, variant: str = "train") -> None:
        super().__init__(variant)
        # Language scenes: the (block colour, bin colour) pair the instruction names, drawn per episode.
        self.goal = ("red", "red")
        self._others = DisplacementCheck()
        self._drawn: tuple[ObjectSpec, ...] = ()
        if variant == PROCEDURAL_VARIANT:
            self.new_episode(np.random.default_rng(0))

    @property
    def novel(self) -> bool:
        return self.variant == "novel"

    @property
    def distractor(self) -> str:
        return "purple" if self.novel else "green"

    def objects(self) -> tuple[ObjectSpec, ...]:
        if self.variant == PROCEDURAL_VARIANT:
            return self._drawn
        h = BLOCK_HALF
        kind = "cylinder" if self.novel else "block"  # unseen shape: cylinders instead of cubes
        blocks = tuple(
            ObjectSpec(
                f"{color}_block",
                (Geom("cylinder", (h, h), COLORS[color], friction=BLOCK_FRICTION) if self.novel
                 else Geom("box", (h, h, h), COLORS[color], friction=BLOCK_FRICTION),),
                kind=kind, role="pickable", color=color, mass=0.08, radius=BLOCK_HALF,
                signature=_block_signature(color),
            )
            for color in (*SORTED_COLORS, self.distractor)
        )
        bins = tuple(
            ObjectSpec(f"{color}_bin", open_box(BIN_INNER_HALF, BIN_WALL_HEIGHT, 0.006,
                                                (*(c * 0.8 for c in COLORS[color][:3]), 1)),
                       kind="bin", role="receptacle", color=color, movable=False, radius=BIN_INNER_HALF,
                       signature=_bin_signature(color))
            for color in SORTED_COLORS
        )
        return blocks + bins

    def new_episode(self, rng: np.random.Generator) -> None:
        if self.variant != PROCEDURAL_VARIANT:
            return
        blocks = []
        for color in SORTED_COLORS:  # cuboids of random proportions, shades of the bin's colour
            half = (float(rng.uniform(0.018, 0.025)), float(rng.uniform(0.018, 0.025)), float(rng.uniform(0.018, 0.03)))
            blocks.append(ObjectSpec(f"{color}_block", (Geom("box", half, rgba(color, rng, 0.06),
                                                              friction=BLOCK_FRICTION),),
                                     kind="block", role="pickable", color=color, mass=float(rng.uniform(0.05, 0.12)),
                                     radius=min(half[:2])))
        shape = DISTRACTOR_SHAPES[int(rng.integers(len(DISTRACTOR_SHAPES)))]
        color = pick_color(rng, exclude=(*SORTED_COLORS, "purple", "pink", "orange"))  # not read as red / blue
        r = float(rng.uniform(0.018, 0.025))
        size = {"box": (r, r, r), "sphere": (r,), "capsule": (r, 0.01)}[shape]
        noun = SHAPE_NOUNS[shape][0]
        blocks.append(ObjectSpec(f"{self.distractor}_block", (Geom(shape, size, rgba(color, rng, 0.05),
                                                                   friction=BLOCK_FRICTION),),
                                 kind=noun, role="pickable", color=color, mass=0.08, radius=r))
        self._drawn = (*blocks, *self._bins())

    def _bins(self) -> tuple[ObjectSpec, ...]:
        return tuple(o for o in SortBlocks("train").objects() if o.kind == "bin")

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        z = scene.table_height
        left_color = SORTED_COLORS[int(rng.integers(2))]
        for color in SORTED_COLORS:
            side = 1.0 if color == left_color else -1.0
            x, y = rng.uniform(0.37, 0.45), side * rng.uniform(0.22, 0.25)
            scene.set_pose(f"{color}_bin", np.array([x, y, z]))
        blocks = sample_positions(rng, [((0.31, 0.47), (-0.06, 0.06))] * 3, min_distance=0.085, scale=pose_scale)
        names = [f"{color}_block" for color in (*SORTED_COLORS, self.distractor)]
        for name, xy in zip(names, blocks, strict=True):
            half = self.object(name).geoms[0].half_height
            scene.set_pose(name, np.array([*xy, z + half + 0.001]), yaw=rng.uniform(-np.pi, np.pi))
        if self.variant == LANGUAGE_VARIANT:
            block_colors = (*SORTED_COLORS, self.distractor)
            self.goal = (block_colors[int(rng.integers(3))], SORTED_COLORS[int(rng.integers(2))])
            if self.pinned_goal is not None:
                self.goal = tuple(self.goal_choices()[self.pinned_goal].split("->"))
            self._others.arm(tuple(n for n in names if n != f"{self.goal[0]}_block"))

    def goal_choices(self) -> tuple[str, ...]:
        if self.variant != LANGUAGE_VARIANT:
            return ()
        return tuple(f"{block}->{bin_}" for block in (*SORTED_COLORS, self.distractor) for bin_ in SORTED_COLORS)

    def block_in_bin(self, scene: SceneAccess, color: str, bin_color: str | None = None) -> bool:
        block, bin_pos = scene.body_pos(f"{color}_block"), scene.body_pos(f"{bin_color or color}_bin")
        inside = np.all(np.abs(block[:2] - bin_pos[:2]) < BIN_INNER_HALF)
        released = not scene.touching_robot(f"{color}_block")
        return bool(inside and released and block[2] < scene.table_height + 0.06)

    def is_success(self, scene: SceneAccess) -> bool:
        if self.variant == LANGUAGE_VARIANT:
            return self.block_in_bin(scene, *self.goal) and not self._others.displaced(scene)
        return all(self.block_in_bin(scene, c) for c in SORTED_COLORS)

    def instructions(self) -> list[str]:
        if self.variant == LANGUAGE_VARIANT:
            block, bin_color = self.goal
            return [
                f"put the {block} block in the {bin_color} bin",
                f"place the {block} block into the {bin_color} bin",
                f"move the {block} block to the {bin_color} bin",
                f"pick up the {block} block and drop it in the {bin_color} bin",
                f"the {block} block goes in the {bin_color} bin",
                f"could you put the {block} block in the {bin_color} bin?",
            ]
        shape = "cylinders" if self.novel else "blocks"
        return [
            f"sort the {shape} into the bins of the same colour",
            f"put each {shape[:-1]} in the bin that matches its colour",
            f"put the red {shape[:-1]} in the red bin and the blue {shape[:-1]} in the blue bin",
            f"put the blue {shape[:-1]} in the blue bin and the red {shape[:-1]} in the red bin",
            f"sort the red and blue {shape} by colour",
            f"place the coloured {shape} into their matching bins",
        ]

    def expert_plan(self) -> list[Subtask]:
        if self.variant == LANGUAGE_VARIANT:
            block, bin_color = self.goal
            return [Subtask("pick_place", f"{block}_block", f"{bin_color}_bin",
                            f"pick up the {block} block and place it in the {bin_color} bin")]
        shape = "cylinder" if self.novel else "block"
        return [
            Subtask("pick_place", f"{c}_block", f"{c}_bin", f"pick up the {c} {shape} and place it in the {c} bin")
            for c in SORTED_COLORS
        ]

    def grasp(self, scene: SceneAccess, object_name: str) -> GraspSpec:
        if self.object(object_name).geoms[0].shape != "box":
            return GraspSpec(height=0.0, yaw=0.0, lift=0.12)  # cylinders, spheres: any yaw grips
        # Align the fingers with the block's faces: yaw modulo 90 degrees, in [-45, 45].
        yaw = (yaw_of(scene.body_quat(object_name)) + np.pi / 4) % (np.pi / 2) - np.pi / 4
        return GraspSpec(height=0.0, yaw=float(yaw), lift=0.12)

    def place_height(self, object_name: str, target_name: str) -> float:
        return 0.07
