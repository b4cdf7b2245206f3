"""Both GR00T server protocols over real loopback ZMQ sockets, with the shipped checkpoint behind the server.

N1.5 (upstream `gr00t/eval/service.py`, `scripts/inference_service.py --client`): flat observation in,
action map out, `get_modality_config` first. N1.6 / N1.7 (upstream `gr00t/policy/server_client.py`):
`{"observation": nested batch, "options": ...}` in, `[action, info]` out, plus `reset`. The raw
"stock client" messages below are encoded and decoded here, independently of `sage_gr00t.policy.remote`.
"""

from __future__ import annotations

import io
import json
import re

import msgpack
import numpy as np
import pytest
import zmq

from sage_gr00t.policy.factory import PolicySpec, PolicySpecError, make_policy
from sage_gr00t.policy.remote import PolicyServer, RemotePolicyClient, RemotePolicyError

POLICY = "assets/policies/gr00t_compact"
TASK = "pick up the apple"


# ---------------------------------------------------------------------------------------------
# An upstream-style encoder / decoder and REQ client, written from upstream's code


def _up_default(obj):
    if isinstance(obj, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": buf.getvalue()}
    raise TypeError(type(obj).__name__)


def _up_hook(obj):
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    if "__ModalityConfig_class__" in obj:  # N1.5: pydantic JSON text; N1.6: a map (to_json_serializable)
        fields = obj["as_json"]
        return {"ModalityConfig": fields if isinstance(fields, dict) else json.loads(fields),
                "as_json_type": type(fields).__name__}
    return obj


def upstream_call(port: int, request: dict | bytes, timeout_ms: int = 10000):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        sock.send(request if isinstance(request, bytes) else msgpack.packb(request, default=_up_default))
        return msgpack.unpackb(sock.recv(), object_hook=_up_hook)
    finally:
        sock.close(linger=0)
        ctx.term()


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def policy():
    return make_policy(POLICY)


@pytest.fixture
def serve(policy):
    handles = []

    def start(protocol: str = "n1.5", **kw):
        handle = PolicyServer(policy, port=0, protocol=protocol, **kw).serve_in_thread()
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        if handle.thread.is_alive():
            handle.stop()


def flat_obs(policy, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    meta = policy.meta
    obs = {f"video.{cam}": rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8) for cam in meta.video_keys}
    for group, dim in meta.state_groups.items():
        mean = np.asarray(meta.statistics["state"][group]["mean"], np.float32)
        obs[f"state.{group}"] = (mean + 0.05 * rng.standard_normal(dim)).astype(np.float32)[None]
    obs["annotation.human.task_description"] = TASK
    return obs


def nested_obs(policy, seeds: list[int]) -> dict:
    flats = [flat_obs(policy, s) for s in seeds]
    return {
        "video": {k[6:]: np.stack([f[k] for f in flats]) for k in flats[0] if k.startswith("video.")},
        "state": {k[6:]: np.stack([f[k] for f in flats]) for k in flats[0] if k.startswith("state.")},
        "language": {"annotation.human.task_description": [[TASK] for _ in flats]},
    }


def in_process(policy, obs: dict, seed: int = 0) -> dict:
    policy.seed(seed)
    return policy.get_action(obs)


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)


# ---------------------------------------------------------------------------------------------
# N1.5


def test_stock_n15_client_flow_modality_config_then_action(policy, serve):
    """Exactly upstream's N1.5 client messages, with a token: get_modality_config, then get_action."""
    handle = serve("n1.5", api_token="s3cret")
    configs = upstream_call(handle.port, {"endpoint": "get_modality_config", "api_token": "s3cret"})
    assert set(configs) == {"video", "state", "action", "language"}
    assert all(c["as_json_type"] == "str" for c in configs.values())  # N1.5: model_dump_json() text
    meta = policy.meta
    assert configs["video"]["ModalityConfig"] == {"delta_indices": [0], "modality_keys": ["video.ego_view"]}
    assert configs["state"]["ModalityConfig"]["modality_keys"] == [f"state.{g}" for g in meta.state_groups]
    assert configs["action"]["ModalityConfig"] == {"delta_indices": list(range(16)),
                                                   "modality_keys": [f"action.{g}" for g in meta.action_groups]}
    assert configs["language"]["ModalityConfig"]["modality_keys"] == ["annotation.human.task_description"]

    obs = flat_obs(policy)
    policy.seed(0)
    action = upstream_call(handle.port, {"endpoint": "get_action", "data": obs, "api_token": "s3cret"})
    assert_same(action, in_process(policy, obs))
    assert all(v.shape == (16, meta.action_groups[k[7:]]) for k, v in action.items())
    assert upstream_call(handle.port, {"endpoint": "get_modality_config"}) == {
        "error": "Unauthorized: Invalid API token"}


