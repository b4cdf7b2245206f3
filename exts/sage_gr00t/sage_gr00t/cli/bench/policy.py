"""Policy latency per 16-step action chunk: a checkpoint's stages on ONE CPU core, or a preset's whole chunk.

    sage-bench policy --policy assets/policies/gr00t_compact --calls 50
    sage-bench policy --preset n1.5 --device cuda             # real-size N1.5, random weights, bf16, one card
    sage-bench policy --preset tiny-eagle --device cpu --no-compile --calls 3   # CPU smoke run

Checkpoint mode breaks a `get_action` call into preprocessing (validation, resize, tokenize, normalize), the VL
backbone, and the action head's 4 Euler denoising steps. Target: <= 20 ms per chunk.

Preset mode (random weights: speed does not depend on values) times, in one run on one device, batch 1, one
chunk at a fixed VL length (`--vl-length`, 256 image + text tokens for N1.5): the eager reference
(`Gr00tModel.get_action`), the optimized path without compilation (`OptimizedGr00t`: static graph, step-only
tensors precomputed; + CUDA graph on CUDA), the optimized path under `torch.compile` (+ CUDA graph on CUDA), and
TensorRT engines where TensorRT is installed (built here from the ONNX split). Per row: median and p90 after
warm-up, max abs difference of the normalized actions from eager on the same noise, batch-8 throughput, peak
CUDA memory. Rows that cannot run here say why in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sage_gr00t.bench.process import limit_native_threads, pin_to_core
from sage_gr00t.cli._parsing import check, error, parse

PROG = "sage-bench policy"


@dataclass
class PolicyBenchConfig:
    """Median latency of each stage of one native checkpoint's `get_action`."""

    # A native checkpoint folder (its stages are timed separately; relative paths also from the repository root).
    policy: str = "assets/policies/gr00t_compact"
    calls: int = 50  # timed calls per stage (after 3 warm-up calls)
    # Preset mode: time this preset's whole chunk with random weights instead (n1.5, tiny-eagle, compact, ...).
    preset: str | None = None
    device: str = "cpu"  # preset mode: cpu or cuda
    dtype: str = "auto"  # preset mode: bfloat16 | float32 | auto (bfloat16 on CUDA, float32 on CPU)
    vl_length: int | None = None  # preset mode, eagle: VL tokens per prompt (default: image tokens + 34)
    throughput_batch: int = 8  # preset mode: batch of the throughput column (0 skips it)
    compile: bool = True  # preset mode: include the torch.compile row (minutes of compilation at N1.5 size)
    tensorrt: bool = True  # preset mode: include the TensorRT row where TensorRT and CUDA are present
    trt_dir: str = "outputs/trt/bench"  # preset mode: where the ONNX graphs and engines are built

    def __post_init__(self) -> None:
        check(self.calls >= 1, f"--calls must be >= 1, got {self.calls}.")
        check(self.device in ("cpu", "cuda"), f"--device must be cpu or cuda, got {self.device!r}.")
        check(self.dtype in ("auto", "bfloat16", "float32"), f"--dtype must be auto, bfloat16 or float32, got "
                                                             f"{self.dtype!r}.")


def median_ms(fn: Callable[[], object], calls: int) -> float:
    import numpy as np

    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def run(cfg: PolicyBenchConfig) -> int:
    if cfg.preset is not None:
        from sage_gr00t.cli.bench.policy_speed import run_preset

        return run_preset(cfg)
    # One core and one OpenMP thread, before torch / numpy start any.
    limit_native_threads(gl=False)
    pin_to_core()
    import torch

    from sage_gr00t.bench.tables import new_table, print_tables
    from sage_gr00t.policy.factory import PolicySpec, PolicySpecError, make_policy
    from sage_gr00t.policy.gr00t import count_parameters
    from sage_gr00t.tasks import make_env

    torch.set_num_threads(1)
    try:
        if PolicySpec.parse(cfg.policy).kind != "checkpoint":
            raise PolicySpecError(f"Policy {cfg.policy!r}: this benchmark times a checkpoint folder's stages.")
    except PolicySpecError as exc:
        return error(PROG, str(exc))
    policy = make_policy(cfg.policy)  # the checkpoint's own (first) embodiment, as the env below
    env = make_env("pick_apple", embodiment=policy.embodiment)
    obs, _ = env.reset(seed=0)
    env.close()
    model, processor, meta = policy.model, policy.processor, policy.meta
    batch = processor.observation_batch(obs, meta, model)
    with torch.no_grad():
        features, mask = model.encode(batch)

    def preprocess() -> None:
        processor.observation_batch(obs, meta, model)

    def backbone() -> None:
        with torch.no_grad():
            model.encode(batch)

    def head() -> None:
        model.action_head.get_action(features, mask, batch["state"], batch["embodiment_id"])

    def full() -> None:
        policy.get_action(obs)

    rows = [("preprocess (validate, resize 224->128, tokenize)", median_ms(preprocess, cfg.calls)),
            ("VL backbone", median_ms(backbone, cfg.calls)),
            (f"action head ({model.config.action_head.num_inference_timesteps} denoising steps)",
             median_ms(head, cfg.calls)),
            ("full get_action (one 16-step chunk)", median_ms(full, cfg.calls))]
    table = new_table(f"Compact GR00T policy, {count_parameters(model) / 1e6:.1f}M parameters, 1 CPU core, "
                      f"torch {torch.__version__}", ("stage", "median ms"), left=("stage",))
    for name, ms in rows:
        table.add_row(name, f"{ms:.2f}")
    print_tables(table, width=120)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(PolicyBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
