"""Head-camera frames over ZMQ, as Unitree's image server streams them.

Unitree's image server (on the G1's PC2) PUBlishes each frame as one ZMQ message of JPEG bytes. The
stand-in PUBlishes three-part messages instead -- topic `ego`, a msgpack header (frame number, capture time,
height, width, encoding) and the pixels -- raw RGB, so the colour classifier sees exactly what the simulator
rendered. `ImageSubscriber` reads both.
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


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    number: int
    stamp: float  # sender's clock (time.time()) at capture
    received: float  # receiver's time.monotonic() when it arrived


def decode_jpeg(data: bytes) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("image stream sent bytes that are not a JPEG frame")
    return np.ascontiguousarray(bgr[:, :, ::-1])


class ImagePublisher:
    """PUB socket bound to `endpoint` (e.g. tcp://127.0.0.1:5555)."""

    def __init__(self, endpoint: str) -> None:
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, 2)  # a slow reader gets fresh frames, not a backlog
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint)
        self._number = 0

    def publish(self, image: np.ndarray) -> None:
        image = np.ascontiguousarray(image, np.uint8)
        header = msgpack.packb({"frame": self._number, "stamp": time.time(), "height": image.shape[0],
                                "width": image.shape[1], "encoding": "rgb8"})
        self._sock.send_multipart([IMAGE_TOPIC, header, image.tobytes()], copy=False)
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
            except (ValueError, KeyError, msgpack.UnpackException):
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
        if len(parts) != 3 or parts[0] != IMAGE_TOPIC:
            raise ValueError("unknown image message layout")
        header = msgpack.unpackb(parts[1])
        h, w = int(header["height"]), int(header["width"])
        if header["encoding"] == "jpeg":
            image = decode_jpeg(parts[2])
        else:
            image = np.frombuffer(parts[2], np.uint8)
            if image.size != h * w * 3:
                raise ValueError("frame size does not match its header")
            image = image.reshape(h, w, 3)
        return Frame(image, int(header["frame"]), float(header["stamp"]), now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._sock.close()
        self._ctx.term()
