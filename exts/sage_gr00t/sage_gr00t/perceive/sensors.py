"""Sensors that turn raw observations into object/robot estimates with a self-reported confidence.

- `CameraObjectEstimator`: colour segmentation of the ego RGB image, back-projection through the
  depth image, camera intrinsics and pose to world xyz. Works on rendered images only; it never
  reads object poses from the simulator. Pixels are classified through an exact RGB -> colour-class
  lookup table (the HSV thresholds evaluated once per distinct colour, filled lazily), and only the
  pixels of a wanted colour are back-projected.
- `ProprioceptionSensor`: joint positions (the robot's own joint sensors) and end-effector
  positions by forward kinematics; also tracks a grasped object from the hand it is held in.
- `MemorySensor`: the last fused estimate of each object, confidence decaying with its age.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


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


# ---------------------------------------------------------------------------------------------
# Camera
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
class ObjectSpec:
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


def _block(color: ColorRange) -> ObjectSpec:
    # A 4.4 cm cube: its upper part stands above the bin floor/table, top face 2.2 cm above the origin.
    return ObjectSpec(color, z_range=(0.014, 0.30), radius=0.035, ref_to_origin=0.022, expected_pixels=40.0)


def _bin(color: ColorRange) -> ObjectSpec:
    # Floor top 6 mm above the bin origin (which sits on the table); walls 4 cm high.
    return ObjectSpec(color, z_range=(-0.01, 0.045), radius=0.11, layer="bottom", ref_to_origin=0.006,
                      expected_pixels=500.0, container=True, outer_half=0.082)


@dataclass
class ColorTable:
    """Object name -> how the camera finds it (configurable per scene)."""

    objects: dict[str, ObjectSpec] = field(
        default_factory=lambda: {
            "red_block": _block(RED),
            "blue_block": _block(BLUE),
            "green_block": _block(GREEN),
            "purple_block": _block(PURPLE),
            "red_bin": _bin(RED),
            "blue_bin": _bin(BLUE),
            # 3.3 cm sphere: top 3.3 cm above the origin; the brown stem fails the red threshold.
            "apple": ObjectSpec(RED, z_range=(0.01, 0.30), radius=0.05, ref_to_origin=0.027, layer_band=0.012,
                                expected_pixels=45.0),
            # Plate top 1.2 cm above the table; white robot links are far above this band.
            "plate": ObjectSpec(WHITE, z_range=(0.004, 0.02), radius=0.11, ref_to_origin=0.012,
                                layer_band=0.01, expected_pixels=500.0),
        }
    )


@dataclass
class CameraConfig:
    camera: str = "ego_view"
    height: int = 224
    width: int = 224
    table_height: float = 0.78
    workspace_x: tuple[float, float] = (0.15, 0.75)  # robot-frame table region that objects can occupy
    workspace_y: tuple[float, float] = (-0.45, 0.45)
    min_pixels: float = 4.0  # at 224 x 224; fewer pixels = not detected
    wall_band: tuple[float, float] = (0.05, 0.11)  # |d|_inf from a bin's centre that counts as its walls
    colors: ColorTable = field(default_factory=ColorTable)


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

    def __init__(self, objects: list[str], config: CameraConfig | None = None) -> None:
        self.config = config or CameraConfig()
        unknown = [o for o in objects if o not in self.config.colors.objects]
        if unknown:
            raise ValueError(f"No colour spec for {unknown}; add them to ColorTable.objects.")
        # Containers first: their walls are then removed from same-colour small objects' pixels.
        self.objects = sorted(objects, key=lambda o: not self.config.colors.objects[o].container)
        colors = tuple(dict.fromkeys(self.config.colors.objects[o].color for o in self.objects))
        self.lut = color_lut(colors)
        self.bits = {o: self.lut.bit(self.config.colors.objects[o].color) for o in self.objects}
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
            spec = c.colors.objects[name]
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
    def _container_center(points: np.ndarray, spec: ObjectSpec, table_height: float) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# Proprioception
class RobotStateSource(Protocol):
    def state(self) -> dict[str, np.ndarray]: ...
    def ee_pos(self, side: str) -> np.ndarray: ...


@dataclass
class ProprioConfig:
    confidence: float = 0.95
    hand_open: float = 0.052  # finger joint opening when open (sage_humanoid)
    hand_closed: float = 0.0
    grasp_closure: float = 0.35  # closure fraction above which the hand holds whatever is between its fingers
    release_closure: float = 0.2
    grasp_radius: float = 0.05  # an object this close to the ee when the hand closes is taken as grasped
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # held object origin minus ee site
    table_height: float = 0.78
    rest_heights: dict[str, float] = field(  # origin height above the support after a release (m)
        default_factory=lambda: {"apple": 0.033, "default": 0.022}
    )
    support_offset: float = 0.006  # bins and plates lift released objects by their floor thickness


@dataclass
class ProprioReading:
    joints: dict[str, np.ndarray]
    ee: dict[str, np.ndarray]
    closure: dict[str, float]
    timestamp: float


class ProprioceptionSensor:
    """Joint state (high confidence) and the position of an object held in a hand.

    A grasp is inferred from proprioception alone: the hand closes while an object's (fused)
    estimate is within `grasp_radius` of that hand's end effector. The held object then moves with
    the end effector (offset fixed at grasp); on release it is predicted to rest below the hand.
    """

    name = "proprioception"

    def __init__(self, config: ProprioConfig | None = None) -> None:
        self.config = config or ProprioConfig()
        self.held: dict[str, tuple[str, np.ndarray]] = {}  # side -> (object, offset object - ee)
        self.released: dict[str, Estimate] = {}  # object -> predicted resting position
        self.last: ProprioReading | None = None

    def reset(self) -> None:
        self.held.clear()
        self.released.clear()
        self.last = None

    def read(self, robot: RobotStateSource, timestamp: float) -> ProprioReading:
        c = self.config
        joints = {k: np.array(v, float) for k, v in robot.state().items()}
        ee = {side: np.array(robot.ee_pos(side), float) for side in ("left", "right")}
        closure = {}
        span = c.hand_open - c.hand_closed
        for side in ("left", "right"):
            q = joints.get(f"state.{side}_hand")
            if q is None:
                closure[side] = 0.0
                continue
            fingers = q.tolist()
            closure[side] = min(max(sum((c.hand_open - x) / span for x in fingers) / len(fingers), 0.0), 1.0)
        self.last = ProprioReading(joints, ee, closure, timestamp)
        return self.last

    def motion(self, previous: ProprioReading | None, current: ProprioReading) -> float:
        """Largest joint change since the previous reading (rad): is the robot moving?"""
        if previous is None:
            return 0.0
        return max(float(np.abs(current.joints[k] - previous.joints[k]).max()) for k in current.joints)

    def update_grasps(
        self, reading: ProprioReading, fused: dict[str, Estimate]
    ) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
        """Track grasps and releases; returns (grasped, released) as (object, confirmed position)."""
        c = self.config
        grasped, released = [], []
        for side in ("left", "right"):
            closure, ee = reading.closure[side], reading.ee[side]
            if side in self.held and closure < c.release_closure:
                obj, offset = self.held.pop(side)
                rest = c.rest_heights.get(obj, c.rest_heights["default"])
                # Released objects fall onto whatever is below: a bin/plate floor or the table.
                pos = np.array([*(ee + offset)[:2], c.table_height + c.support_offset + rest])
                self.released[obj] = Estimate(pos, c.confidence, reading.timestamp)
                released.append((obj, pos))
            elif side not in self.held and closure > c.grasp_closure:
                held_objects = {o for o, _ in self.held.values()}
                hand = ee.tolist()
                distances = ((math.dist(e.position.tolist(), hand), o)
                             for o, e in fused.items() if o not in held_objects)
                candidates = [(d, o) for d, o in distances if d < c.grasp_radius]
                if candidates:
                    # The closed hand, not the (possibly corrupted) belief, says where the object is.
                    _, obj = min(candidates)
                    self.held[side] = (obj, np.asarray(c.grasp_offset, float))
                    self.released.pop(obj, None)
                    grasped.append((obj, ee + np.asarray(c.grasp_offset, float)))
        return grasped, released

    def estimate(self, reading: ProprioReading) -> SensorReading:
        """Object estimates that follow from the robot's own body: held objects."""
        est = {
            obj: Estimate(reading.ee[side] + offset, self.config.confidence, reading.timestamp)
            for side, (obj, offset) in self.held.items()
        }
        fingerprint = hashlib.blake2b(
            b"".join(v.tobytes() for v in reading.joints.values()), digest_size=16
        ).hexdigest()
        return SensorReading(self.name, est, reading.timestamp, fingerprint)


# ---------------------------------------------------------------------------------------------
# Memory
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


# ---------------------------------------------------------------------------------------------
# Camera as a sensor (capture + estimate), the unit that fault injection wraps
class CameraSensor:
    """Renders the ego camera (RGB + depth + calibration) and runs the object estimator on it."""

    name = "camera"

    def __init__(self, estimator: CameraObjectEstimator) -> None:
        self.estimator = estimator

    def capture(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> CameraFrame | None:
        return capture_frame(env, self.estimator.config, timestamp, rgb)

    def read(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> SensorReading:
        return self.estimator.estimate(self.capture(env, timestamp, rgb))
