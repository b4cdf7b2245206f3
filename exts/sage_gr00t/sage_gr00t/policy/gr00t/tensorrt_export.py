"""TensorRT engines from the exported ONNX graphs (`onnx_export.py`), through the TensorRT Python API, and a
runner that executes the whole chunk on them.

    sage-export-onnx --policy CKPT --out outputs/onnx/n15 --no-check
    sage-export-trt --onnx outputs/onnx/n15 --out outputs/trt/n15 --precision bf16

One engine per graph (`<graph>.engine`) with one optimization profile: batch 1..`max_batch` (optimized for
`opt_batch`), VL length 1..`max_vl_seq` (optimized for `opt_vl_seq`; N1.5's prompt is ~256 image + ~30 text
tokens), text length for the compact backbone up to `max_text_len`. Precisions: `fp32`, `fp16`, `bf16` (the
builder's precision flags over the fp32 graphs: TensorRT picks lower-precision kernels where allowed), `fp8`
(the FP8 flag as well; without Q/DQ nodes in the graph TensorRT only uses FP8 where it can calibrate nothing,
so check the actions' error, which the benchmark prints, before trusting it). `trt_manifest.json` records
what was built.

`tensorrt` (PyPI `tensorrt-cu13`) is imported lazily and is no dependency of the project: without it, or
without a CUDA GPU, every entry point raises `TensorRTUnavailableError` with one line saying which.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sage_gr00t.policy.gr00t.onnx_export import EAGLE_GRAPHS, MANIFEST, OnnxExportError

TRT_MANIFEST = "trt_manifest.json"
PRECISIONS = ("fp32", "fp16", "bf16", "fp8")
# The graphs the runner needs; `dit` (uncached DiT) is not built: the runner denoises with dit_vl_cache + dit_step.
RUNNER_GRAPHS = ("vl_backbone", *EAGLE_GRAPHS, "vl_self_attention", "state_encoder", "action_encoder",
                 "dit_vl_cache", "dit_step", "action_decoder")


class TensorRTUnavailableError(RuntimeError):
    """TensorRT or a CUDA GPU is missing: engines can be neither built nor run here."""


def require_tensorrt() -> Any:
    """The `tensorrt` module, or `TensorRTUnavailableError` naming what is missing (one line)."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailableError(
            "TensorRT is not installed (pip install tensorrt-cu13 on the GPU machine); engines need it.") from exc
    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("TensorRT needs a CUDA GPU and none is visible to PyTorch here.")
    return tensorrt


@dataclass
class TrtBuildConfig:
    precision: str = "bf16"  # fp32 | fp16 | bf16 | fp8
    max_batch: int = 8
    opt_batch: int = 1
    max_vl_seq: int = 300  # VL tokens (image + text) the profile covers
    opt_vl_seq: int = 290
    max_text_len: int = 64  # compact backbone's byte tokens
    workspace_gib: float = 8.0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= opt_batch <= max_batch, got {self.opt_batch}, {self.max_batch}.")
        if not 1 <= self.opt_vl_seq <= self.max_vl_seq:
            raise ValueError(f"need 1 <= opt_vl_seq <= max_vl_seq, got {self.opt_vl_seq}, {self.max_vl_seq}.")

    def axis_range(self, name: str) -> tuple[int, int, int]:
        """(min, opt, max) of a named dynamic axis of the ONNX manifest."""
        ranges = {"batch": (1, self.opt_batch, self.max_batch), "vl_seq": (1, self.opt_vl_seq, self.max_vl_seq),
                  "text_len": (1, min(16, self.max_text_len), self.max_text_len)}
        if name not in ranges:
            raise OnnxExportError(f"No optimization-profile range for dynamic axis {name!r}.")
        return ranges[name]


def _profile_shapes(static: tuple[int, ...], axes: dict[str, str], cfg: TrtBuildConfig) -> tuple[tuple, tuple, tuple]:
    """min / opt / max shapes of one input: its static dims, the named dynamic ones from `cfg`."""
    shapes = [list(static), list(static), list(static)]
    for dim, name in axes.items():
        for shape, value in zip(shapes, cfg.axis_range(name), strict=True):
            shape[int(dim)] = value
    return tuple(shapes[0]), tuple(shapes[1]), tuple(shapes[2])


