"""PolicyServer / RemotePolicyClient over real loopback sockets, and wire compatibility with upstream N1.5.

The "upstream" encoder/decoder and the minimal upstream-style server below are written from
NVIDIA/Isaac-GR00T `gr00t/eval/service.py` (msgpack + np.save envelopes, REQ/REP), independently
of `sage_gr00t.policy.remote`, so a format drift on our side fails here.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from sage_gr00t.policy.remote import (
    ModalityConfig,
    PolicyServer,
    RemotePolicyClient,
    RemotePolicyError,
    ServerThread,
)
from sage_gr00t.policy.upstream import UpstreamGr00tPolicy

HORIZON = 16


class TinyPolicy:
    """Deterministic: the action chunk is a fixed function of the state (several dtypes)."""

    def __init__(self) -> None:
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        if "state.left_arm" not in observation:
            raise ValueError("observation lacks 'state.left_arm'")
        arm = np.asarray(observation["state.left_arm"], dtype=np.float32).reshape(-1, 7)[-1]
        image = observation["video.ego_view"]
        brightness = float(image.mean()) / 255.0
        steps = np.arange(HORIZON, dtype=np.float32)[:, None]
        text = observation.get("annotation.human.task_description", "")
        return {
            "action.left_arm": arm[None, :] + 0.01 * steps + brightness,  # float32 (16, 7)
            "action.left_hand": np.tile(np.linspace(0, 1, 6), (HORIZON, 1)) * len(text),  # float64 (16, 6)
            "action.gripper": (steps.astype(np.int64) % 2).repeat(2, axis=1),  # int64 (16, 2)
        }

    def get_modality_config(self) -> dict[str, ModalityConfig]:
        return {
            "video": ModalityConfig([0], ["video.ego_view"]),
            "state": ModalityConfig([0], ["state.left_arm"]),
            "action": ModalityConfig(list(range(HORIZON)), ["action.left_arm", "action.left_hand"]),
        }


def make_obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "video.ego_view": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        "state.left_arm": rng.standard_normal((1, 7)).astype(np.float32),
        "annotation.human.task_description": "pick up the red cube",
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served():
    policy = TinyPolicy()
    handle = PolicyServer(policy, host="127.0.0.1", port=0).serve_in_thread()
    client = RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000)
    try:
        yield policy, handle, client
    finally:
        client.close()
        handle.stop()
        assert not handle.thread.is_alive()


def assert_same_actions(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert isinstance(got[k], np.ndarray), k
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v)


def test_round_trip_matches_in_process(served):
    policy, _, client = served
    assert client.ping()
    for seed in range(3):
        obs = make_obs(seed)
        assert_same_actions(client.get_action(obs), policy.get_action(obs))
    # Upstream-style (T, H, W, 3) video and (T, D) float64 state pass through untouched.
    obs = make_obs(7) | {"video.ego_view": make_obs(7)["video.ego_view"][None], "state.left_arm": np.ones((1, 7))}
    assert_same_actions(client.get_action(obs), policy.get_action(obs))
    client.reset()
    assert policy.resets == 1
    cfg = client.get_modality_config()
    assert cfg["action"] == ModalityConfig(list(range(HORIZON)), ["action.left_arm", "action.left_hand"])


def test_server_error_becomes_value_error_and_server_keeps_serving(served):
    policy, _, client = served
    with pytest.raises(ValueError, match=r"observation lacks 'state\.left_arm'") as info:
        client.get_action({"video.ego_view": np.zeros((8, 8, 3), np.uint8)})
    assert isinstance(info.value, RemotePolicyError)
    with pytest.raises(ValueError, match="Unknown endpoint: nope"):
        client.call_endpoint("nope", requires_input=False)
    obs = make_obs(1)
    assert_same_actions(client.get_action(obs), policy.get_action(obs))


def test_unreachable_server_raises_connection_error_quickly():
    port = free_port()
    client = RemotePolicyClient("127.0.0.1", port, timeout_ms=200)
    try:
        t0 = time.monotonic()
        with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port}.*sage-serve"):
            client.get_action(make_obs())
        assert time.monotonic() - t0 < 2.0
        assert client.ping() is False  # and the client stays usable (socket was replaced)
    finally:
        client.close()


def test_kill_endpoint_stops_server():
    handle = PolicyServer(TinyPolicy(), port=0, allow_remote_kill=True).serve_in_thread()
    with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000) as client:
        client.kill_server()
    handle.thread.join(3.0)
    assert not handle.thread.is_alive()
    handle.stop()


def test_api_token():
    handle = PolicyServer(TinyPolicy(), port=0, api_token="s3cret").serve_in_thread()
    try:
        with (
            RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000) as bad,
            pytest.raises(ValueError, match="Unauthorized: Invalid API token"),
        ):
            bad.get_action(make_obs())
        with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000, api_token="s3cret") as good:
            assert good.get_action(make_obs())["action.left_arm"].shape == (HORIZON, 7)
    finally:
        handle.stop()


def test_busy_port_is_a_clear_error(served):
    _, handle, _ = served
    with pytest.raises(OSError, match=f"127.0.0.1:{handle.port}"):
        PolicyServer(TinyPolicy(), port=handle.port)


# ---- upstream wire format, re-implemented here from gr00t/eval/service.py (MsgSerializer) ----


def upstream_encode(obj) -> bytes:
    def default(o):
        if isinstance(o, np.ndarray):
            buf = io.BytesIO()
            np.save(buf, o, allow_pickle=False)
            return {"__ndarray_class__": True, "as_npy": buf.getvalue()}
        return o

    return msgpack.packb(obj, default=default)


def upstream_decode(data: bytes):
    def hook(o):
        if "__ModalityConfig_class__" in o:
            fields = o["as_json"]  # N1.5: pydantic JSON text; N1.6 (server_client.py): a map, ModalityConfig(**it)
            return fields if isinstance(fields, dict) else json.loads(fields)
        if "__ndarray_class__" in o:
            return np.load(io.BytesIO(o["as_npy"]), allow_pickle=False)
        return o

    return msgpack.unpackb(data, object_hook=hook)


def upstream_call(port: int, endpoint: str, data=None, requires_input: bool = True):
    """One request exactly as upstream's BaseInferenceClient.call_endpoint builds it (REQ socket)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        request = {"endpoint": endpoint}
        if requires_input:
            request["data"] = data
        sock.send(upstream_encode(request))
        return upstream_decode(sock.recv())
    finally:
        sock.close()
        ctx.term()


