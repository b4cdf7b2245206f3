"""The embedded simulator: any declared `Task` as a gymnasium environment on C MuJoCo (CPU, headless EGL).

Observations and actions use GR00T's modality names (`sage_gr00t.modality`):
    video.ego_view (H, W, 3) uint8, state.{left,right}_{arm,hand} float32,
    annotation.human.task_description str;  actions action.{left,right}_{arm,hand} (joint targets).
"""

from __future__ import annotations

import atexit
import collections
import string
import weakref

import gymnasium as gym
import mujoco
import numpy as np

from sage_gr00t.modality import EGO_CAMERA, EGO_VIEW, LANGUAGE_KEY, action_key, group_of, state_key
from sage_gr00t.sim.actions import check_action
from sage_gr00t.sim.config import TaskConfig
from sage_gr00t.sim.embodiment import ROBOT_COLLISION_BIT, WORLD_CONTYPE, EmbodimentSpec, get_embodiment
from sage_gr00t.sim.randomization import DomainRandomizer
from sage_gr00t.sim.scene import add_free_body, add_static_body, new_scene
from sage_gr00t.sim.task_env import DeclaredTaskEnv
from sage_gr00t.tasks.spec import Geom, ObjectSpec, ParticleSpec, Task

_GEOM_TYPES = {
    "box": mujoco.mjtGeom.mjGEOM_BOX, "sphere": mujoco.mjtGeom.mjGEOM_SPHERE,
    "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER, "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
    "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID,
}


def geom_kwargs(geom: Geom) -> dict:
    """A declared geom as `MjsBody.add_geom` keywords."""
    kw: dict = dict(type=_GEOM_TYPES[geom.shape], size=[*geom.size, 0.0, 0.0, 0.0][:3], pos=list(geom.pos),
                    rgba=list(geom.rgba))
    if geom.quat is not None:
        kw["quat"] = list(geom.quat)
    if geom.friction is not None:
        kw["friction"] = list(geom.friction)
    if geom.visual_only:
        kw.update(contype=0, conaffinity=0, group=1)
    if geom.name is not None:
        kw["name"] = geom.name
    return kw


