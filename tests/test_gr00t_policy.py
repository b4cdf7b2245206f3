"""GR00T N1.5-architecture policy: sizes, real training steps, checkpoints, validation, ZMQ serving."""

from __future__ import annotations

import json
import shutil
import socket
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sage_gr00t.experts.policy import ExpertPolicy
from sage_gr00t.policy.gr00t import (
    CheckpointError,
    Gr00tModel,
    Gr00tNativePolicy,
    ObservationError,
    compact_config,
    count_parameters,
    load_checkpoint,
    load_policy,
    n15_config,
    save_checkpoint,
)
from sage_gr00t.policy.gr00t.config import BackboneConfig
from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData
from sage_gr00t.policy.remote import PolicyServer, RemotePolicyClient
from sage_gr00t.tasks import make_env

torch.set_num_threads(2)


def test_n15_action_head_has_the_published_size() -> None:
    with torch.device("meta"):
        model = Gr00tModel(n15_config())
    head = count_parameters(model.action_head)
    dit = count_parameters(model.action_head.model)
    backbone = count_parameters(model.backbone)
    print(f"\nN1.5 action head: {head / 1e9:.4f}B (DiT {dit / 1e6:.1f}M), backbone {backbone / 1e9:.3f}B")
    assert abs(head - 1.07e9) / 1.07e9 < 0.02
    assert abs(dit - 550e6) / 550e6 < 0.02
    cfg = model.config.action_head
    assert (cfg.action_horizon, cfg.action_dim, cfg.max_state_dim, cfg.num_inference_timesteps) == (16, 32, 64, 4)
    assert len(model.action_head.model.transformer_blocks) == 16
    # Even DiT blocks cross-attend to the 2048-d VL tokens; odd blocks self-attend.
    blocks = model.action_head.model.transformer_blocks
    assert blocks[0].attn1.to_k.in_features == 2048 and blocks[1].attn1.to_k.in_features == 1536
    assert model.action_head.state_encoder.layer1.W.shape == (32, 64, 1024)


def test_compact_preset_is_small() -> None:
    model = Gr00tModel(compact_config())
    print(f"\ncompact: {count_parameters(model) / 1e6:.2f}M parameters")
    assert count_parameters(model) <= 30e6


@pytest.fixture(scope="module")
def demo_data() -> DemoData:
    """Two real expert episodes from the simulator."""
    env = make_env("pick_apple", image_height=128, image_width=128)
    expert = ExpertPolicy(env)
    episodes = []
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        rec: dict[str, list] = {"images": []}
        for _ in range(60):
            action = {k: v[0] for k, v in expert.get_action(obs).items()}
            rec["images"].append(obs["video.ego_view"])
            for key in [k for k in obs if k.startswith("state.")] + list(action):
                rec.setdefault(key, []).append(obs[key] if key.startswith("state.") else action[key])
            obs, *_ = env.step(action)
        episodes.append({k: np.stack(v) for k, v in rec.items()} | {"task": "pick the apple and place it on the plate"})
    env.close()
    return DemoData.from_episodes(episodes, image_size=128, robot_type="sage_humanoid")


def _trained_model(data: DemoData, steps: int) -> tuple[Gr00tModel, list[float], list[float]]:
    torch.manual_seed(0)
    model = Gr00tModel(compact_config())
    meta = data.metadata()
    sampler = BatchSampler(data, model, meta, torch.device("cpu"), shift_pixels=0)
    batch = sampler(32, torch.Generator().manual_seed(0))

    def eval_loss() -> list[float]:
        model.eval()
        losses = []
        for seed in range(4):
            torch.manual_seed(100 + seed)
            with torch.no_grad():
                losses.append(model(batch).item())
        model.train()
        return losses

    before = eval_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = model(sampler(32, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), before, eval_loss()


def test_training_steps_lower_the_loss(demo_data: DemoData) -> None:
    _, before, after = _trained_model(demo_data, steps=40)
    print(f"\nloss before {np.mean(before):.3f} -> after 40 steps {np.mean(after):.3f}")
    assert np.mean(after) < 0.85 * np.mean(before)


def _observation(size: int = 224) -> dict:
    env = make_env("pick_apple", image_height=size, image_width=size)
    obs, _ = env.reset(seed=7)
    env.close()
    return obs


def test_save_load_gives_identical_actions(tmp_path, demo_data: DemoData) -> None:
    model, _, _ = _trained_model(demo_data, steps=2)
    meta = demo_data.metadata()
    save_checkpoint(tmp_path / "ckpt", model, {meta.tag: meta})
    loaded, embodiments, report = load_checkpoint(tmp_path / "ckpt")
    assert not any(report.values())
    obs = _observation()
    noise = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(3))
    a = Gr00tNativePolicy(model, {meta.tag: meta}).get_action(obs, noise=noise)
    b = Gr00tNativePolicy(loaded, embodiments).get_action(obs, noise=noise)
    assert set(a) == {"action.left_arm", "action.right_arm", "action.left_hand", "action.right_hand"}
    assert a["action.left_arm"].shape == (16, 7) and a["action.left_hand"].shape == (16, 2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # fp16 storage (what ships) stays close.
    save_checkpoint(tmp_path / "fp16", model, {meta.tag: meta}, dtype=torch.float16)
    c = load_policy(tmp_path / "fp16").get_action(obs, noise=noise)
    np.testing.assert_allclose(a["action.left_arm"], c["action.left_arm"], atol=0.05)


def test_checkpoint_errors_are_clear(tmp_path, demo_data: DemoData) -> None:
    model = Gr00tModel(compact_config())
    meta = demo_data.metadata()
    path = save_checkpoint(tmp_path / "ok", model, {meta.tag: meta})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    weights = path / "model.safetensors"
    # Corrupted: truncated file.
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="Corrupted"):
        load_checkpoint(path)
    # Mismatched: a tensor of the wrong shape and an extra one.
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["action_head.future_tokens.weight"] = torch.zeros(3, 3)
    state["backbone.unknown.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*future_tokens"):
        load_checkpoint(path)
    del state["action_head.future_tokens.weight"]
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"missing.*future_tokens.*unexpected.*backbone.unknown"):
        load_checkpoint(path)


