"""One Isaac Lab 3.0 manager-based config for every declared task (kit-less, Newton physics).

`build_env_cfg(task_name, variant, embodiment, config)` fills a `TabletopEnvCfg` from the task's declaration
and the shared `TaskConfig`: the embodiment's robot USD with the position-servo gains of its MJCF, the
table, the task's objects and particles (their USD files when converted, else Isaac Lab shape spawners
from the declared geoms, see `spawners`), the ego camera as the MJCF mounts it, and the embedded
simulator's physics (step, control rate, MuJoCo options) and episode length. It is also the gym
`env_cfg_entry_point` (through `registration`), so the usual Isaac Lab flow works:

    cfg = parse_env_cfg("SageGr00t-PickApple-v0", device="cuda:0", num_envs=64)
    env = gym.make("SageGr00t-PickApple-v0", cfg=cfg)

Physics: Newton's MuJoCo solver with the embedded simulator's options: C MuJoCo for one environment on the
CPU, mujoco_warp for several environments or on a GPU (`physics.SageMujocoSolverCfg`), chosen at build time.
Actions are absolute joint targets in GR00T's groups; observations are the same groups' joint positions and
the `ego_view` RGB camera (Newton Warp renderer).
"""

from __future__ import annotations

import functools
import re
from dataclasses import MISSING
from pathlib import Path

import isaaclab.envs.mdp as mdp
import isaaclab.sim as sim_utils
import mujoco
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

from sage_gr00t.modality import EGO_CAMERA, JOINT_GROUPS
from sage_gr00t.paths import assets_dir
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.embodiment import EmbodimentSpec, get_embodiment
from sage_gr00t.sim.isaaclab import mdp as sage_mdp
from sage_gr00t.sim.isaaclab.lighting import LIGHTINGS
from sage_gr00t.sim.isaaclab.physics import SageMujocoSolverCfg
from sage_gr00t.sim.isaaclab.robot import (
    body_prim_path,
    home_joint_pos,
    robot_model,
    robot_usd_path,
    servo_groups,
)
from sage_gr00t.sim.isaaclab.spawners import nominal_friction, object_spawner_cfg
from sage_gr00t.sim.randomization import DomainRandomizationConfig
from sage_gr00t.sim.scene import TableConfig, new_scene
from sage_gr00t.tasks.registry import get_task
from sage_gr00t.tasks.spec import Geom, ObjectSpec, ParticleSpec, Task

# mujoco_warp's per-world constraint rows / contacts (allocated and looped over per world, so step time grows
# with them): ~2.5x the most the scripted expert needs. Tasks not listed get `SageMujocoSolverCfg`'s defaults
# (600 / 150, sort_blocks': 214 rows / 56 contacts on mujoco_warp).
WARP_BUFFERS: dict[str, tuple[int, int]] = {
    "pick_apple": (200, 40),  # the expert peaks at 57 rows / 8 contacts (~2x faster on the CPU than 600 / 150)
    "pour_water": (1600, 500),  # the expert's pour peaks at 624 rows / 208 contacts
}
# C MuJoCo (one model): room for pour_water (12 pitcher wall boxes + 14 cup wall boxes on the table and 30
# particles: > 100 contacts, ~400 constraint rows at rest).
CPU_BUFFERS = (6000, 1500)
# The USD camera's horizontal aperture (mm; Isaac Sim's default); the focal length gives the MJCF's fovy.
CAMERA_APERTURE = 20.955
CAMERA_CLIPPING = (0.02, 5.0)
# Where rigid objects wait for the first reset: the floor behind the robot (its base at the origin, facing +x),
# in rows 2 m wide along y.
PARKING_X, PARKING_HALF_WIDTH = -0.35, 1.0


def usd_path(*parts: str) -> Path:
    return assets_dir().joinpath("usd", *parts)


