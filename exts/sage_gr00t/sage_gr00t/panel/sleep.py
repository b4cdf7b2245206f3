"""Sleep cycles as the SAGE panel shows them: running one off the controller's lock, and its gallery.

The bridge's experience buffer keeps SNARC-salient steps; the panel's bridge (`viewmodel.PanelBridge`)
attaches a small camera thumbnail to each admitted experience (`Experience.trajectory[THUMBNAIL_KEY]`). When
the metabolic controller enters DREAM (or after `PanelViewModel.sleep_now()`), the view-model's tick runs
`run_sleep_cycle(bridge)` -> `bridge.sleep_cycle()`: replay of the salient buffer, dreams (expert episodes in a
private simulator, `sage_gr00t.learn`) and, for a learned policy, a few consolidation updates. It runs outside
the view-model's lock, so the panel stays readable while the robot sleeps. Each cycle becomes a `SleepCycle`
with the summary and PNG thumbnails (`gallery`: dreamt episodes' first frames, then the most salient replayed
memories).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sage_gr00t.panel.imaging import encode_png, release_gl_context

if TYPE_CHECKING:
    from sage_gr00t.bridge import SAGEGr00TBridge
    from sage_gr00t.learn.dreams import Dream
    from sage_gr00t.memory.snarc import Experience
    from sage_gr00t.memory.store import ExperienceStore

THUMBNAIL_KEY = "thumbnail"  # the camera thumbnail the panel's bridge attaches to Experience.trajectory


@dataclass
class SleepCycle:
    """One sleep cycle as the panel shows it: replay summary, dreams, consolidation, thumbnails."""

    id: int
    tick: int
    episode: int
    replayed: int
    mean_salience: float
    successes: int
    failures: int
    by_subtask: dict[str, int]
    consolidated: int
    dreams: list[dict]  # per dreamt episode: seed, instruction, subtasks, steps
    training: dict  # consolidation result (loss before/after), empty without a sleep trainer
    thumbnails: list[bytes]  # PNG: dreamt episodes' first frames, then the most salient replayed memories
    captions: list[str]
    seconds: float
    forced: bool = False
    wall_time: float = field(default_factory=time.time)
    planner: dict = field(default_factory=dict)  # the planner's consolidation (learn/planner_sleep.py), if on

    @classmethod
    def from_summary(cls, id: int, tick: int, episode: int, summary: dict, thumbnails: list[bytes],
                     captions: list[str], seconds: float, forced: bool) -> SleepCycle:
        """From `bridge.sleep_cycle()`'s summary dict."""
        return cls(id, tick, episode, summary["replayed"], summary["mean_salience"], summary["successes"],
                   summary["failures"], dict(summary["by_subtask"]), summary["consolidated"],
                   list(summary.get("dreams", [])), dict(summary.get("training", {})), thumbnails, captions,
                   seconds, forced, planner=dict(summary.get("planner", {})))

    def summary(self) -> dict:
        return {"id": self.id, "tick": self.tick, "episode": self.episode, "replayed": self.replayed,
                "mean_salience": round(self.mean_salience, 4), "successes": self.successes,
                "failures": self.failures, "by_subtask": self.by_subtask, "consolidated": self.consolidated,
                "dreams": self.dreams, "training": self.training, "thumbnails": len(self.thumbnails),
                "captions": self.captions, "seconds": round(self.seconds, 2), "forced": self.forced,
                "planner": self.planner}

    def log_text(self) -> str:
        """The panel log's line for this cycle."""
        training = self.training
        learnt = (f"; policy loss {training['loss_before']:.3f} -> {training['loss_after']:.3f}"
                  if "loss_after" in training else "")
        planner = self.planner
        if planner.get("new"):
            plural = "s" if planner["new"] != 1 else ""
            learnt += f"; planner {planner['decision']} ({planner['new']} new command{plural})"
        return (f"sleep cycle {self.id} ({self.seconds:.1f} s): replayed {self.replayed} salient memories, "
                f"dreamt {len(self.dreams)} episode{'s' if len(self.dreams) != 1 else ''}{learnt}")


def run_sleep_cycle(bridge: SAGEGr00TBridge) -> tuple[dict | None, str, float]:
    """One forced `bridge.sleep_cycle()` -> (summary or None, error, seconds). Call it outside the view-model's
    lock (dreaming and consolidation take seconds; the panel stays readable; only the ticking thread steps the
    bridge, and it is busy here). A failure comes back as the error text: a failed dream must not take the
    controller down."""
    t0 = time.perf_counter()
    summary, error = None, ""
    try:
        summary = bridge.sleep_cycle(force=True)
    except Exception as exc:  # a failed dream must not take the controller down
        error = f"sleep cycle failed: {type(exc).__name__}: {exc}"
    finally:
        release_gl_context()
    return summary, error, time.perf_counter() - t0


def gallery(dreams: Iterable[Dream], replay: Iterable[Experience], max_memories: int) -> tuple[list[bytes], list[str]]:
    """(PNG thumbnails, captions): each new dream's first frame, then up to `max_memories` distinct replayed
    memories that carry a thumbnail, in `replay`'s order (most salient first)."""
    shots, captions = [], []
    for dream in dreams:
        shots.append(encode_png(dream.thumbnail))
        captions.append(f"dreamt {dream.task} seed {dream.seed}: {dream.instruction} ({dream.steps} steps)"
                        + provenance_caption(dream.provenance))
    seen: set[tuple] = set()
    for exp in replay:  # most salient first
        thumb = (exp.trajectory or {}).get(THUMBNAIL_KEY)
        if thumb is None or (exp.episode_id, exp.step) in seen:
            continue
        seen.add((exp.episode_id, exp.step))
        shots.append(encode_png(thumb))
        captions.append(f"memory: step {exp.step}, salience {exp.salience:.2f}"
                        + (f", {exp.subtask}" if exp.subtask else ""))
        if len(seen) >= max_memories:
            break
    return shots, captions


def provenance_caption(provenance: dict) -> str:
    """Where a dream came from, for its gallery caption ("" for a dream without provenance)."""
    sources = provenance.get("source_episodes")
    if not sources:
        return ""
    turns = [f"{seg['reference']} {seg['delta_yaw']:+.2f} rad" for seg in provenance.get("segments", [])
             if abs(seg.get("delta_yaw", 0.0)) > 1e-6]
    return (f"; {provenance.get('generator', 'mimic')} from {', '.join(sources)}"
            + (f" (turned {', '.join(turns)})" if turns else ""))


def stored_dream_gallery(store: ExperienceStore, limit: int = 24, task: str | None = None) -> dict:
    """The dream gallery's data from the memory store: the newest stored dreams (kept and failed attempts)
    with where each came from, its PNG thumbnail, and kept / attempted per task."""
    items = []
    for record in store.dreams(task=task, limit=limit):
        items.append({
            "id": record.id, "task": record.task, "seed": record.seed, "success": record.success,
            "steps": record.steps, "cycle": record.cycle, "sources": record.sources,
            "segments": record.provenance.get("segments", []),
            "randomization": record.provenance.get("randomization"),
            "caption": (f"{'kept' if record.success else 'failed'} dream {record.task} seed {record.seed}"
                        + provenance_caption(record.provenance)),
            "thumbnail": encode_png(record.thumbnail) if record.thumbnail is not None else None,
        })
    return {"dreams": items, "generation": store.dream_stats()}
