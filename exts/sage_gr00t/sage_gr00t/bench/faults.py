"""Fault schedules: which camera faults strike, at which phase of the task, and for how long.

What a fault costs depends on what the robot is doing when it strikes, so a schedule runs every fault once
from each start step (the task's phases); the clean run (`none`) once. Faults come from
`sage_gr00t.perceive.faults` and strike at one of two places:

    camera     the camera itself fails: `image_noise` on the pixels, `frozen` frames, `dropout` (black
               images); the policy's image AND the object estimator's input are corrupted
    estimator  only the estimator's input is (`noise` on its estimates, `frozen`, `dropout`); the policy
               keeps seeing the true image
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sage_gr00t.perceive.faults import FaultConfig

# Per place: pixel noise is what a faulty camera gives; position noise, a confused detector.
FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "camera": ("none", "image_noise", "frozen", "dropout"),
    "estimator": ("none", "noise", "frozen", "dropout"),
}
ALL_FAULTS = tuple(sorted({kind for kinds in FAULT_KINDS.values() for kind in kinds}))
TRUST_LOW = 0.3  # a camera trust below this counts as "the trust engine noticed"


@dataclass(frozen=True)
class TaskPhase:
    step: int  # control step at which the phase is under way (shipped policy, clean episode)
    what: str


# sort_blocks from "sort the blocks into the bins of the same colour": a clean episode takes ~140 steps.
SORT_BLOCKS_PHASES = (
    TaskPhase(40, "reaching for the first block"),
    TaskPhase(70, "carrying it"),
    TaskPhase(100, "the second block"),
)
DEFAULT_STARTS = tuple(phase.step for phase in SORT_BLOCKS_PHASES)


@dataclass(frozen=True)
class FaultSchedule:
    """Every fault from every start step, lasting `duration` control steps (0: to the end of the episode)."""

    fault_at: str = "camera"  # where the fault strikes: "camera" or "estimator" (see the module docstring)
    faults: tuple[str, ...] = ()  # the kinds to run; empty: none + the three faults of `fault_at`
    starts: tuple[int, ...] = DEFAULT_STARTS  # control steps at which a fault is switched on, one run each
    duration: int = 0  # control steps a fault lasts; 0: to the end of the episode

    def __post_init__(self) -> None:
        if self.fault_at not in FAULT_KINDS:
            raise ValueError(f"fault_at must be one of {tuple(FAULT_KINDS)}, got {self.fault_at!r}.")
        unknown = [f for f in self.faults if f not in ALL_FAULTS]
        if unknown:
            raise ValueError(f"Unknown fault(s) {unknown}; known: {ALL_FAULTS}.")
        if not self.starts or min(self.starts) < 0:
            raise ValueError(f"Fault start steps must be one or more steps >= 0, got {list(self.starts)}.")
        if self.duration < 0:
            raise ValueError(f"A fault's duration must be >= 0 control steps (0: to the end), got {self.duration}.")

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.faults or FAULT_KINDS[self.fault_at]

    @property
    def reaches_policy(self) -> bool:
        """A faulty camera corrupts the policy's image too; a faulty estimator only the estimates."""
        return self.fault_at == "camera"

    def runs(self) -> list[tuple[str, int]]:
        """(fault, start step) of every run, in order; the clean run once, at the first start step."""
        return [(fault, start) for fault in self.kinds
                for start in (self.starts if fault != "none" else self.starts[:1])]

    def fault_config(self, seed: int) -> FaultConfig:
        """The `FaultyCamera` settings of one episode (the fault itself is switched on at its start step)."""
        from sage_gr00t.perceive.faults import FaultConfig

        return FaultConfig(seed=seed, duration=self.duration or None, reaches_policy=self.reaches_policy)
