"""push_block: push the orange block along the table onto the green pad (a push, never a grasp).

A task taught from a handful of demonstrations (issue 13): the policy learns it from at most 10 recorded
episodes multiplied into dreams (`learn/mimic.py`, whose push segments live in a frame set by the block and
the pad). The pad lies in any direction from the block -- away from the robot, sideways, diagonally, back
towards it -- so the push direction is part of what is learnt. Variant `novel`: a blue cylinder pushed onto
a yellow pad (a shape and colours never pushed in training).
"""

from __future__ import annotations

import numpy as np

from sage_gr00t.perceive.camera import COLOR_RANGES, VisualSignature
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks import GraspSpec, ObjectSpec, SceneAccess, Task, sample_positions
from sage_gr00t.tasks.episode import rgba
from sage_gr00t.tasks.spec import Geom

BLOCK_HALF = 0.022
# The table's own sliding friction (contacts take the larger of the two): a pushed block slides, it does not tip.
BLOCK_FRICTION = (0.8, 0.01, 0.001)
PAD_RADIUS = 0.06
PAD_HALF_THICKNESS = 0.00025  # a 0.5 mm mat: a pushed block slides over its edge, never catches on it
# Where the block starts: this far from the pad's centre (off the pad, a real push), in any direction.
PUSH_DISTANCE = (0.10, 0.15)
# The pad's region; its centre with the middle distance straight ahead (pose_scale 0) is a feasible layout.
PAD_REGION = ((0.35, 0.43), (-0.14, 0.14))
BLOCK_REGION = ((0.26, 0.48), (-0.25, 0.25))  # where a start is reachable with the hand behind it
# The closed fingers' tips are 3.5 cm below the end-effector site: the site 2 cm above the block's centre
# keeps them clear of the table while they meet the block's lower half (it slides, it does not tip).
PUSH_HEIGHT = 0.02


def _block_signature(color: str) -> VisualSignature:
    # A 4.4 cm block (or cylinder) on the table: top face 2.2 cm above its origin.
    return VisualSignature(COLOR_RANGES[color], z_range=(0.014, 0.30), radius=0.035, ref_to_origin=BLOCK_HALF,
                           expected_pixels=40.0)


def _pad_signature(color: str) -> VisualSignature:
    # A flat mat on the table: its pixels lie within a centimetre of the table top, below any block's top face.
    return VisualSignature(COLOR_RANGES[color], z_range=(-0.004, 0.010), radius=0.08, layer="bottom",
                           layer_band=0.006, ref_to_origin=2 * PAD_HALF_THICKNESS, expected_pixels=400.0)


class PushBlock(Task):
    name = "push_block"
    example_command = "push the orange block onto the green pad"

    @property
    def novel(self) -> bool:
        return self.variant == "novel"

    @property
    def colors(self) -> tuple[str, str]:
        """(pushed object, pad) colours."""
        return ("blue", "yellow") if self.novel else ("orange", "green")

    @property
    def noun(self) -> str:
        return "cylinder" if self.novel else "block"

    @property
    def block(self) -> str:
        return f"{self.colors[0]}_{self.noun}"

    @property
    def pad(self) -> str:
        return f"{self.colors[1]}_pad"

    def objects(self) -> tuple[ObjectSpec, ...]:
        h = BLOCK_HALF
        obj, pad = self.colors
        shape = (Geom("cylinder", (h, h), rgba(obj), friction=BLOCK_FRICTION) if self.novel
                 else Geom("box", (h, h, h), rgba(obj), friction=BLOCK_FRICTION))
        return (
            ObjectSpec(self.block, (shape,), kind=self.noun, role="pickable", color=obj, mass=0.1, radius=h,
                       signature=_block_signature(obj)),
            ObjectSpec(self.pad, (Geom("cylinder", (PAD_RADIUS, PAD_HALF_THICKNESS), rgba(pad),
                                       pos=(0, 0, PAD_HALF_THICKNESS)),),
                       kind="pad", role="receptacle", place_skill="push", color=pad, movable=False, radius=PAD_RADIUS,
                       signature=_pad_signature(pad)),
        )

    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        z = scene.table_height
        (bx0, bx1), (by0, by1) = BLOCK_REGION
        for _ in range(1000):
            (pad,) = sample_positions(rng, [PAD_REGION], min_distance=0.0, scale=pose_scale)
            # The push direction (block -> pad), any heading; pose_scale narrows it about straight ahead.
            heading = rng.uniform(-np.pi, np.pi) * pose_scale
            mid, half = sum(PUSH_DISTANCE) / 2, (PUSH_DISTANCE[1] - PUSH_DISTANCE[0]) / 2 * pose_scale
            distance = rng.uniform(mid - half, mid + half)
            block = pad - distance * np.array([np.cos(heading), np.sin(heading)])
            if bx0 <= block[0] <= bx1 and by0 <= block[1] <= by1:
                break
        else:
            raise RuntimeError(f"push_block: no reachable block start for pose_scale {pose_scale}.")
        scene.set_pose(self.pad, np.array([*pad, z]))
        # A face (almost) square to the push: the closed fingers meet it flat, so it slides straight.
        scene.set_pose(self.block, np.array([*block, z + BLOCK_HALF + 0.001]), yaw=heading + rng.uniform(-0.3, 0.3))

    def is_success(self, scene: SceneAccess) -> bool:
        block, pad = scene.body_pos(self.block), scene.body_pos(self.pad)
        on_pad = np.linalg.norm(block[:2] - pad[:2]) < PAD_RADIUS
        resting = block[2] < scene.table_height + BLOCK_HALF + 0.01  # on the pad, not held up or on its edge
        return bool(on_pad and resting and not scene.touching_robot(self.block))

    def instructions(self) -> list[str]:
        obj, pad = self.colors
        noun = self.noun
        return [
            f"push the {obj} {noun} onto the {pad} pad",
            f"slide the {obj} {noun} onto the {pad} pad",
            f"push the {obj} {noun} over to the {pad} pad",
            f"nudge the {obj} {noun} along the table onto the {pad} pad",
            f"move the {obj} {noun} onto the {pad} pad by pushing it",
            f"could you push the {obj} {noun} onto the {pad} pad?",
        ]

    def expert_plan(self) -> list[Subtask]:
        obj, pad = self.colors
        return [Subtask("push", self.block, self.pad, f"push the {obj} {self.noun} onto the {pad} pad")]

    def grasp(self, scene: SceneAccess, object_name: str) -> GraspSpec:
        # Either flat side of the closed fingers may push: of the hand yaws that square one of them to the
        # push, the one nearest straight ahead (in [-45, 45] degrees), which both arms reach everywhere.
        d = scene.body_pos(self.pad)[:2] - scene.body_pos(object_name)[:2]
        yaw = float((np.arctan2(d[1], d[0]) + np.pi / 4) % (np.pi / 2) - np.pi / 4)
        return GraspSpec(height=PUSH_HEIGHT, yaw=yaw, lift=0.1)
