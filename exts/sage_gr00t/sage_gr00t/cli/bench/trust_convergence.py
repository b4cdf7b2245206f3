"""Trust convergence: after a component's reliability changes, how long until its trust settles.

    sage-bench trust-convergence                                   # both scenarios, sort_blocks, scripted expert
    sage-bench trust-convergence --scenario camera --camera-fault image_noise
    sage-bench trust-convergence --policy assets/policies/gr00t_compact --episodes 8

SAGE (the H-module planner, the L-module, the trust engine) runs on `--task` from one command with the
scripted expert as the executor policy (how the project runs SAGE without a trained policy; `--policy`
takes a checkpoint instead). Every control step the camera's sensor trust and the four component trusts
(sage_execution, sage_planning, gr00t_visual, gr00t_language) are recorded; each is fed by the bridge's
real outcomes only (closed subtasks, finished plans, grasps as perception saw them).

Scenarios (each a sequence of `--episodes` episodes, seeds from `--seed-start`):
  camera   in every episode the camera fails (`--camera-fault`, perceive/faults.py, the policy's image too)
           from control step `--fault-from` to `--fault-to`, then recovers. Sensor trust is per episode
           (the bridge builds a fresh perception pipeline at every reset).
  subtask  episodes [`--fail-from`, `--fail-to`) the executor fails one subtask of the plan (`--fail-subtask`,
           an index into the plan; default the last): for it the policy holds the robot still, so the
           L-module sees no progress and reports it failed after its retries; afterwards the policy is
           restored. Component trusts are carried from one episode into the next (module trust is a belief
           about SAGE's parts, not about one scene; the bridge itself starts each episode at the priors).

Settling time of an event (a change at step/episode t0, the phase ending at t1): the trust's value at the
end of the phase is its final value; the settling time is the number of steps (episodes) after t0 until
the trust stays within `--band` (0.05) of that value up to t1 -- the definition sage-eval uses for camera
trust (evaluation.trust_convergence), measured from the change instead of from the first reading.
Component trusts move only when an outcome is recorded (a closed subtask, a finished plan), so they are
also given in episodes, on the values at the episodes' ends.

Writes `--out`/trust.json (every curve, the events, the table) and `--out`/trust_convergence.png.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sage_gr00t.cli._parsing import check, error, parse
from sage_gr00t.paths import REPO_ROOT

if TYPE_CHECKING:
    from rich.table import Table

    from sage_gr00t.bridge import SAGEGr00TBridge
    from sage_gr00t.policy.base import Policy
    from sage_gr00t.skills import Subtask
    from sage_gr00t.tasks import TaskEnv

PROG = "sage-bench trust-convergence"
COMPONENTS = ("sage_execution", "sage_planning", "gr00t_visual", "gr00t_language")
CAMERA = "camera"
CURVES = (CAMERA, *COMPONENTS)
Scenario = Literal["camera", "subtask"]


@dataclass
class TrustConvergenceConfig:
    """The scenarios, the SAGE session around them, and where the results go."""

    scenario: list[Scenario] = field(default_factory=lambda: ["camera", "subtask"])
    task: str = "sort_blocks"  # several subtasks
    command: str = "sort the blocks into the bins of the same colour"
    episodes: int = 8  # per scenario
    seed_start: int = 1000  # held-out seeds
    policy: str = "expert"  # expert | checkpoint folder | zmq://HOST:PORT | upstream:CKPT
    planner: str = "assets/planner"
    # camera scenario
    camera_fault: Literal["noise", "image_noise", "frozen", "dropout", "black"] = "dropout"
    fault_from: int = 40  # control step the camera fails at (reaching for the first block)
    fault_to: int = 100  # control step it recovers at
    # subtask scenario
    fail_subtask: int = -1  # index into the plan of the subtask the executor fails (-1: the last)
    fail_from: int = 2  # first episode with the failing executor
    fail_to: int = 6  # first episode with the executor restored
    band: float = 0.05  # settled: within this of the phase's final value
    # A settling time counts as shown only if the trust then stayed in the band this many steps before the
    # phase ended (one episode for the per-episode count); otherwise it was still moving at the phase's end.
    hold_steps: int = 20
    max_steps: int | None = None  # episode step limit (None: the task's)
    out: Path = REPO_ROOT / "outputs" / "trust_convergence"

    def __post_init__(self) -> None:
        check(bool(self.scenario), "--scenario needs camera and/or subtask.")
        check(self.episodes >= 1, f"--episodes must be >= 1, got {self.episodes}.")
        check(0 <= self.fault_from < self.fault_to, f"need 0 <= --fault-from < --fault-to, got "
              f"{self.fault_from}, {self.fault_to}.")
        check(0 <= self.fail_from < self.fail_to <= self.episodes,
              f"need 0 <= --fail-from < --fail-to <= --episodes, got {self.fail_from}, {self.fail_to}.")
        check(self.band > 0, f"--band must be > 0, got {self.band}.")


# ---------------------------------------------------------------------- the failing executor
class FailingSubtaskPolicy:
    """Wraps a policy; while `failing` and the plan's current subtask is the chosen one, it holds the robot
    still (the measured joints as the command), so the L-module sees no progress and fails that subtask.
    The inner policy is not called then, so a stateful executor (the scripted expert) resumes where it was."""

    def __init__(self, policy: Policy, index: int = -1) -> None:
        self.policy, self.index = policy, index
        self.failing = False
        self.plan: Callable[[], list[Subtask]] = list
        self.current: Callable[[], Subtask | None] = lambda: None
        self.held_steps = 0
        self._keys: list[str] | None = None

    def bind(self, bridge: SAGEGr00TBridge) -> None:
        """Read the plan (in the planner's order) and the current subtask from the bridge."""
        self.plan = lambda: list(bridge.plan_result.subtasks) if bridge.plan_result is not None else []
        self.current = lambda: bridge.plan_executor.current

    def target(self) -> Subtask | None:
        plan = self.plan()
        if not -len(plan) <= self.index < len(plan) or not plan:
            return None
        return plan[self.index]

    def reset(self) -> None:
        self.policy.reset()

    def seed(self, seed: int) -> None:
        from sage_gr00t.evaluation import seed_policy

        seed_policy(self.policy, seed)

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        from sage_gr00t.modality import action_key, group_of, state_of

        current, target = self.current(), self.target()
        if not (self.failing and current is not None and target is not None
                and current == target):
            chunk = self.policy.get_action(observation)
            self._keys = list(chunk)
            return chunk
        self.held_steps += 1
        state = {action_key(group_of(k)): np.asarray(v, np.float32) for k, v in state_of(observation).items()}
        keys = self._keys or list(state)
        return {k: state[k][None].copy() for k in keys if k in state}


# ---------------------------------------------------------------------- settling
def settling(values: np.ndarray, start: int, end: int, band: float) -> tuple[float, float, int | None]:
    """(value just before `start`, final value at `end - 1`, samples after `start` until the curve stays within
    `band` of the final value up to `end`); None when no sample in [start, end) is finite."""
    seg = values[start:end]
    finite = np.flatnonzero(np.isfinite(seg))
    before = float(values[start - 1]) if start > 0 and np.isfinite(values[start - 1]) else float("nan")
    if not finite.size:
        return before, float("nan"), None
    final = float(seg[finite[-1]])
    away = [i for i in finite if abs(seg[i] - final) > band]
    # the first sample from which on it stays in the band, counted from the change (0: already there)
    return before, final, (int(away[-1]) + 1 if away else 0)


# ---------------------------------------------------------------------- running
def run_episode(env: TaskEnv, bridge: SAGEGr00TBridge, seed: int, command: str,
                camera_fault: tuple[str, int, int] | None, carry: dict[str, float] | None,
                max_steps: int) -> dict[str, Any]:
    """One episode until SAGE's plan is over (every subtask closed) or `max_steps`; returns the curves."""
    import torch

    from sage_gr00t.evaluation import rollout, seed_policy
    from sage_gr00t.perceive.faults import FaultConfig, FaultyCamera

    torch.manual_seed(seed)
    seed_policy(bridge.policy, seed)
    obs, info = env.reset(seed=seed)
    bridge.reset(obs, meta={"seed": seed})
    if carry is not None:  # module trust carried over episodes (see the module docstring)
        bridge.trust.components.update(carry)
    kind, start, stop = camera_fault or ("none", 0, 0)
    camera = FaultyCamera(bridge.camera, FaultConfig(kind=kind, start_step=start, duration=stop - start,
                                                     reaches_policy=True, seed=seed))
    bridge.pipeline.camera = camera
    bridge.command(command)
    curves: dict[str, list[float]] = {name: [] for name in CURVES}
    holds = []

    def act(o: dict) -> dict:
        action = bridge.step(camera.corrupt_observation(o))
        trust = bridge.trust  # read after the step: what this step's outcomes made of it
        curves[CAMERA].append(trust.trust(CAMERA) if CAMERA in trust.sensors else float("nan"))
        for name in COMPONENTS:
            curves[name].append(float(trust.components[name]))
        holds.append(bool(bridge.camera_hold))
        return action

    success, steps, _, _ = rollout(env, act, obs, info, max_steps, None, False,
                                   finished=lambda: bridge.plan_result is not None and not bridge.active)
    bridge.end_episode(success)
    outcomes = [e for e in bridge.trust.events if e["kind"] == "outcome"]
    return {"seed": seed, "success": success, "steps": steps, "curves": curves, "held_steps": int(sum(holds)),
            "done": len(bridge.completed), "failed": len(bridge.failed), "message": bridge.message,
            "outcomes": {c: [bool(e["success"]) for e in outcomes if e["component"] == c] for c in COMPONENTS}}


def camera_events(episodes: list[dict], cfg: TrustConvergenceConfig) -> list[dict]:
    """Per episode, degrade at --fault-from (phase to --fault-to) and recover (phase to the episode's end)."""
    rows = []
    for ep in episodes:
        cam = np.array(ep["curves"][CAMERA], float)
        n = len(cam)
        for event, start, end in (("camera degrades", cfg.fault_from, cfg.fault_to),
                                  ("camera recovers", cfg.fault_to, n)):
            if start >= n:
                continue
            before, final, steps = settling(cam, start, min(end, n), cfg.band)
            rows.append({"component": CAMERA, "event": event, "seed": ep["seed"], "before": before, "after": final,
                         "settle_steps": steps, "settle_episodes": None, "phase_steps": min(end, n) - start})
    return rows


def subtask_events(episodes: list[dict], cfg: TrustConvergenceConfig) -> list[dict]:
    """Per component: the executor starts failing (episode --fail-from) and is restored (--fail-to); settling
    in control steps over the concatenated run and in episodes on the values at the episodes' ends."""
    offsets = np.cumsum([0] + [ep["steps"] for ep in episodes])
    rows = []
    for name in COMPONENTS:
        steps_curve = np.concatenate([np.array(ep["curves"][name], float) for ep in episodes])
        ends = np.array([ep["curves"][name][-1] for ep in episodes], float)
        for event, e0, e1 in (("executor fails a subtask", cfg.fail_from, cfg.fail_to),
                              ("executor restored", cfg.fail_to, len(episodes))):
            if e0 >= len(episodes):
                continue
            _, final, steps = settling(steps_curve, int(offsets[e0]), int(offsets[e1]), cfg.band)
            # episodes: 1 = settled by the end of the change's first episode
            _, _, eps = settling(ends, e0, e1, cfg.band)
            before = float(ends[e0 - 1]) if e0 > 0 else float(steps_curve[0])
            rows.append({"component": name, "event": event, "seed": None, "before": before, "after": final,
                         "settle_steps": steps, "settle_episodes": None if eps is None else eps + 1,
                         "phase_steps": int(offsets[e1] - offsets[e0]), "phase_episodes": e1 - e0})
    return rows


def _settle(value: int | None, phase: int | None, hold: int) -> str:
    if value is None:
        return "-"
    return str(value) if phase is None or phase - value >= hold else f"{value} (not settled: moving at phase end)"


def _fmt(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}"


def results_table(rows: list[dict], title: str, hold_steps: int = 20) -> Table:
    from sage_gr00t.bench.tables import new_table

    table = new_table(title, ("component", "event", "seed", "trust before", "trust after settling",
                              "settling steps", "settling episodes", "phase length"),
                      left=("component", "event"))
    for r in rows:
        phase = f"{r['phase_steps']} steps" + (f", {r['phase_episodes']} ep" if r.get("phase_episodes") else "")
        table.add_row(r["component"], r["event"], "-" if r["seed"] is None else str(r["seed"]), _fmt(r["before"]),
                      _fmt(r["after"]), _settle(r["settle_steps"], r["phase_steps"], hold_steps),
                      _settle(r["settle_episodes"], r.get("phase_episodes"), 1), phase)
    return table


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(13, 4 * len(results)), squeeze=False)
    for ax, res in zip(axes[:, 0], results.values(), strict=True):
        eps = res["episodes"]
        offsets = np.cumsum([0] + [ep["steps"] for ep in eps])
        for name in CURVES:
            curve = np.concatenate([np.array(ep["curves"][name], float) for ep in eps])
            ax.plot(np.arange(len(curve)), curve, label="camera (sensor)" if name == CAMERA else name,
                    lw=1.6 if name == CAMERA else 1.2)
        for o in offsets[1:-1]:
            ax.axvline(o, color="0.8", lw=0.6, ls=":")
        for step, label in res["marks"]:
            ax.axvline(step, color="red" if "fail" in label or "degrad" in label else "green", lw=0.9, ls="--")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("control step (episodes concatenated; dotted: episode boundaries)")
        ax.set_ylabel("trust")
        ax.set_title(res["title"], fontsize=10)
        ax.legend(loc="lower left", fontsize=8, ncol=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_scenario(scenario: str, cfg: TrustConvergenceConfig, env: TaskEnv, bridge: SAGEGr00TBridge,
                 wrapper: FailingSubtaskPolicy, log: Callable[[str], None]) -> dict[str, Any]:
    max_steps = cfg.max_steps or env.config.max_steps
    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.episodes))
    episodes, carry = [], None
    for i, seed in enumerate(seeds):
        wrapper.failing = scenario == "subtask" and cfg.fail_from <= i < cfg.fail_to
        wrapper.held_steps = 0
        fault = (cfg.camera_fault, cfg.fault_from, cfg.fault_to) if scenario == "camera" else None
        ep = run_episode(env, bridge, seed, cfg.command, fault, carry if scenario == "subtask" else None,
                         max_steps)
        ep["failing_executor"], ep["executor_held_steps"] = wrapper.failing, wrapper.held_steps
        carry = {c: ep["curves"][c][-1] for c in COMPONENTS}
        episodes.append(ep)
        log(f"{scenario} ep {i} seed {seed}: {'success' if ep['success'] else 'FAIL'} in {ep['steps']} steps, "
            f"subtasks done {ep['done']} failed {ep['failed']}, camera held {ep['held_steps']}, executor held "
            f"{wrapper.held_steps}; trust " + ", ".join(f"{c} {ep['curves'][c][-1]:.2f}" for c in COMPONENTS)
            + f"; {ep['message']}")
    wrapper.failing = False
    offsets = np.cumsum([0] + [ep["steps"] for ep in episodes])
    if scenario == "camera":
        rows = camera_events(episodes, cfg)
        marks = [(int(o) + s, lab) for o, ep in zip(offsets, episodes, strict=False)
                 for s, lab in ((cfg.fault_from, "degrade"), (cfg.fault_to, "recover")) if s < ep["steps"]]
        title = (f"camera {cfg.camera_fault} from step {cfg.fault_from} to {cfg.fault_to} of every episode "
                 f"(red: degrades, green: recovers)")
    else:
        rows = subtask_events(episodes, cfg)
        marks = [(int(offsets[cfg.fail_from]), "fail")]
        if cfg.fail_to < len(episodes):
            marks.append((int(offsets[cfg.fail_to]), "restored"))
        title = (f"executor fails plan subtask {cfg.fail_subtask} in episodes {cfg.fail_from}..{cfg.fail_to - 1} "
                 f"(red: starts failing, green: restored); component trust carried across episodes")
    for r in rows:  # the same test the table prints
        r["settled"] = r["settle_steps"] is not None and r["phase_steps"] - r["settle_steps"] >= cfg.hold_steps
    return {"seeds": seeds, "episodes": episodes, "events": rows, "marks": marks, "title": title}


