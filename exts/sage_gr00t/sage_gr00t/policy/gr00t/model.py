"""GR00T N1.5-architecture model: VL backbone + flow-matching action head (`backbone.*`, `action_head.*`)."""

from __future__ import annotations

import torch
from torch import nn

from sage_gr00t.policy.gr00t.action_head import FlowMatchingActionHead
from sage_gr00t.policy.gr00t.backbone import build_backbone
from sage_gr00t.policy.gr00t.config import Gr00tConfig


class Gr00tModel(nn.Module):
    """Batch keys: pixel_values (B,3,S,S) in [-1,1], input_ids / attention_mask (B,L), state (B,1,64),
    embodiment_id (B,), and for training action (B,16,32) + action_mask (B,16,32)."""

    def __init__(self, config: Gr00tConfig) -> None:
        super().__init__()
        self.config = config
        bb = config.backbone
        output_dim = bb.project_to_dim or (bb.width if bb.kind == "compact" else bb.llm_hidden_size)
        if output_dim != config.action_head.backbone_embedding_dim:  # checked before building anything big
            raise ValueError(
                f"Backbone output dim {output_dim} != action_head.backbone_embedding_dim "
                f"{config.action_head.backbone_embedding_dim}: the config is inconsistent."
            )
        head = config.action_head
        if head.use_vlln and head.vl_self_attention_cfg.inner_dim != head.backbone_embedding_dim:
            raise ValueError(f"vl_self_attention width {head.vl_self_attention_cfg.inner_dim} != "
                             f"backbone_embedding_dim {head.backbone_embedding_dim}: the config is inconsistent.")
        self.backbone = build_backbone(config.backbone)
        # The DiT masks VL padding only where the config asks, or (unset) for the compact backbone, whose shipped
        # checkpoints were trained that way; upstream's N1.5 DiT attends to padded VL tokens.
        self.action_head = FlowMatchingActionHead(config.action_head, mask_vl_padding=bb.kind == "compact")

    def checkpoint_prefixes(self) -> list[tuple[str, str]]:
        """(in-memory prefix, checkpoint prefix) pairs where this build's module names differ from upstream's
        checkpoint names (e.g. the SigLIP tower under transformers 5); empty when they agree."""
        inner = getattr(self.backbone, "checkpoint_prefixes", lambda: [])()
        return [("backbone." + local, "backbone." + disk) for local, disk in inner]

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss."""
        features, mask = self.encode(batch)
        return self.action_head(features, mask, batch["state"], batch["action"], batch["action_mask"],
                                batch["embodiment_id"])

    @torch.inference_mode()
    def get_action(self, batch: dict[str, torch.Tensor], noise: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized action chunk (B, horizon, action_dim)."""
        features, mask = self.encode(batch)
        return self.action_head.get_action(features, mask, batch["state"], batch["embodiment_id"], noise)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
