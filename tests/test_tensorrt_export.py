"""TensorRT engine building: without TensorRT or a GPU, one clear line; the profile ranges it would use."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from sage_gr00t.cli import export_trt as cli
from sage_gr00t.policy.gr00t.tensorrt_export import (
    TensorRTUnavailableError,
    TrtBuildConfig,
    TrtGr00tRunner,
    _profile_shapes,
    build_engines,
    require_tensorrt,
)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT and a GPU are here: the unavailable path cannot be shown")
def test_missing_tensorrt_or_gpu_is_one_clear_line(tmp_path, capsys) -> None:
    with pytest.raises(TensorRTUnavailableError, match=r"TensorRT is not installed|needs a CUDA GPU"):
        require_tensorrt()
    with pytest.raises(TensorRTUnavailableError):
        build_engines(tmp_path, tmp_path / "trt")
    with pytest.raises(TensorRTUnavailableError):
        TrtGr00tRunner(tmp_path)
    assert cli.main(["--onnx", str(tmp_path), "--out", str(tmp_path / "trt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sage-export-trt: error: TensorRT") and "\n" not in err


def test_profiles_cover_batch_1_to_8_and_vl_up_to_300() -> None:
    cfg = TrtBuildConfig()
    assert _profile_shapes((1, 1, 2048), {"0": "batch", "1": "vl_seq"}, cfg) == (
        (1, 1, 2048), (1, 290, 2048), (8, 300, 2048))
    assert _profile_shapes((1, 16, 3, 1), {"0": "batch", "3": "vl_seq"}, cfg)[2] == (8, 16, 3, 300)
    with pytest.raises(ValueError, match="precision"):
        TrtBuildConfig(precision="int4")


def test_cli_rejects_bad_flags(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--onnx", "a", "--out", "b", "--precision", "int4"])
    assert exit_info.value.code == 2
    assert "--precision must be one of" in capsys.readouterr().err
