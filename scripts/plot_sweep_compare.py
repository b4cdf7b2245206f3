"""Robustness sweeps of two or more policies side by side: success per randomization factor and level, with 95%
Wilson intervals, from `sage-eval --sweep` run folders (their `results.json`).

    python scripts/plot_sweep_compare.py --runs gr00t_v6=/tmp/sweep_v6 gr00t_v7=/tmp/sweep_v7 \
        --task pick_apple sort_blocks --out docs/sweep_v6_v7.png

One panel per task: for each factor, one group of bars per level, one bar per policy. Several folders may share a
label (e.g. a lighting sweep at 0 / 1 / 2 and the other factors at 2). A markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sage_gr00t.cli.eval import summarize_grid


def tally(runs: list[tuple[str, Path]]) -> dict[tuple[str, str, str, float], dict]:
    """(policy label, task, factor, level) -> sage-eval's own sweep summary of that cell (successes, episodes,
    success_rate, success_ci95), from every folder of the label pooled."""
    records: dict[str, list[dict]] = {}
    for label, folder in runs:
        records.setdefault(label, []).extend(json.loads((folder / "results.json").read_text()))
    return {(label, task, factor, float(cell["level"])): cell
            for label, group in records.items()
            for factor, per_task in summarize_grid(group)["sweep"].items()
            for task, curve in per_task.items() for cell in curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="LABEL=FOLDER (sage-eval --sweep output folders)")
    parser.add_argument("--task", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = []
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep or not (Path(folder) / "results.json").is_file():
            parser.error(f"--runs {spec!r}: give LABEL=FOLDER with FOLDER/results.json (a sage-eval --sweep run).")
        runs.append((label, Path(folder)))
    cells = tally(runs)
    labels = list(dict.fromkeys(label for label, _ in runs))
    fig, axes = plt.subplots(len(args.task), 1, figsize=(12, 3.6 * len(args.task)), squeeze=False)
    print("| policy | task | factor | level | success | 95% CI |\n|---|---|---|---|---|---|")
    for ax, task in zip(axes[:, 0], args.task, strict=True):
        groups = sorted({(f, lv) for (_, t, f, lv) in cells if t == task})
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            xs, ys, lo, hi = [], [], [], []
            for x, (factor, level) in enumerate(groups):
                if (label, task, factor, level) not in cells:
                    continue
                cell = cells[(label, task, factor, level)]
                k, n, (low, high) = cell["successes"], cell["episodes"], cell["success_ci95"]
                xs.append(x + (i - (len(labels) - 1) / 2) * width)
                ys.append(k / n)
                lo.append(k / n - low)
                hi.append(high - k / n)
                print(f"| {label} | {task} | {factor} | {level:g}x | {k}/{n} ({100 * k / n:.0f}%) | "
                      f"{100 * low:.0f}-{100 * high:.0f}% |")
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=label)
        ax.set_xticks(range(len(groups)), [f"{f}\n{lv:g}x" for f, lv in groups], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("success")
        ax.set_title(f"{task}: one randomization factor at a time (x its training range)")
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"\nplot: {args.out}")


if __name__ == "__main__":
    main()
