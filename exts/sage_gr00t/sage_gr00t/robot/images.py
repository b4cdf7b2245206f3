"""Head-camera frames over ZMQ, as Unitree's image server streams them.

Unitree's image server (on the G1's PC2) PUBlishes each frame as one ZMQ message of JPEG bytes: colour only.
The stand-in PUBlishes multipart messages instead -- topic `ego`, a msgpack header (frame number, capture time,
height, width, encoding) and the pixels, raw RGB so the colour classifier sees exactly what the simulator
rendered -- and, as a fourth part, the depth image of the same render (SAGE's camera perception back-projects
through it), as a RealSense D435i delivers it: 16-bit units of `depth_scale` metres (1 mm), 0 = no depth.
The header then also names the depth's encoding (`16UC1`: raw little-endian uint16, `png16`: a 16-bit PNG) and
may carry the colour camera's pinhole intrinsics at the frame's size (`intrinsics`: fx, fy, cx, cy in pixels).
The stand-in's header also carries its scene-reset count (`reset`), so a frame of the scene before a reset is
never taken for the new one.
`ImageSubscriber` reads all three layouts: JPEG colour only, colour (3 parts), colour + depth (4 parts).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import msgpack
import numpy as np
import zmq

IMAGE_TOPIC = b"ego"
JPEG_MAGIC = b"\xff\xd8"
DEPTH_ENCODINGS = {"raw": "16UC1", "png": "png16"}  # publisher option -> the header's depth_encoding
DEPTH_SCALE = 0.001  # metres per depth unit (a RealSense's default: 1 mm)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    number: int
    stamp: float  # sender's clock (time.time()) at capture
    received: float  # receiver's time.monotonic() when it arrived
    depth: np.ndarray | None = None  # (H, W) float32 metres along the optical axis, NaN = no depth; None: colour only
    intrinsics: tuple[float, float, float, float] | None = None  # (fx, fy, cx, cy) at (H, W), if the stream sent them
    reset: int | None = None  # the stand-in's scene-reset count at capture (None from a real image server)


def decode_jpeg(data: bytes) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("image stream sent bytes that are not a JPEG frame")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def encode_depth(depth: np.ndarray, encoding: str = "raw", scale: float = DEPTH_SCALE) -> bytes:
    """(H, W) metres -> 16-bit units of `scale` m; non-finite, non-positive or out-of-range depth -> 0 (no depth)."""
    units = np.asarray(depth, np.float64) / scale
    valid = np.isfinite(units) & (units >= 0.5) & (units < 65535.5)
    packed = np.zeros(units.shape, "<u2")
    packed[valid] = np.rint(units[valid])
    if encoding == "raw":
        return packed.tobytes()
    import cv2

    ok, png = cv2.imencode(".png", packed)
    if not ok:
        raise ValueError("could not PNG-encode the depth image")
    return png.tobytes()


def decode_depth(data: bytes, encoding: str, height: int, width: int, scale: float) -> np.ndarray:
    """The inverse of `encode_depth`: (H, W) float32 metres, NaN where the sensor gave no depth (0)."""
    if encoding == "16UC1":
        units = np.frombuffer(data, "<u2")
        if units.size != height * width:
            raise ValueError("depth size does not match its header")
        units = units.reshape(height, width)
    elif encoding == "png16":
        import cv2

        units = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if units is None or units.dtype != np.uint16 or units.shape != (height, width):
            raise ValueError("depth part is not a 16-bit PNG of the frame's size")
    else:
        raise ValueError(f"unknown depth encoding {encoding!r}")
    metres = units.astype(np.float32) * np.float32(scale)
    metres[units == 0] = np.nan
    return metres


class ImagePublisher:
    """PUB socket bound to `endpoint` (e.g. tcp://127.0.0.1:5555)."""

    def __init__(self, endpoint: str, depth_encoding: str = "raw") -> None:
        if depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth encoding must be one of {sorted(DEPTH_ENCODINGS)}, got {depth_encoding!r}")
        self._depth_encoding = depth_encoding
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, 2)  # a slow reader gets fresh frames, not a backlog
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint)
        self._number = 0

    def publish(self, image: np.ndarray, depth: np.ndarray | None = None,
                intrinsics: tuple[float, float, float, float] | None = None, reset: int | None = None) -> None:
        """One frame: colour (3 parts), or colour + the depth of the same render (4 parts); `intrinsics` (fx, fy,
        cx, cy of the frame's size) and `reset` (the scene-reset count of what it shows) go in the header."""
        image = np.ascontiguousarray(image, np.uint8)
        header: dict = {"frame": self._number, "stamp": time.time(), "height": image.shape[0],
                        "width": image.shape[1], "encoding": "rgb8"}
        if intrinsics is not None:
            header["intrinsics"] = [float(x) for x in intrinsics]
        if reset is not None:
            header["reset"] = int(reset)
        parts = [IMAGE_TOPIC, b"", image.tobytes()]
        if depth is not None:
            if depth.shape != image.shape[:2]:
                raise ValueError(f"depth {depth.shape} and colour {image.shape[:2]} differ in size")
            header["depth_encoding"] = DEPTH_ENCODINGS[self._depth_encoding]
            header["depth_scale"] = DEPTH_SCALE
            parts.append(encode_depth(depth, self._depth_encoding))
        parts[1] = msgpack.packb(header)
        self._sock.send_multipart(parts, copy=False)
        self._number += 1

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()