def _overwrite_tensor_values(weights, name: str, values: list[float]) -> None:
    """Write float32 bit patterns over the first values of one tensor's data region, found via the header."""
    raw = bytearray(weights.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    entry = json.loads(raw[8 : 8 + n])[name]
    assert entry["dtype"] == "F32"
    start = 8 + n + entry["data_offsets"][0]
    raw[start : start + 4 * len(values)] = struct.pack(f"<{len(values)}f", *values)
    weights.write_bytes(bytes(raw))


def test_corrupt_checkpoint_files_get_one_clear_error(tmp_path, demo_data: DemoData) -> None:
    model = Gr00tModel(compact_config())
    meta = demo_data.metadata()
    good = save_checkpoint(tmp_path / "good", model, {meta.tag: meta})

    def copy(name: str):
        return shutil.copytree(good, tmp_path / name)

    # NaN / inf bytes in the middle of the file (a tensor in the middle of the data region).
    path = copy("nan")
    weights = path / "model.safetensors"
    header = json.loads(weights.read_bytes()[8 : 8 + struct.unpack("<Q", weights.read_bytes()[:8])[0]])
    tensors = sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")
    name = tensors[len(tensors) // 2][1]
    _overwrite_tensor_values(weights, name, [float("nan"), float("nan"), float("inf")])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert str(weights) in msg and name in msg and "3 of" in msg and "2 NaN, 1 inf" in msg, msg
    with pytest.raises(CheckpointError, match="non-finite"):
        load_policy(path)  # the policy server's entry point refuses it too
    # fp16 storage: a NaN half is caught as well.
    half = save_checkpoint(tmp_path / "fp16", model, {meta.tag: meta}, dtype=torch.float16)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state[name].view(-1)[5] = float("-inf")
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(half / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"{name} \(1 of .*0 NaN, 1 inf"):
        load_checkpoint(half)

    # Truncated weights: names the file, says truncated and what to do. Header cut too.
    for i, keep in enumerate((-100, 1000, 5)):  # data cut short, header cut short, length prefix cut short
        path = copy(f"trunc{i}")
        weights = path / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:keep])
        with pytest.raises(CheckpointError, match=r"(?i)truncated.*re-download or re-train") as err:
            load_checkpoint(path)
        assert str(err.value).startswith(f"Corrupted weights file {weights}: truncated"), err.value
        assert "\n" not in str(err.value)

    # Broken config.json: the file and the JSON position, not a bare JSONDecodeError.
    path = copy("config")
    (path / "config.json").write_text('{"backbone": {"kind": ')
    with pytest.raises(CheckpointError, match=r"config\.json: invalid JSON at line 1 column") as err:
        load_checkpoint(path)
    assert str(path / "config.json") in str(err.value)
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"config\.json: expected a JSON object"):
        load_checkpoint(path)

    # experiment_cfg/metadata.json: broken -> clear error; missing -> load_policy names the path.
    path = copy("meta")
    metadata = path / "experiment_cfg" / "metadata.json"
    metadata.write_text("{oops")
    with pytest.raises(CheckpointError, match=r"metadata\.json: invalid JSON"):
        load_checkpoint(path)
    metadata.unlink()
    _, embodiments, _ = load_checkpoint(path)  # optional for the bare model (upstream exports)...
    assert embodiments == {}
    with pytest.raises(CheckpointError, match=r"no embodiment metadata.*experiment_cfg/metadata\.json") as err:
        load_policy(path)  # ...but a policy needs its normalization stats
    assert str(metadata) in str(err.value)


def _tiny_eagle() -> BackboneConfig:
    return BackboneConfig(kind="eagle", image_size=56, vision_hidden_size=32, vision_layers=2, vision_heads=2,
                          vision_intermediate_size=64, patch_size=14, llm_hidden_size=64, select_layer=2,
                          llm_heads=4, llm_kv_heads=2, llm_intermediate_size=128, vocab_size=151700)


