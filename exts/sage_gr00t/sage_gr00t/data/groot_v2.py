"""Export our datasets (LeRobot v3.0 + modality.json) to the "GR00T LeRobot" layout (LeRobot v2.0).

Upstream Isaac-GR00T N1.5 (`gr00t/data/dataset.py`, `LeRobotSingleDataset`) cannot read LeRobot v3.0
(many episodes per parquet/mp4 file); it reads the v2.0 layout, one file per episode:

    meta/info.json          codebase_version "v2.0", data_path / video_path templates, chunks_size, features
    meta/episodes.jsonl     {"episode_index", "tasks": [str], "length"}    (trajectory ids and lengths)
    meta/tasks.jsonl        {"task_index", "task"}                           (annotation index -> text)
    meta/modality.json      GR00T's state/action index ranges, video keys, annotation keys
    meta/stats.json         per-column mean/std/min/max/q01/q99 (upstream recomputes it, and tries to
                            write it into the dataset, when it is missing or incomplete)
    data/chunk-{c:03d}/episode_{i:06d}.parquet
    videos/chunk-{c:03d}/observation.images.ego_view/episode_{i:06d}.mp4      (c = i // chunks_size)

What upstream's loader needs from these files (read from its source, n1.5-release):
  * the chunk of an episode is `episode_index // info["chunks_size"]`, paths come from the templates;
  * a video feature's `names` hold "height"/"width" and either "channel" + `video_info["video.fps"]`
    (what its demo data uses, and what we write) or "channels" + `info["video.fps"]`;
  * frames are looked up by the parquet `timestamp` column (nearest frame pts), so frame i must have
    pts i / fps and the mp4 must hold exactly `length` frames (its cached loader concatenates all);
  * a language key `annotation.<x>` reads the int column named by `original_key`, or, when that is
    absent, the column `annotation.<x>` itself, and maps it through tasks.jsonl. Its schema doc asks
    for the dedicated `annotation.<x>` column, so we write it and leave `original_key` out.

The exporter reads episodes through `load_episode` (LeRobot's own loader), so anything LeRobot can
read is exported; `read_groot_v2_episode` parses the v2 files independently (pyarrow + PyAV).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sage_gr00t.data.lerobot_dataset import (
    ACTION_KEY,
    DEFAULT_REPO_ID,
    EPISODES_FILE,
    IMAGE_KEY,
    MODALITY_FILE,
    STATE_KEY,
    load_episode,
    local_only,
    read_modality,
)

CODEBASE_VERSION = "v2.0"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
DEFAULT_CHUNKS_SIZE = 1000  # LeRobot v2.0's and GR00T's demo data's value
STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")  # upstream's DatasetStatisticalValues fields
REQUIRED_META = ("meta/info.json", "meta/episodes.jsonl", "meta/tasks.jsonl", "meta/modality.json",
                 "meta/stats.json")


# ---------------------------------------------------------------------------------------- helpers
def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def annotation_columns(modality: dict) -> list[str]:
    """Parquet columns holding annotation task indices: `annotation.<key>` for each modality key."""
    return [f"annotation.{k}" for k in (modality.get("annotation") or {})]


def _v2_modality(src_modality: dict) -> dict:
    """Our modality.json with annotations pointing at their dedicated `annotation.<key>` columns.

    Upstream falls back to the column named like the key when `original_key` is absent, which is the
    convention of its schema doc and demo data (`"human.action.task_description": {}`).
    """
    out = {k: json.loads(json.dumps(v)) for k, v in src_modality.items() if k != "annotation"}
    if src_modality.get("annotation"):
        out["annotation"] = {k: {} for k in src_modality["annotation"]}
    return out


def encode_video(path: Path, frames: np.ndarray, fps: int, *, crf: int = 18, gop: int = 2) -> None:
    """(T, H, W, 3) uint8 -> h264/yuv420p mp4, frame i at pts i/fps (what upstream's demo videos use).

    A short GOP keeps random access cheap: upstream seeks to each sampled timestamp while training.
    """
    import av

    t, h, w, c = frames.shape
    if c != 3 or h % 2 or w % 2:
        raise ValueError(f"frames of shape {frames.shape}: need RGB with even height/width for yuv420p")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": str(crf), "g": str(gop), "bf": "0"}  # no B-frames: pts == decode order
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decode_video(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of an mp4 as (T, H, W, 3) uint8 plus their presentation times in seconds."""
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base))
    return np.stack(frames), np.asarray(times)


