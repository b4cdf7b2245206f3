"""Embodiments described as data: model source, joint groups, end effectors, hand poses, camera.

Adding a robot means adding an `EmbodimentSpec` to `EMBODIMENTS`; the scene builder, the
environments and the experts read only these fields, never branch on a robot's name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from sage_gr00t.paths import assets_dir

SIDES = ("left", "right")
ROBOT_COLLISION_BIT = 2  # robot geoms: contype 0, conaffinity 2
WORLD_CONTYPE = 3  # world geoms: contype 3 (collides with robot and world), conaffinity 1


@dataclass(frozen=True)
class ArmSpec:
    """One arm + hand: joint names in GR00T's `state.<side>_arm` / `state.<side>_hand` order."""

    arm_joints: tuple[str, ...]
    hand_joints: tuple[str, ...]
    ee_site: str
    hand_open: tuple[float, ...]
    hand_closed: tuple[float, ...]
    arm_home: tuple[float, ...]
    # Control steps over which the expert ramps the hand command between open and closed
    # (0: switch at once). Multi-finger hands release more evenly when ramped: a thumb that is
    # still squeezing while the fingers snap open flicks the object away.
    hand_ramp_steps: int = 0
    # Axis (in the ee-site frame at the grasp) about which the hand tilts to pour; None uses the
    # task's world tilt axis. A side grasp pours by turning the forearm, so the axis is mirrored.
    pour_axis: tuple[float, float, float] | None = None
    # Extra ee offset (yawed world frame of the grasp) over the container while pouring: where the
    # hand holds the vessel decides where its mouth ends up once tilted.
    pour_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class CameraMount:
    """A camera fixed to a robot body, aimed at a point given in that body's frame."""

    body: str
    pos: tuple[float, float, float]
    look_at: tuple[float, float, float]
    fovy: float = 70.0


@dataclass(frozen=True)
class ActuatorGains:
    """Position-servo gains applied to every joint whose name matches `pattern`."""

    pattern: str
    kp: float
    kv: float
    force_limit: float
    # Reflected rotor inertia added to the joint: light finger links under a stiff servo are
    # otherwise unstable at a 2 ms step (the position gain is integrated explicitly).
    armature: float = 0.0


@dataclass(frozen=True)
class SiteMount:
    """A site added to a body of a model that lacks one (e.g. a grasp point on a hand)."""

    name: str
    body: str
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class EmbodimentSpec:
    """Everything the simulator and the experts need to know about a robot."""

    name: str
    # Either a path relative to assets/ ("asset") or a Menagerie robot + variant ("menagerie").
    source: str
    model: str
    variant: str = ""
    left: ArmSpec = field(default=None)  # type: ignore[assignment]
    right: ArmSpec = field(default=None)  # type: ignore[assignment]
    ego_camera: CameraMount = field(default=None)  # type: ignore[assignment]
    # Pose of the robot root in the scene (the table's near edge is at x = 0.22).
    base_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # World orientation (w, x, y, z) of the end-effector site for a top-down grasp whose
    # closing direction is the world y axis; the expert yaws it about world z.
    grasp_quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    # Preparation recipe for third-party models.
    remove_bodies: tuple[str, ...] = ()
    lock_joints: tuple[str, ...] = ()
    remove_free_joint: bool = False
    replace_actuators: tuple[ActuatorGains, ...] = ()
    add_sites: tuple[SiteMount, ...] = ()
    root_body: str = "pelvis"

    def arm(self, side: str) -> ArmSpec:
        if side not in SIDES:
            raise ValueError(f"Unknown arm side {side!r}; use one of {SIDES}.")
        return self.left if side == "left" else self.right

    @property
    def state_groups(self) -> dict[str, tuple[str, ...]]:
        """GR00T modality groups -> joint names (order defines vector layout)."""
        return {
            "left_arm": self.left.arm_joints,
            "right_arm": self.right.arm_joints,
            "left_hand": self.left.hand_joints,
            "right_hand": self.right.hand_joints,
        }


