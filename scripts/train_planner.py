"""Train the H-module planner on synthetic commands; writes assets/planner/{model.safetensors,config.json}.

    python scripts/train_planner.py --steps 3000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from sage_gr00t.plan.commands import CommandGenerator
from sage_gr00t.plan.hmodule import FrozenTextEncoder, HModule, HModuleConfig, build_batch, deep_supervision_loss
from sage_gr00t.plan.planner import HModulePlanner

REPO = Path(__file__).resolve().parents[1]


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 200
    seed: int = 0
    device: str = "cpu"
    out: str = str(REPO / "assets" / "planner")
    encoder_dir: str | None = None
    log_every: int = 100
    max_minutes: float = 0.0  # stop early when > 0 and this much wall time has passed


def train(cfg: TrainConfig, model_cfg: HModuleConfig | None = None) -> tuple[HModule, list[float]]:
    torch.manual_seed(cfg.seed)
    model_cfg = model_cfg or HModuleConfig()
    device = torch.device(cfg.device)
    encoder = FrozenTextEncoder(cfg.encoder_dir, device, model_cfg.max_tokens)
    model = HModule(model_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.05, 1 - s / max(1, cfg.steps)))
    gen = CommandGenerator("train", cfg.seed)  # fresh examples every step: the generator is the dataset
    losses = []
    bar = tqdm(range(cfg.steps), desc="train planner", dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        if cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes:
            break
        ex = [gen.sample() for _ in range(cfg.batch_size)]
        b = build_batch(encoder, [e.command for e in ex], [e.scene for e in ex], ex, model_cfg.max_steps)
        outs = model(b.tok, b.tok_mask, b.obj, b.obj_mask)  # all segments: deep supervision
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f, v in asdict(TrainConfig()).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(v) if v is not None else str, default=v)
    cfg = TrainConfig(**vars(p.parse_args()))
    t0 = time.time()
    model, losses = train(cfg)
    minutes = (time.time() - t0) / 60
    HModulePlanner.save(model.cpu(), cfg.out, {"train": {**asdict(cfg), "minutes": round(minutes, 2),
                                                         "final_loss": sum(losses[-50:]) / min(50, len(losses))}})
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"out": cfg.out, "params_M": round(n / 1e6, 2), "minutes": round(minutes, 2)}))


if __name__ == "__main__":
    main()
