"""Differential inverse kinematics for one arm with mink (frame task + posture task + limits)."""

from __future__ import annotations

import mink
import mujoco
import numpy as np

from sage_gr00t.sim.embodiment import EmbodimentSpec, load_robot_spec


def yaw_quat(yaw: float) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, np.array([0.0, 0.0, 1.0]), yaw)
    return quat


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


class ArmIK:
    """Solves joint targets for an end-effector site pose on a robot-only copy of the model.

    The solver is warm-started from its previous solution (not the measured joints), so the
    commanded trajectory is smooth even while contacts push the real arm around.
    """

    def __init__(self, emb: EmbodimentSpec, iterations: int = 4, dt: float = 0.05) -> None:
        self.emb = emb
        self.model = load_robot_spec(emb).compile()
        self.configuration = mink.Configuration(self.model)
        self.iterations = iterations
        self.dt = dt
        self.posture = mink.PostureTask(self.model, cost=1e-2)
        self.frame_tasks = {
            side: mink.FrameTask(emb.arm(side).ee_site, "site", position_cost=1.0, orientation_cost=0.5)
            for side in ("left", "right")
        }
        self.limits = [mink.ConfigurationLimit(self.model)]
        self._qadr = {
            side: np.array([self.model.jnt_qposadr[self.model.joint(j).id] for j in emb.arm(side).arm_joints])
            for side in ("left", "right")
        }
        home = self.model.qpos0.copy()
        for side in ("left", "right"):
            home[self._qadr[side]] = emb.arm(side).arm_home
        self.home_q = home
        self.posture.set_target(home)
        self.reset()

    def reset(self, arm_q: dict[str, np.ndarray] | None = None) -> None:
        q = self.home_q.copy()
        if arm_q:
            for side, values in arm_q.items():
                q[self._qadr[side]] = values
        self.configuration.update(q)

    def arm_q(self, side: str) -> np.ndarray:
        return self.configuration.q[self._qadr[side]].copy()

    def site_pose(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        data = self.configuration.data
        sid = self.model.site(self.emb.arm(side).ee_site).id
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, data.site_xmat[sid])
        return data.site_xpos[sid].copy(), quat

    def solve(self, side: str, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """Move the arm's site toward (pos, quat); returns the arm's joint targets."""
        task = self.frame_tasks[side]
        rotation = mink.SO3(np.asarray(quat, float))
        task.set_target(mink.SE3.from_rotation_and_translation(rotation, np.asarray(pos, float)))
        other = "right" if side == "left" else "left"
        frozen = self.configuration.q[self._qadr[other]].copy()
        for _ in range(self.iterations):
            vel = mink.solve_ik(
                self.configuration, [task, self.posture], self.dt, solver="daqp", damping=1e-3, limits=self.limits
            )
            self.configuration.integrate_inplace(vel, self.dt)
        q = self.configuration.q.copy()
        q[self._qadr[other]] = frozen  # the idle arm keeps its pose
        self.configuration.update(q)
        return self.arm_q(side)
