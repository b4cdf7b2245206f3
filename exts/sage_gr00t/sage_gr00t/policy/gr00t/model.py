"""GR00T N1.5-architecture model: VL backbone + flow-matching action head (`backbone.*`, `action_head.*`), and
`OptimizedGr00t`, the same chunk as one static graph for `torch.compile` and CUDA graphs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sage_gr00t.policy.gr00t.action_head import DenoiseSchedule, FlowMatchingActionHead
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

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Activation checkpointing in training (off by default): the DiT's and the VL self-attention's blocks,
        and the Eagle towers' layers (SigLIP, Qwen3) through transformers' own per-layer switch. Recomputes each
        block's activations in the backward pass instead of keeping them; the same loss and gradients.

        The transformers layers are switched directly, not through `gradient_checkpointing_enable()`: that also
        hooks the input embeddings to require grad, which would make a frozen VLM record its whole graph."""
        function = partial(checkpoint, use_reentrant=False)
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enabled
                if module.__class__.__module__.startswith("transformers."):
                    module._gradient_checkpointing_func = function  # what transformers' layers call when enabled

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss."""
        features, mask = self.encode(batch)
        return self.action_loss(features, mask, batch)

    def action_loss(self, features: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The flow-matching loss from already encoded VL features (auxiliary losses read the same features)."""
        return self.action_head(features, mask, batch["state"], batch["action"], batch["action_mask"],
                                batch["embodiment_id"])

    @torch.inference_mode()
    def get_action(self, batch: dict[str, torch.Tensor], noise: torch.Tensor | None = None,
                   guidance: float = 1.0) -> torch.Tensor:
        """Normalized action chunk (B, horizon, action_dim). `guidance` != 1 needs `unconditional_input_ids` /
        `unconditional_attention_mask` in the batch (no instruction): classifier-free language guidance."""
        features, mask = self.encode(batch)
        unconditional = None
        if guidance != 1.0:
            if "unconditional_input_ids" not in batch:
                raise ValueError("Language guidance needs the batch's unconditional_input_ids / _attention_mask.")
            unconditional = self.backbone(batch["pixel_values"], batch["unconditional_input_ids"],
                                          batch["unconditional_attention_mask"])
        return self.action_head.get_action(features, mask, batch["state"], batch["embodiment_id"], noise,
                                           guidance, unconditional)


CHUNK_INPUTS = ("pixel_values", "input_ids", "attention_mask", "state", "embodiment_id")


@dataclass
class OptimizeOptions:
    """How `OptimizedGr00t` runs a chunk. Shapes are static: one compiled graph / CUDA graph per
    (batch, VL length), so pad instructions to one length (`Gr00tProcessor(..., vl_length=...)`) in a loop."""

    compile: bool = True  # torch.compile the whole chunk (backbone + 4 Euler steps) as one graph
    compile_mode: str | None = None  # inductor mode; "max-autotune-no-cudagraphs" autotunes the matmuls (slow start)
    backend: str = "inductor"  # torch.compile backend; "eager" / "aot_eager" trace the graph without code generation
    fullgraph: bool = True  # a graph break is an error, not a silent slow path
    cuda_graph: bool = True  # capture the chunk as one CUDA graph per input shape and replay it (CUDA only)
    warmup: int = 3  # calls before capture (compilation and allocator warm-up happen here)


class OptimizedGr00t:
    """`Gr00tModel.get_action` for deployment: VL features once per chunk, the DiT's cross-attention keys /
    values and every step-only tensor (timestep buckets, AdaLN modulations) computed once, no host syncs, the
    Euler loop unrolled; optionally `torch.compile`d and captured as a CUDA graph. Same normalized actions as
    the eager path for the same noise (within float rounding). The model's weights must not change afterwards
    (the step-only tensors are computed from them here; build a new one after fine-tuning)."""

    def __init__(self, model: Gr00tModel, options: OptimizeOptions | None = None) -> None:
        self.model = model.eval()
        self.options = options or OptimizeOptions()
        self.schedule: DenoiseSchedule = model.action_head.denoise_schedule()
        self._fn: Callable[..., torch.Tensor] = self._chunk
        if self.options.compile:
            self._fn = torch.compile(self._chunk, mode=self.options.compile_mode, fullgraph=self.options.fullgraph,
                                     dynamic=False, backend=self.options.backend)
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}

    def _chunk(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               state: torch.Tensor, embodiment_id: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        features, mask = self.model.backbone(pixel_values, input_ids, attention_mask)
        return self.model.action_head.denoise(features, mask, state, embodiment_id, noise, self.schedule)

    def _uses_graph(self, noise: torch.Tensor) -> bool:
        return self.options.cuda_graph and noise.is_cuda

    @torch.inference_mode()
    def get_action(self, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """Normalized action chunk (B, horizon, action_dim); `noise` (B, horizon, action_dim) is required (a
        captured graph draws no random numbers)."""
        args = [batch[k] for k in CHUNK_INPUTS] + [noise]
        if not self._uses_graph(noise):
            return self._fn(*args)
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        if key not in self._graphs:
            self._graphs[key] = self._capture(args)
        graph, static_inputs, static_output = self._graphs[key]
        for buffer, value in zip(static_inputs, args, strict=True):
            buffer.copy_(value, non_blocking=True)
        graph.replay()
        return static_output.clone()

    def _capture(self, args: list[torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]:
        static_inputs = [a.clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (and compilation) off the capture stream, as CUDA graphs require
            for _ in range(max(1, self.options.warmup)):
                self._fn(*static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self._fn(*static_inputs)
        return graph, static_inputs, static_output


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
