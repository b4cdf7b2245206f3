"""Build TensorRT engines from a `sage-export-onnx` folder (TensorRT Python API; `tensorrt-cu13` on the GPU).

    sage-export-trt --onnx outputs/onnx/n15 --out outputs/trt/n15 --precision bf16 --max-batch 8 --max-vl-seq 300

One engine per graph the runner uses (backbone graphs, VL self-attention, state / action encoders, the DiT's VL
cache and cached step, action decoder), one optimization profile each: batch 1..max-batch, VL length
1..max-vl-seq. Run them with `sage_gr00t.policy.gr00t.tensorrt_export.TrtGr00tRunner`. Without TensorRT or a
CUDA GPU it stops with one line saying which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sage_gr00t.cli._parsing import check, error, parse

PROG = "sage-export-trt"


@dataclass
class ExportTrtConfig:
    """Which ONNX export to build engines from, where to, and for which shapes and precision."""

    onnx: Path  # folder written by sage-export-onnx (manifest.json + .onnx graphs)
    out: Path  # folder for the .engine files and trt_manifest.json
    precision: str = "bf16"  # fp32 | fp16 | bf16 | fp8
    max_batch: int = 8
    opt_batch: int = 1
    max_vl_seq: int = 300
    opt_vl_seq: int = 290
    workspace_gib: float = 8.0

    def __post_init__(self) -> None:
        from sage_gr00t.policy.gr00t.tensorrt_export import PRECISIONS

        check(self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got "
                                            f"{self.precision!r}.")
        check(1 <= self.opt_batch <= self.max_batch, "--opt-batch must be in 1..--max-batch.")
        check(1 <= self.opt_vl_seq <= self.max_vl_seq, "--opt-vl-seq must be in 1..--max-vl-seq.")


def main(argv: list[str] | None = None) -> int:
    cfg = parse(ExportTrtConfig, argv, prog=PROG, description=__doc__)
    from sage_gr00t.policy.gr00t.onnx_export import OnnxExportError
    from sage_gr00t.policy.gr00t.tensorrt_export import TensorRTUnavailableError, TrtBuildConfig, build_engines

    build = TrtBuildConfig(precision=cfg.precision, max_batch=cfg.max_batch, opt_batch=cfg.opt_batch,
                           max_vl_seq=cfg.max_vl_seq, opt_vl_seq=cfg.opt_vl_seq, workspace_gib=cfg.workspace_gib)
    try:
        manifest = build_engines(cfg.onnx, cfg.out, build)
    except (TensorRTUnavailableError, OnnxExportError) as exc:
        return error(PROG, str(exc))
    print(f"{cfg.out}: {', '.join(manifest['engines'])} (TensorRT {manifest['tensorrt']}, {cfg.precision})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
