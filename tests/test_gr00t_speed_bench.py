"""`sage-bench policy --preset`: the CPU smoke run prints its table; CUDA / TensorRT absence is one line each."""

from __future__ import annotations

import pytest
import torch

from sage_gr00t.cli.bench import policy


def test_tiny_eagle_preset_smoke_run(capsys) -> None:
    rc = policy.main(["--preset", "tiny-eagle", "--device", "cpu", "--no-compile", "--calls", "2",
                      "--throughput-batch", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "eager (Gr00tModel.get_action)" in out and "optimized, static graph" in out and "16 image tokens" in out
    rows = [line for line in out.splitlines() if "optimized, static graph" in line]
    diff = float(rows[0].split("│")[4])
    assert diff <= 1e-4
    if torch.cuda.is_available():
        return
    assert "TensorRT row skipped: TensorRT is not installed" in out or "needs a CUDA GPU" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the missing-CUDA line cannot be shown")
def test_cuda_requested_without_cuda_is_one_line(capsys) -> None:
    assert policy.main(["--preset", "n1.5", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sage-bench policy: error: CUDA is not available") and "\n" not in err
