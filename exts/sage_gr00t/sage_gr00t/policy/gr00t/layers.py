"""Building blocks of GR00T N1.5's action head, written here with upstream's parameter names.

Module and parameter names (`to_q`, `to_out.0`, `ff.net.0.proj`, `norm1.linear`,
`timestep_encoder.timestep_embedder.linear_1`, `W1.W`, ...) match the upstream N1.5 state dict,
so a real checkpoint's `action_head.*` tensors load onto these modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sage_gr00t.policy.gr00t.config import TransformerConfig


def run_block(block: nn.Module, checkpointed: bool, *args, **kwargs) -> torch.Tensor:
    """`block(*args, **kwargs)`, or the same through activation checkpointing when `checkpointed` and autograd
    records: the block's activations are recomputed in the backward pass instead of being kept (less memory,
    one more forward per block). Non-reentrant checkpointing restores the RNG state (dropout masks) and autocast
    for the recomputation, so loss and gradients are the same as without it."""
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False, **kwargs)
    return block(*args, **kwargs)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class CategorySpecificLinear(nn.Module):
    """One linear layer per embodiment (category); weights (C, in, out) indexed by embodiment id."""

    def __init__(self, num_categories: int, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.num_categories = num_categories
        self.W = nn.Parameter(0.02 * torch.randn(num_categories, input_dim, hidden_dim))
        self.b = nn.Parameter(torch.zeros(num_categories, hidden_dim))

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.W[cat_ids]) + self.b[cat_ids].unsqueeze(1)


class CategorySpecificMLP(nn.Module):
    def __init__(self, num_categories: int, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, input_dim, hidden_dim)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_dim, output_dim)

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, cat_ids)), cat_ids)


def sinusoidal_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, T) float positions -> (B, T, dim) [sin | cos] features (the action encoder's tau embedding)."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=positions.device) * (-math.log(10000.0) / half)
    freqs = positions.float().unsqueeze(-1) * exponent.exp()
    return torch.cat([torch.sin(freqs), torch.cos(freqs)], dim=-1)


class MultiEmbodimentActionEncoder(nn.Module):
    """Noisy action trajectory + flow time -> tokens: W3(swish(W2([W1(a), sin(tau)])))."""

    def __init__(self, action_dim: int, hidden_size: int, num_embodiments: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.W1 = CategorySpecificLinear(num_embodiments, action_dim, hidden_size)
        self.W2 = CategorySpecificLinear(num_embodiments, 2 * hidden_size, hidden_size)
        self.W3 = CategorySpecificLinear(num_embodiments, hidden_size, hidden_size)

    def forward(self, actions: torch.Tensor, timesteps: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        batch, horizon, _ = actions.shape
        if timesteps.shape != (batch,):
            raise ValueError(f"timesteps must have shape ({batch},), got {tuple(timesteps.shape)}.")
        a_emb = self.W1(actions, cat_ids)
        tau = sinusoidal_encoding(timesteps.unsqueeze(1).expand(-1, horizon), self.hidden_size).to(a_emb.dtype)
        x = swish(self.W2(torch.cat([a_emb, tau], dim=-1), cat_ids))
        return self.W3(x, cat_ids)


class _Timesteps(nn.Module):
    """Diffusers-style sinusoidal timestep projection (flip_sin_to_cos, downscale_freq_shift=1)."""

    def __init__(self, num_channels: int = 256) -> None:
        super().__init__()
        self.num_channels = num_channels

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / (half - 1)
        emb = timesteps.float()[:, None] * exponent.exp()[None, :]
        return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


class _TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TimestepEncoder(nn.Module):
    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.time_proj = _Timesteps(256)
        self.timestep_embedder = _TimestepEmbedding(256, embedding_dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        dtype = self.timestep_embedder.linear_1.weight.dtype
        return self.timestep_embedder(self.time_proj(timesteps).to(dtype))


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift come from the timestep embedding (DiT's AdaLN)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention; cross-attention when `cross_attention_dim` is given."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, cross_attention_dim: int | None,
                 dropout: float, bias: bool = True) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias)
        self.to_v = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(dropout)])

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

    def key_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys/values of a context; reused across denoising steps (the VL tokens do not change)."""
        return self._split(self.to_k(context)), self._split(self.to_v(context))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        batch = x.shape[0]
        q = self._split(self.to_q(x))
        k, v = kv if kv is not None else self.key_values(x if context is None else context)
        mask = None if context_mask is None else context_mask[:, None, None, :].bool()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[-1])
        return self.to_out[1](self.to_out[0](out))


