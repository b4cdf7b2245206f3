"""Serve a `Policy` over ZeroMQ, and drive a remote one, wire-compatible with upstream Isaac-GR00T N1.5.

Wire protocol (upstream `gr00t/eval/service.py` + `gr00t/eval/robot.py`, branch n1.5-release):

- ZeroMQ REQ (client) / REP (server) over TCP, default port 5555. One request, one reply.
- Request: a map `{"endpoint": str, "data": <payload>, "api_token": str}`; `data` is present only for
  endpoints that take input, `api_token` only when the client has one. A missing endpoint means
  `"get_action"`, missing data means `{}`.
- Endpoints: `ping` -> `{"status": "ok", "message": ...}`, `kill` (stops the server),
  `get_action` (data = observation dict -> action dict), `get_modality_config` (no data ->
  `{name: ModalityConfig}`). This server adds `reset` (no data); upstream N1.5 servers lack it,
  and `RemotePolicyClient.reset` tolerates that (N1.5's `Gr00tPolicy` keeps no episode state).
- Errors: the reply is `{"error": "<message>"}` (also for an unknown endpoint or a bad token:
  `"Unauthorized: Invalid API token"`); upstream's client raises `RuntimeError`, ours `ValueError`.
- Encoding (since upstream PR #329/#365, Aug-Sep 2025): MessagePack (`use_bin_type`, str keys);
  a numpy array travels as the map `{"__ndarray_class__": True, "as_npy": <bytes of np.save(...,
  allow_pickle=False)>}`, a `ModalityConfig` as `{"__ModalityConfig_class__": True, "as_json":
  <its pydantic JSON: {"delta_indices": [...], "modality_keys": [...]}>}`.
- Legacy encoding (N1.5 checkouts before Sep 2025): `torch.save` of the same request/reply dicts
  (a pickle inside a zip). Unpickling network input runs arbitrary code, so this server only
  accepts it with `allow_pickle=True`, and the client only speaks it with `wire="torch"`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack
import numpy as np
import zmq

from sage_gr00t.policy.base import Policy

log = logging.getLogger(__name__)

DEFAULT_PORT = 5555
_NDARRAY_TAG = "__ndarray_class__"
_MODALITY_TAG = "__ModalityConfig_class__"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container: the legacy (pickle) encoding

Wire = Literal["msgpack", "torch"]


@dataclass
class ModalityConfig:
    """Client-side stand-in for upstream's pydantic `gr00t.data.dataset.ModalityConfig`."""

    delta_indices: list[int] = field(default_factory=list)
    modality_keys: list[str] = field(default_factory=list)

    def model_dump_json(self) -> str:  # the same method name upstream's encoder calls
        return json.dumps({"delta_indices": list(self.delta_indices), "modality_keys": list(self.modality_keys)})


# --------------------------------------------------------------------------------------------
# Encoding


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)  # object arrays are refused, like upstream
    return buf.getvalue()


def _msgpack_default(obj: Any) -> Any:
    """Hook for what MessagePack cannot encode itself."""
    if isinstance(obj, np.ndarray):
        return {_NDARRAY_TAG: True, "as_npy": _npy_bytes(obj)}
    if isinstance(obj, np.generic):  # numpy scalar -> 0-d array (upstream decodes it as one too)
        return {_NDARRAY_TAG: True, "as_npy": _npy_bytes(np.asarray(obj))}
    if hasattr(obj, "model_dump_json") and hasattr(obj, "modality_keys"):  # upstream's or ours
        return {_MODALITY_TAG: True, "as_json": obj.model_dump_json()}
    if hasattr(obj, "__array__"):  # e.g. a CPU torch tensor
        return {_NDARRAY_TAG: True, "as_npy": _npy_bytes(np.asarray(obj))}
    raise TypeError(f"cannot send a {type(obj).__name__} to a GR00T policy server/client")


def _msgpack_object_hook(obj: dict) -> Any:
    if _NDARRAY_TAG in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    if _MODALITY_TAG in obj:
        fields = json.loads(obj["as_json"])
        return ModalityConfig(list(fields.get("delta_indices", [])), list(fields.get("modality_keys", [])))
    return obj


def encode_message(obj: Any, wire: Wire = "msgpack") -> bytes:
    """Bytes for one request or reply, as upstream N1.5 encodes it."""
    if wire == "torch":
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()
    return msgpack.packb(obj, default=_msgpack_default, use_bin_type=True)


