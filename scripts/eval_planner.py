"""Evaluate the H-module planner: exact-match plans per split, refusal accuracy per reason, latency.

    python scripts/eval_planner.py --n 500
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from sage_gr00t.plan.commands import CommandGenerator, Example
from sage_gr00t.plan.planner import HModulePlanner, PlanResult

REPO = Path(__file__).resolve().parents[1]


def matches(ex: Example, res: PlanResult) -> bool:
    """Exact match: same refusal reason, or the same (skill, object, target) sequence."""
    if ex.refusal != "ok":
        return res.refusal == ex.refusal
    got = [(s.skill, s.object_name, s.target_name) for s in res.subtasks]
    return res.ok and got == list(ex.steps)


def evaluate(planner: HModulePlanner, n: int, seed: int = 1234) -> dict:
    rows: dict[str, list[bool]] = defaultdict(list)
    lat, segs, failures = [], [], []
    for split in ("train", "heldout_phrasing", "heldout_combos"):
        gen = CommandGenerator(split, seed)
        for _ in range(n):
            ex = gen.sample()
            res = planner.plan(ex.command, ex.scene)
            lat.append(res.latency_ms)
            segs.append(res.segments)
            ok = matches(ex, res)
            key = f"{split}/plan" if ex.refusal == "ok" else f"{split}/refuse:{ex.refusal}"
            rows[key].append(ok)
            if not ok and len(failures) < 25:
                failures.append({"split": split, "command": ex.command, "want": ex.refusal, "steps": ex.steps,
                                 "got": res.refusal or [(s.skill, s.object_name, s.target_name) for s in res.subtasks],
                                 "message": res.message, "scene": [o.description for o in ex.scene.objects]})
    table = {k: {"acc": sum(v) / len(v), "n": len(v)} for k, v in sorted(rows.items())}
    return {"table": table, "latency_ms_mean": statistics.mean(lat),
            "latency_ms_p95": sorted(lat)[int(0.95 * len(lat))],
            "segments_mean": statistics.mean(segs), "failures": failures}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(REPO / "assets" / "planner"))
    p.add_argument("--n", type=int, default=500, help="examples per split")
    p.add_argument("--device", default="cpu")
    p.add_argument("--encoder-dir", default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    planner = HModulePlanner.load(a.checkpoint, a.encoder_dir, a.device)
    r = evaluate(planner, a.n)
    print(f"{'split / kind':<40}{'exact match':>12}{'n':>7}")
    for k, v in r["table"].items():
        print(f"{k:<40}{v['acc']:>12.3f}{v['n']:>7}")
    print(f"inference ({a.device}): mean {r['latency_ms_mean']:.1f} ms, p95 {r['latency_ms_p95']:.1f} ms; "
          f"mean reasoning segments {r['segments_mean']:.2f}")
    for f in r["failures"][:10]:
        print("FAIL", f)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()
