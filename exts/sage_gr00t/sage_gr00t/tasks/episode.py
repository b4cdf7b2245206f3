"""What tasks draw per episode: procedural objects (shape, size, colour, and the words that name them) and,
in language-following scenes, which object the instruction names and where it must go.

Shared by every task so the colour words and shape nouns the instructions use are spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sage_gr00t.tasks.scene_access import SceneAccess

# Colour words and their RGB: what procedural objects are painted with and how instructions call them.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.08),
    "orange": (0.95, 0.5, 0.08),
    "yellow": (0.92, 0.85, 0.12),
    "green": (0.1, 0.7, 0.2),
    "blue": (0.1, 0.25, 0.85),
    "purple": (0.55, 0.2, 0.7),
    "pink": (0.95, 0.45, 0.7),
    "white": (0.92, 0.92, 0.9),
    "brown": (0.5, 0.3, 0.12),
    "cyan": (0.1, 0.75, 0.8),
}

# What an instruction calls a primitive shape (MuJoCo geom types).
SHAPE_NOUNS: dict[str, tuple[str, ...]] = {
    "box": ("block", "cube", "box"),
    "sphere": ("ball", "sphere"),
    "cylinder": ("cylinder", "can"),
    "capsule": ("capsule", "pill"),
    "ellipsoid": ("egg", "ellipsoid"),
}

DISPLACED_TOLERANCE = 0.03  # m an object may move in the plane before it counts as displaced


def rgba(color: str, rng: np.random.Generator | None = None, jitter: float = 0.0) -> tuple[float, float, float, float]:
    """The palette colour `color`, optionally jittered per channel (a shade of it, still called by its name)."""
    base = np.asarray(PALETTE[color])
    if rng is not None and jitter > 0:
        base = np.clip(base + rng.uniform(-jitter, jitter, 3), 0.0, 1.0)
    return (*(float(c) for c in base), 1.0)


def pick_color(rng: np.random.Generator, exclude: tuple[str, ...] = ()) -> str:
    names = [c for c in PALETTE if c not in exclude]
    return names[int(rng.integers(len(names)))]


@dataclass
class DisplacementCheck:
    """Where the objects an instruction did not name stood when the episode began; `displaced` says
    whether any has since moved (the language-following metric's "displaced nothing else")."""

    names: tuple[str, ...] = ()
    start: dict[str, np.ndarray] = field(default_factory=dict)

    def arm(self, names: tuple[str, ...]) -> None:
        """Watch `names` from the next `displaced` call on (positions are taken then: after settling)."""
        self.names, self.start = names, {}

    def displaced(self, scene: SceneAccess) -> bool:
        if not self.start:
            self.start = {n: scene.body_pos(n)[:2].copy() for n in self.names}
        return any(np.linalg.norm(scene.body_pos(n)[:2] - p) > DISPLACED_TOLERANCE for n, p in self.start.items())
