"""ONNX export of the GR00T N1.5-architecture policy, in upstream's split, and an onnxruntime runner.

Upstream (Isaac-GR00T's `deployment_scripts`) exports the ViT, the LLM, the VL self-attention, the state
encoder, the action encoder, the DiT and the action decoder as separate graphs and runs the Euler loop outside
them. The same split here, mapped onto this model's modules:

- `vl_backbone.onnx` (compact backbone only): conv vision encoder + byte-level text encoder + fusion ->
  `vl_features` (B, S, D) and `vl_mask` (B, S); S = vision tokens + text length (dynamic axis `text_len`).
- `eagle_vit.onnx` (eagle backbone): SigLIP (+ pixel shuffle where configured) + `mlp1` -> `vit_embeds`
  (B, image tokens, LLM width); 256 tokens per 224 px frame in N1.5.
- `eagle_llm.onnx` (eagle backbone): token embedding, the ViT rows written over the <IMG_CONTEXT> positions (a
  gather, no data-dependent shapes), Qwen3 to `select_layer`, `eagle_linear` -> `vl_features` (B, L, D); the
  mask is the attention mask itself. Dynamic `batch` and `vl_seq`.
- `vl_self_attention.onnx`: `vlln` (LayerNorm) + the VL self-attention transformer.
- `state_encoder.onnx`: state (B, 1, 64) + embodiment id -> state token.
- `action_encoder.onnx`: noisy actions (B, H, A) + timestep bucket (B,) + embodiment id -> action tokens,
  position embeddings added (as `FlowMatchingActionHead._velocity` does before the DiT).
- `dit.onnx`: [state token | learned future tokens | action tokens] (concatenated inside the graph) +
  VL tokens + timestep bucket (+ `vl_mask` where the head masks VL padding) -> DiT output.
- `action_decoder.onnx`: DiT output + embodiment id -> velocity of the last H tokens.
- `dit_vl_cache.onnx` + `dit_step.onnx`: the DiT split for speed, as the torch head caches `encoder_kv`: the
  cross-attention keys / values of the VL tokens (and the additive padding mask) once per chunk, then one DiT pass
  per Euler step on them (same math as `DiT.forward`, fixed token count, all AdaLN modulations in one matmul).
  The runner uses these by default; `use_vl_cache=False` runs `dit.onnx` instead.

Axes `batch` and `vl_seq` (VL sequence length; for the backbone, `text_len`) are dynamic. `manifest.json` lists
each graph's file(s), input / output names, dtypes, dynamic axes and the opset. Exported with PyTorch's
TorchScript-based exporter through wrappers (the model code is untouched), float32. `OnnxGr00tRunner` runs the
`num_inference_timesteps` Euler loop of `FlowMatchingActionHead.get_action` on these graphs.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sage_gr00t.policy.gr00t.action_head import FlowMatchingActionHead
from sage_gr00t.policy.gr00t.model import Gr00tModel

OPSET = 18
MANIFEST = "manifest.json"
EXTERNAL_DATA_BYTES = 1.5e9  # graphs with more weights keep them in `<graph>.onnx.data` (protobuf's 2 GB limit)
FORMAT = "sage-gr00t-onnx/1"
GRAPHS = ("vl_backbone", "vl_self_attention", "state_encoder", "action_encoder", "dit", "action_decoder",
          "dit_vl_cache", "dit_step")
EAGLE_GRAPHS = ("eagle_vit", "eagle_llm")  # the Eagle backbone's split (upstream's ViT and LLM graphs)


class OnnxExportError(RuntimeError):
    """An export or an exported folder that cannot be used (missing / corrupt graphs or manifest)."""


# ---------------------------------------------------------------------------------------------------- wrappers
def _padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 1 = token / 0 = padding -> additive attention mask (B, 1, 1, S): 0 / -inf."""
    return torch.zeros(mask.shape, dtype=dtype).masked_fill(mask == 0, float("-inf"))[:, None, None, :]


def _encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`nn.TransformerEncoderLayer` (norm_first, eval) written out: `nn.MultiheadAttention`'s projections, softmax
    attention with an additive padding mask, feed-forward; the same math as PyTorch's fused encoder path."""
    attn = layer.self_attn
    heads, width = attn.num_heads, attn.embed_dim
    dim_head = width // heads
    h = layer.norm1(x)
    q, k, v = torch.nn.functional.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    batch = x.shape[0]
    q = q.reshape(batch, -1, heads, dim_head).transpose(1, 2) * dim_head**-0.5
    k = k.reshape(batch, -1, heads, dim_head).permute(0, 2, 3, 1)
    v = v.reshape(batch, -1, heads, dim_head).transpose(1, 2)
    out = torch.softmax(q @ k + bias, dim=-1) @ v
    x = x + attn.out_proj(out.transpose(1, 2).reshape(batch, -1, width))
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))


