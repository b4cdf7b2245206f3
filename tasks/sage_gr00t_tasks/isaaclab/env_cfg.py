"""Isaac Lab 3.0 manager-based configs for the SAGE-GR00T tabletop tasks (kit-less, Newton physics).

The scene mirrors the embedded MuJoCo one: the `sage_humanoid` robot, a table and the task's objects,
all from the USD files in `assets/usd/` (made by `scripts/convert_assets.py` from the same MJCF).
Physics: Newton's MuJoCo solver with the embedded simulator's contact settings (implicitfast, elliptic cone,
impratio 10, 2 ms step): C MuJoCo for one environment on the CPU (the default), mujoco_warp for several
environments or on a GPU (`physics.SageMujocoSolverCfg`), chosen at build time from the usual overrides:

    cfg = parse_env_cfg("SageGr00t-PickApple-v0", device="cuda:0", num_envs=64)  # or set cfg.scene.num_envs,
    env = gym.make("SageGr00t-PickApple-v0", cfg=cfg)                            # cfg.sim.device yourself

Actions are absolute joint targets in GR00T's groups (left_arm, right_arm, left_hand, right_hand);
observations are the same groups' joint positions and the `ego_view` RGB camera (Newton Warp renderer).
"""

from __future__ import annotations

from dataclasses import MISSING

import isaaclab.envs.mdp as mdp
import isaaclab.sim as sim_utils
import numpy as np
from isaaclab.actuators import ImplicitActuatorCfg
from isaaclab.assets import ArticulationCfg, AssetBaseCfg, RigidObjectCfg
from isaaclab.envs import ManagerBasedRLEnvCfg
from isaaclab.managers import EventTermCfg as EventTerm
from isaaclab.managers import ObservationGroupCfg as ObsGroup
from isaaclab.managers import ObservationTermCfg as ObsTerm
from isaaclab.managers import RewardTermCfg as RewTerm
from isaaclab.managers import SceneEntityCfg
from isaaclab.managers import TerminationTermCfg as DoneTerm
from isaaclab.scene import InteractiveSceneCfg
from isaaclab.sensors import CameraCfg
from isaaclab.utils import configclass
from isaaclab_newton.physics import NewtonCfg
from isaaclab_newton.renderers import NewtonWarpRendererCfg

from sage_gr00t.paths import assets_dir
from sage_gr00t.sim.embodiment import SAGE_HUMANOID, _look_at_quat
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t_tasks.isaaclab import mdp as sage_mdp
from sage_gr00t_tasks.isaaclab.physics import SageMujocoSolverCfg

EMB = SAGE_HUMANOID
GROUPS = ("left_arm", "right_arm", "left_hand", "right_hand")
JOINTS: dict[str, list[str]] = {g: list(j) for g, j in EMB.state_groups.items()}
CONTROL_HZ = 20.0
PHYSICS_DT = 0.002  # the embedded simulator's step
DECIMATION = round(1.0 / (CONTROL_HZ * PHYSICS_DT))  # 25 physics steps per control step


def usd_path(*parts: str) -> str:
    return str(assets_dir().joinpath("usd", *parts))


def _home_joint_pos() -> dict[str, float]:
    home: dict[str, float] = {}
    for side in ("left", "right"):
        arm = EMB.arm(side)
        home.update(dict(zip(arm.arm_joints, arm.arm_home, strict=True)))
        home.update(dict(zip(arm.hand_joints, arm.hand_open, strict=True)))
    return home


