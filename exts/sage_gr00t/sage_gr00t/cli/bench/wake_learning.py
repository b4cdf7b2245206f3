"""Wake learning on and off: SAGE's success over the same episodes from the same start weights.

    sage-bench wake-learning                                        # pick_apple, train scenes + randomization
    sage-bench wake-learning --episodes 20 --randomization strong --lr 3e-5
    sage-bench wake-learning --task sort_blocks --episodes 10       # two subtasks per episode

Each arm loads the policy afresh from `--policy` (the same start weights) and runs SAGE (the H-module planner,
the L-module, the trust engine) on `--episodes` episodes, seeds from `--seed-start`, each from the episode's own
instruction, in the same order: the `on` arm carries its updated weights from one episode into the next, the
`off` arm never changes them. The episode ends when SAGE judges its plan over (no success oracle: the L-module
must report the subtask done itself, as the wake learner needs) or at the task's step limit; success is the
task's own predicate at the end. Wake learning (learn/wake.py) learns only from subtasks the L-module closed
as done under enough trust, and its guard reverts the weights when the success rate over the last
`--guard-window` episodes drops more than `--drop-threshold` below the rate before the updates.

Prints successes with 95% Wilson intervals per arm, the exact McNemar test over the paired episodes, the number
of updates, refusals by reason, reverts, and the time per update (it runs inside the control step). Torch runs
on one thread. Writes `--out`/wake_learning.json (every episode, every update).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.paths import REPO_ROOT

PROG = "sage-bench wake-learning"
Arm = Literal["off", "on"]


@dataclass
class WakeLearningBenchConfig:
    """The episodes, the SAGE session, and the wake learner's settings (learn/wake.py: WakeLearningConfig)."""

    task: str = "pick_apple"
    variant: str = "train"
    randomization: Literal["none", "train", "strong"] = "train"
    episodes: int = 16  # per arm
    seed_start: int = 1000  # held-out seeds (the shipped policy was trained on 0-199)
    arm: list[Arm] = field(default_factory=lambda: ["off", "on"])
    policy: str = "assets/policies/gr00t_compact"
    planner: str = "assets/planner"
    lr: float = 1e-5  # the wake learner's settings (the rest at WakeLearningConfig's defaults)
    steps_per_update: int = 2  # gradient steps per successful subtask
    batch_size: int = 8
    replay_batch: int = 2  # frames of each batch from earlier successful segments
    min_trust: float = 0.6  # trust gate on gr00t_visual, gr00t_language and sage_execution
    guard_window: int = 5  # episodes on the updated weights judged against the baseline
    drop_threshold: float = 0.2  # revert when the window's success rate is this far below the baseline
    min_history: int = 3  # episodes before the first update (the baseline)
    pause_episodes: int = 5  # no updates for this many episodes after a revert
    out: Path = REPO_ROOT / "outputs" / "wake_learning"

    def __post_init__(self) -> None:
        check(self.episodes >= 1, f"--episodes must be >= 1, got {self.episodes}.")
        check(bool(self.arm), "--arm needs off and/or on.")

    def wake_config(self) -> Any:
        from sage_gr00t.learn.wake import WakeLearningConfig

        return WakeLearningConfig(enabled=True, lr=self.lr, steps_per_update=self.steps_per_update,
                                  batch_size=self.batch_size, replay_batch=self.replay_batch,
                                  min_trust=self.min_trust, guard_window=self.guard_window,
                                  drop_threshold=self.drop_threshold, min_history=self.min_history,
                                  pause_episodes=self.pause_episodes)


