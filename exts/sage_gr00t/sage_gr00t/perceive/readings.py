"""What every sensor produces (`Estimate`, `SensorReading`) and what makes an object a sensor (`Sensor`).

A sensor is anything with a `name`, a `reset()` and a `sense(env, timestamp, rgb)` that returns this
control step's `SensorReading` (or None when it has nothing this step). `PerceptionPipeline` takes a
list of them: every reading is scored by the trust engine and fused. A few sensors also play a ROLE
in the loop, declared by a class attribute `role` (`CAMERA`, `PROPRIOCEPTION`, `MEMORY`): the
pipeline infers grasps from the proprioception sensor, writes the fused result into the memory
sensor, and reads the camera on its own schedule (`PipelineConfig.camera_every`). A sensor without
a `role` is an ordinary evidence source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# Roles a sensor may declare (`role` class attribute); at most one sensor per role in a pipeline.
CAMERA = "camera"  # read every `camera_every`-th step (`skip()` otherwise); its frames are frozen-checked
PROPRIOCEPTION = "proprioception"  # the robot's own body: motion, grasps, the authority on held objects
MEMORY = "memory"  # stores the fused result of every step
ROLES = (CAMERA, PROPRIOCEPTION, MEMORY)


@dataclass(frozen=True)
class Estimate:
    """A position estimate of one object from one sensor."""

    position: np.ndarray  # world xyz (m)
    confidence: float  # self-reported, in [0, 1]
    timestamp: float  # seconds (simulation time)


@dataclass
class SensorReading:
    """Everything one sensor delivered at one control step."""

    sensor: str
    estimates: dict[str, Estimate]
    timestamp: float
    fingerprint: str | None = None  # digest of the raw data (frozen-frame detection)
    raw_valid: bool = True  # False when the sensor delivered nothing usable (dropout, black image)


class Sensor(Protocol):
    """One evidence source of the perception loop.

    `name`: the stream's name, which the trust engine keys its scores by and fusion lists in `sources`
    (unique within a pipeline). `sense`: this control step's reading; `env` is what the robot exposes
    (camera renders, joint states; a test or a simulated sensor may also read privileged state),
    `rgb` the observation's ego image when there is one. None: nothing this step (a sensor that runs
    slower than the control loop). `reset`: forget everything from the previous episode.
    Optional: `role` (one of `ROLES`), and for the camera role `skip()` (a control step without a frame).
    """

    name: str

    def reset(self) -> None: ...

    def sense(self, env: Any, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading | None: ...
