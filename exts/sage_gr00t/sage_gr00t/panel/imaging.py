"""Image helpers of the SAGE panel: PNG / JPEG encoding, thumbnails, and releasing MuJoCo's EGL context."""

from __future__ import annotations

import io
import os

import numpy as np


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR))


def release_gl_context() -> None:
    """Unbind this thread's current EGL context (MuJoCo's offscreen renderers bind one per thread), so the
    next render may come from another thread: the panel builds the env in one thread and ticks it in another."""
    if os.environ.get("MUJOCO_GL", "").lower() != "egl":
        return
    try:
        from OpenGL import EGL

        display = EGL.eglGetCurrentDisplay()
        if display and display != EGL.EGL_NO_DISPLAY:
            EGL.eglMakeCurrent(display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
    except Exception:  # no EGL here: nothing is bound
        return