# Explicit PD gains: the USD carries no actuators. Values are the MJCF position servos'
# (assets/sage_humanoid/sage_humanoid.xml): stiffness = kp, damping = kv, effort limit = forcerange,
# armature and friction loss as in the MJCF (the joints' passive damping comes with the USD).
ACTUATOR_GAINS = {
    # name: (joint regex, kp, kv, force limit, armature, friction loss)
    "shoulder": (r".*_shoulder_(pitch|roll|yaw)_joint", 600.0, 40.0, 150.0, 0.05, 0.05),
    "elbow": (r".*_elbow_joint", 450.0, 30.0, 120.0, 0.04, 0.05),
    "wrist": (r".*_wrist_(yaw|pitch|roll)_joint", 150.0, 8.0, 40.0, 0.02, 0.05),
    "finger": (r".*_hand_finger_[ab]_joint", 600.0, 20.0, 40.0, 0.01, 0.0),
}

ROBOT_CFG = ArticulationCfg(
    prim_path="{ENV_REGEX_NS}/Robot",
    spawn=sim_utils.UsdFileCfg(usd_path=usd_path("robot", "sage_humanoid.usdc")),
    init_state=ArticulationCfg.InitialStateCfg(pos=EMB.base_pos, joint_pos=_home_joint_pos()),
    actuators={
        name: ImplicitActuatorCfg(
            joint_names_expr=[regex], stiffness=kp, damping=kd, joint_effort_limit=force, armature=armature,
            friction=friction,
        )
        for name, (regex, kp, kd, force, armature, friction) in ACTUATOR_GAINS.items()
    },
)


def _ego_camera(height: int, width: int) -> CameraCfg:
    """The embedded `ego_view` camera: on the head, aimed like `CameraMount`, same vertical FOV."""
    mount = EMB.ego_camera
    w, x, y, z = _look_at_quat(np.array(mount.pos, float), np.array(mount.look_at, float))
    aperture = 20.955
    focal = (aperture / 2) / np.tan(np.deg2rad(mount.fovy) / 2) * (width / height)
    return CameraCfg(
        prim_path="{ENV_REGEX_NS}/Robot/Geometry/pelvis/torso/head/ego_view",
        offset=CameraCfg.OffsetCfg(pos=mount.pos, rot=(float(x), float(y), float(z), float(w)), convention="opengl"),
        data_types=["rgb"],
        spawn=sim_utils.PinholeCameraCfg(focal_length=float(focal), horizontal_aperture=aperture,
                                         clipping_range=(0.02, 5.0)),
        width=width,
        height=height,
        renderer_cfg=NewtonWarpRendererCfg(),
    )


# Fixtures (plate, bins, cup) are static bodies in the embedded simulator. As Newton kinematic bodies
# (free joints with a locking armature in C MuJoCo) they throw objects dropped into them out of the
# scene, so they are dynamic bodies resting on the table here; the task moves them only at reset.
KINEMATIC_FIXTURES = False


def object_cfg(task: str, name: str, pos: tuple[float, float, float], kinematic: bool = False) -> RigidObjectCfg:
    kinematic = kinematic and KINEMATIC_FIXTURES
    rigid_props = sim_utils.UsdPhysicsRigidBodyCfg(kinematic_enabled=True) if kinematic else None
    return RigidObjectCfg(
        prim_path="{ENV_REGEX_NS}/" + name,
        spawn=sim_utils.UsdFileCfg(usd_path=usd_path("objects", task, f"{name}.usdc"), rigid_props=rigid_props),
        init_state=RigidObjectCfg.InitialStateCfg(pos=pos),
    )


@configclass
class TabletopSceneCfg(InteractiveSceneCfg):
    """Robot + table + ego camera; task configs add their objects as attributes named like the MJCF bodies."""

    robot: ArticulationCfg = ROBOT_CFG
    table = AssetBaseCfg(prim_path="{ENV_REGEX_NS}/Table",
                         spawn=sim_utils.UsdFileCfg(usd_path=usd_path("table", "table.usdc")))
    ego_view: CameraCfg = _ego_camera(224, 224)


def _joint_obs(group: str) -> ObsTerm:
    return ObsTerm(func=mdp.joint_pos, params={"asset_cfg": SceneEntityCfg("robot", joint_names=JOINTS[group],
                                                                          preserve_order=True)})


