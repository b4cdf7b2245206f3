"""GR00T LeRobot v2.0 export: files upstream's N1.5 loader reads, their mutual consistency, and content."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sage_gr00t.data.groot_v2 import (
    export_groot_v2,
    groot_v2_paths,
    read_groot_v2_episode,
    validate_groot_v2,
)
from sage_gr00t.data.lerobot_dataset import (
    ACTION_KEY,
    IMAGE_KEY,
    STATE_KEY,
    DatasetLayout,
    GrootDatasetWriter,
    load_episode,
    read_modality,
)
from sage_gr00t.experts.scripted import ScriptedExpert
from sage_gr00t.modality import JOINT_GROUPS as STATE_GROUPS
from sage_gr00t.modality import LANGUAGE_KEY
from sage_gr00t.tasks import make_env

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
SEEDS = (0, 1)
MAX_STEPS = 40  # short episodes keep the test fast; the expert need not finish for an export test


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """Two real expert episodes recorded with our writer, then exported; keeps the raw frames too."""
    from sage_gr00t.data.collect import run_expert_episode

    base = tmp_path_factory.mktemp("groot_v2")
    src, dst = base / "src", base / "src_groot_v2"
    env = make_env("pick_apple", image_height=SIZE, image_width=SIZE, max_steps=MAX_STEPS)
    raw: list[dict] = []
    try:
        expert = ScriptedExpert(env)
        with GrootDatasetWriter(src, DatasetLayout.from_env(env)) as writer:
            for seed in SEEDS:
                frames: list[dict] = []

                def on_step(obs: dict, action: dict, frames: list[dict] = frames) -> None:
                    writer.add_step(obs, action)
                    frames.append(writer.layout.frame(obs, action))

                run_expert_episode(env, expert, seed, on_step)
                writer.save_episode(seed=seed)
                raw.append({"images": np.stack([f[IMAGE_KEY] for f in frames]),
                            "state": np.stack([f[STATE_KEY] for f in frames]),
                            "action": np.stack([f[ACTION_KEY] for f in frames]), "task": frames[0]["task"]})
    finally:
        env.close()
    export_groot_v2(src, dst)
    return src, dst, raw


def _meta(root: Path) -> tuple[dict, list[dict], list[dict], dict, dict]:
    m = root / "meta"
    lines = lambda p: [json.loads(x) for x in p.read_text().splitlines() if x.strip()]  # noqa: E731
    return (json.loads((m / "info.json").read_text()), lines(m / "episodes.jsonl"), lines(m / "tasks.jsonl"),
            json.loads((m / "modality.json").read_text()), json.loads((m / "stats.json").read_text()))


# ---------------------------------------------------------------------------------------- layout
def test_files_upstream_reads_exist(exported) -> None:
    _, dst, raw = exported
    for name in ("info.json", "episodes.jsonl", "tasks.jsonl", "modality.json", "stats.json"):
        assert (dst / "meta" / name).is_file(), name
    for i in range(len(raw)):  # the literal paths of GR00T's schema doc, chunk-000 for episodes < 1000
        assert (dst / f"data/chunk-000/episode_{i:06d}.parquet").is_file()
        assert (dst / f"videos/chunk-000/{IMAGE_KEY}/episode_{i:06d}.mp4").is_file()
    assert validate_groot_v2(dst) == []


def test_metadata_consistent(exported) -> None:
    src, dst, raw = exported
    info, episodes, tasks, modality, stats = _meta(dst)
    assert info["codebase_version"] == "v2.0"
    assert info["total_episodes"] == len(episodes) == len(raw)
    assert info["total_frames"] == sum(e["length"] for e in episodes) == sum(len(r["state"]) for r in raw)
    assert info["total_tasks"] == len(tasks) and info["total_videos"] == len(raw) and info["total_chunks"] == 1
    assert info["splits"] == {"train": f"0:{len(raw)}"} and info["fps"] == 20.0
    assert [e["length"] for e in episodes] == [len(r["state"]) for r in raw]
    assert [e["tasks"] for e in episodes] == [[r["task"]] for r in raw]
    assert [t["task_index"] for t in tasks] == list(range(len(tasks)))
    # Video feature in the form upstream parses (names index height/width/channel + video_info fps).
    video = info["features"][IMAGE_KEY]
    assert video["dtype"] == "video" and video["shape"] == [SIZE, SIZE, 3]
    assert video["names"] == ["height", "width", "channel"] and video["video_info"]["video.fps"] == 20.0
    assert video["video_info"]["video.codec"] == "h264" and video["video_info"]["video.pix_fmt"] == "yuv420p"
    # modality.json: same groups as the source, ranges tile observation.state / action exactly.
    src_modality = read_modality(src)
    for kind, feature in (("state", STATE_KEY), ("action", ACTION_KEY)):
        assert modality[kind] == src_modality[kind] and list(modality[kind]) == list(STATE_GROUPS)
        ranges = list(modality[kind].values())
        assert ranges[0]["start"] == 0 and all(a["end"] == b["start"] for a, b in itertools.pairwise(ranges))
        assert ranges[-1]["end"] == info["features"][feature]["shape"][0]
    assert modality["video"] == {"ego_view": {"original_key": IMAGE_KEY}}
    ann_key = LANGUAGE_KEY.removeprefix("annotation.")
    assert modality["annotation"] == {ann_key: {}}  # -> upstream reads the column named LANGUAGE_KEY
    # Parquet schema == info.json features (minus the video), vectors are float32 of the feature width.
    for e in episodes:
        path, _ = groot_v2_paths(dst, e["episode_index"])
        schema = pq.read_schema(path)
        assert set(schema.names) == set(info["features"]) - {IMAGE_KEY}
        assert LANGUAGE_KEY in schema.names
        for feature in (STATE_KEY, ACTION_KEY):
            assert schema.field(feature).type.list_size == info["features"][feature]["shape"][0]
            assert str(schema.field(feature).type.value_type) == "float"
        for name in schema.names:
            if name not in (STATE_KEY, ACTION_KEY):
                want = {"float32": "float", "bool": "bool"}.get(info["features"][name]["dtype"], "int64")
                assert str(schema.field(name).type) == want, name
    # stats.json: all six statistics for every column, equal to a recomputation over the parquet files.
    frames = pd.concat([pd.read_parquet(groot_v2_paths(dst, e["episode_index"])[0]) for e in episodes])
    assert set(stats) == set(frames.columns)
    state = np.stack(frames[STATE_KEY].to_numpy()).astype(np.float32)
    np.testing.assert_allclose(stats[STATE_KEY]["mean"], state.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[STATE_KEY]["q99"], np.quantile(state, 0.99, axis=0), rtol=1e-5, atol=1e-6)
    for st in stats.values():
        assert set(st) >= {"mean", "std", "min", "max", "q01", "q99"}


# ---------------------------------------------------------------------------------------- content
def test_content_matches_source(exported) -> None:
    src, dst, raw = exported
    for i, want in enumerate(raw):
        got = read_groot_v2_episode(dst, i)
        source = load_episode(src, i)
        t = len(want["state"])
        np.testing.assert_array_equal(got.state, want["state"])
        np.testing.assert_array_equal(got.action, want["action"])
        np.testing.assert_array_equal(got.state, source.state)
        assert got.task == want["task"] == source.task
        assert got.annotations[LANGUAGE_KEY] == [want["task"]] * t
        np.testing.assert_array_equal(got.frame_index, np.arange(t))
        np.testing.assert_allclose(got.timestamps, source.timestamps, atol=1e-6)
        # Exactly one video frame per parquet row, at the row's timestamp (upstream matches by time).
        assert len(got.video_times) == t
        np.testing.assert_allclose(got.video_times, got.timestamps, atol=1e-4)
        assert got.images.shape == (t, SIZE, SIZE, 3) and got.images.dtype == np.uint8
        assert _psnr(got.images, source.images) > 30.0  # one more h264 generation than the source
        assert _psnr(got.images, want["images"]) > 28.0  # vs the rendered frames: two generations
    offsets = np.cumsum([0] + [len(r["state"]) for r in raw])
    for i in range(len(raw)):
        np.testing.assert_array_equal(read_groot_v2_episode(dst, i).index, np.arange(offsets[i], offsets[i + 1]))


def test_upstream_style_access(exported) -> None:
    """Read a step the way LeRobotSingleDataset does: pandas parquet, modality slices, tasks lookup."""
    _, dst, raw = exported
    info, episodes, tasks, modality, _ = _meta(dst)
    task_table = pd.DataFrame(tasks).set_index("task_index")
    ep = episodes[1]
    chunk = ep["episode_index"] // info["chunks_size"]
    df = pd.read_parquet(dst / info["data_path"].format(episode_chunk=chunk, episode_index=ep["episode_index"]))
    assert len(df) == ep["length"]
    for g, r in modality["action"].items():
        block = np.stack(df[ACTION_KEY])[:, np.arange(r["start"], r["end"])]
        np.testing.assert_array_equal(block, raw[1]["action"][:, r["start"] : r["end"]], err_msg=g)
    for key, meta in modality["annotation"].items():
        column = meta.get("original_key") or f"annotation.{key}"
        assert task_table.loc[df[column].tolist()]["task"].tolist() == [raw[1]["task"]] * len(df)
    video = modality["video"]["ego_view"]["original_key"]
    assert (dst / info["video_path"].format(episode_chunk=chunk, episode_index=1, video_key=video)).is_file()


# ---------------------------------------------------------------------------------------- cli / checks
def test_validator_reports_damage(exported, tmp_path) -> None:
    _, dst, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(dst, broken)
    (broken / f"videos/chunk-000/{IMAGE_KEY}/episode_000001.mp4").unlink()
    modality = json.loads((broken / "meta/modality.json").read_text())
    modality["state"]["right_hand"]["end"] = 99
    (broken / "meta/modality.json").write_text(json.dumps(modality))
    problems = validate_groot_v2(broken)
    assert any("episode_000001.mp4" in p for p in problems)
    assert any("state.right_hand" in p for p in problems)


def test_cli(exported, tmp_path) -> None:
    src, _, _ = exported
    from sage_gr00t.cli import export_groot as module

    out = tmp_path / "cli_v2"
    assert module.main(["--src", str(src), "--dst", str(out)]) == 0
    assert module.main(["--src", str(src), "--dst", str(out)]) == 2  # refuses to overwrite silently
    assert module.main(["--src", str(src), "--dst", str(out), "--overwrite", "--no-check"]) == 0
    assert validate_groot_v2(out, decode_videos=False) == []
    assert (out / "meta" / "sage_episodes.jsonl").is_file()
    assert not out.with_name(out.name + ".tmp-export").exists()
