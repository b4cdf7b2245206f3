"""Wake learning: small, trust-gated flow-matching updates of the live policy while it works.

The bridge hands every control step to `WakeLearner.observe`. The learner keeps the frames of the current
subtask (ego image, state, subtask language, the action the safety filter actually sent). When the L-module
reports that subtask DONE and the policy's component trust is above the gate, it takes a few small clipped
gradient steps of the flow-matching loss on those frames (plus a few frames replayed from earlier successful
segments, so one scene does not pull the policy all its way). Nothing is learnt from a failed subtask, a
segment with non-finite data, a hazard the safety filter stopped, or a camera hold.

Guard (`end_episode`): before the first update of a guard window the weights and optimizer state are
snapshotted, with the success rate of the episodes before it as the baseline. Once `guard_window` episodes
ran on the updated weights (or earlier, once enough of them failed that the drop is certain), the window's
success rate is compared with the baseline: a drop of more than `drop_threshold` restores the snapshot
bit for bit and pauses updates for `pause_episodes`; otherwise the current weights become the new "last
good" weights (the next update takes a fresh snapshot).

Updates run in the control step (no thread: the policy must never act on half-updated weights); their
cost is a handful of forward / backward passes of the compact model at batch 8 (`stats()["mean_update_s"]`).
The global torch RNG is left as it was (the update draws its noise in a forked RNG), so turning wake
learning on does not change the noise of anything else.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sage_gr00t.act.lmodule import DONE, FAILED
from sage_gr00t.act.safety import HAZARD_KINDS, INTERVENTION_KINDS, SafeCommand
from sage_gr00t.modality import EGO_VIEW, state_of
from sage_gr00t.skills import Subtask

UPDATED, REFUSED = "updated", "refused"


@dataclass
class WakeLearningConfig:
    enabled: bool = False
    lr: float = 1e-5  # a tenth of sleep's: wake data is one scene, on-policy and unverified by a second look
    weight_decay: float = 0.0  # decay would pull every weight at every update, also those the data never moved
    steps_per_update: int = 2  # ~0.4 s each at batch 8 on one CPU core (compact model): the update blocks the step
    batch_size: int = 8
    replay_batch: int = 2  # frames of each batch from earlier successful segments (when there are any)
    replay_segments: int = 8  # earlier successful segments kept for replay (model-sized frames)
    max_grad_norm: float = 0.5
    # The gate: every listed component trust must be at least this (the bridge's TrustEngine.components).
    min_trust: float = 0.6
    trust_components: tuple[str, ...] = ("gr00t_visual", "gr00t_language", "sage_execution")
    min_frames: int = 8  # shorter segments carry too little to learn from
    max_frames: int = 400  # a longer segment keeps its last frames (the ones that finished the subtask)
    # Safety interventions that disqualify a segment: hazards (workspace, table, non-finite, malformed).
    # Rate and range clamps are smoothing, not hazards; the executed (clamped) action is what is learnt.
    refuse_interventions: tuple[str, ...] = tuple(sorted(HAZARD_KINDS))
    subtask_language_prob: float = 0.5  # as in training: subtask language, else the whole command
    shift_pixels: int = 4  # the same random-shift augmentation as sleep
    # Guard
    guard_window: int = 5  # episodes on the updated weights judged against the baseline
    drop_threshold: float = 0.2  # revert when the window's success rate is this far below the baseline
    min_history: int = 3  # episodes seen before the first update (no baseline, no update)
    pause_episodes: int = 5  # no updates for this many episodes after a revert
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps_per_update < 1 or self.batch_size < 1 or self.guard_window < 1 or self.min_frames < 1:
            raise ValueError("steps_per_update, batch_size, guard_window and min_frames must be >= 1.")
        if not 0 <= self.replay_batch < self.batch_size:
            raise ValueError(f"replay_batch must be in [0, batch_size), got {self.replay_batch}.")
        if not (math.isfinite(self.lr) and self.lr > 0 and self.max_grad_norm > 0):
            raise ValueError("lr and max_grad_norm must be finite and > 0.")
        if not 0 <= self.drop_threshold <= 1 or self.min_history < 0 or self.pause_episodes < 0:
            raise ValueError("drop_threshold must be in [0, 1], min_history and pause_episodes >= 0.")
        if self.max_frames < self.min_frames:
            raise ValueError("max_frames must be >= min_frames.")
        unknown = set(self.refuse_interventions) - set(INTERVENTION_KINDS)
        if unknown:
            raise ValueError(f"unknown intervention kinds {sorted(unknown)}; have {INTERVENTION_KINDS}.")


@dataclass
class WakeEvent:
    """One closed segment: what the learner did with it and why."""

    kind: str  # updated / refused
    subtask: str
    frames: int
    reason: str = ""  # why refused ("failed", "trust", "non_finite", "hazard", "camera_hold", "short", ...)
    episode: int = 0  # index of the episode it happened in
    seconds: float = 0.0  # wall time of the update (data, steps), 0 when refused
    losses: list[float] = field(default_factory=list)  # the training loss of each step


@dataclass
class GuardEvent:
    kind: str  # reverted / accepted
    episode: int
    baseline: float
    window_rate: float
    episodes: int  # episodes judged


class _Segment:
    """The frames of one subtask as the policy met them."""

    def __init__(self, subtask: Subtask, instruction: str, max_frames: int) -> None:
        self.subtask, self.instruction = subtask, instruction
        self.images: deque[np.ndarray] = deque(maxlen=max_frames)
        self.states: deque[dict[str, np.ndarray]] = deque(maxlen=max_frames)
        self.actions: deque[dict[str, np.ndarray]] = deque(maxlen=max_frames)
        self.taint = ""  # the first reason this segment must not be learnt from

    def add(self, obs: dict, command: SafeCommand) -> None:
        state = {k: np.asarray(v, np.float32).reshape(-1) for k, v in state_of(obs).items()}
        action = {k: np.asarray(v, np.float32).reshape(-1) for k, v in command.action.items()}
        if not (all(np.isfinite(v).all() for v in state.values())
                and all(np.isfinite(v).all() for v in action.values())):
            self.taint = self.taint or "non_finite"
            return
        image = obs.get(EGO_VIEW)
        if image is None:
            self.taint = self.taint or "no_image"
            return
        self.images.append(np.array(image, np.uint8, copy=True))  # the env may reuse its buffer
        self.states.append(state)
        self.actions.append(action)

    def episode(self) -> dict[str, Any]:
        """As `DemoData.from_episodes` reads an episode."""
        out: dict[str, Any] = {"images": np.stack(self.images), "task": self.instruction or self.subtask.language,
                               "subtask": [self.subtask.language] * len(self.images)}
        for key in self.states[0]:
            out[key] = np.stack([s[key] for s in self.states])
        for key in self.actions[0]:
            out[key] = np.stack([a[key] for a in self.actions])
        return out


class WakeLearner:
    """Owns one optimizer over a `Gr00tNativePolicy`'s model and the guard's snapshot; see the module docstring."""

    def __init__(self, policy: Any, config: WakeLearningConfig | None = None) -> None:
        if not hasattr(policy, "model") or not hasattr(policy, "meta"):
            raise TypeError("Wake learning needs a learned native GR00T policy (a checkpoint folder), got "
                            f"{type(policy).__name__}.")
        self.policy, self.model = policy, policy.model
        self.config = c = config or WakeLearningConfig()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=c.lr, weight_decay=c.weight_decay)
        self.generator = torch.Generator().manual_seed(c.seed)
        self.segment: _Segment | None = None
        self.replay: deque[Any] = deque(maxlen=c.replay_segments)  # DemoData of earlier successful segments
        self.events: list[WakeEvent] = []
        self.guard_events: list[GuardEvent] = []
        # Guard state. `outcomes`: per episode (success, ran on weights later reverted).
        self.outcomes: list[tuple[bool, bool]] = []
        self.snapshot: dict[str, Any] | None = None
        self.baseline: float | None = None
        self.snapshot_episode = 0  # index into outcomes of the first episode on the updated weights
        self.paused_until = 0  # no updates before this many episodes are recorded
        self.reverts = 0

    # ------------------------------------------------------------------ episodes
    @property
    def episode(self) -> int:
        return len(self.outcomes)

    def begin_episode(self) -> None:
        self.segment = None

    def end_episode(self, success: bool | None) -> GuardEvent | None:
        """Record the episode's outcome (None counts as a failure) and run the guard."""
        self.segment = None
        self.outcomes.append((bool(success), False))
        return self._guard()

    # ------------------------------------------------------------------ control steps
    def observe(self, obs: dict, command: SafeCommand, subtask: Subtask | None, outcome: str,
                trust: Mapping[str, float], instruction: str = "") -> WakeEvent | None:
        """One control step (after act): the frame joins its subtask's segment; a closed subtask is learnt
        from or refused. `outcome`: the bridge's act outcome (running / done / failed / held / idle)."""
        c = self.config
        if not c.enabled or subtask is None or outcome == "idle":
            return None
        if self.segment is None or self.segment.subtask is not subtask:
            self.segment = _Segment(subtask, instruction, c.max_frames)
        segment = self.segment
        if outcome == "held":  # the camera was distrusted: the images (and the hold command) are not the policy's
            segment.taint = segment.taint or "camera_hold"
        else:
            hazards = {i.kind for i in command.interventions} & set(c.refuse_interventions)
            if hazards:
                segment.taint = segment.taint or "hazard"
            segment.add(obs, command)
        if outcome not in (DONE, FAILED):
            return None
        self.segment = None
        return self._close(segment, outcome == DONE, trust)

    def _refuse(self, segment: _Segment, reason: str) -> WakeEvent:
        event = WakeEvent(REFUSED, segment.subtask.language, len(segment.images), reason, self.episode)
        self.events.append(event)
        return event

    def _close(self, segment: _Segment, ok: bool, trust: Mapping[str, float]) -> WakeEvent:
        c = self.config
        if not ok:
            return self._refuse(segment, "failed")
        if segment.taint:
            return self._refuse(segment, segment.taint)
        if len(segment.images) < c.min_frames:
            return self._refuse(segment, "short")
        low = [k for k in c.trust_components if float(trust.get(k, 0.0)) < c.min_trust]
        if low:
            return self._refuse(segment, "trust")
        if self.episode < self.paused_until:
            return self._refuse(segment, "paused")
        if self.episode < c.min_history:
            return self._refuse(segment, "warmup")
        return self.update(segment)

    # ------------------------------------------------------------------ the update
    def _batches(self, segment: _Segment) -> tuple[Any, Any]:
        from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData

        c, model = self.config, self.model
        device = next(model.parameters()).device
        data = DemoData.from_episodes([segment.episode()], model.config.backbone.image_size,
                                      self.policy.embodiment)
        current = BatchSampler(data, model, self.policy.meta, device, shift_pixels=c.shift_pixels,
                               subtask_language_prob=c.subtask_language_prob)
        replay = None
        if self.replay and c.replay_batch > 0:
            replay = BatchSampler(DemoData.concat(list(self.replay)), model, self.policy.meta, device,
                                  shift_pixels=c.shift_pixels, subtask_language_prob=c.subtask_language_prob)
        return (data, current), replay

    def update(self, segment: _Segment) -> WakeEvent:
        """A few clipped flow-matching steps on the segment (+ replay). Steps with a non-finite loss or gradient
        are skipped, so the weights stay finite."""
        c, model = self.config, self.model
        t0 = time.perf_counter()
        (data, current), replay = self._batches(segment)
        if self.snapshot is None:  # the first update of a guard window: remember the weights it started from
            self._take_snapshot()
        losses: list[float] = []
        was_training = model.training
        with torch.random.fork_rng(devices=[]):  # training noise and dropout leave the global RNG alone
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
            model.train()
            try:
                for _ in range(c.steps_per_update):
                    n_replay = c.replay_batch if replay is not None else 0
                    batch = current(c.batch_size - n_replay, self.generator)
                    if n_replay:
                        batch = _cat(batch, replay(n_replay, self.generator))
                    if not all(bool(torch.isfinite(v).all()) for k, v in batch.items()
                               if v.is_floating_point() and k != "grounding"):  # grounding: NaN = no label
                        continue
                    loss = model(batch)
                    if not torch.isfinite(loss):
                        continue
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    norm = torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
                    if not torch.isfinite(norm):
                        self.optimizer.zero_grad(set_to_none=True)
                        continue
                    self.optimizer.step()
                    losses.append(float(loss.item()))
            finally:
                model.train(was_training)  # the live policy's model acts in eval mode
        self.replay.append(data)
        event = WakeEvent(UPDATED, segment.subtask.language, len(segment.images), "", self.episode,
                          time.perf_counter() - t0, losses)
        self.events.append(event)
        return event

    # ------------------------------------------------------------------ the guard
    def _take_snapshot(self) -> None:
        c = self.config
        clean = [s for s, reverted in self.outcomes if not reverted][-c.guard_window:]
        self.baseline = float(np.mean(clean)) if clean else 1.0  # no history: judge against perfection
        self.snapshot = {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                         "optimizer": copy.deepcopy(self.optimizer.state_dict())}
        self.snapshot_episode = self.episode

    def restore(self) -> None:
        """Put the snapshot's weights and optimizer state back (bit for bit) and drop it."""
        assert self.snapshot is not None
        with torch.no_grad():
            self.model.load_state_dict(self.snapshot["model"])
        self.optimizer.load_state_dict(self.snapshot["optimizer"])
        self.snapshot = None

    def _guard(self) -> GuardEvent | None:
        c = self.config
        if self.snapshot is None or self.baseline is None:
            return None
        window = [s for s, _ in self.outcomes[self.snapshot_episode:]]
        wins, n = sum(window), len(window)
        best = (wins + c.guard_window - n) / c.guard_window  # the window's rate if every remaining episode succeeds
        floor = self.baseline - c.drop_threshold
        if best < floor - 1e-12:  # certain to drop: no reason to keep acting on these weights
            self.restore()
            self.reverts += 1
            for i in range(self.snapshot_episode, len(self.outcomes)):
                self.outcomes[i] = (self.outcomes[i][0], True)
            self.paused_until = self.episode + c.pause_episodes
            event = GuardEvent("reverted", self.episode, self.baseline, wins / n, n)
        elif n >= c.guard_window:  # a full window that held up: these are the new last-good weights
            self.snapshot = None
            event = GuardEvent("accepted", self.episode, self.baseline, wins / n, n)
        else:
            return None
        self.guard_events.append(event)
        return event

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, Any]:
        updates = [e for e in self.events if e.kind == UPDATED]
        seconds = [e.seconds for e in updates]
        return {
            "updates": len(updates),
            "steps": sum(len(e.losses) for e in updates),
            "refused": dict(Counter(e.reason for e in self.events if e.kind == REFUSED)),
            "reverts": self.reverts,
            "accepted_windows": sum(e.kind == "accepted" for e in self.guard_events),
            "mean_update_s": float(np.mean(seconds)) if seconds else None,
            "max_update_s": float(np.max(seconds)) if seconds else None,
            "mean_frames": float(np.mean([e.frames for e in updates])) if updates else None,
        }


def _cat(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Two batches as one (token rows padded to one length where the tokenizer trimmed them)."""
    out = {}
    for key, x in a.items():
        y = b[key]
        if x.dim() == 2 and key in ("input_ids", "attention_mask") and x.shape[1] != y.shape[1]:
            width = max(x.shape[1], y.shape[1])
            x, y = (torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in (x, y))
        out[key] = torch.cat([x, y])
    return out