# ------------------------------------------------------------------------------------------------ robot
def robot_cfg(embodiment: EmbodimentSpec) -> ArticulationCfg:
    """The robot USD with explicit PD servos: the USD carries no actuators, so stiffness, damping, effort limit,
    armature and friction loss come from the MJCF's position servos and joint dofs, one `ImplicitActuatorCfg`
    per set of joints sharing them (the joints' passive damping comes with the USD)."""
    usd = robot_usd_path(embodiment.name)  # first: a robot never converted is one clear error
    model = robot_model(embodiment.name)
    actuators = {
        group.name: ImplicitActuatorCfg(
            joint_names_expr=[re.escape(j) for j in group.joints], stiffness=group.stiffness, damping=group.damping,
            joint_effort_limit=group.effort_limit, armature=group.armature, friction=group.friction)
        for group in servo_groups(model)
    }
    return ArticulationCfg(
        prim_path="{ENV_REGEX_NS}/Robot",
        spawn=sim_utils.UsdFileCfg(usd_path=str(usd)),
        init_state=ArticulationCfg.InitialStateCfg(pos=tuple(map(float, embodiment.base_pos)),
                                                   joint_pos=home_joint_pos(embodiment)),
        actuators=actuators,
    )


def ego_supersample(embodiment: EmbodimentSpec) -> int:
    """Rays per pixel side for the scene-lit ego view: MuJoCo's offscreen buffer multisamples
    (`visual.quality.offsamples`, 4: a 2 x 2 supersample here), so its object edges are anti-aliased; Newton
    traces one ray per pixel centre. Unresolved, the edges differed by up to ~100 levels and moved the policy's
    first chunk (tenths of a radian from a 2-level mean image difference)."""
    return _supersample(embodiment.name)


@functools.cache
def _supersample(embodiment: str) -> int:
    samples = int(new_scene(get_embodiment(embodiment), TaskConfig().physics, TableConfig()).visual.quality.offsamples)
    return max(1, round(np.sqrt(samples)))


def ego_camera_cfg(embodiment: EmbodimentSpec, height: int, width: int, lighting: str = "scene") -> CameraCfg:
    """The embedded `ego_view` camera as the MJCF mounts it: same body, offset, orientation and vertical FOV.

    `lighting`: "scene" renders the albedo and normal buffers the `SceneLitEgoView` term lights with the scene's
    lights, at `ego_supersample` x the image size (the term averages it down); "renderer" Newton Warp's own
    shaded RGB (its default light, sRGB output, 93% grey background), one ray per pixel."""
    if lighting not in LIGHTINGS:
        raise ValueError(f"lighting must be one of {LIGHTINGS}, got {lighting!r}.")
    scale = ego_supersample(embodiment) if lighting == "scene" else 1
    height, width = height * scale, width * scale
    model = robot_model(embodiment.name)
    cam = model.camera(EGO_CAMERA).id
    w, x, y, z = map(float, model.cam_quat[cam])
    body = model.body(int(model.cam_bodyid[cam])).name
    focal = (CAMERA_APERTURE / 2) / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2) * (width / height)
    return CameraCfg(
        prim_path="{ENV_REGEX_NS}/Robot/" + body_prim_path(model, body) + "/" + EGO_CAMERA,
        offset=CameraCfg.OffsetCfg(pos=tuple(map(float, model.cam_pos[cam])), rot=(x, y, z, w), convention="opengl"),
        # Planar depth too: SAGE's camera perception back-projects it (`IsaacLabTaskEnv.render_depth`).
        data_types=(["albedo", "normals"] if lighting == "scene" else ["rgb"]) + ["distance_to_image_plane"],
        spawn=sim_utils.PinholeCameraCfg(focal_length=float(focal), horizontal_aperture=CAMERA_APERTURE,
                                         clipping_range=CAMERA_CLIPPING),
        width=width,
        height=height,
        renderer_cfg=NewtonWarpRendererCfg(),
    )


# ------------------------------------------------------------------------------------------------ objects
def _declared_usd(task: Task, item: ObjectSpec | ParticleSpec) -> Path | None:
    """The object's USD file, if one was converted from this declaration.

    `scripts/convert_assets.py` writes `objects/<task>/<name>.usdc` from the default ("train") variant: another
    variant uses it where it declares the object identically (sort_blocks' bins), else its own
    `objects/<task>/<variant>/<name>.usdc`."""
    candidates = []
    if task.variant == "train" or ("train" in task.variants and _declaration(type(task)("train"), item.name) == item):
        candidates.append(usd_path("objects", task.name, f"{item.name}.usdc"))
    candidates.append(usd_path("objects", task.name, task.variant, f"{item.name}.usdc"))
    return next((p for p in candidates if p.is_file()), None)


def _declaration(task: Task, name: str) -> ObjectSpec | ParticleSpec | None:
    return next((i for i in (*task.objects(), *task.particles()) if i.name == name), None)


