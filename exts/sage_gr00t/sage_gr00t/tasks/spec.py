"""What a task declares, once, for every simulator: objects, layout, language, success and expert plan.

A task is one class (one module) written against `SceneAccess` (body poses, setting poses, contacts,
joint state, particles). The MuJoCo backend (`sim.mujoco_env`) and the Isaac Lab backend
(`sim.isaaclab`) build their scenes from `objects()` / `particles()` and implement `SceneAccess`, so the
same `place`, `is_success`, `grasp` code runs on both and a seed gives the same layout in both.
Registries, the planner's vocabulary, perception's colour signatures, the panel's task list and asset
conversion read these declarations.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sage_gr00t.perceive.camera import VisualSignature
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks.scene_access import SceneAccess

SHAPES = ("box", "sphere", "cylinder", "capsule", "ellipsoid")
# What the planner may do with an object of a kind (see plan/commands.py).
ROLES = ("pickable", "receptacle", "pour_source", "pour_target", "fixture")
VARIANTS = ("train", "novel")
# Variants the shipped tasks add: scenes where only the instruction says which object goes where, and scenes
# whose objects (shape, size, colour) are drawn anew every episode, the instruction naming them.
LANGUAGE_VARIANT, PROCEDURAL_VARIANT = "language", "procedural"


@dataclass(frozen=True)
class Geom:
    """One primitive shape of an object, in the object's frame (MuJoCo size conventions: half extents,
    radius, half length)."""

    shape: str
    size: tuple[float, ...]
    rgba: tuple[float, float, float, float]
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat: tuple[float, float, float, float] | None = None  # (w, x, y, z)
    friction: tuple[float, float, float] | None = None
    visual_only: bool = False  # drawn, never collides (a stem, a plate's rim)
    name: str | None = None  # default: <object>_g<i>

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"Unknown geom shape {self.shape!r}; use one of {SHAPES}.")

    @property
    def half_height(self) -> float:
        """Half its extent along z when upright (MuJoCo sizes): how far its centre sits above what it rests on."""
        if self.shape == "sphere":
            return self.size[0]
        if self.shape == "capsule":
            return self.size[0] + self.size[1]
        return self.size[-1]  # box / ellipsoid: z half extent; cylinder: half length


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a task: its geometry, what the planner calls it, and how the camera finds it."""

    name: str  # body / scene-entity name the executor acts on ("red_block")
    geoms: tuple[Geom, ...]
    kind: str  # the planner's noun ("block", "bin", "apple")
    role: str  # one of ROLES
    color: str = ""  # the planner's colour word, "" when the kind alone names it
    movable: bool = True  # a free body; False: a setting (plate, bin, cup) the task places at reset
    mass: float | None = None  # kg, movable objects
    radius: float = 0.03  # half-width a finger meets when grasping (Isaac Lab's contact proxy)
    signature: VisualSignature | None = None  # None: the camera does not look for it
    words: tuple[str, ...] = ()  # extra nouns users may call it by (the planner's vocabulary)
    # The skill that puts things on this object when it is a target: a flat pad is slid onto ("push"), a bin or a
    # plate is placed into / onto ("pick_place"). The planner asks the target, so "put the block on the pad" pushes.
    place_skill: str = "pick_place"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"Object name {self.name!r} must be lower_snake_case (it names USD prims too).")
        if self.role not in ROLES:
            raise ValueError(f"Object {self.name}: unknown role {self.role!r}; use one of {ROLES}.")
        if not self.geoms:
            raise ValueError(f"Object {self.name} has no geoms.")
        if self.place_skill not in ("pick_place", "push"):
            raise ValueError(f"Object {self.name}: place_skill must be 'pick_place' or 'push', "
                             f"not {self.place_skill!r}.")

    @property
    def description(self) -> str:
        return f"{self.color} {self.kind}" if self.color else self.kind


@dataclass(frozen=True)
class ParticleSpec:
    """`count` small free spheres named <name><i> (a coarse liquid)."""

    name: str
    count: int
    radius: float
    rgba: tuple[float, float, float, float]
    mass: float = 0.002


@dataclass(frozen=True)
class GraspSpec:
    """How to grasp an object: ee-site height above the body origin, yaw, and hand closure."""

    height: float
    yaw: float = 0.0
    lift: float = 0.15
    close_fraction: float = 1.0


@dataclass(frozen=True)
class PourSpec:
    """How to pour: where the end effector goes relative to the target, and the tilt."""

    container_offset: tuple[float, float, float]  # ee target minus target body origin (x, y; z ignored)
    pour_height: float  # ee height above the table while pouring
    tilt_axis: tuple[float, float, float]  # world axis of the tilt
    tilt_angle: float
    tilt_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ee motion during the tilt
    tilt_steps: int = 20
    hold_steps: int = 30


@dataclass(frozen=True)
class TaskIds:
    """A task's registered names: gymnasium id for the embedded simulator and the Isaac Lab task id."""

    gym: str
    isaaclab: str

    @staticmethod
    def for_task(name: str) -> TaskIds:
        camel = "".join(p.title() for p in name.split("_"))
        return TaskIds(gym=f"SageGr00t/{camel}-v0", isaaclab=f"SageGr00t-{camel}-v0")


