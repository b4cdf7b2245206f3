"""Episode videos: the front view with the policy's ego camera as an inset, every other control step, as mp4.

    video = EpisodeVideo()
    run_episode(env, policy, seed, on_frame=video.grab)       # any `on_frame(env, obs)` hook
    video.save(Path("outputs/eval/expert_pick_apple.mp4"))

`EpisodeVideo(caption="put the apple on the plate")` writes the command across the bottom of every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sage_gr00t.modality import EGO_VIEW


class NoVideoWriterError(RuntimeError):
    """No mp4 writer is installed: episodes can be evaluated, not filmed."""


def inset_ego(front: Any, ego: Any) -> Any:
    """`front` (H, W, 3) with `ego` pasted into its top-left corner (cropped to fit); changes `front` in place."""
    h, w = min(ego.shape[0], front.shape[0]), min(ego.shape[1], front.shape[1])
    front[:h, :w] = ego[:h, :w]
    return front


def overlay_caption(frame: Any, text: str) -> Any:
    """`frame` (H, W, 3 uint8) with `text` on a dark band along its bottom edge (PIL's built-in font, scaled
    to the frame); returns a new array."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    size = max(10, image.height // 28)
    font = ImageFont.load_default(size=size)
    band = int(size * 1.8)
    draw.rectangle((0, image.height - band, image.width, image.height), fill=(0, 0, 0))
    draw.text((size // 2, image.height - band + (band - size) // 2 - 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def capture_frame(env: Any, obs: dict) -> Any:
    """One video frame: the env's front view (`env.render()`) with the observation's ego camera as an inset."""
    return inset_ego(env.render(), obs[EGO_VIEW])


@dataclass
class EpisodeVideo:
    """Frames of one episode; `grab` is an `on_frame(env, obs)` hook for `sage_gr00t.evaluation`'s rollouts."""

    every: int = 2  # grab every k-th control step (20 Hz control -> 10 fps video)
    fps: int = 10
    enabled: bool = True  # False: grab nothing (e.g. only an evaluation's first episode is filmed)
    caption: str | None = None  # text written on every frame (the command the controller was given)
    frames: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.every < 1 or self.fps < 1:
            raise ValueError("EpisodeVideo needs every >= 1 and fps >= 1.")

    def grab(self, env: Any, obs: dict) -> None:
        if self.enabled and env.step_count % self.every == 0:
            frame = capture_frame(env, obs)
            self.frames.append(overlay_caption(frame, self.caption) if self.caption else frame)

    def save(self, path: str | Path) -> Path | None:
        """Write the frames as an mp4 (imageio's ffmpeg); returns the path, or None when nothing was grabbed."""
        if not self.frames:
            return None
        import importlib.util

        import imageio

        if importlib.util.find_spec("imageio_ffmpeg") is None:  # imageio would fall back to a TIFF writer and fail
            raise NoVideoWriterError("no mp4 writer: imageio-ffmpeg is not installed (pip install 'imageio[ffmpeg]').")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimsave(path, self.frames, fps=self.fps)
        return path