def test_upstream_client_can_drive_our_server(served):
    policy, handle, _ = served
    assert upstream_call(handle.port, "ping", requires_input=False)["status"] == "ok"
    obs = make_obs(3)
    assert_same_actions(upstream_call(handle.port, "get_action", obs), policy.get_action(obs))
    cfg = upstream_call(handle.port, "get_modality_config", requires_input=False)
    assert cfg["state"] == {"delta_indices": [0], "modality_keys": ["state.left_arm"]}
    reply = upstream_call(handle.port, "get_action", {"state.left_arm": np.zeros((1, 7), np.float32)})
    assert set(reply) == {"error"} and isinstance(reply["error"], str)


class UpstreamStyleServer:
    """A REP server with upstream N1.5's semantics: no `reset` endpoint, `kill` replies nil."""

    def __init__(self, policy: TinyPolicy) -> None:
        self.policy = policy
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            while self.running:
                if not self.sock.poll(50):
                    continue
                request = upstream_decode(self.sock.recv())
                endpoint = request.get("endpoint", "get_action")
                try:
                    if endpoint == "ping":
                        result = {"status": "ok", "message": "Server is running"}
                    elif endpoint == "kill":
                        self.running, result = False, None
                    elif endpoint == "get_action":
                        result = self.policy.get_action(request.get("data", {}))
                    elif endpoint == "get_modality_config":
                        result = {
                            k: {"__ModalityConfig_class__": True, "as_json": v.model_dump_json()}
                            for k, v in self.policy.get_modality_config().items()
                        }
                    else:
                        raise ValueError(f"Unknown endpoint: {endpoint}")
                except Exception as e:
                    result = {"error": str(e)}
                self.sock.send(upstream_encode(result))
        finally:
            self.sock.close()
            self.ctx.term()

    def stop(self) -> None:
        self.running = False
        self.thread.join(3.0)


