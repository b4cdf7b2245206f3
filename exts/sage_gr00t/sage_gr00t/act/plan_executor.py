"""PlanExecutor: run one command's plan, subtask by subtask, through the L-module.

The L-module judges ONE subtask (done / stalled / failed, from perceived state); this object owns the
plan around it: which subtasks are pending, completed or failed, which one the L-module works on, and
when the plan is over. Per control step `act()` returns a `PlanStep` that says what happened
(subtasks closed, retries, whether a replan is due or the plan just finished) so that its owner (the
bridge) can score SAGE's trust components and word messages; this object touches neither.

One executor lives for one command: a replan (`load()` again) keeps what is completed or failed and
the out-of-order confirmation streaks, so a subtask already done is not asked for again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sage_gr00t.act.lmodule import DONE, FAILED, LModule, PerceivedState
from sage_gr00t.act.safety import SafeCommand
from sage_gr00t.skills import Subtask

RETRY = "retry"


@dataclass(frozen=True)
class SubtaskEvent:
    """Something that happened to one subtask this step: DONE / FAILED (closed) or RETRY (stalled, restarted)."""

    kind: str
    subtask: Subtask
    out_of_order: bool = False  # DONE for a later subtask than the current one (the policy did it first)

    @property
    def closes(self) -> bool:
        return self.kind in (DONE, FAILED)

    @property
    def ok(self) -> bool:
        return self.kind == DONE

    def as_dict(self) -> dict:
        """The bridge's event-log form (the panel and the benches read these keys)."""
        out: dict = {"kind": self.kind, "subtask": self.subtask.language}
        if self.out_of_order:
            out["out_of_order"] = True
        return out


@dataclass
class PlanStep:
    command: SafeCommand
    status: str  # the subtask worked on this step: running / done / failed
    policy_s: float  # seconds inside the policy (excluded from overhead)
    events: list[SubtaskEvent] = field(default_factory=list)  # in the order they happened
    replan: bool = False  # the subtask failed and replan_on_failure: nothing further was started
    finished: bool = False  # this step closed the plan's last pending subtask


class PlanExecutor:
    def __init__(self, lmodule: LModule, command: str = "", replan_on_failure: bool = False) -> None:
        self.lmodule = lmodule
        self.command = command  # the user's text: the policy's language in "command" mode
        self.replan_on_failure = replan_on_failure
        self.pending: list[Subtask] = []
        self.completed: list[Subtask] = []
        self.failed: list[Subtask] = []
        self._done_streak: dict[Subtask, int] = {}

    # ------------------------------------------------------------------ the plan
    def load(self, subtasks: Sequence[Subtask]) -> None:
        """Take a (new) plan: its subtasks not completed yet become pending; the L-module starts the first."""
        self.pending = [s for s in subtasks if s not in self.completed]
        if self.pending:
            self.lmodule.start(self.pending[0], self.command)

    def drop(self) -> None:
        """No plan to execute (the planner refused the replan); completed / failed stay as they were."""
        self.pending = []

    @property
    def active(self) -> bool:
        return bool(self.pending)

    @property
    def current(self) -> Subtask | None:
        return self.pending[0] if self.pending else None

    @property
    def succeeded(self) -> bool:
        """No subtask failed (the planner's decomposition held up, once the plan is over)."""
        return not self.failed

    # ------------------------------------------------------------------ one control step
    def act(self, obs: dict, seen: PerceivedState) -> PlanStep:
        if not self.pending:
            raise RuntimeError("PlanExecutor.act called with no pending subtask; load() a plan first.")
        events: list[SubtaskEvent] = []
        self._follow_policy(seen)
        self._notice_done_out_of_order(seen, events)
        subtask = self.pending[0]
        out = self.lmodule.act(obs, seen)
        if out.retried:
            events.append(SubtaskEvent(RETRY, subtask))
        step = PlanStep(out.command, out.status, out.policy_s, events)
        if out.status in (DONE, FAILED):
            ok = out.status == DONE
            events.append(self._close(subtask, ok))
            if not ok and self.replan_on_failure:
                step.replan = True  # the new plan starts the L-module; starting the next one here is moot
            elif self.pending:
                self.lmodule.start(self.pending[0], self.command)
            else:
                step.finished = True
        return step

    def _follow_policy(self, seen: PerceivedState) -> None:
        """Command mode: the policy chooses the order; follow the subtask whose object it is holding."""
        if self.lmodule.config.language_mode != "command":
            return
        current = self.pending[0]
        if current.object_name in seen.held:
            return
        for s in self.pending[1:]:
            if s.object_name in seen.held:
                self.pending.remove(s)
                self.pending.insert(0, s)
                self.lmodule.start(s, self.command)
                return

    def _notice_done_out_of_order(self, seen: PerceivedState, events: list[SubtaskEvent]) -> None:
        """A later subtask found done (the policy did it first): confirm it like the current one (the
        L-module's confirm-steps streak), then drop it from the plan rather than ask for it again."""
        for s in self.pending[1:]:
            streak = self._done_streak.get(s, 0) + 1 if self.lmodule.is_complete(s, seen) else 0
            self._done_streak[s] = streak
            if streak >= self.lmodule.config.confirm_steps:
                events.append(self._close(s, True, out_of_order=True))

    def _close(self, subtask: Subtask, ok: bool, out_of_order: bool = False) -> SubtaskEvent:
        """Take a finished subtask off the plan and file it."""
        self.pending.remove(subtask)
        (self.completed if ok else self.failed).append(subtask)
        return SubtaskEvent(DONE if ok else FAILED, subtask, out_of_order)