def _joint_action(group: str) -> mdp.JointPositionActionCfg:
    return mdp.JointPositionActionCfg(asset_name="robot", joint_names=JOINTS[group], scale=1.0,
                                      use_default_offset=False, preserve_order=True)


@configclass
class ActionsCfg:
    """Absolute joint targets, one term per GR00T action group (`action.<group>`)."""

    left_arm = _joint_action("left_arm")
    right_arm = _joint_action("right_arm")
    left_hand = _joint_action("left_hand")
    right_hand = _joint_action("right_hand")


@configclass
class ObservationsCfg:
    @configclass
    class Gr00tCfg(ObsGroup):
        """GR00T's `state.<group>` (joint positions) and `video.ego_view` (uint8 H x W x 3)."""

        left_arm = _joint_obs("left_arm")
        right_arm = _joint_obs("right_arm")
        left_hand = _joint_obs("left_hand")
        right_hand = _joint_obs("right_hand")
        ego_view = ObsTerm(func=mdp.image_rgb, params={"sensor_cfg": SceneEntityCfg("ego_view"), "data_type": "rgb",
                                                       "normalize": False})

        def __post_init__(self):
            self.enable_corruption = False
            self.concatenate_terms = False

    policy: Gr00tCfg = Gr00tCfg()


@configclass
class EventCfg:
    # Newton Warp draws what MuJoCo draws: colliders shown (Isaac Lab's importer hides those of bodies with a
    # visual-only shape: table top, apple, torso, ...), the camera's mount hidden (see `ego_view_shapes`).
    ego_view_shapes = EventTerm(func=sage_mdp.ego_view_shapes, mode="startup")
    reset_scene = EventTerm(func=mdp.reset_scene_to_default, mode="reset")
    # The task's own seeded layout sampler, scaled by `object_pose_scale` (config/domain_randomization.yaml).
    place_objects = EventTerm(func=sage_mdp.PlaceTaskObjects, mode="reset", params={"object_pose_scale": 1.0})


@configclass
class RewardsCfg:
    success = RewTerm(func=sage_mdp.task_success, weight=1.0)


@configclass
class TerminationsCfg:
    time_out = DoneTerm(func=mdp.time_out, time_out=True)


@configclass
class TabletopEnvCfg(ManagerBasedRLEnvCfg):
    """Shared settings; `task` names the embedded task whose layout, instructions and success predicate apply."""

    task: str = MISSING
    variant: str = "train"
    scene: TabletopSceneCfg = TabletopSceneCfg(num_envs=1, env_spacing=3.0)
    observations: ObservationsCfg = ObservationsCfg()
    actions: ActionsCfg = ActionsCfg()
    events: EventCfg = EventCfg()
    rewards: RewardsCfg = RewardsCfg()
    terminations: TerminationsCfg = TerminationsCfg()

    def __post_init__(self):
        self.decimation = DECIMATION
        self.episode_length_s = 400 / CONTROL_HZ  # the embedded tasks' max_steps
        self.sim.dt = PHYSICS_DT
        self.sim.render_interval = self.decimation
        self.sim.device = "cpu"  # cfg.sim.device = "cuda:0" for a GPU (mujoco_warp, CUDA graphs)
        self.sim.physics = NewtonCfg(
            solver_cfg=SageMujocoSolverCfg(
                use_mujoco_cpu=None,  # C MuJoCo for 1 env on the CPU, else mujoco_warp (see physics.py)
                integrator="implicitfast",
                cone="elliptic",
                impratio=10.0,
                solver="newton",
                iterations=100,
                ls_iterations=50,
                # C MuJoCo (one model): room for pour_water (12 pitcher wall boxes + 14 cup wall boxes on the
                # table and 30 particles: > 100 contacts, ~400 constraint rows at rest).
                cpu_njmax=6000,
                cpu_nconmax=1500,
                # mujoco_warp, per world: ~2.5x the most the scripted expert needs (sort_blocks: 214 rows / 56
                # contacts on mujoco_warp; pick_apple and pour_water override). Step time grows with these.
                warp_njmax=600,
                warp_nconmax=150,
            ),
            use_cuda_graph=True,  # CUDA devices only (ignored on the CPU)
        )

    def set_camera_size(self, height: int, width: int) -> None:
        self.scene.ego_view = _ego_camera(height, width)

    def apply_randomization(self, config: DomainRandomizationConfig) -> None:
        """Apply a `config/domain_randomization.yaml` profile through the EventManager's terms."""
        sage_mdp.apply_randomization_profile(self, config)


