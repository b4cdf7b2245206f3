"""Fault injection for the camera sensor, switchable mid-episode.

Faults act where real ones do: `frozen` repeats the last good frame (a stuck driver), `dropout`
delivers nothing (or a black image), `image_noise` corrupts pixels, and `noise` perturbs the position
estimates (a miscalibrated or confused detector). A fault lasts `duration` control steps (None: to
the end of the episode).

By default only the object estimator sees the fault. With `reaches_policy` the fault is in the camera
itself, which also feeds the policy: `corrupt_observation` gives the image the policy gets this step
(the frozen image, black for a dropout, the noisy pixels), and the estimator reads that same image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sage_gr00t.modality import EGO_VIEW
from sage_gr00t.perceive.camera import CameraFrame, CameraSensor, FrameSource
from sage_gr00t.perceive.readings import CAMERA, Estimate, SensorReading

FAULT_KINDS = ("none", "noise", "image_noise", "frozen", "dropout", "black")


@dataclass
class FaultConfig:
    kind: str = "none"
    start_step: int = 0  # control step (reads + skipped steps between camera frames) from which it is active
    duration: int | None = None  # control steps it lasts; None: to the end of the episode
    reaches_policy: bool = False  # the camera itself is faulty: the policy's image is corrupted too
    noise_std: float = 0.05  # metres, per axis, on estimates ("noise")
    image_noise_std: float = 60.0  # uint8 levels, on pixels ("image_noise")
    seed: int = 0


class FaultyCamera:
    """Wraps a `CameraSensor` (and takes its place in the pipeline's camera role); `set_fault` switches
    the fault at any time."""

    role = CAMERA

    def __init__(self, camera: CameraSensor, config: FaultConfig | None = None) -> None:
        self.camera = camera
        self.name = camera.name
        self.config = config or FaultConfig()
        self._check(self.config.kind)
        self.rng = np.random.default_rng(self.config.seed)
        self.steps = 0
        self._frozen: CameraFrame | None = None
        self._frozen_image: np.ndarray | None = None

    @staticmethod
    def _check(kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind!r}; use one of {FAULT_KINDS}.")

    def set_fault(self, kind: str, **overrides: float) -> None:
        """Switch fault now (e.g. `set_fault("frozen")`, `set_fault("none")`)."""
        self._check(kind)
        self.config = replace(self.config, kind=kind, start_step=self.steps, **overrides)
        self._frozen = None
        self._frozen_image = None

    def reset(self) -> None:
        """A new episode: the fault schedule starts over from control step 0 with a fresh noise stream."""
        self.camera.reset()
        self.rng = np.random.default_rng(self.config.seed)
        self.steps = 0
        self._frozen = None
        self._frozen_image = None

    def skip(self) -> None:
        """A control step without a camera frame (the pipeline reads the camera every k-th step)."""
        self.steps += 1

    @property
    def active(self) -> bool:
        c = self.config
        over = c.duration is not None and self.steps >= c.start_step + c.duration
        return c.kind != "none" and self.steps >= c.start_step and not over

    def corrupt_observation(self, obs: dict) -> dict:
        """The observation as the policy gets it this control step (call before the step's `read`)."""
        if not (self.config.reaches_policy and self.active) or self.config.kind == "noise":
            self._frozen_image = None
            return obs
        image = obs[EGO_VIEW]
        if self.config.kind == "frozen":
            if self._frozen_image is None:
                self._frozen_image = image.copy()
            image = self._frozen_image
        elif self.config.kind in ("dropout", "black"):
            image = np.zeros_like(image)
        elif self.config.kind == "image_noise":
            noisy = image.astype(np.float32) + self.rng.normal(0, self.config.image_noise_std, image.shape)
            image = np.clip(noisy, 0, 255).astype(np.uint8)
        return {**obs, EGO_VIEW: image}

    def read(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading:
        kind = self.config.kind if self.active else "none"
        self.steps += 1
        if kind == "none":
            self._frozen = None
        if kind == "dropout":
            return self.camera.estimator.estimate(None)
        frame = self.camera.capture(env, timestamp, rgb)
        if frame is None:
            return self.camera.estimator.estimate(None)
        if kind == "frozen":
            if self._frozen is None:
                self._frozen = frame
            # The stuck stream keeps arriving with fresh timestamps but old content.
            frame = replace(self._frozen, timestamp=timestamp)
        elif kind == "black":
            frame = replace(frame, rgb=np.zeros_like(frame.rgb))
        elif kind == "image_noise" and not (self.config.reaches_policy and rgb is not None):
            # (with `reaches_policy` the observation's image passed in is already the noisy one)
            noisy = frame.rgb.astype(np.float32) + self.rng.normal(0, self.config.image_noise_std, frame.rgb.shape)
            frame = replace(frame, rgb=np.clip(noisy, 0, 255).astype(np.uint8))
        reading = self.camera.estimator.estimate(frame)
        if kind == "noise":
            reading.estimates = {
                obj: Estimate(e.position + self.rng.normal(0, self.config.noise_std, 3), e.confidence, e.timestamp)
                for obj, e in reading.estimates.items()
            }
        return reading

    def sense(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading:
        return self.read(env, timestamp, rgb)