def run_arm(arm: str, cfg: WakeLearningBenchConfig, log: Any) -> dict[str, Any]:
    """One arm: a fresh session (fresh weights) through every seed; returns the episodes and the learner's record."""
    import torch

    from sage_gr00t.evaluation import run_bridge_episode
    from sage_gr00t.learn.wake import WakeLearningConfig
    from sage_gr00t.session import SessionConfig, build_session

    session = build_session(SessionConfig(
        task=cfg.task, variant=cfg.variant, randomization=cfg.randomization, policy=cfg.policy,
        planner=cfg.planner, device="cpu", controller="sage",
        wake=cfg.wake_config() if arm == "on" else WakeLearningConfig()))
    env, bridge, wake = session.env, session.bridge, session.wake
    start = {k: v.detach().clone() for k, v in session.policy.model.state_dict().items()}
    episodes = []
    try:
        for seed in range(cfg.seed_start, cfg.seed_start + cfg.episodes):
            torch.manual_seed(seed)
            env.reset(seed=seed)
            command = env.instruction
            n_events = len(wake.events) if wake is not None else 0
            t0 = time.perf_counter()
            result = run_bridge_episode(env, bridge, seed, command, stop_on_success=False)
            wall = time.perf_counter() - t0
            closed = [e for e in bridge.events if e["kind"] in ("done", "failed")]
            ep = {"seed": seed, "command": command, "success": result.success, "steps": result.steps,
                  "wall_s": wall, "subtasks_done": sum(e["kind"] == "done" for e in closed),
                  "subtasks_failed": sum(e["kind"] == "failed" for e in closed), "message": bridge.message}
            if wake is not None:
                ep["wake"] = [{"kind": e.kind, "reason": e.reason, "frames": e.frames, "seconds": e.seconds,
                               "losses": e.losses} for e in wake.events[n_events:]]
                ep["guard"] = [vars(g) for g in wake.guard_events if g.episode == len(wake.outcomes)]
            episodes.append(ep)
            what = ""
            if wake is not None:
                what = "; wake: " + (", ".join(f"{e['kind']}{'(' + e['reason'] + ')' if e['reason'] else ''} "
                                               f"{e['seconds']:.2f}s" for e in ep["wake"]) or "-")
                what += "".join(f"; guard {g['kind']} (window {g['window_rate']:.2f} vs baseline "
                                f"{g['baseline']:.2f})" for g in ep["guard"])
            log(f"{arm} seed {seed}: {'success' if result.success else 'FAIL'} in {result.steps} steps "
                f"({wall:.1f} s), subtasks done {ep['subtasks_done']} failed {ep['subtasks_failed']}{what}")
        end = session.policy.model.state_dict()
        moved = max(float((end[k].float() - start[k].float()).abs().max()) for k in start
                    if start[k].is_floating_point())
        return {"arm": arm, "episodes": episodes, "stats": wake.stats() if wake is not None else None,
                "max_weight_change": moved}
    finally:
        session.close()


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def results_table(arms: dict[str, dict[str, Any]], title: str) -> Any:
    from sage_gr00t.bench.stats import wilson_interval
    from sage_gr00t.bench.tables import new_table

    table = new_table(title, ("arm", "successes", "rate", "95% Wilson", "subtasks done / failed", "updates",
                              "refused (reason: n)", "reverts", "windows kept", "mean update s", "max update s",
                              "max |w - w0|", "mean episode s"), left=("arm", "refused (reason: n)"))
    for arm, res in arms.items():
        eps = res["episodes"]
        k, n = sum(e["success"] for e in eps), len(eps)
        low, high = wilson_interval(k, n)
        s = res["stats"] or {}
        refused = ", ".join(f"{r}: {c}" for r, c in sorted(s.get("refused", {}).items())) or "-"
        table.add_row(arm, f"{k}/{n}", f"{k / n:.2f}", f"[{low:.2f}, {high:.2f}]",
                      f"{sum(e['subtasks_done'] for e in eps)} / {sum(e['subtasks_failed'] for e in eps)}",
                      str(s.get("updates", 0)), refused if res["stats"] else "-", str(s.get("reverts", 0)),
                      str(s.get("accepted_windows", 0)), _fmt(s.get("mean_update_s")), _fmt(s.get("max_update_s")),
                      f"{res['max_weight_change']:.2e}", f"{sum(e['wall_s'] for e in eps) / n:.1f}")
    return table


def run(cfg: WakeLearningBenchConfig) -> int:
    import torch
    from rich.console import Console

    from sage_gr00t.bench.stats import paired_mcnemar
    from sage_gr00t.policy.factory import PolicySpecError

    torch.set_num_threads(1)
    console = Console(width=200)
    t0 = time.perf_counter()
    arms: dict[str, dict[str, Any]] = {}
    try:
        for arm in dict.fromkeys(cfg.arm):
            arms[arm] = run_arm(arm, cfg, lambda m: console.print(m, highlight=False, markup=False))
    except (PolicySpecError, FileNotFoundError, ValueError) as exc:
        return error(PROG, str(exc))
    cfg.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()}
    (cfg.out / "wake_learning.json").write_text(json.dumps({"settings": settings, "arms": arms}, indent=1))
    title = (f"wake learning, {cfg.task} ({cfg.variant} scenes, randomization {cfg.randomization}), SAGE with "
             f"{cfg.policy}, seeds {cfg.seed_start}..{cfg.seed_start + cfg.episodes - 1}; lr {cfg.lr}, "
             f"{cfg.steps_per_update} steps x batch {cfg.batch_size} per update, trust gate {cfg.min_trust}, guard "
             f"window {cfg.guard_window} ep, drop {cfg.drop_threshold}")
    console.print(results_table(arms, title))
    if "on" in arms and "off" in arms:
        only_on, only_off, p = paired_mcnemar(arms["on"]["episodes"], arms["off"]["episodes"], key=lambda r: r["seed"])
        console.print(f"paired by seed: only on succeeded {only_on}, only off succeeded {only_off}, exact McNemar "
                      f"p = {p:.3f}", highlight=False)
    console.print(f"updates run inside the control step (torch on 1 thread); total {time.perf_counter() - t0:.0f} s; "
                  f"results: {cfg.out / 'wake_learning.json'}", highlight=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(WakeLearningBenchConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
