"""Dreams: synthetic demonstrations made in a private copy of the simulator during sleep.

The live robot's environment is never touched. A `DreamGenerator` builds its own task environment
(with domain randomization, so dreams vary what was experienced), runs the scripted expert from fresh
seeds, and keeps the successful episodes with per-frame whole-task and subtask language -- the same
format the policy was trained on. `focus` (subtasks that failed while awake) makes the expert follow
an instruction naming that subtask's object first, so the weak subtask is dreamt from the start scene.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sage_gr00t.modality import EGO_VIEW, STATE_PREFIX


@dataclass
class DreamConfig:
    task: str = "pick_apple"
    embodiment: str = "sage_humanoid"
    episodes_per_cycle: int = 2
    randomization: str = "train"  # profile in config/domain_randomization.yaml
    image_size: int = 224
    seed_start: int = 10_000_000  # dream seeds never overlap training (0..) or evaluation (1000..) seeds
    max_attempts_factor: int = 3  # attempts per wanted episode before giving up on a cycle
    thumbnail_size: int = 64


@dataclass
class Dream:
    task: str
    seed: int
    instruction: str
    subtasks: list[str]  # in the order they were dreamt
    steps: int
    episode: dict[str, Any]  # images (T,H,W,3) uint8, state.<g>/action.<g> (T,d), task, subtask (T strings)
    thumbnail: np.ndarray = field(repr=False)  # (s, s, 3) uint8: the first frame, for the panel
    # Where it came from: generator ("expert" / "mimic"), source episodes, transforms, randomization seed,
    # success (learn/mimic.py fills it; the memory store keeps it with the thumbnail).
    provenance: dict[str, Any] = field(default_factory=dict)


class DreamGenerator:
    def __init__(self, config: DreamConfig | None = None) -> None:
        from sage_gr00t.experts.scripted import ExpertConfig, ScriptedExpert
        from sage_gr00t.sim.randomization import DomainRandomizationConfig
        from sage_gr00t.tasks import make_env

        self.config = c = config or DreamConfig()
        randomization = DomainRandomizationConfig.from_yaml(profile=c.randomization)
        self.env = make_env(c.task, embodiment=c.embodiment, randomization=randomization,
                            image_height=c.image_size, image_width=c.image_size)
        self.expert = ScriptedExpert(self.env, ExpertConfig(plan_order="shuffled"))
        self.next_seed = c.seed_start
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Dream no further episode after the one in flight (shutdown must not wait for a whole cycle)."""
        self._cancel.set()

    def close(self) -> None:
        self.env.close()

    def dream(self, focus: list[str] | None = None) -> list[Dream]:
        """Up to `episodes_per_cycle` successful expert episodes; `focus`: subtask languages to start with."""
        c = self.config
        dreams: list[Dream] = []
        for _ in range(c.episodes_per_cycle * c.max_attempts_factor):
            if len(dreams) >= c.episodes_per_cycle or self._cancel.is_set():
                break
            seed, self.next_seed = self.next_seed, self.next_seed + 1
            dream = self._episode(seed, focus[len(dreams) % len(focus)] if focus else None)
            if dream is not None:
                dreams.append(dream)
        return dreams

    def _episode(self, seed: int, first: str | None) -> Dream | None:
        from sage_gr00t.data.collect import run_expert_episode
        from sage_gr00t.data.lerobot_dataset import SUBTASK_KEY

        env, expert = self.env, self.expert
        rec: dict[str, list] = {"images": [], "subtask": []}

        def dream_weak_subtask_first() -> None:
            expert.plan.sort(key=lambda s: s.language != first)

        def record(obs: dict, action: dict) -> None:
            rec["images"].append(obs[EGO_VIEW])
            rec["subtask"].append(obs.get(SUBTASK_KEY, env.instruction))
            for key, value in (*((k, v) for k, v in obs.items() if k.startswith(STATE_PREFIX)), *action.items()):
                rec.setdefault(key, []).append(value)

        outcome = run_expert_episode(env, expert, seed, record,
                                     after_reset=dream_weak_subtask_first if first is not None else None)
        if not outcome.success:
            return None
        episode = {k: (v if k == "subtask" else np.stack(v)) for k, v in rec.items()}
        episode["task"] = env.instruction
        order = list(dict.fromkeys(rec["subtask"]))
        return Dream(self.config.task, seed, env.instruction, order, len(rec["images"]), episode,
                     _thumbnail(episode["images"][0], self.config.thumbnail_size),
                     {"generator": "expert", "seed": seed, "randomization": self.config.randomization,
                      "success": True})


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour downsample (no extra dependency; thumbnails only)."""
    h, w = image.shape[:2]
    rows = (np.arange(size) * h / size).astype(int)
    cols = (np.arange(size) * w / size).astype(int)
    return image[rows][:, cols].copy()
