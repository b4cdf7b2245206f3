"""Demonstrations as GR00T-flavoured LeRobot datasets, written and read with LeRobot's own code.

Layout: whatever `lerobot==0.6.1` writes (codebase v3.0: chunked `data/`, `videos/`, `meta/`), plus
  * `meta/modality.json`  -- GR00T's map from `observation.state` / `action` index ranges to the named
    groups left_arm/right_arm/left_hand/right_hand, the `ego_view` video and the task annotation;
  * `meta/sage_episodes.jsonl` -- one line per kept episode (seed, task, embodiment, randomization),
    so every episode can be regenerated from its seed, and, when the observations carried one, its
    per-step subtask language as segments `subtasks: [[first_frame, "pick up the red block ..."], ...]`
    (GR00T's `annotation.human.action.task_description`; `Episode.subtask_per_frame()` expands it);
  * `meta/sage_collection.json` -- collector state (next seed, failed seeds) for resuming.

Interruption safety: LeRobot keeps its parquet writers open (footers are only written by `finalize`),
so a killed process would leave unreadable files. `GrootDatasetWriter` therefore finalizes on exit
from its context (exceptions, KeyboardInterrupt) and, every `checkpoint_every` episodes, finalizes
and reopens the dataset and snapshots `meta/`. If a process dies without finalizing (SIGKILL, power
loss), the next open restores the last snapshot and deletes files it does not reference.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from sage_gr00t.modality import EGO_VIEW, LANGUAGE_KEY, SUBTASK_LANGUAGE_KEY, action_key, state_key
from sage_gr00t.modality import JOINT_GROUPS as STATE_GROUPS
from sage_gr00t.tasks.protocols import TaskEnv

logger = logging.getLogger(__name__)

IMAGE_KEY = "observation.images.ego_view"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
VIDEO_NAME = "ego_view"  # GR00T modality name of the camera (`video.ego_view`)
DEFAULT_REPO_ID = "sage_gr00t/local"  # only a label: these datasets never go to the hub
SUBTASK_KEY = SUBTASK_LANGUAGE_KEY  # per-step subtask language (GR00T's name)
EPISODES_FILE = "meta/sage_episodes.jsonl"
COLLECTION_FILE = "meta/sage_collection.json"
MODALITY_FILE = "meta/modality.json"
_SNAPSHOT_DIR = ".sage_checkpoint"  # copy of meta/ at the last clean finalize
_DIRTY_MARKER = ".sage_writing"  # exists while a writer has unfinalized data on disk


# ---------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class DatasetLayout:
    """Shapes of one embodiment's demonstrations; everything else is derived from it."""

    group_sizes: tuple[tuple[str, int], ...]  # (group, dim) in STATE_GROUPS order
    image_shape: tuple[int, int, int]  # (H, W, 3)
    fps: int
    robot_type: str

    @classmethod
    def from_env(cls, env: TaskEnv) -> DatasetLayout:
        """Read group sizes and image size from a `TabletopTaskEnv` (they depend on the embodiment)."""
        spaces = env.observation_space.spaces
        sizes = tuple((g, int(spaces[state_key(g)].shape[0])) for g in STATE_GROUPS)
        for g, d in sizes:
            a = int(env.action_space.spaces[action_key(g)].shape[0])
            if a != d:
                raise ValueError(f"state.{g} has {d} dims but action.{g} has {a}; the layout assumes equal.")
        image = tuple(int(s) for s in spaces[EGO_VIEW].shape)
        fps = float(env.config.control_hz)
        if abs(fps - round(fps)) > 1e-9:
            raise ValueError(f"LeRobot needs an integer fps; control_hz is {fps}.")
        return cls(sizes, image, round(fps), env.embodiment.name)  # type: ignore[arg-type]

    @property
    def dim(self) -> int:
        return sum(d for _, d in self.group_sizes)

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for g, d in self.group_sizes:
            out[g] = slice(start, start + d)
            start += d
        return out

    def features(self, use_videos: bool = True) -> dict[str, dict]:
        names = [f"{g}_{i}" for g, d in self.group_sizes for i in range(d)]
        return {
            IMAGE_KEY: {
                "dtype": "video" if use_videos else "image",
                "shape": self.image_shape,
                "names": ["height", "width", "channels"],
            },
            STATE_KEY: {"dtype": "float32", "shape": (self.dim,), "names": names},
            ACTION_KEY: {"dtype": "float32", "shape": (self.dim,), "names": names},
        }

    def modality(self) -> dict:
        """GR00T `meta/modality.json` (same schema as Isaac-GR00T's demo data, n1.5-release)."""
        groups = {g: {"start": s.start, "end": s.stop} for g, s in self.slices().items()}
        return {
            "state": groups,
            "action": dict(groups),  # absolute joint-position targets (GR00T's default)
            "video": {VIDEO_NAME: {"original_key": IMAGE_KEY}},
            "annotation": {LANGUAGE_KEY.removeprefix("annotation."): {"original_key": "task_index"}},
        }

    def frame(self, obs: dict, action: dict) -> dict:
        """One LeRobot frame from a GR00T-named observation and the action taken from it."""
        return {
            IMAGE_KEY: np.asarray(obs[EGO_VIEW], dtype=np.uint8),
            STATE_KEY: np.concatenate(
                [np.asarray(obs[state_key(g)], np.float32) for g, _ in self.group_sizes]
            ),
            ACTION_KEY: np.concatenate(
                [np.asarray(action[action_key(g)], np.float32) for g, _ in self.group_sizes]
            ),
            "task": str(obs[LANGUAGE_KEY]),
        }

    def split(self, vec: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
        """(..., dim) -> {f'{prefix}.{group}': (..., d)}; prefix is 'state' or 'action'."""
        return {f"{prefix}.{g}": vec[..., s] for g, s in self.slices().items()}


# ---------------------------------------------------------------------------------------- helpers
def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Make LeRobot fail loudly instead of contacting the Hugging Face hub.

    LeRobot only downloads when files it needs are missing under `root`; patching its hub entry points
    turns that silent fallback into an error (and keeps tests from hanging on an offline machine).
    """
    from lerobot.datasets import dataset_metadata, lerobot_dataset

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise FileNotFoundError("Dataset files are missing locally and hub access is disabled (local_only).")

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(lerobot_dataset, "snapshot_download", refuse))
        stack.enter_context(mock.patch.object(lerobot_dataset, "get_safe_version", refuse))
        stack.enter_context(mock.patch.object(dataset_metadata, "get_safe_version", refuse))
        stack.enter_context(
            mock.patch.object(dataset_metadata.LeRobotDatasetMetadata, "_pull_from_repo", refuse)
        )
        yield


@contextlib.contextmanager
def _quiet_lerobot() -> Iterator[None]:
    """Keep LeRobot's writer from spamming the terminal (it would break the collector's progress bar).

    * its streaming encoder ends each episode with `av.logging.restore_default_callback()`, after which
      FFmpeg prints INFO chatter (x264 statistics, muxer notes) straight to stderr;
    * its `SuppressProgressBars` re-enables HF `datasets` bars globally on exit, so `Map:` bars appear.
    """
    import av.logging
    from datasets.utils import logging as ds_logging
    from lerobot.utils.utils import SuppressProgressBars

    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        with (
            mock.patch.object(av.logging, "restore_default_callback", lambda: None),
            mock.patch.object(SuppressProgressBars, "__exit__", lambda *_: None),
        ):
            yield
    finally:
        av.logging.set_level(None)  # PyAV's default: drop FFmpeg logs
        if bars:
            ds_logging.enable_progress_bar()


def _require_dataset(root: Path) -> None:
    info = root / "meta" / "info.json"
    if not info.is_file():
        raise FileNotFoundError(f"No LeRobot dataset at {root} (meta/info.json missing).")
    try:
        episodes = int(json.loads(info.read_text()).get("total_episodes", 0))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"Corrupted LeRobot dataset metadata {info}: {exc}.") from exc
    if episodes < 1:
        # LeRobot itself would try the hub for the missing data and say "hub access is disabled".
        raise ValueError(f"Dataset {root} holds no episodes; collect some first (sage-collect --out {root}).")


# ---------------------------------------------------------------------------------------- writer
@dataclass
class EpisodeRecord:
    episode_index: int
    seed: int | None
    length: int
    task: str
    extra: dict = field(default_factory=dict)


class GrootDatasetWriter:
    """Append episodes to a GR00T LeRobot dataset with LeRobot's writer; resumes an existing one.

    Use as a context manager: leaving the block (normally or by an exception) drops the unfinished
    episode and finalizes, so every episode saved before is kept and loadable.
    """

    def __init__(
        self,
        root: str | Path,
        layout: DatasetLayout,
        *,
        repo_id: str = DEFAULT_REPO_ID,
        use_videos: bool = True,
        vcodec: str = "h264",
        crf: int = 18,
        checkpoint_every: int | None = 10,
        streaming_encoding: bool = True,
    ) -> None:
        from lerobot.configs.video import RGBEncoderConfig

        self.root = Path(root)
        self.layout = layout
        self.repo_id = repo_id
        self.checkpoint_every = checkpoint_every
        self._streaming = streaming_encoding and use_videos
        # h264 rather than LeRobot's AV1 default: every decoder GR00T's loaders use (torchcodec, PyAV,
        # decord) reads it; crf 18 keeps compression error to a few uint8 levels.
        self._encoder = RGBEncoderConfig(vcodec=vcodec, crf=crf, g=2)
        self._since_checkpoint = 0
        self._rows_before_recovery: list[dict] | None = None  # sidecar rows a recovery found (see _recover)
        self._pending = 0
        self._subtasks: list[list] = []  # [first_frame, language] segments of the episode in flight
        if (self.root / "meta" / "info.json").is_file():
            self._recover()
            self._check_compatible(use_videos)
            self.ds = self._open_resume()
            # Staging PNGs of an episode that never got saved would be encoded into the next one.
            shutil.rmtree(self.root / "images", ignore_errors=True)
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise FileExistsError(f"{self.root} exists, is not empty and holds no LeRobot dataset.")
            if self.root.exists():
                self.root.rmdir()  # LeRobotDataset.create insists on creating the folder itself
            from lerobot.datasets.lerobot_dataset import LeRobotDataset

            self.ds = LeRobotDataset.create(
                repo_id=repo_id, fps=layout.fps, features=layout.features(use_videos), root=self.root,
                robot_type=layout.robot_type, use_videos=use_videos, rgb_encoder=self._encoder,
                streaming_encoding=self._streaming, metadata_buffer_size=1,
            )
            _write_json_atomic(self.root / MODALITY_FILE, layout.modality())
            self._snapshot_meta()
        self.records = self._load_records()
        self._finalized = False

    # ------------------------------------------------------------------ open / recover
    def _open_resume(self) -> Any:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        with local_only(), _quiet_lerobot():
            ds = LeRobotDataset.resume(
                self.repo_id, root=self.root, rgb_encoder=self._encoder, streaming_encoding=self._streaming
            )
        ds.meta._metadata_buffer_size = 1  # resume() has no such argument; flush episode meta each save
        return ds

    def _check_compatible(self, use_videos: bool) -> None:
        info = json.loads((self.root / "meta" / "info.json").read_text())
        want = self.layout.features(use_videos)
        for key, ft in want.items():
            have = info["features"].get(key)
            if have is None or have["dtype"] != ft["dtype"] or tuple(have["shape"]) != tuple(ft["shape"]):
                raise ValueError(
                    f"Existing dataset at {self.root} has feature {key}={have}, but this run records {ft} "
                    "(different embodiment, image size or video setting?). Use another --out folder."
                )
        if int(info["fps"]) != self.layout.fps:
            raise ValueError(f"Existing dataset at {self.root} has fps {info['fps']}, not {self.layout.fps}.")

    def _snapshot_meta(self) -> None:
        snap = self.root / _SNAPSHOT_DIR
        tmp = self.root / (_SNAPSHOT_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.root / "meta", tmp)
        shutil.rmtree(snap, ignore_errors=True)
        os.replace(tmp, snap)

    def _recover(self) -> None:
        """After an unclean exit, roll meta/ back to the last snapshot and drop unreferenced files."""
        if not (self.root / _DIRTY_MARKER).exists():
            return
        snap = self.root / _SNAPSHOT_DIR
        logger.warning("%s was not finalized by its last writer; restoring the last checkpoint.", self.root)
        self._rows_before_recovery = _read_jsonl(self.root / EPISODES_FILE)  # names what the rollback loses
        shutil.rmtree(self.root / "meta")
        shutil.copytree(snap, self.root / "meta")
        from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

        with local_only():
            meta = LeRobotDatasetMetadata(self.repo_id, root=self.root)
        keep: set[Path] = set()
        if meta.total_episodes > 0:
            for ep in meta.episodes:
                keep.add(self.root / meta.data_path.format(
                    chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"]))
                for vk in meta.video_keys:
                    keep.add(self.root / meta.video_path.format(
                        video_key=vk, chunk_index=ep[f"videos/{vk}/chunk_index"],
                        file_index=ep[f"videos/{vk}/file_index"]))
        for sub, pattern in (("data", "*.parquet"), ("videos", "*.mp4")):
            for path in (self.root / sub).rglob(pattern):
                if path not in keep:
                    path.unlink()
        shutil.rmtree(self.root / "images", ignore_errors=True)
        for tmp in self.root.glob("tmp*"):  # LeRobot's encoder scratch dirs (tempfile.mkdtemp(dir=root))
            if tmp.is_dir():
                shutil.rmtree(tmp)
        (self.root / _DIRTY_MARKER).unlink()

    def _load_records(self) -> list[EpisodeRecord]:
        """Sidecar records, trimmed to the episodes LeRobot actually holds."""
        total = self.ds.meta.total_episodes
        rows = _read_jsonl(self.root / EPISODES_FILE)
        # Episodes saved after the last checkpoint of a writer that was killed: LeRobot's files lost them, the
        # sidecar kept their records (the caller says exactly which, and collects their seeds again).
        before = self._rows_before_recovery if self._rows_before_recovery is not None else rows
        self.lost_records = [EpisodeRecord(**r) for r in before[total:]]
        if self.lost_records:
            logger.warning("%s: %d episodes saved after the last checkpoint were lost (seeds %s).", self.root,
                           len(self.lost_records), [r.seed for r in self.lost_records])
        if len(rows) != total:
            rows = rows[:total]
            if len(rows) < total:
                logger.warning("%s: %d episodes lack seed records.", self.root, total - len(rows))
            path = self.root / EPISODES_FILE
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return [EpisodeRecord(**r) for r in rows]

    # ------------------------------------------------------------------ recording
    @property
    def num_episodes(self) -> int:
        return int(self.ds.meta.total_episodes)

    @property
    def pending_frames(self) -> int:
        return self._pending

    def add_step(self, obs: dict, action: dict) -> None:
        """Record the observation and the action the expert took from it."""
        if self._pending == 0:
            (self.root / _DIRTY_MARKER).touch()
            self._subtasks: list[list] = []
        subtask = obs.get(SUBTASK_KEY)
        if subtask is not None and (not self._subtasks or self._subtasks[-1][1] != subtask):
            self._subtasks.append([self._pending, str(subtask)])
        self.ds.add_frame(self.layout.frame(obs, action))
        self._pending += 1

    def discard_episode(self) -> None:
        if self._pending:
            with _quiet_lerobot():
                self.ds.clear_episode_buffer()
            self._pending = 0

    def save_episode(self, seed: int | None = None, **extra: Any) -> int:
        """Write the buffered episode to disk now; returns its episode index."""
        if self._pending == 0:
            raise ValueError("save_episode() called with no recorded steps.")
        index = self.num_episodes
        task = self.ds.writer.episode_buffer["task"][0]
        length = self._pending
        if self._subtasks:
            extra = {**extra, "subtasks": self._subtasks}
        (self.root / _DIRTY_MARKER).touch()
        with _quiet_lerobot():
            self.ds.save_episode()
        self._pending = 0
        record = EpisodeRecord(index, seed, length, task, extra)
        _append_jsonl(self.root / EPISODES_FILE, record.__dict__)
        self.records.append(record)
        self._since_checkpoint += 1
        if self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every:
            self.checkpoint()
        return index

    def checkpoint(self) -> None:
        """Finalize what is on disk (valid parquet footers), snapshot meta/, and reopen for appending."""
        self.discard_episode()
        with _quiet_lerobot():
            self.ds.finalize()
        self._snapshot_meta()
        (self.root / _DIRTY_MARKER).unlink(missing_ok=True)
        self._since_checkpoint = 0
        self.ds = self._open_resume()

    def finalize(self) -> None:
        if self._finalized:
            return
        self.discard_episode()
        with _quiet_lerobot():
            self.ds.finalize()
        self._snapshot_meta()
        (self.root / _DIRTY_MARKER).unlink(missing_ok=True)
        self._finalized = True

    def __enter__(self) -> GrootDatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finalize()


# ---------------------------------------------------------------------------------------- reader
@dataclass
class Episode:
    """One episode read back through LeRobot's loader."""

    episode_index: int
    images: np.ndarray  # (T, H, W, 3) uint8
    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, D) float32
    task: str
    timestamps: np.ndarray  # (T,) seconds
    seed: int | None
    modality: dict
    record: dict = field(default_factory=dict)

    def subtask_per_frame(self) -> list[str] | None:
        """Per-frame subtask language from the record's segments (None when none was recorded).
        Frames before the first segment (none in expert data) get the episode's task."""
        segments = self.record.get("extra", {}).get("subtasks")
        if not segments:
            return None
        out = [self.task] * len(self.state)
        for i, (start, text) in enumerate(segments):
            end = segments[i + 1][0] if i + 1 < len(segments) else len(out)
            out[start:end] = [text] * (end - start)
        return out

    def groups(self, prefix: str) -> dict[str, np.ndarray]:
        """GR00T-named arrays: groups('state') -> {'state.left_arm': (T, 7), ...}; also 'action'."""
        vec = self.state if prefix == "state" else self.action
        return {f"{prefix}.{g}": vec[:, r["start"] : r["end"]] for g, r in self.modality[prefix].items()}


