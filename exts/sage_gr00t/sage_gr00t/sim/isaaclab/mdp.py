"""MDP terms of the Isaac Lab tabletop env: the task's placement and success, and the randomization profile.

The task's own code runs in these terms through the env's `IsaacLabScene`, which the `place_objects` reset
term owns (one per env, with the env's lifetime): `task_scene(env)` returns it. The placement event calls
`task.place(scene, rng, pose_scale)` per environment; the success reward `task.is_success(scene)` per
environment on one host snapshot of the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import warp as wp
from isaaclab.assets import RigidObjectCfg
from isaaclab.managers import EventTermCfg, ManagerTermBase, SceneEntityCfg

from sage_gr00t.modality import EGO_CAMERA, JOINT_GROUPS
from sage_gr00t.sim.isaaclab.lighting import (
    SceneLighting,
    camera_rays,
    declared_colors,
    decode_albedo,
    linear_to_srgb,
    quat_apply_xyzw,
    shade,
    srgb_to_linear,
    to_uint8,
)
from sage_gr00t.sim.isaaclab.scene import IsaacLabScene
from sage_gr00t.sim.randomization import DomainRandomizationConfig

if TYPE_CHECKING:
    from isaaclab.envs import ManagerBasedRLEnv

PLACE_TERM = "place_objects"  # the reset event that places the task's objects and owns the env's scene


class PlaceTaskObjects(ManagerTermBase):
    """Reset event: the task's own seeded layout sampler (`Task.place`), per environment.

    Draws come from the scene's `episode_rng` when set (`IsaacLabTaskEnv.reset` seeds it with the episode
    seed, so a seed gives the embedded simulator's layout), otherwise from a generator seeded by torch's
    RNG (so `env.seed(...)` / `env.reset(seed=...)` make the layouts reproducible).
    """

    def __init__(self, cfg: EventTermCfg, env: ManagerBasedRLEnv):
        super().__init__(cfg, env)
        # Made on first use (the robot's bodies and joints exist once physics runs, after the event manager)
        # unless `bind_task_scene` gave one.
        self.scene: IsaacLabScene | None = None

    def __call__(self, env: ManagerBasedRLEnv, env_ids: torch.Tensor | slice | None, object_pose_scale: float = 1.0):
        scene = task_scene(env)
        ids = range(env.num_envs) if env_ids is None or isinstance(env_ids, slice) else env_ids.tolist()
        try:
            for index in ids:
                scene.env_index = int(index)
                rng = scene.episode_rng
                if rng is None:
                    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
                scene.task.place(scene, rng, object_pose_scale)
        finally:
            scene.env_index = 0


def _place_term(env: ManagerBasedRLEnv) -> PlaceTaskObjects:
    term = env.event_manager.get_term_cfg(PLACE_TERM).func
    if not isinstance(term, PlaceTaskObjects):
        raise TypeError(f"The env's {PLACE_TERM!r} event is not `PlaceTaskObjects` (not built by `build_env_cfg`).")
    return term


def task_scene(env: ManagerBasedRLEnv) -> IsaacLabScene:
    """The env's `IsaacLabScene` (made from the env cfg's task on first use)."""
    term = _place_term(env)
    if term.scene is None:
        term.scene = IsaacLabScene.for_env(env)
    return term.scene


def bind_task_scene(env: ManagerBasedRLEnv, scene: IsaacLabScene) -> None:
    """Make `scene` (e.g. `IsaacLabTaskEnv`'s, with its task and config) the one the env's terms use."""
    if scene.env is not env:
        raise ValueError("The scene belongs to another env.")
    _place_term(env).scene = scene


def _draw(low: float, high: float, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Uniform draws from torch's RNG, which `env.reset(seed=...)` seeds (like Isaac Lab's own events)."""
    return (low + (high - low) * torch.rand(shape, dtype=torch.float64)).numpy()


class RandomizeEgoCamera(ManagerTermBase):
    """Reset event: the embedded simulator's camera jitter (`camera_position_jitter`, `camera_fovy_jitter`).

    Position: +- jitter per axis added to the camera's nominal offset in its parent body (the head) frame,
    like MuJoCo's `cam_pos`, per environment; written into the Newton site frame view's body-local offset,
    so the camera stays attached to the head. Field of view: +- jitter degrees on the nominal vertical FOV,
    written as new intrinsics (`Camera.set_intrinsic_matrices`; Newton's renderer rebuilds its ray field);
    one draw for all environments, as Newton Warp shares the ray field between worlds.
    The orientation is not jittered (the YAML has no orientation range; MuJoCo keeps `cam_quat`).
    A camera jittered into its mount (the head) does not see its inside: the startup event
    `ego_view_shapes` hid the mount from the renderer.
    """

    def __init__(self, cfg: EventTermCfg, env: ManagerBasedRLEnv):
        super().__init__(cfg, env)
        self._nominal: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __call__(self, env: ManagerBasedRLEnv, env_ids: torch.Tensor | slice | None, position_jitter: float = 0.0,
                 fovy_jitter: float = 0.0, sensor_name: str = EGO_CAMERA):
        camera = env.scene[sensor_name]
        view = camera._view
        if self._nominal is None:
            pos, quat = view.get_local_poses()
            self._nominal = (pos.torch.clone().cpu().numpy(), quat.torch.clone().cpu().numpy(),
                             camera.data.intrinsic_matrices.torch.clone().cpu().numpy()
                             if hasattr(camera.data.intrinsic_matrices, "torch")
                             else torch.as_tensor(camera.data.intrinsic_matrices).clone().cpu().numpy())
        pos0, quat0, k0 = self._nominal
        ids = np.arange(env.num_envs) if env_ids is None or isinstance(env_ids, slice) else np.asarray(
            torch.as_tensor(env_ids).cpu())
        pos = pos0[ids] + _draw(-position_jitter, position_jitter, (len(ids), 3))
        idx = wp.array(ids.astype(np.int32), dtype=wp.int32, device=view.device)
        with view.xform_local_space_writer() as writer:
            writer.set_poses(wp.array(pos.astype(np.float32), dtype=wp.vec3f, device=view.device),
                             wp.array(quat0[ids].astype(np.float32), dtype=wp.vec4f, device=view.device), idx)
        camera._update_poses(env_ids=idx)
        if fovy_jitter > 0:
            # Newton Warp traces one ray field for all worlds ("requires identical camera intrinsics across
            # environments"), so one FOV draw applies to every environment (like the light direction).
            height = camera.cfg.height
            k = k0.copy()
            fovy = 2 * np.arctan(height / 2 / k[:, 1, 1]) + np.deg2rad(_draw(-fovy_jitter, fovy_jitter))
            focal = height / 2 / np.tan(fovy / 2)
            k[:, 0, 0] = k[:, 1, 1] = focal
            camera.set_intrinsic_matrices(torch.as_tensor(k, dtype=torch.float32, device=env.device))


def ego_view_shapes(env: ManagerBasedRLEnv, env_ids: torch.Tensor | slice | None, sensor_name: str = EGO_CAMERA):
    """Startup event: the Newton Warp renderer draws the shapes MuJoCo's ego view draws, in every world.

    * Colliders are drawn. Isaac Lab's Newton cloner imports the USD with `hide_collision_shapes=True`,
      which hides every collider of a body that also has a visual-only shape: the table top and floor
      (the table's legs are visual-only), the apple (its stem), the plate's rim, the torso (its badge) and
      skull (its visor). The ego view showed the arms over an empty background. These are MJCF group-0
      geoms, which MuJoCo draws, and default-purpose prims in the USD, so they get `VISIBLE` back.
    * The camera's mount (head) is hidden: the nominal position lies on the visor's front face and
      Newton's tracer has no near plane, so rays started inside it (float32 rounding of the env offset)
      hit it at ~1e-7 m -- a blank frame in env_1, env_2, ..., and a visor blob in env_0's. Camera
      jitter moves it further inside the visor or skull box, whose back faces MuJoCo culls but Newton's
      tracer hits (its culling is for meshes only). The camera looks forward and down, so it never sees
      its mount from outside; collisions are unaffected.
    """
    import newton

    camera = env.scene[sensor_name]
    renderer = camera._renderer
    model = renderer.backend.model
    flags = model.shape_flags.numpy()
    visible = np.int32(int(newton.ShapeFlags.VISIBLE))
    collider = (flags & int(newton.ShapeFlags.COLLIDE_SHAPES) != 0) & (flags & int(newton.ShapeFlags.SITE) == 0)
    flags[collider] |= visible
    flags[_mount_shapes(camera)] &= ~visible
    model.shape_flags.assign(wp.array(flags, dtype=model.shape_flags.dtype, device=model.shape_flags.device))
    _rebuild_shape_bvh(camera)


def declared_shape_colors(env: ManagerBasedRLEnv, env_ids: torch.Tensor | slice | None,
                          sensor_name: str = EGO_CAMERA) -> None:
    """Startup event: every shape the renderer draws gets the colour MuJoCo draws its geom in (`declared_colors`),
    sRGB-encoded as Newton stores colours, so all shapes decode to the MJCF `rgba` (see `lighting`: the USD
    files' two colour paths disagree). Shapes are matched by their prim path: the entity under the env root
    and the geom's name (its last component; for primitives spawned by `spawners`, the body or `visual_<i>`
    shape). A drawn shape without a declaration is an error."""
    from sage_gr00t.tasks.registry import get_task

    model = env.scene[sensor_name]._renderer.backend.model
    declared = declared_colors(get_task(env.cfg.task)(env.cfg.variant), env.cfg.embodiment)
    roots = set(env.scene.env_prim_paths)
    flags = model.shape_flags.numpy()
    drawn = (flags & int(newton_shape_flag("VISIBLE")) != 0) | (flags & int(newton_shape_flag("COLLIDE_SHAPES")) != 0)
    drawn &= flags & int(newton_shape_flag("SITE")) == 0
    colors = model.shape_color.numpy()
    missing = []
    for i, label in enumerate(model.shape_label):
        parts = label.split("/")
        entity = next((parts[k] for k in range(1, len(parts) - 1) if "/".join(parts[:k]) in roots), None)
        geoms = declared.get(entity, {}) if entity is not None else {}
        key = parts[-1]  # converted USD: the geom's prim; spawned primitives: <shape>/geometry/mesh
        if parts[-2:] == ["geometry", "mesh"]:
            key = "<body>" if parts[-3] == entity else parts[-3]
        rgb = geoms.get(key)
        if rgb is None:
            if drawn[i]:
                missing.append(label)
            continue
        colors[i] = linear_to_srgb(rgb)
    if missing:
        raise ValueError(f"Drawn shapes without an MJCF declaration to take their colour from: {missing[:5]}")
    model.shape_color.assign(wp.array(colors, dtype=wp.vec3f, device=model.shape_color.device))


def newton_shape_flag(name: str) -> int:
    import newton

    return int(getattr(newton.ShapeFlags, name))


def _rebuild_shape_bvh(camera) -> None:
    """Rebuild the renderer's shape BVH after a visibility change.

    On CUDA the renderer replays graphs captured against the old BVH (the camera's render query, the
    backend's BVH refit) and re-captures only when the state's pointers change, so both are dropped.
    """
    renderer = camera._renderer
    renderer.backend.model.bvh_build_shapes(renderer.backend.state_0)
    renderer.backend.bvh_refit.data = None
    renderer.backend.bvh_refit.timestamp = -1.0
    if getattr(camera, "_render_data", None) is not None:
        camera._render_data.graph = None


def _mount_shapes(camera) -> np.ndarray:
    """Mask of the Newton shapes on the bodies the camera is mounted on (the head, one per world)."""
    model = camera._renderer.backend.model
    bodies = camera._view._site_body.numpy()
    return np.isin(model.shape_body.numpy(), bodies[bodies >= 0])


def _newton_render_model(env: ManagerBasedRLEnv, sensor_name: str = EGO_CAMERA):
    """The Newton model and sensor the camera's Newton Warp renderer draws (its `shape_color` is read per frame)."""
    renderer = env.scene[sensor_name]._renderer
    return renderer.backend.model, renderer


class RandomizeObjectColors(ManagerTermBase):
    """Reset event: the embedded simulator's `color_jitter` (+- per RGB channel of the task objects' shapes).

    Newton Warp's renderer reads `Model.shape_color` (RenderContext.shape_colors is that array) every
    frame, so the event writes jittered copies of the nominal colours of every shape of the named
    objects' bodies. Newton stores those colours sRGB-encoded (the USD's diffuse colour is the MJCF `rgba`),
    so the jitter is applied to the decoded values, the `rgba` MuJoCo jitters, clipped to [0, 1].
    """

    def __init__(self, cfg: EventTermCfg, env: ManagerBasedRLEnv):
        super().__init__(cfg, env)
        self._shapes: dict[int, np.ndarray] | None = None  # env index -> shape indices
        self._nominal: np.ndarray | None = None

    def _index(self, env: ManagerBasedRLEnv, names: list[str]) -> None:
        model, _ = _newton_render_model(env)
        roots = {root: index for index, root in enumerate(env.scene.env_prim_paths)}
        wanted: dict[int, list[int]] = {index: [] for index in range(env.num_envs)}
        for body, label in enumerate(model.body_label):  # "<env root>/<object>[/...]": one pass over all worlds
            parts = label.split("/")
            for k in range(1, len(parts)):
                if parts[k] in names and "/".join(parts[:k]) in roots:
                    wanted[roots["/".join(parts[:k])]].append(body)
                    break
        shape_body = model.shape_body.numpy()
        self._shapes = {index: np.flatnonzero(np.isin(shape_body, bodies)) for index, bodies in wanted.items()}
        self._nominal = model.shape_color.numpy().copy()

    def __call__(self, env: ManagerBasedRLEnv, env_ids: torch.Tensor | slice | None, color_jitter: float = 0.0,
                 object_names: list[str] | None = None):
        if self._shapes is None:
            # Default: the task's declared objects (movable ones and settings, not particles), as the embedded
            # simulator's `color_jitter` does.
            self._index(env, object_names if object_names is not None else task_scene(env).task.object_names())
        model, _ = _newton_render_model(env)
        colors = model.shape_color.numpy()
        ids = range(env.num_envs) if env_ids is None or isinstance(env_ids, slice) else env_ids.tolist()
        for index in ids:
            shapes = self._shapes[int(index)]
            jitter = _draw(-color_jitter, color_jitter, (len(shapes), 3))
            rgba = np.clip(srgb_to_linear(self._nominal[shapes]) + jitter, 0.0, 1.0)
            colors[shapes] = linear_to_srgb(rgba)
        model.shape_color.assign(wp.array(colors, dtype=wp.vec3f, device=model.shape_color.device))


class SceneLitEgoView(ManagerTermBase):
    """Observation term: the ego view lit by the scene's own lights (`lighting.shade` on Newton's albedo and
    normal buffers), uint8 (num_envs, H, W, 3); see `sim.isaaclab.lighting` for why. The camera renders
    `supersample` x H by `supersample` x W (`env_cfg.ego_supersample`); the term averages each pixel's samples.

    It also owns the per-environment lights and their randomization, the embedded simulator's
    `light_direction_jitter` (+- per direction component of each light) and `light_intensity` (one scale of
    every light's diffuse per episode), drawn at each env reset from torch's RNG (which `env.reset(seed=...)`
    seeds) and applied in `reset`, which the ObservationManager calls for the environments it resets.
    """

    def __init__(self, cfg, env: ManagerBasedRLEnv):
        super().__init__(cfg, env)
        self.lighting = SceneLighting.of_scene(env.cfg.embodiment)
        nominal = torch.as_tensor(self.lighting.directions, dtype=torch.float32, device=env.device)
        self._nominal_directions = nominal
        self._nominal_diffuse = torch.as_tensor(self.lighting.diffuse, dtype=torch.float32, device=env.device)
        self.directions = nominal.repeat(env.num_envs, 1, 1)
        self.diffuse = self._nominal_diffuse.repeat(env.num_envs, 1, 1)
        self._rays: tuple[torch.Tensor, torch.Tensor] | None = None  # (intrinsics, camera-frame rays)

    def reset(self, env_ids: torch.Tensor | slice | None = None) -> None:
        params = self.cfg.params
        jitter = float(params.get("light_direction_jitter", 0.0))
        low, high = params.get("light_intensity", (1.0, 1.0))
        if jitter == 0 and low == high == 1.0:
            return
        ids = (torch.arange(self.num_envs, device=self.device) if env_ids is None or isinstance(env_ids, slice)
               else torch.as_tensor(env_ids, device=self.device).long())
        n = len(ids)
        lights = self._nominal_directions.shape[0]
        offset = torch.as_tensor(_draw(-jitter, jitter, (n, lights, 3)), dtype=torch.float32, device=self.device)
        self.directions[ids] = self._nominal_directions + offset
        scale = torch.as_tensor(_draw(low, high, (n, 1, 1)), dtype=torch.float32, device=self.device)
        self.diffuse[ids] = self._nominal_diffuse * scale

    def _camera_rays(self, camera) -> torch.Tensor:
        intrinsics = torch.as_tensor(camera_tensor(camera.data.intrinsic_matrices), device=self.device)
        if self._rays is None or not torch.equal(self._rays[0], intrinsics):  # the FOV jitter writes new ones
            self._rays = (intrinsics.clone(), camera_rays(intrinsics, camera.cfg.height, camera.cfg.width))
        return self._rays[1]

    def __call__(self, env: ManagerBasedRLEnv, sensor_cfg: SceneEntityCfg | None = None, supersample: int = 1,
                 light_direction_jitter: float = 0.0,
                 light_intensity: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
        camera = env.scene.sensors[sensor_cfg.name if sensor_cfg is not None else EGO_CAMERA]
        output = camera.data.output
        albedo = decode_albedo(camera_tensor(output["albedo"]))
        normals = camera_tensor(output["normals"]).to(torch.float32)
        quat = camera_tensor(camera.data.quat_w_opengl).to(torch.float32)  # (x, y, z, w); OpenGL: -z forward
        rays = quat_apply_xyzw(quat, self._camera_rays(camera))
        forward = quat_apply_xyzw(quat, torch.tensor([[0.0, 0.0, -1.0]], device=quat.device).expand(len(quat), 3))
        colour = shade(albedo, normals, rays, forward, self.lighting, self.directions, self.diffuse)
        if supersample > 1:  # resolve like a multisampled buffer: the mean of each pixel's samples
            n, h, w, c = colour.shape
            colour = colour.reshape(n, h // supersample, supersample, w // supersample, supersample, c).mean((2, 4))
        return to_uint8(colour)


def camera_tensor(value) -> torch.Tensor:
    """A camera buffer as a torch tensor (Isaac Lab 3 hands out ProxyArrays)."""
    return value.torch if hasattr(value, "torch") else torch.as_tensor(value)


def scene_lit_ego_view(env: ManagerBasedRLEnv) -> SceneLitEgoView | None:
    """The env's `SceneLitEgoView` term (None when the ego view is the renderer's own lighting)."""
    for term in env.observation_manager._group_obs_class_term_cfgs.get("policy", []):
        if isinstance(term.func, SceneLitEgoView):
            return term.func
    return None


NEWTON_DEFAULT_LIGHT_DIRECTION = np.array([-1.0, 1.0, -1.0]) / np.sqrt(3.0)  # SensorTiledCamera.create_default_light


def randomize_light_direction(env: ManagerBasedRLEnv, env_ids: torch.Tensor | slice | None,
                              direction_jitter: float = 0.0, sensor_name: str = EGO_CAMERA):
    """Reset event: the embedded simulator's `light_direction_jitter` (+- per direction component).

    Newton Warp's renderer has one directional light (`create_default_light`), shared by all worlds, so
    one draw applies to every environment. Its light model has no intensity (a light adds
    `albedo * n.l * shadow`, the ambient term is fixed), so `light_intensity` has no counterpart here.
    """
    _, renderer = _newton_render_model(env, sensor_name)
    direction = NEWTON_DEFAULT_LIGHT_DIRECTION + _draw(-direction_jitter, direction_jitter, (3,))
    direction /= max(np.linalg.norm(direction), 1e-6)
    renderer.newton_sensor.utils.create_default_light(enable_shadows=renderer.cfg.enable_shadows,
                                                      direction=wp.vec3f(*direction.astype(np.float32)))


def task_success(env: ManagerBasedRLEnv) -> torch.Tensor:
    """1.0 where the task's success predicate holds (on Isaac Lab state, each env in turn)."""
    scene = task_scene(env)
    values = []
    with scene.reading_all_envs():  # one device -> host copy per state quantity, not per env
        for index in range(env.num_envs):
            scene.env_index = index
            values.append(float(scene.task.is_success(scene)))
    return torch.tensor(values, device=env.device)


def apply_randomization_profile(cfg, config: DomainRandomizationConfig, frictions: dict[str, float]) -> None:
    """Map a `config/domain_randomization.yaml` profile onto EventManager / observation-noise terms.

    Applied: object pose range scale, object mass scale, object friction scale, actuator gain scale
    (reset events), joint-state noise (observation corruption), and on the rendering side object colour
    jitter and camera position / FOV jitter (reset events on the Newton Warp renderer), light direction
    jitter and light intensity (the scene's lights: per-env draws of the `SceneLitEgoView` term; with the
    renderer's own lighting only the direction, see `randomize_light_direction`). Image noise and action
    latency are applied by `IsaacLabTaskEnv`.
    `frictions`: each rigid object's nominal sliding friction (Isaac Lab's material event draws absolute
    values, the embedded randomizer scales the nominal ones).
    """
    import isaaclab.envs.mdp as mdp
    from isaaclab.utils.noise import GaussianNoiseCfg

    if not config.enabled:
        return
    # Every rigid object of the scene (the task's objects, settings and particles), in the scene's order.
    objects = [name for name, value in vars(cfg.scene).items() if isinstance(value, RigidObjectCfg)]
    cfg.events.place_objects.params["object_pose_scale"] = config.object_pose_scale
    for name in objects:
        setattr(cfg.events, f"{name}_mass", EventTermCfg(
            func=mdp.randomize_rigid_body_mass, mode="reset",
            params={"asset_cfg": SceneEntityCfg(name), "mass_distribution_params": tuple(config.mass_scale),
                    "operation": "scale"}))
        friction = tuple(frictions[name] * scale for scale in config.friction_scale)
        setattr(cfg.events, f"{name}_friction", EventTermCfg(
            func=mdp.randomize_rigid_body_material, mode="reset",
            params={"asset_cfg": SceneEntityCfg(name), "static_friction_range": friction,
                    "dynamic_friction_range": friction, "restitution_range": (0.0, 0.0), "num_buckets": 64}))
    cfg.events.actuator_gains = EventTermCfg(
        func=mdp.randomize_actuator_gains, mode="reset",
        params={"asset_cfg": SceneEntityCfg("robot"), "operation": "scale",
                "stiffness_distribution_params": tuple(config.actuator_gain_scale),
                "damping_distribution_params": tuple(config.actuator_gain_scale)})
    if config.color_jitter > 0:
        cfg.events.object_colors = EventTermCfg(func=RandomizeObjectColors, mode="reset",
                                                params={"color_jitter": config.color_jitter})
    if config.camera_position_jitter > 0 or config.camera_fovy_jitter > 0:
        cfg.events.ego_camera = EventTermCfg(func=RandomizeEgoCamera, mode="reset",
                                             params={"position_jitter": config.camera_position_jitter,
                                                     "fovy_jitter": config.camera_fovy_jitter})
    ego_view = cfg.observations.policy.ego_view
    if isinstance(ego_view.func, type) and issubclass(ego_view.func, SceneLitEgoView):
        # The scene's lights: direction jitter and intensity per environment, drawn by the term at each reset.
        ego_view.params.update(light_direction_jitter=config.light_direction_jitter,
                               light_intensity=tuple(config.light_intensity))
    elif config.light_direction_jitter > 0:
        cfg.events.light_direction = EventTermCfg(func=randomize_light_direction, mode="reset",
                                                  params={"direction_jitter": config.light_direction_jitter})
    if config.state_noise_std > 0:
        group = cfg.observations.policy
        group.enable_corruption = True
        for term in JOINT_GROUPS:
            getattr(group, term).noise = GaussianNoiseCfg(std=config.state_noise_std)
