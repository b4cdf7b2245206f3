"""Serve a `Policy` over ZeroMQ, and drive a remote one, wire-compatible with upstream Isaac-GR00T N1.5.

Wire protocol (upstream `gr00t/eval/service.py` + `gr00t/eval/robot.py`, branch n1.5-release):

- ZeroMQ REQ (client) / REP (server) over TCP, default port 5555. One request, one reply.
- Request: a map `{"endpoint": str, "data": <payload>, "api_token": str}`; `data` is present only for
  endpoints that take input, `api_token` only when the client has one. A missing endpoint means
  `"get_action"`, missing data means `{}`.
- Endpoints: `ping` -> `{"status": "ok", "message": ...}`, `kill` (stops the server; here only with
  the api token, or `allow_remote_kill` when there is none),
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
- This server's limits (see `PolicyServer`): one ZMQ frame per request, `max_message_bytes`, and
  plausible `get_action` observations (`check_observation`); each breach gets an `{"error": ...}` reply.

N1.6 / N1.7 protocol (upstream `gr00t/policy/server_client.py`; `PolicyServer(protocol="n1.6")`,
`sage-serve --protocol n1.6`, `RemotePolicyClient(protocol="n1.6")`, `zmq://HOST:PORT?protocol=n1.6`):

- Same transport, request map, token, `ping` / `kill` and msgpack + `.npy` envelopes as above.
- `get_action`: data `{"observation": OBS, "options": map or None}` with a batched, nested observation
  `{"video": {cam: uint8 (B,T,H,W,3)}, "state": {group: (B,T,D)}, "language": {key: [[str] * T] * B}}`
  (bare camera / group names; the language key is upstream's, e.g. `annotation.human.task_description`).
  Reply: the 2-list `[action, info]`, `action = {group: (B, horizon, d)}` (bare group names), `info` a map.
- `reset`: data `{"options": ...}` -> an info map. `get_modality_config`: no data ->
  `{name: ModalityConfig}` with bare keys, each `{"__ModalityConfig_class__": True, "as_json": {"delta_indices":
  [...], "modality_keys": [...]}}` (a map here, where N1.5 sends a JSON string).
- Both protocols' servers answer `ping` with `{"status": "ok", "message": ..., "protocol": "n1.5"|"n1.6"}`
  here (upstream's lack the key); `RemotePolicyClient(protocol="auto")` asks that, then falls back on the
  modality keys' form (`state.x` is N1.5, `x` N1.6), then on N1.5. "n1.7" is an alias of "n1.6".
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import json
import logging
import math
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
Protocol = Literal["n1.5", "n1.6"]
PROTOCOLS = ("n1.5", "n1.6", "n1.7")  # N1.7 keeps N1.6's message layout
CLIENT_PROTOCOLS = (*PROTOCOLS, "auto")
DEFAULT_MAX_BATCH = 64
_LANGUAGE_KEY = "annotation.human.task_description"
_MODALITY_PREFIXES = ("video.", "state.", "action.")


def normalize_protocol(protocol: str | None, allow_auto: bool = False) -> str:
    """'n1.5' | 'n1.6' (| 'auto'); 'n1.7' (and 'N1.6', '1.6', 'v1.6') map to their wire layout."""
    text = str(protocol or "n1.5").strip().lower().removeprefix("v")
    text = "n" + text if text[:1].isdigit() else text
    if text == "n1.7":
        return "n1.6"
    if text in ("n1.5", "n1.6") or (allow_auto and text == "auto"):
        return text
    valid = CLIENT_PROTOCOLS if allow_auto else PROTOCOLS
    raise ValueError(f"unknown GR00T server protocol {protocol!r}; use one of {', '.join(valid)}")


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


class MessageDecodeError(ValueError):
    """A message (or a field of it) that is not what the wire format says it should be."""


def _field_path(node: tuple | None) -> str:
    """`data["state.left_arm"][0]` from the linked (parent, key) chain built by `_convert_tree`."""
    parts: list[str] = []
    while node is not None:
        node, key = node
        parts.append(f"[{key!r}]" if isinstance(key, str) else f"[{key}]")
    return "message" + "".join(reversed(parts)) if parts else "message"


def _load_npy(buf: Any) -> np.ndarray:
    """An array from `np.save` bytes, checked before anything is allocated (no pickles, no lies in the header)."""
    if not isinstance(buf, (bytes, bytearray)):
        raise ValueError(f"'as_npy' holds a {type(buf).__name__}, not bytes")
    f = io.BytesIO(buf)
    try:
        version = np.lib.format.read_magic(f)
    except ValueError:
        raise ValueError(f"no .npy magic header (starts {bytes(buf[:8])!r}, {len(buf)} bytes)") from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except ValueError as e:
        raise ValueError(f"bad .npy header: {e}") from None
    if dtype.hasobject:
        raise ValueError(f"dtype {dtype} holds Python objects (pickled data), refused")
    count = math.prod(shape)
    expected, offset = count * dtype.itemsize, f.tell()
    if len(buf) - offset != expected:
        raise ValueError(f"header declares shape {shape} of {dtype} ({expected} bytes) but {len(buf) - offset} "
                         "bytes of data follow")
    if expected == 0:
        return np.empty(shape, dtype, order="F" if fortran else "C")
    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape[::-1]).T.copy(order="F") if fortran else flat.reshape(shape).copy()


def _convert_tagged(obj: dict) -> Any:
    if _NDARRAY_TAG in obj:
        if "as_npy" not in obj:
            raise ValueError("an ndarray envelope without 'as_npy'")
        try:
            return _load_npy(obj["as_npy"])
        except ValueError as e:
            raise ValueError(f"not valid .npy bytes: {e}") from None
    try:
        fields = obj["as_json"]
        fields = fields if isinstance(fields, dict) else json.loads(fields)  # N1.6 sends a map, N1.5 JSON text
        return ModalityConfig([int(i) for i in fields.get("delta_indices", [])],
                              [str(k) for k in fields.get("modality_keys", [])])
    except Exception as e:
        raise ValueError(f"not a valid ModalityConfig (as_json): {type(e).__name__}: {e}") from None


def _convert_tree(root: Any) -> Any:
    """Replace the ndarray / ModalityConfig envelopes of an unpacked message, iteratively (any depth).

    An envelope that does not decode raises `MessageDecodeError` naming its field.
    """
    holder = [root]
    stack: list[tuple[Any, Any, tuple | None]] = [(holder, 0, None)]
    while stack:
        container, key, parent = stack.pop()
        value = container[key]
        path = (parent, key) if container is not holder else None
        if isinstance(value, dict):
            if _NDARRAY_TAG in value or _MODALITY_TAG in value:
                try:
                    container[key] = _convert_tagged(value)
                except ValueError as e:
                    raise MessageDecodeError(f"field {_field_path(path)} is {e}") from None
                continue
            stack.extend((value, k, path) for k in value)
        elif isinstance(value, list):
            stack.extend((value, i, path) for i in range(len(value)))
    return holder[0]


def _unpack(data: bytes) -> Any:
    """MessagePack bytes -> plain Python (envelopes not yet converted)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:
        raise MessageDecodeError(f"not a valid MessagePack message ({len(data)} bytes): {type(e).__name__}: {e}") \
            from None


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
    return _convert_tree(_unpack(data))