def add_object(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    geoms = [geom_kwargs(g) for g in obj.geoms]
    if obj.movable:
        add_free_body(spec, obj.name, geoms, mass=obj.mass)
    else:
        add_static_body(spec, obj.name, geoms)


def add_particles(spec: mujoco.MjSpec, particles: ParticleSpec) -> None:
    for i in range(particles.count):
        body = spec.worldbody.add_body(name=f"{particles.name}{i}", pos=[0, 0, 2.0])
        body.add_freejoint(name=f"{particles.name}{i}_free")
        # Frictionless spheres flow like a coarse liquid and keep contacts cheap (condim 1).
        body.add_geom(name=f"{particles.name}{i}_g", type=mujoco.mjtGeom.mjGEOM_SPHERE,
                      size=[particles.radius, 0, 0], rgba=list(particles.rgba), condim=1, contype=WORLD_CONTYPE,
                      conaffinity=1, mass=particles.mass, solref=[0.01, 1])


def close_renderers(*groups: dict[tuple[int, int], mujoco.Renderer]) -> None:
    for group in groups:
        for renderer in group.values():
            renderer.close()
        group.clear()


class MujocoScene:
    """`SceneAccess` on a MuJoCo model/data pair."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, task: Task, config: TaskConfig,
                 qpos_adr: dict[str, np.ndarray]) -> None:
        self.model, self.data, self.task, self.config = model, data, task, config
        self._qpos_adr = qpos_adr
        self._particles = {p.name: np.array([self.body_id(f"{p.name}{i}") for i in range(p.count)])
                           for p in task.particles()}

    @property
    def table_height(self) -> float:
        return self.config.table.height

    def body_id(self, name: str) -> int:
        bid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)
        if bid < 0:
            raise ValueError(f"Task {self.task.name}: no body named {name!r}.")
        return bid

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.xpos[self.body_id(name)].copy()

    def body_quat(self, name: str) -> np.ndarray:
        return self.data.xquat[self.body_id(name)].copy()

    def set_pose(self, name: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        bid = self.body_id(name)
        quat = np.zeros(4)
        mujoco.mju_axisAngle2Quat(quat, np.array([0.0, 0.0, 1.0]), yaw)
        if self.model.body_jntnum[bid] == 0:  # a setting: fixed to the world, moved through the model
            self.model.body_pos[bid] = pos
            if yaw:
                self.model.body_quat[bid] = quat
            return
        jid = self.model.body_jntadr[bid]
        adr = self.model.jnt_qposadr[jid]
        self.data.qpos[adr: adr + 3] = pos
        self.data.qpos[adr + 3: adr + 7] = quat
        dof = self.model.jnt_dofadr[jid]
        self.data.qvel[dof: dof + 6] = 0.0

    def touching_robot(self, name: str) -> bool:
        """Whether any robot geom is in contact with body `name` (e.g. it is still held)."""
        bid = self.body_id(name)
        robot = self.model.geom_conaffinity == ROBOT_COLLISION_BIT
        for contact in self.data.contact[: self.data.ncon]:
            g1, g2 = contact.geom1, contact.geom2
            bodies = (self.model.geom_bodyid[g1], self.model.geom_bodyid[g2])
            if bid in bodies and (robot[g1] or robot[g2]):
                return True
        return False

    def joint_state(self) -> dict[str, np.ndarray]:
        return {state_key(g): self.data.qpos[adr].astype(np.float32) for g, adr in self._qpos_adr.items()}

    def particle_positions(self, name: str) -> np.ndarray:
        if name not in self._particles:
            raise ValueError(f"Task {self.task.name}: no particles named {name!r}.")
        return self.data.xpos[self._particles[name]].copy()


class MujocoTaskEnv(DeclaredTaskEnv, gym.Env):
    """A `Task` on the embedded simulator: scene built once, seeded reset, validated actions, GR00T dicts."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012

    def __init__(self, task: Task, config: TaskConfig | None = None, render_mode: str | None = "rgb_array") -> None:
        self.config = config or TaskConfig()
        self.task = task = task.with_variant(self.config.variant)
        self.render_mode = render_mode
        self.embodiment: EmbodimentSpec = get_embodiment(self.config.embodiment)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._depth_renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        # GL renderers are closed when the env is collected, or at exit BEFORE mujoco's EGL teardown (an atexit
        # hook registered after the first renderer exists runs first): left to garbage collection at shutdown
        # they print EGLError tracebacks over whatever error ended the program.
        self._close_renderers = weakref.finalize(self, close_renderers, self._renderers, self._depth_renderers)
        self._close_renderers.atexit = False
        self._exit_hook = False
        self._build()
        self._rng = np.random.default_rng()
        self._action_queue: collections.deque[np.ndarray] = collections.deque()
        self._latency = 0
        self.instruction = ""
        self.step_count = 0
        self.observation_space = self._make_observation_space()
        self.action_space = self._make_action_space()

    def _build(self) -> None:
        """Compile the scene from the task's current objects (again when a variant draws new ones)."""
        close_renderers(self._renderers, self._depth_renderers)  # they hold the previous model
        task = self.task
        spec = new_scene(self.embodiment, self.config.physics, self.config.table)
        for obj in task.objects():
            add_object(spec, obj)
        for particles in task.particles():
            add_particles(spec, particles)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, round(1.0 / (self.config.control_hz * self.model.opt.timestep)))
        self._index_robot()
        self.scene = MujocoScene(self.model, self.data, task, self.config, self._qpos_adr)
        body_ids = np.array([self.scene.body_id(n) for n in task.object_names()], dtype=int)
        geom_ids = np.array([g for g in range(self.model.ngeom) if self.model.geom_bodyid[g] in set(body_ids)],
                            dtype=int)
        self.randomizer = DomainRandomizer(self.model, self.config.randomization, geom_ids, body_ids)
        self._built_objects = task.objects()

    # ------------------------------------------------------------------ TaskEnv (the rest: DeclaredTaskEnv)
    @property
    def sim_time(self) -> float:
        return float(self.data.time)

    def ee_pos(self, side: str) -> np.ndarray:
        return self.data.site_xpos[self._ee_site[side]].copy()

    # ------------------------------------------------------------------ indices
    def _index_robot(self) -> None:
        m = self.model
        self._qpos_adr: dict[str, np.ndarray] = {}
        self._ctrl_ids: dict[str, np.ndarray] = {}
        self._ctrl_range: dict[str, np.ndarray] = {}
        joint_to_act = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        for group, joints in self.embodiment.state_groups.items():
            jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
            if min(jids) < 0:
                missing = [j for j, i in zip(joints, jids, strict=True) if i < 0]
                raise ValueError(f"Embodiment {self.embodiment.name}: joints {missing} not in model.")
            self._qpos_adr[group] = np.array([m.jnt_qposadr[j] for j in jids])
            self._ctrl_ids[group] = np.array([joint_to_act[j] for j in jids])
            self._ctrl_range[group] = m.actuator_ctrlrange[self._ctrl_ids[group]].copy()
        self._ee_site = {
            side: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, self.embodiment.arm(side).ee_site)
            for side in ("left", "right")
        }

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        self.task.new_episode(self._rng)
        if self.task.objects() != self._built_objects:
            self._build()
        mujoco.mj_resetData(self.model, self.data)
        self._latency = self.randomizer.apply(self._rng)
        home = self.home_action()
        for group, adr in self._qpos_adr.items():
            self.data.qpos[adr] = home[action_key(group)]
        self.data.ctrl[:] = self.validate_action(home)
        r = self.config.randomization
        self.task.place(self.scene, self._rng, r.object_pose_scale if r.enabled else 1.0)
        mujoco.mj_forward(self.model, self.data)
        for _ in range(self.config.settle_steps):
            mujoco.mj_step(self.model, self.data)
        self._action_queue.clear()
        self.step_count = 0
        phrasings = self.task.instructions()
        self.instruction = phrasings[int(self._rng.integers(len(phrasings)))]
        obs = self._observation()
        return obs, {"success": self.is_success(), "instruction": self.instruction}

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict, float, bool, bool, dict]:
        ctrl = self.validate_action(action)
        self._action_queue.append(ctrl)
        # Action latency: the command applied now is the one sent `latency` steps ago.
        if len(self._action_queue) > self._latency:
            self.data.ctrl[:] = self._action_queue.popleft()
        for _ in range(self.n_substeps):
            mujoco.mj_step(self.model, self.data)
        if not np.all(np.isfinite(self.data.qpos)):
            raise RuntimeError(f"Task {self.task_name}: simulation diverged (non-finite state).")
        self.step_count += 1
        success = self.is_success()
        truncated = self.step_count >= self.config.max_steps
        obs = self._observation()
        return obs, float(success), success, truncated, {"success": success}

    def render(self) -> np.ndarray:
        return self.render_camera("front_view", 480, 640)

    def close(self) -> None:
        close_renderers(self._renderers, self._depth_renderers)

    def _new_renderer(self, height: int, width: int) -> mujoco.Renderer:
        renderer = mujoco.Renderer(self.model, height=height, width=width)
        if not self._exit_hook:
            atexit.register(self._close_renderers)
            self._exit_hook = True
        return renderer

    # ------------------------------------------------------------------ actions
    def validate_action(self, action: dict[str, np.ndarray]) -> np.ndarray:
        """Check an action dict and turn it into a ctrl vector; raise before touching the simulator."""
        checked = check_action(action, self._ctrl_range, self.embodiment.name)
        ctrl = self.data.ctrl.copy()
        for key, value in checked.items():
            ctrl[self._ctrl_ids[group_of(key)]] = value
        return ctrl

    # ------------------------------------------------------------------ observations
    def render_camera(self, camera: str, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._renderers:
            try:
                renderer = self._new_renderer(height, width)
            except mujoco.FatalError as exc:
                raise RuntimeError(
                    f"MuJoCo could not create an offscreen OpenGL context ({exc}). On a machine without a "
                    "display, export MUJOCO_GL=egl (or osmesa) before starting Python, or import sage_gr00t "
                    "before mujoco so it can select EGL; scripts/setup.sh installs the EGL libraries."
                ) from exc
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            self._renderers[key] = renderer
        renderer = self._renderers[key]
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def render_depth(self, camera: str, height: int, width: int) -> np.ndarray:
        """(H, W) float32 depth in metres along the camera axis (a separate renderer per size)."""
        key = (height, width)
        if key not in self._depth_renderers:
            renderer = self._new_renderer(height, width)
            renderer.enable_depth_rendering()
            self._depth_renderers[key] = renderer
        renderer = self._depth_renderers[key]
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().astype(np.float32)

    def camera_pose_intrinsics(
        self, camera: str, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
        """(position, world-from-camera rotation, fx, fy, cx, cy) of a pinhole camera rendered at H x W.

        MuJoCo cameras look along their -z axis with +y up; fovy is the vertical field of view.
        """
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cid < 0:
            raise ValueError(f"Task {self.task_name}: no camera named {camera!r}.")
        fy = 0.5 * height / np.tan(np.deg2rad(self.model.cam_fovy[cid]) / 2)
        fx = fy  # square pixels
        pos = self.data.cam_xpos[cid].copy()
        rot = self.data.cam_xmat[cid].reshape(3, 3).copy()
        return pos, rot, float(fx), float(fy), (width - 1) / 2.0, (height - 1) / 2.0

    def _observation(self) -> dict:
        c = self.config
        image = self.render_camera(EGO_CAMERA, c.image_height, c.image_width)
        obs: dict = {EGO_VIEW: image}
        noise = c.randomization.state_noise_std if c.randomization.enabled else 0.0
        for key, value in self.state().items():
            if noise > 0:
                value = value + self._rng.normal(0.0, noise, value.shape).astype(np.float32)
            obs[key] = value
        if c.randomization.enabled and c.randomization.image_noise_std > 0:
            noisy = image.astype(np.float32) + self._rng.normal(0, c.randomization.image_noise_std, image.shape)
            obs[EGO_VIEW] = np.clip(noisy, 0, 255).astype(np.uint8)
        obs[LANGUAGE_KEY] = self.instruction
        return obs

    def _make_observation_space(self) -> gym.spaces.Dict:
        c = self.config
        spaces: dict[str, gym.Space] = {EGO_VIEW: gym.spaces.Box(0, 255, (c.image_height, c.image_width, 3), np.uint8)}
        for group, adr in self._qpos_adr.items():
            spaces[state_key(group)] = gym.spaces.Box(-np.inf, np.inf, (len(adr),), np.float32)
        spaces[LANGUAGE_KEY] = gym.spaces.Text(max_length=256, min_length=0, charset=string.printable)
        return gym.spaces.Dict(spaces)

    def _make_action_space(self) -> gym.spaces.Dict:
        return gym.spaces.Dict(
            {
                action_key(g): gym.spaces.Box(r[:, 0].astype(np.float32), r[:, 1].astype(np.float32), dtype=np.float32)
                for g, r in self._ctrl_range.items()
            }
        )


def make_gym_env(task: str, **overrides: object) -> MujocoTaskEnv:
    """gymnasium entry point (`gym.make("SageGr00t/PickApple-v0")`)."""
    from sage_gr00t.tasks.registry import resolve_task

    config = TaskConfig().with_overrides(**overrides)
    return MujocoTaskEnv(resolve_task(task, config.variant), config)
