"""Fuzz the ZeroMQ policy server: 10,000+ random and mutated requests, then it must still serve correctly.

A real `PolicyServer` on loopback in a thread; seeded (reproducible) generators vary frame counts and
sizes, MessagePack nesting, ndarray envelopes (dtypes, shapes, lying headers, random bytes) and
valid-looking requests with bad fields. Every request small enough to be read must get exactly one
reply that decodes; a frame over ZMQ's hard limit (twice `max_message_bytes`) may go unanswered.
"""

from __future__ import annotations

import io
import logging
import time

import msgpack
import numpy as np
import pytest
import zmq
from test_remote_policy import TinyPolicy, assert_same_actions, make_obs, upstream_decode, upstream_encode

from sage_gr00t.policy.remote import PolicyServer, RemotePolicyClient

N_MESSAGES = 10_000
LIMIT = 16 * 1024  # max_message_bytes of the fuzzed server (small, so oversized cases stay cheap)
SEED = 20250611

ENDPOINTS = ["get_action", "ping", "reset", "get_modality_config", "kill", "", "nope", "get_action\0",
             5, None, b"ping", ["ping"], {"e": 1}, 1.5, True]
DTYPES = ["u1", "i1", "<u2", ">i4", "<i8", "<f2", "<f4", ">f8", "<c8", "?", "<U3", "S4", "V3", "<M8[s]", "<m8[ms]",
          [("a", "<f4"), ("b", "u1")]]


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


