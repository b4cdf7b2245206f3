"""Training the GR00T-architecture policy on demonstration datasets (flow-matching loss).

Data path: LeRobot datasets (GR00T modality layout) -> a compact training cache (frames resized to
the backbone's resolution in one mp4 + an npz of states/actions/episode ids) -> in-memory tensors.
The cache exists so training can run on a machine without LeRobot or the simulator (e.g. a GPU box).
Resumable: `train_state.pt` holds model, EMA, optimizer, scheduler, step and RNG states.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sage_gr00t.modality import action_key, state_key
from sage_gr00t.policy.gr00t.checkpoint import save_checkpoint
from sage_gr00t.policy.gr00t.config import PRESETS, Gr00tConfig
from sage_gr00t.policy.gr00t.grounding import GROUNDING_DIMS, GroundingHead, grounding_loss
from sage_gr00t.policy.gr00t.model import Gr00tModel, count_parameters
from sage_gr00t.policy.gr00t.processor import (
    EMBODIMENT_IDS,
    EmbodimentMetadata,
    Gr00tProcessor,
    compute_statistics,
    resize_images,
)

GROUPS = ("left_arm", "right_arm", "left_hand", "right_hand")


@dataclass
class TrainConfig:
    datasets: list[str] = field(default_factory=list)  # LeRobot dataset folders
    out: str = "outputs/policy"
    cache: str | None = None  # training-cache folder (built from `datasets` if missing)
    shards: list[str] = field(default_factory=list)  # sage-collect-mix output folders (read instead of a cache)
    preset: str = "compact"
    max_episodes: int = 100  # per dataset
    steps: int = 20000  # 0 with max_minutes: fit as many steps as the time budget allows
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    ema_decay: float = 0.999
    shift_pixels: int = 6  # random-shift image augmentation
    checkpoint_every: int = 2000
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    max_minutes: float | None = None  # stop early (and save) when the wall-clock budget runs out
    final_dtype: str = "float32"  # "float16" halves the shipped checkpoint
    # Frames annotated with a subtask ("pick up the red block and place it in the red bin") are shown
    # with it this often, else with the episode's whole-task instruction: one policy for both the
    # plain controller (command) and SAGE's L-module (subtask language).
    subtask_language_prob: float = 0.5
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning), not from scratch
    # "bf16": mixed precision (weights, optimizer and EMA stay fp32); a small model on a GPU is bound by kernel
    # count and memory traffic, which bf16 autocast cuts.
    amp: str = "none"
    # Auxiliary language grounding (policy/gr00t/grounding.py): regress the named object's and target's positions
    # from the VL tokens, weighted this much against the flow-matching loss (0: off). Needs labelled shards.
    grounding_weight: float = 0.0
    # Train without any instruction this often (classifier-free language guidance at inference, 0: never).
    language_dropout: float = 0.0
    # Where the whole-task instruction is shown, show one of the episode's paraphrases instead this often (other
    # words, same plan: plan/commands.py's training templates, stored by the collector), so that the policy acts
    # on what the words mean, not on the six phrasings a task declares.
    paraphrase_prob: float = 0.0
    # Grade the grounding loss on whole-task frames of multi-goal episodes too ("sort the blocks"): the label is
    # the demonstrator's current subtask, so the tokens must find the next block and the bin of its colour from
    # the image. Only meaningful where the words and the scene decide that subtask: an expert collected with
    # plan_order "instruction" (the shards' "shuffled" flips a coin for the first block; v9 measured no gain).
    grounding_whole_task: bool = False
    # For this many first steps the grounding loss trains its head only (the VL features detached): a head that
    # starts at random (it is not saved in checkpoints) sends random gradients into a trained backbone, the
    # probe-then-fine-tune recipe (LP-FT, Kumar et al. 2022). 0: the backbone takes them from step 0.
    grounding_head_warmup: int = 0


# ---------------------------------------------------------------------------------------- cache
def _write_video(path: Path, frames: np.ndarray) -> None:
    import imageio

    # yuv444p keeps the colour of small objects (a 7-pixel apple) that 4:2:0 chroma would smear.
    with imageio.get_writer(path, fps=20, codec="libx264", quality=None, macro_block_size=1,
                            ffmpeg_params=["-crf", "14", "-pix_fmt", "yuv444p", "-preset", "medium"]) as writer:
        for frame in frames:
            writer.append_data(frame)


def _read_video(path: Path) -> np.ndarray:
    try:
        import cv2

        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame[:, :, ::-1])
        cap.release()
        if frames:
            return np.stack(frames)
    except ImportError:
        pass
    import imageio

    return np.stack(list(imageio.v3.imiter(path)))


def build_cache(datasets: list[str], cache: Path, image_size: int, max_episodes: int) -> Path:
    """Decode LeRobot datasets through LeRobot's loader and write the training cache."""
    from sage_gr00t.data.lerobot_dataset import load_dataset, load_episode, read_modality

    frames, states, actions, episode_ids, task_ids, subtask_ids = [], [], [], [], [], []
    tasks: list[str] = []
    modality, robot = None, None
    episode_counter = 0
    for root in datasets:
        modality_here = read_modality(root)
        modality = modality or modality_here
        if modality_here["state"] != modality["state"] or modality_here["action"] != modality["action"]:
            raise ValueError(f"Dataset {root} has a different state/action layout than {datasets[0]}.")
        info = json.loads((Path(root) / "meta" / "info.json").read_text())
        robot = robot or info.get("robot_type")
        n = min(load_dataset(root).meta.total_episodes, max_episodes)
        for index in tqdm(range(n), desc=f"cache {Path(root).name}"):
            episode = load_episode(root, index)
            images = resize_images(episode.images, image_size)  # the same resize as at inference
            frames.append(((images + 1.0) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy())
            states.append(episode.state)
            actions.append(episode.action)
            episode_ids.append(np.full(len(episode.state), episode_counter))
            for text in [episode.task, *sorted(set(episode.subtask_per_frame() or []))]:
                if text not in tasks:
                    tasks.append(text)
            task_ids.append(np.full(len(episode.state), tasks.index(episode.task)))
            per_frame = episode.subtask_per_frame()
            subtask_ids.append(np.array([tasks.index(t) for t in per_frame]) if per_frame is not None
                               else np.full(len(episode.state), -1))
            episode_counter += 1
    cache.mkdir(parents=True, exist_ok=True)
    _write_video(cache / "frames.mp4", np.concatenate(frames))
    np.savez_compressed(cache / "arrays.npz", state=np.concatenate(states), action=np.concatenate(actions),
                        episode=np.concatenate(episode_ids), task=np.concatenate(task_ids),
                        subtask=np.concatenate(subtask_ids))
    (cache / "meta.json").write_text(json.dumps(
        {"tasks": tasks, "modality": modality, "robot_type": robot, "image_size": image_size,
         "datasets": [str(d) for d in datasets]}, indent=1))
    return cache


@dataclass
class DemoData:
    images: torch.Tensor  # (N, S, S, 3) uint8
    state: np.ndarray  # (N, Ds)
    action: np.ndarray  # (N, Da)
    episode: np.ndarray  # (N,)
    task: np.ndarray  # (N,)
    tasks: list[str]
    modality: dict
    robot_type: str
    subtask: np.ndarray | None = None  # (N,) index into `tasks` of the frame's subtask language, -1: none
    # Grounding labels (policy/gr00t/grounding.py): (N, 6) positions of the subtask's object and target (NaN:
    # unknown), and (N,) whether the whole-task instruction names that same pair.
    grounding: np.ndarray | None = None
    grounding_task: np.ndarray | None = None
    # (N, K) indices into `tasks` of the frame's episode instruction said in other words (-1: none).
    paraphrase: np.ndarray | None = None

    @classmethod
    def load(cls, cache: Path) -> DemoData:
        meta = json.loads((cache / "meta.json").read_text())
        arrays = np.load(cache / "arrays.npz")
        raw = cache / "frames.npy"  # shards store raw frames (no codec needed where they are written)
        images = np.load(raw) if raw.is_file() else _read_video(cache / "frames.mp4")
        if len(images) != len(arrays["state"]):
            raise ValueError(f"Cache {cache} is inconsistent: {len(images)} frames vs {len(arrays['state'])} states.")
        return cls(torch.from_numpy(images), arrays["state"].astype(np.float32), arrays["action"].astype(np.float32),
                   arrays["episode"], arrays["task"], meta["tasks"], meta["modality"], meta["robot_type"],
                   arrays.get("subtask"), arrays.get("grounding"), arrays.get("grounding_task"),
                   arrays.get("paraphrase"))

    def save(self, folder: Path, extra: dict | None = None) -> Path:
        """Write this data as a training-cache folder with raw frames (`frames.npy`)."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "frames.npy", self.images.numpy())
        subtask = self.subtask if self.subtask is not None else np.full(len(self.task), -1)
        labels = {} if self.grounding is None else {"grounding": self.grounding.astype(np.float32),
                                                   "grounding_task": self._grounding_task()}
        paraphrase = {} if self.paraphrase is None else {"paraphrase": self.paraphrase.astype(np.int32)}
        np.savez(folder / "arrays.npz", state=self.state, action=self.action, episode=self.episode, task=self.task,
                 subtask=subtask, **labels, **paraphrase)
        (folder / "meta.json").write_text(json.dumps(
            {"tasks": self.tasks, "modality": self.modality, "robot_type": self.robot_type,
             "image_size": int(self.images.shape[1]), **(extra or {})}, indent=1))
        return folder

    def _grounding(self) -> np.ndarray:
        if self.grounding is None:
            return np.full((len(self.task), GROUNDING_DIMS), np.nan, dtype=np.float32)
        return self.grounding.astype(np.float32)

    def _grounding_task(self) -> np.ndarray:
        if self.grounding_task is None:
            return np.zeros(len(self.task), dtype=bool)
        return self.grounding_task.astype(bool)

    def _paraphrase(self, width: int) -> np.ndarray:
        """(N, width) paraphrase indices, -1 padded."""
        out = np.full((len(self.task), width), -1, dtype=np.int64)
        if self.paraphrase is not None and self.paraphrase.size:
            out[:, : self.paraphrase.shape[1]] = self.paraphrase
        return out

    @classmethod
    def concat(cls, parts: list[DemoData]) -> DemoData:
        """One dataset from several caches of the same robot and layout (task strings and episodes renumbered)."""
        first = parts[0]
        for part in parts[1:]:
            if part.modality != first.modality or part.robot_type != first.robot_type:
                raise ValueError("Training caches differ in robot or state/action layout; train them separately.")
        tasks = sorted({t for p in parts for t in p.tasks})
        index = {t: i for i, t in enumerate(tasks)}
        remap, episodes, offset = [], [], 0
        width = max((p.paraphrase.shape[1] for p in parts if p.paraphrase is not None), default=0)
        for part in parts:
            lookup = np.array([index[t] for t in part.tasks])
            sub = part.subtask if part.subtask is not None else np.full(len(part.task), -1)
            para = part._paraphrase(width)
            remap.append((lookup[part.task], np.where(sub >= 0, lookup[np.maximum(sub, 0)], -1),
                          np.where(para >= 0, lookup[np.maximum(para, 0)], -1)))
            _, episode = np.unique(part.episode, return_inverse=True)
            episodes.append(episode + offset)
            offset += int(episode.max()) + 1 if len(episode) else 0
        return cls(
            images=torch.cat([p.images for p in parts]), state=np.concatenate([p.state for p in parts]),
            action=np.concatenate([p.action for p in parts]), episode=np.concatenate(episodes),
            task=np.concatenate([r[0] for r in remap]), tasks=tasks, modality=first.modality,
            robot_type=first.robot_type, subtask=np.concatenate([r[1] for r in remap]),
            grounding=np.concatenate([p._grounding() for p in parts]),
            grounding_task=np.concatenate([p._grounding_task() for p in parts]),
            paraphrase=np.concatenate([r[2] for r in remap]) if width else None,
        )

    @classmethod
    def from_episodes(cls, episodes: list[dict], image_size: int, robot_type: str) -> DemoData:
        """In-memory episodes {images (T,H,W,3) uint8, state.<g> (T,d), action.<g> (T,d), task str,
        optional subtask: T per-frame subtask strings, optional grounding: (T, 6) labels with grounding_task:
        bool, optional task_paraphrases: the task string in other words}."""
        def layout(prefix: str) -> dict:
            spec, start = {}, 0
            for g in GROUPS:
                dim = episodes[0][f"{prefix}.{g}"].shape[1]
                spec[g] = {"start": start, "end": start + dim}
                start += dim
            return spec

        tasks = sorted({e["task"] for e in episodes} | {t for e in episodes for t in e.get("subtask", [])}
                       | {t for e in episodes for t in e.get("task_paraphrases", [])})
        index = {t: i for i, t in enumerate(tasks)}
        subtask = np.concatenate([np.array([index[t] for t in e["subtask"]]) if "subtask" in e
                                  else np.full(len(e["images"]), -1) for e in episodes])
        width = max((len(e.get("task_paraphrases", [])) for e in episodes), default=0)
        paraphrase = None
        if width:
            rows = [[index[t] for t in e.get("task_paraphrases", [])] for e in episodes]
            paraphrase = np.concatenate([np.tile(np.array(r + [-1] * (width - len(r))), (len(e["images"]), 1))
                                         for r, e in zip(rows, episodes, strict=True)])
        images = [((resize_images(e["images"], image_size) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
                  for e in episodes]
        return cls(
            images=torch.cat(images),
            state=np.concatenate([np.concatenate([e[state_key(g)] for g in GROUPS], 1) for e in episodes]),
            action=np.concatenate([np.concatenate([e[action_key(g)] for g in GROUPS], 1) for e in episodes]),
            episode=np.concatenate([np.full(len(e["images"]), i) for i, e in enumerate(episodes)]),
            task=np.concatenate([np.full(len(e["images"]), index[e["task"]]) for e in episodes]),
            tasks=tasks, modality={"state": layout("state"), "action": layout("action")}, robot_type=robot_type,
            subtask=subtask, **_episode_grounding(episodes), paraphrase=paraphrase,
        )

    def groups(self, kind: str) -> dict[str, int]:
        return {g: r["end"] - r["start"] for g, r in self.modality[kind].items()}

    def metadata(self) -> EmbodimentMetadata:
        def split(values: np.ndarray, kind: str) -> dict[str, np.ndarray]:
            return {g: values[:, r["start"] : r["end"]] for g, r in self.modality[kind].items()}

        return EmbodimentMetadata(
            tag=self.robot_type, embodiment_id=EMBODIMENT_IDS.get(self.robot_type, 31),
            video_keys=["ego_view"], state_groups=self.groups("state"), action_groups=self.groups("action"),
            statistics={"state": compute_statistics(split(self.state, "state")),
                        "action": compute_statistics(split(self.action, "action"))},
        )


def _episode_grounding(episodes: list[dict]) -> dict:
    """DemoData's grounding fields from episodes of which some (or none) carry labels."""
    if not any("grounding" in e for e in episodes):
        return {}
    labels = [np.asarray(e["grounding"], np.float32) if "grounding" in e
              else np.full((len(e["images"]), GROUNDING_DIMS), np.nan, np.float32) for e in episodes]
    task = [np.full(len(e["images"]), bool(e.get("grounding_task", False))) for e in episodes]
    return {"grounding": np.concatenate(labels), "grounding_task": np.concatenate(task)}


# ---------------------------------------------------------------------------------------- batches
class BatchSampler:
    """Random frames -> model batches with 16-step action chunks (padded by repeating the last action)."""

    def __init__(self, data: DemoData, model: Gr00tModel, meta: EmbodimentMetadata, device: torch.device,
                 shift_pixels: int, subtask_language_prob: float = 0.0, language_dropout: float = 0.0,
                 paraphrase_prob: float = 0.0, grounding_whole_task: bool = False) -> None:
        self.data, self.device, self.shift = data, device, shift_pixels
        self.grounding_whole_task = grounding_whole_task
        self.subtask_prob = subtask_language_prob
        self.language_dropout = language_dropout
        self.paraphrase_prob = paraphrase_prob
        processor = Gr00tProcessor(model.config, {meta.tag: meta})
        horizon = model.config.action_head.action_horizon
        n = len(data.state)
        last = np.zeros(n, dtype=np.int64)
        for ep in np.unique(data.episode):
            idx = np.flatnonzero(data.episode == ep)
            last[idx] = idx[-1]
        offsets = np.arange(horizon)[None, :]
        self.chunk_index = np.minimum(np.arange(n)[:, None] + offsets, last[:, None])
        state = processor.pad_state(processor.normalize_state(data.state, meta))
        action, mask = processor.pad_action(processor.normalize_action(data.action, meta))
        self.state = torch.from_numpy(state).to(device)
        self.action = torch.from_numpy(action).to(device)
        self.mask = torch.from_numpy(mask).to(device)
        ids, attn = model.backbone.tokenizer([*data.tasks, ""])  # the last row: no instruction (dropout)
        self.task_ids, self.task_attn = ids.to(device), attn.to(device)
        self.no_text = len(data.tasks)
        labels = data._grounding()
        known = np.isfinite(labels)
        # Per-dimension normalization over the labelled frames, so that every coordinate weighs alike.
        filled = np.where(known, labels, 0.0)
        count = np.maximum(known.sum(0), 1)
        mean = filled.sum(0) / count
        std = np.sqrt((np.where(known, labels - mean, 0.0) ** 2).sum(0) / count).clip(min=0.02)
        self.grounding_stats = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
        self.grounding = torch.from_numpy(((labels - mean) / std).astype(np.float32)).to(device)
        self.grounding_task = torch.from_numpy(data._grounding_task()).to(device)
        self.task = torch.from_numpy(data.task).to(device)
        subtask = data.subtask if data.subtask is not None else np.full(len(data.task), -1)
        self.subtask = torch.from_numpy(subtask.astype(np.int64)).to(device)
        width = data.paraphrase.shape[1] if data.paraphrase is not None else 0
        self.paraphrase = torch.from_numpy(data._paraphrase(max(1, width))).to(device)  # (N, >= 1), -1: none
        self.paraphrase_count = (self.paraphrase >= 0).sum(1)
        self.images = data.images.to(device)
        self.embodiment_id = meta.embodiment_id

    def __call__(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self.state), (batch_size,), generator=generator)
        chunk = torch.from_numpy(self.chunk_index[idx.numpy()]).to(self.device)
        idx = idx.to(self.device)
        images = self.images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if self.shift > 0:  # random shift: pad by replication, crop back at a random offset
            s = images.shape[-1]
            padded = torch.nn.functional.pad(images, [self.shift] * 4, mode="replicate")
            ox = torch.randint(0, 2 * self.shift + 1, (batch_size,), generator=generator)
            oy = torch.randint(0, 2 * self.shift + 1, (batch_size,), generator=generator)
            span = torch.arange(s, device=self.device)
            rows = (oy.to(self.device)[:, None] + span)[:, :, None]  # (B, s, 1)
            cols = (ox.to(self.device)[:, None] + span)[:, None, :]  # (B, 1, s)
            batch_index = torch.arange(batch_size, device=self.device)[:, None, None]
            images = padded.permute(0, 2, 3, 1)[batch_index, rows, cols].permute(0, 3, 1, 2)
        task = self.task[idx]
        shows_subtask = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        if self.subtask_prob > 0:
            subtask = self.subtask[idx]
            pick = torch.rand(batch_size, generator=generator).to(self.device) < self.subtask_prob
            shows_subtask = pick & (subtask >= 0)
            task = torch.where(shows_subtask, subtask, task)
        if self.paraphrase_prob > 0:  # the whole-task instruction in other words (same plan, same grounding)
            count = self.paraphrase_count[idx]
            pick = (torch.rand(batch_size, generator=generator).to(self.device) < self.paraphrase_prob) & (count > 0)
            which = (torch.rand(batch_size, generator=generator).to(self.device) * count.clamp(min=1)).long()
            alternative = self.paraphrase[idx].gather(1, which.clamp(max=self.paraphrase.shape[1] - 1)[:, None])[:, 0]
            task = torch.where(pick & ~shows_subtask, alternative, task)
        shown = torch.ones(batch_size, dtype=torch.bool, device=self.device)
        if self.language_dropout > 0:  # classifier-free guidance needs the unconditional model too
            shown = torch.rand(batch_size, generator=generator).to(self.device) >= self.language_dropout
            task = torch.where(shown, task, torch.full_like(task, self.no_text))
        labels = self.grounding[idx]
        # A label is graded only where the text shown names it: the subtask's words always do, the whole-task
        # instruction in one-goal episodes (and in all with `grounding_whole_task`; see TrainConfig for when).
        named = shown & (shows_subtask | self.grounding_task[idx] | self.grounding_whole_task)
        return {
            "grounding": labels,
            "grounding_valid": torch.isfinite(labels) & named[:, None],
            "pixel_values": images,
            "input_ids": self.task_ids[task],
            "attention_mask": self.task_attn[task],
            "state": self.state[idx].unsqueeze(1),
            "action": self.action[chunk],
            "action_mask": self.mask[chunk],
            "embodiment_id": torch.full((batch_size,), self.embodiment_id, device=self.device),
        }


