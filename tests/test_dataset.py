"""GR00T LeRobot dataset writing/reading: round trip through LeRobot's own loader, interruption safety."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sage_gr00t.data.collect import CollectionState, collect_episodes, run_expert_episode
from sage_gr00t.data.lerobot_dataset import (
    IMAGE_KEY,
    STATE_KEY,
    DatasetLayout,
    GrootDatasetWriter,
    load_dataset,
    load_episode,
    read_episode_records,
    read_modality,
)
from sage_gr00t.experts.scripted import ScriptedExpert
from sage_gr00t.modality import JOINT_GROUPS as STATE_GROUPS
from sage_gr00t.tasks import make_env

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
SEEDS = (0, 1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def _record(writer: GrootDatasetWriter, env, expert, seed: int) -> dict:
    """Run one expert episode into `writer`, keeping our own copy of what went in."""
    frames: list[dict] = []

    def on_step(obs: dict, action: dict) -> None:
        writer.add_step(obs, action)
        frames.append(writer.layout.frame(obs, action))

    outcome = run_expert_episode(env, expert, seed, on_step)
    writer.save_episode(seed=seed)
    return {
        "images": np.stack([f[IMAGE_KEY] for f in frames]),
        "state": np.stack([f[STATE_KEY] for f in frames]),
        "action": np.stack([f["action"] for f in frames]),
        "task": frames[0]["task"],
        "success": outcome.success,
    }


@pytest.fixture(scope="module")
def env():
    env = make_env("pick_apple", image_height=SIZE, image_width=SIZE)
    yield env
    env.close()


@pytest.fixture(scope="module")
def recorded(env, tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("ds") / "pick_apple"
    expert = ScriptedExpert(env)
    with GrootDatasetWriter(root, DatasetLayout.from_env(env)) as writer:
        episodes = [_record(writer, env, expert, seed) for seed in SEEDS]
    return root, episodes


def _synthetic_frame(layout: DatasetLayout, rng: np.random.Generator, task: str = "synthetic task") -> tuple:
    obs = {"video.ego_view": rng.integers(0, 255, layout.image_shape, dtype=np.uint8),
           "annotation.human.task_description": task}
    act = {}
    for g, d in layout.group_sizes:
        obs[f"state.{g}"] = rng.normal(size=d).astype(np.float32)
        act[f"action.{g}"] = rng.normal(size=d).astype(np.float32)
    return obs, act


# ---------------------------------------------------------------------------------------- round trip
def test_round_trip_through_lerobot_loader(recorded) -> None:
    root, episodes = recorded
    assert all(ep["success"] for ep in episodes), "the expert should solve these seeds"
    for index, (seed, want) in enumerate(zip(SEEDS, episodes, strict=True)):
        ep = load_episode(root, index)
        assert ep.images.shape == want["images"].shape and ep.images.dtype == np.uint8
        # Lossy h264 (crf 18, yuv420p): small average error; exact pixels are checked with image storage.
        assert np.abs(ep.images.astype(int) - want["images"].astype(int)).mean() < 4.0
        assert _psnr(ep.images, want["images"]) > 28.0
        np.testing.assert_array_equal(ep.state, want["state"])
        np.testing.assert_array_equal(ep.action, want["action"])
        assert ep.task == want["task"]
        assert ep.seed == seed
        np.testing.assert_allclose(ep.timestamps, np.arange(len(ep.state)) / 20.0, atol=1e-6)


def test_dataset_metadata_and_frames(recorded) -> None:
    root, episodes = recorded
    ds = load_dataset(root)
    assert ds.meta.total_episodes == len(SEEDS)
    assert len(ds) == sum(len(ep["state"]) for ep in episodes)
    item = ds[0]
    assert item[IMAGE_KEY].shape == (3, SIZE, SIZE)  # LeRobot serves CHW float images
    assert item["task"] == episodes[0]["task"]
    assert [r["seed"] for r in read_episode_records(root)] == list(SEEDS)


def test_modality_json_matches_features(recorded, env) -> None:
    root, _ = recorded
    modality = read_modality(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    for kind, feature in (("state", STATE_KEY), ("action", "action")):
        groups = modality[kind]
        assert list(groups) == list(STATE_GROUPS)
        ends = [0] + [r["end"] for r in groups.values()]
        assert [r["start"] for r in groups.values()] == ends[:-1], "ranges must be contiguous"
        assert ends[-1] == info["features"][feature]["shape"][0]
        space = env.observation_space if kind == "state" else env.action_space
        for g, r in groups.items():
            assert r["end"] - r["start"] == space[f"{kind}.{g}"].shape[0]
    assert modality["video"] == {"ego_view": {"original_key": IMAGE_KEY}}
    assert info["features"][IMAGE_KEY]["dtype"] == "video"
    assert modality["annotation"] == {"human.task_description": {"original_key": "task_index"}}
    ep = load_episode(root, 0)
    assert set(ep.groups("state")) == {f"state.{g}" for g in STATE_GROUPS}
    np.testing.assert_array_equal(ep.groups("action")["action.right_hand"], ep.action[:, 16:18])


def test_image_storage_is_exact(env, tmp_path) -> None:
    root = tmp_path / "images"
    expert = ScriptedExpert(env)
    with GrootDatasetWriter(root, DatasetLayout.from_env(env), use_videos=False) as writer:
        want = _record(writer, env, expert, seed=3)
    ep = load_episode(root, 0)
    np.testing.assert_array_equal(ep.images, want["images"])
    np.testing.assert_array_equal(ep.action, want["action"])


# ---------------------------------------------------------------------------------------- interruption
def test_exception_mid_episode_keeps_finished_episodes(env, tmp_path) -> None:
    root = tmp_path / "interrupted"
    expert = ScriptedExpert(env)
    layout = DatasetLayout.from_env(env)
    with pytest.raises(RuntimeError, match="simulated crash"), GrootDatasetWriter(root, layout) as writer:
        first = _record(writer, env, expert, seed=0)
        obs, _ = env.reset(seed=1)
        expert.reset()
        for _ in range(10):
            action = expert.act(obs)
            writer.add_step(obs, action)
            obs, *_ = env.step(action)
        raise RuntimeError("simulated crash")
    ds = load_dataset(root)
    assert ds.meta.total_episodes == 1 and len(ds) == len(first["state"])
    ep = load_episode(root, 0)
    np.testing.assert_array_equal(ep.action, first["action"])
    assert not (root / "images").exists(), "staging frames of the dropped episode must be gone"


def test_resume_appends(recorded, tmp_path) -> None:
    src, episodes = recorded
    root = tmp_path / "resumed"
    shutil.copytree(src, root)
    layout = DatasetLayout((("left_arm", 7), ("right_arm", 7), ("left_hand", 2), ("right_hand", 2)),
                           (SIZE, SIZE, 3), 20, "sage_humanoid")
    rng = np.random.default_rng(0)
    with GrootDatasetWriter(root, layout) as writer:
        assert writer.num_episodes == 2
        actions = []
        for _ in range(6):
            obs, act = _synthetic_frame(layout, rng)
            writer.add_step(obs, act)
            actions.append(layout.frame(obs, act)["action"])
        assert writer.save_episode(seed=99) == 2
    assert load_dataset(root).meta.total_episodes == 3
    np.testing.assert_array_equal(load_episode(root, 2).action, np.stack(actions))
    np.testing.assert_array_equal(load_episode(root, 0).action, episodes[0]["action"])
    assert [r["seed"] for r in read_episode_records(root)] == [*SEEDS, 99]


def test_resume_refuses_other_layout(recorded, tmp_path) -> None:
    root = tmp_path / "other"
    shutil.copytree(recorded[0], root)
    g1 = DatasetLayout(tuple((g, 7) for g in STATE_GROUPS), (SIZE, SIZE, 3), 20, "unitree_g1")
    with pytest.raises(ValueError, match="different embodiment"):
        GrootDatasetWriter(root, g1)


def test_hard_kill_rolls_back_to_checkpoint(tmp_path) -> None:
    """A process killed without finalizing (os._exit) loses only episodes after the last checkpoint."""
    root = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from sage_gr00t.data.lerobot_dataset import DatasetLayout, GrootDatasetWriter
        layout = DatasetLayout((("left_arm", 7), ("right_arm", 7), ("left_hand", 2), ("right_hand", 2)),
                               ({SIZE}, {SIZE}, 3), 20, "sage_humanoid")
        rng = np.random.default_rng(0)
        w = GrootDatasetWriter({str(root)!r}, layout, checkpoint_every=2)
        for ep in range(3):
            for _ in range(5):
                obs = {{"video.ego_view": rng.integers(0, 255, ({SIZE}, {SIZE}, 3), dtype=np.uint8),
                       "annotation.human.task_description": "t"}}
                act = {{}}
                for g, d in layout.group_sizes:
                    obs["state." + g] = np.full(d, ep, np.float32)
                    act["action." + g] = np.full(d, ep, np.float32)
                w.add_step(obs, act)
            w.save_episode(seed=ep)
        os._exit(1)  # like SIGKILL: no finalize, no destructors
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    layout = DatasetLayout((("left_arm", 7), ("right_arm", 7), ("left_hand", 2), ("right_hand", 2)),
                           (SIZE, SIZE, 3), 20, "sage_humanoid")
    with GrootDatasetWriter(root, layout) as writer:  # recovers: episodes 0-1 were checkpointed, 2 was not
        assert writer.num_episodes == 2
        assert [r.seed for r in writer.records] == [0, 1]
        assert [r.seed for r in writer.lost_records] == [2]  # what was lost, said exactly
    ds = load_dataset(root)
    assert ds.meta.total_episodes == 2 and len(ds) == 10
    np.testing.assert_array_equal(load_episode(root, 1).state, np.ones((5, 18), np.float32))


# ---------------------------------------------------------------------------------------- collection
def test_failed_episodes_are_dropped(tmp_path) -> None:
    env = make_env("pick_apple", image_height=SIZE, image_width=SIZE, max_steps=15)  # too short to succeed
    try:
        root = tmp_path / "fails"
        state = CollectionState(next_seed=5)
        with GrootDatasetWriter(root, DatasetLayout.from_env(env)) as writer:
            outcomes = collect_episodes(env, ScriptedExpert(env), writer, target_episodes=1, state=state,
                                        max_attempts=2)
            assert writer.num_episodes == 0
        assert [o.success for o in outcomes] == [False, False]
        assert state.failed_seeds == [5, 6] and state.next_seed == 7
        assert CollectionState.load(root) == state
    finally:
        env.close()


def test_collect_demos_cli(tmp_path) -> None:
    from sage_gr00t.cli import collect as module

    out = tmp_path / "cli"
    args = ["--task", "pick_apple", "--episodes", "1", "--out", str(out), "--image-size", str(SIZE),
            "--seed-start", "7", "--randomization", "train"]
    assert module.main(args) == 0
    assert read_episode_records(out)[0]["seed"] == 7
    assert load_episode(out, 0).images.shape[1:] == (SIZE, SIZE, 3)
    assert module.main([*args[:-1], "strong"]) == 2  # resuming with other settings is refused


def test_subtask_annotations_reach_training_batches(tmp_path) -> None:
    """Per-step subtask language: expert -> dataset segments -> training cache -> the batches' token ids."""
    import torch

    from sage_gr00t.experts.scripted import ExpertConfig
    from sage_gr00t.policy.gr00t.config import compact_config
    from sage_gr00t.policy.gr00t.model import Gr00tModel
    from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData, build_cache

    env = make_env("sort_blocks", image_height=SIZE, image_width=SIZE)
    try:
        expert = ScriptedExpert(env, ExpertConfig(plan_order="shuffled"))
        root = tmp_path / "sort"
        with GrootDatasetWriter(root, DatasetLayout.from_env(env)) as writer:
            orders = []
            for seed in range(4):  # order: as the instruction names the blocks, else seeded random
                outcome = run_expert_episode(env, expert, seed, writer.add_step)
                assert outcome.success
                writer.save_episode(seed=seed)
                orders.append(tuple(s for _, s in writer.records[-1].extra["subtasks"]))
        expected = {s.language for s in env.expert_plan()}
    finally:
        env.close()
    assert all(set(o) == expected and len(o) == 2 for o in orders)
    episode = load_episode(root, 0)
    per_frame = episode.subtask_per_frame()
    assert len(per_frame) == len(episode.state) and per_frame[0] == orders[0][0] and per_frame[-1] == orders[0][1]

    cache = build_cache([str(root)], tmp_path / "cache", image_size=64, max_episodes=4)
    data = DemoData.load(cache)
    assert set(expected) <= set(data.tasks) and (data.subtask >= 0).all()
    model = Gr00tModel(compact_config())
    ids, _ = model.backbone.tokenizer(data.tasks)
    for prob, source in ((1.0, data.subtask), (0.0, data.task)):
        sampler = BatchSampler(data, model, data.metadata(), torch.device("cpu"), 0, subtask_language_prob=prob)
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(3)
        idx = torch.randint(0, len(data.state), (8,), generator=torch.Generator().manual_seed(3))
        batch = sampler(8, generator)
        assert torch.equal(batch["input_ids"], ids[torch.from_numpy(source[idx.numpy()])])


def test_an_empty_dataset_is_one_clear_error(tmp_path) -> None:
    """0 episodes: say so and how to fill it (LeRobot would look for the data on the hub instead)."""
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(json.dumps({"total_episodes": 0}))
    with pytest.raises(ValueError, match="holds no episodes; collect some first"):
        load_dataset(tmp_path)