class _CompactBackbone(nn.Module):
    """`CompactBackbone.forward` with its transformer layers written out (`_encoder_layer`): the TorchScript
    exporter then keeps the text length dynamic (tracing `nn.MultiheadAttention` bakes it in), and the graph is
    smaller than the dynamo exporter's."""

    def __init__(self, model: Gr00tModel) -> None:
        super().__init__()
        self.backbone = model.backbone
        for layer in [*self.backbone.text_encoder.layers, *self.backbone.fusion.layers]:
            if not layer.norm_first or layer.activation_relu_or_gelu != 2:
                raise OnnxExportError("The compact backbone's encoder layers must be pre-norm with GELU.")

    def forward(self, pixel_values, input_ids, attention_mask):
        bb = self.backbone
        vis = bb.vision(pixel_values).flatten(2).transpose(1, 2) + bb.vision_pos
        text = bb.text_embed(input_ids) + bb.text_pos[:, : input_ids.shape[1]]
        bias = _padding_bias(attention_mask, text.dtype)
        for layer in bb.text_encoder.layers:
            text = _encoder_layer(layer, text, bias)
        tokens = torch.cat([vis, text], dim=1)
        mask = torch.cat([torch.ones(vis.shape[:2], dtype=attention_mask.dtype), attention_mask], 1)
        bias = _padding_bias(mask, tokens.dtype)
        for layer in bb.fusion.layers:
            tokens = _encoder_layer(layer, tokens, bias)
        return bb.eagle_linear(tokens), mask


class _EagleViT(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, pixel_values):
        return self.backbone.eagle_model.extract_feature(pixel_values)


