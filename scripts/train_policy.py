#!/usr/bin/env python
"""Train the GR00T-architecture policy on LeRobot demonstration datasets.

    python scripts/train_policy.py --datasets outputs/datasets/pick_apple_sage outputs/datasets/sort_blocks_sage \
        --out outputs/policy_compact --steps 20000 --batch-size 64

CPU by default when no GPU is present (CUDA when available). Re-running with the same --out resumes
from `train_state.pt`. Writes checkpoint-<step>/ folders, final/, loss.csv and loss.png.
`--cache` names a training-cache folder (built from --datasets if missing) so training can run where
LeRobot and the simulator are not installed.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from sage_gr00t.policy.gr00t.training import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.name == "datasets":
            p.add_argument(flag, nargs="*", default=[])
        elif isinstance(default, bool):
            p.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=default)
        elif default is None:
            kind = {"num_threads": int, "max_minutes": float}.get(f.name, str)
            p.add_argument(flag, default=None, type=kind)
        else:
            p.add_argument(flag, type=type(default), default=default)
    args = p.parse_args()
    train(TrainConfig(**vars(args)))


if __name__ == "__main__":
    main()