# --------------------------------------------------------------------------------------------
# Server


@dataclass
class _Endpoint:
    handler: Callable[..., Any]
    requires_input: bool = True


DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # a few 224x224 RGB frames + state, with ample room
DEFAULT_MAX_STATE_ABS = 1e4  # joint angles (rad), positions (m), gripper widths: far below this


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # "*", "0.0.0.0"-like wildcards are not addresses here; interface names neither
        return False


def check_observation(observation: Any, max_state_abs: float = DEFAULT_MAX_STATE_ABS) -> None:
    """Refuse (ValueError naming the key) what no robot sends: non-finite or implausible state, non-uint8 images."""
    if not isinstance(observation, dict):
        raise ValueError(f"get_action data must be a map of observation keys, got {type(observation).__name__}")
    for key, value in observation.items():
        if not isinstance(key, str):
            raise ValueError(f"observation keys must be strings, got {type(key).__name__} {key!r:.40}")
        if key.startswith("state."):
            try:
                arr = np.asarray(value)
            except Exception as e:
                raise ValueError(f"observation {key!r} is not an array: {type(e).__name__}") from None
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"observation {key!r} must be a numeric array, got dtype {arr.dtype}")
            if arr.size:
                f64 = arr.astype(np.float64)
                if not np.isfinite(f64).all():
                    raise ValueError(f"observation {key!r} contains NaN or inf")
                peak = float(np.abs(f64).max())
                if peak > max_state_abs:
                    raise ValueError(f"observation {key!r} has |value| {peak:.3g} > {max_state_abs:g}: not a "
                                     "plausible robot state")
        elif key.startswith("video."):
            if not isinstance(value, np.ndarray):
                raise ValueError(f"observation {key!r} must be an image array, got {type(value).__name__}")
            if value.dtype.kind not in "biu":
                raise ValueError(f"observation {key!r} must be uint8 image data, got dtype {value.dtype}")
            if value.dtype != np.uint8 and value.size and (value.min() < 0 or value.max() > 255):
                raise ValueError(f"observation {key!r} has values outside 0..255: not uint8 image data")


