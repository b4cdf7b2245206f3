"""`sage-bench policy --preset NAME`: a preset's whole chunk with random weights, eager vs optimized vs TensorRT
(see `policy.py`'s docstring for what each row is)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from sage_gr00t.cli._parsing import error
from sage_gr00t.cli.bench._common import release_memory

PROG = "sage-bench policy"


def tiny_eagle_config():
    """An Eagle-kind model small enough for a CPU smoke run (56 px frames: 16 image tokens)."""
    from sage_gr00t.policy.gr00t.config import BackboneConfig, compact_config

    cfg = compact_config()
    cfg.preset = "tiny-eagle"
    cfg.backbone = BackboneConfig(kind="eagle", image_size=56, vision_hidden_size=32, vision_layers=2,
                                  vision_heads=2, vision_intermediate_size=64, patch_size=14, llm_hidden_size=64,
                                  select_layer=2, llm_heads=4, llm_kv_heads=2, llm_intermediate_size=128,
                                  vocab_size=151700)
    cfg.action_head.backbone_embedding_dim = 64
    cfg.action_head.mask_vl_padding = False
    cfg.action_head.diffusion_model_cfg.cross_attention_dim = 64
    cfg.action_head.vl_self_attention_cfg.num_attention_heads = 2
    return cfg


@dataclass
class Row:
    name: str
    median_ms: float | None = None
    p90_ms: float | None = None
    max_diff: float | None = None
    throughput: float | None = None  # chunks / s at the throughput batch
    peak_gib: float | None = None
    note: str = ""


def _time(fn: Callable[[], object], calls: int, sync: Callable[[], None], warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        sync()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def make_batch(model, batch: int, vl_length: int | None, device, dtype, seed: int = 0) -> tuple[dict, object]:
    """Random image / state, Eagle-shaped ids at a fixed VL length (or byte ids for compact), and noise."""
    import torch

    from sage_gr00t.policy.gr00t.onnx_export import example_inputs, synthetic_eagle_ids

    b = example_inputs(model, batch=batch, seed=seed)
    cfg = model.config.backbone
    if cfg.kind == "eagle":
        b["input_ids"], b["attention_mask"] = synthetic_eagle_ids(
            cfg.image_tokens_per_frame, batch, vl_length, generator=torch.Generator().manual_seed(seed), pad_first=0)
    noise = b.pop("noise").to(device)
    out = {k: v.to(device) for k, v in b.items()}
    for key in ("pixel_values", "state"):
        out[key] = out[key].to(dtype)
    return out, noise.to(dtype)


def run_preset(cfg) -> int:
    import torch

    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.policy.gr00t.config import PRESETS
    from sage_gr00t.policy.gr00t.model import Gr00tModel, OptimizedGr00t, OptimizeOptions, count_parameters

    presets = {**PRESETS, "tiny-eagle": tiny_eagle_config}
    if cfg.preset not in presets:
        return error(PROG, f"Unknown preset {cfg.preset!r}; use one of {', '.join(presets)}.")
    cuda = cfg.device == "cuda"
    if cuda and not torch.cuda.is_available():
        return error(PROG, "CUDA is not available here (no GPU visible to PyTorch); run with --device cpu, or on "
                           "the GPU machine.")
    device = torch.device(cfg.device)
    dtype = {"auto": torch.bfloat16 if cuda else torch.float32, "bfloat16": torch.bfloat16,
             "float32": torch.float32}[cfg.dtype]
    config = presets[cfg.preset]()
    image_tokens = config.backbone.image_tokens_per_frame if config.backbone.kind == "eagle" else 0
    vl_length = cfg.vl_length or image_tokens + 34
    torch.manual_seed(0)
    with device:  # built where it runs: the real-size model initializes in seconds on a GPU
        model = Gr00tModel(config)
    model = model.to(dtype).eval()
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def peak_reset() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak() -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    batch, noise = make_batch(model, 1, vl_length, device, dtype)
    big, big_noise = (make_batch(model, cfg.throughput_batch, vl_length, device, dtype, seed=1)
                      if cfg.throughput_batch else (None, None))
    rows: list[Row] = []
    notes: list[str] = []
    try:
        reference = model.get_action(batch, noise).float()
    except Exception as exc:  # the other paths still run; their diff column stays empty
        reference = None
        notes.append(f"eager reference failed ({_failure(exc)}): no max |diff| column.")

    def measure(name: str, fn: Callable[[dict, object], object]) -> None:
        row = Row(name)
        try:
            peak_reset()
            out = fn(batch, noise).float()
            if reference is not None:
                row.max_diff = float((out - reference).abs().max())
            times = _time(lambda: fn(batch, noise), cfg.calls, sync)
            row.median_ms, row.p90_ms = statistics.median(times), _p90(times)
            if big is not None:
                tb = _time(lambda: fn(big, big_noise), max(3, cfg.calls // 4), sync)
                row.throughput = cfg.throughput_batch * 1e3 / statistics.median(tb)
            row.peak_gib = peak()
        except Exception as exc:  # a path that fails here is reported, the others still run
            row.note = f"failed: {_failure(exc)}"
        rows.append(row)

    def optimized(name: str, options: OptimizeOptions) -> None:
        """One OptimizedGr00t row; its CUDA graphs (private memory pools) and compiled code are dropped after
        it, so that the next row's peak memory is its own."""
        try:
            fast = OptimizedGr00t(model, options)
        except Exception as exc:
            rows.append(Row(name, note=f"failed: {_failure(exc)}"))
            return
        measure(name, fast.get_action)
        del fast
        release_memory(cuda)

    measure("eager (Gr00tModel.get_action)", lambda b, n: model.get_action(b, n))
    graph = "+ CUDA graph" if cuda else "(no CUDA graph on CPU)"
    optimized(f"optimized, static graph {graph}", OptimizeOptions(compile=False, cuda_graph=cuda))
    if cfg.compile:
        optimized(f"optimized, torch.compile {graph}", OptimizeOptions(compile=True, cuda_graph=cuda))
    else:
        notes.append("torch.compile row skipped (--no-compile).")
    if cfg.tensorrt:
        try:
            note = _tensorrt_row(cfg, model, measure, dtype)
        except Exception as exc:  # an export or engine build that fails is the row's note; the table still prints
            rows.append(Row("TensorRT engines", note=f"failed: {_failure(exc)}"))
            note = None
        if note:
            notes.append(note)
    table = new_table(
        f"{cfg.preset}: {count_parameters(model) / 1e9:.2f}B parameters (random), {str(dtype).removeprefix('torch.')}"
        f", batch 1, one {config.action_head.action_horizon}-step chunk "
        f"({config.action_head.num_inference_timesteps} Euler steps), VL length {vl_length}"
        f"{f' ({image_tokens} image tokens)' if image_tokens else ''}, {_device_name(device)}, torch "
        f"{torch.__version__}, {cfg.calls} calls after 3 warm-up",
        ("path", "median ms", "p90 ms", "max |diff| vs eager", f"b{cfg.throughput_batch} chunks/s", "peak GiB",
         "note"), left=("path", "note"))
    for r in rows:
        table.add_row(r.name, _fmt(r.median_ms), _fmt(r.p90_ms), _fmt(r.max_diff, ".1e"), _fmt(r.throughput, ".1f"),
                      _fmt(r.peak_gib), r.note)
    print_tables(table, width=200)
    for note in notes:
        print(note)
    return 1 if any(r.note.startswith("failed") for r in rows) else 0


