"""Latency of the compact GR00T-architecture policy on ONE CPU core, per 16-step action chunk.

    sage-bench policy --policy assets/policies/gr00t_compact --calls 50

Breaks a `get_action` call into preprocessing (validation, resize, tokenize, normalize), the VL backbone, and
the action head's 4 Euler denoising steps. Target: <= 20 ms per chunk.
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

    def __post_init__(self) -> None:
        check(self.calls >= 1, f"--calls must be >= 1, got {self.calls}.")


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