class _EagleLLM(nn.Module):
    """`EagleBackbone.forward` after the ViT: embeddings, image rows inserted, Qwen3, projection."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids, attention_mask, vit_embeds):
        bb = self.backbone
        lm = bb.eagle_model.language_model
        embeds = lm.get_input_embeddings()(input_ids)
        embeds = bb.insert_image_features(embeds, input_ids, vit_embeds.to(embeds.dtype))
        hidden = lm.model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return bb.eagle_linear(hidden)


def _eagle_specs(model: Gr00tModel, batch: int) -> dict[str, _Spec]:
    """Example inputs for the Eagle graphs: a left-padded first sample, one frame of image tokens each."""
    from sage_gr00t.policy.gr00t.backbone import IMAGE_TOKEN_INDEX

    bb, cfg = model.backbone, model.config.backbone
    pixels = torch.rand(batch, 3, cfg.image_size, cfg.image_size) * 2 - 1
    with torch.no_grad():
        vit = _EagleViT(bb).eval()(pixels)
    image = cfg.image_tokens_per_frame
    ids = torch.cat([torch.randint(0, 1000, (batch, 3)), torch.full((batch, image), IMAGE_TOKEN_INDEX),
                     torch.randint(0, 1000, (batch, 4))], dim=1)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    s = {0: "batch", 1: "vl_seq"}
    return {
        "eagle_vit": _Spec(_EagleViT(bb), (pixels,), ["pixel_values"], ["vit_embeds"],
                           {"pixel_values": {0: "batch"}, "vit_embeds": {0: "batch"}}),
        "eagle_llm": _Spec(_EagleLLM(bb), (ids, mask, vit), ["input_ids", "attention_mask", "vit_embeds"],
                           ["vl_features"], {"input_ids": s, "attention_mask": s, "vit_embeds": {0: "batch"},
                                             "vl_features": s}),
    }


class _VLSelfAttention(nn.Module):
    def __init__(self, head: FlowMatchingActionHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, vl_features):
        return self.head.process_backbone_output(vl_features)


class _StateEncoder(nn.Module):
    def __init__(self, head: FlowMatchingActionHead) -> None:
        super().__init__()
        self.encoder = head.state_encoder

    def forward(self, state, embodiment_id):
        return self.encoder(state, embodiment_id)


class _ActionEncoder(nn.Module):
    def __init__(self, head: FlowMatchingActionHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, actions, timestep, embodiment_id):
        features = self.head.action_encoder(actions, timestep, embodiment_id)
        if self.head.cfg.add_pos_embed:
            pos = torch.arange(features.shape[1], device=features.device)
            features = features + self.head.position_embedding(pos).unsqueeze(0)
        return features


class _DiT(nn.Module):
    def __init__(self, head: FlowMatchingActionHead) -> None:
        super().__init__()
        self.head = head

    def _tokens(self, state_features, action_features):
        future = self.head.future_tokens.weight.unsqueeze(0).expand(action_features.shape[0], -1, -1)
        return torch.cat([state_features, future, action_features], dim=1)

    def forward(self, state_features, action_features, vl_embs, timestep):
        return self.head.model(self._tokens(state_features, action_features), vl_embs, timestep, None)


class _MaskedDiT(_DiT):
    def forward(self, state_features, action_features, vl_embs, timestep, vl_mask):
        return self.head.model(self._tokens(state_features, action_features), vl_embs, timestep, vl_mask)


class _DiTVLCache(nn.Module):
    """The DiT's VL side, once per chunk: per cross-attention block the keys (B, heads, head_dim, S), pre-scaled by
    1 / sqrt(head_dim), and values (B, heads, S, head_dim); with VL padding masked, the additive mask (B, 1, 1, S)."""

    def __init__(self, head: FlowMatchingActionHead) -> None:
        super().__init__()
        self.dit = head.model
        self.masked = head.mask_vl_padding
        self.cross = [i for i in range(len(self.dit.transformer_blocks)) if self.dit._cross(i)]

    def forward(self, vl_embs, vl_mask=None):
        outs = []
        for i in self.cross:
            attn = self.dit.transformer_blocks[i].attn1
            heads = attn.heads
            dim_head = attn.to_k.out_features // heads
            batch, seq = vl_embs.shape[0], vl_embs.shape[1]
            k = attn.to_k(vl_embs).reshape(batch, seq, heads, dim_head).permute(0, 2, 3, 1)
            v = attn.to_v(vl_embs).reshape(batch, seq, heads, dim_head).transpose(1, 2)
            outs += [k * dim_head**-0.5, v]
        if self.masked:
            bias = torch.zeros(vl_mask.shape, dtype=vl_embs.dtype).masked_fill(vl_mask == 0, float("-inf"))
            outs.append(bias[:, None, None, :])
        return tuple(outs)


class _DiTStep(nn.Module):
    """One DiT pass on the cached VL keys / values (`_DiTVLCache`): the same math as `DiT.forward` with every shape
    but the batch fixed (token count 1 + future + horizon), so the graph carries hardly any shape arithmetic, and
    all AdaLN modulations (every block's and the output's) from one matmul on the timestep embedding."""

    def __init__(self, head: FlowMatchingActionHead) -> None:
        super().__init__()
        self.head = head
        self.dit = head.model
        cfg = head.cfg
        self.tokens = 1 + cfg.num_target_vision_tokens + cfg.action_horizon
        self.masked = head.mask_vl_padding
        blocks = self.dit.transformer_blocks
        weights = [b.norm1.linear.weight for b in blocks] + [self.dit.proj_out_1.weight]
        biases = [b.norm1.linear.bias for b in blocks] + [self.dit.proj_out_1.bias]
        self.modulation = nn.Linear(weights[0].shape[1], sum(w.shape[0] for w in weights))
        with torch.no_grad():
            self.modulation.weight.copy_(torch.cat(weights))
            self.modulation.bias.copy_(torch.cat(biases))

    def _attention(self, q, k, v, bias=None):
        scores = q @ k
        if bias is not None:
            scores = scores + bias
        return torch.softmax(scores, dim=-1) @ v

    def forward(self, state_features, action_features, timestep, *cache):
        T, dit = self.tokens, self.dit
        D = dit.cfg.inner_dim
        bias = cache[-1] if self.masked else None
        future = self.head.future_tokens.weight.unsqueeze(0).expand(action_features.shape[0], -1, -1)
        x = torch.cat([state_features, future, action_features], dim=1)
        temb = dit.timestep_encoder(timestep)
        mods = self.modulation(torch.nn.functional.silu(temb))
        kv = iter(cache)
        for i, block in enumerate(dit.transformer_blocks):
            scale, shift = mods[:, 2 * i * D:(2 * i + 1) * D], mods[:, (2 * i + 1) * D:(2 * i + 2) * D]
            h = torch.nn.functional.layer_norm(x, (D,), eps=block.norm1.norm.eps)
            h = h * (1 + scale[:, None]) + shift[:, None]
            if block.pos_embed is not None:
                h = h + block.pos_embed.pe[:, :T]
            attn = block.attn1
            heads = attn.heads
            dim_head = attn.to_q.out_features // heads
            q = attn.to_q(h).reshape(-1, T, heads, dim_head).transpose(1, 2)
            if dit._cross(i):
                out = self._attention(q, next(kv), next(kv), bias)
            else:
                k = attn.to_k(h).reshape(-1, T, heads, dim_head).permute(0, 2, 3, 1) * dim_head**-0.5
                v = attn.to_v(h).reshape(-1, T, heads, dim_head).transpose(1, 2)
                out = self._attention(q, k, v)
            x = x + attn.to_out[0](out.transpose(1, 2).reshape(-1, T, heads * dim_head))
            x = x + block.ff(block.norm3(x))
        n = len(dit.transformer_blocks)
        shift, scale = mods[:, 2 * n * D:(2 * n + 1) * D], mods[:, (2 * n + 1) * D:]
        x = dit.norm_out(x) * (1 + scale[:, None]) + shift[:, None]
        return dit.proj_out_2(x)


class _ActionDecoder(nn.Module):
    def __init__(self, head: FlowMatchingActionHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, model_output, embodiment_id):
        horizon = self.head.cfg.action_horizon
        return self.head.action_decoder(model_output, embodiment_id)[:, -horizon:]


@dataclass
class _Spec:
    module: nn.Module
    args: tuple
    inputs: list[str]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]


def _specs(model: Gr00tModel, vl_seq: int = 12, batch: int = 2) -> dict[str, _Spec]:
    head = model.action_head
    cfg = head.cfg
    d_vl = cfg.backbone_embedding_dim
    emb = torch.zeros(batch, dtype=torch.long)
    t = torch.full((batch,), 250, dtype=torch.long)
    horizon, tokens = cfg.action_horizon, 1 + cfg.num_target_vision_tokens + cfg.action_horizon
    b, s = {0: "batch"}, {0: "batch", 1: "vl_seq"}
    specs: dict[str, _Spec] = {}
    if model.config.backbone.kind == "compact":
        size, text = model.config.backbone.image_size, 5
        ids = torch.randint(0, 256, (batch, text))
        mask = torch.ones(batch, text, dtype=torch.long)
        mask[0, -2:] = 0
        specs["vl_backbone"] = _Spec(
            _CompactBackbone(model), (torch.rand(batch, 3, size, size) * 2 - 1, ids, mask),
            ["pixel_values", "input_ids", "attention_mask"], ["vl_features", "vl_mask"],
            {"pixel_values": b, "input_ids": {0: "batch", 1: "text_len"}, "attention_mask": {0: "batch", 1: "text_len"},
             "vl_features": s, "vl_mask": s})
    elif model.config.backbone.kind == "eagle" and hasattr(model, "backbone"):
        specs.update(_eagle_specs(model, batch))
    vl = torch.randn(batch, vl_seq, d_vl)
    specs["vl_self_attention"] = _Spec(_VLSelfAttention(head), (vl,), ["vl_features"], ["vl_embs"],
                                       {"vl_features": s, "vl_embs": s})
    specs["state_encoder"] = _Spec(_StateEncoder(head), (torch.randn(batch, 1, cfg.max_state_dim), emb),
                                   ["state", "embodiment_id"], ["state_features"],
                                   {"state": b, "embodiment_id": b, "state_features": b})
    specs["action_encoder"] = _Spec(_ActionEncoder(head), (torch.randn(batch, horizon, cfg.action_dim), t, emb),
                                    ["actions", "timestep", "embodiment_id"], ["action_features"],
                                    {"actions": b, "timestep": b, "embodiment_id": b, "action_features": b})
    dit_args = (torch.randn(batch, 1, cfg.input_embedding_dim), torch.randn(batch, horizon, cfg.input_embedding_dim),
                torch.randn(batch, vl_seq, cfg.diffusion_model_cfg.cross_attention_dim or d_vl), t)
    dit_inputs = ["state_features", "action_features", "vl_embs", "timestep"]
    dit_dynamic = {"state_features": b, "action_features": b, "vl_embs": s, "timestep": b, "model_output": b}
    vl_mask = torch.ones(batch, vl_seq, dtype=torch.long)
    vl_mask[0, -3:] = 0
    if head.mask_vl_padding:
        specs["dit"] = _Spec(_MaskedDiT(head), (*dit_args, vl_mask), [*dit_inputs, "vl_mask"], ["model_output"],
                             {**dit_dynamic, "vl_mask": s})
    else:
        specs["dit"] = _Spec(_DiT(head), dit_args, dit_inputs, ["model_output"], dit_dynamic)
    cache = _DiTVLCache(head)
    names = [f"{kind}_{i}" for i in cache.cross for kind in ("k", "v")] + (["vl_bias"] if head.mask_vl_padding else [])
    cache_args = (dit_args[2], vl_mask) if head.mask_vl_padding else (dit_args[2],)
    specs["dit_vl_cache"] = _Spec(cache, cache_args, dit_inputs[2:3] + (["vl_mask"] if head.mask_vl_padding else []),
                                  names, {"vl_embs": s, "vl_mask": s,
                                          **{n: {0: "batch", 2 if n.startswith("v_") else 3: "vl_seq"} for n in names}})
    with torch.no_grad():
        cache_out = cache(*cache_args)
    specs["dit_step"] = _Spec(_DiTStep(head), (dit_args[0], dit_args[1], t, *cache_out),
                              ["state_features", "action_features", "timestep", *names], ["model_output"],
                              {"state_features": b, "action_features": b, "timestep": b, "model_output": b,
                               **{n: {0: "batch", 2 if n.startswith("v_") else 3: "vl_seq"} for n in names}})
    specs["action_decoder"] = _Spec(_ActionDecoder(head), (torch.randn(batch, tokens, cfg.hidden_size), emb),
                                    ["model_output", "embodiment_id"], ["velocity"],
                                    {"model_output": b, "embodiment_id": b, "velocity": b})
    for spec in specs.values():  # a new wrapper is in training mode, and the exporter restores it (dropout on)
        spec.module.eval()
    return specs


def _dtype_name(t: torch.Tensor) -> str:
    return {torch.float32: "float32", torch.int64: "int64"}.get(t.dtype, str(t.dtype).removeprefix("torch."))


def export_onnx(model: Gr00tModel, out: str | Path, opset: int = OPSET, graphs: tuple[str, ...] | None = None,
                verbose: bool = False) -> dict:
    """Export `model` (float32 copy, eval mode) as the graphs above into folder `out`; returns the manifest.

    `graphs`: a subset of `GRAPHS` + `EAGLE_GRAPHS` (default: every graph this model has; `vl_backbone` only for
    `compact`, the Eagle graphs only for an `eagle` backbone)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OnnxExportError(f"Cannot write to {out}: {exc.strerror or exc}.") from exc
    model = model.float().eval()
    specs = _specs(model)
    wanted = [g for g in (*GRAPHS, *EAGLE_GRAPHS) if g in specs and (graphs is None or g in graphs)]
    head = model.action_head.cfg
    manifest: dict = {
        "format": FORMAT, "opset": opset, "preset": model.config.preset, "backbone": model.config.backbone.kind,
        "mask_vl_padding": bool(model.action_head.mask_vl_padding),
        "action_horizon": head.action_horizon, "action_dim": head.action_dim, "max_state_dim": head.max_state_dim,
        "num_inference_timesteps": head.num_inference_timesteps, "num_timestep_buckets": head.num_timestep_buckets,
        "backbone_embedding_dim": head.backbone_embedding_dim, "graphs": {},
    }
    for name in wanted:
        spec = specs[name]
        path = out / f"{name}.onnx"
        _export_graph(spec, path, opset, verbose)
        files = sorted(p.name for p in out.iterdir() if p.name.startswith(f"{name}.onnx"))
        manifest["graphs"][name] = {
            "file": path.name, "files": files,
            "inputs": [{"name": n, "dtype": _dtype_name(a)} for n, a in zip(spec.inputs, spec.args, strict=True)],
            "outputs": spec.outputs,
            "dynamic_axes": {k: {str(i): v for i, v in axes.items()} for k, axes in spec.dynamic.items()},
        }
    model.eval()
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _external_data(spec: _Spec, path: Path, before: set[str]) -> None:
    """Weights beside the graph in one `<graph>.onnx.data` file (protobuf stops at 2 GB: N1.5's DiT is ~2.2 GB in
    fp32); the exporter's per-tensor files, if it wrote any, are merged into it and removed."""
    import onnx

    graph = onnx.load(str(path), load_external_data=True)
    stray = {p.name for p in path.parent.iterdir()} - before - {path.name}
    data = path.name + ".data"
    onnx.save_model(graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                    size_threshold=1024)
    for name in stray - {data}:
        (path.parent / name).unlink(missing_ok=True)