class Fuzzer:
    def __init__(self, seed: int, protocol: str = "n1.5") -> None:
        self.rng = np.random.default_rng(seed)
        self.protocol = protocol

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def rbytes(self, hi: int = 64) -> bytes:
        return self.rng.bytes(int(self.rng.integers(0, hi + 1)))

    def scalar(self):
        kind = int(self.rng.integers(9))
        r = self.rng
        return [None, bool(r.integers(2)), int(r.integers(-2**63, 2**63 - 1)), float(r.standard_normal() * 1e6),
                float(self.pick([np.nan, np.inf, -np.inf, 1e308, -0.0])), self.rbytes(16),
                self.rbytes(12).decode("latin-1"), int(r.integers(0, 2**64 - 1, dtype=np.uint64)),
                msgpack.ExtType(int(r.integers(0, 128)), self.rbytes(8))][kind]

    def tree(self, depth: int):
        if depth <= 0 or self.chance(0.3):
            return self.scalar()
        n = int(self.rng.integers(0, 5))
        if self.chance(0.5):
            return [self.tree(depth - 1) for _ in range(n)]
        keys = ["endpoint", "data", "api_token", "__ndarray_class__", "as_npy", "__ModalityConfig_class__",
                "as_json", "state.left_arm", "video.ego_view"]
        return {(self.pick(keys) if self.chance(0.6) else self.rbytes(6).decode("latin-1")): self.tree(depth - 1)
                for _ in range(n)}

    def array(self) -> np.ndarray:
        dtype = np.dtype(self.pick(DTYPES))
        shape = tuple(int(d) for d in self.rng.integers(0, 5, size=int(self.rng.integers(0, 4))))
        n = int(np.prod(shape)) if shape else 1
        raw = self.rng.bytes(n * dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype, count=n).reshape(shape) if n else np.zeros(shape, dtype)

    def npy_envelope(self):
        choice = int(self.rng.integers(7))
        if choice == 0:
            payload = self.rbytes(200)
        elif choice == 1:
            payload = npy(self.array())
        elif choice == 2:  # truncated or padded
            good = npy(self.array())
            payload = good[: int(self.rng.integers(0, len(good) + 1))] + (self.rbytes(16) if self.chance(0.5) else b"")
        elif choice == 3:  # a header that lies about the shape
            good = npy(np.zeros(int(self.rng.integers(1, 8)), np.float32))
            payload = good.replace(b"(", b"(" + str(int(self.rng.integers(1, 10**12))).encode() + b", ", 1)
        elif choice == 4:  # a pickle inside
            payload = npy(np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
        elif choice == 5:  # bytes flipped in a valid one
            payload = bytearray(npy(self.array()))
            for _ in range(int(self.rng.integers(1, 4))):
                payload[int(self.rng.integers(len(payload)))] = int(self.rng.integers(256))
            payload = bytes(payload)
        else:
            payload = self.scalar()
        env = {"__ndarray_class__": self.pick([True, 1, None, "x"]), "as_npy": payload}
        if self.chance(0.1):
            del env["as_npy"]
        return env

    def observation(self) -> dict:
        obs: dict = make_obs(int(self.rng.integers(1000)))
        for _ in range(int(self.rng.integers(1, 4))):
            key = self.pick(["state.left_arm", "video.ego_view", "annotation.human.task_description",
                             "state.other", "video.other", 7, b"state.left_arm", ""])
            obs[key] = self.pick([
                self.array, self.npy_envelope, self.scalar, lambda: self.tree(3),
                lambda: np.full((1, 7), self.pick([np.nan, np.inf, 1e30, -1e5, 9e3]), np.float32),
                lambda: self.rng.integers(-1000, 1000, size=(4, 4, 3)),
            ])()
        if self.chance(0.1):
            del obs["state.left_arm"]
        return obs

    def nested_data(self) -> dict:
        """An N1.6 get_action/reset data map: {observation: nested batch, options}, often damaged."""
        obs = make_obs(int(self.rng.integers(1000)))
        nested: dict = {"video": {"ego_view": obs["video.ego_view"][None, None]},
                        "state": {"left_arm": obs["state.left_arm"][None]},
                        "language": {"annotation.human.task_description": [[obs["annotation.human.task_description"]]]}}
        for _ in range(int(self.rng.integers(0, 4))):
            modality = self.pick(["video", "state", "language", "other", 3])
            key = self.pick(["ego_view", "left_arm", "task", "", 7, "video.ego_view"])
            value = self.pick([
                self.array, self.npy_envelope, self.scalar, lambda: self.tree(3),
                lambda: np.full((1, 1, 7), self.pick([np.nan, np.inf, 1e30, 9e3]), np.float32),
                lambda: np.zeros((int(self.rng.integers(0, 80)), 1, 7), np.float32),
                lambda: [[self.scalar()]], lambda: [["pick"], ["place"]],
            ])()
            if isinstance(nested.get(modality), dict) and self.chance(0.8):
                nested[modality][key] = value
            else:
                nested[modality] = value
        data: dict = {"observation": nested, "options": self.pick([None, {}, 1, "x"])}
        if self.chance(0.1):
            del data[self.pick(["observation", "options"])]
        if self.chance(0.05):
            data["extra"] = self.tree(2)
        return data

    def valid_looking_request(self) -> dict:
        request: dict = {"endpoint": self.pick(ENDPOINTS)}
        if self.chance(0.8):
            if self.protocol == "n1.6" and self.chance(0.7):
                request["data"] = self.nested_data()
            else:
                request["data"] = self.observation() if self.chance(0.8) else self.tree(4)
        if self.chance(0.3):  # the right token, but never for `kill` (which it would authorize)
            request["api_token"] = self.pick([self.scalar(), "s3cret" if request["endpoint"] != "kill" else "x", ""])
        return request

    def encode(self, obj) -> bytes:
        try:
            return upstream_encode(obj)
        except Exception:  # e.g. a key msgpack cannot pack: fall back to raw bytes
            return self.rbytes(100)

    def mutate(self, raw: bytes) -> bytes:
        data = bytearray(raw)
        for _ in range(int(self.rng.integers(1, 6))):
            op = int(self.rng.integers(4))
            pos = int(self.rng.integers(0, len(data) + 1))
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = int(self.rng.integers(256))
            elif op == 1:
                data[pos:pos] = self.rbytes(8)
            elif op == 2:
                del data[pos:pos + int(self.rng.integers(1, 32))]
            else:
                data = data[:pos]
        return bytes(data)

    def frame(self) -> bytes:
        kind = int(self.rng.integers(100))
        if kind < 10:
            return self.rbytes(int(self.pick([0, 1, 8, 512, 4096])))
        if kind < 25:
            return self.encode(self.tree(int(self.rng.integers(1, 8))))
        if kind < 30:  # deep nesting, past MessagePack's stack limit sometimes
            depth = int(self.rng.integers(500, 1500))
            return self.pick([b"\x91", b"\x81\xa1k"]) * depth + b"\xc0"
        if kind < 60:
            return self.encode(self.valid_looking_request())
        if kind < 85:
            return self.mutate(self.encode(self.valid_looking_request()))
        if kind < 90:  # over max_message_bytes, still under ZMQ's hard limit: answered with an error
            return self.encode({"endpoint": "get_action", "data": {"pad": self.rng.bytes(LIMIT + 100)}})
        if kind < 93:
            return b"PK\x03\x04" + self.rbytes(200)  # looks like the legacy torch (pickle) wire
        return self.encode([{"endpoint": self.pick(ENDPOINTS), "data": self.tree(3)} for _ in range(3)])

    def message(self) -> list[bytes]:
        if self.chance(0.85):
            return [self.frame()]
        return [self.frame() for _ in range(int(self.pick([0, 2, 3, 7])))] or [b"", b""]


class Peer:
    """A REQ socket that is replaced after a timeout (a REQ that missed its reply is stuck)."""

    def __init__(self, ctx: zmq.Context, port: int) -> None:
        self.ctx, self.port, self.sock = ctx, port, None
        self.renew()

    def renew(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{self.port}")

    def call(self, frames: list[bytes], timeout_ms: int) -> bytes | None:
        self.sock.send_multipart(frames)
        if self.sock.poll(timeout_ms, zmq.POLLIN):
            return self.sock.recv()
        self.renew()
        return None


@pytest.mark.parametrize(("token", "protocol"), [(None, "n1.5"), ("s3cret", "n1.5"), (None, "n1.6")])
def test_fuzzed_requests_never_break_the_server(token, protocol, caplog):
    n_messages = N_MESSAGES if (token, protocol) == (None, "n1.5") else N_MESSAGES // 5
    caplog.set_level(logging.ERROR, logger="sage_gr00t.policy.remote")  # its per-request warnings are expected
    policy = TinyPolicy()
    server = PolicyServer(policy, port=0, api_token=token, max_message_bytes=LIMIT, protocol=protocol)
    fuzz = Fuzzer(SEED + (token is not None) + 2 * (protocol != "n1.5"), protocol)
    ctx = zmq.Context()
    peer = Peer(ctx, server.port)
    unanswered, cut_off, kinds = [], 0, {"ok": 0, "error": 0}
    t0 = time.monotonic()
    try:
        with server.serve_in_thread() as handle:
            # A few frames over ZMQ's hard limit (2 x LIMIT): the peer is cut off, the server carries on.
            for _ in range(3):
                assert peer.call([b"\0" * (2 * LIMIT + 1)], timeout_ms=300) is None
                cut_off += 1
            for i in range(n_messages):
                frames = fuzz.message()
                too_big = max(len(f) for f in frames) > 2 * LIMIT  # ZMQ drops the peer: no reply
                reply = peer.call(frames, timeout_ms=300 if too_big else 5000)
                if reply is None:
                    if too_big:
                        cut_off += 1
                    else:
                        unanswered.append((i, [f[:40] for f in frames]))
                        assert len(unanswered) < 3 and handle.thread.is_alive(), unanswered
                    continue
                decoded = upstream_decode(reply)  # every reply decodes
                kinds["error" if isinstance(decoded, dict) and "error" in decoded else "ok"] += 1
                if isinstance(decoded, dict) and "error" in decoded:
                    assert isinstance(decoded["error"], str)
            assert not unanswered, unanswered[:5]
            assert handle.thread.is_alive(), "the fuzz stopped the server"
            # Finally a valid request is still answered correctly, by the policy's own output.
            with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=5000, api_token=token,
                                    protocol=protocol) as client:
                for seed in range(3):
                    obs = make_obs(seed)
                    assert_same_actions(client.get_action(obs), policy.get_action(obs))
    finally:
        peer.sock.close(linger=0)
        ctx.term()
    elapsed = time.monotonic() - t0
    assert kinds["ok"] > 0 and kinds["error"] > n_messages // 2 and cut_off < 20, (kinds, cut_off)
    assert not [r for r in caplog.records if r.name == "sage_gr00t.policy.remote" and r.levelno >= logging.ERROR]
    assert elapsed < 90, f"fuzzing took {elapsed:.0f} s"