def test_upstream_layout_checkpoint_maps_onto_the_model(tmp_path) -> None:
    """A checkpoint in upstream N1.5's layout (backbone_cfg/action_head_cfg, sharded safetensors)."""
    cfg = compact_config()
    cfg.backbone = _tiny_eagle()
    cfg.action_head.backbone_embedding_dim = 64
    cfg.action_head.diffusion_model_cfg.cross_attention_dim = 64
    cfg.action_head.vl_self_attention_cfg.num_attention_heads = 2  # 2 x 32 = the 64-d VL tokens
    model = Gr00tModel(cfg)
    state = model.state_dict()
    keys = sorted(state)
    assert any(k.startswith("backbone.eagle_model.vision_model.") for k in keys)
    assert "backbone.eagle_model.mlp1.0.weight" in keys
    assert any(k.startswith("backbone.eagle_model.language_model.model.layers.1.") for k in keys)
    assert "action_head.model.transformer_blocks.0.attn1.to_q.weight" in keys
    assert "action_head.action_encoder.W2.W" in keys and "action_head.model.proj_out_2.weight" in keys
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, shard_keys in shards.items():
        save_file({k: state[k].contiguous() for k in shard_keys}, str(tmp_path / name))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: n for n, ks in shards.items() for k in ks}}))
    head = cfg.to_dict()["action_head"]
    head["max_action_dim"] = head.pop("action_dim")
    upstream = {"architectures": ["GR00T_N1_5"], "model_type": "gr00t_n1_5", "action_head_cfg": head,
                "backbone_cfg": {"select_layer": 2, "project_to_dim": None, "tune_llm": False}}
    (tmp_path / "config.json").write_text(json.dumps(upstream))
    with pytest.raises(CheckpointError, match="inconsistent"):
        load_checkpoint(tmp_path)  # upstream's real Eagle sizes do not fit this tiny action head
    upstream["backbone_cfg"].update({k: v for k, v in _tiny_eagle().__dict__.items() if k != "kind"})
    (tmp_path / "config.json").write_text(json.dumps(upstream))
    loaded, _, report = load_checkpoint(tmp_path)
    assert not any(report.values())
    # The eagle forward path runs: 56 px / 14 px patches = 4 x 4 = 16 image tokens (no pixel shuffle, as in N1.5).
    from sage_gr00t.policy.gr00t.backbone import IMAGE_TOKEN_INDEX

    tokens = loaded.backbone.eagle_model.extract_feature(torch.randn(1, 3, 56, 56)).shape[1]
    ids = torch.tensor([[1, 2] + [IMAGE_TOKEN_INDEX] * tokens + [3]])
    batch = {"pixel_values": torch.randn(1, 3, 56, 56), "input_ids": ids, "attention_mask": torch.ones_like(ids),
             "state": torch.zeros(1, 1, 64), "embodiment_id": torch.tensor([31])}
    assert loaded.get_action(batch).shape == (1, 16, 32)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("state.left_arm"), "missing"),
        (lambda o: o.__setitem__("video.ego_view", o["video.ego_view"].astype(np.float32)), "uint8"),
        (lambda o: o.__setitem__("video.ego_view", o["video.ego_view"][:, :, :2]), "shape"),
        (lambda o: o.__setitem__("state.right_arm", np.zeros(5, np.float32)), "7 values"),
        (lambda o: o["state.left_hand"].__setitem__(0, np.nan), "NaN"),
        (lambda o: o.__setitem__("state.left_arm", np.zeros(7, np.int64)), "float"),
        (lambda o: o.__setitem__("annotation.human.task_description", ""), "non-empty"),
    ],
)
def test_bad_observations_get_clear_errors(mutate, message: str, demo_data: DemoData) -> None:
    meta = demo_data.metadata()
    policy = Gr00tNativePolicy(Gr00tModel(compact_config()), {meta.tag: meta})
    obs = _observation(96)
    policy.get_action(obs)  # valid input works (any image size is resized)
    mutate(obs)
    with pytest.raises(ObservationError, match=message):
        policy.get_action(obs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zmq_round_trip_matches_in_process(tmp_path, demo_data: DemoData) -> None:
    model, _, _ = _trained_model(demo_data, steps=2)
    meta = demo_data.metadata()
    save_checkpoint(tmp_path / "ckpt", model, {meta.tag: meta})
    local = load_policy(tmp_path / "ckpt", seed=5)
    served = load_policy(tmp_path / "ckpt", seed=5)  # same seed -> same noise sequence
    obs = _observation()
    with PolicyServer(served, port=_free_port()).serve_in_thread() as handle:
        client = RemotePolicyClient(port=handle.port, timeout_ms=20000)
        for _ in range(2):
            remote, expected = client.get_action(obs), local.get_action(obs)
            for key in expected:
                np.testing.assert_array_equal(remote[key], expected[key])
        bad = dict(obs)
        bad.pop("state.left_arm")
        with pytest.raises(ValueError, match="missing"):
            client.get_action(bad)
        client.close()