# --------------------------------------------------------------------------------------------
# The project's own robot.
_SAGE_ARM = (
    "shoulder_pitch_joint",
    "shoulder_roll_joint",
    "shoulder_yaw_joint",
    "elbow_joint",
    "wrist_yaw_joint",
    "wrist_pitch_joint",
    "wrist_roll_joint",
)
_SAGE_HOME = (-0.45, 0.0, 0.0, -1.75, 0.0, 2.2, 0.0)


def _sage_arm(side: str) -> ArmSpec:
    roll_sign = 1.0 if side == "left" else -1.0
    home = list(_SAGE_HOME)
    home[1] = 0.05 * roll_sign
    return ArmSpec(
        arm_joints=tuple(f"{side}_{j}" for j in _SAGE_ARM),
        hand_joints=(f"{side}_hand_finger_a_joint", f"{side}_hand_finger_b_joint"),
        ee_site=f"{side}_ee",
        hand_open=(0.052, 0.052),
        hand_closed=(0.0, 0.0),
        arm_home=tuple(home),
    )


SAGE_HUMANOID = EmbodimentSpec(
    name="sage_humanoid",
    source="asset",
    model="sage_humanoid/sage_humanoid.xml",
    left=_sage_arm("left"),
    right=_sage_arm("right"),
    ego_camera=CameraMount(body="head", pos=(0.09, 0.0, 0.10), look_at=(0.62, 0.0, -0.62), fovy=72.0),
    base_pos=(0.0, 0.0, 0.0),
)

# --------------------------------------------------------------------------------------------
# Unitree G1 with Dex3 hands from MuJoCo Menagerie, fixed base, legs removed.
_G1_ARM = (
    "shoulder_pitch_joint",
    "shoulder_roll_joint",
    "shoulder_yaw_joint",
    "elbow_joint",
    "wrist_roll_joint",
    "wrist_pitch_joint",
    "wrist_yaw_joint",
)
_G1_HAND = (
    "hand_thumb_0_joint",
    "hand_thumb_1_joint",
    "hand_thumb_2_joint",
    "hand_middle_0_joint",
    "hand_middle_1_joint",
    "hand_index_0_joint",
    "hand_index_1_joint",
)


# Fixed-base G1 stands 0.14 m behind the table edge, lowered so its shoulders are ~0.2 m above
# the table top: every object position is reachable with the forearm roughly level.
# Dex3 geometry (wrist_yaw_link frame): fingers extend along +x from x = 0.12, the palm's inner
# face is at y = -0.02 (left; +0.02 right) and fingers curl toward it, the thumb sticks out of
# the palm side at x = 0.065 and curls toward +x. The grasp point is in front of the palm,
# between the thumb and the finger roots. Joints about z have mirrored signs on the right hand.
_G1_GRASP_POINT = (0.125, 0.058, 0.0)  # (x, |y|, z) of the grasp point in wrist_yaw_link
# Palm-inward side grasp, rolled so the palm also faces down by this angle: keeps the palm's
# lower edge and the thumb clear of the table while the fingers cup a small object.
_G1_GRASP_ROLL = 0.5
# (thumb_0, thumb_1, thumb_2, middle_0, middle_1, index_0, index_1) for the left hand; the right
# hand uses the same values with the z-axis joints (all but thumb_0) negated.
_G1_HAND_OPEN = (0.0, -0.2, 0.2, 0.0, 0.0, 0.0, 0.0)
_G1_HAND_CLOSED = (0.0, 0.7, 1.2, -1.2, -1.3, -1.2, -1.3)
_G1_MIRROR = (1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0)
# Left arm home: hand above the table's near edge, in front of the shoulder, palm inward.
_G1_HOME = (0.2, 0.2, 0.0, -0.9, 0.0, 0.4, 0.0)