@pytest.mark.parametrize("protocol", ["n1.5", "n1.6"])
def test_our_client_against_our_server(policy, serve, protocol):
    handle = serve(protocol)
    with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=10000, protocol=protocol) as client:
        assert client.ping() and client.protocol == protocol
        configs = client.get_modality_config()
        prefix = "state." if protocol == "n1.5" else ""
        assert configs["state"].modality_keys == [prefix + g for g in policy.meta.state_groups]
        client.reset()
        obs = flat_obs(policy, 3)
        policy.seed(0)
        got = client.get_action(obs)  # the same Policy-level result through either protocol
        assert_same(got, in_process(policy, obs))


def test_factory_spec_protocol_and_auto_detection(policy, serve):
    n15, n16 = serve("n1.5"), serve("n1.7")  # n1.7 is N1.6's layout
    assert n16.server.protocol == "n1.6"
    assert PolicySpec.parse("zmq://127.0.0.1:1?protocol=n1.6&token=t").protocol == "n1.6"
    assert PolicySpec.parse("zmq://127.0.0.1:1").protocol == "n1.5"
    with pytest.raises(PolicySpecError, match="unknown GR00T server protocol"):
        PolicySpec.parse("zmq://127.0.0.1:1?protocol=n2")
    for handle, want in ((n15, "n1.5"), (n16, "n1.6")):
        client = make_policy(f"zmq://127.0.0.1:{handle.port}?protocol=auto", timeout_ms=10000)
        try:
            assert client.requested_protocol == "auto" and client.protocol == want
            assert set(client.get_action(flat_obs(policy))) == {f"action.{g}" for g in policy.meta.action_groups}
        finally:
            client.close()
    # An upstream server's ping names no protocol: the modality keys' form tells.
    n16.server.register_endpoint("ping", lambda: {"status": "ok"}, requires_input=False)
    with RemotePolicyClient("127.0.0.1", n16.port, timeout_ms=10000, protocol="auto") as client:
        assert client.protocol == "n1.6"


def test_mismatched_protocols_get_a_hint(policy, serve):
    n15, n16 = serve("n1.5"), serve("n1.6")
    obs = flat_obs(policy)
    for handle, speaks in ((n15, "n1.6"), (n16, "n1.5")):
        with (RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=10000, protocol=speaks) as client,
              pytest.raises(RemotePolicyError, match=re.escape(f"--protocol {speaks}"))):
            client.get_action(obs)


# ---------------------------------------------------------------------------------------------
# N1.6


def test_raw_n16_flow_nested_batch_and_options(policy, serve):
    handle = serve("n1.6")
    configs = upstream_call(handle.port, {"endpoint": "get_modality_config"})
    assert all(c["as_json_type"] == "dict" for c in configs.values())  # N1.6: to_json_serializable map
    assert configs["video"]["ModalityConfig"] == {"delta_indices": [0], "modality_keys": ["ego_view"]}
    assert configs["action"]["ModalityConfig"]["modality_keys"] == list(policy.meta.action_groups)
    assert upstream_call(handle.port, {"endpoint": "reset", "data": {"options": None}}) == {}

    policy.seed(0)
    reply = upstream_call(handle.port, {"endpoint": "get_action",
                                        "data": {"observation": nested_obs(policy, [1, 2]), "options": {}}})
    assert isinstance(reply, list) and len(reply) == 2
    action, info = reply
    assert info == {}
    assert set(action) == set(policy.meta.action_groups)
    policy.seed(0)
    want = [policy.get_action(flat_obs(policy, s)) for s in (1, 2)]
    for group, dim in policy.meta.action_groups.items():
        assert action[group].shape == (2, 16, dim)
        for b in range(2):
            np.testing.assert_allclose(action[group][b], want[b][f"action.{group}"], rtol=1e-5, atol=1e-5)
    # RESEARCH.md's placeholder language key `task` reads as the task description too.
    obs = nested_obs(policy, [1])
    obs["language"] = {"task": [[TASK]]}
    policy.seed(0)
    action, _ = upstream_call(handle.port, {"endpoint": "get_action", "data": {"observation": obs, "options": None}})
    np.testing.assert_allclose(action["left_arm"][0], want[0]["action.left_arm"], rtol=1e-5, atol=1e-5)