class ImageSubscriber:
    """SUB socket connected to the image server; a thread keeps the newest frame."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, 2)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")  # Unitree's frames carry no topic
        self._sock.setsockopt(zmq.RCVTIMEO, 100)
        self._sock.connect(endpoint)
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="image-subscriber", daemon=True)
        self._thread.start()

    @property
    def latest(self) -> Frame | None:
        with self._lock:
            return self._latest

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            try:
                parts = self._sock.recv_multipart()
            except zmq.Again:
                continue
            except zmq.ZMQError:
                return
            try:
                frame = self._decode(parts, count)
            except (ValueError, KeyError, TypeError, msgpack.UnpackException):
                self.errors += 1
                continue
            count += 1
            with self._lock:
                self._latest = frame

    @staticmethod
    def _decode(parts: list[bytes], count: int) -> Frame:
        now = time.monotonic()
        if len(parts) == 1 and parts[0][:2] == JPEG_MAGIC:  # Unitree's image server
            return Frame(decode_jpeg(parts[0]), count, time.time(), now)
        if len(parts) not in (3, 4) or parts[0] != IMAGE_TOPIC:
            raise ValueError("unknown image message layout")
        header = msgpack.unpackb(parts[1])
        h, w = int(header["height"]), int(header["width"])
        if header["encoding"] == "jpeg":
            image = decode_jpeg(parts[2])
            if image.shape[:2] != (h, w):
                raise ValueError("JPEG frame size does not match its header")
        else:
            image = np.frombuffer(parts[2], np.uint8)
            if image.size != h * w * 3:
                raise ValueError("frame size does not match its header")
            image = image.reshape(h, w, 3)
        depth = None
        if len(parts) == 4:
            depth = decode_depth(parts[3], str(header["depth_encoding"]), h, w,
                                 float(header.get("depth_scale", DEPTH_SCALE)))
        raw_k = header.get("intrinsics")
        intrinsics = None
        if raw_k is not None:
            if len(raw_k) != 4 or not all(np.isfinite(raw_k)) or raw_k[0] <= 0 or raw_k[1] <= 0:
                raise ValueError("intrinsics must be four finite numbers fx, fy (> 0), cx, cy")
            intrinsics = (float(raw_k[0]), float(raw_k[1]), float(raw_k[2]), float(raw_k[3]))
        reset = header.get("reset")
        return Frame(image, int(header["frame"]), float(header["stamp"]), now, depth, intrinsics,
                     None if reset is None else int(reset))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._sock.close()
        self._ctx.term()
