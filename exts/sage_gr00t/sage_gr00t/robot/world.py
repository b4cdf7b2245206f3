"""The stand-in's privileged world link (tests, demos, benchmarks only; a real G1 has none).

A scripted expert reads object poses and success is judged from simulator state. On the stand-in those come
from its MuJoCo scene over ZMQ: a REP socket resets the scene to a seed, a PUB socket streams object poses,
contacts and the task's success predicate. `WorldScene` is the `SceneAccess` the backend gives the task and
the expert: it answers from the newest snapshot and refuses to move anything.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgpack
import numpy as np
import zmq

from sage_gr00t.modality import state_key

WORLD_TOPIC = b"world"


def snapshot(scene: Any, task: Any, sim_time: float, reset_count: int) -> dict:
    """What the stand-in publishes each world tick (from its MujocoScene)."""
    names = task.object_names()
    return {
        "time": sim_time, "reset": reset_count,
        "pos": {n: scene.body_pos(n).tolist() for n in names},
        "quat": {n: scene.body_quat(n).tolist() for n in names},
        "touching": {n: bool(scene.touching_robot(n)) for n in names},
        "particles": {p.name: scene.particle_positions(p.name).tolist() for p in task.particles()},
        "success": bool(task.is_success(scene)),
    }


class WorldServer:
    """Stand-in side: PUB of snapshots on `pub_endpoint`, REP for resets on `rep_endpoint` (polled)."""

    def __init__(self, pub_endpoint: str, rep_endpoint: str) -> None:
        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.bind(pub_endpoint)
        self._rep = self._ctx.socket(zmq.REP)
        self._rep.setsockopt(zmq.LINGER, 0)
        self._rep.bind(rep_endpoint)

    def publish(self, snap: dict) -> None:
        self._pub.send_multipart([WORLD_TOPIC, msgpack.packb(snap)])

    def poll_request(self) -> dict | None:
        try:
            return msgpack.unpackb(self._rep.recv(zmq.NOBLOCK))
        except zmq.Again:
            return None

    def reply(self, payload: dict) -> None:
        self._rep.send(msgpack.packb(payload))

    def close(self) -> None:
        self._pub.close()
        self._rep.close()
        self._ctx.term()


class WorldClient:
    """Backend side: newest snapshot (a thread) and `reset(seed)` requests."""

    def __init__(self, sub_endpoint: str, req_endpoint: str, timeout_s: float = 10.0) -> None:
        self._ctx = zmq.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.SUBSCRIBE, WORLD_TOPIC)
        self._sub.setsockopt(zmq.RCVTIMEO, 100)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.connect(sub_endpoint)
        self._req_endpoint, self._timeout_ms = req_endpoint, int(timeout_s * 1000)
        self._req = self._new_req()
        self._lock = threading.Lock()
        self._latest: dict | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="world-subscriber", daemon=True)
        self._thread.start()

    def _new_req(self) -> zmq.Socket:
        req = self._ctx.socket(zmq.REQ)
        req.setsockopt(zmq.RCVTIMEO, self._timeout_ms)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(self._req_endpoint)
        return req

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _, payload = self._sub.recv_multipart()
            except zmq.Again:
                continue
            except zmq.ZMQError:
                return
            with self._lock:
                self._latest = msgpack.unpackb(payload)

    @property
    def latest(self) -> dict | None:
        with self._lock:
            return self._latest

    def request(self, payload: dict) -> dict:
        self._req.send(msgpack.packb(payload))
        try:
            return msgpack.unpackb(self._req.recv())
        except zmq.Again:
            self._req.close()
            self._req = self._new_req()  # a REQ socket that lost its reply cannot send again
            raise TimeoutError(f"stand-in world server at {self._req_endpoint} did not answer "
                               f"{payload.get('op')!r} within {self._timeout_ms} ms (is sage-standin running?)"
                               ) from None

    def wait_for_reset(self, reset_count: int, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            snap = self.latest
            if snap is not None and snap["reset"] >= reset_count:
                return snap
            time.sleep(0.005)
        raise TimeoutError("no world snapshot from the stand-in after its reset")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._sub.close()
        self._req.close()
        self._ctx.term()


class WorldScene:
    """`SceneAccess` over the stand-in's newest world snapshot (read-only) and the backend's joint state."""

    def __init__(self, world: WorldClient, table_height: float, joint_state: Any) -> None:
        self._world, self._table_height, self._joint_state = world, table_height, joint_state

    @property
    def table_height(self) -> float:
        return self._table_height

    def _snap(self) -> dict:
        snap = self._world.latest
        if snap is None:
            raise RuntimeError("no world snapshot from the stand-in yet (is sage-standin running?)")
        return snap

    def body_pos(self, name: str) -> np.ndarray:
        return np.array(self._snap()["pos"][name], float)

    def body_quat(self, name: str) -> np.ndarray:
        return np.array(self._snap()["quat"][name], float)

    def set_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        raise RuntimeError("The backend cannot move objects: the stand-in places them at its reset.")

    def touching_robot(self, name: str) -> bool:
        return bool(self._snap()["touching"][name])

    def joint_state(self) -> dict[str, np.ndarray]:
        return {state_key(g): v for g, v in self._joint_state().items()}

    def particle_positions(self, name: str) -> np.ndarray:
        return np.array(self._snap()["particles"][name], float)

    @property
    def success(self) -> bool:
        return bool(self._snap()["success"])