def read_modality(root: str | Path) -> dict:
    return json.loads((Path(root) / MODALITY_FILE).read_text())


def read_episode_records(root: str | Path) -> list[dict]:
    return _read_jsonl(Path(root) / EPISODES_FILE)


def read_episode_actions(root: str | Path) -> dict[int, np.ndarray]:
    """Each episode's action rows, (T, D) float32 by episode index, read from the dataset's parquet files with
    pyarrow alone: no frame is decoded and LeRobot need not be installed (what replaying a recording needs)."""
    import pyarrow.parquet as pq

    files = sorted((Path(root) / "data").glob("**/*.parquet"))
    if not files:
        raise FileNotFoundError(f"No parquet data under {root}/data: not a LeRobot dataset written by sage-collect.")
    rows: dict[int, list[np.ndarray]] = {}
    for file in files:
        table = pq.read_table(file, columns=["episode_index", "frame_index", ACTION_KEY])
        order = np.lexsort((table["frame_index"].to_numpy(), table["episode_index"].to_numpy()))
        episodes = table["episode_index"].to_numpy()[order]
        actions = np.asarray(table[ACTION_KEY].to_pylist(), dtype=np.float32)[order]
        for index in np.unique(episodes):
            rows.setdefault(int(index), []).append(actions[episodes == index])
    return {index: np.concatenate(parts) for index, parts in rows.items()}