# --------------------------------------------------------------------------------------------
# Modality configs and the N1.6 nested observation


def _bare_key(key: str) -> str:
    for prefix in _MODALITY_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def modality_config_of(policy: Any, protocol: str = "n1.5") -> dict[str, Any]:
    """`{video|state|action|language: ModalityConfig}` for `policy`, keyed the way `protocol` spells them.

    From the policy's own `get_modality_config` where it has one (upstream's `Gr00tPolicy`; returned as is
    for N1.5), else from its checkpoint metadata (`policy.meta`: cameras, state and action groups; the
    action horizon). N1.5 keys carry the modality prefix (`state.left_arm`), N1.6 keys are bare (`left_arm`).
    Raises ValueError when the policy carries neither.
    """
    protocol = normalize_protocol(protocol)
    getter = getattr(policy, "get_modality_config", None)
    if callable(getter):
        configs = getter()
        if protocol == "n1.5":
            return configs
        configs = {name: ModalityConfig([int(i) for i in getattr(c, "delta_indices", [])],
                                        [str(k) for k in getattr(c, "modality_keys", [])])
                   for name, c in dict(configs).items()}
    else:
        meta = getattr(policy, "meta", None)
        if meta is None or not hasattr(meta, "video_keys"):
            raise ValueError(f"this server's policy ({type(policy).__name__}) carries no modality metadata")
        horizon = int(getattr(policy, "action_horizon", 16))
        configs = {
            "video": ModalityConfig([0], [f"video.{k}" for k in meta.video_keys]),
            "state": ModalityConfig([0], [f"state.{g}" for g in meta.state_groups]),
            "action": ModalityConfig(list(range(horizon)), [f"action.{g}" for g in meta.action_groups]),
            "language": ModalityConfig([0], [_LANGUAGE_KEY]),
        }
    if protocol == "n1.6":
        configs = {name: ModalityConfig(list(c.delta_indices), [_bare_key(k) for k in c.modality_keys])
                   for name, c in configs.items()}
    return configs


def protocol_from_modality_config(configs: Any) -> str:
    """'n1.5' when the video/state/action keys carry their prefix (or there are none), else 'n1.6'."""
    keys = [str(k) for name in ("video", "state", "action") if isinstance(configs, dict) and name in configs
            for k in getattr(configs[name], "modality_keys", [])]
    if not keys or any(k.startswith(_MODALITY_PREFIXES) for k in keys):
        return "n1.5"
    return "n1.6"


