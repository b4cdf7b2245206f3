"""Fine-tuning memory and step time of a preset (random weights), one row per training configuration.

    sage-bench finetune-memory --sweep                         # real-size N1.5, one CUDA card, batch 16
    sage-bench finetune-memory --tune action_head --dtype bf16 --gradient-checkpointing
    sage-bench finetune-memory --preset tiny-eagle --device cpu --sweep --steps 1 --warmup 1   # CPU smoke run

Each row builds the model with random weights (memory and speed do not depend on their values), marks what
trains, and runs real training steps on one realistic batch: the preset's image tokens and VL length (N1.5: 256
image tokens of one 224 px frame + 34 text tokens, one prompt left-padded), 16-step action chunks, state;
forward, flow-matching loss, backward, gradient clipping, AdamW step (fused on CUDA). Peak memory is
`torch.cuda.max_memory_allocated` / `max_memory_reserved` over the warm-up and measured steps (weights,
gradients, AdamW states, activations), each row from a fresh allocator state; the CUDA context (~0.5 GiB) is
not in either. A row that runs out of memory says OOM and the others still run. CPU rows time the steps but do
not measure memory.

--tune: `action_head` = the VLM frozen (upstream's default tune_llm=False, tune_visual=False: SigLIP, the
`mlp1` projector and Qwen3 frozen, in eval mode) and the whole action head trained (tune_projector,
tune_diffusion_model); `full` = everything trained. --lora-rank R: the action head frozen too and LoRA adapters
on each of its Linear layers train (upstream's `get_lora_model(action_head_only=True)`).
--dtype: `fp32` (TF32 matmuls on CUDA); `bf16` = bf16 autocast with fp32 trainable weights, gradients and AdamW
states (upstream's Trainer `bf16=True`), frozen weights stored in bf16; `bf16-pure` = every weight, gradient
and AdamW state in bf16 (least memory; bf16 updates lose small steps, so a memory figure, not a recipe).
--sweep: full (fp32, bf16, bf16 + checkpointing), then the VLM frozen: fp32, bf16, bf16 + checkpointing,
bf16-pure with and without checkpointing, LoRA (rank --lora-rank, else 32) with and without checkpointing.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.cli.bench._common import release_memory

if TYPE_CHECKING:  # torch and the model are imported when a benchmark runs, not when the CLI parses flags
    import torch

    from sage_gr00t.policy.gr00t.config import Gr00tConfig
    from sage_gr00t.policy.gr00t.model import Gr00tModel

PROG = "sage-bench finetune-memory"
DTYPES = ("fp32", "bf16", "bf16-pure")
TUNES = ("action_head", "full")
GIB = 2**30


@dataclass(frozen=True)
class RowSpec:
    """One training configuration."""

    tune: str = "action_head"
    dtype: str = "bf16"
    gradient_checkpointing: bool = False
    lora_rank: int = 0

    @property
    def label(self) -> str:
        parts = [self.tune, self.dtype]
        if self.gradient_checkpointing:
            parts.append("grad ckpt")
        if self.lora_rank:
            parts.append(f"LoRA r{self.lora_rank}")
        return ", ".join(parts)


def sweep_rows(lora_rank: int) -> list[RowSpec]:
    """The sweep: full fine-tuning baselines, then the frozen-VLM configurations from upstream's default down."""
    return [RowSpec("full", "fp32"), RowSpec("full", "bf16"), RowSpec("full", "bf16", True),
            RowSpec("action_head", "fp32"), RowSpec("action_head", "bf16"), RowSpec("action_head", "bf16", True),
            RowSpec("action_head", "bf16-pure"), RowSpec("action_head", "bf16-pure", True),
            RowSpec("action_head", "bf16", False, lora_rank), RowSpec("action_head", "bf16", True, lora_rank)]


