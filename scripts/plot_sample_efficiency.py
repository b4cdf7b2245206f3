"""Sample efficiency of teaching a task from demonstrations + dreams: success against the number of source
demonstrations and against the number of dreams, with 95% Wilson intervals, from `sage-eval` summaries.

    python scripts/plot_sample_efficiency.py --runs outputs/v4/se_d1 outputs/v4/se_d3 ... \
        --task stack_blocks --out docs/sample_efficiency.png

Each run folder holds `summary.json` (sage-eval's) and `provenance.json` (the checkpoint's: per task
`source_demos` and `dreams`). Runs sharing the most common dream budget form the demonstrations curve; runs with
the most demonstrations form the dreams curve. A markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def load(run: Path, task: str) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    prov = json.loads((run / "provenance.json").read_text())[task]
    metrics = summary["tasks"][task]
    return {"run": run.name, "demos": prov["source_demos"], "dreams": prov["dreams"],
            "attempts": prov.get("dream_attempts", 0), "successes": metrics["successes"],
            "episodes": metrics["episodes"], "rate": metrics["success_rate"], "ci": metrics["success_ci95"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--task", default="stack_blocks")
    parser.add_argument("--by-demos", nargs="+", default=None, help="run names of the demonstrations curve")
    parser.add_argument("--by-dreams", nargs="+", default=None, help="run names of the dreams curve")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = [load(run, args.task) for run in args.runs]
    by_name = {r["run"]: r for r in rows}
    most = max(r["demos"] for r in rows)
    demos_curve = ([by_name[n] for n in args.by_demos] if args.by_demos
                   else sorted(rows, key=lambda r: r["demos"]))
    dreams_curve = ([by_name[n] for n in args.by_dreams] if args.by_dreams
                    else sorted((r for r in rows if r["demos"] == most), key=lambda r: r["dreams"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, curve, key, label in ((axes[0], demos_curve, "demos", "source demonstrations"),
                                  (axes[1], dreams_curve, "dreams", "dreams trained on")):
        x = [r[key] for r in curve]
        y = [100 * r["rate"] for r in curve]
        err = [[100 * (r["rate"] - r["ci"][0]) for r in curve], [100 * (r["ci"][1] - r["rate"]) for r in curve]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
        for r, xi, yi in zip(curve, x, y, strict=True):
            ax.annotate(f"{r['successes']}/{r['episodes']}", (xi, yi), textcoords="offset points", xytext=(4, -12),
                        fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.axhline(80, color="gray", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{args.task} success (%), 95% Wilson")
    axes[0].set_title("dreams from N demonstrations")
    axes[1].set_title(f"dreams from {most} demonstrations")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print("| run | demonstrations | dreams (kept / attempted) | success | Wilson 95% |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['demos']} | {r['dreams']} / {r['attempts']} | {r['successes']}/{r['episodes']} "
              f"({100 * r['rate']:.0f}%) | {100 * r['ci'][0]:.0f}-{100 * r['ci'][1]:.0f}% |")


if __name__ == "__main__":
    main()
