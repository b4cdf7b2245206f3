"""The robot as its MJCF describes it, read for Isaac Lab: servo gains, USD prim paths, hand colliders, kinematics.

The robot USD (`scripts/convert_assets.py`) is converted from the same prepared MJCF (`load_robot_spec`) but
carries no actuators, so the Isaac Lab config takes the position servos' gains from the compiled MJCF here,
and the contact proxy and the end-effector position read its geoms and sites. Needs `mujoco`, not Isaac Lab.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from sage_gr00t.paths import assets_dir
from sage_gr00t.sim.embodiment import SIDES, EmbodimentSpec, get_embodiment, load_robot_spec


@functools.cache
def robot_model(embodiment: str) -> mujoco.MjModel:
    """The embodiment's prepared MJCF, compiled once per process (read-only: callers make their own MjData)."""
    return load_robot_spec(get_embodiment(embodiment)).compile()


def robot_usd_path(embodiment: str) -> Path:
    """`assets/usd/robot/<embodiment>.usdc`; a clear error naming the fix when it was never converted."""
    path = assets_dir() / "usd" / "robot" / f"{embodiment}.usdc"
    if not path.is_file():
        raise FileNotFoundError(
            f"No Isaac Lab robot USD for embodiment {embodiment!r} at {path}. Convert its MJCF with "
            f"`python scripts/convert_assets.py --embodiment {embodiment}` (see that script for the converter venv).")
    return path


# ------------------------------------------------------------------------------------------------ servos
@dataclass(frozen=True)
class ServoGroup:
    """Joints whose MJCF position servos and joint dofs share every parameter (one `ImplicitActuatorCfg`)."""

    name: str
    joints: tuple[str, ...]
    stiffness: float  # kp: actuator gainprm[0]
    damping: float  # kv: -actuator biasprm[2]
    effort_limit: float | None  # actuator forcerange, else the joint's actuatorfrcrange; None: unlimited
    armature: float  # the joint dof's armature
    friction: float  # the joint dof's frictionloss


def _servo_name(joints: Sequence[str], taken: set[str]) -> str:
    """A readable group name: the joints' common stem without side prefix ("shoulder", "hand_finger")."""
    stems = [re.sub(rf"^({'|'.join(SIDES)})_", "", j).removesuffix("_joint") for j in joints]
    common = ""
    for chars in zip(*stems, strict=False):
        if len(set(chars)) > 1:
            break
        common += chars[0]
    common = common.rstrip("_")
    name = common or "servos"
    index = 1
    while name in taken:
        index += 1
        name = f"{common or 'servos'}_{index}"
    return name


def servo_groups(model: mujoco.MjModel) -> list[ServoGroup]:
    """The MJCF's position servos, joints with identical gains / limits / armature / friction grouped, in
    actuator order."""
    params: dict[tuple[float, float, float | None, float, float], list[str]] = {}
    for a in range(model.nu):
        name = model.actuator(a).name
        if int(model.actuator_trntype[a]) != int(mujoco.mjtTrn.mjTRN_JOINT):
            raise ValueError(f"Actuator {name!r} does not drive a joint; Isaac Lab's joint servos cannot express it.")
        kp, kv = float(model.actuator_gainprm[a, 0]), float(-model.actuator_biasprm[a, 2])
        is_position_servo = (int(model.actuator_gaintype[a]) == int(mujoco.mjtGain.mjGAIN_FIXED)
                             and int(model.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_AFFINE)
                             and np.isclose(model.actuator_biasprm[a, 1], -kp))
        if not is_position_servo:
            raise ValueError(f"Actuator {name!r} is not a position servo (kp, kv); only those map onto "
                             "Isaac Lab's implicit PD actuators.")
        joint = int(model.actuator_trnid[a, 0])
        # Isaac Lab's effort limit is symmetric: the larger magnitude of the (usually symmetric) range.
        if model.actuator_forcelimited[a]:
            effort: float | None = float(np.abs(model.actuator_forcerange[a]).max())
        elif model.jnt_actfrclimited[joint]:
            effort = float(np.abs(model.jnt_actfrcrange[joint]).max())
        else:
            effort = None
        dof = model.jnt_dofadr[joint]
        key = (kp, kv, effort, float(model.dof_armature[dof]), float(model.dof_frictionloss[dof]))
        params.setdefault(key, []).append(model.joint(joint).name)
    groups: list[ServoGroup] = []
    for (kp, kv, effort, armature, friction), joints in params.items():
        name = _servo_name(joints, {g.name for g in groups})
        groups.append(ServoGroup(name, tuple(joints), kp, kv, effort, armature, friction))
    return groups