def _spawner(task: Task, item: ObjectSpec | ParticleSpec) -> sim_utils.SpawnerCfg:
    usd = _declared_usd(task, item)
    if usd is not None:
        return sim_utils.UsdFileCfg(usd_path=str(usd))
    target = usd_path("objects", task.name, *(() if task.variant == "train" else (task.variant,)), f"{item.name}.usdc")
    return object_spawner_cfg(item, f"Convert it to {target} with `python scripts/convert_assets.py --task "
                                    f"{task.name}` (variant {task.variant!r}).")


def _bounding_radius(geoms: tuple[Geom, ...]) -> float:
    """A radius about the object origin that holds all its geoms."""
    radii = []
    for g in geoms:
        size = np.asarray(g.size, float)
        if g.shape in ("box", "sphere", "ellipsoid"):  # half extents / radius / semi-axes
            extent = np.linalg.norm(size) if g.shape == "box" else size.max()
        else:  # cylinder, capsule: radius, half length
            extent = np.hypot(size[0], size[1]) if g.shape == "cylinder" else size[0] + size[1]
        radii.append(np.linalg.norm(g.pos) + extent)
    return float(max(radii))


def _parking_spots(radii: list[float]) -> list[tuple[float, float, float]]:
    """Distinct spots on the floor behind the robot: every rigid object is built at its initial pose and waits
    there until the first reset's `Task.place` (the embedded simulator stacks them at one point, which no
    physics step sees; here none may overlap another)."""
    spots, x, y, depth = [], PARKING_X, -PARKING_HALF_WIDTH, 0.0
    for r in radii:
        d = 2 * r + 0.02
        if y + d > PARKING_HALF_WIDTH:
            x, y, depth = x - depth, -PARKING_HALF_WIDTH, 0.0
        spots.append((x - d / 2, y + d / 2, r + 0.005))
        y, depth = y + d, max(depth, d)
    return spots


def object_cfgs(task: Task) -> dict[str, RigidObjectCfg]:
    """One rigid object per declared object (movable ones and settings) and per particle, named as declared.

    Settings (plate, bins, cup) are static bodies in the embedded simulator. As Newton kinematic bodies (free
    joints with a locking armature in C MuJoCo) they throw objects dropped into them out of the scene, so they
    are dynamic bodies resting on the table here; the task moves them only at reset."""
    entities: list[tuple[str, sim_utils.SpawnerCfg, float]] = [
        (obj.name, _spawner(task, obj), _bounding_radius(obj.geoms)) for obj in task.objects()]
    for particles in task.particles():  # one rigid object per particle, all from the same spawner (or USD)
        spawn = _spawner(task, particles)
        entities += [(f"{particles.name}{i}", spawn, particles.radius) for i in range(particles.count)]
    spots = _parking_spots([r for *_, r in entities])
    return {name: RigidObjectCfg(prim_path="{ENV_REGEX_NS}/" + name, spawn=spawn,
                                 init_state=RigidObjectCfg.InitialStateCfg(pos=spot))
            for (name, spawn, _), spot in zip(entities, spots, strict=True)}


# ------------------------------------------------------------------------------------------------ physics
def _option_name(value: int, enum: type, prefix: str) -> str:
    return enum(value).name.removeprefix(prefix).lower()  # mjINT_IMPLICITFAST -> "implicitfast"


def solver_cfg(task_name: str, embodiment: EmbodimentSpec, config: TaskConfig) -> SageMujocoSolverCfg:
    """Newton's MuJoCo solver with the options of the scene the embedded simulator compiles (integrator, cone,
    impratio, solver and its iterations, multi-point convex contacts); buffers per backend (`WARP_BUFFERS`,
    `CPU_BUFFERS`)."""
    opt = new_scene(embodiment, config.physics, config.table).compile().opt
    solver = SageMujocoSolverCfg(
        use_mujoco_cpu=None,  # C MuJoCo for 1 env on the CPU, else mujoco_warp (see physics.py)
        integrator=_option_name(opt.integrator, mujoco.mjtIntegrator, "mjINT_"),
        cone=_option_name(opt.cone, mujoco.mjtCone, "mjCONE_"),
        impratio=float(opt.impratio),
        solver=_option_name(opt.solver, mujoco.mjtSolver, "mjSOL_"),
        iterations=int(opt.iterations),
        ls_iterations=int(opt.ls_iterations),
        # Newton disables MuJoCo's multi-point convex contacts by default; the embedded scene keeps them. With
        # one contact point a flat cylinder (the plate) on a box (the table) found no support: it sank into
        # the table top (out of the ego view) or fell through it.
        enable_multiccd=not opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_MULTICCD),
        cpu_njmax=CPU_BUFFERS[0],
        cpu_nconmax=CPU_BUFFERS[1],
    )
    if task_name in WARP_BUFFERS:
        solver.warp_njmax, solver.warp_nconmax = WARP_BUFFERS[task_name]
    return solver


