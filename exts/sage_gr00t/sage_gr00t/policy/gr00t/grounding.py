"""Language grounding as an auxiliary training loss: from the VL tokens, regress where the named objects are.

Why: a flow-matching head fits a scene with several possible goals (three blocks, "put the green one in the red
bin") as a mixture, so ignoring the instruction costs it little loss, and the shipped policies learned exactly
that (they pick a block at random). A deterministic regression of the named object's and target's positions
from the backbone's tokens cannot be fitted without reading the words and finding the thing they name in the
image: its gradient teaches the backbone to bind colour and object words to image regions, and the action head
reads the same tokens.

The head is used in training only; checkpoints and inference are unchanged (GR00T N1.5's layout).
Labels come from the collector (`data/shards.py`): per frame, the world positions of the current subtask's
object and target (`GROUNDING_DIMS` numbers), and whether the episode's whole-task instruction names the same
pair (a language-following scene, one pick-and-place) or not (a "sort the blocks" episode: the instruction does
not say which block is first, so only the subtask text is graded).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

GROUNDING_DIMS = 6  # object xyz, target xyz (world frame, metres)


def named_positions(env, object_name: str | None, target_name: str | None) -> np.ndarray:
    """The current positions of the named object and target (NaN for a name the scene does not hold)."""
    names = env.object_names()
    return np.concatenate([np.asarray(env.scene.body_pos(name), dtype=np.float32) if name in names
                           else np.full(3, np.nan, dtype=np.float32) for name in (object_name, target_name)])


def grounding_label(env, subtask) -> np.ndarray:
    """The label of a frame whose subtask is `subtask` (all NaN where there is none)."""
    if subtask is None:
        return np.full(GROUNDING_DIMS, np.nan, dtype=np.float32)
    return named_positions(env, subtask.object_name, subtask.target_name)


def names_one_goal(pairs) -> bool:
    """Whether an episode's (object, target) pairs are all one: its whole-task instruction then names both."""
    return len(set(pairs)) == 1


class GroundingHead(nn.Module):
    """A learned query attends over the VL tokens (padding masked); an MLP maps it to the named positions."""

    def __init__(self, width: int, heads: int = 4) -> None:
        super().__init__()
        self.query = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, GROUNDING_DIMS))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query = self.query.expand(features.shape[0], -1, -1).to(features.dtype)
        pooled, _ = self.attention(query, features, features, key_padding_mask=mask == 0, need_weights=False)
        return self.mlp(pooled[:, 0])


def grounding_loss(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 over the valid (frame, dimension) entries of normalized targets; 0 when none is valid."""
    weight = valid.to(prediction.dtype)
    error = nn.functional.smooth_l1_loss(prediction, torch.nan_to_num(target), reduction="none", beta=0.1)
    return (error * weight).sum() / weight.sum().clamp(min=1.0)
