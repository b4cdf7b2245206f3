"""The native GR00T-architecture model behind the `Policy` protocol (upstream `Gr00tPolicy`-style I/O)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sage_gr00t.policy.gr00t.checkpoint import METADATA_FILE, CheckpointError, load_checkpoint
from sage_gr00t.policy.gr00t.model import Gr00tModel
from sage_gr00t.policy.gr00t.processor import EmbodimentMetadata, Gr00tProcessor


class Gr00tNativePolicy:
    """`get_action(obs) -> {action.<group>: (16, d)}`, validated input, unnormalized output."""

    def __init__(self, model: Gr00tModel, embodiments: dict[str, EmbodimentMetadata], embodiment: str | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None) -> None:
        if not embodiments:
            raise ValueError("The checkpoint carries no embodiment metadata (experiment_cfg/metadata.json).")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.processor = Gr00tProcessor(model.config, embodiments)
        self.embodiment = embodiment or next(iter(embodiments))
        self.meta = self.processor.metadata(self.embodiment)
        self._generator = torch.Generator(device="cpu")
        if seed is not None:
            self._generator.manual_seed(seed)

    @property
    def action_horizon(self) -> int:
        return self.model.config.action_head.action_horizon

    def reset(self) -> None:
        """Stateless between calls; kept for the Policy protocol."""

    def seed(self, seed: int) -> None:
        """Restart the flow-matching noise stream (paired comparisons run an episode on the same noise)."""
        self._generator.manual_seed(seed)

    def sample_noise(self) -> torch.Tensor:
        cfg = self.model.config.action_head
        return torch.randn((1, cfg.action_horizon, cfg.action_dim), generator=self._generator)

    @torch.inference_mode()
    def get_action(self, observation: dict, noise: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        batch = self.processor.observation_batch(observation, self.meta, self.model)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        noise = self.sample_noise() if noise is None else noise
        actions = self.model.get_action(batch, noise.to(self.device))
        return self.processor.action_dict(actions, self.meta)


def load_policy(path: str | Path, embodiment: str | None = None, device: str = "cpu",
                seed: int | None = 0) -> Gr00tNativePolicy:
    """Load a checkpoint folder (ours or upstream N1.5 layout) as a ready-to-use policy."""
    model, embodiments, _ = load_checkpoint(path, device=device)
    if not embodiments:
        raise CheckpointError(f"Checkpoint {path} has no embodiment metadata: {Path(path) / METADATA_FILE} is "
                              "missing or empty (it holds the normalization stats). Re-export the checkpoint "
                              "with sage-train, or copy experiment_cfg/ from the original.")
    return Gr00tNativePolicy(model, embodiments, embodiment, device, seed)
