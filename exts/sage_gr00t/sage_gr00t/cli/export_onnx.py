"""Export a GR00T-architecture checkpoint as ONNX graphs in upstream's split, plus a manifest.

    sage-export-onnx --policy assets/policies/gr00t_compact --out outputs/onnx/gr00t_compact [--bench]

Writes vl_backbone.onnx (compact backbone) or eagle_vit.onnx + eagle_llm.onnx (eagle),
vl_self_attention.onnx, state_encoder.onnx,
action_encoder.onnx, dit.onnx, action_decoder.onnx, dit_vl_cache.onnx + dit_step.onnx (the DiT on VL keys /
values computed once per chunk: what the runner uses) and manifest.json (inputs / outputs, dynamic axes, opset);
then checks the graphs on onnxruntime against PyTorch (max abs difference of the action chunk on the same
noise). `--bench` prints per-chunk latency on one thread, onnxruntime vs PyTorch. Run the graphs with
`sage_gr00t.policy.gr00t.onnx_export.OnnxGr00tRunner`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sage_gr00t.cli._parsing import check, error, parse

PROG = "sage-export-onnx"


@dataclass
class ExportOnnxConfig:
    """Which checkpoint to export, where to, and what to check afterwards."""

    policy: Path  # checkpoint folder (config.json + model.safetensors), e.g. assets/policies/gr00t_compact
    out: Path  # output folder for the .onnx graphs and manifest.json (created if missing)
    opset: int = 18  # ONNX opset
    check: bool = True  # compare the graphs on onnxruntime with PyTorch (--no-check skips it)
    bench: bool = False  # latency per chunk, onnxruntime (1 intra-op thread) vs PyTorch (1 thread)
    calls: int = 30  # timed calls per backend for --bench (after warm-up)

    def __post_init__(self) -> None:
        check(14 <= self.opset <= 23, f"--opset must be in 14..23, got {self.opset}.")
        check(self.calls >= 3, f"--calls must be >= 3, got {self.calls}.")


def main(argv: list[str] | None = None) -> int:
    cfg = parse(ExportOnnxConfig, argv, prog=PROG, description=__doc__)
    from sage_gr00t.policy.gr00t.checkpoint import CheckpointError, load_checkpoint
    from sage_gr00t.policy.gr00t.onnx_export import OnnxExportError, bench_latency, export_onnx, parity

    try:
        model, _, _ = load_checkpoint(cfg.policy)
    except CheckpointError as exc:
        return error(PROG, str(exc))
    try:
        manifest = export_onnx(model, cfg.out, opset=cfg.opset)
    except OnnxExportError as exc:
        return error(PROG, str(exc))
    print(f"{cfg.out}: {', '.join(manifest['graphs'])} (opset {manifest['opset']}) + manifest.json")
    if cfg.check:
        diff = parity(model, cfg.out)
        print(f"parity vs PyTorch: max abs diff {diff:.2e} (normalized actions, fp32)")
        if diff > 1e-4:
            print(f"{PROG}: error: the exported graphs disagree with PyTorch by more than 1e-4", file=sys.stderr)
            return 1
    if cfg.bench:
        try:
            bench_latency(model, cfg.out, calls=cfg.calls)
        except OnnxExportError as exc:
            return error(PROG, str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
