"""The planner's vocabulary: which kinds each skill may use, and the nouns users call them by.

The base vocabulary (below: blocks, bins, fruit, plates, pitchers, cups ...) is extended by
what installed tasks declare (`ObjectSpec.kind`, `.role`, `.words`), so a task package that brings a new
object also teaches the command generator (and so the trained planner) its name and what can be done with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sage_gr00t.tasks.spec import ObjectSpec

# The base vocabulary: the kinds the shipped planner was trained on, by what each skill may do with them.
PICKABLE = ("block", "cylinder", "apple", "banana", "pear")
RECEPTACLES = ("bin", "bowl", "plate", "tray")
POUR_SOURCES = ("pitcher",)
POUR_TARGETS = ("cup", "bowl")
BASE_KINDS = frozenset((*PICKABLE, *RECEPTACLES, *POUR_SOURCES, *POUR_TARGETS))
KIND_WORDS = {
    "block": ["block", "cube", "brick"], "cylinder": ["cylinder"], "bin": ["bin", "box", "basket", "container"],
    "apple": ["apple"], "banana": ["banana"], "pear": ["pear"], "plate": ["plate", "dish"], "tray": ["tray"],
    "bowl": ["bowl"], "pitcher": ["pitcher", "jug"], "cup": ["cup", "glass", "mug"],
}
ROLE_FIELDS = {"pickable": "pickable", "receptacle": "receptacles", "pour_source": "pour_sources",
               "pour_target": "pour_targets"}


@dataclass(frozen=True)
class Vocabulary:
    pickable: tuple[str, ...]
    receptacles: tuple[str, ...]
    pour_sources: tuple[str, ...]
    pour_targets: tuple[str, ...]
    words: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @staticmethod
    def base() -> Vocabulary:
        words = {k: tuple(v) for k, v in KIND_WORDS.items()}
        return Vocabulary(PICKABLE, RECEPTACLES, POUR_SOURCES, POUR_TARGETS, words)

    def kinds(self) -> tuple[str, ...]:
        seen = (*self.pickable, *self.receptacles, *self.pour_sources, *self.pour_targets)
        return tuple(dict.fromkeys(seen))

    def kind_words(self, kind: str) -> list[str]:
        return list(self.words.get(kind, (kind,)))

    def extended(self, objects: Iterable[ObjectSpec]) -> Vocabulary:
        """This vocabulary plus the kinds, roles and nouns of declared objects (new entries go last, so the
        base vocabulary's order, and the data generated from it, stay as they were)."""
        roles = {f: list(getattr(self, f)) for f in ROLE_FIELDS.values()}
        words = {k: list(v) for k, v in self.words.items()}
        for obj in objects:
            role_field = ROLE_FIELDS.get(obj.role)
            # A pickable kind declared as a place target (stack_blocks' base block) stays pickable only: that
            # role belongs to the one object in its scene (grounding reads it there), not to every block.
            as_target_only = role_field == "receptacles" and obj.kind in roles["pickable"]
            if role_field and obj.kind not in roles[role_field] and not as_target_only:
                roles[role_field].append(obj.kind)
            nouns = words.setdefault(obj.kind, [obj.kind])
            nouns += [w for w in obj.words if w not in nouns]
        return Vocabulary(**{f: tuple(v) for f, v in roles.items()}, words={k: tuple(v) for k, v in words.items()})


def task_vocabulary() -> Vocabulary:
    """The base vocabulary extended by every installed task, all of its variants."""
    from sage_gr00t.tasks import get_task, task_names

    objects = [o for name in task_names() for variant in get_task(name).variants
               for o in get_task(name)(variant).objects()]
    return Vocabulary.base().extended(objects)