def _tensorrt_row(cfg, model, measure, dtype) -> str | None:
    """Export the ONNX split (fp32, on the CPU), build engines, and time them; a one-line reason otherwise."""
    import torch

    from sage_gr00t.policy.gr00t.tensorrt_export import (
        TensorRTUnavailableError,
        TrtBuildConfig,
        TrtGr00tRunner,
        build_engines,
        require_tensorrt,
    )

    try:
        require_tensorrt()
    except TensorRTUnavailableError as exc:
        return f"TensorRT row skipped: {exc}"
    from pathlib import Path

    from sage_gr00t.policy.gr00t.onnx_export import export_onnx

    onnx_dir, engine_dir = Path(cfg.trt_dir) / "onnx", Path(cfg.trt_dir) / "engines"
    device = next(model.parameters()).device
    try:
        export_onnx(model.float().cpu(), onnx_dir)  # the exporter traces an fp32 CPU copy
    finally:  # back where the model ran, also when the export fails
        model.to(device=device, dtype=dtype)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    build_engines(onnx_dir, engine_dir, TrtBuildConfig(precision=precision, max_batch=max(8, cfg.throughput_batch)))
    runner = TrtGr00tRunner(engine_dir)

    def trt_call(b, n):
        feeds = {k: (v.float() if v.is_floating_point() else v) for k, v in b.items()}
        return runner.get_action(feeds, n.float())

    measure(f"TensorRT ({precision} engines)", trt_call)
    return None


def _failure(exc: BaseException) -> str:
    """`Type: first line of the message` (90 characters at most), for a table's note column."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:90] if text else ''}"


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)
