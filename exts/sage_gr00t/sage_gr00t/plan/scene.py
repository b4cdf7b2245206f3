"""The planner's view of the table: named objects with a kind, a colour and a position."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sage_gr00t.tasks.protocols import TaskEnv
    from sage_gr00t.tasks.spec import ObjectSpec, Task

# Kinds whose simulator body name carries a colour prefix ("red_block", "blue_bin").
COLORED_KINDS = ("block", "cylinder", "bin")
COLORS = ("red", "blue", "green", "yellow", "purple", "orange")


@dataclass(frozen=True)
class SceneObject:
    """One object on the table. `name` is the simulator body name the executor acts on."""

    name: str
    kind: str
    color: str = ""
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    role: str = ""  # what a skill may do with it (tasks.spec.ROLES); "" -> judged by its kind
    place_skill: str = "pick_place"  # how things are put on it as a target (ObjectSpec.place_skill)

    @staticmethod
    def from_spec(spec: ObjectSpec, position: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> SceneObject:
        """The planner's view of a task-declared object (its kind, colour and role come from the task)."""
        return SceneObject(spec.name, spec.kind, spec.color, position, spec.role, spec.place_skill)

    @property
    def description(self) -> str:
        """Human words for the object ("red block", "apple"): what plans and messages say."""
        return f"{self.color} {self.kind}" if self.color else self.kind


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [o.name for o in self.objects]
        if len(set(names)) != len(names):
            raise ValueError(f"Scene object names must be unique, got {names}.")

    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def to_dict(self) -> dict:
        """JSON-ready (memory stores the scene a command was planned in)."""
        return {"objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(tuple(SceneObject(**{**o, "position": tuple(o["position"])}) for o in data["objects"]))

    def get(self, name: str) -> SceneObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"No object {name!r} in the scene (objects: {self.names()}).")

    @classmethod
    def from_task(cls, task: Task, positions: dict[str, tuple[float, float, float]]) -> Scene:
        """The declared objects at `positions` (perceived or true), in the task's order; unplaced ones left out."""
        return cls(tuple(SceneObject.from_spec(o, positions[o.name]) for o in task.objects() if o.name in positions))

    @classmethod
    def from_env(cls, env: TaskEnv) -> Scene:
        """Ground-truth scene of a task env after reset (perception replaces this in the bridge)."""
        return cls.from_task(env.task, {n: tuple(float(v) for v in env.body_pos(n)) for n in env.object_names()})