def _n16_bad_requests(policy) -> list[tuple[dict | bytes, str]]:
    def obs(**change):
        o = nested_obs(policy, [0])
        for path, value in change.items():
            modality, _, key = path.partition("__")
            if key:
                o[modality][key] = value
            else:
                o[modality] = value
        return {"endpoint": "get_action", "data": {"observation": o, "options": None}}

    good = nested_obs(policy, [0])
    two = nested_obs(policy, [0, 1])
    mixed = dict(good, state=two["state"])
    return [
        ({"endpoint": "get_action", "data": flat_obs(policy)}, "--protocol n1.5"),
        ({"endpoint": "get_action", "data": {"observation": good, "options": 3}}, "'options' must be a map"),
        ({"endpoint": "get_action", "data": {"observation": good, "extra": 1}}, "'observation' and 'options' only"),
        ({"endpoint": "get_action", "data": {"observation": [1, 2]}}, "must be a map"),
        ({"endpoint": "get_action", "data": {"observation": mixed}}, "disagree on the batch size"),
        (obs(video__ego_view=np.zeros((1, 128, 128, 3), np.uint8)), "(B,T,H,W,C)"),
        (obs(video__ego_view=np.zeros((1, 1, 128, 128, 3), np.float32)), "uint8"),
        (obs(video={}), "holds no camera"),
        (obs(state__left_arm=np.full((1, 1, 7), np.nan, np.float32)), "NaN"),
        (obs(state__left_arm=np.zeros((1, 7), np.float32)), "(B,T,D)"),
        (obs(language__task="pick"), "list (batch) of lists"),
        (obs(robot={}), "only 'video', 'state' and 'language'"),
        ({"endpoint": "get_action", "data": {"observation": nested_obs(policy, [0] * 5)}}, "outside 1..4"),
        ({"endpoint": "reset", "data": {"options": "x"}}, "'options' must be a map"),
        ({"endpoint": "kill"}, "kill endpoint is disabled"),
        ({"endpoint": "nope"}, "Unknown endpoint"),
        (b"\xc1 not msgpack", "MessagePack"),
    ]


def _n15_bad_requests(policy) -> list[tuple[dict | bytes, str]]:
    obs = flat_obs(policy)
    return [
        ({"endpoint": "get_action", "data": {"observation": nested_obs(policy, [0]), "options": None}},
         "--protocol n1.6"),
        ({"endpoint": "get_action", "data": dict(obs, **{"state.left_arm": np.full((1, 7), np.inf)})}, "NaN or inf"),
        ({"endpoint": "get_action", "data": dict(obs, **{"video.ego_view": np.zeros((1, 8, 8, 3))})}, "uint8"),
        ({"endpoint": "get_action", "data": [1]}, "must be a map"),
        ({"endpoint": "kill"}, "kill endpoint is disabled"),
        (b"\xc1 not msgpack", "MessagePack"),
    ]


@pytest.mark.parametrize("protocol", ["n1.5", "n1.6"])
def test_malformed_requests_get_an_error_and_the_server_survives(policy, serve, protocol):
    handle = serve(protocol, max_batch=4)
    bad = _n15_bad_requests(policy) if protocol == "n1.5" else _n16_bad_requests(policy)
    for request, message in bad:
        reply = upstream_call(handle.port, request)
        assert isinstance(reply, dict) and message in reply.get("error", ""), (message, reply)
        assert upstream_call(handle.port, {"endpoint": "ping"})["status"] == "ok"
    with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=10000, protocol=protocol) as client:
        assert set(client.get_action(flat_obs(policy))) == {f"action.{g}" for g in policy.meta.action_groups}


@pytest.mark.parametrize("protocol", ["n1.5", "n1.6"])
def test_token_and_kill_rules_hold_in_both_protocols(policy, serve, protocol):
    handle = serve(protocol, api_token="tok")
    assert upstream_call(handle.port, {"endpoint": "get_modality_config", "api_token": "bad"}) == {
        "error": "Unauthorized: Invalid API token"}
    data = {"observation": nested_obs(policy, [0]), "options": None} if protocol == "n1.6" else flat_obs(policy)
    assert "Unauthorized" in upstream_call(handle.port, {"endpoint": "get_action", "data": data})["error"]
    assert "Unauthorized" in upstream_call(handle.port, {"endpoint": "kill"})["error"]
    assert handle.thread.is_alive()
    with RemotePolicyClient("127.0.0.1", handle.port, timeout_ms=10000, api_token="tok",
                            protocol=protocol) as client:
        client.kill_server()
    handle.thread.join(5)
    assert not handle.thread.is_alive()


def test_protocol_arguments_are_checked(policy):
    with pytest.raises(ValueError, match="unknown GR00T server protocol"):
        PolicyServer(policy, port=0, protocol="n2")
    with pytest.raises(ValueError, match=r"only for the N1\.5 protocol"):
        RemotePolicyClient("127.0.0.1", 1, protocol="n1.6", wire="torch")


def test_sage_serve_protocol_flag():
    import tyro

    from sage_gr00t.cli import serve

    assert tyro.cli(serve.ServeConfig, args=[]).protocol == "n1.5"
    cfg = tyro.cli(serve.ServeConfig, args=["--protocol", "n1.6", "--max-batch", "8"])
    assert (cfg.protocol, cfg.max_batch) == ("n1.6", 8)
    with pytest.raises(SystemExit):
        tyro.cli(serve.ServeConfig, args=["--protocol", "n2"])