# ------------------------------------------------------------------------------------------------ tasks
TABLE_Z = 0.78


@configclass
class PickAppleSceneCfg(TabletopSceneCfg):
    apple = object_cfg("pick_apple", "apple", (0.4, 0.0, TABLE_Z + 0.035))
    plate = object_cfg("pick_apple", "plate", (0.4, 0.2, TABLE_Z), kinematic=True)


@configclass
class PickAppleEnvCfg(TabletopEnvCfg):
    task: str = "pick_apple"
    scene: PickAppleSceneCfg = PickAppleSceneCfg(num_envs=1, env_spacing=3.0)

    def __post_init__(self):
        super().__post_init__()
        # mujoco_warp per world: the expert peaks at 57 rows / 8 contacts (~2x faster on the CPU than 600 / 150).
        self.sim.physics.solver_cfg.warp_njmax = 200
        self.sim.physics.solver_cfg.warp_nconmax = 40


@configclass
class SortBlocksSceneCfg(TabletopSceneCfg):
    red_block = object_cfg("sort_blocks", "red_block", (0.35, -0.05, TABLE_Z + 0.023))
    blue_block = object_cfg("sort_blocks", "blue_block", (0.40, 0.0, TABLE_Z + 0.023))
    green_block = object_cfg("sort_blocks", "green_block", (0.45, 0.05, TABLE_Z + 0.023))
    red_bin = object_cfg("sort_blocks", "red_bin", (0.40, 0.23, TABLE_Z), kinematic=True)
    blue_bin = object_cfg("sort_blocks", "blue_bin", (0.40, -0.23, TABLE_Z), kinematic=True)


@configclass
class SortBlocksEnvCfg(TabletopEnvCfg):
    task: str = "sort_blocks"
    scene: SortBlocksSceneCfg = SortBlocksSceneCfg(num_envs=1, env_spacing=3.0)


@configclass
class PourWaterSceneCfg(TabletopSceneCfg):
    pitcher = object_cfg("pour_water", "pitcher", (0.47, 0.0, TABLE_Z + 0.001))
    cup = object_cfg("pour_water", "cup", (0.37, 0.1, TABLE_Z), kinematic=True)

    def __post_init__(self):
        super().__post_init__()
        # The "water": N frictionless spheres, one rigid object each (one USD, referenced N times).
        from sage_gr00t_tasks.pour_water import PourWaterEnv

        for i in range(PourWaterEnv.N_PARTICLES):
            water = object_cfg("pour_water", "water", (-0.5, -0.3 + 0.03 * i, 0.05))
            water.prim_path = "{ENV_REGEX_NS}/" + f"water{i}"
            setattr(self, f"water{i}", water)


@configclass
class PourWaterEnvCfg(TabletopEnvCfg):
    task: str = "pour_water"
    scene: PourWaterSceneCfg = PourWaterSceneCfg(num_envs=1, env_spacing=3.0)

    def __post_init__(self):
        super().__post_init__()
        # mujoco_warp per world: the expert's pour peaks at 624 rows / 208 contacts.
        self.sim.physics.solver_cfg.warp_njmax = 1600
        self.sim.physics.solver_cfg.warp_nconmax = 500