def load_dataset(root: str | Path, episodes: list[int] | None = None, repo_id: str = DEFAULT_REPO_ID,
                 **kwargs: Any) -> Any:
    """`LeRobotDataset` over a local folder; never touches the network."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    _require_dataset(root)
    with local_only():
        return LeRobotDataset(repo_id, root=root, episodes=episodes, **kwargs)


def _to_uint8_hwc(image: Any) -> np.ndarray:
    """LeRobot returns CHW; videos as uint8 (return_uint8), PNG-backed images as float32 in [0, 1]."""
    array = image.permute(1, 2, 0).numpy()
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return array


def load_episode(root: str | Path, episode_index: int, repo_id: str = DEFAULT_REPO_ID) -> Episode:
    """Decode one episode (video frames as uint8) with LeRobot's loader."""
    ds = load_dataset(root, episodes=[episode_index], repo_id=repo_id, return_uint8=True)
    if episode_index < 0 or episode_index >= ds.meta.total_episodes:
        raise IndexError(f"Episode {episode_index} out of range; dataset has {ds.meta.total_episodes}.")
    items = [ds[i] for i in range(len(ds))]
    images = np.stack([_to_uint8_hwc(it[IMAGE_KEY]) for it in items])
    records = read_episode_records(root)
    record = records[episode_index] if episode_index < len(records) else {}
    return Episode(
        episode_index=episode_index,
        images=images,
        state=np.stack([it[STATE_KEY].numpy() for it in items]).astype(np.float32),
        action=np.stack([it[ACTION_KEY].numpy() for it in items]).astype(np.float32),
        task=str(items[0]["task"]),
        timestamps=np.array([float(it["timestamp"]) for it in items]),
        seed=record.get("seed"),
        modality=read_modality(root),
        record=record,
    )