def ctrl_ranges(model: mujoco.MjModel, embodiment: EmbodimentSpec) -> dict[str, np.ndarray]:
    """(d, 2) servo target bounds per joint group, as the embedded env's `action_ranges`."""
    by_joint = {int(model.actuator_trnid[a, 0]): a for a in range(model.nu)}
    return {group: np.array([model.actuator_ctrlrange[by_joint[model.joint(j).id]] for j in joints])
            for group, joints in embodiment.state_groups.items()}


def home_joint_pos(embodiment: EmbodimentSpec) -> dict[str, float]:
    """Arms at home, hands open: the robot's default joint state (every backend's neutral command)."""
    home: dict[str, float] = {}
    for side in SIDES:
        arm = embodiment.arm(side)
        home.update(zip(arm.arm_joints, map(float, arm.arm_home), strict=True))
        home.update(zip(arm.hand_joints, map(float, arm.hand_open), strict=True))
    return home


# ------------------------------------------------------------------------------------------------ USD paths
def body_prim_path(model: mujoco.MjModel, body: str) -> str:
    """Path of an MJCF body inside the robot USD: mujoco-usd-converter nests bodies under `Geometry/` along
    the kinematic tree (`Geometry/pelvis/torso/head`)."""
    chain = []
    bid = model.body(body).id
    while bid != 0:
        chain.append(model.body(bid).name)
        bid = int(model.body_parentid[bid])
    return "/".join(["Geometry", *reversed(chain)])


# ------------------------------------------------------------------------------------------------ hands
@dataclass(frozen=True)
class HandCollider:
    """A box bounding one collision geom of a hand, in its body's frame (exact for box geoms)."""

    body: str
    pos: np.ndarray  # box centre in the body frame
    rot: np.ndarray  # (3, 3) body <- box
    half: np.ndarray  # half extents


def _subtree(model: mujoco.MjModel, root: int) -> set[int]:
    bodies = {root}
    for b in range(root + 1, model.nbody):  # MuJoCo numbers bodies depth-first: children follow parents
        if model.body_parentid[b] in bodies:
            bodies.add(b)
    return bodies


def hand_colliders(model: mujoco.MjModel, embodiment: EmbodimentSpec, side: str) -> list[HandCollider]:
    """The colliding geoms of the body carrying the end-effector site and of its descendants (palm, fingers),
    each as its local bounding box (MuJoCo's `geom_aabb`)."""
    site = model.site(embodiment.arm(side).ee_site).id
    bodies = _subtree(model, int(model.site_bodyid[site]))
    colliders = []
    for g in range(model.ngeom):
        if model.geom_bodyid[g] not in bodies or not (model.geom_contype[g] or model.geom_conaffinity[g]):
            continue
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.geom_quat[g])
        rot = rot.reshape(3, 3)
        centre, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        colliders.append(HandCollider(model.body(int(model.geom_bodyid[g])).name, model.geom_pos[g] + rot @ centre,
                                      rot, half.copy()))
    return colliders


# ------------------------------------------------------------------------------------------------ kinematics
class RobotKinematics:
    """Forward kinematics of the MJCF model from a simulator's joint positions (its own joint order).

    The MJCF root stands at the embodiment's `base_pos`, where the Isaac Lab config places the fixed-base
    robot in each env, so sites come out in the env's frame, like the embedded env's `site_xpos`.
    """

    def __init__(self, model: mujoco.MjModel, joint_names: Sequence[str]) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        columns = {name: i for i, name in enumerate(joint_names)}
        one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        moving = [j for j in range(model.njnt) if int(model.jnt_type[j]) in one_dof]
        missing = [model.joint(j).name for j in moving if model.joint(j).name not in columns]
        if missing:
            raise ValueError(f"The simulated robot lacks the MJCF joints {missing}.")
        self._qpos_adr = np.array([model.jnt_qposadr[j] for j in moving], dtype=int)
        self._columns = np.array([columns[model.joint(j).name] for j in moving], dtype=int)

    def site_pos(self, joint_pos: np.ndarray, site: str) -> np.ndarray:
        self.data.qpos[self._qpos_adr] = joint_pos[self._columns]
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site(site).xpos.copy()