def _export_graph(spec: _Spec, path: Path, opset: int, verbose: bool) -> None:
    """The TorchScript-based exporter: about a second per graph, where the dynamo exporter takes several. PyTorch's
    fused transformer-encoder fast path (no ONNX symbolic) is switched off while tracing."""
    before = {p.name for p in path.parent.iterdir()} - {path.name}
    (path.parent / (path.name + ".data")).unlink(missing_ok=True)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(spec.module, spec.args, str(path), input_names=spec.inputs, output_names=spec.outputs,
                              dynamic_axes=spec.dynamic, opset_version=opset, dynamo=False, verbose=verbose,
                              do_constant_folding=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    if _param_bytes(spec.module) > EXTERNAL_DATA_BYTES:
        _external_data(spec, path, before)


def _param_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in {id(p): p for p in module.parameters()}.values())


# ------------------------------------------------------------------------------------------------------ runner
class OnnxGr00tRunner:
    """The exported graphs on onnxruntime: the same normalized action chunk as `Gr00tModel.get_action` given the
    same noise. Inputs and outputs are numpy arrays (float32; ids / masks / embodiment ids int64)."""

    def __init__(self, folder: str | Path, intra_op_threads: int | None = 1,
                 providers: list[str] | None = None, use_vl_cache: bool = True) -> None:
        """`use_vl_cache`: denoise with `dit_vl_cache` + `dit_step` (VL keys / values computed once per chunk)
        where the export has them, else with `dit` (the VL tokens as input, upstream's DiT graph)."""
        import onnxruntime as ort

        self.use_vl_cache = use_vl_cache

        folder = Path(folder)
        manifest_file = folder / MANIFEST
        try:
            self.manifest = json.loads(manifest_file.read_text())
        except (OSError, ValueError) as exc:
            raise OnnxExportError(f"No usable ONNX export at {folder}: {manifest_file} is missing or corrupt "
                                  f"({type(exc).__name__}). Run sage-export-onnx first.") from exc
        if self.manifest.get("format") != FORMAT:
            raise OnnxExportError(f"{manifest_file} is not a {FORMAT} manifest.")
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        graphs = self.manifest["graphs"]
        cached = use_vl_cache and "dit_step" in graphs
        skip = {"dit"} if cached else {"dit_vl_cache", "dit_step"}
        missing = [g for g in GRAPHS[1:6] if g not in graphs and g not in skip]
        if missing or (cached and "dit_vl_cache" not in graphs):
            raise OnnxExportError(f"The ONNX export at {folder} lacks {missing or ['dit_vl_cache']}; re-export it.")
        self.use_vl_cache = cached
        self.sessions = {}
        for name, graph in graphs.items():
            if name in skip:
                continue
            try:
                self.sessions[name] = ort.InferenceSession(str(folder / graph["file"]), options,
                                                           providers=providers or ["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise OnnxExportError(f"Cannot load {folder / graph['file']}: {exc}") from exc
        self._inputs = {name: [i.name for i in s.get_inputs()] for name, s in self.sessions.items()}

    @property
    def has_backbone(self) -> bool:
        return "vl_backbone" in self.sessions or all(g in self.sessions for g in EAGLE_GRAPHS)

    def _run(self, name: str, **feeds: np.ndarray) -> list[np.ndarray]:
        return self.sessions[name].run(None, {k: feeds[k] for k in self._inputs[name]})

    def encode(self, pixel_values: np.ndarray, input_ids: np.ndarray,
               attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_backbone:
            raise OnnxExportError("This export has no vl_backbone graph (nor eagle_vit + eagle_llm): pass VL "
                                  "features to get_action_from_features.")
        if "vl_backbone" not in self.sessions:  # Eagle: ViT, then the LLM over the ids with the ViT rows in them
            (vit,) = self._run("eagle_vit", pixel_values=np.asarray(pixel_values, np.float32))
            mask = np.asarray(attention_mask, np.int64)
            (features,) = self._run("eagle_llm", input_ids=np.asarray(input_ids, np.int64), attention_mask=mask,
                                    vit_embeds=vit)
            return features, mask
        features, mask = self._run("vl_backbone", pixel_values=np.asarray(pixel_values, np.float32),
                                   input_ids=np.asarray(input_ids, np.int64),
                                   attention_mask=np.asarray(attention_mask, np.int64))
        return features, mask

    def get_action(self, pixel_values: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray,
                   state: np.ndarray, embodiment_id: np.ndarray, noise: np.ndarray) -> np.ndarray:
        features, mask = self.encode(pixel_values, input_ids, attention_mask)
        return self.get_action_from_features(features, mask, state, embodiment_id, noise)

    def get_action_from_features(self, vl_features: np.ndarray, vl_mask: np.ndarray | None, state: np.ndarray,
                                 embodiment_id: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """`FlowMatchingActionHead.get_action`: Euler steps at t = i / steps, timestep bucket int(t * buckets)."""
        m = self.manifest
        vl_features = np.asarray(vl_features, np.float32)
        batch = vl_features.shape[0]
        emb = np.asarray(embodiment_id, np.int64).reshape(batch)
        actions = np.asarray(noise, np.float32)
        shape = (batch, m["action_horizon"], m["action_dim"])
        if actions.shape != shape:
            raise ValueError(f"noise must have shape {shape}, got {actions.shape}.")
        if vl_mask is None:
            vl_mask = np.ones(vl_features.shape[:2], np.int64)
        vl_mask = np.asarray(vl_mask, np.int64)
        (vl_embs,) = self._run("vl_self_attention", vl_features=vl_features)
        (state_features,) = self._run("state_encoder", state=np.asarray(state, np.float32), embodiment_id=emb)
        steps = m["num_inference_timesteps"]
        cached = self.use_vl_cache
        if cached:  # the VL keys / values once per chunk, as FlowMatchingActionHead.get_action's encoder_kv
            cache = dict(zip(self.manifest["graphs"]["dit_vl_cache"]["outputs"],
                             self._run("dit_vl_cache", vl_embs=vl_embs, vl_mask=vl_mask), strict=True))
        for i in range(steps):
            t = np.full((batch,), int(i / steps * m["num_timestep_buckets"]), np.int64)
            (action_features,) = self._run("action_encoder", actions=actions, timestep=t, embodiment_id=emb)
            if cached:
                (out,) = self._run("dit_step", state_features=state_features, action_features=action_features,
                                   timestep=t, **cache)
            else:
                (out,) = self._run("dit", state_features=state_features, action_features=action_features,
                                   vl_embs=vl_embs, timestep=t, vl_mask=vl_mask)
            (velocity,) = self._run("action_decoder", model_output=out, embodiment_id=emb)
            actions = actions + velocity / np.float32(steps)
        return actions


# ------------------------------------------------------------------------------------------------------- bench
def example_inputs(model: Gr00tModel, batch: int = 1, seed: int = 0,
                   text: str = "pick up the red apple and place it on the plate") -> dict[str, torch.Tensor]:
    """A batch (random image in [-1, 1], instruction ids, random state) and noise: the tokenized instruction for
    the compact backbone; for the eagle backbone (whose tokenizer is not shipped) synthetic prompt ids with one
    frame of <IMG_CONTEXT> tokens (`synthetic_eagle_ids`)."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    if cfg.backbone.kind == "eagle":
        ids, mask = synthetic_eagle_ids(cfg.backbone.image_tokens_per_frame, batch,
                                        cfg.backbone.image_tokens_per_frame + 4 + len(text.split()), generator=g)
    else:
        ids, mask = model.backbone.tokenizer([text] * batch, pad_to_longest=True)
    head = cfg.action_head
    return {
        "pixel_values": torch.rand(batch, 3, cfg.backbone.image_size, cfg.backbone.image_size, generator=g) * 2 - 1,
        "input_ids": ids, "attention_mask": mask,
        "state": torch.rand(batch, 1, head.max_state_dim, generator=g) * 2 - 1,
        "embodiment_id": torch.zeros(batch, dtype=torch.long),
        "noise": torch.randn(batch, head.action_horizon, head.action_dim, generator=g),
    }


def synthetic_eagle_ids(image_tokens: int, batch: int, vl_length: int, generator: torch.Generator | None = None,
                        pad_first: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Eagle-shaped ids (B, vl_length): random text ids, then one frame of <IMG_CONTEXT> tokens, then text, as the
    processor lays a prompt out; the first sample left-padded by `pad_first` (when batch > 1). For speed and
    parity checks with random weights, where no tokenizer is at hand."""
    from sage_gr00t.policy.gr00t.backbone import IMAGE_TOKEN_INDEX

    text = vl_length - image_tokens
    if text < 2:
        raise ValueError(f"vl_length {vl_length} leaves no room for text around {image_tokens} image tokens.")
    before = min(4, text // 2)
    ids = torch.randint(0, 150000, (batch, vl_length), generator=generator)
    ids[:, before:before + image_tokens] = IMAGE_TOKEN_INDEX
    mask = torch.ones_like(ids)
    if batch > 1 and pad_first:
        mask[0, :min(pad_first, before)] = 0
    return ids, mask


def bench_latency(model: Gr00tModel, folder: str | Path, calls: int = 30, warmup: int = 5,
                  printer=print) -> dict[str, dict[str, float]]:
    """Per-chunk latency (backbone + 4 Euler steps, batch 1) of PyTorch (1 thread) vs onnxruntime (1 intra-op
    thread), interleaved call by call; prints a table and returns {backend: {median_ms, p10_ms, p90_ms}}."""
    runner = OnnxGr00tRunner(folder, intra_op_threads=1)
    if not runner.has_backbone:
        raise OnnxExportError("--bench needs a compact-backbone export (a vl_backbone graph).")
    batch = example_inputs(model)
    noise = batch.pop("noise")
    feeds = {k: v.numpy() for k, v in batch.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    try:
        model = model.float().eval()

        def torch_call() -> None:
            model.get_action(batch, noise)

        def ort_call() -> None:
            runner.get_action(**feeds, noise=noise.numpy())

        for _ in range(warmup):
            torch_call()
            ort_call()
        for _ in range(calls):
            for name, fn in (("pytorch", torch_call), ("onnxruntime", ort_call)):
                start = time.perf_counter()
                fn()
                times[name].append(1e3 * (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    rows = {}
    for name, values in times.items():
        q = statistics.quantiles(values, n=10)
        rows[name] = {"median_ms": statistics.median(values), "p10_ms": q[0], "p90_ms": q[-1]}
    printer(f"per 16-step chunk, batch 1, 1 thread, {calls} interleaved calls after {warmup} warm-up")
    printer(f"{'backend':<14}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}")
    for name, row in rows.items():
        printer(f"{name:<14}{row['median_ms']:>11.2f}{row['p10_ms']:>9.2f}{row['p90_ms']:>9.2f}")
    printer(f"speed-up (median): {rows['pytorch']['median_ms'] / rows['onnxruntime']['median_ms']:.2f}x")
    return rows


def parity(model: Gr00tModel, folder: str | Path, batch: int = 2, vl_seq: int = 40, seed: int = 0,
           use_vl_cache: bool = True) -> float:
    """Max abs difference of the exported graphs' action chunk vs PyTorch's on the same noise: the whole policy
    (example images and instructions) where the export has a backbone, else the action head on random VL features
    (padding at the end of the first sample's VL tokens)."""
    runner = OnnxGr00tRunner(folder, intra_op_threads=None, use_vl_cache=use_vl_cache)
    model = model.float().eval()
    if runner.has_backbone:
        b = example_inputs(model, batch=batch, seed=seed)
        noise = b.pop("noise")
        ref = model.get_action(b, noise).numpy()
        got = runner.get_action(**{k: v.numpy() for k, v in b.items()}, noise=noise.numpy())
    else:
        cfg = model.config.action_head
        g = torch.Generator().manual_seed(seed)
        features = torch.randn(batch, vl_seq, cfg.backbone_embedding_dim, generator=g)
        mask = torch.ones(batch, vl_seq, dtype=torch.long)
        mask[0, vl_seq // 2:] = 0
        state = torch.rand(batch, 1, cfg.max_state_dim, generator=g) * 2 - 1
        emb = torch.arange(batch, dtype=torch.long) % cfg.max_num_embodiments
        noise = torch.randn(batch, cfg.action_horizon, cfg.action_dim, generator=g)
        ref = model.action_head.get_action(features, mask, state, emb, noise).numpy()
        got = runner.get_action_from_features(features.numpy(), mask.numpy(), state.numpy(), emb.numpy(),
                                              noise.numpy())
    return float(np.abs(ref - got).max())