def build_engines(onnx_dir: str | Path, out: str | Path, cfg: TrtBuildConfig | None = None,
                  graphs: tuple[str, ...] | None = None, printer=print) -> dict:
    """Build `<graph>.engine` for every runner graph of the ONNX export at `onnx_dir`; returns the manifest."""
    trt = require_tensorrt()
    cfg = cfg or TrtBuildConfig()
    onnx_dir, out = Path(onnx_dir), Path(out)
    try:
        onnx_manifest = json.loads((onnx_dir / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise OnnxExportError(f"No usable ONNX export at {onnx_dir} ({type(exc).__name__}); run sage-export-onnx "
                              "first.") from exc
    out.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    built: dict[str, dict] = {}
    for name in RUNNER_GRAPHS:
        graph = onnx_manifest["graphs"].get(name)
        if graph is None or (graphs is not None and name not in graphs):
            continue
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_dir / graph["file"])):  # external weights are read beside it
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise OnnxExportError(f"TensorRT cannot parse {onnx_dir / graph['file']}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gib * (1 << 30)))
        for flag in {"fp16": ["FP16"], "bf16": ["BF16"], "fp8": ["FP8", "BF16"]}.get(cfg.precision, []):
            config.set_flag(getattr(trt.BuilderFlag, flag))
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            axes = graph["dynamic_axes"].get(tensor.name, {})
            static = tuple(max(d, 1) for d in tensor.shape)
            profile.set_shape(tensor.name, *_profile_shapes(static, axes, cfg))
        config.add_optimization_profile(profile)
        printer(f"building {name}.engine ({cfg.precision})")
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise OnnxExportError(f"TensorRT could not build an engine for {name}; see its log above.")
        (out / f"{name}.engine").write_bytes(bytes(engine))
        built[name] = {"file": f"{name}.engine", "inputs": [i["name"] for i in graph["inputs"]],
                       "outputs": graph["outputs"]}
    manifest = {"onnx_manifest": onnx_manifest, "build": asdict(cfg), "tensorrt": trt.__version__, "engines": built}
    (out / TRT_MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


class TrtEngine:
    """One deserialized engine; `__call__(**inputs)` takes and returns CUDA torch tensors on the current stream."""

    def __init__(self, path: Path, runtime: Any, trt: Any) -> None:
        self.trt = trt
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise OnnxExportError(f"Cannot deserialize {path} (built by another TensorRT version or GPU?).")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def _torch_dtype(self, name: str) -> torch.dtype:
        dt = self.trt.DataType
        table = {dt.FLOAT: torch.float32, dt.HALF: torch.float16, dt.BF16: torch.bfloat16, dt.INT32: torch.int32,
                 dt.INT64: torch.int64, dt.BOOL: torch.bool}
        return table[self.engine.get_tensor_dtype(name)]

    def __call__(self, **feeds: torch.Tensor) -> list[torch.Tensor]:
        for name in self.inputs:
            value = feeds[name].to(self._torch_dtype(name)).contiguous()
            feeds[name] = value
            self.context.set_input_shape(name, tuple(value.shape))
            self.context.set_tensor_address(name, value.data_ptr())
        outputs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            tensor = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
            self.context.set_tensor_address(name, tensor.data_ptr())
            outputs.append(tensor)
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execution failed.")
        return outputs


class TrtGr00tRunner:
    """`Gr00tModel.get_action` on the engines of `build_engines` (CUDA tensors in and out): the backbone graphs,
    VL self-attention, state encoder and the DiT's VL cache once per chunk, then per Euler step the action
    encoder, the cached DiT step and the decoder."""

    def __init__(self, folder: str | Path) -> None:
        trt = require_tensorrt()
        folder = Path(folder)
        try:
            self.manifest = json.loads((folder / TRT_MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise OnnxExportError(f"No TensorRT engines at {folder}; run sage-export-trt first.") from exc
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {name: TrtEngine(folder / e["file"], runtime, trt)
                        for name, e in self.manifest["engines"].items()}
        self.meta = self.manifest["onnx_manifest"]

    def encode(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if "vl_backbone" in self.engines:
            features, mask = self.engines["vl_backbone"](pixel_values=pixel_values, input_ids=input_ids,
                                                         attention_mask=attention_mask)
            return features, mask
        (vit,) = self.engines["eagle_vit"](pixel_values=pixel_values)
        (features,) = self.engines["eagle_llm"](input_ids=input_ids, attention_mask=attention_mask, vit_embeds=vit)
        return features, attention_mask

    @torch.inference_mode()
    def get_action(self, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        m, e = self.meta, self.engines
        features, mask = self.encode(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        emb = batch["embodiment_id"]
        (vl_embs,) = e["vl_self_attention"](vl_features=features)
        (state_features,) = e["state_encoder"](state=batch["state"], embodiment_id=emb)
        cache_feeds = {"vl_embs": vl_embs, "vl_mask": mask}
        cache = dict(zip(self.manifest["engines"]["dit_vl_cache"]["outputs"],
                         e["dit_vl_cache"](**{k: cache_feeds[k] for k in e["dit_vl_cache"].inputs}), strict=True))
        steps = m["num_inference_timesteps"]
        actions = noise.float()
        for i in range(steps):
            t = torch.full((noise.shape[0],), int(i / steps * m["num_timestep_buckets"]), dtype=torch.long,
                           device=noise.device)
            (action_features,) = e["action_encoder"](actions=actions, timestep=t, embodiment_id=emb)
            (out,) = e["dit_step"](state_features=state_features, action_features=action_features, timestep=t,
                                   **cache)
            (velocity,) = e["action_decoder"](model_output=out, embodiment_id=emb)
            actions = actions + velocity.float() / steps
        return actions
