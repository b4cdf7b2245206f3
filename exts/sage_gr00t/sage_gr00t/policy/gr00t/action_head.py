"""GR00T N1.5's flow-matching action head.

Tokens = [state (1)] + [learned future tokens (32)] + [noisy action tokens (16)], processed by a
DiT conditioned on the VL tokens (after LayerNorm + self-attention) and on the flow time via AdaLN.
Training: t ~ Beta(1.5, 1) mapped to (noise_s - t) / noise_s, x_t = (1 - t) noise + t action, target
velocity = action - noise, loss = masked MSE. Inference: Euler steps at t = 0, 1/4, 2/4, 3/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sage_gr00t.policy.gr00t.config import ActionHeadConfig
from sage_gr00t.policy.gr00t.layers import (
    CategorySpecificMLP,
    DiT,
    MultiEmbodimentActionEncoder,
    SelfAttentionTransformer,
)

GUIDANCE = ("vjp", "identity")  # real-time chunking: J^T e through the DiT (the paper), or e itself


@dataclass
class DenoiseSchedule:
    """What the Euler loop needs that depends only on the step index, never on the observation: the timestep
    buckets and, per step, every DiT block's AdaLN (scale, shift) and the output layer's (shift, scale), each
    (1, inner_dim). Computed once from the head's weights (`FlowMatchingActionHead.denoise_schedule`): about 17
    (inner x 2 inner) matmuls per step that the eager path repeats in every chunk (150 MB of bf16 weights
    read per step at N1.5 size). Rebuild it after the weights change."""

    buckets: list[int]
    block_modulations: list[list[tuple[torch.Tensor, torch.Tensor]]]  # [step][block] -> (scale, shift)
    output_modulations: list[tuple[torch.Tensor, torch.Tensor]]  # [step] -> (shift, scale)


class FlowMatchingActionHead(nn.Module):
    def __init__(self, cfg: ActionHeadConfig, mask_vl_padding: bool = False) -> None:
        """`mask_vl_padding`: whether the DiT masks padded VL tokens when `cfg.mask_vl_padding` is unset (None);
        upstream N1.5 does not mask them."""
        super().__init__()
        self.cfg = cfg
        self.mask_vl_padding = mask_vl_padding if cfg.mask_vl_padding is None else bool(cfg.mask_vl_padding)
        if cfg.diffusion_model_cfg.output_dim != cfg.hidden_size:
            raise ValueError("diffusion_model_cfg.output_dim must equal hidden_size (the decoder's input).")
        self.model = DiT(cfg.diffusion_model_cfg)
        self.state_encoder = CategorySpecificMLP(
            cfg.max_num_embodiments, cfg.max_state_dim, cfg.hidden_size, cfg.input_embedding_dim
        )
        self.action_encoder = MultiEmbodimentActionEncoder(
            cfg.action_dim, cfg.input_embedding_dim, cfg.max_num_embodiments
        )
        self.action_decoder = CategorySpecificMLP(
            cfg.max_num_embodiments, cfg.hidden_size, cfg.hidden_size, cfg.action_dim
        )
        self.future_tokens = nn.Embedding(cfg.num_target_vision_tokens, cfg.input_embedding_dim)
        nn.init.normal_(self.future_tokens.weight, mean=0.0, std=0.02)
        self.vlln = nn.LayerNorm(cfg.backbone_embedding_dim) if cfg.use_vlln else nn.Identity()
        self.vl_self_attention = SelfAttentionTransformer(cfg.vl_self_attention_cfg) if cfg.use_vlln else nn.Identity()
        if cfg.add_pos_embed:
            self.position_embedding = nn.Embedding(cfg.max_seq_len, cfg.input_embedding_dim)
            nn.init.normal_(self.position_embedding.weight, mean=0.0, std=0.02)

    def sample_time(self, batch: int, device: torch.device) -> torch.Tensor:
        """Flow time in (0, 1], weighted toward 1 (clean actions): (s - Beta(1.5, 1)) / s."""
        # Built per call, not in __init__: a Beta module attribute breaks meta-device construction.
        beta = torch.distributions.Beta(torch.tensor(self.cfg.noise_beta_alpha), torch.tensor(self.cfg.noise_beta_beta))
        sample = beta.sample((batch,)).to(device)
        return (self.cfg.noise_s - sample) / self.cfg.noise_s

    def process_backbone_output(self, features: torch.Tensor) -> torch.Tensor:
        return self.vl_self_attention(self.vlln(features))

    def _velocity(self, vl: torch.Tensor, vl_mask: torch.Tensor | None, state_features: torch.Tensor,
                  noisy: torch.Tensor, t_bucket: torch.Tensor, embodiment_id: torch.Tensor,
                  encoder_kv: list | None = None) -> torch.Tensor:
        action_features = self.action_encoder(noisy, t_bucket, embodiment_id)
        if self.cfg.add_pos_embed:
            pos = torch.arange(action_features.shape[1], device=noisy.device)
            action_features = action_features + self.position_embedding(pos).unsqueeze(0)
        future = self.future_tokens.weight.unsqueeze(0).expand(noisy.shape[0], -1, -1)
        tokens = torch.cat([state_features, future, action_features], dim=1)
        out = self.model(tokens, vl, t_bucket, vl_mask if self.mask_vl_padding else None, encoder_kv)
        return self.action_decoder(out, embodiment_id)[:, -noisy.shape[1]:]

    def forward(self, vl_features: torch.Tensor, vl_mask: torch.Tensor | None, state: torch.Tensor,
                action: torch.Tensor, action_mask: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        """Flow-matching training loss. state (B, 1, 64), action (B, 16, 32), action_mask like action."""
        vl = self.process_backbone_output(vl_features)
        state_features = self.state_encoder(state, embodiment_id)
        noise = torch.randn_like(action)
        t = self.sample_time(action.shape[0], action.device).to(action.dtype)[:, None, None]
        noisy = (1 - t) * noise + t * action
        velocity = action - noise
        t_bucket = (t[:, 0, 0] * self.cfg.num_timestep_buckets).long()
        pred = self._velocity(vl, vl_mask, state_features, noisy, t_bucket, embodiment_id)
        loss = F.mse_loss(pred, velocity, reduction="none") * action_mask
        return loss.sum() / action_mask.sum().clamp(min=1)

    @torch.inference_mode()
    def get_action(self, vl_features: torch.Tensor, vl_mask: torch.Tensor | None, state: torch.Tensor,
                   embodiment_id: torch.Tensor, noise: torch.Tensor | None = None, guidance: float = 1.0,
                   unconditional: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> torch.Tensor:
        """Denoise an action chunk (B, horizon, action_dim) with `num_inference_timesteps` Euler steps.

        `guidance` != 1 with `unconditional` (the VL features and mask of the same images without an
        instruction): classifier-free guidance, v = v_none + guidance * (v_text - v_none), which pushes the chunk
        toward what the words change (Ho & Salimans 2022; needs a model trained with language dropout)."""
        vl = self.process_backbone_output(vl_features)
        guided = unconditional is not None and guidance != 1.0
        if guided:
            vl_none, mask_none = self.process_backbone_output(unconditional[0]), unconditional[1]
            kv_none = self.model.encoder_key_values(vl_none)
        state_features = self.state_encoder(state, embodiment_id)
        batch = vl.shape[0]
        shape = (batch, self.cfg.action_horizon, self.cfg.action_dim)
        actions = torch.randn(shape, device=vl.device, dtype=vl.dtype) if noise is None else noise.to(vl)
        if actions.shape != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(actions.shape)}.")
        steps = self.cfg.num_inference_timesteps
        encoder_kv = self.model.encoder_key_values(vl)  # computed once, used by every step
        for i in range(steps):
            bucket = int(i / steps * self.cfg.num_timestep_buckets)
            t_bucket = torch.full((batch,), bucket, device=vl.device, dtype=torch.long)
            velocity = self._velocity(vl, vl_mask, state_features, actions, t_bucket, embodiment_id, encoder_kv)
            if guided:
                free = self._velocity(vl_none, mask_none, state_features, actions, t_bucket, embodiment_id, kv_none)
                velocity = free + guidance * (velocity - free)
            actions = actions + velocity / steps
        return actions

    # ------------------------------------------------------------------ optimized inference (compile / CUDA graphs)
    def inference_buckets(self) -> list[int]:
        """Timestep bucket of each Euler step (t = i / steps), as `get_action` uses them."""
        steps = self.cfg.num_inference_timesteps
        return [int(i / steps * self.cfg.num_timestep_buckets) for i in range(steps)]

    @torch.no_grad()
    def denoise_schedule(self, device: torch.device | str | None = None) -> DenoiseSchedule:
        """The step-only tensors of the Euler loop (see `DenoiseSchedule`), in the head's dtype and device."""
        dit = self.model
        weight = dit.proj_out_1.weight
        device = weight.device if device is None else torch.device(device)
        blocks, outputs = [], []
        for bucket in self.inference_buckets():
            temb = F.silu(dit.timestep_encoder(torch.full((1,), bucket, device=device, dtype=torch.long)))
            blocks.append([tuple(b.norm1.linear(temb).chunk(2, dim=1)) for b in dit.transformer_blocks])
            outputs.append(tuple(dit.proj_out_1(temb).chunk(2, dim=1)))
        return DenoiseSchedule(self.inference_buckets(), blocks, outputs)

    def _dit_step(self, tokens: torch.Tensor, step: int, schedule: DenoiseSchedule, encoder_kv: list,
                  vl_mask: torch.Tensor | None) -> torch.Tensor:
        """`DiT.forward` on cached VL keys / values with the step's precomputed AdaLN modulations."""
        dit = self.model
        x = tokens
        mask = vl_mask if self.mask_vl_padding else None
        for i, block in enumerate(dit.transformer_blocks):
            scale, shift = schedule.block_modulations[step][i]
            h = F.layer_norm(x, (x.shape[-1],), eps=block.norm1.norm.eps) * (1 + scale[:, None]) + shift[:, None]
            if block.pos_embed is not None:
                h = block.pos_embed(h)
            kv = encoder_kv[i]
            attn = block.attn1(h, None, mask if kv is not None else None, kv)
            if block.final_dropout is not None:
                attn = block.final_dropout(attn)
            x = x + attn
            x = x + block.ff(block.norm3(x))
        shift, scale = schedule.output_modulations[step]
        x = dit.norm_out(x) * (1 + scale[:, None]) + shift[:, None]
        return dit.proj_out_2(x)

    def denoise(self, vl_features: torch.Tensor, vl_mask: torch.Tensor | None, state: torch.Tensor,
                embodiment_id: torch.Tensor, noise: torch.Tensor, schedule: DenoiseSchedule) -> torch.Tensor:
        """`get_action` for `torch.compile(fullgraph=True)` and CUDA-graph capture: the same math (parity within
        float rounding), no host syncs or data-dependent Python, the loop unrolled over a fixed step count. Once
        per chunk: VL LayerNorm + self-attention, the DiT's cross-attention keys / values, the state token, the
        position-embedded future-token prefix; per step: action encoder, DiT on the cache, decoder."""
        vl = self.process_backbone_output(vl_features)
        state_features = self.state_encoder(state, embodiment_id)
        encoder_kv = self.model.encoder_key_values(vl)
        batch, horizon = noise.shape[0], noise.shape[1]
        future = self.future_tokens.weight.unsqueeze(0).expand(batch, -1, -1)
        prefix = torch.cat([state_features, future], dim=1)
        pos = self.position_embedding.weight[:horizon].unsqueeze(0) if self.cfg.add_pos_embed else None
        steps = len(schedule.buckets)
        actions = noise.to(vl.dtype)
        for step, bucket in enumerate(schedule.buckets):
            t_bucket = torch.full((batch,), bucket, device=vl.device, dtype=torch.long)
            action_features = self.action_encoder(actions, t_bucket, embodiment_id)
            if pos is not None:
                action_features = action_features + pos
            tokens = torch.cat([prefix, action_features], dim=1)
            out = self._dit_step(tokens, step, schedule, encoder_kv, vl_mask)
            velocity = self.action_decoder(out, embodiment_id)[:, -horizon:]
            actions = actions + velocity / steps
        return actions

    def get_action_guided(self, vl_features: torch.Tensor, vl_mask: torch.Tensor | None, state: torch.Tensor,
                          embodiment_id: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                          frozen_steps: int = 0, beta: float = 5.0,
                          noise: torch.Tensor | None = None, guidance: str = "vjp") -> torch.Tensor:
        """Inpainted chunk (real-time chunking, Black et al. 2025, arXiv 2506.07339, Algorithm 1).

        `target` (B, horizon, action_dim): the previous chunk's actions for these steps (normalized);
        `weights` like `target` (or (B, horizon, 1)): the soft mask W (1 = frozen, exponential decay over the rest
        of the overlap, 0 without overlap or on padded dims). At every Euler step, with flow time t (x_t =
        (1 - t) noise + t action), the denoised estimate is A_hat = x_t + (1 - t) v; the velocity gets the
        guidance term min(beta, (1 - t) / (t r_t^2)) * J^T (W * (target - A_hat)), r_t^2 = (1 - t)^2 / (t^2 +
        (1 - t)^2), J = dA_hat / dx_t (a vector-Jacobian product through the DiT). The first `frozen_steps` rows
        (those that execute during the inference delay) are set to `target` exactly at the end.

        `guidance="identity"` takes J as the identity (the weighted error itself steers the velocity): for a head
        whose denoised estimate hardly depends on x_t (J near 0), the paper's product pulls almost nothing.
        """
        if guidance not in GUIDANCE:
            raise ValueError(f"Unknown guidance {guidance!r}; use one of {GUIDANCE}.")
        with torch.no_grad():
            vl = self.process_backbone_output(vl_features)
            state_features = self.state_encoder(state, embodiment_id)
            encoder_kv = self.model.encoder_key_values(vl)
        batch = vl.shape[0]
        shape = (batch, self.cfg.action_horizon, self.cfg.action_dim)
        actions = torch.randn(shape, device=vl.device, dtype=vl.dtype) if noise is None else noise.to(vl)
        if actions.shape != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(actions.shape)}.")
        target = target.to(vl).expand(shape)
        weights = weights.to(vl).expand(shape)
        steps = self.cfg.num_inference_timesteps
        for i in range(steps):
            t = i / steps
            bucket = int(t * self.cfg.num_timestep_buckets)
            t_bucket = torch.full((batch,), bucket, device=vl.device, dtype=torch.long)
            x = actions.detach().requires_grad_(guidance == "vjp")
            with torch.enable_grad():
                velocity = self._velocity(vl, vl_mask, state_features, x, t_bucket, embodiment_id, encoder_kv)
                denoised = x + (1 - t) * velocity
                error = weights * (target - denoised)
                pull = torch.autograd.grad(denoised, x, grad_outputs=error)[0] if guidance == "vjp" else error
            scale = beta if t == 0 else min(beta, (1 - t) / (t * (1 - t) ** 2 / (t**2 + (1 - t) ** 2)))
            actions = (x + (velocity + scale * pull) / steps).detach()
        if frozen_steps:
            actions[:, :frozen_steps] = target[:, :frozen_steps]
        return actions