def nest_observation(observation: dict) -> dict:
    """A flat N1.5 observation (`video.cam` (T,H,W,3) or (H,W,3), `state.g` (T,D) or (D,), annotation str)
    -> N1.6's nested batch of one: `{video: {cam: (1,T,H,W,3)}, state: {g: (1,T,D)}, language: {key: [[str]]}}`."""
    if not isinstance(observation, dict):
        raise ValueError(f"an observation must be a map, got {type(observation).__name__}")
    nested: dict[str, dict] = {"video": {}, "state": {}, "language": {}}
    for key, value in observation.items():
        if not isinstance(key, str):
            continue
        if key.startswith("video."):
            arr = np.asarray(value)
            nested["video"][key[6:]] = (arr[None] if arr.ndim == 3 else arr)[None]
        elif key.startswith("state."):
            arr = np.asarray(value)
            nested["state"][key[6:]] = (arr[None] if arr.ndim <= 1 else arr)[None]
        elif key.startswith("annotation."):
            texts = [str(t) for t in value] if isinstance(value, (list, tuple)) else [str(value)]
            nested["language"][key] = [texts]
    return nested


def _is_texts(item: Any) -> bool:
    """One batch element's language: a non-empty list of strings (one per time step), or a bare string."""
    return isinstance(item, str) or (isinstance(item, (list, tuple)) and bool(item)
                                     and all(isinstance(x, str) for x in item))


def unnest_observation(observation: Any, max_batch: int = DEFAULT_MAX_BATCH) -> list[dict]:
    """N1.6's nested, batched observation -> one flat N1.5 observation per batch element.

    Checks the layout (ValueError naming the field): maps of string keys, video (B,T,H,W,C) and state
    (B,T,D) arrays, language `[[str]]` lists, one batch size B (1..max_batch) throughout. A language key
    that is not an `annotation.*` key (e.g. `task`) is read as `annotation.human.task_description`.
    """
    if not isinstance(observation, dict):
        raise ValueError(f"an N1.6 observation must be a map, got {type(observation).__name__}")
    unknown = [k for k in observation if k not in ("video", "state", "language")]
    if unknown:
        shown = ", ".join(f"{k!r:.40}" for k in unknown[:4])
        hint = " (flat N1.5 keys: this server speaks N1.6; start it with --protocol n1.5, or nest them)" \
            if any(isinstance(k, str) and k.startswith(("video.", "state.", "annotation.")) for k in unknown) else ""
        raise ValueError(f"an N1.6 observation holds only 'video', 'state' and 'language', got {shown}{hint}")
    sizes: dict[str, int] = {}
    flat_parts: list[tuple[str, Any, str]] = []  # (flat key, batched value, kind)
    for modality, ndim in (("video", 5), ("state", 3), ("language", 0)):
        group = observation.get(modality, {})
        if not isinstance(group, dict):
            raise ValueError(f"observation[{modality!r}] must be a map, got {type(group).__name__}")
        if modality == "video" and not group:
            raise ValueError("observation['video'] holds no camera")
        for key, value in group.items():
            where = f"observation[{modality!r}][{key!r:.40}]"
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where}: keys must be non-empty strings")
            if modality == "language":
                if not isinstance(value, (list, tuple)) or not all(_is_texts(t) for t in value):
                    raise ValueError(f"{where} must be a list (batch) of lists (time) of strings")
                flat_key = key if key.startswith("annotation.") else _LANGUAGE_KEY
            else:
                if not isinstance(value, np.ndarray):
                    raise ValueError(f"{where} must be an array, got {type(value).__name__}")
                if value.ndim != ndim:
                    layout = "(B,T,H,W,C)" if modality == "video" else "(B,T,D)"
                    raise ValueError(f"{where} must be a {layout} array, got shape {value.shape}")
                flat_key = f"{modality}.{_bare_key(key)}"
            sizes[where] = len(value)
            flat_parts.append((flat_key, value, modality))
    batch = set(sizes.values())
    if len(batch) != 1:
        shown = ", ".join(f"{w}: {n}" for w, n in list(sizes.items())[:6])
        raise ValueError(f"observation arrays disagree on the batch size ({shown})")
    size = batch.pop()
    if not 1 <= size <= max_batch:
        raise ValueError(f"observation batch size {size} is outside 1..{max_batch}")
    flats: list[dict] = [{} for _ in range(size)]
    for flat_key, value, modality in flat_parts:
        for b in range(size):
            item = value[b]
            flats[b][flat_key] = (item if isinstance(item, str) else item[0]) if modality == "language" else item
    return flats


