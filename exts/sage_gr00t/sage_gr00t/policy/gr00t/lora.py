"""Low-rank adapters (LoRA, Hu et al. 2021) on a module's `nn.Linear` layers, for memory-light fine-tuning.

    apply_lora(model.action_head, rank=16)   # every Linear of the head: frozen weight + trainable B @ A
    ...train...
    merge_lora(model.action_head)            # back to plain Linear layers (upstream parameter names)

As upstream GR00T's `get_lora_model(action_head_only=True)` (peft over every Linear of the action head): with
adapters on, only the adapters train; the per-embodiment encoders' `W` / `b`, embeddings and norms stay frozen.
An adapted layer keeps its `weight` / `bias` names (it subclasses `nn.Linear`), so the state dict only gains
`lora_A` / `lora_B`; `merge_lora` folds them in and restores `nn.Linear` modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    """`nn.Linear` (its weight and bias frozen) + scale * B @ A, B zero-initialized: acts as the base at start."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0) -> None:
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}.")
        nn.Module.__init__(self)  # not nn.Linear's: the base's parameters are reused, not reallocated
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft: A random, B zero
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(self.dropout(x), self.lora_A),
                                                              self.lora_B) * self.scale

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain `nn.Linear` with weight + scale * B @ A (same outputs without dropout)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        delta = (self.lora_B.float() @ self.lora_A.float()) * self.scale
        linear.weight.copy_(self.weight.float() + delta)
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear


def apply_lora(module: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0) -> int:
    """Freeze every parameter of `module` and put a `LoRALinear` in place of each of its `nn.Linear` layers;
    returns the number of layers adapted. Call it before building the optimizer (the adapters are new
    parameters) and after any dtype / device move of the module (the adapters take the base weight's)."""
    module.requires_grad_(False)
    targets = [(name, child) for name, child in module.named_modules()
               if name and isinstance(child, nn.Linear) and not isinstance(child, LoRALinear)]
    for name, child in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, LoRALinear(child, rank, alpha, dropout))
    return len(targets)


def merge_lora(module: nn.Module) -> int:
    """Replace every `LoRALinear` under `module` by its merged `nn.Linear`; returns how many were merged."""
    targets = [(name, child) for name, child in module.named_modules() if isinstance(child, LoRALinear)]
    for name, child in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, child.merged())
    return len(targets)
