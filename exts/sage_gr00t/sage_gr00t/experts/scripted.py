"""Scripted experts: IK to end-effector waypoints plus hand open/close, for any embodiment.

The expert reads privileged simulator state (object poses) -- it generates demonstrations and
is never a sensor. Each `Subtask` becomes a list of timed waypoint segments; segments are
built lazily when they start, so they use where objects actually are at that moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from sage_gr00t.experts.ik import ArmIK, quat_mul, yaw_quat
from sage_gr00t.modality import action_key, state_key
from sage_gr00t.skills import Subtask
from sage_gr00t.tasks.protocols import TaskEnv


@dataclass
class Segment:
    """Move the end effector from its current target to `pos`/`quat` over `steps` control steps."""

    pos: np.ndarray
    quat: np.ndarray
    steps: int
    hand_closed: bool


PLAN_ORDERS = ("task", "shuffled", "instruction")


@dataclass(frozen=True)
class ExpertConfig:
    speed: float = 0.45  # m/s of end-effector travel in free space
    approach_height: float = 0.10  # above the grasp pose
    min_steps: int = 6
    push_speed: float = 0.15  # m/s while pushing (slow: the object must not topple or slip away)
    push_standoff: float = 0.03  # m between the object's edge and the hand's start behind it
    push_overshoot: float = 0.0  # m the hand goes past the point where the object's centre is on target
    # "task": the task's own subtask order. "shuffled": follow the order the instruction names the
    # objects in, else a seeded random order -- so a policy trained on per-subtask language sees
    # every subtask from every starting scene, whatever order a planner later asks for. "instruction": the
    # instruction's order, else the task's -- so that what comes next is always decided by the words and the
    # scene; under "shuffled" a policy shown "sort the blocks" sees a coin flip for the first block.
    plan_order: str = "task"

    def __post_init__(self) -> None:
        if self.plan_order not in PLAN_ORDERS:
            raise ValueError(f"plan_order must be one of {PLAN_ORDERS}, got {self.plan_order!r}.")


def _smoothstep(s: float) -> float:
    return s * s * (3 - 2 * s)


def _rotate(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, vec, quat)
    return out


def _slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)


class ScriptedExpert:
    """Closed-loop scripted expert; call `act(env)` once per control step."""

    def __init__(self, env: TaskEnv, config: ExpertConfig | None = None) -> None:
        self.env = env
        self.config = config or ExpertConfig()
        self.ik = ArmIK(env.embodiment)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        env = self.env
        self.ik.reset({side: env.state()[state_key(f"{side}_arm")] for side in ("left", "right")})
        self.plan: list[Subtask] = self._ordered(list(env.expert_plan()), seed)
        self.current: Subtask | None = None  # the subtask being executed (per-frame language annotation)
        self._builders: list[Callable[[], Segment]] = []
        self._segment: Segment | None = None
        self._segment_step = 0
        self._start_pos = np.zeros(3)
        self._start_quat = np.array([1.0, 0, 0, 0])
        self.side = ""  # no arm chosen yet; the first subtask picks one
        self._hand_closure = {side: 0.0 for side in ("left", "right")}  # 0 open .. 1 closed
        self.action = env.home_action()
        self.done = False

    def _ordered(self, plan: list[Subtask], seed: int | None) -> list[Subtask]:
        if self.config.plan_order == "task" or len(plan) < 2:
            return plan
        text = getattr(self.env, "instruction", "").lower()
        # The object's first word ("red" of red_block) as the instruction names it.
        mentions = [text.find(" " + s.object_name.split("_")[0] + " ") for s in plan]
        if all(m >= 0 for m in mentions) and len(set(mentions)) == len(mentions):
            return [s for _, s in sorted(zip(mentions, plan, strict=True), key=lambda x: x[0])]
        if self.config.plan_order == "instruction":
            return plan
        rng = np.random.default_rng(seed)
        return [plan[i] for i in rng.permutation(len(plan))]

    # ------------------------------------------------------------------ plan -> segments
    def _choose_side(self, obj: np.ndarray, target: np.ndarray) -> str:
        return "left" if (obj[1] + target[1]) / 2 >= 0 else "right"

    def _steps_for(self, a: np.ndarray, b: np.ndarray) -> int:
        dt = 1.0 / self.env.config.control_hz
        return max(self.config.min_steps, int(np.ceil(np.linalg.norm(b - a) / (self.config.speed * dt))))

    def _queue_subtask(self, subtask: Subtask) -> None:
        env, cfg = self.env, self.config
        obj_name, target_name = subtask.object_name, subtask.target_name
        grasp = env.task.grasp(env.scene, obj_name)
        side = self._choose_side(env.body_pos(obj_name), env.body_pos(target_name))
        if side != self.side:
            self.side = side
            self._start_pos, self._start_quat = self.ik.site_pose(side)
        arm = env.embodiment.arm(side)
        yaw = yaw_quat(grasp.yaw)
        grasp_quat = quat_mul(yaw, np.array(env.embodiment.grasp_quat))

        def grasp_pos() -> np.ndarray:
            return env.body_pos(obj_name) + np.array([0, 0, grasp.height])

        def seg(pos_fn: Callable[[], np.ndarray], closed: bool, steps: int | None = None,
                quat: np.ndarray = grasp_quat) -> Callable[[], Segment]:
            def build() -> Segment:
                pos = pos_fn()
                n = steps if steps is not None else self._steps_for(self._start_pos, pos)
                return Segment(pos, quat, n, closed)
            return build

        above = np.array([0, 0, cfg.approach_height])
        lift = np.array([0, 0, grasp.lift])
        if subtask.skill == "push":
            self._queue_push(obj_name, target_name, grasp.height, grasp_quat, seg, above)
            return
        self._builders += [
            seg(lambda: grasp_pos() + above, closed=False),
            seg(grasp_pos, closed=False, steps=12),
            seg(lambda: self._start_pos, closed=True, steps=8),
            seg(lambda: self._start_pos + lift, closed=True, steps=12),
        ]
        if subtask.skill == "pick_place":
            place_h = env.task.place_height(obj_name, target_name)

            def over_target() -> np.ndarray:
                # Keep the object's offset from the hand: aim the object, not the hand, at the target.
                offset = self._start_pos - env.body_pos(obj_name)
                goal = env.body_pos(target_name) + offset
                goal[2] = env.table_height + place_h + offset[2] + 0.06
                return goal

            self._builders += [
                seg(over_target, closed=True),
                seg(lambda: self._start_pos - np.array([0, 0, 0.06]), closed=True, steps=10),
                seg(lambda: self._start_pos, closed=False, steps=8),
                seg(lambda: self._start_pos + np.array([0, 0, 0.10]), closed=False, steps=10),
            ]
        elif subtask.skill == "pour":
            pour = env.task.pour()

            def over_cup() -> np.ndarray:
                offset = self._start_pos - env.body_pos(obj_name)
                goal = env.body_pos(target_name) + offset + np.asarray(pour.container_offset)
                goal += _rotate(yaw, np.asarray(arm.pour_offset, float))
                goal[2] = env.table_height + pour.pour_height + offset[2]
                return goal

            tilt = np.zeros(4)
            if arm.pour_axis is None:  # the task's world axis
                mujoco.mju_axisAngle2Quat(tilt, np.asarray(pour.tilt_axis, float), pour.tilt_angle)
                tilted = quat_mul(tilt, grasp_quat)
            else:  # the hand's own axis (ee-site frame at the grasp)
                mujoco.mju_axisAngle2Quat(tilt, np.asarray(arm.pour_axis, float), pour.tilt_angle)
                tilted = quat_mul(grasp_quat, tilt)
            self._builders += [
                seg(over_cup, closed=True),
                seg(lambda: self._start_pos + np.asarray(pour.tilt_shift), closed=True, steps=pour.tilt_steps,
                    quat=tilted),
                seg(lambda: self._start_pos, closed=True, steps=pour.hold_steps, quat=tilted),
                seg(lambda: self._start_pos - np.asarray(pour.tilt_shift), closed=True, steps=pour.tilt_steps),
            ]

    def _queue_push(self, obj_name: str, target_name: str, height: float, quat: np.ndarray,
                    seg: Callable[..., Callable[[], Segment]], above: np.ndarray) -> None:
        """Push along the table: the closed hand comes down behind the object (seen from the target) and
        slides it until its centre reaches the target, then lifts away and opens."""
        env = self.env
        radius = env.task.object(obj_name).radius
        standoff = radius + self.config.push_standoff

        def line() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            obj, target = env.body_pos(obj_name), env.body_pos(target_name)
            direction = target[:2] - obj[:2]
            direction /= max(float(np.linalg.norm(direction)), 1e-6)
            return obj, target, np.array([*direction, 0.0])

        def behind() -> np.ndarray:
            obj, _, d = line()
            return np.array([*(obj[:2] - d[:2] * standoff), obj[2] + height])

        def through() -> np.ndarray:
            obj, target, d = line()
            return np.array([*(target[:2] - d[:2] * (standoff - self.config.push_overshoot)), obj[2] + height])

        dt = 1.0 / env.config.control_hz
        push_steps = max(self.config.min_steps,
                         int(np.ceil(np.linalg.norm(through() - behind()) / (self.config.push_speed * dt))))
        self._builders += [
            seg(lambda: behind() + above, closed=True),
            seg(behind, closed=True, steps=12),
            seg(through, closed=True, steps=push_steps),
            # Lift away closed, open only clear above: fingers opening against the object would fling it.
            seg(lambda: self._start_pos + above, closed=True, steps=10),
            seg(lambda: self._start_pos, closed=False, steps=6),
        ]

    # ------------------------------------------------------------------ control
    def act(self, _obs: dict | None = None) -> dict[str, np.ndarray]:
        """Next action (joint targets) for the environment's current state."""
        if self._segment is None or self._segment_step >= self._segment.steps:
            if self._segment is not None:
                self._start_pos, self._start_quat = self._segment.pos, self._segment.quat
            self._segment = None
            while not self._builders and self.plan:
                self.current = self.plan.pop(0)
                self._queue_subtask(self.current)
            if self._builders:
                self._segment = self._builders.pop(0)()
                self._segment_step = 0
            else:
                self.done = True
                return {k: v.copy() for k, v in self.action.items()}
        seg = self._segment
        self._segment_step += 1
        s = _smoothstep(self._segment_step / seg.steps)
        pos = self._start_pos + s * (seg.pos - self._start_pos)
        quat = _slerp(self._start_quat, seg.quat, s)
        arm_q = self.ik.solve(self.side, pos, quat)
        arm = self.env.embodiment.arm(self.side)
        ranges = self.env.action_ranges()
        arm_key = action_key(f"{self.side}_arm")
        self.action[arm_key] = np.clip(arm_q, *ranges[arm_key].T).astype(np.float32)
        # Move the hand's closure toward the segment's goal, at once or ramped (ArmSpec).
        goal = 1.0 if seg.hand_closed else 0.0
        rate = 1.0 / arm.hand_ramp_steps if arm.hand_ramp_steps > 0 else 1.0
        c = self._hand_closure[self.side]
        c = float(np.clip(goal, c - rate, c + rate))
        self._hand_closure[self.side] = c
        if c in (0.0, 1.0):  # exact end poses (unramped hands never interpolate)
            hand = np.asarray(arm.hand_closed if c == 1.0 else arm.hand_open, float)
        else:
            hand = np.asarray(arm.hand_open) + c * (np.asarray(arm.hand_closed) - np.asarray(arm.hand_open))
        self.action[action_key(f"{self.side}_hand")] = hand.astype(np.float32)
        return {k: v.copy() for k, v in self.action.items()}
