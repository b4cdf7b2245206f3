"""Sleep consolidation: small flow-matching updates of the live policy on dreams, and whole sleep cycles.

`SleepTrainer` (the bridge's consolidation): a few clipped updates of the live policy on a cycle's dreams.
`SleepCycleRunner` (`sage-sleep`): select salient experience (failures first), dream from it
(`learn/mimic.py`), fine-tune a copy of the policy on dreams plus replayed real episodes, evaluate before and
after on held-out seeds in a private simulator, keep the copy only if it is not worse, write a checkpoint and a
report (JSON + plot).

The policy keeps its normalization statistics (they define its action space); only its weights move,
with a small learning rate and clipped gradients, so a sleep cycle nudges rather than retrains.
Progress is measured on a fixed batch of the cycle's dreams with fixed noise (before vs after).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sage_gr00t.learn.dreams import Dream


@dataclass
class SleepTrainingConfig:
    steps: int = 20
    batch_size: int = 16
    lr: float = 3e-5
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    subtask_language_prob: float = 0.5  # as in training: subtask and whole-task language
    seed: int = 0


class SleepTrainer:
    """Owns one optimizer over a `Gr00tNativePolicy`'s model across sleep cycles."""

    def __init__(self, policy, config: SleepTrainingConfig | None = None) -> None:
        self.policy = policy
        self.config = c = config or SleepTrainingConfig()
        self.model = policy.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.generator = torch.Generator().manual_seed(c.seed)
        self.cycles = 0
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop consolidating after the update in flight (shutdown must not wait for a whole cycle)."""
        self._cancel.set()

    def _loss(self, batch: dict, seed: int) -> float:
        torch.manual_seed(seed)
        with torch.no_grad():
            return float(self.model(batch).item())

    def consolidate(self, dreams: list[Dream]) -> dict:
        """Train `steps` updates on the dreams; returns loss before/after on a fixed dream batch."""
        from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData

        if not dreams:
            return {"steps": 0, "frames": 0, "reason": "no dreams"}
        c, model = self.config, self.model
        data = DemoData.from_episodes([d.episode for d in dreams], model.config.backbone.image_size,
                                      self.policy.embodiment)
        device = next(model.parameters()).device
        sampler = BatchSampler(data, model, self.policy.meta, device, shift_pixels=4,
                               subtask_language_prob=c.subtask_language_prob)
        probe = sampler(c.batch_size, torch.Generator().manual_seed(c.seed + 1))
        t0 = time.perf_counter()
        model.eval()
        before = np.mean([self._loss(probe, s) for s in range(3)])
        model.train()
        for step in range(c.steps):
            if self._cancel.is_set():
                model.eval()
                return {"steps": step, "frames": len(data.state), "cancelled": True,
                        "seconds": time.perf_counter() - t0}
            loss = model(sampler(c.batch_size, self.generator))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.max_grad_norm)
            self.optimizer.step()
        model.eval()
        after = np.mean([self._loss(probe, s) for s in range(3)])
        self.cycles += 1
        return {"steps": c.steps, "frames": len(data.state), "loss_before": float(before),
                "loss_after": float(after), "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# A sleep cycle that keeps only improvements
# ---------------------------------------------------------------------------------------------
@dataclass
class SleepCycleConfig:
    """One cycle: select salient experience -> dream from it -> fine-tune a copy of the policy on dreams plus
    replayed real episodes -> evaluate before / after on held-out seeds -> keep or roll back -> report."""

    out: str = "outputs/sleep"
    salient_episodes: int = 8  # stored episodes selected by SNARC salience, failures first
    dreams: int = 4  # dreams wanted per cycle
    max_dream_attempts: int = 12
    replay_episodes: int = 8  # real episodes replayed next to the dreams
    steps: int = 40
    batch_size: int = 16
    lr: float = 3e-5
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    subtask_language_prob: float = 0.5
    eval_seed_start: int = 5_000_000  # held out: apart from training, evaluation and dream seeds
    eval_episodes: int = 4
    eval_max_steps: int | None = None  # None: the task's own limit
    eval_image_size: int = 128
    max_train_seconds: float | None = None  # stop fine-tuning after this long (a wall-clock budget per cycle)
    success_tolerance: float = 0.0  # a success-rate drop up to this still counts as "not worse"
    loss_tolerance: float = 0.0  # equal success: the real-episode loss (tie-break) may rise this fraction
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.eval_episodes < 0 or self.dreams < 0:
            raise ValueError("steps, eval_episodes and dreams must be >= 0, batch_size >= 1.")
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise ValueError(f"max_train_seconds must be > 0 (or None), got {self.max_train_seconds}.")


@dataclass
class Evaluation:
    success_rate: float
    successes: list[bool]
    seeds: list[int]
    loss: float  # flow-matching loss on a fixed batch of the replayed real episodes, fixed noise


def select_experience(store: Any, task: str, n: int) -> list[Any]:
    """Up to `n` completed episodes of `task`: the failures first, then the successes, each by SNARC salience
    (the most salient first)."""
    episodes = store.episodes(task=task)
    failures = sorted((e for e in episodes if e.success is False), key=lambda e: -e.max_salience)
    successes = sorted((e for e in episodes if e.success is True), key=lambda e: -e.max_salience)
    return (failures + successes)[:n]


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


@dataclass
class RecordedEpisode:
    """A wake episode recorded away from the store (in a worker process); `store_recorded` writes it."""

    seed: int
    success: bool
    steps: int
    frames: dict[str, np.ndarray]  # per control step: images, state.<group>, action.<group>
    meta: dict[str, Any]  # what a dream needs to reuse it: instruction, start poses, variant, embodiment
    experiences: list[Any] = field(default_factory=list)  # SAGE's SNARC-scored steps (none for a bare policy)


def record_rollout(env: Any, policy: Any, seed: int, max_steps: int | None = None) -> RecordedEpisode:
    """One episode of the bare `policy` on `env`, its per-frame actions, states and frames kept."""
    from sage_gr00t.act.chunking import ChunkExecutor, ChunkExecutorConfig
    from sage_gr00t.data.collect import object_poses
    from sage_gr00t.evaluation import rollout
    from sage_gr00t.modality import EGO_VIEW, STATE_PREFIX

    executor = ChunkExecutor(policy, ChunkExecutorConfig())
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "seed"):
        policy.seed(seed)
    executor.reset()
    poses = object_poses(env)
    frames: dict[str, list] = {}

    def act(observation: dict) -> dict:
        action = executor.act(observation)
        _append_frame(frames, observation, action, EGO_VIEW, STATE_PREFIX)
        return action

    success, steps, _, _ = rollout(env, act, obs, info, max_steps or env.config.max_steps, None, True)
    return RecordedEpisode(seed, bool(success), steps, {k: np.stack(v) for k, v in frames.items()},
                           _episode_meta(env, seed, poses))


def _append_frame(frames: dict[str, list], observation: dict, action: dict, image_key: str, state_prefix: str) -> None:
    frames.setdefault("images", []).append(np.asarray(observation[image_key]))
    for k, v in observation.items():
        if k.startswith(state_prefix):
            frames.setdefault(k, []).append(np.asarray(v))
    for k, v in action.items():
        frames.setdefault(k, []).append(np.asarray(v, np.float32))


def _episode_meta(env: Any, seed: int, poses: Any) -> dict[str, Any]:
    return {"seed": seed, "instruction": env.instruction, "object_poses": poses, "variant": env.config.variant,
            "embodiment": env.embodiment.name, "randomization": "none"}


def store_recorded(store: Any, episode: RecordedEpisode, task: str, meta: dict | None = None) -> Any:
    """Write a recorded episode to the store (the parent's job: the SQLite store is not multi-process safe).
    `meta` should name the env's randomization profile ("randomization"): a dream replays the episode with it."""
    episode_id = store.begin_episode(task=task, meta={"seed": episode.seed})
    try:
        for exp in episode.experiences:
            store.add(replace(exp, episode_id=episode_id))
    except BaseException:
        store.abort_episode(episode_id)
        raise
    return store.end_episode(episode_id, episode.success, trajectory=episode.frames, n_steps=episode.steps,
                             meta={**episode.meta, **(meta or {})})


def record_episode(store: Any, env: Any, policy: Any, seed: int, task: str | None = None,
                   meta: dict | None = None, max_steps: int | None = None) -> Any:
    """One wake episode of `policy` on `env`, stored with what a dream needs to reuse it: per-frame actions,
    states and frames, the seed, the start object poses and the env's variant / randomization."""
    return store_recorded(store, record_rollout(env, policy, seed, max_steps), task or env.task_name, meta)


def dataset_episodes(root: str | Path, limit: int | None = None) -> list[dict]:
    """A LeRobot dataset's episodes as training episode dicts (frames, state / action groups, task, subtasks)."""
    from sage_gr00t.data.lerobot_dataset import load_dataset, load_episode

    total = load_dataset(root).meta.total_episodes
    out = []
    for i in range(total if limit is None else min(total, limit)):
        ep = load_episode(root, i)
        episode = {**ep.groups("state"), **ep.groups("action"), "images": ep.images, "task": ep.task}
        subtask = ep.subtask_per_frame()
        if subtask is not None:
            episode["subtask"] = subtask
        out.append(episode)
    return out


def stored_episode(store: Any, episode_id: int) -> dict | None:
    """A stored episode as a training episode dict (None when it kept no frames)."""
    traj = store.load_trajectory(episode_id)
    if "images" not in traj:
        return None
    record = store.episode(episode_id)
    episode = {k: v for k, v in traj.items() if k.startswith(("state.", "action."))}
    episode["images"] = traj["images"]
    episode["task"] = str(record.meta.get("instruction") or record.task)
    return episode


# ---------------------------------------------------------------------------------------------
# Episodes and dreams in worker processes (parallel.fan_out: local processes or Ray actors)
# ---------------------------------------------------------------------------------------------
CONTROLLERS = ("policy", "sage")


@dataclass(frozen=True)
class EpisodeSpec:
    """What a worker needs to rebuild the episodes' simulator and controller: plain values only (workers are
    spawned processes or Ray actors; the policy travels as a checkpoint folder, see `EpisodeJob`)."""

    task: Any  # a task name or class
    embodiment: str = "sage_humanoid"
    variant: str = "train"
    image_size: int = 128
    max_steps: int | None = None  # None: the task's own limit
    controller: str = "policy"  # recorded episodes: the bare policy, or commanded through SAGE (the bridge)
    planner: str = "assets/planner"  # the H-module (controller "sage")
    command: str | None = None  # SAGE's command (None: the task's example command)

    def __post_init__(self) -> None:
        if self.controller not in CONTROLLERS:
            raise ValueError(f"controller must be one of {CONTROLLERS}, got {self.controller!r}.")


@dataclass(frozen=True)
class EpisodeJob:
    checkpoint: str  # the weights to run (a checkpoint folder every worker can read)
    seed: int
    record: bool = False  # True: a wake episode (frames and experiences for the store); False: success only


class _Recorder:
    """The store a worker's bridge writes to: it keeps the SNARC-scored experiences for the parent's store."""

    def __init__(self) -> None:
        self.experiences: list[Any] = []

    def begin_episode(self, meta: dict | None = None, task: str | None = None) -> int:
        self.experiences = []
        return 0

    def add(self, exp: Any) -> None:
        self.experiences.append(exp)

    def end_episode(self, episode_id: int, success: bool | None, **_: Any) -> None:
        return None


class EpisodeWorker:
    """A fan-out worker: one simulator, policies loaded on the CPU from checkpoint folders. One torch thread in
    every mode (a matmul's reduction order depends on the thread count): a parallel run's episodes are then
    those of a serial one, seed for seed."""

    def __init__(self, spec: EpisodeSpec) -> None:
        from sage_gr00t.learn.mimic import _make_env

        self._threads = torch.get_num_threads()  # given back at close (a serial run is the caller's process)
        torch.set_num_threads(1)
        self.spec = spec
        self.env = _make_env(spec.task, spec.embodiment, spec.variant, "none", spec.image_size)
        self._policies: dict[str, Any] = {}
        self._planner: Any = None

    def policy(self, checkpoint: str) -> Any:
        from sage_gr00t.policy.gr00t import load_policy

        if checkpoint not in self._policies:
            if len(self._policies) >= 2:  # live and candidate at most
                self._policies.pop(next(iter(self._policies)))
            self._policies[checkpoint] = load_policy(checkpoint, embodiment=self.spec.embodiment, device="cpu")
        return self._policies[checkpoint]

    def __call__(self, job: EpisodeJob) -> bool | RecordedEpisode:
        from sage_gr00t.evaluation import run_episode
        from sage_gr00t.sim.actions import InvalidActionError

        policy = self.policy(job.checkpoint)
        if job.record:
            if self.spec.controller == "sage":
                return self._sage_episode(policy, job.seed)
            return record_rollout(self.env, policy, job.seed, self.spec.max_steps)
        try:
            return bool(run_episode(self.env, policy, job.seed, max_steps=self.spec.max_steps).success)
        except InvalidActionError:  # the policy commanded NaN / out-of-shape actions: a failed episode
            return False

    def _sage_episode(self, policy: Any, seed: int) -> RecordedEpisode:
        """One episode commanded through SAGE (`session.build_session`: perceive -> plan -> act -> learn), its
        frames, executed actions, per-frame subtask and SNARC-scored experiences kept for the store. A fresh
        bridge per episode: trust and salience learnt in one episode must not leak into the next one this
        worker happens to run (the episode is then a function of its seed)."""
        from sage_gr00t.data.collect import object_poses
        from sage_gr00t.evaluation import rollout, seed_policy
        from sage_gr00t.modality import EGO_VIEW, STATE_PREFIX
        from sage_gr00t.plan.planner import HModulePlanner
        from sage_gr00t.policy.factory import resolve_path
        from sage_gr00t.session import SessionConfig, build_session

        spec, env = self.spec, self.env
        if self._planner is None:
            self._planner = HModulePlanner.load(resolve_path(spec.planner), device="cpu")
        session = build_session(SessionConfig(task=env.task_name, embodiment=spec.embodiment, variant=spec.variant,
                                              controller="sage"), env=env, policy=policy, planner=self._planner,
                                bridge_cls=_subtask_bridge())
        bridge: Any = session.bridge
        recorder = _Recorder()
        bridge.store = recorder
        command = spec.command or env.task.example_command
        obs, info = env.reset(seed=seed)
        poses = object_poses(env)
        bridge.reset(obs, meta={"seed": seed})
        seed_policy(policy, seed)
        bridge.command(command)
        frames: dict[str, list] = {}
        languages: list[str] = []

        def act(observation: dict) -> dict:
            action = bridge.step(observation)
            _append_frame(frames, observation, action, EGO_VIEW, STATE_PREFIX)
            languages.append(bridge.current_language)
            return action

        success, steps, _, _ = rollout(env, act, obs, info, spec.max_steps or env.config.max_steps, None, True,
                                       finished=lambda: bridge.plan_result is not None and not bridge.active)
        bridge.end_episode(success)
        meta = {**_episode_meta(env, seed, poses), "command": command, "controller": "sage",
                "plan": [s.language for s in bridge.completed + bridge.failed + bridge.pending],
                **bridge.planned_record()}
        marks = _subtask_marks(languages)
        if marks:
            meta["subtasks"] = marks
        return RecordedEpisode(seed, bool(success), steps, {k: np.stack(v) for k, v in frames.items()}, meta,
                               recorder.experiences)

    def close(self) -> None:
        self.env.close()
        torch.set_num_threads(self._threads)


def _subtask_marks(languages: list[str]) -> list[tuple[int, str]]:
    """[(first frame, language)] where the subtask SAGE ran changes; frames before the first one join it."""
    marks: list[tuple[int, str]] = []
    for t, text in enumerate(languages):
        if text and (not marks or marks[-1][1] != text):
            marks.append((0 if not marks else t, text))
    return marks


_SUBTASK_BRIDGE: list[type] = []


def _subtask_bridge() -> type:
    """The bridge, remembering the language of the subtask each control step acted on (a stored wake episode's
    per-frame subtask: what a dream made from it is labelled with). Built on first use: the bridge imports
    this module's package."""
    if not _SUBTASK_BRIDGE:
        from sage_gr00t.bridge import SAGEGr00TBridge

        class SubtaskBridge(SAGEGr00TBridge):
            current_language: str = ""

            def act(self, obs: dict, seen: Any = None) -> Any:
                self.current_language = self.pending[0].language if self.active else ""
                return super().act(obs, seen)

        _SUBTASK_BRIDGE.append(SubtaskBridge)
    return _SUBTASK_BRIDGE[0]


def run_episodes(spec: EpisodeSpec, jobs: list[EpisodeJob], plan: Any) -> list[Any]:
    """Each job's result (success, or a `RecordedEpisode`), in job order, through `parallel.fan_out`."""
    from sage_gr00t.parallel import fan_out

    results = dict(fan_out(functools.partial(EpisodeWorker, spec), jobs, plan))
    return [results[i] for i in range(len(jobs))]


def wake(store: Any, spec: EpisodeSpec, checkpoint: str, seeds: list[int], plan: Any,
         meta: dict | None = None) -> list[RecordedEpisode]:
    """Wake episodes of the policy at `checkpoint` on `seeds` (in workers), written to `store` in seed order by
    this process: the store's episodes are those of a serial run whatever the number of workers."""
    episodes = run_episodes(spec, [EpisodeJob(checkpoint, s, record=True) for s in seeds], plan)
    for episode in episodes:
        store_recorded(store, episode, _task_name(spec.task),
                       {"randomization": "none", "wake": True, **(meta or {})})
    return episodes


def _task_name(task: Any) -> str:
    return task if isinstance(task, str) else str(task.name)


class DreamWorker:
    """A fan-out worker: a private mimic dream generator over the given (parsed) sources; `seed -> Attempt`."""

    def __init__(self, sources: list[Any], config: Any, task: Any) -> None:
        from sage_gr00t.learn.mimic import MimicDreamGenerator

        self.generator = MimicDreamGenerator(sources, config, task=task)

    def __call__(self, seed: int) -> Any:
        return self.generator.attempt(seed)

    def close(self) -> None:
        self.generator.close()


def generate_dreams(generator: Any, wanted: int, max_attempts: int, scene_seeds: list[int], plan: Any) -> list[Any]:
    """`generator.generate(wanted, max_attempts, scene_seeds=...)` with the attempts fanned out: the same
    seeds in the same order (the scene seeds, then fresh ones), cut where the serial loop would stop (the
    `wanted`-th kept dream, or `max_attempts`), so the result is the serial one. Each attempt is a function of
    its seed (a fresh layout and rng from it). Workers stop once that prefix is known."""
    from sage_gr00t.parallel import fan_out

    if wanted <= 0 or max_attempts <= 0:
        return []
    scene = list(scene_seeds)[:max_attempts]
    seeds = scene + [generator.next_seed + i for i in range(max_attempts - len(scene))]
    results: dict[int, Any] = {}

    def prefix() -> int | None:
        kept = 0
        for n in range(len(seeds)):
            if n not in results:
                return None
            kept += int(results[n].success)
            if kept >= wanted:
                return n + 1
        return len(seeds)

    worker = functools.partial(DreamWorker, generator.sources, generator.config, type(generator.env.task))
    stream = fan_out(worker, seeds, plan)
    count = None
    try:
        for index, attempt in stream:
            results[index] = attempt
            if (count := prefix()) is not None:
                break
    finally:
        close = getattr(stream, "close", None)
        if callable(close):  # ends the workers still dreaming past the prefix
            close()
    attempts = [results[i] for i in range(count or 0)]
    generator.next_seed += max(0, len(attempts) - len(scene))
    counts = generator.stats.setdefault(generator.task_name, {"kept": 0, "attempted": 0})
    counts["attempted"] += len(attempts)
    counts["kept"] += sum(a.success for a in attempts)
    return attempts


def replayed_episodes(recordings: list[Any], task: Any, image_size: int) -> list[dict]:
    """Recorded demonstrations as training episode dicts, their frames re-rendered by replaying the recorded
    actions open loop from the episode's seed (as mimic parsing does): no LeRobot and no video decoding
    needed, only the actions pyarrow reads (`mimic.dataset_recordings`)."""
    from sage_gr00t.learn.mimic import _make_env
    from sage_gr00t.modality import EGO_VIEW, STATE_PREFIX

    envs: dict[tuple[str, str, str], Any] = {}
    out = []
    try:
        for rec in recordings:
            key = (rec.embodiment, rec.variant, rec.randomization)
            if key not in envs:
                envs[key] = _make_env(task, rec.embodiment, rec.variant, rec.randomization, image_size)
            env = envs[key]
            obs, _ = env.reset(seed=rec.seed)
            length = len(next(iter(rec.actions.values())))
            frames: dict[str, list] = {}
            for t in range(length):
                action = {k: v[t] for k, v in rec.actions.items()}
                _append_frame(frames, obs, action, EGO_VIEW, STATE_PREFIX)
                obs, *_ = env.step(action)
            episode: dict[str, Any] = {k: np.stack(v) for k, v in frames.items()}
            episode["task"] = rec.instruction or env.instruction
            if rec.subtasks:
                marks = sorted(rec.subtasks)
                episode["subtask"] = [next((text for first, text in reversed(marks) if first <= t), marks[0][1])
                                      for t in range(length)]
            out.append(episode)
    finally:
        for env in envs.values():
            env.close()
    return out


class SleepCycleRunner:
    """Runs sleep cycles on a live `Gr00tNativePolicy` (see `SleepCycleConfig`).

    The live policy is never trained in place: a copy is fine-tuned and evaluated, and only a copy that is not
    worse is loaded into the live model (`load_state_dict`), so a rolled-back cycle leaves the live weights
    exactly as they were, and a process killed at any point leaves the live weights, the live checkpoint
    folder, the stored dreams and the memory as they were (checkpoints and reports are written to temporary
    names and renamed; dreams go to the store in one transaction per cycle).

    With a fan-out `plan` (`parallel.FanOut`) the dream attempts and the held-out episodes run in worker
    processes (or Ray actors): the policies travel as checkpoint folders under `<out>/work/` and run on the CPU,
    one torch thread each, while fine-tuning stays here on the policy's device; every result is the serial
    one for the same seeds (see `generate_dreams`, `EpisodeWorker`). Without a plan everything runs here, on the
    live objects."""

    def __init__(self, policy: Any, generator: Any, config: SleepCycleConfig | None = None, store: Any = None,
                 replay: list[dict] | None = None, on_phase: Any = None, plan: Any = None,
                 planner_sleep: Any = None) -> None:
        self.policy, self.generator, self.store = policy, generator, store
        # learn/planner_sleep.PlannerConsolidator: each cycle also teaches the H-module the commands the store's
        # successful episodes confirmed (None: the planner does not learn)
        self.planner_sleep = planner_sleep
        self.plan = plan  # parallel.FanOut, or None: everything in this process
        self.config = c = config or SleepCycleConfig()
        self.replay = list(replay or [])  # real episodes (demonstrations) replayed next to the dreams
        self.on_phase = on_phase  # called with the phase name as each starts (progress, tests)
        self.out = Path(c.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.history: list[dict] = []
        history = self.out / "sleep_report.json"
        if history.is_file():
            self.history = json.loads(history.read_text()).get("cycles", [])
        self._baseline: Evaluation | None = None
        self._eval_env = None
        self.work = self.out / "work"  # checkpoints the workers load (live weights, candidates)
        self._live_checkpoint: str | None = None

    def live_checkpoint(self) -> str:
        """A checkpoint folder holding the live weights (written on first need, and again after each keep)."""
        from sage_gr00t.policy.gr00t.checkpoint import save_checkpoint

        if self._live_checkpoint is None:
            folder = self.work / f"live-{len(self.history):03d}"
            shutil.rmtree(folder, ignore_errors=True)
            save_checkpoint(folder, self.policy.model, self.policy.processor.embodiments)
            self._live_checkpoint = str(folder)
        return self._live_checkpoint

    def episode_spec(self) -> EpisodeSpec:
        """The held-out evaluation's episodes, as the workers rebuild them."""
        g, c = self.generator.config, self.config
        return EpisodeSpec(type(self.generator.env.task), g.embodiment, g.variant, c.eval_image_size, c.eval_max_steps)

    def close(self) -> None:
        if self._eval_env is not None:
            self._eval_env.close()

    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    # ------------------------------------------------------------------ pieces
    def _evaluate(self, policy: Any, probe: dict | None) -> Evaluation:
        from sage_gr00t.evaluation import run_episode
        from sage_gr00t.learn.mimic import _make_env
        from sage_gr00t.sim.actions import InvalidActionError

        c = self.config
        if self._eval_env is None:
            g = self.generator.config
            self._eval_env = _make_env(type(self.generator.env.task), g.embodiment, g.variant, "none",
                                       c.eval_image_size)
        seeds = [c.eval_seed_start + i for i in range(c.eval_episodes)]
        if not all(bool(torch.isfinite(p).all()) for p in policy.model.parameters()):
            # A diverged update (NaN weights) fails every episode; no need to drive the robot with it.
            return Evaluation(0.0, [False] * len(seeds), seeds, float("inf"))
        successes = []
        for seed in seeds:
            if hasattr(policy, "seed"):
                policy.seed(seed)  # the same noise before and after: a paired comparison
            try:
                successes.append(run_episode(self._eval_env, policy, seed, max_steps=c.eval_max_steps).success)
            except InvalidActionError:  # the policy commanded NaN / out-of-shape actions: a failed episode
                successes.append(False)
        return Evaluation(float(np.mean(successes)) if successes else 0.0, successes, seeds,
                          self._probe_loss(policy.model, probe))

    def _probe_loss(self, model: Any, probe: dict | None) -> float:
        if probe is None:
            return float("nan")
        model.eval()
        losses = []
        for s in range(3):
            torch.manual_seed(self.config.seed + s)
            with torch.no_grad():
                losses.append(float(model(probe).item()))
        return float(np.mean(losses))

    def _evaluate_in_workers(self, model: Any, checkpoint: str, probe: dict | None) -> Evaluation:
        """`_evaluate` with the episodes fanned out: the workers load `checkpoint` (the weights of `model`) on
        the CPU; the probe loss is computed here, on the training device."""
        c = self.config
        seeds = [c.eval_seed_start + i for i in range(c.eval_episodes)]
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            return Evaluation(0.0, [False] * len(seeds), seeds, float("inf"))
        successes = [bool(s) for s in run_episodes(self.episode_spec(), [EpisodeJob(checkpoint, s) for s in seeds],
                                                   self.plan)]
        return Evaluation(float(np.mean(successes)) if successes else 0.0, successes, seeds,
                          self._probe_loss(model, probe))

    def _not_worse(self, before: Evaluation, after: Evaluation) -> bool:
        """Success on the held-out seeds decides; at equal success the loss on real episodes breaks the tie
        (with a few seeds, equal success is common, and a candidate that forgot the demonstrations is worse)."""
        c = self.config
        if after.success_rate < before.success_rate - c.success_tolerance:
            return False
        if after.success_rate > before.success_rate or not np.isfinite(before.loss):
            return True
        return bool(after.loss <= before.loss * (1 + c.loss_tolerance))

    def _candidate_policy(self, model: Any) -> Any:
        from sage_gr00t.policy.gr00t.policy import Gr00tNativePolicy

        live = self.policy
        return Gr00tNativePolicy(model, live.processor.embodiments, live.embodiment, live.device, seed=0)

    # ------------------------------------------------------------------ one cycle
    def run(self, extra: dict | None = None) -> dict:
        """One cycle; `extra` (e.g. the wake episodes before it) goes into its report."""
        from sage_gr00t.learn.mimic import attempt_rows
        from sage_gr00t.policy.gr00t.checkpoint import save_checkpoint
        from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData

        c, live = self.config, self.policy
        index = len(self.history) + 1
        t0 = time.perf_counter()
        task = self.generator.task_name
        report: dict[str, Any] = {"cycle": index, "task": task, "started_at": time.time(), **(extra or {})}

        self._phase("select")
        selected = select_experience(self.store, task, c.salient_episodes) if self.store is not None else []
        failed_seeds = [int(e.meta["seed"]) for e in selected if e.success is False and "seed" in e.meta]
        report["selected"] = [{"episode": e.id, "success": e.success, "salience": round(e.max_salience, 4)}
                              for e in selected]

        self._phase("dream")
        if self.plan is None:
            attempts = self.generator.generate(c.dreams, c.max_dream_attempts, scene_seeds=failed_seeds)
        else:
            attempts = generate_dreams(self.generator, c.dreams, c.max_dream_attempts, failed_seeds, self.plan)
        dreams = [a.dream for a in attempts if a.dream is not None]
        if self.store is not None and attempts:  # one transaction: the cycle's dreams are all stored or none
            self.store.add_dreams(attempt_rows(attempts), cycle=index)
        report["dreams"] = {"kept": len(dreams), "attempted": len(attempts),
                            "seeds": [a.seed for a in attempts], "from_failures": failed_seeds[:len(attempts)]}

        real = list(self.replay)
        if self.store is not None:
            for e in selected:
                if e.success and len(real) < c.replay_episodes + len(self.replay):
                    episode = stored_episode(self.store, e.id)
                    if episode is not None:
                        real.append(episode)
        real = real[: max(c.replay_episodes, 1)] if real else []
        episodes = [d.episode for d in dreams] + real
        if not episodes:
            report.update(decision="skipped", reason="nothing to learn from (no dream kept, no real episode)")
            return self._finish(report, t0)

        model = live.model
        image_size = model.config.backbone.image_size
        device = next(model.parameters()).device
        probe = None
        if real:  # the tie-break loss is on real episodes only (dreams must not grade themselves)
            real_data = DemoData.from_episodes(real, image_size, live.embodiment)
            probe_sampler = BatchSampler(real_data, model, live.meta, device, shift_pixels=0)
            probe = probe_sampler(c.batch_size, torch.Generator().manual_seed(c.seed + 7))

        self._phase("evaluate_before")
        if self._baseline is not None:
            before = self._baseline
        elif self.plan is None:
            before = self._evaluate(live, probe)
        else:
            before = self._evaluate_in_workers(live.model, self.live_checkpoint(), probe)

        self._phase("train")
        candidate = copy.deepcopy(model)
        data = DemoData.from_episodes(episodes, image_size, live.embodiment)
        sampler = BatchSampler(data, candidate, live.meta, device, shift_pixels=4,
                               subtask_language_prob=c.subtask_language_prob)
        optimizer = torch.optim.AdamW(candidate.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        generator = torch.Generator().manual_seed(c.seed + index)
        candidate.train()
        losses = []
        t_train = time.perf_counter()
        for _ in range(c.steps):
            if c.max_train_seconds is not None and time.perf_counter() - t_train > c.max_train_seconds:
                break  # the cycle's time budget: fewer steps, still a whole (evaluated) cycle
            loss = candidate(sampler(c.batch_size, generator))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(candidate.parameters(), c.max_grad_norm)
            optimizer.step()
            losses.append(float(loss.item()))
        candidate.eval()
        # How far the candidate moved (a diverged, NaN weight counts as infinitely far).
        changed = max((float(torch.nan_to_num((a - b).abs(), nan=float("inf")).max())
                       for a, b in zip(candidate.state_dict().values(), model.state_dict().values(), strict=True)
                       if a.is_floating_point()), default=0.0)

        train_seconds = time.perf_counter() - t_train

        self._phase("evaluate_after")
        candidate_folder = self.work / f"candidate-{index:03d}"
        if self.plan is None:
            after = self._evaluate(self._candidate_policy(candidate), probe)
        else:
            shutil.rmtree(candidate_folder, ignore_errors=True)
            save_checkpoint(candidate_folder, candidate, live.processor.embodiments)
            after = self._evaluate_in_workers(candidate, str(candidate_folder), probe)
        keep = self._not_worse(before, after)
        report.update(frames=len(data.state), dream_frames=sum(d.steps for d in dreams),
                      real_episodes=len(real), steps=len(losses), steps_planned=c.steps,
                      train_seconds=round(train_seconds, 2), device=str(device),
                      train_loss_first=losses[0] if losses else None,
                      train_loss_last=losses[-1] if losses else None, max_weight_change=changed,
                      before=asdict(before), after=asdict(after))

        self._phase("decide")
        if keep:
            folder = self.out / f"cycle-{index:03d}"
            tmp = self.out / f"cycle-{index:03d}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            if candidate_folder.is_dir():  # already written whole for the workers
                os.replace(candidate_folder, tmp)
            else:
                save_checkpoint(tmp, candidate, live.processor.embodiments)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)  # complete or absent
            model.load_state_dict(candidate.state_dict())  # the live policy takes the new weights
            self._live_checkpoint = str(folder)
            _atomic_json(self.out / "live.json", {"checkpoint": str(folder), "cycle": index})
            self._baseline = after
            report.update(decision="kept", checkpoint=str(folder))
        else:
            shutil.rmtree(candidate_folder, ignore_errors=True)
            self._baseline = before  # the live weights are untouched: their evaluation still holds
            report.update(decision="rolled_back",
                          reason=f"success {after.success_rate:.2f} vs {before.success_rate:.2f}, "
                                 f"real-episode loss {after.loss:.4f} vs {before.loss:.4f}")
        return self._finish(report, t0)

    def _finish(self, report: dict, t0: float) -> dict:
        # The planner's turn comes whatever the policy's outcome (kept, rolled back or skipped).
        if self.planner_sleep is not None and self.store is not None:
            from sage_gr00t.learn.planner_sleep import met_commands

            self._phase("planner")
            report["planner"] = self.planner_sleep.consolidate(
                met_commands(self.store, self.planner_sleep.config.max_met), cycle=report["cycle"])
        report["seconds"] = round(time.perf_counter() - t0, 2)
        self.history.append(report)
        _atomic_json(self.out / f"cycle-{report['cycle']:03d}.json", report)
        _atomic_json(self.out / "sleep_report.json", {"cycles": self.history})
        plot_history(self.history, self.out / "sleep_report.png")
        self._phase("done")
        return report


def live_curve(history: list[dict]) -> list[tuple[int, float]]:
    """(cycle, held-out success of the live policy after it): 0 is the start; a kept cycle's candidate
    becomes the live policy, a rolled-back one leaves it as it was (its "before")."""
    cycles = [h for h in history if "after" in h]
    if not cycles:
        return []
    curve = [(cycles[0]["cycle"] - 1, float(cycles[0]["before"]["success_rate"]))]
    for h in cycles:
        live = h["after"] if h["decision"] == "kept" else h["before"]
        curve.append((h["cycle"], float(live["success_rate"])))
    return curve


def plot_history(history: list[dict], path: Path) -> None:
    """The live policy's held-out success after each cycle (0: the start), each cycle's candidate, rollbacks
    marked with their reason (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cycles = [h for h in history if "after" in h]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if cycles:
        curve = live_curve(history)
        ax.set_xticks([x for x, _ in curve])
        n = len(cycles[-1]["after"]["seeds"])
        ax.plot([x for x, _ in curve], [y for _, y in curve], "o-", lw=2, label=f"live policy ({n} held-out seeds)")
        ax.plot([h["cycle"] for h in cycles], [h["after"]["success_rate"] for h in cycles], "s", mfc="none",
                label="candidate after sleep")
        for h in cycles:
            if h["decision"] == "rolled_back":
                ax.annotate("rolled back", (h["cycle"], h["after"]["success_rate"]), textcoords="offset points",
                            xytext=(0, -14), ha="center", fontsize=8, color="red")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("sleep cycle")
    ax.set_ylabel("held-out success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
