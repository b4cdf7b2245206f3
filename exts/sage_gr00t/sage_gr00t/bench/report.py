"""report.md of an evaluation run folder: the summary table, plots (matplotlib) and links to filmed episodes.

    write_report(Path("outputs/eval"), summary, [("pick_apple_..._1000", Path("outputs/eval/videos/x.mp4"))])

`summary` is `sage-eval`'s summary.json: grid points, per-task and overall metrics, sweep curves. Plots:
success per grid point with its 95% Wilson interval, and (after a `--sweep`) success against the scale of each
randomization factor's training range, one line per task. Figures are drawn on matplotlib's object API
(`Figure`, no pyplot state), so reports can be written from any thread or process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPORT_FILE = "report.md"


def _point_label(point: dict[str, Any]) -> str:
    randomization = f"{point['factor']} x{point['level']:g}" if point.get("factor") else point["randomization"]
    return f"{point['task']} / {point['embodiment']} / {point['variant']} / {randomization}"


def plot_success(points: list[dict[str, Any]], path: Path) -> Path:
    """Horizontal bars: success rate per grid point, with its 95% Wilson interval as error bars."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 1.2 + 0.35 * len(points)), layout="constrained")
    ax = fig.add_subplot()
    rates = [p["success_rate"] for p in points]
    # Clipped at 0: at a rate of 0 or 1 the interval's far end can miss the rate by a rounding error.
    lows = [max(0.0, p["success_rate"] - p["success_ci95"][0]) for p in points]
    highs = [max(0.0, p["success_ci95"][1] - p["success_rate"]) for p in points]
    rows = list(range(len(points)))
    ax.barh(rows, rates, xerr=[lows, highs], color="#4c72b0", ecolor="black", capsize=3)
    ax.set_yticks(rows, [f"{_point_label(p)} (n={p['episodes']})" for p in points], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("success rate (95% Wilson interval)")
    fig.savefig(path, dpi=110)
    return path


def plot_sweep(factor: str, curves: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Success against the factor's scale of its training range (1 = training), per task, with interval bands."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for task, curve in sorted(curves.items()):
        curve = sorted(curve, key=lambda c: c["level"])
        levels = [c["level"] for c in curve]
        ax.plot(levels, [c["success_rate"] for c in curve], marker="o", label=task)
        ax.fill_between(levels, [c["success_ci95"][0] for c in curve], [c["success_ci95"][1] for c in curve],
                        alpha=0.2)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"{factor}: scale of the training range")
    ax.set_ylabel("success rate")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(summary: dict[str, Any]) -> list[str]:
    trust = summary["overall"].get("mean_camera_trust") is not None  # SAGE ran: its trust convergence too
    header = "| grid point | episodes | success | 95% CI | mean steps | completion s | arm jerk | energy J | safety |"
    lines = [header + (" camera trust | trust settle s |" if trust else ""),
             "|---|" + "---:|" * (8 + 2 * trust)]
    rows = [(_point_label(p), p) for p in summary["points"]]
    rows += [(f"**{task} (all)**", m) for task, m in summary["tasks"].items()] if len(rows) > len(summary["tasks"]) \
        else []
    rows.append(("**overall**", summary["overall"]))
    for label, m in rows:
        low, high = m["success_ci95"]
        line = (f"| {label} | {m['episodes']} | {m['successes']}/{m['episodes']} ({m['success_rate']:.0%}) | "
                f"{low:.0%}-{high:.0%} | {_cell(m['mean_steps'], '.0f')} | {_cell(m['mean_completion_s'], '.1f')} "
                f"| {_cell(m['mean_arm_jerk'], '.1f')} | {_cell(m['mean_energy_j'], '.1f')} | "
                f"{_cell(m['mean_safety_interventions'], '.1f')} |")
        if trust:
            line += f" {_cell(m.get('mean_camera_trust'), '.2f')} | {_cell(m.get('mean_trust_settle_s'), '.1f')} |"
        lines.append(line)
    return lines


def write_report(folder: Path, summary: dict[str, Any], videos: list[tuple[str, Path]], title: str = "") -> Path:
    """Write `folder`/report.md and its plots (`folder`/plots/*.png); returns the report's path."""
    plots = folder / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    lines = [f"# Evaluation report{': ' + title if title else ''}", "",
             "Success is the task's own predicate on simulator state; intervals are 95% Wilson score intervals. "
             "Completion time counts successful episodes only; energy is the sum of |torque x joint velocity| x dt; "
             "safety counts safety-filter interventions (SAGE, or a plain policy run with --safety; '-': no "
             "filter ran).", ""]
    lines += [*_table(summary), ""]
    if summary["points"]:
        success = plot_success(summary["points"], plots / "success.png")
        lines += ["## Success per grid point", "", f"![success per grid point]({success.relative_to(folder)})", ""]
    if summary["sweep"]:
        lines += ["## Robustness: one randomization factor at a time", "",
                  "Each factor alone from 0 to 2x its training range (the `train` profile; 1 = training).", ""]
        for factor, curves in sorted(summary["sweep"].items()):
            plot = plot_sweep(factor, curves, plots / f"sweep_{factor}.png")
            lines += [f"### {factor}", "", f"![{factor}]({plot.relative_to(folder)})", ""]
    if videos:
        lines += ["## Episodes", "", "The command the controller was given is written across the bottom.", ""]
        lines += [f"- [{label}]({path.relative_to(folder)})" for label, path in videos] + [""]
    path = folder / REPORT_FILE
    path.write_text("\n".join(lines))
    return path
