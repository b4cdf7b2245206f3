"""Compound shapes made of primitives (primitives render fast and collide cheaply in both simulators)."""

from __future__ import annotations

import numpy as np

from sage_gr00t.tasks.spec import Geom

RGBA = tuple[float, float, float, float]


def ring_walls(radius: float, height: float, thickness: float, segments: int, rgba: RGBA, prefix: str,
               z0: float = 0.0, friction: tuple[float, float, float] | None = None) -> tuple[Geom, ...]:
    """Box segments forming a round open container wall."""
    seg_len = 2 * radius * np.tan(np.pi / segments) + thickness
    geoms = []
    for i in range(segments):
        angle = 2 * np.pi * i / segments
        # Rotation about z by `angle`, (w, x, y, z).
        quat = (float(np.cos(angle / 2)), 0.0, 0.0, float(np.sin(angle / 2)))
        geoms.append(Geom(
            "box", (thickness / 2, seg_len / 2, height / 2), rgba,
            pos=(float((radius + thickness / 2) * np.cos(angle)), float((radius + thickness / 2) * np.sin(angle)),
                 z0 + height / 2),
            quat=quat, friction=friction, name=f"{prefix}_wall{i}",
        ))
    return tuple(geoms)


def open_box(inner_half: float, wall_height: float, thickness: float, rgba: RGBA) -> tuple[Geom, ...]:
    """A square bin: a floor plate and four walls, origin on the floor's underside."""
    a, t, wh = inner_half, thickness, wall_height
    return (
        Geom("box", (a + 2 * t, a + 2 * t, 0.003), rgba, pos=(0, 0, 0.003)),
        Geom("box", (t, a + 2 * t, wh / 2), rgba, pos=(a + t, 0, wh / 2)),
        Geom("box", (t, a + 2 * t, wh / 2), rgba, pos=(-a - t, 0, wh / 2)),
        Geom("box", (a, t, wh / 2), rgba, pos=(0, a + t, wh / 2)),
        Geom("box", (a, t, wh / 2), rgba, pos=(0, -a - t, wh / 2)),
    )
