"""The ego camera as an object sensor: colour segmentation, depth back-projection, world positions.

`CameraObjectEstimator` finds the objects it is given (name -> `VisualSignature`) in the ego RGB
image and back-projects them through the depth image, camera intrinsics and pose to world xyz. It
works on rendered images only; it never reads object poses from the simulator. Pixels are
classified through an exact RGB -> colour-class lookup table (the HSV thresholds evaluated once per
distinct colour, filled lazily), and only the pixels of a wanted colour are back-projected.
`CameraSensor` is the unit that captures a frame and runs the estimator on it (what fault injection
wraps). `image_stream_reading` judges a raw image stream (the policy's own input) without estimates.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sage_gr00t.modality import EGO_CAMERA
from sage_gr00t.perceive.readings import CAMERA, Estimate, SensorReading


@dataclass(frozen=True)
class ColorRange:
    """HSV thresholds (h in [0, 1), wrapping when h_lo > h_hi)."""

    h_lo: float
    h_hi: float
    s_min: float = 0.0
    s_max: float = 1.0
    v_min: float = 0.0
    v_max: float = 1.0


@dataclass(frozen=True)
class VisualSignature:
    """How to find one object: colour, height band above the table, size, and where its origin is.

    The origin's height is `ref_z - ref_to_origin`, where `ref_z` is the median height of the
    object's top layer (`layer="top"`, e.g. a block's top face) or its bottom layer
    (`layer="bottom"`, e.g. a bin's floor): the visible faces of a solid are biased towards the
    camera, but its top (or a container's floor) is centred over the origin.
    """

    color: ColorRange
    z_range: tuple[float, float]  # height band above the table where its pixels may lie (m)
    radius: float  # cluster radius in xy (m): pixels farther from the median are rejected
    layer: str = "top"
    layer_band: float = 0.008  # thickness of the reference layer (m)
    ref_to_origin: float = 0.0
    expected_pixels: float = 60.0  # pixels in the reference layer at 224 x 224, 0.8 m depth
    container: bool = False  # bins: same-colour small objects inside are not part of it
    outer_half: float = 0.0  # containers: half the outer side (m); the centre comes from its walls


RED = ColorRange(0.955, 0.045, s_min=0.5, v_min=0.25)
BLUE = ColorRange(0.58, 0.70, s_min=0.45, v_min=0.25)
GREEN = ColorRange(0.25, 0.42, s_min=0.4, v_min=0.2)
PURPLE = ColorRange(0.72, 0.86, s_min=0.35, v_min=0.2)
WHITE = ColorRange(0.0, 1.0, s_max=0.12, v_min=0.72)
ORANGE = ColorRange(0.05, 0.12, s_min=0.5, v_min=0.3)
YELLOW = ColorRange(0.12, 0.2, s_min=0.4, v_min=0.3)
# The colour words tasks declare -> the camera's range for them (tasks build their signatures from this).
COLOR_RANGES: dict[str, ColorRange] = {"red": RED, "orange": ORANGE, "yellow": YELLOW, "green": GREEN, "blue": BLUE,
                                       "purple": PURPLE, "white": WHITE}


@dataclass
class CameraConfig:
    camera: str = EGO_CAMERA
    height: int = 224
    width: int = 224
    table_height: float = 0.78
    workspace_x: tuple[float, float] = (0.15, 0.75)  # robot-frame table region that objects can occupy
    workspace_y: tuple[float, float] = (-0.45, 0.45)
    min_pixels: float = 4.0  # at 224 x 224; fewer pixels = not detected
    wall_band: tuple[float, float] = (0.05, 0.11)  # |d|_inf from a bin's centre that counts as its walls


@dataclass
class CameraFrame:
    """What the camera delivers: RGB, depth, and the calibration valid for that frame."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres
    position: np.ndarray  # camera position, world
    rotation: np.ndarray  # world-from-camera rotation (MuJoCo: camera looks along -z, y up)
    fx: float
    fy: float
    cx: float
    cy: float
    timestamp: float


class FrameSource(Protocol):
    """Anything that can render the ego camera (TabletopTaskEnv)."""

    def render_camera(self, camera: str, height: int, width: int) -> np.ndarray: ...
    def render_depth(self, camera: str, height: int, width: int) -> np.ndarray: ...
    def camera_pose_intrinsics(
        self, camera: str, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray, float, float, float, float]: ...


def capture_frame(
    env: FrameSource, config: CameraConfig, timestamp: float, rgb: np.ndarray | None = None
) -> CameraFrame:
    """Render RGB (or reuse the observation's image) and depth plus the camera calibration."""
    h, w = config.height, config.width
    if rgb is None or rgb.shape[:2] != (h, w):
        rgb = env.render_camera(config.camera, h, w)
    depth = env.render_depth(config.camera, h, w)
    pos, rot, fx, fy, cx, cy = env.camera_pose_intrinsics(config.camera, h, w)
    return CameraFrame(rgb.copy(), depth, pos, rot, fx, fy, cx, cy, timestamp)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Vectorized RGB (uint8 or [0, 1]) -> HSV in [0, 1]."""
    x = rgb.astype(np.float32)
    if rgb.dtype == np.uint8:
        x /= 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    delta = mx - mn
    safe = np.where(delta > 1e-6, delta, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(delta > 1e-6, h / 6.0, 0.0)
    s = np.where(mx > 1e-6, delta / np.where(mx > 1e-6, mx, 1.0), 0.0)
    return np.stack([h % 1.0, s, mx], axis=-1)


def color_mask(hsv: np.ndarray, c: ColorRange) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hue = (h >= c.h_lo) & (h <= c.h_hi) if c.h_lo <= c.h_hi else (h >= c.h_lo) | (h <= c.h_hi)
    return hue & (s >= c.s_min) & (s <= c.s_max) & (v >= c.v_min) & (v <= c.v_max)


def quantile(x: np.ndarray, q: float) -> float:
    """`np.percentile(x, 100 q)` (linear interpolation) of a 1-D array by one partial sort: the
    numpy function's fixed overhead is larger than the work on the few hundred pixels of an object."""
    n = len(x)
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    part = np.partition(x, (lo, hi))
    a, b, t = float(part[lo]), float(part[hi]), pos - lo
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1.0 - t)


def median_xy(p: np.ndarray) -> np.ndarray:
    """Per-column median of the first two columns of (N, >=2) points (`np.median(p[:, :2], axis=0)`)."""
    n = len(p)
    lo, hi = (n - 1) // 2, n // 2
    part = np.partition(p[:, :2], (lo, hi), axis=0)
    return (part[lo] + part[hi]) / 2.0


def backproject(frame: CameraFrame) -> np.ndarray:
    """(H, W, 3) world points of every pixel (depth is distance along the optical axis)."""
    h, w = frame.depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    d = frame.depth
    cam = np.stack([(u - frame.cx) / frame.fx * d, -(v - frame.cy) / frame.fy * d, -d], axis=-1)
    return cam @ frame.rotation.T + frame.position


def backproject_pixels(frame: CameraFrame, index: np.ndarray) -> np.ndarray:
    """(N, 3) world points of the pixels with flat (row-major) indices `index`; same maths as `backproject`."""
    w = frame.depth.shape[1]
    d = frame.depth.ravel()[index]
    u, v = (index % w).astype(np.float32), (index // w).astype(np.float32)
    cam = np.stack([(u - frame.cx) / frame.fx * d, -(v - frame.cy) / frame.fy * d, -d], axis=-1)
    return cam @ frame.rotation.T + frame.position


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H*W,) uint32 keys r | g << 8 | b << 16."""
    key = rgb[..., 0].astype(np.uint32)
    key |= rgb[..., 1].astype(np.uint32) << 8
    key |= rgb[..., 2].astype(np.uint32) << 16
    return key.ravel()


class ColorLUT:
    """Exact RGB -> colour-class bitmask (bit i: `colors[i]`'s HSV thresholds hold) over all 2^24 colours.

    Filled lazily: a colour is converted to HSV and thresholded the first time it appears, so a
    frame costs one integer pack and one table gather once the scene's palette has been seen. The
    result is identical to `color_mask(rgb_to_hsv(rgb), c)` per pixel.
    """

    def __init__(self, colors: tuple[ColorRange, ...]) -> None:
        if len(colors) > 15:
            raise ValueError(f"ColorLUT holds at most 15 colour ranges, got {len(colors)}.")
        self.colors = colors
        dtype = np.uint8 if len(colors) <= 7 else np.uint16
        self.unknown = np.iinfo(dtype).max  # never a valid bitmask: the top bit is unused
        self.table = np.full(1 << 24, self.unknown, dtype)

    def bit(self, color: ColorRange) -> int:
        return 1 << self.colors.index(color)

    def classify(self, rgb: np.ndarray) -> np.ndarray:
        """(H*W,) bitmask per pixel of an (H, W, 3) uint8 image."""
        keys = pack_rgb(rgb)
        labels = self.table[keys]
        miss = np.flatnonzero(labels == self.unknown)
        if miss.size:
            new = np.unique(keys[miss])
            colors = np.stack([new & 255, (new >> 8) & 255, new >> 16], axis=-1).astype(np.uint8)
            hsv = rgb_to_hsv(colors)
            bits = np.zeros(len(new), self.table.dtype)
            for i, c in enumerate(self.colors):
                bits |= color_mask(hsv, c).astype(self.table.dtype) << i
            self.table[new] = bits
            labels[miss] = self.table[keys[miss]]
        return labels


_LUTS: dict[tuple[ColorRange, ...], ColorLUT] = {}


def color_lut(colors: tuple[ColorRange, ...]) -> ColorLUT:
    """Process-wide shared table per set of colour ranges (16-32 MB each, filled as colours appear)."""
    if colors not in _LUTS:
        _LUTS[colors] = ColorLUT(colors)
    return _LUTS[colors]


def frame_fingerprint(rgb: np.ndarray) -> str:
    """Cheap digest of a whole image (CRC-32 of every byte; frozen-frame detection)."""
    return f"{zlib.crc32(np.ascontiguousarray(rgb)):08x}"


DARK_LEVEL = 10  # a frame whose brightest pixel is below this is black: it carries no information
POLICY_IMAGE = "ego_image"  # the image stream the policy acts on, watched as a sensor of its own


def image_stream_reading(rgb: np.ndarray | None, timestamp: float, name: str = POLICY_IMAGE) -> SensorReading:
    """The raw health of an image stream (no estimates): its fingerprint, and whether it delivered a
    usable frame. The trust engine judges it like any sensor's stream (frozen while the robot moves,
    missing, black), so the policy's own input has a trust of its own."""
    if rgb is None:
        return SensorReading(name, {}, timestamp, None, raw_valid=False)
    return SensorReading(name, {}, timestamp, frame_fingerprint(rgb), raw_valid=bool(rgb.max() >= DARK_LEVEL))


class CameraObjectEstimator:
    """Colour segmentation + depth back-projection -> per-object world positions."""

    name = "camera"

    def __init__(self, signatures: Mapping[str, VisualSignature], config: CameraConfig | None = None) -> None:
        self.config = config or CameraConfig()
        self.signatures = dict(signatures)  # object -> how to find it; only these are looked for
        # Containers first: their walls are then removed from same-colour small objects' pixels.
        self.objects = sorted(self.signatures, key=lambda o: not self.signatures[o].container)
        colors = tuple(dict.fromkeys(self.signatures[o].color for o in self.objects))
        self.lut = color_lut(colors)
        self.bits = {o: self.lut.bit(self.signatures[o].color) for o in self.objects}
        self.wanted = int(np.bitwise_or.reduce(list(self.bits.values()))) if self.bits else 0

    def estimate(self, frame: CameraFrame | None) -> SensorReading:
        """The frame's raw health (`image_stream_reading`: missing, black, fingerprint) plus, when it is
        usable, the detections."""
        if frame is None:
            return image_stream_reading(None, float("nan"), self.name)
        reading = image_stream_reading(frame.rgb, frame.timestamp, self.name)
        if reading.raw_valid:
            reading.estimates = self.detect(frame)
        return reading

    def detect(self, frame: CameraFrame) -> dict[str, Estimate]:
        c = self.config
        # Only pixels of a wanted colour are back-projected (a few thousand of the image's 50k).
        labels = self.lut.classify(frame.rgb)
        index = np.flatnonzero(labels & self.wanted)
        pts = backproject_pixels(frame, index)
        inside = (
            (pts[:, 0] >= c.workspace_x[0]) & (pts[:, 0] <= c.workspace_x[1])
            & (pts[:, 1] >= c.workspace_y[0]) & (pts[:, 1] <= c.workspace_y[1])
            & np.isfinite(pts[:, 2])
        )
        pts, labels = pts[inside], labels[index[inside]]
        height = pts[:, 2] - c.table_height
        # Pixel-count expectations scale with image area and inverse squared depth.
        area_scale = (frame.depth.shape[0] * frame.depth.shape[1]) / (224.0 * 224.0)
        bins: list[tuple[ColorRange, np.ndarray]] = []
        out: dict[str, Estimate] = {}
        for name in self.objects:
            spec = self.signatures[name]
            mask = ((labels & self.bits[name]) != 0) & (height >= spec.z_range[0]) & (height <= spec.z_range[1])
            p = pts[mask]
            if not spec.container:
                for color, center in bins:
                    if color == spec.color:  # drop this bin's wall pixels (same colour, same height)
                        d = np.abs(p[:, :2] - center[:2]).max(axis=1)
                        p = p[(d < c.wall_band[0]) | (d > c.wall_band[1])]
            if len(p) < c.min_pixels * area_scale:
                continue
            # Robust cluster: keep points near the median, twice (rejects stray same-colour pixels).
            center = median_xy(p)
            keep = p
            for _ in range(2):
                keep = p[((p[:, :2] - center) ** 2).sum(axis=1) <= spec.radius**2]
                if len(keep) == 0:
                    break
                center = median_xy(keep)
            if len(keep) < c.min_pixels * area_scale:
                continue
            z = keep[:, 2]
            if spec.layer == "top":
                layer = keep[z >= quantile(z, 0.95) - spec.layer_band]
            else:
                layer = keep[z <= quantile(z, 0.05) + spec.layer_band]
            xy = self._container_center(keep, spec, c.table_height) if spec.container else layer[:, :2].mean(axis=0)
            ref_z = quantile(layer[:, 2], 0.5)
            position = np.array([xy[0], xy[1], ref_z - spec.ref_to_origin])
            # Confidence: enough pixels for the expected size, and compact (few rejected pixels).
            depth = float(np.linalg.norm(position - frame.position))
            expected = spec.expected_pixels * area_scale * (0.8 / max(depth, 0.1)) ** 2
            size_score = min(1.0, len(layer) / expected)
            compactness = len(keep) / len(p)
            out[name] = Estimate(position, float(np.clip(size_score * compactness, 0.0, 1.0)), frame.timestamp)
            if spec.container:
                bins.append((spec.color, position))
        return out

    @staticmethod
    def _container_center(points: np.ndarray, spec: VisualSignature, table_height: float) -> np.ndarray:
        """Centre of a square bin from its wall extents: an arm hiding one side leaves the other wall.

        Per axis: if both extreme edges are walls (tall pixels) or neither is, take the midpoint;
        otherwise measure half the outer size in from the edge that is a visible wall.
        """
        center = np.empty(2)
        tall = points[:, 2] - table_height > 0.02
        for k in range(2):
            x = points[:, k]
            lo, hi = quantile(x, 0.01), quantile(x, 0.99)
            lo_wall = bool(np.any(tall & (x < lo + 0.01)))
            hi_wall = bool(np.any(tall & (x > hi - 0.01)))
            if lo_wall and not hi_wall and hi - lo < 1.8 * spec.outer_half:
                center[k] = lo + spec.outer_half
            elif hi_wall and not lo_wall and hi - lo < 1.8 * spec.outer_half:
                center[k] = hi - spec.outer_half
            else:
                center[k] = (lo + hi) / 2
        return center



class CameraSensor:
    """Renders the ego camera (RGB + depth + calibration) and runs the object estimator on it.

    A `Sensor` in the camera role: the pipeline reads it every `camera_every`-th control step."""

    name = "camera"
    role = CAMERA

    def __init__(self, estimator: CameraObjectEstimator) -> None:
        self.estimator = estimator

    def reset(self) -> None:
        """Nothing to forget: every frame is estimated on its own."""

    def capture(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> CameraFrame | None:
        return capture_frame(env, self.estimator.config, timestamp, rgb)

    def read(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading:
        return self.estimator.estimate(self.capture(env, timestamp, rgb))

    def sense(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading:
        return self.read(env, timestamp, rgb)
