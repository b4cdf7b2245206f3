"""Metabolic states: when SAGE works, pays close attention, rests, consolidates ("dreams") or panics.

States and the rules that move between them (checked in this order every control step):
1. any -> CRISIS   when the failure streak reaches `crisis_failure_streak`, or at least
                   `crisis_safety_violations` safety violations happened in the last `safety_window` steps.
2. CRISIS -> WAKE  after `crisis_recovery_steps` consecutive steps without failure or violation
                   (streak and violation window are cleared: recovery is a fresh start).
3. WAKE -> FOCUS   when a task is active (a task started).
   REST -> FOCUS, DREAM -> FOCUS: a task preempts rest and consolidation (the robot serves first).
4. FOCUS -> WAKE   when the task is no longer active (done or abandoned).
5. WAKE -> REST    after `idle_steps_to_rest` idle steps with recent salience (EMA) below
                   `rest_max_salience`, or at once when idle and energy < `low_energy`.
6. REST -> DREAM   when at least `dream_min_unconsolidated` salient memories await consolidation
                   -- this is when sleep consolidation should run (`should_sleep`).
7. DREAM -> WAKE   when the consolidation reports done (or nothing is left to consolidate).
REST is the idle state: it is left only for FOCUS (a task), DREAM or CRISIS. Entering WAKE resets
the idle counter, so after a dream the robot stays awake `idle_steps_to_rest` steps before resting
again (no wake/rest chattering).

Energy in [0, 1] drains while awake (faster in focus and crisis) and recovers in rest and dream;
it makes long shifts end in rest even when small tasks keep the robot from being idle for long.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class MetabolicState(StrEnum):
    WAKE = "wake"
    FOCUS = "focus"
    REST = "rest"
    DREAM = "dream"
    CRISIS = "crisis"


@dataclass
class MetabolicConfig:
    idle_steps_to_rest: int = 200  # 10 s at 20 Hz without a task
    rest_max_salience: float = 0.5  # don't fall asleep while things are still exciting
    salience_ema: float = 0.9  # smoothing of the per-step salience input (~10 steps)
    dream_min_unconsolidated: int = 64  # enough salient memories for a useful replay batch
    crisis_failure_streak: int = 3
    crisis_safety_violations: int = 2
    safety_window: int = 100  # steps
    crisis_recovery_steps: int = 40  # 2 s of calm
    low_energy: float = 0.2
    # Energy change per step, by state.
    drain_wake: float = 1e-4
    drain_focus: float = 4e-4
    drain_crisis: float = 1e-3
    recover_rest: float = 2e-3
    recover_dream: float = 1e-3

    def __post_init__(self) -> None:
        if min(self.idle_steps_to_rest, self.crisis_failure_streak, self.crisis_safety_violations) < 1:
            raise ValueError("step counts and crisis thresholds must be >= 1.")
        if not 0.0 <= self.low_energy <= 1.0:
            raise ValueError("low_energy must be in [0, 1].")


@dataclass
class MetabolicInputs:
    """What the controller knows at one control step."""

    task_active: bool = False
    salience: float = 0.0  # SNARC total of this step's experience (or max over recent ones)
    failure: bool = False  # a subtask / episode ended in failure this step
    success: bool = False  # a subtask / episode succeeded this step (resets the failure streak)
    safety_violation: bool = False  # the safety filter had to intervene / a limit was hit
    unconsolidated: int = 0  # salient memories waiting for sleep (SalienceBuffer.n_unconsolidated)
    consolidation_done: bool = False  # the sleep cycle finished


class MetabolicController:
    """Step it once per control step; `state`, `should_sleep` and `history` are read by SAGE."""

    def __init__(self, config: MetabolicConfig | None = None) -> None:
        self.config = config or MetabolicConfig()
        self.state = MetabolicState.WAKE
        self.step_count = 0
        self.energy = 1.0
        self.failure_streak = 0
        self.idle_steps = 0
        self.calm_steps = 0
        self.salience_level = 0.0
        self._violations: deque[int] = deque()  # steps of recent safety violations
        # Transitions only (step, new state, reason), starting with the initial state; the state at
        # any step is the last entry at or before it (a step function, cheap to plot).
        self.transitions: list[tuple[int, MetabolicState, str]] = [(0, self.state, "start")]

    @property
    def history(self) -> list[tuple[int, MetabolicState]]:
        return [(s, st) for s, st, _ in self.transitions]

    @property
    def should_sleep(self) -> bool:
        """True while sleep consolidation should run (DREAM)."""
        return self.state is MetabolicState.DREAM

    def state_at(self, step: int) -> MetabolicState:
        state = self.transitions[0][1]
        for s, st, _ in self.transitions:
            if s > step:
                break
            state = st
        return state

    def _go(self, state: MetabolicState, reason: str) -> None:
        if state is not self.state:
            if state is MetabolicState.WAKE:
                self.idle_steps = 0
            self.state = state
            self.transitions.append((self.step_count, state, reason))

    def step(self, inp: MetabolicInputs) -> MetabolicState:
        c = self.config
        S = MetabolicState
        self.step_count += 1
        # ---- bookkeeping of the inputs
        self.salience_level = c.salience_ema * self.salience_level + (1 - c.salience_ema) * float(inp.salience)
        if inp.failure:
            self.failure_streak += 1
        elif inp.success:
            self.failure_streak = 0
        if inp.safety_violation:
            self._violations.append(self.step_count)
        while self._violations and self._violations[0] <= self.step_count - c.safety_window:
            self._violations.popleft()
        self.idle_steps = 0 if inp.task_active else self.idle_steps + 1
        self.calm_steps = 0 if (inp.failure or inp.safety_violation) else self.calm_steps + 1
        # ---- transitions, in priority order
        if self.state is not S.CRISIS and self.failure_streak >= c.crisis_failure_streak:
            self._go(S.CRISIS, f"failure streak {self.failure_streak}")
        elif self.state is not S.CRISIS and len(self._violations) >= c.crisis_safety_violations:
            self._go(S.CRISIS, f"{len(self._violations)} safety violations in {c.safety_window} steps")
        elif self.state is S.CRISIS:
            if self.calm_steps >= c.crisis_recovery_steps:
                self.failure_streak = 0
                self._violations.clear()
                self._go(S.WAKE, f"recovered after {self.calm_steps} calm steps")
        elif inp.task_active:
            if self.state is not S.FOCUS:
                self._go(S.FOCUS, "task started" if self.state is S.WAKE else f"task preempted {self.state}")
        elif self.state is S.FOCUS:
            self._go(S.WAKE, "task done")
        elif self.state is S.WAKE:
            if self.energy < c.low_energy:
                self._go(S.REST, f"low energy {self.energy:.2f}")
            elif self.idle_steps >= c.idle_steps_to_rest and self.salience_level < c.rest_max_salience:
                self._go(S.REST, f"idle {self.idle_steps} steps")
        elif self.state is S.REST:
            if inp.unconsolidated >= c.dream_min_unconsolidated:
                self._go(S.DREAM, f"{inp.unconsolidated} unconsolidated memories")
        elif self.state is S.DREAM and (inp.consolidation_done or inp.unconsolidated == 0):
            self._go(S.WAKE, "consolidation done")
        # ---- energy of the (new) state
        delta = {
            S.WAKE: -c.drain_wake,
            S.FOCUS: -c.drain_focus,
            S.CRISIS: -c.drain_crisis,
            S.REST: c.recover_rest,
            S.DREAM: c.recover_dream,
        }[self.state]
        self.energy = min(1.0, max(0.0, self.energy + delta))
        return self.state