@dataclass
class FinetuneMemoryBenchConfig:
    """Peak memory and step time of fine-tuning a preset with random weights."""

    preset: str = "n1.5"  # n1.5, tiny-eagle, compact, ...
    device: str = "cuda"  # cuda or cpu (cpu: step time only, memory not measured)
    batch_size: int = 16
    steps: int = 5  # measured training steps per row (after --warmup steps)
    warmup: int = 2  # training steps before timing (allocator, cuBLAS / cuDNN plans, AdamW states)
    dtype: str = "bf16"  # fp32 | bf16 (autocast, fp32 master weights) | bf16-pure (everything bf16)
    tune: str = "action_head"  # action_head (VLM frozen) | full
    gradient_checkpointing: bool = False  # activation checkpointing of the DiT / VL / Eagle blocks
    lora_rank: int = 0  # > 0: LoRA adapters of this rank on the action head's Linear layers (head frozen)
    lora_alpha: float = 16.0  # LoRA scale alpha / rank (upstream's default alpha)
    lora_dropout: float = 0.1  # upstream's default
    sweep: bool = False  # the sweep's rows (see the description) instead of one --tune / --dtype / ... row
    vl_length: int | None = None  # eagle: VL tokens per prompt (default: image tokens + 34)
    lr: float = 1e-4
    target_gib: float = 20.0  # the table marks rows whose peak reserved memory is at most this
    memory_cap_gib: float | None = None  # CUDA: cap the allocator here (emulates a smaller card; over it = OOM)
    out: str | None = None  # also write the rows as JSON here
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.device in ("cpu", "cuda"), f"--device must be cpu or cuda, got {self.device!r}.")
        check(self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        check(self.tune in TUNES, f"--tune must be one of {', '.join(TUNES)}, got {self.tune!r}.")
        check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}.")
        check(self.steps >= 1 and self.warmup >= 0, "--steps must be >= 1 and --warmup >= 0.")
        check(self.lora_rank >= 0, f"--lora-rank must be >= 0, got {self.lora_rank}.")
        check(not (self.lora_rank and self.tune == "full"),
              "--lora-rank adapts the action head with the VLM frozen: use it with --tune action_head.")
        check(self.memory_cap_gib is None or self.memory_cap_gib > 0, "--memory-cap-gib must be > 0.")

    def specs(self) -> list[RowSpec]:
        if self.sweep:
            return sweep_rows(self.lora_rank or 32)
        return [RowSpec(self.tune, self.dtype, self.gradient_checkpointing, self.lora_rank)]


@dataclass
class Row:
    config: str
    tune: str
    dtype: str
    gradient_checkpointing: bool
    lora_rank: int
    status: str = "ok"  # ok | OOM | failed
    trainable_params: int | None = None
    total_params: int | None = None
    weights_gib: float | None = None  # allocated once the model is built (weights only), CUDA
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    step_ms_median: float | None = None
    step_ms_min: float | None = None
    loss: float | None = None  # last step's, a sanity check (finite)
    note: str = ""


# ------------------------------------------------------------------------------------------ model and batch
def preset_config(name: str) -> Gr00tConfig:
    """The preset's `Gr00tConfig` (the package presets and `sage-bench policy`'s tiny-eagle); KeyError if unknown."""
    from sage_gr00t.cli.bench.policy_speed import tiny_eagle_config
    from sage_gr00t.policy.gr00t.config import PRESETS

    presets = {**PRESETS, "tiny-eagle": tiny_eagle_config}
    if name not in presets:
        raise KeyError(f"Unknown preset {name!r}; use one of {', '.join(presets)}.")
    return presets[name]()


