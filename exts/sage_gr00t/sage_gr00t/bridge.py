"""SAGEGr00TBridge: perceive -> plan (H-module) -> act (L-module -> policy -> safety) -> learn, per control step.

    bridge = SAGEGr00TBridge(policy, env, HModulePlanner.load("assets/planner"))
    obs, _ = env.reset(seed=1000)
    bridge.reset(obs)
    bridge.command("sort the blocks into the bins of the same colour")
    while ...: obs, *_ = env.step(bridge.step(obs))

The plan is made once per command (and again on `replan()`), from the PERCEIVED scene. A refused
command keeps the robot holding still and leaves the planner's message in `bridge.message`. The plan's
execution (pending / completed / failed subtasks, driving the L-module through them) is the
`PlanExecutor`'s; the bridge scores SAGE's trust and words messages from what it reports.
Per-step overhead is timed per stage (perceive / plan / act / learn) with the policy's inference and
the simulator's depth render excluded; see `overhead_ms()`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sage_gr00t.act.lmodule import DONE, FAILED, LModule, LModuleConfig, PerceivedState
from sage_gr00t.act.plan_executor import PlanExecutor, PlanStep
from sage_gr00t.act.safety import SafeCommand, SafetyFilter, SafetyFilterConfig
from sage_gr00t.learn.dreams import Dream, DreamGenerator
from sage_gr00t.learn.planner_sleep import MetCommand, PlannerConsolidator, PlannerSleepConfig, distinct, met_commands
from sage_gr00t.learn.sleep import SleepTrainer
from sage_gr00t.learn.wake import WakeLearner
from sage_gr00t.memory import (
    Experience,
    ExperienceStore,
    MetabolicController,
    MetabolicInputs,
    SalienceBuffer,
    SNARCScorer,
)
from sage_gr00t.modality import EGO_VIEW, state_of
from sage_gr00t.perceive.camera import (
    POLICY_IMAGE,
    CameraConfig,
    CameraFrame,
    CameraObjectEstimator,
    CameraSensor,
    FrameSource,
)
from sage_gr00t.perceive.fusion import (
    FusionConfig,
    PerceptionPipeline,
    PerceptionStep,
    PipelineConfig,
    SensorFusion,
    default_sensors,
)
from sage_gr00t.plan.planner import HModulePlanner, PlanResult
from sage_gr00t.plan.scene import Scene
from sage_gr00t.policy.base import Policy
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks.protocols import TaskEnv

STAGES = ("perceive", "plan", "act", "learn")


class _TimedCamera(CameraSensor):
    """CameraSensor that measures its capture (simulator depth render) so it can be excluded from overhead."""

    def __init__(self, estimator: CameraObjectEstimator) -> None:
        super().__init__(estimator)
        self.capture_s = 0.0

    def capture(self, env: FrameSource, timestamp: float, rgb: np.ndarray | None = None) -> CameraFrame | None:
        t0 = time.perf_counter()
        try:
            return super().capture(env, timestamp, rgb)
        finally:
            self.capture_s += time.perf_counter() - t0


@dataclass
class BridgeConfig:
    lmodule: LModuleConfig = field(default_factory=LModuleConfig)
    safety: SafetyFilterConfig | None = None  # default: SafetyFilterConfig(table_height=env.table_height)
    camera_size: int | None = None  # None: the observation's image size
    camera_every: int = 4  # camera frames every k-th control step (5 Hz); between them proprioception + memory
    use_trust: bool = True  # False: ablation, fusion ignores trust (FusionConfig.use_trust)
    replan_on_failure: bool = False  # a failed subtask triggers one new plan from the perceived scene
    # With trust the robot does not move on images SAGE distrusts. The image stream the policy acts on
    # (`sensors.POLICY_IMAGE`) is judged every control step. A missing or black frame holds the robot
    # still at once (unambiguous: a few blind steps mid-grasp were enough to lose the block); a frozen
    # one holds it once that stream's trust is below `camera_hold_below` (a repeated frame is weaker
    # evidence). While held the subtask's stall clock stops; the robot goes on with a fresh action chunk
    # once live images are back and that trust is above `camera_resume_above`. Object estimates that
    # merely disagree with the other sensors say the estimator is off, not the image: fusion handles
    # those. None: never hold. Without trust (`use_trust=False`) nothing acts on trust: it never holds.
    camera_hold_below: float | None = 0.3
    camera_resume_above: float = 0.5
    # Sleep also consolidates the commands successful episodes confirmed into the H-module (those of this
    # session, and the store's); None: the planner does not learn.
    planner_sleep: PlannerSleepConfig | None = None


class SAGEGr00TBridge:
    def __init__(
        self,
        policy: Policy,
        env: TaskEnv,
        planner: HModulePlanner,
        config: BridgeConfig | None = None,
        store: ExperienceStore | None = None,
        scorer: SNARCScorer | None = None,
        buffer: SalienceBuffer | None = None,
        metabolic: MetabolicController | None = None,
        dreamer: DreamGenerator | None = None,
        sleep_trainer: SleepTrainer | None = None,
        wake: WakeLearner | None = None,
    ) -> None:
        self.config = config or BridgeConfig()
        self.env, self.planner, self.store = env, planner, store
        self.scorer = scorer or SNARCScorer()
        self.buffer = buffer or SalienceBuffer()
        self.metabolic = metabolic or MetabolicController()
        self.dreamer, self.sleep_trainer = dreamer, sleep_trainer
        self.wake = wake  # wake learning from successful subtasks (learn/wake.py); None: off
        self.dreams: deque[Dream] = deque(maxlen=16)  # the most recent dreams (the panel shows them)
        self._planner_sleep: PlannerConsolidator | None = None  # built at the first sleep that needs it
        # Commands successful episodes confirmed, kept here too (a session without a store still teaches its
        # planner in sleep); the store holds them across sessions.
        self.confirmed: deque[MetCommand] = deque(maxlen=200)
        self.sleep_cycles = 0
        self.policy = policy
        safety_cfg = self.config.safety or SafetyFilterConfig(table_height=float(env.table_height))
        self.safety = SafetyFilter(env.embodiment, env.action_ranges(), safety_cfg)
        self.lmodule = LModule(policy, self.safety, self.config.lmodule)
        self.task = env.task_name
        self.timing = {s: 0.0 for s in STAGES}
        self.timed_steps = 0
        self.steps = 0
        self.episode_id: int | None = None
        self.text = ""
        self._new_pipeline(None)
        self._clear_plan()

    # ------------------------------------------------------------------ episode / command
    def _new_pipeline(self, obs: dict | None) -> None:
        size = self.config.camera_size
        if size is None and obs is not None:
            h, w = obs[EGO_VIEW].shape[:2]
        else:
            h = w = size or 224
        cam_cfg = CameraConfig(height=h, width=w, table_height=float(self.env.table_height))
        self.camera = _TimedCamera(CameraObjectEstimator(self.env.task.signatures(), cam_cfg))
        self.pipeline = PerceptionPipeline(
            default_sensors(self.camera), fusion=SensorFusion(FusionConfig(use_trust=self.config.use_trust)),
            config=PipelineConfig(camera_every=self.config.camera_every))
        self.trust = self.pipeline.trust
        self.perceived: PerceptionStep | None = None

    def _clear_plan(self) -> None:
        """Forget the plan: a fresh executor for the current `self.text` (set it before calling this)."""
        self.plan_result: PlanResult | None = None
        self.planned_scene: Scene | None = None  # what the plan was made from (memory keeps it with the plan)
        self.plan_executor = PlanExecutor(self.lmodule, self.text, self.config.replan_on_failure)
        self.message = ""
        self._needs_plan = False
        self.events: list[dict] = []
        self.camera_hold = False
        self._plan_message = ""
        self._held_before: set[str] = set()  # for the policy's grasp evidence (_score_policy)
        self._scored_subtask: Subtask | None = None
        self._grasped_in_subtask: set[str] = set()

    def reset(self, obs: dict, meta: dict | None = None) -> None:
        """New episode: fresh perception, safety filter at the measured pose, no plan, store episode opened."""
        self._new_pipeline(obs)
        self.text = ""
        self._clear_plan()
        self.safety.reset(state_of(obs))
        self.lmodule.executor.reset()
        self.lmodule.release_hold()
        self.lmodule.reset_episode()
        self.steps = 0
        self._prev_action: np.ndarray | None = None
        if self.store is not None:
            self.episode_id = self.store.begin_episode(meta=meta, task=self.task)
        if self.wake is not None:
            self.wake.begin_episode()

    def command(self, text: str) -> None:
        """Take a user command; it is planned from the perceived scene at the next step."""
        self.text = text
        self._clear_plan()
        self._needs_plan = True
        self.lmodule.release_hold()

    def replan(self) -> None:
        self._needs_plan = True

    @property
    def refused(self) -> bool:
        return self.plan_result is not None and not self.plan_result.ok

    @property
    def active(self) -> bool:
        return self.plan_executor.active and not self.refused

    # The plan's bookkeeping lives in the plan executor; these read-only views keep the bridge's
    # public names (the panel, the benches and the tests read them).
    @property
    def pending(self) -> list[Subtask]:
        return self.plan_executor.pending

    @property
    def completed(self) -> list[Subtask]:
        return self.plan_executor.completed

    @property
    def failed(self) -> list[Subtask]:
        return self.plan_executor.failed

    # ------------------------------------------------------------------ stages
    def _timestamp(self) -> float:
        return self.env.sim_time

    def perceive(self, obs: dict, env: TaskEnv | None = None) -> PerceivedState:
        env = env or self.env
        self.perceived = self.pipeline.step(env, self._timestamp(), obs.get(EGO_VIEW))
        return self.seen()

    def seen(self) -> PerceivedState:
        proprio = self.pipeline.proprio
        positions = {o: f.position for o, f in self.pipeline.fused.items()}
        held = {obj for obj, _ in proprio.held.values()}
        ee = dict(proprio.last.ee) if proprio.last is not None else {}
        return PerceivedState(positions, held, ee)

    def scene(self) -> Scene:
        """The perceived table as the planner sees it: the task's declared objects where fusion places them."""
        return Scene.from_task(self.env.task, {n: tuple(float(v) for v in f.position)
                                               for n, f in self.pipeline.fused.items()})

    def plan(self) -> PlanResult:
        """Plan the current command from the perceived scene (once per command, or on replan)."""
        scene = self.scene()
        result = self.planner.plan(self.text, scene)
        self.plan_result, self.planned_scene = result, scene
        self._needs_plan = False
        if result.ok:
            self.plan_executor.load(result.subtasks)  # a replan keeps what is already completed
            self.message = "plan: " + "; ".join(s.language for s in result.subtasks)
        else:
            self.plan_executor.drop()
            self.message = result.message
        self.events.append({"step": self.steps, "kind": "plan", "ok": result.ok, "message": self.message})
        return result

    def _record(self, step: PlanStep) -> None:
        """Score SAGE by what the executor reported, in the order it happened: each closed subtask
        scores its execution; a finished plan scores the planner's decomposition (it held up if every
        subtask succeeded)."""
        for event in step.events:
            if event.closes:
                self.trust.record_outcome("sage_execution", event.ok, self._timestamp())
                if not event.ok and not self._grasped_in_subtask:  # the hands never met an object
                    self.trust.record_outcome("gr00t_visual", False, self._timestamp())
            self.events.append({"step": self.steps, **event.as_dict()})
        if step.replan:
            self._needs_plan = True
        elif step.finished:
            self.trust.record_outcome("sage_planning", self.plan_executor.succeeded, self._timestamp())
            self.message = "done" if self.plan_executor.succeeded else "finished with failed subtasks: " + "; ".join(
                s.language for s in self.failed)

    def _camera_distrusted(self) -> bool:
        """Hold / resume on the policy image's trust (with hysteresis); True while the robot must hold still."""
        c = self.config
        if not c.use_trust or c.camera_hold_below is None or POLICY_IMAGE not in self.trust.sensors:
            return False
        trust, live = self.trust.trust(POLICY_IMAGE), self.trust.stream_ok(POLICY_IMAGE)
        missing = not self.trust.delivered(POLICY_IMAGE)
        if not self.camera_hold and not live and (missing or trust < c.camera_hold_below):
            self.camera_hold = True
            self._plan_message = self.message
            why = "missing or black" if missing else f"frozen (trust {trust:.2f} < {c.camera_hold_below})"
            self.message = f"holding still: the camera images are {why}; going on when live images are back"
            self.events.append({"step": self.steps, "kind": "camera_hold", "trust": trust})
        elif self.camera_hold and live and trust > c.camera_resume_above:
            self.camera_hold = False
            self.lmodule.resume()
            self.message = self._plan_message
            self.events.append({"step": self.steps, "kind": "camera_resume", "trust": trust})
        return self.camera_hold

    def act(self, obs: dict, seen: PerceivedState | None = None) -> tuple[SafeCommand, str, float]:
        """One control step of execution -> (safe command, subtask outcome 'running'/'done'/'failed'/'idle'/
        'held', seconds spent inside the policy)."""
        seen = seen or self.seen()
        if not self.active:
            return self.lmodule.hold(obs), "idle", 0.0
        if self._camera_distrusted():
            return self.lmodule.hold(obs), "held", 0.0
        subtask = self.plan_executor.current
        step = self.plan_executor.act(obs, seen)
        self._score_policy(subtask, seen.held)
        self._record(step)
        return step.command, step.status, step.policy_s

    def _score_policy(self, subtask: Subtask | None, held: set[str]) -> None:
        """The policy's trust from what its hands did, as perception saw it. A grasp of a perceived object is
        visual evidence (its motion met an object where the scene has one); whether that object is the one the
        subtask's words named is language evidence. A subtask that fails without any grasp counts against the
        visual side (see _record)."""
        grasped = held - self._held_before
        self._held_before = set(held)
        if subtask is None:
            return
        if subtask is not self._scored_subtask:
            self._scored_subtask, self._grasped_in_subtask = subtask, set()
        for obj in sorted(grasped):
            self._grasped_in_subtask.add(obj)
            self.trust.record_outcome("gr00t_visual", True, self._timestamp())
            self.trust.record_outcome("gr00t_language", obj == subtask.object_name, self._timestamp())

    def learn(self, obs: dict, command: SafeCommand, outcome: str, subtask: Subtask | None = None) -> Experience:
        """SNARC-score this step; salient ones go to the SalienceBuffer, all to the open store episode. With
        wake learning the step joins its subtask's segment, and a subtask closed successfully under enough
        trust is learnt from at once (`WakeLearner.observe`)."""
        state = np.concatenate([np.ravel(v) for _, v in sorted(state_of(obs).items())])
        action = np.concatenate([np.ravel(command.action[k]) for k in sorted(command.action)])
        followed = sum(f.followed is not None for f in self.pipeline.fused.values())
        exp = Experience(
            episode_id=self.episode_id, step=self.steps, task=self.text or self.task, state=state, action=action,
            subtask=subtask.language if subtask else "", reward=1.0 if outcome == DONE else 0.0,
            prev_action=self._prev_action, sensor_disagreement=float(followed),
            safety_intervention=command.intervened,
            success=True if outcome == DONE else False if outcome == FAILED else None,
        )
        self._prev_action = action
        exp = self.scorer.annotate(exp)
        self.buffer.offer(exp)
        if self.store is not None and self.episode_id is not None:
            self.store.add(exp)
        self.metabolic.step(MetabolicInputs(
            task_active=self.active, salience=exp.scores.total if exp.scores else 0.0,
            failure=outcome == FAILED, success=outcome == DONE, safety_violation=command.hazard,
            unconsolidated=self.buffer.n_unconsolidated,
        ))
        if self.wake is not None:
            self.wake.observe(obs, command, subtask, outcome, self.trust.components, self.text)
        return exp

    def planned_command(self) -> MetCommand | None:
        """The command with its plan as (skill, object, target) and the scene it was made from (None without a
        plan): what a successful episode confirms (planner sleep)."""
        if self.plan_result is None or not self.plan_result.ok or self.planned_scene is None:
            return None
        return MetCommand(self.text, self.planned_scene,
                          tuple((t.skill, t.object_name, t.target_name) for t in self.plan_result.subtasks))

    def planned_record(self) -> dict:
        """{"planned": `planned_command()`'s plan and scene} for an episode's memory, or {} without a plan."""
        planned = self.planned_command()
        return {"planned": planned.record()} if planned is not None else {}

    def end_episode(self, success: bool | None, meta: dict | None = None) -> None:
        """Persist the episode's experiences (when a store was given); wake learning's guard judges the outcome."""
        if self.wake is not None:
            self.wake.end_episode(success)
        planned = self.planned_command()
        if success and planned is not None:
            self.confirmed.append(planned)
        if self.store is not None and self.episode_id is not None:
            record = {"planned": planned.record()} if planned is not None else {}
            self.store.end_episode(self.episode_id, success, n_steps=self.steps,
                                   meta={"command": self.text, "message": self.message, **record, **(meta or {})})
            self.episode_id = None

    def sleep_cycle(self, force: bool = False) -> dict | None:
        """When the metabolic controller says so (DREAM), or `force`: replay the salient buffer, dream
        (synthetic demonstrations in a private simulator, the failed subtasks first) and consolidate the
        dreams into the policy with a few small updates (when a dreamer / sleep trainer was given)."""
        if not (self.metabolic.should_sleep or force):
            return None
        replay = self.buffer.pending()
        by_subtask: dict[str, int] = {}
        for e in replay:
            by_subtask[e.subtask or "(none)"] = by_subtask.get(e.subtask or "(none)", 0) + 1
        summary = {
            "replayed": len(replay),
            "mean_salience": float(np.mean([e.salience for e in replay])) if replay else 0.0,
            "successes": sum(e.success is True for e in replay),
            "failures": sum(e.success is False for e in replay),
            "by_subtask": by_subtask,
        }
        if self.dreamer is not None:
            failed = list(dict.fromkeys(e.subtask for e in replay if e.success is False and e.subtask))
            dreams = self.dreamer.dream(focus=failed or None)
            self.dreams.extend(dreams)
            summary["dreams"] = [{"seed": d.seed, "subtasks": d.subtasks, "steps": d.steps} for d in dreams]
            if self.sleep_trainer is not None:
                summary["training"] = self.sleep_trainer.consolidate(dreams)
        if self.config.planner_sleep is not None:
            if self._planner_sleep is None:
                self._planner_sleep = PlannerConsolidator(self.planner, self.config.planner_sleep)
            self.sleep_cycles += 1
            limit = self.config.planner_sleep.max_met
            stored = met_commands(self.store, limit) if self.store is not None else []
            summary["planner"] = self._planner_sleep.consolidate(  # this session's newest first, then the store's
                distinct([*reversed(self.confirmed), *stored], limit), cycle=self.sleep_cycles)
        summary["consolidated"] = self.buffer.mark_consolidated()
        self.metabolic.step(MetabolicInputs(consolidation_done=True, unconsolidated=0))
        return summary

    # ------------------------------------------------------------------ the control-rate loop
    def step(self, observation: dict) -> dict[str, np.ndarray]:
        """perceive -> plan (once per command / on replan) -> act -> learn; returns the action dict."""
        t0 = time.perf_counter()
        render0 = self.camera.capture_s
        seen = self.perceive(observation)
        t1 = time.perf_counter()
        self.timing["perceive"] += (t1 - t0) - (self.camera.capture_s - render0)
        if self._needs_plan and self.text:
            self.plan()
            seen = self.seen()
        t2 = time.perf_counter()
        self.timing["plan"] += t2 - t1
        subtask = self.pending[0] if self.active else None
        command, outcome, policy_s = self.act(observation, seen)
        t3 = time.perf_counter()
        self.timing["act"] += (t3 - t2) - policy_s
        self.learn(observation, command, outcome, subtask)
        self.timing["learn"] += time.perf_counter() - t3
        self.steps += 1
        self.timed_steps += 1
        return command.action

    def overhead_ms(self) -> dict[str, float]:
        """Mean bridge overhead per step (ms), per stage and total; policy inference and render excluded."""
        n = max(self.timed_steps, 1)
        out = {s: 1e3 * v / n for s, v in self.timing.items()}
        out["total"] = sum(out.values())
        return out
