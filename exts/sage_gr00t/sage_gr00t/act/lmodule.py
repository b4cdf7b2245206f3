"""L-module: execute one `Subtask` at a time through any `Policy` (ChunkExecutor -> SafetyFilter).

Completion, progress and stalls are judged from PERCEIVED state only (fused object estimates and
proprioceptive grasp state), never from simulator ground truth:
- done: the object's fused position lies inside the target's perceived footprint (xy), near the
  table (z), and no hand holds it, for `confirm_steps` consecutive steps;
- progress: a potential (hand-to-object distance while not held + object-to-target xy distance)
  that must drop by `progress_eps` within `stall_steps` steps; otherwise the subtask stalled and is
  retried (executor reset: fresh chunk from the current observation) up to `max_retries` times,
  after which the subtask is reported failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig
from sage_gr00t.act.safety import SafeCommand, SafetyFilter
from sage_gr00t.modality import LANGUAGE_KEY, action_key, group_of, state_of
from sage_gr00t.policy.base import Policy
from sage_gr00t.skills import Subtask

LANGUAGE_MODES = ("subtask", "command")
RUNNING, DONE, FAILED = "running", "done", "failed"


@dataclass
class LModuleConfig:
    # "subtask": the policy gets the current subtask's language ("pick up the red block and place it
    # in the red bin"), so the plan's order is the order executed. "command": it gets the user's whole
    # command and picks the order itself (the L-module follows whichever object it is holding); for
    # policies trained only on whole-task instructions. The shipped compact policy was trained on both.
    language_mode: str = "subtask"
    chunking: ChunkExecutorConfig = field(default_factory=ChunkExecutorConfig)
    stall_steps: int = 80  # steps without progress -> stall (4 s at 20 Hz)
    progress_eps: float = 0.01  # m: the potential must improve by this much to count as progress
    max_retries: int = 2  # executor resets per subtask before it is reported failed
    confirm_steps: int = 3  # consecutive "inside, released, low" steps that complete a subtask
    table_height: float = 0.78
    max_height: float = 0.06  # m above the table: the object rests (in the bin), not carried over it
    footprint_margin: float = 0.0  # m added to (or, negative, taken off) each footprint half-size
    footprints: dict[str, float] = field(  # target kind (body-name suffix) -> inner half-size in xy (m)
        default_factory=lambda: {"bin": 0.07, "plate": 0.08, "tray": 0.08}
    )
    default_footprint: float = 0.05
    # Targets (bins, plates, cups) stay where they are unless a hand holds them, but their camera
    # estimate drifts once a same-coloured object lands inside or an arm occludes a wall. So each
    # target's position is taken when first seen in the episode and kept until a hand holds it.
    anchor_targets: bool = True

    def __post_init__(self) -> None:
        if self.language_mode not in LANGUAGE_MODES:
            raise ValueError(f"language_mode must be one of {LANGUAGE_MODES}, got {self.language_mode!r}.")


@dataclass
class PerceivedState:
    """What the L-module may look at: fused object positions, held objects, end-effector positions."""

    positions: dict[str, np.ndarray]
    held: set[str] = field(default_factory=set)
    ee: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class LStep:
    command: SafeCommand
    status: str  # running / done / failed
    retried: bool = False
    potential: float = float("nan")
    policy_s: float = 0.0  # time inside policy.get_action this step (excluded from overhead)


class _TimedPolicy:
    """Wraps a Policy to measure the time spent inside it (so the L-module's own overhead is separable)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.elapsed = 0.0

    def reset(self) -> None:
        self.policy.reset()

    def get_action(self, obs: dict) -> dict:
        t0 = time.perf_counter()
        try:
            return self.policy.get_action(obs)
        finally:
            self.elapsed += time.perf_counter() - t0


class LModule:
    def __init__(self, policy: Policy, safety: SafetyFilter, config: LModuleConfig | None = None) -> None:
        self.config = config or LModuleConfig()
        self.policy = _TimedPolicy(policy)
        self.executor = ChunkExecutor(self.policy, self.config.chunking)
        self.safety = safety
        self.subtask: Subtask | None = None
        self.command_text = ""
        self._reset_progress()
        self.retries = 0
        self._hold: dict[str, np.ndarray] | None = None
        self._last_action: dict[str, np.ndarray] | None = None  # the last command sent (hold keeps its grip)
        self._anchors: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ lifecycle
    def _reset_progress(self) -> None:
        self._best = float("inf")
        self._since_progress = 0
        self._inside = 0

    def start(self, subtask: Subtask, command: str = "") -> None:
        """Begin a subtask (the executor keeps its chunk: switching subtasks is not a reason to jerk)."""
        self.subtask, self.command_text = subtask, command
        self.retries = 0
        self._reset_progress()

    def language(self) -> str:
        assert self.subtask is not None
        if self.config.language_mode == "subtask" or not self.command_text:
            return self.subtask.language
        return self.command_text

    # ------------------------------------------------------------------ perception-based checks
    def reset_episode(self) -> None:
        """Forget per-episode state (target anchors, last command); the bridge calls it on reset."""
        self._anchors.clear()
        self._last_action = None

    def target_position(self, target: str, seen: PerceivedState) -> np.ndarray | None:
        pos = seen.positions.get(target)
        if not self.config.anchor_targets or pos is None:
            return pos
        if target in seen.held or target not in self._anchors:
            self._anchors[target] = np.asarray(pos, float).copy()
        return self._anchors[target]

    def footprint(self, target: str) -> float:
        kind = target.rsplit("_", 1)[-1]
        return self.config.footprints.get(kind, self.config.default_footprint) + self.config.footprint_margin

    def is_complete(self, subtask: Subtask, seen: PerceivedState) -> bool:
        """Instantaneous check (no confirmation window) of a pick_place subtask from perceived state.

        Pour has no perceivable end state here (no liquid sensing), so it never completes by this test.
        """
        if subtask.skill != "pick_place":
            return False
        obj, tgt = seen.positions.get(subtask.object_name), self.target_position(subtask.target_name, seen)
        if obj is None or tgt is None or subtask.object_name in seen.held:
            return False
        inside = bool(np.all(np.abs(obj[:2] - tgt[:2]) < self.footprint(subtask.target_name)))
        return inside and bool(obj[2] < self.config.table_height + self.config.max_height)

    def potential(self, subtask: Subtask, seen: PerceivedState) -> float:
        obj, tgt = seen.positions.get(subtask.object_name), self.target_position(subtask.target_name, seen)
        if obj is None or tgt is None:
            return float("inf")
        value = float(np.linalg.norm(obj[:2] - tgt[:2]))
        if subtask.object_name not in seen.held and seen.ee:
            value += min(float(np.linalg.norm(e - obj)) for e in seen.ee.values())
        return value

    # ------------------------------------------------------------------ one control step
    def act(self, obs: dict, seen: PerceivedState) -> LStep:
        if self.subtask is None:
            raise RuntimeError("LModule.act called without a subtask; call start(subtask) first.")
        c = self.config
        status, retried = RUNNING, False
        if self.is_complete(self.subtask, seen):
            self._inside += 1
        else:
            self._inside = 0
        pot = self.potential(self.subtask, seen)
        if pot < self._best - c.progress_eps:
            self._best, self._since_progress = pot, 0
        else:
            self._since_progress += 1
        if self._inside >= c.confirm_steps:
            status = DONE
        elif self._since_progress >= c.stall_steps:
            if self.retries >= c.max_retries:
                status = FAILED
            else:
                self.retries += 1
                retried = True
                self.executor.reset()  # fresh chunk from the current observation
                self._best, self._since_progress = pot, 0
        policy_obs = dict(obs)
        policy_obs[LANGUAGE_KEY] = self.language()
        before = self.policy.elapsed
        action = self.executor.act(policy_obs)
        policy_s = self.policy.elapsed - before
        command = self.safety.filter(action, state_of(obs))
        self._last_action = command.action
        return LStep(command, status, retried, pot, policy_s)

    def hold(self, obs: dict) -> SafeCommand:
        """Keep the robot still: latch the measured joints once and command them, through the safety
        filter (re-commanding the measured pose every step would let the arms creep under gravity).
        Hands keep their last command: grip force comes from commanding the fingers past the contact,
        so a hand latched at its measured (touching) pose squeezes nothing and drops what it holds."""
        state = state_of(obs)
        if self._hold is None:
            # state.<group> -> action.<group>: the measured joints become the held command
            self._hold = {action_key(group_of(k)): np.asarray(v, np.float32).copy()
                          for k, v in state.items() if action_key(group_of(k)) in self.safety.keys}
            if self._last_action is not None:
                self._hold.update({k: np.array(v, np.float32) for k, v in self._last_action.items()
                                   if k.endswith("_hand") and k in self._hold})
        return self.safety.filter(self._hold, state)

    def release_hold(self) -> None:
        self._hold = None

    def resume(self) -> None:
        """Go on after holding still: a fresh chunk from the current observation, a fresh stall clock."""
        self.release_hold()
        self.executor.reset()
        self._reset_progress()
