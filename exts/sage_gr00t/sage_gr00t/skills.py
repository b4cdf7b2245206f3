"""The unit of work passed from planner to executor: a skill applied to an object and a target."""

from __future__ import annotations

from dataclasses import dataclass

SKILLS = ("pick_place", "pour", "push")


@dataclass(frozen=True)
class Subtask:
    """One step of a plan, e.g. pick_place(red_block -> red_bin) or pour(pitcher -> cup)."""

    skill: str
    object_name: str
    target_name: str
    language: str

    def __post_init__(self) -> None:
        if self.skill not in SKILLS:
            raise ValueError(f"Unknown skill {self.skill!r}; known skills: {SKILLS}.")
