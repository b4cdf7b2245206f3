"""Train the GR00T-architecture policy on LeRobot demonstration datasets.

    sage-train --datasets outputs/datasets/pick_apple_sage outputs/datasets/sort_blocks_sage --out outputs/policy

`--device auto` trains on CUDA when available, else on the CPU. Re-running with the same --out resumes from
`train_state.pt`. Writes checkpoint-<step>/ folders, final/, loss.csv and loss.png. `--cache` names a
training-cache folder (built from --datasets if missing) so training can run where LeRobot and the simulator
are not installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.policy.gr00t.config import PRESETS
from sage_gr00t.policy.gr00t.training import TrainConfig, train

PROG = "sage-train"
FINAL_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class TrainPolicyConfig(TrainConfig):
    """`TrainConfig` (its fields are the flags), with its values checked before training starts.

    The fields redeclared here only add their help text (same types and defaults)."""

    out: str = TrainConfig.out  # output folder: checkpoint-<step>/, final/, loss.csv/png, train_state.pt (resumed)
    preset: str = TrainConfig.preset  # architecture: compact (the shipped CPU policy) or n1.5 (GR00T N1.5-3B's)
    max_episodes: int = TrainConfig.max_episodes  # episodes read from each dataset
    batch_size: int = TrainConfig.batch_size  # samples per optimizer step
    lr: float = TrainConfig.lr  # peak AdamW learning rate (linear warm-up, then cosine decay to 0)
    weight_decay: float = TrainConfig.weight_decay  # AdamW weight decay
    warmup_steps: int = TrainConfig.warmup_steps  # steps of linear learning-rate warm-up
    ema_decay: float = TrainConfig.ema_decay  # decay of the weights' moving average (the EMA weights are saved)
    checkpoint_every: int = TrainConfig.checkpoint_every  # steps between checkpoint-<step>/ + resumable state
    log_every: int = TrainConfig.log_every  # steps between loss.csv rows
    seed: int = TrainConfig.seed  # seed of torch, numpy and Python's random (batches, noise, augmentation)
    device: str = TrainConfig.device  # auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ...
    num_threads: int | None = TrainConfig.num_threads  # torch CPU threads (None: torch's default)
    final_dtype: str = TrainConfig.final_dtype  # dtype of final/: float32, or float16 / bfloat16 (half the size)
    amp: str = TrainConfig.amp  # none, or bf16: mixed-precision forward/backward (fp32 weights and optimizer)

    def __post_init__(self) -> None:
        check(self.preset in PRESETS, f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}.")
        for flag, value, low in (("--max-episodes", self.max_episodes, 1), ("--steps", self.steps, 0),
                                 ("--batch-size", self.batch_size, 1), ("--warmup-steps", self.warmup_steps, 0),
                                 ("--shift-pixels", self.shift_pixels, 0),
                                 ("--checkpoint-every", self.checkpoint_every, 1),
                                 ("--log-every", self.log_every, 1)):
            check(value >= low, f"{flag} must be >= {low}, got {value}.")
        check(self.lr > 0 and self.weight_decay >= 0, "--lr must be > 0 and --weight-decay >= 0.")
        check(0 <= self.ema_decay < 1, f"--ema-decay must be in [0, 1), got {self.ema_decay}.")
        check(0 <= self.subtask_language_prob <= 1,
              f"--subtask-language-prob must be in [0, 1], got {self.subtask_language_prob}.")
        check(0 <= self.paraphrase_prob <= 1, f"--paraphrase-prob must be in [0, 1], got {self.paraphrase_prob}.")
        check(self.grounding_head_warmup >= 0,
              f"--grounding-head-warmup must be >= 0, got {self.grounding_head_warmup}.")
        check(self.num_threads is None or self.num_threads >= 1, f"--num-threads must be >= 1, got {self.num_threads}.")
        check(self.max_minutes is None or self.max_minutes > 0, f"--max-minutes must be > 0, got {self.max_minutes}.")
        check(self.amp in ("none", "bf16"), f"--amp must be 'none' or 'bf16', got {self.amp!r}.")
        check(self.final_dtype in FINAL_DTYPES,
              f"--final-dtype must be one of {FINAL_DTYPES}, got {self.final_dtype!r}.")


def main(argv: list[str] | None = None) -> int:
    cfg = parse(TrainPolicyConfig, argv, prog=PROG, description=__doc__)
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