def sample_positions(
    rng: np.random.Generator,
    regions: list[tuple[tuple[float, float], tuple[float, float]]],
    min_distance: float,
    scale: float = 1.0,
    max_tries: int = 200,
) -> list[np.ndarray]:
    """One xy point per region ((x range), (y range)), ranges scaled about their centres, all at least
    `min_distance` apart."""
    for _ in range(max_tries):
        points = []
        for (x0, x1), (y0, y1) in regions:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            hx, hy = (x1 - x0) / 2 * scale, (y1 - y0) / 2 * scale
            points.append(np.array([rng.uniform(cx - hx, cx + hx), rng.uniform(cy - hy, cy + hy)]))
        if all(np.linalg.norm(a - b) >= min_distance for i, a in enumerate(points) for b in points[i + 1:]):
            return points
    raise RuntimeError(f"Could not place objects {min_distance} m apart in {regions}.")


def yaw_of(quat_wxyz: np.ndarray) -> float:
    w, x, y, z = quat_wxyz
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


class Task(ABC):
    """A tabletop task for one variant. Subclass it in one module and list the class under the
    `sage_gr00t.tasks` entry-point group (or pass an instance to `make_env`)."""

    name: ClassVar[str]
    example_command: ClassVar[str] = ""  # what the panel proposes to type
    variants: ClassVar[tuple[str, ...]] = VARIANTS

    def __init__(self, variant: str = "train") -> None:
        if variant not in self.variants:
            raise ValueError(f"Task {self.name}: unknown variant {variant!r}; use one of {self.variants}.")
        self.variant = variant
        self.pinned_goal: int | None = None  # see pin_goal

    def goal_choices(self) -> tuple[str, ...]:
        """The goals this variant's episodes draw from, in a fixed order (language-following scenes: which object
        goes to which target); empty when the variant has one goal."""
        return ()

    def pin_goal(self, index: int | None) -> None:
        """Give the next episodes goal `goal_choices()[index]` instead of a drawn one (None: draw again).

        A pinned goal leaves the layout unchanged: the same seed gives the same scene for every pinned goal
        (counterfactual demonstrations, where only the words tell the goals apart), the layout being drawn so
        that every goal is feasible."""
        choices = self.goal_choices()
        if index is not None and not 0 <= index < len(choices):
            raise ValueError(f"Task {self.name} ({self.variant}): goal index {index} is out of range; "
                             f"it has {len(choices)} goals {list(choices)}.")
        self.pinned_goal = index

    def with_variant(self, variant: str) -> Task:
        """This task for `variant`: itself when it already is (the env's config decides the variant)."""
        return self if variant == self.variant else type(self)(variant)

    @classmethod
    def ids(cls) -> TaskIds:
        return TaskIds.for_task(cls.name)

    # ------------------------------------------------------------------ declarations
    @abstractmethod
    def objects(self) -> tuple[ObjectSpec, ...]:
        """The task's objects, in build order (randomization draws follow this order)."""

    def particles(self) -> tuple[ParticleSpec, ...]:
        return ()

    def new_episode(self, rng: np.random.Generator) -> None:
        """Draw what this variant changes per episode before the scene is built (procedural objects); a
        simulator rebuilds its scene when `objects()` then differs. The default draws nothing and takes
        no random numbers, so a seed gives the same layout as before this hook existed."""
        del rng

    @abstractmethod
    def place(self, scene: SceneAccess, rng: np.random.Generator, pose_scale: float = 1.0) -> None:
        """Sample this episode's layout and write it through `scene` (called at every reset)."""

    @abstractmethod
    def is_success(self, scene: SceneAccess) -> bool:
        """Success predicate from simulator state."""

    @abstractmethod
    def instructions(self) -> list[str]:
        """Phrasings of the episode's goal (one is drawn per episode)."""

    @abstractmethod
    def expert_plan(self) -> list[Subtask]:
        """The subtasks a scripted expert (or SAGE's planner) executes."""

    def grasp(self, scene: SceneAccess, object_name: str) -> GraspSpec:
        return GraspSpec(height=0.0)

    def place_height(self, object_name: str, target_name: str) -> float:
        """Height above the table at which the expert releases `object_name` over `target_name`."""
        return 0.12

    def pour(self) -> PourSpec:
        raise NotImplementedError(f"Task {self.name} has no pour skill.")

    # ------------------------------------------------------------------ derived
    def object(self, name: str) -> ObjectSpec:
        for spec in self.objects():
            if spec.name == name:
                return spec
        raise KeyError(f"Task {self.name} has no object {name!r}; objects: {self.object_names()}.")

    def object_names(self) -> list[str]:
        return [o.name for o in self.objects()]

    def signatures(self) -> dict[str, VisualSignature]:
        """What perception looks for: object name -> colour signature."""
        return {o.name: o.signature for o in self.objects() if o.signature is not None}