def decode_message(data: bytes, allow_pickle: bool = False) -> Any:
    """Inverse of `encode_message`; the legacy torch/pickle form only with `allow_pickle`."""
    if data[:4] == _ZIP_MAGIC:
        if not allow_pickle:
            raise ValueError(
                "received a torch.save (pickle) message, the encoding of Isaac-GR00T before Sep 2025; "
                "refused because unpickling network input can run arbitrary code (pass allow_pickle=True / "
                "--allow-pickle only on a trusted network, or update the peer to the msgpack encoding)"
            )
        import torch

        return torch.load(io.BytesIO(data), weights_only=False)
    return msgpack.unpackb(data, object_hook=_msgpack_object_hook, raw=False, strict_map_key=False)


# --------------------------------------------------------------------------------------------
# Server


@dataclass
class _Endpoint:
    handler: Callable[..., Any]
    requires_input: bool = True


class PolicyServer:
    """Serve `policy` on `tcp://host:port` (ZeroMQ REP). `port=0` picks a free port (see `.port`).

    The socket is bound in the constructor (so a busy port fails here) and then used only by the
    thread running `serve_forever`.
    """

    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        api_token: str | None = None,
        allow_pickle: bool = False,
    ) -> None:
        self.policy = policy
        self.host = host
        self.api_token = api_token
        self.allow_pickle = allow_pickle
        self._stop_event = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            if port == 0:
                self.port = self._socket.bind_to_random_port(f"tcp://{host}")
            else:
                self._socket.bind(f"tcp://{host}:{port}")
                self.port = port
        except zmq.ZMQError as e:
            self._close_socket()
            raise OSError(f"cannot serve a policy on tcp://{host}:{port}: {e}") from e
        self._endpoints: dict[str, _Endpoint] = {}
        self.register_endpoint("ping", self._ping, requires_input=False)
        self.register_endpoint("kill", self._kill, requires_input=False)
        self.register_endpoint("get_action", policy.get_action)
        self.register_endpoint("reset", self._reset, requires_input=False)
        if callable(getattr(policy, "get_modality_config", None)):
            self.register_endpoint("get_modality_config", policy.get_modality_config, requires_input=False)

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def register_endpoint(self, name: str, handler: Callable[..., Any], requires_input: bool = True) -> None:
        self._endpoints[name] = _Endpoint(handler, requires_input)

    # Built-in endpoints
    def _ping(self) -> dict:
        return {"status": "ok", "message": "Server is running"}

    def _kill(self) -> dict:
        self._stop_event.set()
        return {"status": "ok", "message": "Server is shutting down"}

    def _reset(self) -> dict:
        self.policy.reset()
        return {"status": "ok"}

    def handle_request(self, raw: bytes) -> bytes:
        """Reply bytes for one request's bytes (never raises: failures become `{"error": ...}`)."""
        wire: Wire = "torch" if raw[:4] == _ZIP_MAGIC and self.allow_pickle else "msgpack"
        try:
            request = decode_message(raw, allow_pickle=self.allow_pickle)
            if not isinstance(request, dict):
                raise ValueError(f"a request must be a map, got {type(request).__name__}")
            if self.api_token is not None and request.get("api_token") != self.api_token:
                reply: Any = {"error": "Unauthorized: Invalid API token"}
            else:
                endpoint = request.get("endpoint", "get_action")
                if endpoint not in self._endpoints:
                    raise ValueError(f"Unknown endpoint: {endpoint}")
                ep = self._endpoints[endpoint]
                reply = ep.handler(request.get("data", {})) if ep.requires_input else ep.handler()
        except Exception as e:
            log.warning("policy server %s: request failed\n%s", self.address, traceback.format_exc())
            reply = {"error": f"{type(e).__name__}: {e}"}
        try:
            return encode_message(reply, wire)
        except Exception as e:  # e.g. the policy returned something unencodable
            log.warning("policy server %s: cannot encode reply: %s", self.address, e)
            return encode_message({"error": f"server could not encode its reply: {type(e).__name__}: {e}"}, wire)

    def serve_forever(self, poll_ms: int = 50) -> None:
        """Answer requests until `stop()` or a `kill` request; then close the socket."""
        log.info("policy server listening on %s", self.address)
        try:
            while not self._stop_event.is_set():
                if not self._socket.poll(poll_ms, zmq.POLLIN):
                    continue
                raw = self._socket.recv()
                self._socket.send(self.handle_request(raw))
        finally:
            self._close_socket()

    def serve_in_thread(self) -> ServerThread:
        """Serve from a daemon thread; the returned handle's `stop()` shuts it down."""
        return ServerThread(self)

    def stop(self) -> None:
        self._stop_event.set()

    def close(self) -> None:
        """Release the socket of a server that is not serving (a serving one closes on `stop()`)."""
        self._stop_event.set()
        self._close_socket()

    def _close_socket(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
        if not self._context.closed:
            self._context.term()


class ServerThread:
    """A `PolicyServer` running in a daemon thread; a context manager that stops it on exit."""

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name=f"PolicyServer:{server.port}", daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, timeout: float = 5.0) -> None:
        self.server.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError(f"policy server thread on {self.server.address} did not stop within {timeout} s")

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Client


