"""Vision-language backbones behind one interface: images + token ids -> (VL tokens, mask).

- `EagleBackbone`: the real-size Eagle 2.5 layout used by GR00T N1.5 (SigLIP vision tower with its
  pooling head, no pixel shuffle in N1.5 so 256 image tokens per 224 px frame, 1-layer MLP projector
  1152 -> 2048, Qwen3-1.7B truncated to layer 12), built from `transformers` configs without weights.
  Submodule names follow upstream (`eagle_model.vision_model`, `eagle_model.mlp1`,
  `eagle_model.language_model`, `eagle_linear`); where the installed `transformers` names the SigLIP
  tower differently from upstream's 4.51 (`vision_model.vision_model.*`), `EagleBackbone.checkpoint_prefixes`
  says how, and checkpoints are read and written with upstream's names (see checkpoint.py).
- `CompactBackbone`: a small conv image encoder + byte-level text encoder + fusion transformer
  that trains on a CPU and produces the same kind of output.
"""

from __future__ import annotations

import torch
from torch import nn

from sage_gr00t.policy.gr00t.config import BackboneConfig

IMAGE_TOKEN_INDEX = 151669  # Eagle's <IMG_CONTEXT> token id in the Qwen3 vocabulary


class ByteTokenizer:
    """Offline tokenizer for the compact backbone: UTF-8 bytes + BOS/EOS, padded to a fixed length."""

    PAD, BOS, EOS = 256, 257, 258
    vocab_size = 259

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def __call__(self, texts: list[str], pad_to_longest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed length for training batches; `pad_to_longest` trims trailing padding at inference
        (outputs are unchanged: padded positions are masked everywhere)."""
        ids = torch.full((len(texts), self.max_tokens), self.PAD, dtype=torch.long)
        mask = torch.zeros((len(texts), self.max_tokens), dtype=torch.long)
        for i, text in enumerate(texts):
            tokens = [self.BOS, *text.lower().encode("utf-8")[: self.max_tokens - 2], self.EOS]
            ids[i, : len(tokens)] = torch.tensor(tokens)
            mask[i, : len(tokens)] = 1
        if pad_to_longest:
            longest = int(mask.sum(1).max())
            ids, mask = ids[:, :longest], mask[:, :longest]
        return ids, mask


def _encoder(width: int, layers: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True,
                                       activation="gelu")
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class CompactBackbone(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        w = cfg.width
        self.cfg = cfg

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                    nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]

        # 128 px -> 8 x 8 = 64 vision tokens per frame (as many as Eagle's pixel-shuffled SigLIP).
        self.vision = nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), *block(128, w))
        grid = cfg.image_size // 16
        self.vision_pos = nn.Parameter(0.02 * torch.randn(1, grid * grid, w))
        self.tokenizer = ByteTokenizer(cfg.max_text_tokens)
        self.text_embed = nn.Embedding(ByteTokenizer.vocab_size, w)
        self.text_pos = nn.Parameter(0.02 * torch.randn(1, cfg.max_text_tokens, w))
        heads = max(1, w // 32)
        self.text_encoder = _encoder(w, cfg.text_layers, heads)
        self.fusion = _encoder(w, cfg.fusion_layers, heads)
        self.eagle_linear = nn.Linear(w, cfg.project_to_dim) if cfg.project_to_dim else nn.Identity()
        if cfg.film:  # one (scale, shift) pair per conv stage, from the pooled instruction; zero = identity
            stages = [m.out_channels for m in self.vision if isinstance(m, nn.Conv2d)][1::2]
            self.vision_film = nn.ModuleList(nn.Linear(w, 2 * c) for c in stages)
            for film in self.vision_film:
                nn.init.zeros_(film.weight)
                nn.init.zeros_(film.bias)

    @property
    def output_dim(self) -> int:
        return self.cfg.project_to_dim or self.cfg.width

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values (B, 3, S, S) in [-1, 1]; input_ids / attention_mask (B, L)."""
        text = self.text_embed(input_ids) + self.text_pos[:, : input_ids.shape[1]]
        pad = attention_mask == 0
        text = self.text_encoder(text, src_key_padding_mask=pad)
        vis = self._encode_image(pixel_values, text, attention_mask).flatten(2).transpose(1, 2) + self.vision_pos
        tokens = torch.cat([vis, text], dim=1)
        mask = torch.cat([torch.ones(vis.shape[:2], dtype=attention_mask.dtype, device=vis.device), attention_mask], 1)
        features = self.fusion(tokens, src_key_padding_mask=mask == 0)
        return self.eagle_linear(features), mask


    def _encode_image(self, pixel_values: torch.Tensor, text: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
        if not self.cfg.film:
            return self.vision(pixel_values)
        keep = attention_mask.unsqueeze(-1).to(text.dtype)
        instruction = (text * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # mean over the real tokens
        x, stage = pixel_values, 0
        for i, layer in enumerate(self.vision):
            x = layer(x)
            if (i + 1) % 6 == 0:  # the end of a conv stage (block(): conv, norm, act, conv, norm, act)
                scale, shift = self.vision_film[stage](instruction).chunk(2, dim=-1)
                x = x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
                stage += 1
        return x


class _EagleModel(nn.Module):
    """Eagle 2.5 VL with upstream's submodule names; weights come from a checkpoint."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        from transformers import Qwen3Config, Qwen3ForCausalLM, SiglipVisionConfig, SiglipVisionModel

        vision_cfg = SiglipVisionConfig(
            hidden_size=cfg.vision_hidden_size, intermediate_size=cfg.vision_intermediate_size,
            num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
            image_size=cfg.image_size, patch_size=cfg.patch_size, vision_use_head=cfg.vision_use_head,
        )
        # Fused attention (F.scaled_dot_product_attention) in both towers, whatever transformers would pick.
        vision_cfg._attn_implementation = "sdpa"
        self.vision_model = SiglipVisionModel(vision_cfg)
        self.use_pixel_shuffle = cfg.use_pixel_shuffle
        vit_dim = cfg.vision_hidden_size * (int(1 / cfg.downsample_ratio) ** 2 if cfg.use_pixel_shuffle else 1)
        self.mlp1 = nn.Sequential(nn.Linear(vit_dim, cfg.llm_hidden_size))
        text_cfg = Qwen3Config(
            vocab_size=cfg.vocab_size, hidden_size=cfg.llm_hidden_size, intermediate_size=cfg.llm_intermediate_size,
            num_hidden_layers=cfg.select_layer, num_attention_heads=cfg.llm_heads,
            num_key_value_heads=cfg.llm_kv_heads, head_dim=cfg.llm_hidden_size // cfg.llm_heads,
            tie_word_embeddings=False, rope_theta=1_000_000.0, max_position_embeddings=40960,
        )
        text_cfg._attn_implementation = "sdpa"
        # Only the first `select_layer` of the 28 Qwen3 layers exist: GR00T reads layer 12.
        self.language_model = Qwen3ForCausalLM(text_cfg)
        self.language_model.lm_head = nn.Identity()
        self.downsample_ratio = cfg.downsample_ratio

    def pixel_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        n, w, h, c = x.shape
        r = self.downsample_ratio
        x = x.view(n, w, int(h * r), int(c / r)).permute(0, 2, 1, 3).contiguous()
        x = x.view(n, int(h * r), int(w * r), int(c / (r * r))).permute(0, 2, 1, 3).contiguous()
        return x

    def extract_feature(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vit = self.vision_model(pixel_values=pixel_values).last_hidden_state
        if self.use_pixel_shuffle:
            side = int(vit.shape[1] ** 0.5)
            vit = self.pixel_shuffle(vit.reshape(vit.shape[0], side, side, -1))
            vit = vit.reshape(vit.shape[0], -1, vit.shape[-1])
        return self.mlp1(vit)


class EagleBackbone(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.eagle_model = _EagleModel(cfg)
        self.eagle_linear = nn.Linear(cfg.llm_hidden_size, cfg.project_to_dim) if cfg.project_to_dim else nn.Identity()
        self._tokenizer = None

    @property
    def output_dim(self) -> int:
        return self.cfg.project_to_dim or self.cfg.llm_hidden_size

    @property
    def image_tokens_per_frame(self) -> int:
        return self.cfg.image_tokens_per_frame

    def checkpoint_prefixes(self) -> list[tuple[str, str]]:
        """(in-memory prefix, upstream checkpoint prefix) pairs, relative to this module, where they differ.

        transformers 4.51 (upstream's pin) nests the SigLIP tower as `SiglipVisionModel.vision_model`
        (`eagle_model.vision_model.vision_model.encoder...`); transformers 5 puts `embeddings` / `encoder` /
        `post_layernorm` / `head` on `SiglipVisionModel` itself.
        """
        if hasattr(self.eagle_model.vision_model, "vision_model"):
            return []
        return [("eagle_model.vision_model.", "eagle_model.vision_model.vision_model.")]

    @property
    def tokenizer(self):
        """Qwen3 tokenizer from a local folder (`tokenizer_path`); the hub is never contacted."""
        if self._tokenizer is None:
            if not self.cfg.tokenizer_path:
                raise ValueError(
                    "The eagle backbone needs the Eagle 2.5 / Qwen3 tokenizer files: set backbone.tokenizer_path in "
                    "the checkpoint's config.json to a local folder that holds them (tokenizer.json etc.)."
                )
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.cfg.tokenizer_path, local_files_only=True)
        return self._tokenizer

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image features replace the <IMG_CONTEXT> tokens of `input_ids`; returns layer-12 states."""
        lm = self.eagle_model.language_model
        embeds = lm.get_input_embeddings()(input_ids)
        vit = self.eagle_model.extract_feature(pixel_values).to(embeds.dtype)
        embeds = self.insert_image_features(embeds, input_ids, vit)
        hidden = lm.model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return self.eagle_linear(hidden), attention_mask

    @staticmethod
    def insert_image_features(embeds: torch.Tensor, input_ids: torch.Tensor, vit: torch.Tensor) -> torch.Tensor:
        """`embeds` with its <IMG_CONTEXT> positions replaced, in order, by the rows of `vit` (B, N, D).

        The same result as `masked_scatter`, written as a gather + where so that no shape depends on the data:
        `torch.compile(fullgraph=True)` and CUDA-graph capture see one static graph. The count check syncs with
        the device, so it runs only in eager mode (a traced graph trusts the processor, which builds the ids), and
        not while a CUDA graph is captured (a host sync aborts the capture)."""
        selected = input_ids == IMAGE_TOKEN_INDEX
        if not torch.compiler.is_compiling() and not _tracing() and not _capturing(input_ids):
            found = int(selected.sum())
            if found != vit.shape[0] * vit.shape[1]:
                raise ValueError(f"input_ids hold {found} image tokens but the images give "
                                 f"{vit.shape[0] * vit.shape[1]}.")
        flat = selected.reshape(-1)
        rows_available = vit.shape[0] * vit.shape[1]  # clamped: a stray extra token cannot index past the end
        index = (torch.cumsum(flat.to(torch.int64), 0) - 1).clamp(0, rows_available - 1)  # k-th token -> k-th row
        rows = vit.reshape(-1, vit.shape[-1]).index_select(0, index).reshape(embeds.shape)
        return torch.where(selected.unsqueeze(-1), rows, embeds)


def _tracing() -> bool:
    """Inside `torch.jit.trace` / the TorchScript ONNX exporter (no data-dependent Python there either)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _capturing(tensor: torch.Tensor) -> bool:
    """Whether a CUDA graph is being captured on the current stream (asked only for a CUDA tensor: the query
    needs a driver)."""
    return tensor.is_cuda and torch.cuda.is_current_stream_capturing()


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    if cfg.kind == "compact":
        return CompactBackbone(cfg)
    if cfg.kind == "eagle":
        return EagleBackbone(cfg)
    raise ValueError(f"Unknown backbone kind {cfg.kind!r}; use 'eagle' or 'compact'.")