# ------------------------------------------------------------------------------------------------ managers
def _joint_obs(joints: tuple[str, ...]) -> ObsTerm:
    return ObsTerm(func=mdp.joint_pos, params={"asset_cfg": SceneEntityCfg("robot", joint_names=list(joints),
                                                                          preserve_order=True)})


def _joint_action(joints: tuple[str, ...]) -> mdp.JointPositionActionCfg:
    return mdp.JointPositionActionCfg(asset_name="robot", joint_names=list(joints), scale=1.0,
                                      use_default_offset=False, preserve_order=True)


@configclass
class TabletopSceneCfg(InteractiveSceneCfg):
    """Robot + table + ego camera; `build_env_cfg` adds the task's objects and particles as attributes named
    like the declaration's (`apple`, `water0`, ...)."""

    robot: ArticulationCfg = MISSING
    table: AssetBaseCfg = AssetBaseCfg(prim_path="{ENV_REGEX_NS}/Table",
                                       spawn=sim_utils.UsdFileCfg(usd_path=str(usd_path("table", "table.usdc"))))
    ego_view: CameraCfg | None = None  # `modality.EGO_CAMERA`, the camera GR00T sees


@configclass
class ActionsCfg:
    """Absolute joint targets, one term per GR00T action group (`action.<group>`, `JOINT_GROUPS` order),
    added by `build_env_cfg`."""


@configclass
class ObservationsCfg:
    @configclass
    class Gr00tCfg(ObsGroup):
        """GR00T's `state.<group>` (joint positions, terms added by `build_env_cfg`) and `video.ego_view`
        (uint8 H x W x 3; `TabletopEnvCfg.set_lighting` picks its term)."""

        ego_view = ObsTerm(func=sage_mdp.SceneLitEgoView, params={"sensor_cfg": SceneEntityCfg(EGO_CAMERA)})

        def __post_init__(self):
            self.enable_corruption = False
            self.concatenate_terms = False

    policy: Gr00tCfg = Gr00tCfg()


@configclass
class EventCfg:
    # Newton Warp draws what MuJoCo draws: colliders shown (Isaac Lab's importer hides those of bodies with a
    # visual-only shape: table top, apple, torso, ...), the camera's mount hidden (see `ego_view_shapes`).
    ego_view_shapes = EventTerm(func=sage_mdp.ego_view_shapes, mode="startup")
    # Every shape in the colour MuJoCo draws its geom in (the USD files' material and displayColor colours
    # decode differently in Newton).
    shape_colors = EventTerm(func=sage_mdp.declared_shape_colors, mode="startup")
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
    """A declared task on the tabletop scene; `task` / `variant` name the task whose layout, objects and success
    predicate apply (`build_env_cfg` fills the rest)."""

    task: str = MISSING
    variant: str = "train"
    embodiment: str = TaskConfig.embodiment
    lighting: str = TaskConfig.lighting  # "scene" | "renderer" (see `ego_camera_cfg`)
    scene: TabletopSceneCfg = TabletopSceneCfg(num_envs=1, env_spacing=3.0)
    observations: ObservationsCfg = ObservationsCfg()
    actions: ActionsCfg = ActionsCfg()
    events: EventCfg = EventCfg()
    rewards: RewardsCfg = RewardsCfg()
    terminations: TerminationsCfg = TerminationsCfg()

    def image_size(self) -> tuple[int, int]:
        """The ego view's (height, width) as observed (the camera renders `ego_supersample` x that when lit by the
        scene's lights)."""
        camera = self.scene.ego_view
        scale = ego_supersample(get_embodiment(self.embodiment)) if self.lighting == "scene" else 1
        return camera.height // scale, camera.width // scale

    def set_camera_size(self, height: int, width: int) -> None:
        self.scene.ego_view = ego_camera_cfg(get_embodiment(self.embodiment), height, width, self.lighting)

    def set_lighting(self, lighting: str) -> None:
        """The ego view lit by the scene's lights ("scene") or by the renderer's own default ("renderer")."""
        height, width = self.image_size()
        self.lighting = lighting
        self.scene.ego_view = ego_camera_cfg(get_embodiment(self.embodiment), height, width, lighting)
        params = {"sensor_cfg": SceneEntityCfg(EGO_CAMERA)}
        self.observations.policy.ego_view = (
            ObsTerm(func=sage_mdp.SceneLitEgoView,
                    params={**params, "supersample": ego_supersample(get_embodiment(self.embodiment))})
            if lighting == "scene" else
            ObsTerm(func=mdp.image_rgb, params={**params, "data_type": "rgb", "normalize": False}))

    def apply_randomization(self, config: DomainRandomizationConfig) -> None:
        """Apply a `config/domain_randomization.yaml` profile through the EventManager's terms."""
        task = get_task(self.task)(self.variant)
        frictions = {}
        for obj in task.objects():
            frictions[obj.name] = nominal_friction(obj)
        for particles in task.particles():
            frictions.update(dict.fromkeys((f"{particles.name}{i}" for i in range(particles.count)),
                                           nominal_friction(particles)))
        sage_mdp.apply_randomization_profile(self, config, frictions)


