"""The planner's view of the table: named objects with a kind, a colour and a position."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    def get(self, name: str) -> SceneObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"No object {name!r} in the scene (objects: {self.names()}).")

    @staticmethod
    def object_from_body(body: str, position: tuple[float, float, float] = (0.0, 0.0, 0.0),
                         variant: str = "train", task: str = "") -> SceneObject:
        """Parse a simulator body name into a SceneObject ("red_block" -> red block)."""
        parts = body.split("_")
        if len(parts) == 2 and parts[0] in COLORS:
            color, kind = parts
            if kind == "block" and variant == "novel" and task == "sort_blocks":
                kind = "cylinder"  # the novel sort_blocks variant swaps cubes for cylinders
            return SceneObject(body, kind, color, position)
        # The novel pick_apple variant renders a pear on a tray under the same body names.
        novel_names = {"apple": "pear", "plate": "tray"} if variant == "novel" and task == "pick_apple" else {}
        return SceneObject(body, novel_names.get(body, body), "", position)

    @classmethod
    def from_env(cls, env: Any) -> Scene:
        """Ground-truth scene of a TabletopTaskEnv after reset (perception will replace this)."""
        variant = getattr(getattr(env, "config", None), "variant", "train")
        task = getattr(env, "task_name", "")
        objs = []
        for body in env.object_body_names():
            pos = tuple(float(v) for v in env.body_pos(body))
            objs.append(cls.object_from_body(body, pos, variant, task))  # type: ignore[arg-type]
        return cls(tuple(objs))