class _GELUProj(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float, final_dropout: bool, mult: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [_GELUProj(dim, mult * dim), nn.Dropout(dropout), nn.Linear(mult * dim, dim)]
        if final_dropout:
            layers.append(nn.Dropout(dropout))
        self.net = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class _SinusoidalPositions(nn.Module):
    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * div)
        pe[0, :, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]]


class BasicTransformerBlock(nn.Module):
    """Pre-norm attention + feed-forward; AdaLN (timestep-conditioned) norms inside the DiT."""

    def __init__(self, dim: int, cfg: TransformerConfig, cross_attention_dim: int | None, ada_norm: bool) -> None:
        super().__init__()
        self.ada_norm = ada_norm
        self.norm1 = AdaLayerNorm(dim) if ada_norm else nn.LayerNorm(dim, eps=1e-5)
        self.pos_embed = (
            _SinusoidalPositions(dim, cfg.max_num_positional_embeddings)
            if cfg.positional_embeddings == "sinusoidal" else None
        )
        self.attn1 = Attention(dim, cfg.num_attention_heads, cfg.attention_head_dim, cross_attention_dim, cfg.dropout)
        # DiT norms carry no affine parameters (AdaLN supplies them); the VL transformer's do.
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=not ada_norm)
        self.ff = FeedForward(dim, cfg.dropout, cfg.final_dropout)
        self.final_dropout = nn.Dropout(cfg.dropout) if cfg.final_dropout else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        h = self.norm1(x, temb) if self.ada_norm else self.norm1(x)
        if self.pos_embed is not None:
            h = self.pos_embed(h)
        attn = self.attn1(h, context, context_mask, kv)
        if self.final_dropout is not None:
            attn = self.final_dropout(attn)
        x = x + attn
        return x + self.ff(self.norm3(x))


class DiT(nn.Module):
    """Flow-matching diffusion transformer: even blocks cross-attend to VL tokens, odd blocks self-attend."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.inner_dim
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList(
            [
                BasicTransformerBlock(
                    dim, cfg, None if (cfg.interleave_self_attention and i % 2 == 1) else cfg.cross_attention_dim,
                    ada_norm=True,
                )
                for i in range(cfg.num_layers)
            ]
        )
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, cfg.output_dim)
        # Activation checkpointing per block in training (`Gr00tModel.set_gradient_checkpointing`); off by default.
        self.gradient_checkpointing = False

    def _cross(self, i: int) -> bool:
        return not (self.cfg.interleave_self_attention and i % 2 == 1)

    def encoder_key_values(self, encoder_hidden_states: torch.Tensor) -> list:
        """Per-block cross-attention keys/values (None for self-attention blocks)."""
        return [block.attn1.key_values(encoder_hidden_states) if self._cross(i) else None
                for i, block in enumerate(self.transformer_blocks)]

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None = None, encoder_kv: list | None = None) -> torch.Tensor:
        temb = self.timestep_encoder(timestep)
        x = hidden_states
        for i, block in enumerate(self.transformer_blocks):
            if not self._cross(i):
                x = run_block(block, self.gradient_checkpointing, x, temb=temb)
            else:
                kv = encoder_kv[i] if encoder_kv is not None else None
                x = run_block(block, self.gradient_checkpointing, x, encoder_hidden_states, encoder_attention_mask,
                              temb=temb, kv=kv)
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=1)
        x = self.norm_out(x) * (1 + scale[:, None]) + shift[:, None]
        return self.proj_out_2(x)


class SelfAttentionTransformer(nn.Module):
    """Plain transformer over the VL tokens (after `vlln`), before they condition the DiT."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(cfg.inner_dim, cfg, None, ada_norm=False) for _ in range(cfg.num_layers)]
        )
        self.gradient_checkpointing = False  # as `DiT.gradient_checkpointing`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_blocks:
            x = run_block(block, self.gradient_checkpointing, x)
        return x
