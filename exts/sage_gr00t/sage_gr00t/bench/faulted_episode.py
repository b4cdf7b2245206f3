"""One episode through the SAGE bridge with a camera fault switched on mid-way, scored for the fault benchmark.

The fused object positions are scored against the simulator's ground truth (scoring only: nothing the
controller sees). `run_faulted_episode` returns one JSON-ready row per episode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sage_gr00t.bench.faults import TRUST_LOW, FaultSchedule

if TYPE_CHECKING:
    from sage_gr00t.bridge import SAGEGr00TBridge
    from sage_gr00t.perceive.faults import FaultyCamera
    from sage_gr00t.tasks import TaskEnv

STOPS = ("oracle", "sage")  # end an episode at the simulator's success, or when SAGE judges its plan over


class FaultedSteps:
    """The controller of one faulted episode: `act(obs)` switches the fault on at `fault_step`, hands the
    bridge the observation as the (possibly faulty) camera delivers it, and measures the step."""

    def __init__(self, env: TaskEnv, bridge: SAGEGr00TBridge, camera: FaultyCamera, fault: str,
                 fault_step: int) -> None:
        self.env, self.bridge, self.camera = env, bridge, camera
        self.fault, self.fault_step = fault, fault_step
        self.names = env.object_names()
        self.step = 0
        self.errors: list[float] = []
        self.held_steps = 0
        self.blind_travel = 0.0  # how far the hands moved while the fault was on (moving on bad data)
        self._hands: np.ndarray | None = None

    def act(self, obs: dict) -> dict:
        bridge = self.bridge
        if self.step == self.fault_step and self.fault != "none":
            self.camera.set_fault(self.fault)
        faulty = self.camera.active
        action = bridge.step(self.camera.corrupt_observation(obs))  # unchanged unless it reaches the policy
        self.held_steps += bridge.camera_hold
        hands = np.concatenate(list(bridge.pipeline.proprio.last.ee.values()))
        if faulty and self._hands is not None:
            self.blind_travel += float(np.linalg.norm((hands - self._hands).reshape(-1, 3), axis=1).sum())
        self._hands = hands
        if self.step >= self.fault_step:
            fused = bridge.pipeline.fused  # scored against ground truth (scoring only)
            err = [float(np.linalg.norm(fused[o].position - self.env.body_pos(o))) for o in self.names if o in fused]
            self.errors.append(float(np.mean(err)) if err else float("nan"))
        self.step += 1
        return action


def run_faulted_episode(env: TaskEnv, bridge: SAGEGr00TBridge, seed: int, command: str, fault: str,
                        fault_step: int, schedule: FaultSchedule, stop: str = "oracle") -> dict[str, Any]:
    """One episode from `command` with `fault` switched on at `fault_step` (lasting `schedule.duration`)."""
    import torch

    from sage_gr00t.evaluation import rollout
    from sage_gr00t.perceive.faults import FaultyCamera

    if stop not in STOPS:
        raise ValueError(f"stop must be one of {STOPS}, got {stop!r}.")
    torch.manual_seed(seed)
    bridge.policy.seed(seed)  # the policy's flow-matching noise: the same in both modes (paired comparison)
    obs, info = env.reset(seed=seed)
    bridge.reset(obs, meta={"seed": seed, "fault": fault})
    camera = FaultyCamera(bridge.camera, schedule.fault_config(seed))
    bridge.pipeline.camera = camera
    bridge.command(command)
    run = FaultedSteps(env, bridge, camera, fault, fault_step)
    success, steps, _, _ = rollout(env, run.act, obs, info, env.config.max_steps, None, stop == "oracle",
                                   finished=lambda: stop == "sage" and bridge.plan_result is not None
                                   and not bridge.active)  # SAGE judged its plan over and holds still
    bridge.end_episode(success)
    trust = bridge.trust.series("camera")[fault_step:]
    below = np.flatnonzero(trust < TRUST_LOW)
    names = run.names
    return {
        "seed": seed, "fault": fault, "fault_step": fault_step, "success": success, "steps": steps,
        "trust_low_after": int(below[0]) + 1 if fault != "none" and below.size else None,
        "fused_error": float(np.nanmean(run.errors)) if run.errors else float("nan"),
        "done": len(bridge.completed), "failed": len(bridge.failed),
        "held_steps": run.held_steps, "blind_travel": run.blind_travel,
        "off_table": int(sum(env.body_pos(o)[2] < env.table_height - 0.05 for o in names)),
        # SAGE judged every subtask finished (or failed) from perceived state and holds still
        "ended_early": not success and bridge.plan_result is not None and not bridge.active,
        "message": bridge.message,
        "reported_done": bridge.message == "done",
    }