class RemotePolicyError(ValueError):
    """The server answered with an error (e.g. a bad observation); `.server_message` is its text."""

    def __init__(self, address: str, server_message: str) -> None:
        super().__init__(f"policy server {address} error: {server_message}")
        self.address = address
        self.server_message = server_message


class RemotePolicyClient:
    """The `Policy` protocol over the wire: talks to `PolicyServer` or upstream's N1.5 inference service.

    `wire="torch"` speaks the pre-Sep-2025 upstream encoding (pickle; trusted networks only).
    Calls from several threads are serialised (one REQ socket).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        timeout_ms: int = 15000,
        api_token: str | None = None,
        wire: Wire = "msgpack",
    ) -> None:
        if wire not in ("msgpack", "torch"):
            raise ValueError(f"wire must be 'msgpack' or 'torch', got {wire!r}")
        self.host, self.port, self.timeout_ms = host, port, timeout_ms
        self.api_token, self.wire = api_token, wire
        self._lock = threading.Lock()
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = None
        self._open_socket()

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _open_socket(self) -> None:
        sock = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        sock.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        sock.connect(self.address)
        self._socket = sock

    def call_endpoint(self, endpoint: str, data: Any = None, requires_input: bool = True) -> Any:
        """Send one request and return the decoded reply; raises `RemotePolicyError` on `{"error": ...}`."""
        request: dict[str, Any] = {"endpoint": endpoint}
        if requires_input:
            request["data"] = data
        if self.api_token:
            request["api_token"] = self.api_token
        payload = encode_message(request, self.wire)
        with self._lock:
            if self._socket is None:
                raise ConnectionError(f"RemotePolicyClient for {self.address} is closed")
            try:
                self._socket.send(payload)
                raw = self._socket.recv()
            except zmq.Again as e:
                # A REQ socket that missed its reply is stuck: replace it before the next call.
                self._socket.close(linger=0)
                self._open_socket()
                raise ConnectionError(
                    f"no reply from a GR00T policy server at {self.address} within {self.timeout_ms} ms "
                    f"(endpoint {endpoint!r}). Start one with `sage-serve --policy "
                    f"<checkpoint> --host <bind address> --port {self.port}` (or upstream Isaac-GR00T's "
                    f"`python scripts/inference_service.py --server --port {self.port}`), check host/port and "
                    "firewalls, or raise timeout_ms if the model is slow."
                ) from e
        reply = decode_message(raw, allow_pickle=self.wire == "torch")
        if isinstance(reply, dict) and "error" in reply:
            raise RemotePolicyError(self.address, str(reply["error"]))
        return reply

    # Policy protocol
    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        return self.call_endpoint("get_action", observation)

    def reset(self) -> None:
        try:
            self.call_endpoint("reset", requires_input=False)
        except RemotePolicyError as e:
            if "Unknown endpoint" not in e.server_message:  # upstream N1.5 servers have no reset
                raise

    # Extras
    def ping(self) -> bool:
        """True when a server answers within the timeout (like upstream's client, never raises)."""
        try:
            self.call_endpoint("ping", requires_input=False)
            return True
        except (ConnectionError, RemotePolicyError):
            return False

    def get_modality_config(self) -> dict[str, ModalityConfig]:
        return self.call_endpoint("get_modality_config", requires_input=False)

    def kill_server(self) -> None:
        reply = self.call_endpoint("kill", requires_input=False)  # upstream servers answer None
        del reply

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close(linger=0)
                self._socket = None
            if not self._context.closed:
                self._context.term()

    def __enter__(self) -> RemotePolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn zmq down
            self.close()
