"""Sleep consolidation: a few small flow-matching updates of the live policy on dreams.

The policy keeps its normalization statistics (they define its action space); only its weights move,
with a small learning rate and clipped gradients, so a sleep cycle nudges rather than retrains.
Progress is measured on a fixed batch of the cycle's dreams with fixed noise (before vs after).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from sage_gr00t.learn.dreams import Dream


@dataclass
class SleepTrainingConfig:
    steps: int = 20
    batch_size: int = 16
    lr: float = 3e-5
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    subtask_language_prob: float = 0.5  # as in training: subtask and whole-task language
    seed: int = 0


class SleepTrainer:
    """Owns one optimizer over a `Gr00tNativePolicy`'s model across sleep cycles."""

    def __init__(self, policy, config: SleepTrainingConfig | None = None) -> None:
        self.policy = policy
        self.config = c = config or SleepTrainingConfig()
        self.model = policy.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.generator = torch.Generator().manual_seed(c.seed)
        self.cycles = 0
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop consolidating after the update in flight (shutdown must not wait for a whole cycle)."""
        self._cancel.set()

    def _loss(self, batch: dict, seed: int) -> float:
        torch.manual_seed(seed)
        with torch.no_grad():
            return float(self.model(batch).item())

    def consolidate(self, dreams: list[Dream]) -> dict:
        """Train `steps` updates on the dreams; returns loss before/after on a fixed dream batch."""
        from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData

        if not dreams:
            return {"steps": 0, "frames": 0, "reason": "no dreams"}
        c, model = self.config, self.model
        data = DemoData.from_episodes([d.episode for d in dreams], model.config.backbone.image_size,
                                      self.policy.embodiment)
        device = next(model.parameters()).device
        sampler = BatchSampler(data, model, self.policy.meta, device, shift_pixels=4,
                               subtask_language_prob=c.subtask_language_prob)
        probe = sampler(c.batch_size, torch.Generator().manual_seed(c.seed + 1))
        t0 = time.perf_counter()
        model.eval()
        before = np.mean([self._loss(probe, s) for s in range(3)])
        model.train()
        for step in range(c.steps):
            if self._cancel.is_set():
                model.eval()
                return {"steps": step, "frames": len(data.state), "cancelled": True,
                        "seconds": time.perf_counter() - t0}
            loss = model(sampler(c.batch_size, self.generator))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.max_grad_norm)
            self.optimizer.step()
        model.eval()
        after = np.mean([self._loss(probe, s) for s in range(3)])
        self.cycles += 1
        return {"steps": c.steps, "frames": len(data.state), "loss_before": float(before),
                "loss_after": float(after), "seconds": time.perf_counter() - t0}