def training_batch(model: Gr00tModel, batch_size: int, vl_length: int | None, device: str | torch.device,
                   dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch at the preset's real sizes: random frame in [-1, 1], Eagle-shaped ids (one frame of
    image tokens inside text, the first prompt left-padded) or the compact backbone's byte ids, random state,
    16-step action chunk and its mask (the first 26 action dims real, as the G1's arms + hands)."""
    import torch

    from sage_gr00t.policy.gr00t.onnx_export import example_inputs, synthetic_eagle_ids

    b = example_inputs(model, batch=batch_size, seed=seed)
    b.pop("noise")
    cfg, head = model.config.backbone, model.config.action_head
    g = torch.Generator().manual_seed(seed + 1)
    if cfg.kind == "eagle":
        length = vl_length or cfg.image_tokens_per_frame + 34
        b["input_ids"], b["attention_mask"] = synthetic_eagle_ids(cfg.image_tokens_per_frame, batch_size, length,
                                                                  generator=g)
    b["action"] = torch.rand(batch_size, head.action_horizon, head.action_dim, generator=g) * 2 - 1
    b["action_mask"] = torch.zeros_like(b["action"])
    b["action_mask"][..., :min(26, head.action_dim)] = 1
    out = {k: v.to(device) for k, v in b.items()}
    for key in ("pixel_values", "state", "action", "action_mask"):
        out[key] = out[key].to(dtype)
    return out


def prepare_model(config: Gr00tConfig, spec: RowSpec, device: str | torch.device, lora_alpha: float = 16.0,
                  lora_dropout: float = 0.1, seed: int = 0) -> tuple[Gr00tModel, list[torch.nn.Parameter]]:
    """The model on `device` set up for `spec`: what trains (requires_grad), the frozen parts in eval mode,
    LoRA adapters, storage dtypes, gradient checkpointing. Returns (model, trainable parameters)."""
    import torch

    from sage_gr00t.policy.gr00t.lora import apply_lora
    from sage_gr00t.policy.gr00t.model import Gr00tModel

    torch.manual_seed(seed)
    with torch.device(device):  # built where it trains: the real-size model initializes in seconds on a GPU
        model = Gr00tModel(config)
    model.train()
    if spec.tune == "action_head":
        model.backbone.requires_grad_(False)
        # Upstream freezes the Eagle model (vision tower, mlp1, LLM); a projection after it (`eagle_linear`,
        # absent in N1.5) stays trainable, as upstream's backbone leaves it.
        linear = getattr(model.backbone, "eagle_linear", None)
        if isinstance(linear, torch.nn.Linear):
            linear.requires_grad_(True)
        model.backbone.eval()  # as upstream's set_frozen_modules_to_eval_mode: no dropout in frozen parts
        if isinstance(linear, torch.nn.Linear):
            linear.train()
    if spec.lora_rank:
        apply_lora(model.action_head, spec.lora_rank, lora_alpha, lora_dropout)
    if spec.dtype == "bf16-pure":
        model.to(torch.bfloat16)
    elif spec.dtype == "bf16":
        for p in model.parameters():  # frozen weights need no fp32 master copy under autocast
            if not p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    model.set_gradient_checkpointing(spec.gradient_checkpointing)
    return model, [p for p in model.parameters() if p.requires_grad]


def make_optimizer(params: list[torch.nn.Parameter], lr: float, device: str | torch.device) -> torch.optim.AdamW:
    import torch

    # Fused on CUDA (one kernel, no per-tensor temporaries), as sage-train; weight decay as upstream's 1e-5.
    return torch.optim.AdamW(params, lr=lr, weight_decay=1e-5, fused=torch.device(device).type == "cuda")


def train_step(model: Gr00tModel, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               params: list[torch.nn.Parameter], autocast: bool) -> float:
    """One training step: forward (flow-matching loss), backward, clip to norm 1, AdamW step; returns the loss."""
    import torch

    device_type = batch["action"].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        loss = model(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return float(loss.detach())


# ------------------------------------------------------------------------------------------------- a row
def measure_row(cfg: FinetuneMemoryBenchConfig, spec: RowSpec, config: Gr00tConfig) -> Row:
    """Build, train `cfg.warmup + cfg.steps` steps, measure; OOM and other failures become the row's status."""
    import torch

    row = Row(spec.label, spec.tune, spec.dtype, spec.gradient_checkpointing, spec.lora_rank)
    cuda = cfg.device == "cuda"
    release_memory(cuda, reset_peak=True)
    try:
        _train_and_measure(cfg, spec, config, row)
    except torch.OutOfMemoryError as exc:
        row.status, row.note = "OOM", _first_line(exc, 110)
    except Exception as exc:  # a configuration that fails here is reported; the other rows still run
        row.status, row.note = "failed", f"{type(exc).__name__}: {_first_line(exc, 100)}"
    if cuda and row.status != "ok":
        try:
            row.peak_allocated_gib = torch.cuda.max_memory_allocated() / GIB  # how far it got
            row.peak_reserved_gib = torch.cuda.max_memory_reserved() / GIB
        except Exception:
            pass
    # The failed row's tensors went with its frames when the exception was handled.
    release_memory(cuda, reset_peak=True)
    return row


def _train_and_measure(cfg: FinetuneMemoryBenchConfig, spec: RowSpec, config: Gr00tConfig, row: Row) -> None:
    import torch

    cuda = cfg.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()  # the build counts until the steps start, for an OOM while building
    model, params = prepare_model(config, spec, cfg.device, cfg.lora_alpha, cfg.lora_dropout, cfg.seed)
    row.trainable_params = sum(p.numel() for p in params)
    row.total_params = sum(p.numel() for p in model.parameters())
    if not params:
        raise ValueError("nothing to train in this configuration")
    optimizer = make_optimizer(params, cfg.lr, cfg.device)
    input_dtype = torch.bfloat16 if spec.dtype == "bf16-pure" else torch.float32
    batch = training_batch(model, cfg.batch_size, cfg.vl_length, cfg.device, input_dtype, cfg.seed)
    autocast = spec.dtype == "bf16"
    sync: Callable[[], None] = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        sync()
        torch.cuda.empty_cache()  # the fp32 build's freed blocks (bf16 casts) do not count as this row's reserve
        row.weights_gib = torch.cuda.memory_allocated() / GIB
        torch.cuda.reset_peak_memory_stats()
    for _ in range(cfg.warmup):
        train_step(model, optimizer, batch, params, autocast)
    times = []
    for _ in range(cfg.steps):
        sync()
        start = time.perf_counter()
        row.loss = train_step(model, optimizer, batch, params, autocast)
        sync()
        times.append(1e3 * (time.perf_counter() - start))
    row.step_ms_median, row.step_ms_min = statistics.median(times), min(times)
    if cuda:
        row.peak_allocated_gib = torch.cuda.max_memory_allocated() / GIB
        row.peak_reserved_gib = torch.cuda.max_memory_reserved() / GIB
    else:
        row.note = "peak memory not measured on CPU"
    if row.loss is not None and row.loss != row.loss:
        row.note = (row.note + "; " if row.note else "") + "loss is NaN (random weights)"


def _first_line(exc: BaseException, limit: int) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else ""


# ---------------------------------------------------------------------------------------------------- run
def run_rows(cfg: FinetuneMemoryBenchConfig) -> tuple[list[Row], dict[str, Any]]:
    """Every row of `cfg` (one, or the sweep) and the run's description; raises KeyError for a bad preset and
    RuntimeError when CUDA is asked for but absent."""
    import torch

    config = preset_config(cfg.preset)
    cuda = cfg.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available here (no GPU visible to PyTorch); run with --device cpu, or on "
                           "the GPU machine.")
    if cuda:  # TF32 matmuls for the fp32 rows, as sage-train (memory is the same)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        if cfg.memory_cap_gib is not None:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, cfg.memory_cap_gib * GIB / total))
    backbone = config.backbone
    image_tokens = backbone.image_tokens_per_frame if backbone.kind == "eagle" else 0
    vl_length = (cfg.vl_length or image_tokens + 34) if backbone.kind == "eagle" else None
    rows = [measure_row(cfg, spec, config) for spec in cfg.specs()]
    meta = {"preset": cfg.preset, "device": torch.cuda.get_device_name(0) if cuda else "CPU",
            "torch": torch.__version__, "batch_size": cfg.batch_size, "steps": cfg.steps, "warmup": cfg.warmup,
            "image_tokens": image_tokens, "vl_length": vl_length,
            "action_horizon": config.action_head.action_horizon, "memory_cap_gib": cfg.memory_cap_gib,
            "target_gib": cfg.target_gib}
    return rows, meta


def run(cfg: FinetuneMemoryBenchConfig) -> int:
    import torch

    from sage_gr00t.bench.tables import new_table, print_tables

    try:
        rows, meta = run_rows(cfg)
    except (KeyError, RuntimeError) as exc:
        return error(PROG, str(exc.args[0]) if exc.args else str(exc))
    cuda = cfg.device == "cuda"
    tokens = (f", VL length {meta['vl_length']} ({meta['image_tokens']} image tokens)" if meta["vl_length"]
              else "")
    cap = f", allocator capped at {cfg.memory_cap_gib:g} GiB" if cfg.memory_cap_gib else ""
    table = new_table(
        f"{cfg.preset} fine-tuning, random weights, batch {cfg.batch_size}, {meta['action_horizon']}-step chunks"
        f"{tokens}, {meta['device']}, torch {torch.__version__}, {cfg.steps} steps after {cfg.warmup} warm-up"
        f"{cap}",
        ("config", "trainable M", "total M", "weights GiB", "peak alloc GiB", "peak reserved GiB",
         f"<= {cfg.target_gib:g} GiB", "step ms (median)", "loss", "note"), left=("config", "note"))
    for r in rows:
        fits = "-" if r.peak_reserved_gib is None or r.status != "ok" else (
            "yes" if r.peak_reserved_gib <= cfg.target_gib else "no")
        table.add_row(r.config, _fmt(r.trainable_params, 1e-6, ".1f"), _fmt(r.total_params, 1e-6, ".1f"),
                      _fmt(r.weights_gib), _fmt(r.peak_allocated_gib) if r.status == "ok" else r.status,
                      _fmt(r.peak_reserved_gib), fits, _fmt(r.step_ms_median, spec=".1f"),
                      _fmt(r.loss, spec=".3f"), r.note)
    print_tables(table, width=220)
    if not cuda:
        print("Peak memory is not measured on CPU (run with --device cuda on the GPU machine).")
    if cfg.out:
        path = Path(cfg.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "command": _command(cfg), "rows": [asdict(r) for r in rows]},
                                   indent=1))
        print(f"rows written to {path}")
    return 1 if any(r.status == "failed" for r in rows) else 0


def _command(cfg: FinetuneMemoryBenchConfig) -> str:
    """The flags that differ from the defaults, as a command line (recorded with the JSON rows)."""
    default = FinetuneMemoryBenchConfig()
    flags = []
    for name, value in asdict(cfg).items():
        if value == getattr(default, name) or name == "out":
            continue
        flag = "--" + name.replace("_", "-")
        flags.append(flag if value is True else f"--no-{flag[2:]}" if value is False else f"{flag} {value}")
    return " ".join([PROG, *flags])


def _fmt(value: float | None, scale: float = 1.0, spec: str = ".2f") -> str:
    return "-" if value is None else format(value * scale, spec)


def main(argv: list[str] | None = None) -> int:
    return run(parse(FinetuneMemoryBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())