def _column_stats(values: np.ndarray) -> dict[str, list[float]]:
    """Statistics over frames (axis 0) the way upstream computes them (float32 values, 2-D)."""
    v = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    return {
        "mean": np.mean(v, axis=0).tolist(), "std": np.std(v, axis=0).tolist(),
        "min": np.min(v, axis=0).tolist(), "max": np.max(v, axis=0).tolist(),
        "q01": np.quantile(v, 0.01, axis=0).tolist(), "q99": np.quantile(v, 0.99, axis=0).tolist(),
    }


def _to_table(arrays: dict[str, np.ndarray]) -> Any:
    """Numpy columns -> arrow table; vectors become fixed_size_list<float32>[D] as LeRobot writes them."""
    import pyarrow as pa

    cols = {}
    for name, arr in arrays.items():
        if arr.ndim == 2:
            flat = pa.array(np.ascontiguousarray(arr, np.float32).reshape(-1), pa.float32())
            cols[name] = pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
        else:
            cols[name] = pa.array(arr)
    return pa.table(cols)


def _source_tasks(src: Path, repo_id: str) -> dict[str, int]:
    """Task text -> index as the source dataset numbers them (kept, so indices survive the export)."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    with local_only():
        meta = LeRobotDatasetMetadata(repo_id, root=src)
    tasks = meta.tasks  # DataFrame indexed by task text with a task_index column
    return {str(text): int(idx) for text, idx in zip(tasks.index, tasks["task_index"], strict=True)}


# ---------------------------------------------------------------------------------------- export
@dataclass
class ExportSummary:
    dst: Path
    episodes: int
    frames: int
    tasks: int
    seconds: float = 0.0


def export_groot_v2(
    src: str | Path,
    dst: str | Path,
    *,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
    crf: int = 18,
    gop: int = 2,
    overwrite: bool = False,
    repo_id: str = DEFAULT_REPO_ID,
    progress: Any = None,
) -> ExportSummary:
    """Convert the dataset at `src` (our writer's v3.0 + modality.json) to GR00T LeRobot v2.0 at `dst`.

    Writes into `dst.tmp-export` and renames at the end, so `dst` is either complete or absent.
    `progress(i, n)` is called after each episode when given.
    """
    import time

    import pyarrow.parquet as pq

    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if dst.exists():
        if not overwrite:
            raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it.")
        shutil.rmtree(dst)
    tmp = dst.with_name(dst.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "meta").mkdir(parents=True)

    src_info = json.loads((src / "meta" / "info.json").read_text())
    modality = read_modality(src)
    fps = int(src_info["fps"])
    features = src_info["features"]
    task_ids = _source_tasks(src, repo_id)
    ann_cols = annotation_columns(modality)
    video_keys = {k: v.get("original_key") or k for k, v in modality.get("video", {}).items()}
    if set(video_keys.values()) != {IMAGE_KEY}:
        raise ValueError(f"expected one video, {IMAGE_KEY}; modality.json lists {video_keys}")
    state_dim, action_dim = int(features[STATE_KEY]["shape"][0]), int(features[ACTION_KEY]["shape"][0])

    n_episodes = int(src_info["total_episodes"])
    episodes_rows: list[dict] = []
    columns: dict[str, list[np.ndarray]] = {}
    index = 0
    for ep_index in range(n_episodes):
        ep = load_episode(src, ep_index, repo_id=repo_id)
        t = len(ep.state)
        if ep.images.shape[0] != t or ep.action.shape != (t, action_dim) or ep.state.shape[1] != state_dim:
            raise ValueError(f"episode {ep_index}: inconsistent lengths/shapes in the source")
        task_index = task_ids[ep.task]
        chunk = ep_index // chunks_size
        # Timestamps are rewritten as frame_index / fps: the video is encoded with exactly those pts,
        # and LeRobot's source timestamps are the same values (float32) by construction.
        timestamps = (np.arange(t, dtype=np.float64) / fps).astype(np.float32)
        frame_index = np.arange(t, dtype=np.int64)
        arrays: dict[str, np.ndarray] = {
            STATE_KEY: ep.state,
            ACTION_KEY: ep.action,
            "timestamp": timestamps,
            "frame_index": frame_index,
            "episode_index": np.full(t, ep_index, np.int64),
            "index": index + frame_index,
            "task_index": np.full(t, task_index, np.int64),
            # one task per episode in our data: every annotation column holds its index
            **{col: np.full(t, task_index, np.int64) for col in ann_cols},
            "next.done": frame_index == t - 1,
        }
        path = tmp / DATA_PATH.format(episode_chunk=chunk, episode_index=ep_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_to_table(arrays), path)
        for key in video_keys.values():
            encode_video(tmp / VIDEO_PATH.format(episode_chunk=chunk, episode_index=ep_index, video_key=key),
                         ep.images, fps, crf=crf, gop=gop)
        for name, arr in arrays.items():
            columns.setdefault(name, []).append(arr)
        episodes_rows.append({"episode_index": ep_index, "tasks": [ep.task], "length": t})
        index += t
        if progress is not None:
            progress(ep_index + 1, n_episodes)

    tasks_rows = [{"task_index": i, "task": text} for text, i in sorted(task_ids.items(), key=lambda kv: kv[1])]
    image_shape = [int(s) for s in features[IMAGE_KEY]["shape"]]
    scalar = {"shape": [1], "names": None}
    v2_features: dict[str, dict] = {
        IMAGE_KEY: {
            "dtype": "video", "shape": image_shape, "names": ["height", "width", "channel"],
            "video_info": {"video.fps": float(fps), "video.codec": "h264", "video.pix_fmt": "yuv420p",
                           "video.is_depth_map": False, "has_audio": False},
        },
        STATE_KEY: {"dtype": "float32", "shape": [state_dim], "names": list(features[STATE_KEY]["names"])},
        ACTION_KEY: {"dtype": "float32", "shape": [action_dim], "names": list(features[ACTION_KEY]["names"])},
        "timestamp": {"dtype": "float32", **scalar},
        "frame_index": {"dtype": "int64", **scalar},
        "episode_index": {"dtype": "int64", **scalar},
        "index": {"dtype": "int64", **scalar},
        "task_index": {"dtype": "int64", **scalar},
        **{col: {"dtype": "int64", **scalar} for col in ann_cols},
        "next.done": {"dtype": "bool", **scalar},
    }
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": src_info.get("robot_type"),
        "total_episodes": n_episodes,
        "total_frames": index,
        "total_tasks": len(tasks_rows),
        "total_videos": n_episodes * len(video_keys),
        "total_chunks": math.ceil(n_episodes / chunks_size),
        "chunks_size": chunks_size,
        "fps": float(fps),
        "splits": {"train": f"0:{n_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": v2_features,
    }
    meta = tmp / "meta"
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    _write_jsonl(meta / "episodes.jsonl", episodes_rows)
    _write_jsonl(meta / "tasks.jsonl", tasks_rows)
    (meta / "modality.json").write_text(json.dumps(_v2_modality(modality), indent=4))
    stats = {name: _column_stats(np.concatenate(parts)) for name, parts in columns.items()}
    (meta / "stats.json").write_text(json.dumps(stats, indent=4))
    if (src / EPISODES_FILE).is_file():  # seeds etc.: extra file, ignored by upstream's loader
        shutil.copy2(src / EPISODES_FILE, tmp / EPISODES_FILE)
    os.replace(tmp, dst)
    return ExportSummary(dst, n_episodes, index, len(tasks_rows), time.perf_counter() - start)


# ---------------------------------------------------------------------------------------- reader
@dataclass
class GrootV2Episode:
    """One episode parsed from the v2 files alone (no LeRobot code involved)."""

    episode_index: int
    images: np.ndarray  # (T, H, W, 3) uint8, frame chosen per parquet timestamp like upstream does
    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, D) float32
    timestamps: np.ndarray  # (T,) float32 seconds
    frame_index: np.ndarray  # (T,) int64
    index: np.ndarray  # (T,) int64, global
    task_index: np.ndarray  # (T,) int64
    annotations: dict[str, list[str]]  # 'annotation.<key>' -> per-frame text via tasks.jsonl
    video_times: np.ndarray  # pts (seconds) of every decoded frame in the mp4
    parquet_path: Path = field(default_factory=Path)
    video_path: Path = field(default_factory=Path)

    @property
    def task(self) -> str:
        texts = {t for v in self.annotations.values() for t in v}
        if len(texts) != 1:
            raise ValueError(f"episode {self.episode_index} has annotations {texts}, not one task")
        return texts.pop()


def groot_v2_paths(root: str | Path, episode_index: int) -> tuple[Path, dict[str, Path]]:
    """(parquet path, {video_key: mp4 path}) resolved the way upstream's loader does."""
    root = Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    modality = json.loads((root / MODALITY_FILE).read_text())
    chunk = episode_index // int(info["chunks_size"])
    data = root / info["data_path"].format(episode_chunk=chunk, episode_index=episode_index)
    videos = {}
    for name, meta in modality.get("video", {}).items():
        key = meta.get("original_key") or name
        videos[name] = root / info["video_path"].format(episode_chunk=chunk, episode_index=episode_index,
                                                        video_key=key)
    return data, videos


def read_groot_v2_episode(root: str | Path, episode_index: int) -> GrootV2Episode:
    """Parse one episode from the v2 files with pyarrow and PyAV."""
    import pyarrow.parquet as pq

    root = Path(root)
    modality = json.loads((root / MODALITY_FILE).read_text())
    tasks = {r["task_index"]: r["task"] for r in _read_jsonl(root / "meta" / "tasks.jsonl")}
    data_path, videos = groot_v2_paths(root, episode_index)
    if len(videos) != 1:
        raise ValueError(f"expected one video stream, modality.json lists {list(videos)}")
    video_path = next(iter(videos.values()))
    table = pq.read_table(data_path)

    def matrix(col: str) -> np.ndarray:
        return np.stack(table.column(col).to_pylist()).astype(np.float32)

    timestamps = table.column("timestamp").to_numpy()
    frames, times = decode_video(video_path)
    # Nearest frame per timestamp: upstream's decord path does exactly this.
    nearest = np.abs(times[:, None] - timestamps[None, :].astype(np.float64)).argmin(axis=0)
    annotations = {}
    for key, meta in (modality.get("annotation") or {}).items():
        col = meta.get("original_key") or f"annotation.{key}"
        annotations[f"annotation.{key}"] = [tasks[int(i)] for i in table.column(col).to_pylist()]
    return GrootV2Episode(
        episode_index=episode_index,
        images=frames[nearest],
        state=matrix(STATE_KEY),
        action=matrix(ACTION_KEY),
        timestamps=timestamps,
        frame_index=table.column("frame_index").to_numpy(),
        index=table.column("index").to_numpy(),
        task_index=table.column("task_index").to_numpy(),
        annotations=annotations,
        video_times=times,
        parquet_path=data_path,
        video_path=video_path,
    )


# ---------------------------------------------------------------------------------------- checks
def validate_groot_v2(root: str | Path, *, decode_videos: bool = True) -> list[str]:
    """Everything upstream's loader relies on, checked from the files; returns problems (empty = ok)."""
    import pyarrow.parquet as pq

    root = Path(root)
    problems = [f"missing {p}" for p in REQUIRED_META if not (root / p).is_file()]
    if problems:
        return problems
    info = json.loads((root / "meta" / "info.json").read_text())
    modality = json.loads((root / MODALITY_FILE).read_text())
    episodes = _read_jsonl(root / "meta" / "episodes.jsonl")
    tasks = _read_jsonl(root / "meta" / "tasks.jsonl")
    stats = json.loads((root / "meta" / "stats.json").read_text())
    feats = info["features"]
    task_text = {r["task_index"]: r["task"] for r in tasks}

    if info.get("codebase_version") != CODEBASE_VERSION:
        problems.append(f"codebase_version {info.get('codebase_version')!r}")
    if [e["episode_index"] for e in episodes] != list(range(len(episodes))):
        problems.append("episodes.jsonl indices are not 0..N-1")
    if info["total_episodes"] != len(episodes) or info["total_tasks"] != len(tasks):
        problems.append("info.json totals disagree with episodes.jsonl / tasks.jsonl")
    if info["total_frames"] != sum(e["length"] for e in episodes):
        problems.append("total_frames != sum of episode lengths")
    if sorted(task_text) != list(range(len(tasks))):
        problems.append("tasks.jsonl indices are not 0..N-1")
    for kind, feature in (("state", STATE_KEY), ("action", ACTION_KEY)):
        width = feats[feature]["shape"][0]
        for g, r in modality[kind].items():
            if not 0 <= r["start"] < r["end"] <= width:
                problems.append(f"modality {kind}.{g} range {r} outside {feature} width {width}")
    for name, meta in modality["video"].items():
        ft = feats.get(meta.get("original_key") or name)
        if ft is None or ft["dtype"] != "video":
            problems.append(f"video {name}: no video feature in info.json")
        elif not {"height", "width"} <= set(ft["names"]) or not (
                ("channel" in ft["names"] and "video.fps" in ft.get("video_info", {}))
                or ("channels" in ft["names"] and "video.fps" in ft.get("info", {}))):
            problems.append(f"video {name}: names/fps not in a form upstream reads")
    for col, st in stats.items():
        if set(STAT_NAMES) - set(st):
            problems.append(f"stats.json {col} lacks {set(STAT_NAMES) - set(st)}")
    for kind in (STATE_KEY, ACTION_KEY):
        if kind not in stats:
            problems.append(f"stats.json lacks {kind}")

    expected_index = 0
    for ep in episodes:
        i, length = ep["episode_index"], ep["length"]
        data_path, videos = groot_v2_paths(root, i)
        missing = [p for p in (data_path, *videos.values()) if not p.is_file()]
        if missing:
            problems.extend(f"episode {i}: missing {p.relative_to(root)}" for p in missing)
            continue
        table = pq.read_table(data_path)
        if set(table.column_names) != set(feats) - {k for k, f in feats.items() if f["dtype"] == "video"}:
            problems.append(f"episode {i}: parquet columns {table.column_names} != info.json features")
        if table.num_rows != length:
            problems.append(f"episode {i}: {table.num_rows} rows, episodes.jsonl says {length}")
        for col in (STATE_KEY, ACTION_KEY):
            widths = {len(v) for v in table.column(col).to_pylist()}
            if widths != {feats[col]["shape"][0]}:
                problems.append(f"episode {i}: {col} widths {widths}")
        if table.column("episode_index").to_pylist() != [i] * length:
            problems.append(f"episode {i}: episode_index column")
        if table.column("frame_index").to_pylist() != list(range(length)):
            problems.append(f"episode {i}: frame_index column")
        if table.column("index").to_pylist() != list(range(expected_index, expected_index + length)):
            problems.append(f"episode {i}: global index column")
        expected_index += length
        ann_texts = set()
        for col in ["task_index", *annotation_columns(modality)]:
            ids = set(table.column(col).to_pylist())
            if not ids <= set(task_text):
                problems.append(f"episode {i}: {col} refers to unknown tasks {ids - set(task_text)}")
            elif col != "task_index":
                ann_texts |= {task_text[t] for t in ids}
        if ann_texts and not ann_texts <= set(ep["tasks"]):
            problems.append(f"episode {i}: annotation texts {ann_texts} not in episodes.jsonl tasks")
        if decode_videos:
            for name, path in videos.items():
                frames, times = decode_video(path)
                h, w = (feats[modality["video"][name].get("original_key") or name]["shape"][k] for k in (0, 1))
                if frames.shape != (length, h, w, 3):
                    problems.append(f"episode {i}: video {name} decodes to {frames.shape}")
                elif not np.allclose(times, table.column("timestamp").to_numpy(), atol=0.5 / info["fps"]):
                    problems.append(f"episode {i}: video {name} pts disagree with parquet timestamps")
    return problems