def _draws_objects_per_episode(task: Task) -> bool:
    """Whether two episodes of `task`'s variant can declare different objects (probed on fresh copies)."""
    first, second = type(task)(task.variant), type(task)(task.variant)
    first.new_episode(np.random.default_rng(1))
    second.new_episode(np.random.default_rng(2))
    return first.objects() != second.objects()


def build_env_cfg(task_name: str, variant: str = "train", embodiment: str = TaskConfig.embodiment,
                  config: TaskConfig | None = None) -> TabletopEnvCfg:
    """The Isaac Lab config of a registered task: its declaration on the tabletop scene, with `config`'s
    physics step, control rate, episode length, camera size and randomization profile (default `TaskConfig()`;
    its own `variant` / `embodiment` are not read: the arguments choose them)."""
    config = config or TaskConfig()
    if config.table != TableConfig():
        raise ValueError(f"The Isaac Lab table is assets/usd/table/table.usdc, converted from {TableConfig()}; "
                         f"got {config.table}. Re-convert it (scripts/convert_assets.py) and build with its values.")
    task = get_task(task_name)(variant)
    if _draws_objects_per_episode(task):
        raise ValueError(f"Variant {variant!r} of {task.name} draws new objects every episode; the Isaac Lab scene "
                         "is built once. Run it on the embedded simulator (backend='mujoco').")
    emb = get_embodiment(embodiment)
    cfg = TabletopEnvCfg()
    cfg.task, cfg.variant, cfg.embodiment = task.name, task.variant, emb.name

    scene = cfg.scene
    scene.robot = robot_cfg(emb)
    cfg.lighting = config.lighting
    scene.ego_view = ego_camera_cfg(emb, config.image_height, config.image_width, config.lighting)
    cfg.set_lighting(config.lighting)
    for name, entity in object_cfgs(task).items():
        if hasattr(scene, name):
            raise ValueError(f"Task {task.name}: object name {name!r} is taken by the Isaac Lab scene config.")
        setattr(scene, name, entity)
    groups = emb.state_groups
    for group in JOINT_GROUPS:
        setattr(cfg.actions, group, _joint_action(groups[group]))
        setattr(cfg.observations.policy, group, _joint_obs(groups[group]))

    cfg.decimation = config.physics_steps_per_control_step
    cfg.episode_length_s = config.max_steps / config.control_hz
    cfg.sim.dt = config.physics.timestep
    cfg.sim.render_interval = cfg.decimation
    cfg.sim.device = "cpu"  # cfg.sim.device = "cuda:0" for a GPU (mujoco_warp, CUDA graphs)
    cfg.sim.physics = NewtonCfg(solver_cfg=solver_cfg(task.name, emb, config),
                                use_cuda_graph=True)  # CUDA devices only (ignored on the CPU)
    cfg.apply_randomization(config.randomization)
    return cfg