def _g1_arm(side: str) -> ArmSpec:
    sign = 1.0 if side == "left" else -1.0

    def mirror(pose: tuple[float, ...]) -> tuple[float, ...]:
        return pose if side == "left" else tuple(m * v for m, v in zip(_G1_MIRROR, pose, strict=True))

    # Mirror the left arm's home: joints about x or z (shoulder roll/yaw, wrist roll/yaw) flip sign.
    home = [v * (sign if i in (1, 2, 4, 6) else 1.0) for i, v in enumerate(_G1_HOME)]
    return ArmSpec(
        arm_joints=tuple(f"{side}_{j}" for j in _G1_ARM),
        hand_joints=tuple(f"{side}_{j}" for j in _G1_HAND),
        ee_site=f"{side}_grasp",
        hand_open=mirror(_G1_HAND_OPEN),
        hand_closed=mirror(_G1_HAND_CLOSED),
        arm_home=tuple(home),
        hand_ramp_steps=6,
        # The side grasp holds a pitcher by its rim wall, palm outward of it: turning the forearm
        # (about the hand's forward axis) tips the mouth inward, past the palm, so the hand stands
        # 5 cm outward of the container's centre for the stream to land inside it.
        pour_axis=(sign, 0.0, 0.0),
        pour_offset=(0.0, sign * 0.05, 0.0),
    )


def _g1_site(side: str) -> SiteMount:
    """Grasp site whose frame is world-aligned (grasp_quat = identity) in the rolled side grasp.

    The hand's world orientation in the grasp is a roll about x of +roll (left) / -roll (right)
    (mirror images), so the site is mounted with the inverse roll.
    """
    sign = 1.0 if side == "left" else -1.0
    x, y, z = _G1_GRASP_POINT
    half = -sign * _G1_GRASP_ROLL / 2
    return SiteMount(f"{side}_grasp", f"{side}_wrist_yaw_link", (x, -sign * y, z),
                     (float(np.cos(half)), float(np.sin(half)), 0.0, 0.0))


UNITREE_G1 = EmbodimentSpec(
    name="unitree_g1",
    source="menagerie",
    model="unitree_g1",
    variant="g1_with_hands",
    left=_g1_arm("left"),
    right=_g1_arm("right"),
    ego_camera=CameraMount(body="torso_link", pos=(0.08, 0.0, 0.45), look_at=(0.62, 0.0, -0.25), fovy=72.0),
    base_pos=(0.08, 0.0, 0.70),
    grasp_quat=(1.0, 0.0, 0.0, 0.0),
    remove_bodies=(
        "left_hip_pitch_link",
        "right_hip_pitch_link",
    ),
    lock_joints=("waist_yaw_joint", "waist_roll_joint", "waist_pitch_joint"),
    remove_free_joint=True,
    replace_actuators=(
        ActuatorGains(r"_shoulder_", kp=400.0, kv=30.0, force_limit=88.0, armature=0.03),
        ActuatorGains(r"_elbow_", kp=300.0, kv=20.0, force_limit=88.0, armature=0.03),
        ActuatorGains(r"_wrist_", kp=80.0, kv=4.0, force_limit=25.0, armature=0.01),
        ActuatorGains(r"_hand_", kp=5.0, kv=0.1, force_limit=5.0, armature=0.001),
    ),
    add_sites=(_g1_site("left"), _g1_site("right")),
)

EMBODIMENTS: dict[str, EmbodimentSpec] = {e.name: e for e in (SAGE_HUMANOID, UNITREE_G1)}


def get_embodiment(name: str) -> EmbodimentSpec:
    try:
        return EMBODIMENTS[name]
    except KeyError:
        raise ValueError(
            f"Unknown embodiment {name!r}. Available: {sorted(EMBODIMENTS)}."
        ) from None