def run(cfg: TrustConvergenceConfig) -> int:
    import torch
    from rich.console import Console

    from sage_gr00t.policy.factory import PolicySpecError, make_policy
    from sage_gr00t.session import SessionConfig, build_env, build_session

    torch.set_num_threads(1)
    console = Console(width=200)
    session_config = SessionConfig(task=cfg.task, policy=cfg.policy, planner=cfg.planner, device="cpu",
                                   controller="sage", task_options={"max_steps": cfg.max_steps} if cfg.max_steps
                                   else {})
    try:
        env = build_env(session_config)
        wrapper = FailingSubtaskPolicy(make_policy(cfg.policy, env, "cpu"), cfg.fail_subtask)
        session = build_session(session_config, env=env, policy=wrapper)
    except (PolicySpecError, FileNotFoundError, ValueError) as exc:
        return error(PROG, str(exc))
    wrapper.bind(session.bridge)
    results: dict[str, dict] = {}
    try:
        for scenario in dict.fromkeys(cfg.scenario):
            results[scenario] = run_scenario(scenario, cfg, env, session.bridge, wrapper,
                                             lambda m: console.print(m, highlight=False, markup=False))
    finally:
        session.close()
        env.close()
    cfg.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()}
    (cfg.out / "trust.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    plot(results, cfg.out / "trust_convergence.png")
    for scenario, res in results.items():
        console.print(results_table(res["events"], f"{cfg.task}, {scenario}: {res['title']}; seeds "
                                    f"{res['seeds'][0]}..{res['seeds'][-1]}, policy {cfg.policy}, band {cfg.band}",
                                    cfg.hold_steps))
    console.print("settling steps: control steps after the change until the trust stays within the band of its "
                  "value at the end of the phase (0: never left it); settling episodes: the same on the values at "
                  "the episodes' ends (1: settled by the end of the first changed episode). 'not settled': it was "
                  f"in the band for fewer than {cfg.hold_steps} steps (one episode) before the phase ended.",
                  highlight=False)
    console.print(f"results: {cfg.out / 'trust.json'}, plot: {cfg.out / 'trust_convergence.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(TrustConvergenceConfig, argv, prog=PROG, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