def test_our_client_drives_upstream_style_server():
    policy = TinyPolicy()
    server = UpstreamStyleServer(policy)
    try:
        with RemotePolicyClient("127.0.0.1", server.port, timeout_ms=3000) as client:
            assert client.ping()
            obs = make_obs(5)
            assert_same_actions(client.get_action(obs), policy.get_action(obs))
            client.reset()  # "Unknown endpoint: reset" from an N1.5 server is tolerated
            assert client.get_modality_config()["video"] == ModalityConfig([0], ["video.ego_view"])
            with pytest.raises(ValueError, match="observation lacks"):
                client.get_action({})
            client.kill_server()  # upstream answers nil
        server.thread.join(3.0)
        assert not server.thread.is_alive()
    finally:
        server.stop()


def test_legacy_torch_wire_is_opt_in():
    policy = TinyPolicy()
    strict: ServerThread = PolicyServer(policy, port=0).serve_in_thread()
    legacy: ServerThread = PolicyServer(policy, port=0, allow_pickle=True).serve_in_thread()
    try:
        with RemotePolicyClient("127.0.0.1", legacy.port, timeout_ms=5000, wire="torch") as client:
            obs = make_obs(2)
            assert_same_actions(client.get_action(obs), policy.get_action(obs))
        reply = PolicyServer.handle_request(strict.server, _torch_bytes({"endpoint": "ping"}))
        assert "pickle" in upstream_decode(reply)["error"]
    finally:
        strict.stop()
        legacy.stop()


def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_upstream_policy_without_gr00t_raises_clear_import_error():
    try:
        import gr00t  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("upstream gr00t is installed here")
    with pytest.raises(ImportError, match=r"n1\.5-release.*RemotePolicyClient"):
        UpstreamGr00tPolicy("/nonexistent", "new_embodiment", "unitree_g1", "cpu")


class EchoPolicy:
    def reset(self) -> None:
        pass

    def get_action(self, observation: dict) -> dict:
        return {"echo": observation}


def test_arbitrary_payloads_round_trip():
    """Any dtype/shape (incl. 0-d, empty, bool, float16, unicode), strings, lists and nested dicts."""
    payload = {
        "a": np.arange(24, dtype=np.float16).reshape(2, 3, 4),
        "b": np.array(True),
        "c": np.zeros((0, 5), np.int32),
        "d": np.array(["pick", "place"]),
        "e": np.asfortranarray(np.arange(6, dtype=np.uint16).reshape(2, 3)),
        "nested": {"text": "héllo", "list": [1, 2.5, None, "x"], "arr": np.ones((2, 2), np.complex64)},
    }
    handle = PolicyServer(EchoPolicy(), port=0).serve_in_thread()
    try:
        with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000) as client:
            got = client.get_action(payload)["echo"]
    finally:
        handle.stop()
    for k in "abcde":
        assert got[k].dtype == payload[k].dtype and got[k].shape == payload[k].shape
        np.testing.assert_array_equal(got[k], payload[k])
    assert got["nested"]["text"] == "héllo" and got["nested"]["list"] == [1, 2.5, None, "x"]
    np.testing.assert_array_equal(got["nested"]["arr"], payload["nested"]["arr"])


# ---- hardening: malformed, oversized, implausible and unauthorized requests ----


