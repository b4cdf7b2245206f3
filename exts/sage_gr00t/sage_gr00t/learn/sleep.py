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
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
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
    success_tolerance: float = 0.0  # a success-rate drop up to this still counts as "not worse"
    loss_tolerance: float = 0.0  # equal success: the real-episode loss (tie-break) may rise this fraction
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.eval_episodes < 0 or self.dreams < 0:
            raise ValueError("steps, eval_episodes and dreams must be >= 0, batch_size >= 1.")


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


def record_episode(store: Any, env: Any, policy: Any, seed: int, task: str | None = None,
                   meta: dict | None = None, max_steps: int | None = None) -> Any:
    """One wake episode of `policy` on `env`, stored with what a dream needs to reuse it: per-frame actions,
    states and frames, the seed, the start object poses and the env's variant / randomization."""
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
    episode_id = store.begin_episode(task=task or env.task_name, meta={"seed": seed})

    def act(observation: dict) -> dict:
        action = executor.act(observation)
        store.append_step(episode_id, images=observation[EGO_VIEW],
                          **{k: np.asarray(v) for k, v in observation.items() if k.startswith(STATE_PREFIX)},
                          **{k: np.asarray(v, np.float32) for k, v in action.items()})
        return action

    try:
        success, steps, _, _ = rollout(env, act, obs, info, max_steps or env.config.max_steps, None, True)
    except BaseException:
        store.abort_episode(episode_id)
        raise
    # `meta` should name the env's randomization profile ("randomization"): a dream replays the episode with it.
    return store.end_episode(episode_id, success, n_steps=steps, meta={
        "seed": seed, "instruction": env.instruction, "object_poses": poses, "variant": env.config.variant,
        "embodiment": env.embodiment.name, "randomization": "none", **(meta or {})})


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


class SleepCycleRunner:
    """Runs sleep cycles on a live `Gr00tNativePolicy` (see `SleepCycleConfig`).

    The live policy is never trained in place: a copy is fine-tuned and evaluated, and only a copy that is not
    worse is loaded into the live model (`load_state_dict`), so a rolled-back cycle leaves the live weights
    exactly as they were, and a process killed at any point leaves the live weights, the live checkpoint
    folder, the stored dreams and the memory as they were (checkpoints and reports are written to temporary
    names and renamed; dreams go to the store in one transaction per cycle)."""

    def __init__(self, policy: Any, generator: Any, config: SleepCycleConfig | None = None, store: Any = None,
                 replay: list[dict] | None = None, on_phase: Any = None) -> None:
        self.policy, self.generator, self.store = policy, generator, store
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
        loss = float("nan")
        if probe is not None:
            model = policy.model
            model.eval()
            losses = []
            for s in range(3):
                torch.manual_seed(c.seed + s)
                with torch.no_grad():
                    losses.append(float(model(probe).item()))
            loss = float(np.mean(losses))
        return Evaluation(float(np.mean(successes)) if successes else 0.0, successes, seeds, loss)

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
    def run(self) -> dict:
        from sage_gr00t.learn.mimic import attempt_rows
        from sage_gr00t.policy.gr00t.checkpoint import save_checkpoint
        from sage_gr00t.policy.gr00t.training import BatchSampler, DemoData

        c, live = self.config, self.policy
        index = len(self.history) + 1
        t0 = time.perf_counter()
        task = self.generator.task_name
        report: dict[str, Any] = {"cycle": index, "task": task, "started_at": time.time()}

        self._phase("select")
        selected = select_experience(self.store, task, c.salient_episodes) if self.store is not None else []
        failed_seeds = [int(e.meta["seed"]) for e in selected if e.success is False and "seed" in e.meta]
        report["selected"] = [{"episode": e.id, "success": e.success, "salience": round(e.max_salience, 4)}
                              for e in selected]

        self._phase("dream")
        attempts = self.generator.generate(c.dreams, c.max_dream_attempts, scene_seeds=failed_seeds)
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
        before = self._baseline or self._evaluate(live, probe)

        self._phase("train")
        candidate = copy.deepcopy(model)
        data = DemoData.from_episodes(episodes, image_size, live.embodiment)
        sampler = BatchSampler(data, candidate, live.meta, device, shift_pixels=4,
                               subtask_language_prob=c.subtask_language_prob)
        optimizer = torch.optim.AdamW(candidate.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        generator = torch.Generator().manual_seed(c.seed + index)
        candidate.train()
        losses = []
        for _ in range(c.steps):
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

        self._phase("evaluate_after")
        after = self._evaluate(self._candidate_policy(candidate), probe)
        keep = self._not_worse(before, after)
        report.update(frames=len(data.state), dream_frames=sum(d.steps for d in dreams),
                      real_episodes=len(real), steps=c.steps, train_loss_first=losses[0] if losses else None,
                      train_loss_last=losses[-1] if losses else None, max_weight_change=changed,
                      before=asdict(before), after=asdict(after))

        self._phase("decide")
        if keep:
            folder = self.out / f"cycle-{index:03d}"
            tmp = self.out / f"cycle-{index:03d}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            save_checkpoint(tmp, candidate, live.processor.embodiments)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)  # complete or absent
            model.load_state_dict(candidate.state_dict())  # the live policy takes the new weights
            _atomic_json(self.out / "live.json", {"checkpoint": str(folder), "cycle": index})
            self._baseline = after
            report.update(decision="kept", checkpoint=str(folder))
        else:
            self._baseline = before  # the live weights are untouched: their evaluation still holds
            report.update(decision="rolled_back",
                          reason=f"success {after.success_rate:.2f} vs {before.success_rate:.2f}, "
                                 f"real-episode loss {after.loss:.4f} vs {before.loss:.4f}")
        return self._finish(report, t0)

    def _finish(self, report: dict, t0: float) -> dict:
        report["seconds"] = round(time.perf_counter() - t0, 2)
        self.history.append(report)
        _atomic_json(self.out / f"cycle-{report['cycle']:03d}.json", report)
        _atomic_json(self.out / "sleep_report.json", {"cycles": self.history})
        plot_history(self.history, self.out / "sleep_report.png")
        self._phase("done")
        return report


def plot_history(history: list[dict], path: Path) -> None:
    """Success before / after each cycle on the held-out seeds, rollbacks marked (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cycles = [h for h in history if "after" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if cycles:
        x = [h["cycle"] for h in cycles]
        ax.set_xticks(x)
        ax.plot(x, [h["before"]["success_rate"] for h in cycles], "o--", label="before")
        ax.plot(x, [h["after"]["success_rate"] for h in cycles], "s-", label="after (candidate)")
        for h in cycles:
            if h["decision"] == "rolled_back":
                ax.annotate("rolled back", (h["cycle"], h["after"]["success_rate"]), textcoords="offset points",
                            xytext=(0, -14), ha="center", fontsize=8, color="red")
        ax.legend()
    ax.set_xlabel("sleep cycle")
    ax.set_ylabel("held-out success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