# ---------------------------------------------------------------------------------------- loop
def losses_with_grounding(model: Gr00tModel, grounder: GroundingHead, batch: dict[str, torch.Tensor],
                          head_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(flow-matching loss, grounding loss) of one batch; `head_only`: the grounding loss reaches its head, not
    the backbone (TrainConfig.grounding_head_warmup)."""
    features, mask = model.encode(batch)
    action = model.action_loss(features, mask, batch)
    probed = features.detach() if head_only else features
    aux = grounding_loss(grounder(probed, mask).float(), batch["grounding"], batch["grounding_valid"])
    return action, aux


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def plot_loss(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) and return the final checkpoint folder (`<out>/final`)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    if device.type == "cuda":  # TF32 matmuls: several times the fp32 rate on Ampere and later, same loss curve
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model_cfg: Gr00tConfig = PRESETS[cfg.preset]()
    sources: dict[str, dict] | None = None  # per task: demonstrations and dreams trained on (provenance.json)
    if cfg.shards:
        from sage_gr00t.data.shards import provenance, shard_dirs

        shards = shard_dirs(cfg.shards)
        data = DemoData.concat([DemoData.load(d) for d in tqdm(shards, desc="load shards")])
        sources = provenance(shards)
    else:
        cache = Path(cfg.cache) if cfg.cache else out / "cache"
        if not (cache / "meta.json").is_file():
            if not cfg.datasets:
                raise ValueError(f"No training cache at {cache} and no --datasets to build one from.")
            build_cache(cfg.datasets, cache, model_cfg.backbone.image_size, cfg.max_episodes)
        data = DemoData.load(cache)
    meta = data.metadata()
    model = Gr00tModel(model_cfg)
    if cfg.init_from:
        from sage_gr00t.policy.gr00t.checkpoint import check_state_dict, load_checkpoint

        initial, embodiments, _ = load_checkpoint(cfg.init_from)
        state = {k: v.float() for k, v in initial.state_dict().items()}
        report = check_state_dict(model, state)
        # A preset may only add modules to the checkpoint's (e.g. compact_v3's zero-initialized FiLM on compact_v2).
        if report["unexpected"] or report["shape_mismatch"]:
            raise ValueError(f"--init-from {cfg.init_from} does not fit preset {cfg.preset!r}: unexpected "
                             f"{report['unexpected'][:4]}, shapes differ {report['shape_mismatch'][:4]}.")
        model.load_state_dict(state, strict=False)
        if report["missing"]:
            print(f"new in {cfg.preset}, initialized fresh: {len(report['missing'])} tensors "
                  f"({', '.join(report['missing'][:3])}, ...)")
        known = embodiments.get(meta.tag)
        if known is not None and (known.state_groups, known.action_groups) == (meta.state_groups, meta.action_groups):
            # Keep the normalization the weights were trained with: new statistics would shift every input and
            # target the model has learned.
            meta = known
        print(f"initialized from {cfg.init_from}" + (" (its normalization statistics)" if meta is known else ""))
    model = model.to(device)
    swa = torch.optim.swa_utils
    ema = swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(cfg.ema_decay))
    if cfg.amp not in ("none", "bf16"):
        raise ValueError(f"--amp {cfg.amp!r}: use 'none' or 'bf16'.")
    if cfg.grounding_head_warmup < 0:
        raise ValueError(f"--grounding-head-warmup must be >= 0, got {cfg.grounding_head_warmup}.")
    if cfg.grounding_weight < 0 or not 0 <= cfg.language_dropout < 1:
        raise ValueError("--grounding-weight must be >= 0 and --language-dropout in [0, 1).")
    if not 0 <= cfg.paraphrase_prob <= 1:
        raise ValueError(f"--paraphrase-prob must be in [0, 1], got {cfg.paraphrase_prob}.")
    grounder = None
    if cfg.grounding_weight > 0:
        if data.grounding is None or not np.isfinite(data.grounding).any():
            raise ValueError("--grounding-weight needs grounding labels: collect the shards again with this "
                             "version of sage-collect-mix (the shards hold no `grounding` array).")
        grounder = GroundingHead(model.backbone.output_dim).to(device)
    trained = [*model.parameters(), *(grounder.parameters() if grounder is not None else [])]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")  # one kernel per step instead of one per tensor

    def lr_lambda(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    generator = torch.Generator().manual_seed(cfg.seed)
    step = 0
    state_file = out / "train_state.pt"
    if state_file.is_file():  # resume
        state = torch.load(state_file, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu())
        if grounder is not None and "grounder" in state:
            grounder.load_state_dict(state["grounder"])
        torch.set_rng_state(state["torch_rng"].cpu())
        step = state["step"]
        print(f"resumed from step {step}")
    sampler = BatchSampler(data, model, meta, device, cfg.shift_pixels, cfg.subtask_language_prob,
                           cfg.language_dropout, cfg.paraphrase_prob, cfg.grounding_whole_task)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    loss_csv = out / "loss.csv"
    new_file = not loss_csv.is_file() or step == 0
    log = loss_csv.open("w" if new_file else "a", newline="")
    writer = csv.writer(log)
    if new_file:
        writer.writerow(["step", "loss", "lr", "seconds", "grounding"])
    print(f"training {count_parameters(model) / 1e6:.2f}M parameters on {device}, {len(data.state)} frames, "
          f"{len(np.unique(data.episode))} episodes, tasks {data.tasks[:3]}...")

    def save(step_: int) -> None:
        save_checkpoint(out / f"checkpoint-{step_}", ema.module, {meta.tag: meta})
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "step": step_,
                    **({"grounder": grounder.state_dict()} if grounder is not None else {})},
                   str(state_file) + ".tmp")
        Path(str(state_file) + ".tmp").replace(state_file)
        plot_loss(loss_csv, out / "loss.png")

    model.train()
    start, running, running_aux, first_step = time.time(), [], [], step
    fit_to_budget = cfg.steps <= 0 and cfg.max_minutes is not None
    rate_start = start
    if fit_to_budget:
        cfg.steps = 10**9  # replaced by a measured value after the first 400 steps
    progress = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True)
    try:
        while step < cfg.steps:
            if cfg.max_minutes is not None and time.time() - start > 60 * cfg.max_minutes:
                print(f"time budget of {cfg.max_minutes} min reached at step {step}: saving a resumable state")
                save(step)
                break
            batch = sampler(cfg.batch_size, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
                if grounder is None:
                    loss = model(batch)
                else:
                    action, aux = losses_with_grounding(model, grounder, batch, step < cfg.grounding_head_warmup)
                    running_aux.append(aux.detach())
                    loss = action + cfg.grounding_weight * aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            scheduler.step()
            ema.update_parameters(model)
            step += 1
            running.append(loss.item())
            if step % cfg.log_every == 0:
                elapsed = round(time.time() - start, 1)
                aux_mean = float(torch.stack(running_aux).mean()) if running_aux else ""
                writer.writerow([step, float(np.mean(running)), scheduler.get_last_lr()[0], elapsed, aux_mean])
                log.flush()
                progress.set_postfix(loss=f"{np.mean(running):.4f}")
                running, running_aux = [], []
            progress.update(1)
            if step == 100:
                rate_start = time.time()
            if fit_to_budget and step == 400:  # rate measured after warm-up (allocator, cudnn autotune)
                rate = 300 / (time.time() - rate_start)
                cfg.steps = step + int(0.93 * rate * (60 * cfg.max_minutes - (time.time() - start)))
                progress.total = cfg.steps
                print(f"{rate:.1f} steps/s: training for {cfg.steps} steps within {cfg.max_minutes} min")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save(step)
    except KeyboardInterrupt:
        print(f"interrupted at step {step}: saving a resumable checkpoint")
        save(step)
        raise
    finally:
        progress.close()
        log.close()
    final = save_checkpoint(out / "final", ema.module, {meta.tag: meta}, dtype=getattr(torch, cfg.final_dtype))
    if sources is not None:
        if cfg.init_from and (Path(cfg.init_from) / "provenance.json").is_file():
            inherited = json.loads((Path(cfg.init_from) / "provenance.json").read_text())
            sources = {**inherited, **sources}  # the tasks the initial weights learned, unless retrained here
        (final / "provenance.json").write_text(json.dumps(sources, indent=1))
    plot_loss(loss_csv, out / "loss.png")
    elapsed = time.time() - start
    rate = (step - first_step) / max(elapsed, 1e-9)
    print(f"done: step {step}, {step - first_step} steps in {elapsed:.0f} s ({rate:.1f} steps/s on {device})"
          f" -> {final}")
    return final
