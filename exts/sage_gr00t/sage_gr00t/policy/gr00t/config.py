"""GR00T N1.5 model configuration: the published sizes (`n1.5`) and a CPU-trainable `compact` preset.

Field names follow upstream's `backbone_cfg` / `action_head_cfg` so a real checkpoint's config
maps onto these dataclasses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class TransformerConfig:
    """A diffusers-style transformer stack (DiT or the VL self-attention)."""

    num_attention_heads: int = 32
    attention_head_dim: int = 48
    num_layers: int = 16
    output_dim: int = 1024
    dropout: float = 0.2
    final_dropout: bool = True
    interleave_self_attention: bool = True  # DiT: odd blocks self-attend, even blocks cross-attend
    cross_attention_dim: int | None = 2048
    positional_embeddings: str | None = None
    max_num_positional_embeddings: int = 512

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


@dataclass
class ActionHeadConfig:
    hidden_size: int = 1024
    input_embedding_dim: int = 1536
    backbone_embedding_dim: int = 2048
    max_state_dim: int = 64
    action_dim: int = 32  # padded action dimension
    action_horizon: int = 16
    max_num_embodiments: int = 32
    num_target_vision_tokens: int = 32  # learned "future" tokens
    max_seq_len: int = 1024
    add_pos_embed: bool = True
    use_vlln: bool = True
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    num_timestep_buckets: int = 1000
    num_inference_timesteps: int = 4
    # Whether the DiT's cross-attention masks padded VL tokens. Upstream N1.5 does not (padded tokens are
    # attended); None = decided by the backbone: masked for `compact` (how the shipped compact checkpoints were
    # trained), not masked for `eagle` (upstream's behaviour).
    mask_vl_padding: bool | None = None
    diffusion_model_cfg: TransformerConfig = field(default_factory=TransformerConfig)
    vl_self_attention_cfg: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(
            num_attention_heads=32, attention_head_dim=64, num_layers=4, dropout=0.2,
            interleave_self_attention=False, cross_attention_dim=None,
        )
    )


@dataclass
class BackboneConfig:
    """`eagle`: Eagle 2.5 (SigLIP + optional pixel shuffle + MLP + Qwen3 to layer 12); `compact`: small CNN + text
    encoder. The eagle defaults are N1.5's real Eagle config (`use_pixel_shuffle: false`: 256 image tokens per
    224 px frame, projector `mlp1` 1152 -> 2048; the SigLIP pooling head exists)."""

    kind: str = "eagle"
    select_layer: int = 12
    project_to_dim: int | None = None
    image_size: int = 224
    # eagle
    vision_hidden_size: int = 1152
    vision_layers: int = 27
    vision_heads: int = 16
    vision_intermediate_size: int = 4304
    patch_size: int = 14
    downsample_ratio: float = 0.5  # pixel-shuffle factor, used only with use_pixel_shuffle
    use_pixel_shuffle: bool = False
    vision_use_head: bool = True  # SigLIP's pooling head (`vision_model.head.*`): in N1.5's checkpoint, unused
    llm_hidden_size: int = 2048
    llm_total_layers: int = 28
    llm_heads: int = 16
    llm_kv_heads: int = 8
    llm_intermediate_size: int = 6144
    vocab_size: int = 151680
    tokenizer_path: str | None = None  # local Qwen3 tokenizer folder for real checkpoints
    # compact
    width: int = 128
    text_layers: int = 2
    fusion_layers: int = 2
    max_text_tokens: int = 64
    # Language FiLM on the conv stages (RT-1 / BC-Z): the instruction scales and shifts the image features'
    # channels, so a colour or object word can select the image region that shows it before any attention.
    film: bool = False

    @property
    def image_tokens_per_frame(self) -> int:
        """Eagle image tokens per frame: (image_size / patch_size)^2 patches, x downsample_ratio^2 if shuffled."""
        side = self.image_size // self.patch_size
        if self.use_pixel_shuffle:
            side = int(side * self.downsample_ratio)
        return side * side


@dataclass
class Gr00tConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    preset: str = "n1.5"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Gr00tConfig:
        head = dict(data["action_head"])
        head["diffusion_model_cfg"] = _build(TransformerConfig, head["diffusion_model_cfg"])
        head["vl_self_attention_cfg"] = _build(TransformerConfig, head["vl_self_attention_cfg"])
        return cls(
            backbone=_build(BackboneConfig, data["backbone"]),
            action_head=_build(ActionHeadConfig, head),
            preset=data.get("preset", "custom"),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> Gr00tConfig:
        return cls.from_dict(json.loads(path.read_text()))


def _build(kind, data: dict):
    known = {f.name for f in fields(kind)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"Unknown {kind.__name__} fields in checkpoint config: {sorted(unknown)}.")
    return kind(**data)


def n15_config() -> Gr00tConfig:
    """GR00T N1.5's published sizes (action head ~1.07B parameters, DiT ~550M), following nvidia/GR00T-N1.5-3B's
    config: Eagle 2.5 without pixel shuffle (256 image tokens per frame, `mlp1` 1152 -> 2048), Qwen3 read at layer
    12, no projection after the backbone (`project_to_dim` null), and a DiT that does not mask VL padding."""
    return Gr00tConfig(
        preset="n1.5",
        backbone=BackboneConfig(kind="eagle", select_layer=12, project_to_dim=None, image_size=224, patch_size=14,
                                use_pixel_shuffle=False, vision_use_head=True),
        action_head=ActionHeadConfig(mask_vl_padding=False),
    )


def compact_config(width: int = 128, head_width: int | None = None, preset: str = "compact") -> Gr00tConfig:
    """A small model with the same structure that trains and runs on a CPU. `head_width` (default `width`) sizes
    the action head; a narrower head than backbone is reached through the backbone's projection, as in N1.5."""
    width, backbone_width = head_width or width, width
    heads = max(2, width // 32)
    projection = None if backbone_width == width else width
    return Gr00tConfig(
        preset=preset,
        backbone=BackboneConfig(kind="compact", image_size=128, width=backbone_width, project_to_dim=projection),
        action_head=ActionHeadConfig(
            hidden_size=width,
            input_embedding_dim=width,
            backbone_embedding_dim=width,
            num_target_vision_tokens=8,
            max_seq_len=64,
            diffusion_model_cfg=TransformerConfig(
                num_attention_heads=heads, attention_head_dim=32, num_layers=6, output_dim=width, dropout=0.1,
                cross_attention_dim=width,
            ),
            vl_self_attention_cfg=TransformerConfig(
                num_attention_heads=heads, attention_head_dim=32, num_layers=1, dropout=0.1,
                interleave_self_attention=False, cross_attention_dim=None,
            ),
        ),
    )


def compact_v3_config() -> Gr00tConfig:
    """`compact_v2` with language FiLM in the vision encoder (zero-initialized: a compact_v2 checkpoint loads into
    it and acts unchanged until fine-tuned)."""
    cfg = compact_config(width=256, head_width=128, preset="compact_v3")
    cfg.backbone.film = True
    return cfg


def compact_v2_config() -> Gr00tConfig:
    """Policy v2: a wider vision-language backbone (varied objects, colours and instructions) over the compact
    action head, sized to stay within 40 ms per chunk on one CPU core."""
    return compact_config(width=256, head_width=128, preset="compact_v2")


PRESETS = {"n1.5": n15_config, "compact": compact_config, "compact_v2": compact_v2_config,
           "compact_v3": compact_v3_config}
