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
    handle = PolicyServer(TinyPolicy(), port=0).serve_in_thread()
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
            return json.loads(o["as_json"])  # upstream builds its pydantic ModalityConfig from this
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