def raw_call(port: int, frames: list[bytes], timeout_ms: int = 3000):
    """Send `frames` as one request on a fresh REQ socket; the decoded reply, or None on timeout."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send_multipart(frames)
        try:
            return upstream_decode(sock.recv())
        except zmq.Again:
            return None
    finally:
        sock.close()
        ctx.term()


def test_multi_frame_request_gets_an_error_reply_and_the_server_survives():
    """Probe 1: two frames on a REQ socket used to make the reply raise EFSM and kill the serve loop."""
    policy = TinyPolicy()
    for token in (None, "s3cret"):
        handle = PolicyServer(policy, port=0, api_token=token).serve_in_thread()
        try:
            for frames in ([msgpack.packb({"endpoint": "ping"}), b"junk"], [b"", b"", b""], [b"a"] * 40):
                reply = raw_call(handle.port, frames)
                assert reply is not None and "one ZMQ frame" in reply["error"], reply
            assert handle.thread.is_alive()
            with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000, api_token=token) as client:
                obs = make_obs(4)
                assert_same_actions(client.get_action(obs), policy.get_action(obs))
        finally:
            handle.stop()


def test_handle_request_never_raises_on_odd_input():
    server = PolicyServer(TinyPolicy(), port=0)
    try:
        for raw in (b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"endpoint": 5}),
                    msgpack.packb({"endpoint": "get_action", "data": [1]}), b"\x91" * 5000 + b"\x01",
                    msgpack.packb({"endpoint": "get_action", "data": {1: 2}})):
            assert isinstance(upstream_decode(server.handle_request(raw))["error"], str)
        assert "one ZMQ frame" in upstream_decode(server.handle_frames([]))["error"]
    finally:
        server.close()


def test_oversized_requests_are_refused():
    """Probe 2: a size limit; up to twice it gets an error reply, beyond that ZMQ (MAXMSGSIZE) cuts the peer off."""
    limit = 64 * 1024
    policy = TinyPolicy()
    server = PolicyServer(policy, port=0, max_message_bytes=limit)
    assert server._socket.getsockopt(zmq.MAXMSGSIZE) == 2 * limit
    default = PolicyServer(policy, port=0)
    assert default.max_message_bytes == 32 * 1024 * 1024
    default.close()
    with server.serve_in_thread() as handle:
        big = make_obs() | {"video.ego_view": np.zeros((200, 200, 3), np.uint8)}  # 120 kB
        reply = raw_call(handle.port, [upstream_encode({"endpoint": "get_action", "data": big})])
        assert reply is not None and f"limit of {limit} bytes" in reply["error"]
        assert raw_call(handle.port, [b"\0" * (3 * limit)], timeout_ms=300) is None  # cut off, unanswered
        with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000) as client:
            obs = make_obs(6)
            assert_same_actions(client.get_action(obs), policy.get_action(obs))


class CountingPolicy(TinyPolicy):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        self.calls += 1
        return super().get_action(observation)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("state.left_arm", np.full((1, 7), 1e30, np.float32), r"'state\.left_arm' has \|value\| 1e\+30 > 10000"),
    ("state.left_arm", np.full((1, 7), np.nan, np.float32), r"'state\.left_arm' contains NaN or inf"),
    ("state.left_arm", np.full((1, 7), -np.inf), r"'state\.left_arm' contains NaN or inf"),
    ("state.left_arm", np.array(["a"] * 7), r"'state\.left_arm' must be a numeric array"),
    ("state.left_arm", np.ones((1, 7), np.complex64), r"'state\.left_arm' must be a numeric array"),
    ("video.ego_view", np.zeros((8, 8, 3), np.float32), r"'video\.ego_view' must be uint8 image data"),
    ("video.ego_view", np.full((8, 8, 3), 300, np.int16), r"'video\.ego_view' has values outside 0\.\.255"),
    ("video.ego_view", "not an image", r"'video\.ego_view' must be an image array"),
])
def test_implausible_observations_are_refused_naming_the_key(field, value, message):
    """Probe 3: 1e30 used to be accepted (only NaN was refused, by the policy)."""
    policy = CountingPolicy()
    with PolicyServer(policy, port=0).serve_in_thread() as handle, \
            RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000) as client:
        with pytest.raises(RemotePolicyError, match=message):
            client.get_action(make_obs() | {field: value})
        assert policy.calls == 0
        obs = make_obs() | {"state.left_arm": np.full((1, 7), 9999.0), "video.ego_view": np.full((4, 4, 3), 255)}
        assert_same_actions(client.get_action(obs), policy.get_action(obs))  # int64 0..255 images are fine


def test_state_limit_is_configurable():
    policy = TinyPolicy()
    with PolicyServer(policy, port=0, max_state_abs=1e31).serve_in_thread() as handle, \
            RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000) as client:
        obs = make_obs() | {"state.left_arm": np.full((1, 7), 1e30)}
        assert_same_actions(client.get_action(obs), policy.get_action(obs))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize(("as_npy", "detail"), [
    (b"garbage bytes", "no .npy magic header"),
    (_npy(np.zeros(7))[:-8], "header declares shape (7,) of float64 (56 bytes) but 48 bytes"),
    (_npy(np.zeros(7)).replace(b"(7,)", b"(10000000000,)", 1), "header declares shape (10000000000,)"),
    (_npy(np.array([{"x": 1}], dtype=object)), "holds Python objects"),
    ("a str", "'as_npy' holds a str, not bytes"),
    (b"\x93NUMPY\x09\x00" + b"\0" * 20, "unsupported .npy format version 9.0"),
])
def test_bad_array_bytes_say_what_is_wrong(served, as_npy, detail):
    """Probe 4: garbage used to be reported as "pickled data"."""
    _, handle, _ = served
    data = {"state.left_arm": {"__ndarray_class__": True, "as_npy": as_npy}}
    reply = raw_call(handle.port, [msgpack.packb({"endpoint": "get_action", "data": data})])
    assert "field message['state.left_arm'] is not valid .npy bytes" in reply["error"], reply
    assert detail in reply["error"], reply


def test_kill_needs_the_token_or_an_explicit_opt_in():
    """Probe 5: `kill` used to stop any tokenless server for anyone who could reach it."""
    handle = PolicyServer(TinyPolicy(), port=0).serve_in_thread()
    try:
        with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000) as client:
            with pytest.raises(RemotePolicyError, match="kill endpoint is disabled"):
                client.kill_server()
            assert client.ping()
        assert handle.thread.is_alive()
    finally:
        handle.stop()
    handle = PolicyServer(TinyPolicy(), port=0, api_token="s3cret").serve_in_thread()
    try:
        for request in ({"endpoint": "kill"}, {"endpoint": "kill", "api_token": b"s3cret"}):
            assert raw_call(handle.port, [msgpack.packb(request)])["error"] == "Unauthorized: Invalid API token"
        assert handle.thread.is_alive()
        with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=3000, api_token="s3cret") as client:
            client.kill_server()
        handle.thread.join(3.0)
        assert not handle.thread.is_alive()
    finally:
        handle.stop()


def test_binding_beyond_loopback_without_a_token_warns(caplog):
    for host, token, warns in (("0.0.0.0", None, True), ("0.0.0.0", "t", False), ("127.0.0.1", None, False),
                               ("localhost", None, False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="sage_gr00t.policy.remote"):
            PolicyServer(TinyPolicy(), host=host, port=0, api_token=token).close()
        assert any("beyond loopback without an api token" in r.getMessage() for r in caplog.records) == warns, host


def test_sage_serve_flags_and_busy_port(capsys):
    import tyro

    from sage_gr00t.cli import serve

    cfg = tyro.cli(serve.ServeConfig, args=["--allow-remote-kill", "--max-message-bytes", "4096",
                                            "--max-state-abs", "50"])
    assert (cfg.allow_remote_kill, cfg.max_message_bytes, cfg.max_state_abs) == (True, 4096, 50.0)
    assert not tyro.cli(serve.ServeConfig, args=[]).allow_remote_kill
    busy = PolicyServer(TinyPolicy(), port=0)
    try:
        assert serve.main(["--port", str(busy.port)]) == 2
    finally:
        busy.close()
    err = capsys.readouterr().err
    assert err.strip() == (f"sage-serve: error: cannot serve a policy on tcp://127.0.0.1:{busy.port}: "
                           "Address already in use")