# --------------------------------------------------------------------------------------------
def _model_path(emb: EmbodimentSpec) -> Path:
    if emb.source == "asset":
        return assets_dir() / emb.model
    if emb.source == "menagerie":
        # Without a local checkout the mujoco-menagerie package downloads from GitHub (seconds of waiting on an
        # offline robot before its error): say what to do at once unless downloads are allowed.
        if not os.environ.get("MENAGERIE_ROOT") and os.environ.get("SAGE_GR00T_ALLOW_DOWNLOAD") != "1":
            raise FileNotFoundError(
                f"Embodiment {emb.name} needs MuJoCo Menagerie's {emb.model}: set MENAGERIE_ROOT to a local "
                "Menagerie checkout (or SAGE_GR00T_ALLOW_DOWNLOAD=1 to let mujoco-menagerie fetch it from GitHub).")
        import mujoco_menagerie

        try:
            return Path(mujoco_menagerie.get(emb.model).xml(emb.variant))
        except Exception as exc:
            raise FileNotFoundError(
                f"Could not resolve Menagerie model {emb.model}/{emb.variant}: {exc}. "
                "Set the MENAGERIE_ROOT environment variable to a local MuJoCo Menagerie checkout."
            ) from exc
    raise ValueError(f"Unknown model source {emb.source!r} for embodiment {emb.name}.")


def _look_at_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion of a MuJoCo camera (looks along -z, y up) at `pos` aimed at `target`."""
    forward = target - pos
    forward /= np.linalg.norm(forward)
    up = np.array([0.0, 0.0, 1.0])
    x_axis = np.cross(forward, up)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(x_axis, forward)
    mat = np.stack([x_axis, y_axis, -forward], axis=1)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.flatten())
    return quat


def load_robot_spec(emb: EmbodimentSpec) -> mujoco.MjSpec:
    """Load and prepare the robot as an MjSpec (fixed base, position servos, ee sites, camera)."""
    path = _model_path(emb)
    spec = mujoco.MjSpec.from_file(str(path))
    spec.meshdir = str((path.parent / (spec.meshdir or "")).resolve())
    spec.texturedir = str((path.parent / (spec.texturedir or "")).resolve())

    # Robot files may ship their own floor and lights (Menagerie scenes do); the scene builder
    # supplies those, so keep only bodies from the robot file.
    for item in [*spec.worldbody.geoms, *spec.worldbody.lights]:
        spec.delete(item)

    for body_name in emb.remove_bodies:
        spec.delete(spec.body(body_name))
    root = spec.body(emb.root_body)
    if emb.remove_free_joint:
        for joint in list(root.joints):
            if joint.type == mujoco.mjtJoint.mjJNT_FREE:
                spec.delete(joint)
    root.pos = list(emb.base_pos)
    for joint_name in emb.lock_joints:
        spec.delete(spec.joint(joint_name))

    if emb.replace_actuators:
        for actuator in list(spec.actuators):
            spec.delete(actuator)
        for joint in spec.joints:
            gains = next((g for g in emb.replace_actuators if re.search(g.pattern, joint.name)), None)
            if gains is None:
                continue
            act = spec.add_actuator(name=joint.name.removesuffix("_joint"), target=joint.name)
            act.trntype = mujoco.mjtTrn.mjTRN_JOINT
            act.set_to_position(kp=gains.kp, kv=gains.kv)
            act.ctrllimited = True
            act.ctrlrange = list(joint.range)
            act.forcelimited = True
            act.forcerange = [-gains.force_limit, gains.force_limit]
            if gains.armature > 0:
                joint.armature = gains.armature

    for site in emb.add_sites:
        spec.body(site.body).add_site(name=site.name, pos=list(site.pos), quat=list(site.quat), size=[0.006, 0, 0])

    # Robot geoms collide with the world but never with each other: link chains with massless
    # intermediate bodies would otherwise jam against themselves. World geoms use contype 3.
    for geom in spec.geoms:
        if geom.contype or geom.conaffinity:
            geom.contype = 0
            geom.conaffinity = ROBOT_COLLISION_BIT

    cam = emb.ego_camera
    quat = _look_at_quat(np.array(cam.pos, float), np.array(cam.look_at, float))
    spec.body(cam.body).add_camera(name="ego_view", pos=list(cam.pos), quat=list(quat), fovy=cam.fovy)
    return spec