def batch_action(chunks: list[dict]) -> dict[str, np.ndarray]:
    """Per-element `{action.g: (horizon, d)}` chunks -> N1.6's `{g: (B, horizon, d)}`."""
    keys = list(chunks[0])
    if any(list(c) != keys for c in chunks[1:]):
        raise ValueError("the policy returned different action keys for elements of one batch")
    return {_bare_key(k): np.stack([np.asarray(c[k]) for c in chunks]) for k in keys}


class PolicyServer:
    """Serve `policy` on `tcp://host:port` (ZeroMQ REP). `port=0` picks a free port (see `.port`).

    The socket is bound in the constructor (so a busy port fails here) and then used only by the
    thread running `serve_forever`.

    Hardening: every request gets exactly one reply (a malformed one an `{"error": ...}`), and no
    exception leaves the serve loop. A request must be a single ZMQ frame of at most
    `max_message_bytes`; one up to twice that is read and answered with an error, a larger frame is
    cut off by ZMQ itself (`MAXMSGSIZE`: the peer is disconnected unanswered). `get_action`
    observations are checked (`check_observation`: finite state within `max_state_abs`, uint8
    images). With `api_token` every endpoint needs it; `kill` works only with a token or with
    `allow_remote_kill=True`.

    `protocol`: "n1.5" (default: flat observation in, action map out) or "n1.6" / "n1.7" (upstream's
    N1.6 layout, see the module docstring: nested batched observation of at most `max_batch` elements,
    each checked like an N1.5 one, reply `[action, info]`). `get_modality_config` answers from the
    policy's own method or its checkpoint metadata (`modality_config_of`).
    """

    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        api_token: str | None = None,
        allow_pickle: bool = False,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        allow_remote_kill: bool = False,
        max_state_abs: float = DEFAULT_MAX_STATE_ABS,
        protocol: str = "n1.5",
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.protocol = normalize_protocol(protocol)
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = int(max_batch)
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes}")
        if not max_state_abs > 0:
            raise ValueError(f"max_state_abs must be positive, got {max_state_abs}")
        self.policy = policy
        self.host = host
        self.api_token = api_token or None
        self.allow_pickle = allow_pickle
        self.max_message_bytes = int(max_message_bytes)
        self.allow_remote_kill = allow_remote_kill
        self.max_state_abs = float(max_state_abs)
        self._stop_event = threading.Event()
        self._context = zmq.Context()
        try:
            self._socket, self.port = self._bind(port)
        except zmq.ZMQError as e:
            self._context.term()
            raise OSError(f"cannot serve a policy on tcp://{host}:{port}: {zmq.strerror(e.errno)}") from e
        if self.api_token is None and not _is_loopback(host):
            log.warning("policy server %s binds beyond loopback without an api token: anyone who can reach it "
                        "can drive the policy (set api_token / --api-token)", self.address)
        self._endpoints: dict[str, _Endpoint] = {}
        self.register_endpoint("ping", self._ping, requires_input=False)
        self.register_endpoint("kill", self._kill, requires_input=False)
        self._modality_config: Any = None
        if self.protocol == "n1.6":
            self.register_endpoint("get_action", self._get_action_n16)
            self.register_endpoint("reset", self._reset_n16)
        else:
            self.register_endpoint("get_action", self._get_action)
            self.register_endpoint("reset", self._reset, requires_input=False)
        self.register_endpoint("get_modality_config", self._get_modality_config, requires_input=False)

    def _bind(self, port: int) -> tuple[zmq.Socket, int]:
        sock = self._context.socket(zmq.REP)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
            if port == 0:
                return sock, sock.bind_to_random_port(f"tcp://{self.host}")
            sock.bind(f"tcp://{self.host}:{port}")
            return sock, port
        except BaseException:
            sock.close(linger=0)
            raise

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def register_endpoint(self, name: str, handler: Callable[..., Any], requires_input: bool = True) -> None:
        self._endpoints[name] = _Endpoint(handler, requires_input)

    # Built-in endpoints
    def _ping(self) -> dict:
        return {"status": "ok", "message": "Server is running", "protocol": self.protocol}

    def _kill(self) -> dict:
        if self.api_token is None and not self.allow_remote_kill:  # with a token, it was checked already
            raise PermissionError("the kill endpoint is disabled on this server (start it with an api token, "
                                  "or allow_remote_kill=True / --allow-remote-kill)")
        self._stop_event.set()
        return {"status": "ok", "message": "Server is shutting down"}

    def _reset(self) -> dict:
        self.policy.reset()
        return {"status": "ok"}

    def _get_action(self, observation: Any) -> Any:
        if isinstance(observation, dict) and isinstance(observation.get("observation"), dict):
            raise ValueError("this is an N1.6-style request ({'observation': ..., 'options': ...}) but this server "
                             "speaks N1.5 (flat observation keys); start it with --protocol n1.6, or send the "
                             "flat observation as data")
        check_observation(observation, self.max_state_abs)
        return self.policy.get_action(observation)

    def _get_action_n16(self, data: Any) -> list:
        if not isinstance(data, dict) or "observation" not in data:
            flat = isinstance(data, dict) and any(isinstance(k, str) and k.startswith(("video.", "state."))
                                                   for k in data)
            hint = (" (these are flat N1.5 observation keys: this server speaks N1.6; start it with "
                    "--protocol n1.5, or send {'observation': nested, 'options': None})") if flat else ""
            got = f"keys {sorted(map(str, data))[:6]}" if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"N1.6 get_action data must be {{'observation': ..., 'options': ...}}, got {got}{hint}")
        extra = [k for k in data if k not in ("observation", "options")]
        if extra:
            raise ValueError(f"N1.6 get_action data takes 'observation' and 'options' only, got {extra[:4]!r:.80}")
        options = data.get("options")
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"get_action 'options' must be a map or None, got {type(options).__name__}")
        flats = unnest_observation(data["observation"], self.max_batch)
        for flat in flats:
            check_observation(flat, self.max_state_abs)
        chunks = [self.policy.get_action(flat) for flat in flats]
        if not chunks or not all(isinstance(c, dict) and c for c in chunks):
            raise ValueError("the policy returned no action map")
        return [batch_action(chunks), {}]

    def _reset_n16(self, data: Any) -> dict:
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"N1.6 reset data must be {{'options': ...}}, got {type(data).__name__}")
        options = (data or {}).get("options")
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"reset 'options' must be a map or None, got {type(options).__name__}")
        self.policy.reset()
        return {}

    def _get_modality_config(self) -> Any:
        if self._modality_config is None:
            configs = modality_config_of(self.policy, self.protocol)
            if self.protocol == "n1.6":  # N1.6 sends as_json as a map (upstream's to_json_serializable)
                configs = {name: {_MODALITY_TAG: True, "as_json": {"delta_indices": list(c.delta_indices),
                                                                     "modality_keys": list(c.modality_keys)}}
                           for name, c in configs.items()}
            self._modality_config = configs
        return self._modality_config

    def _authorized(self, request: dict) -> bool:
        if self.api_token is None:
            return True
        token = request.get("api_token")
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.api_token.encode())

    def handle_frames(self, frames: list[bytes] | list[zmq.Frame]) -> bytes:
        """Reply bytes for one request's ZMQ frames (never raises; a request is one frame)."""
        try:
            if len(frames) == 1:
                return self.handle_request(frames[0].bytes if isinstance(frames[0], zmq.Frame) else frames[0])
            sizes = ", ".join(str(len(f)) for f in frames[:8]) + (", ..." if len(frames) > 8 else "")
            log.warning("policy server %s: refused a request of %d frames", self.address, len(frames))
            return encode_message({"error": f"a request must be one ZMQ frame, got {len(frames)} "
                                            f"(sizes {sizes}); send it with send(), not send_multipart()"})
        except Exception as e:  # defensive: handle_request itself never raises
            log.error("policy server %s: internal error: %s", self.address, e)
            return msgpack.packb({"error": f"internal server error: {type(e).__name__}"})

    def handle_request(self, raw: bytes) -> bytes:
        """Reply bytes for one request's bytes (never raises: failures become `{"error": ...}`)."""
        raw = bytes(raw)
        wire: Wire = "torch" if raw[:4] == _ZIP_MAGIC and self.allow_pickle else "msgpack"
        try:
            if len(raw) > self.max_message_bytes:
                raise ValueError(f"request of {len(raw)} bytes exceeds this server's limit of "
                                 f"{self.max_message_bytes} bytes (max_message_bytes / --max-message-bytes)")
            if wire == "torch" or raw[:4] == _ZIP_MAGIC:
                request = decode_message(raw, allow_pickle=self.allow_pickle)
            else:
                request = _unpack(raw)  # envelopes are decoded only after the token check
            if not isinstance(request, dict):
                raise ValueError(f"a request must be a map, got {type(request).__name__}")
            if not self._authorized(request):
                reply: Any = {"error": "Unauthorized: Invalid API token"}
            else:
                endpoint = request.get("endpoint", "get_action")
                if not isinstance(endpoint, str) or endpoint not in self._endpoints:
                    shown = endpoint[:80] if isinstance(endpoint, str) else \
                        f"{type(endpoint).__name__} {endpoint!r:.60}"
                    raise ValueError(f"Unknown endpoint: {shown}")
                ep = self._endpoints[endpoint]
                if ep.requires_input:
                    data = request.get("data", {})
                    reply = ep.handler(data if wire == "torch" else _convert_tree(data))
                else:
                    reply = ep.handler()
        except MessageDecodeError as e:
            log.warning("policy server %s: undecodable request: %s", self.address, e)
            reply = {"error": f"{type(e).__name__}: {e}"}
        except (ValueError, TypeError, KeyError, PermissionError) as e:  # a bad request, or one the policy refused
            log.warning("policy server %s: request failed: %s: %s", self.address, type(e).__name__, e)
            reply = {"error": f"{type(e).__name__}: {e}"}
        except Exception as e:
            log.warning("policy server %s: request failed\n%s", self.address, traceback.format_exc(limit=4))
            reply = {"error": f"{type(e).__name__}: {e}"}
        try:
            return encode_message(reply, wire)
        except Exception as e:  # e.g. the policy returned something unencodable
            log.warning("policy server %s: cannot encode reply: %s", self.address, e)
            return encode_message({"error": f"server could not encode its reply: {type(e).__name__}: {e}"}, wire)

    def serve_forever(self, poll_ms: int = 50) -> None:
        """Answer requests until `stop()` or a `kill` request; then close the socket.

        One reply per request, always; a failure of the socket itself is logged and the socket re-bound.
        """
        log.info("policy server listening on %s", self.address)
        try:
            while not self._stop_event.is_set():
                try:
                    if not self._socket.poll(poll_ms, zmq.POLLIN):
                        continue
                    frames = self._socket.recv_multipart(copy=False)  # no copies of extra frames
                    self._socket.send(self.handle_frames(frames))
                except zmq.ZMQError as e:
                    if e.errno == zmq.ETERM or self._stop_event.is_set():
                        break
                    log.error("policy server %s: socket error (%s); re-binding", self.address, e)
                    self._rebind()
                except Exception:  # never leave the loop on one request
                    log.exception("policy server %s: unexpected error", self.address)
        finally:
            self._close_socket()

    def _rebind(self) -> None:
        self._socket.close(linger=0)
        for _ in range(50):
            try:
                self._socket, _port = self._bind(self.port)
                return
            except zmq.ZMQError:
                if self._stop_event.wait(0.1):
                    break
        raise OSError(f"policy server {self.address}: cannot re-bind its socket")

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
    `protocol`: "n1.5" (default), "n1.6" / "n1.7" (upstream's N1.6 message layout: `get_action` nests the
    flat observation into a batch of one and unnests the `(action, info)` reply, so callers see the same
    `Policy` either way), or "auto" (asked of the server at the first call, see `detect_protocol`).
    Calls from several threads are serialised (one REQ socket).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        timeout_ms: int = 15000,
        api_token: str | None = None,
        wire: Wire = "msgpack",
        protocol: str = "n1.5",
    ) -> None:
        if wire not in ("msgpack", "torch"):
            raise ValueError(f"wire must be 'msgpack' or 'torch', got {wire!r}")
        requested = normalize_protocol(protocol, allow_auto=True)
        if wire == "torch" and requested != "n1.5":
            raise ValueError("wire='torch' (the pre-Sep-2025 encoding) exists only for the N1.5 protocol")
        self.requested_protocol = requested
        self._protocol: str | None = None if requested == "auto" else requested
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

    @property
    def protocol(self) -> str:
        """The message layout spoken: "n1.5" or "n1.6" (with protocol="auto", detected at first use)."""
        if self._protocol is None:
            self._protocol = self.detect_protocol()
        return self._protocol

    def detect_protocol(self) -> str:
        """Ask the server: our `ping` names its protocol; else the modality keys' form tells; else "n1.5".

        Raises ConnectionError when nothing answers.
        """
        try:
            reply = self.call_endpoint("ping", requires_input=False)
        except RemotePolicyError:
            reply = None
        if isinstance(reply, dict) and reply.get("protocol") in ("n1.5", "n1.6"):
            return str(reply["protocol"])
        try:
            configs = self.call_endpoint("get_modality_config", requires_input=False)
        except RemotePolicyError:  # e.g. an N1.5 server whose policy has no modality config
            return "n1.5"
        return protocol_from_modality_config(configs)

    # Policy protocol
    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        if self.protocol == "n1.5":
            return self.call_endpoint("get_action", observation)
        action, _info = self.get_action_n16(nest_observation(observation))
        flat = {}
        for key, value in action.items():
            if not isinstance(value, np.ndarray) or value.ndim < 2 or len(value) != 1:
                shown = value.shape if isinstance(value, np.ndarray) else type(value).__name__
                raise RemotePolicyError(self.address, f"N1.6 reply action[{key!r:.40}] is not a batch of one "
                                                      f"chunk (got {shown})")
            flat[key if str(key).startswith("action.") else f"action.{key}"] = value[0]
        return flat

    def get_action_n16(self, observation: dict, options: dict | None = None) -> tuple[dict, dict]:
        """N1.6's own call: nested batched observation (+ options) -> `(action {g: (B,T,d)}, info)`."""
        reply = self.call_endpoint("get_action", {"observation": observation, "options": options})
        if not (isinstance(reply, (list, tuple)) and len(reply) == 2 and isinstance(reply[0], dict)):
            raise RemotePolicyError(self.address, f"expected an N1.6 (action, info) reply, got a "
                                                  f"{type(reply).__name__} (is the server speaking N1.5?)")
        info = reply[1] if isinstance(reply[1], dict) else {}
        return reply[0], info

    def reset(self) -> None:
        try:
            if self.protocol == "n1.6":
                self.call_endpoint("reset", {"options": None})
            else:
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
