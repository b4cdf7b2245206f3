"""Planner updates in sleep: commands met while awake, whose plans a successful episode confirmed, taught to the
learned H-module, with the same keep-or-roll-back rule as the policy's sleep.

Awake, the bridge stores each episode's command with the plan it ran and the scene it planned from
(`SAGEGr00TBridge.end_episode`). Asleep, a successful episode's (command, scene, plan) is a labelled example. The
ones the learned H-module alone does not already answer (`HModulePlanner.learned_plan`: deterministic grounding
decided them, or they came out of the learned path by luck of a replan) are new phrasings. The consolidator
fine-tunes a copy of the H-module on them mixed with the command generator's training split (so that nothing
learned before is forgotten), then checks the copy on a fixed guard set drawn from the held-out phrasing split
(plans and refusals) and on the new commands: the live H-module takes the new weights only if the guard is not
worse and the new commands improved, and the checkpoint is rewritten whole (`HModulePlanner.save`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from sage_gr00t.plan.commands import CommandGenerator, Example
from sage_gr00t.plan.hmodule import build_batch, deep_supervision_loss
from sage_gr00t.plan.planner import HModulePlanner, plan_matches
from sage_gr00t.plan.scene import Scene


@dataclass
class PlannerSleepConfig:
    steps: int = 30  # optimizer steps per cycle (only when new commands were met)
    batch_size: int = 32
    met_fraction: float = 0.5  # share of each batch taken from the commands met; the rest replays the generator
    lr: float = 1e-4
    guard_examples: int = 64  # held-out phrasing split examples (plans and refusals) every candidate must not lose
    guard_tolerance: float = 0.0  # a guard accuracy drop up to this still counts as "not worse"
    max_met: int = 200  # most recent confirmed commands considered per cycle
    out: str | None = None  # checkpoint folder rewritten when a cycle keeps new weights (None: in memory only)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 2 or not 0 < self.met_fraction < 1 or self.guard_examples < 1:
            raise ValueError("PlannerSleepConfig: steps >= 0, batch_size >= 2, 0 < met_fraction < 1 and "
                             "guard_examples >= 1 are required.")


@dataclass(frozen=True)
class MetCommand:
    """A command the robot was given, the scene it planned from and the plan a successful episode confirmed."""

    command: str
    scene: Scene
    steps: tuple[tuple[str, str, str], ...]

    def example(self) -> Example:
        return Example(self.command, self.scene, "ok", list(self.steps), kind="met")

    def record(self) -> dict:
        """JSON-ready plan and scene (an episode's memory keeps it under "planned", beside its "command")."""
        return {"steps": [list(s) for s in self.steps], "scene": self.scene.to_dict()}

    @classmethod
    def from_record(cls, command: str, record: dict) -> MetCommand:
        return cls(command, Scene.from_dict(record["scene"]),
                   tuple((str(a), str(b), str(c)) for a, b, c in record["steps"]))


def distinct(met: Iterable[MetCommand], limit: int) -> list[MetCommand]:
    """The first of each (command, scene objects, plan), in the given order, at most `limit`: the same command in
    another layout of the same scene teaches nothing new."""
    out: dict[tuple, MetCommand] = {}
    for m in met:
        out.setdefault((m.command, tuple(m.scene.names()), m.steps), m)
        if len(out) >= limit:
            break
    return list(out.values())


def met_commands(store: Any, limit: int = 200) -> list[MetCommand]:
    """Distinct confirmed commands of the store's successful episodes that recorded a plan, newest first."""

    def recorded() -> Iterable[MetCommand]:
        for episode in reversed(store.episodes(success=True)):
            command, planned = episode.meta.get("command"), episode.meta.get("planned")
            if isinstance(command, str) and isinstance(planned, dict):
                try:
                    yield MetCommand.from_record(command, planned)
                except (KeyError, TypeError, ValueError):
                    continue  # a record of another version: skipped, never fatal to sleep

    return distinct(recorded(), limit)


class PlannerConsolidator:
    """Consolidates met commands into a live `HModulePlanner` (see the module docstring)."""

    def __init__(self, planner: HModulePlanner, config: PlannerSleepConfig | None = None) -> None:
        self.planner = planner
        self.config = c = config or PlannerSleepConfig()
        guard = CommandGenerator("heldout_phrasing", seed=10_000 + c.seed)
        self.guard = [guard.sample() for _ in range(c.guard_examples)]

    def accuracy(self, examples: list[Example], planner: HModulePlanner | None = None) -> float:
        """Exact match of the learned H-module alone (no deterministic grounding); the live one by default."""
        planner = planner or self.planner
        if not examples:
            return 1.0
        hits = [plan_matches(e.refusal, e.steps, planner.learned_plan(e.command, e.scene)) for e in examples]
        return sum(hits) / len(hits)

    def consolidate(self, met: list[MetCommand], cycle: int = 0) -> dict:
        c, live = self.config, self.planner.model
        new = [m.example() for m in met if not plan_matches("ok", m.steps, self.planner.learned_plan(m.command,
                                                                                                      m.scene))]
        report: dict[str, Any] = {"met": len(met), "new": len(new), "new_commands": [e.command for e in new[:10]]}
        if not new or c.steps == 0:
            report.update(decision="skipped", reason="no new command or phrasing: the learned H-module already "
                          "plans every confirmed command" if not new else "steps = 0")
            return report
        before = {"guard": self.accuracy(self.guard), "new": 0.0}
        candidate = copy.deepcopy(live).train()
        optimizer = torch.optim.AdamW(candidate.parameters(), lr=c.lr, weight_decay=0.05, betas=(0.9, 0.95))
        replay = CommandGenerator("train", seed=c.seed + cycle, augment=True)
        rng = torch.Generator().manual_seed(c.seed + cycle)
        n_met = max(1, round(c.batch_size * c.met_fraction))
        losses = []
        for _ in range(c.steps):
            pick = torch.randint(0, len(new), (n_met,), generator=rng).tolist()
            batch = [new[i] for i in pick] + [replay.sample() for _ in range(c.batch_size - n_met)]
            b = build_batch(self.planner.encoder, [e.command for e in batch], [e.scene for e in batch], batch,
                            candidate.cfg.max_steps)
            loss, _ = deep_supervision_loss(candidate(b.tok, b.tok_mask, b.obj, b.obj_mask), b.targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(candidate.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.item()))
        trial = HModulePlanner(candidate, self.planner.encoder)  # the live planner answers on, untouched
        after = {"guard": self.accuracy(self.guard, trial), "new": self.accuracy(new, trial)}
        # Kept only when it learned something met and lost nothing held out.
        keep = all(bool(torch.isfinite(p).all()) for p in candidate.parameters()) and \
            after["guard"] >= before["guard"] - c.guard_tolerance and after["new"] > before["new"]
        report.update(steps=len(losses), loss_first=losses[0], loss_last=losses[-1], before=before, after=after,
                      guard_examples=len(self.guard))
        if keep:
            live.load_state_dict(candidate.state_dict())
            if c.out is not None:
                HModulePlanner.save(live, c.out, {"sleep": {"cycle": cycle, **report}})
                report["checkpoint"] = c.out
            report["decision"] = "kept"
        else:
            report.update(decision="rolled_back", reason=f"guard {after['guard']:.3f} vs {before['guard']:.3f}, "
                                                          f"new commands {after['new']:.3f} vs {before['new']:.3f}")
        return report

