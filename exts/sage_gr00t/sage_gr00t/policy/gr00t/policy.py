"""The native GR00T-architecture model behind the `Policy` protocol (upstream `Gr00tPolicy`-style I/O)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sage_gr00t.modality import action_key
from sage_gr00t.policy.gr00t.checkpoint import METADATA_FILE, CheckpointError, load_checkpoint
from sage_gr00t.policy.gr00t.model import Gr00tModel
from sage_gr00t.policy.gr00t.processor import EmbodimentMetadata, Gr00tProcessor


class Gr00tNativePolicy:
    """`get_action(obs) -> {action.<group>: (16, d)}`, validated input, unnormalized output."""

    def __init__(self, model: Gr00tModel, embodiments: dict[str, EmbodimentMetadata], embodiment: str | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None, language_guidance: float = 1.0) -> None:
        """`language_guidance` != 1: classifier-free guidance on the instruction (twice the action head's work;
        for checkpoints trained with `--language-dropout`)."""
        if not np.isfinite(language_guidance) or language_guidance < 0:
            raise ValueError(f"language_guidance must be a finite number >= 0, got {language_guidance}.")
        self.language_guidance = float(language_guidance)
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
        if self.language_guidance != 1.0:
            ids, mask = self.processor.tokenize([""], self.model)
            batch.update(unconditional_input_ids=ids.to(self.device), unconditional_attention_mask=mask.to(self.device))
        actions = self.model.get_action(batch, noise.to(self.device), self.language_guidance)
        return self.processor.action_dict(actions, self.meta)

    def get_action_guided(self, observation: dict, prefix: dict[str, np.ndarray], weights: np.ndarray,
                          frozen_steps: int, beta: float = 5.0,
                          noise: torch.Tensor | None = None, guidance: str = "vjp") -> dict[str, np.ndarray]:
        """Real-time chunking: a chunk inpainted toward `prefix` by guided flow-matching denoising (no retraining).

        `prefix`: {action.<group>: (n, d)} in joint units (what `get_action` returned), the previous chunk's
        actions for this chunk's steps 0..n-1 (n <= horizon); `weights` (n,): the per-step soft mask (1 for
        the first `frozen_steps` steps, decaying over the rest of the overlap). The prefix is normalized with
        the checkpoint's statistics (the processor's min-max map) and guidance runs in that space
        (`FlowMatchingActionHead.get_action_guided`); after denormalization the first `frozen_steps` rows are
        the prefix's values exactly (float32 copies), the rest is the guided denoising's output.
        """
        target, mask, weight_rows = guidance_target(self.processor, self.meta, prefix, weights, frozen_steps,
                                                    self.action_horizon)
        batch = self.processor.observation_batch(observation, self.meta, self.model)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        noise = self.sample_noise() if noise is None else noise
        with torch.no_grad():
            features, vl_mask = self.model.encode(batch)
        w = torch.from_numpy(weight_rows[:, None] * mask)[None].to(self.device)
        actions = self.model.action_head.get_action_guided(
            features, vl_mask, batch["state"], batch["embodiment_id"], torch.from_numpy(target)[None].to(self.device),
            w, frozen_steps=frozen_steps, beta=beta, noise=noise.to(self.device), guidance=guidance)
        out = self.processor.action_dict(actions.detach(), self.meta)
        for key, value in out.items():  # exact: the frozen steps execute as planned
            value[:frozen_steps] = np.asarray(prefix[key][:frozen_steps], np.float32)
        return out


def guidance_target(processor: Gr00tProcessor, meta: EmbodimentMetadata, prefix: dict[str, np.ndarray],
                    weights: np.ndarray, frozen_steps: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalized padded target (horizon, action_dim), dim mask like it, per-step weights (horizon,))."""
    keys = [action_key(g) for g in meta.action_groups]
    if sorted(prefix) != sorted(keys):
        raise ValueError(f"prefix must hold exactly {keys}, got {sorted(prefix)}.")
    rows = {len(np.asarray(prefix[k])) for k in keys}
    weights = np.asarray(weights, np.float32).reshape(-1)
    if len(rows) != 1 or (n := rows.pop()) != len(weights) or not 0 <= frozen_steps <= n <= horizon:
        raise ValueError(f"prefix arrays and weights need one length n with frozen_steps <= n <= {horizon}; got "
                         f"prefix lengths {sorted(len(np.asarray(prefix[k])) for k in keys)}, {len(weights)} "
                         f"weights, frozen_steps={frozen_steps}.")
    joined = np.concatenate([np.asarray(prefix[k], np.float32).reshape(n, -1) for k in keys], axis=1)
    normalized, mask = processor.pad_action(processor.normalize_action(joined, meta))
    target = np.zeros((horizon, normalized.shape[1]), np.float32)
    target[:n] = normalized
    full_mask = np.zeros_like(target)
    full_mask[:n] = mask
    w = np.zeros(horizon, np.float32)
    w[:n] = np.clip(weights, 0.0, 1.0)
    w[:frozen_steps] = 1.0
    return target, full_mask, w


def load_policy(path: str | Path, embodiment: str | None = None, device: str = "cpu",
                seed: int | None = 0, language_guidance: float = 1.0) -> Gr00tNativePolicy:
    """Load a checkpoint folder (ours or upstream N1.5 layout) as a ready-to-use policy."""
    model, embodiments, _ = load_checkpoint(path, device=device)
    if not embodiments:
        raise CheckpointError(f"Checkpoint {path} has no embodiment metadata: {Path(path) / METADATA_FILE} is "
                              "missing or empty (it holds the normalization stats). Re-export the checkpoint "
                              "with sage-train, or copy experiment_cfg/ from the original.")
    return Gr00tNativePolicy(model, embodiments, embodiment, device, seed, language_guidance)
