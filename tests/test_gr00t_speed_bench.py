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


def test_failing_rows_are_reported_and_the_others_still_print(monkeypatch, capsys) -> None:
    """A torch.compile error at the first call and a TensorRT export / build error (here an OSError, as a
    broken libnvinfer gives) each become a failed row; eager and the static graph still print, exit status 1."""
    from sage_gr00t.cli.bench import policy_speed
    from sage_gr00t.policy.gr00t import model as model_module

    class CompileFails(model_module.OptimizedGr00t):
        def get_action(self, batch, noise):
            if self.options.compile:
                raise RuntimeError("inductor exploded\nsecond line")
            return super().get_action(batch, noise)

    def trt_fails(*args, **kwargs):
        raise OSError("libnvinfer.so.10: cannot open shared object file")

    monkeypatch.setattr(model_module, "OptimizedGr00t", CompileFails)
    monkeypatch.setattr(policy_speed, "_tensorrt_row", trt_fails)
    rc = policy.main(["--preset", "tiny-eagle", "--device", "cpu", "--calls", "1", "--throughput-batch", "0"])
    out = capsys.readouterr().out
    assert rc == 1, out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert float(rows["optimized, static graph (no CUDA graph on CPU)"].split("│")[4]) <= 1e-4
    assert "failed: RuntimeError: inductor exploded" in rows["optimized, torch.compile (no CUDA graph on CPU)"]
    assert "second line" not in out
    assert "failed: OSError: libnvinfer.so.10" in rows["TensorRT engines"]
