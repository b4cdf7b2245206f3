"""Memory as a sensor: the last fused estimate of each object, its confidence decaying with age.

(`sage_gr00t.perceive.memory`, not the experience store `sage_gr00t.memory`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sage_gr00t.perceive.readings import MEMORY, Estimate, SensorReading


@dataclass
class MemoryConfig:
    initial_confidence: float = 0.9
    half_life: float = 10.0  # seconds: static tabletop objects rarely move unobserved


class MemorySensor:
    """The last fused estimate per object; its confidence halves every `half_life` seconds of age.

    Age counts from the last time fresh evidence (a non-memory sensor) supported the estimate, so
    re-storing the memory's own output does not make it look fresh.
    """

    name = "memory"
    role = MEMORY

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        self.store: dict[str, tuple[np.ndarray, float]] = {}  # object -> (position, time of evidence)

    def reset(self) -> None:
        self.store.clear()

    def update(self, fused: dict[str, Estimate], fresh: dict[str, bool], timestamp: float) -> None:
        for obj, est in fused.items():
            stamp = timestamp if fresh.get(obj, False) else self.store.get(obj, (None, timestamp))[1]
            self.store[obj] = (est.position.copy(), stamp)

    def estimate(self, timestamp: float) -> SensorReading:
        c = self.config
        est = {
            obj: Estimate(pos.copy(), c.initial_confidence * 0.5 ** ((timestamp - t) / c.half_life), timestamp)
            for obj, (pos, t) in self.store.items()
        }
        return SensorReading(self.name, est, timestamp)

    def sense(self, env: Any, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading:
        return self.estimate(timestamp)
