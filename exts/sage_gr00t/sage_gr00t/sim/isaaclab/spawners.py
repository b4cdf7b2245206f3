"""Objects without a USD file, spawned from their declared primitive geoms with Isaac Lab's shape spawners.

The physical values (friction, condim, solref / solimp, mass, colour) are read from the MuJoCo model the
embedded simulator builds from the same declaration (`sim.mujoco_env.add_object` / `add_particles`), so both
backends simulate the same object. One colliding geom per object: that geom becomes the rigid body
(`sim_utils.CuboidCfg` / `SphereCfg` / `CylinderCfg` / `CapsuleCfg` with rigid-body, mass, collision and
material properties), posed in the object's frame; its visual-only geoms (a stem, a rim) are spawned as
non-colliding shapes under the same body. Compound colliders (bins, cups) need a USD file
(`scripts/convert_assets.py`): their mass distribution and inertia are the converter's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, field

import isaaclab.sim as sim_utils
import mujoco
from isaaclab.sim.spawners.materials import UsdPhysicsRigidBodyMaterialCfg
from isaaclab.sim.spawners.shapes import ShapeCfg
from isaaclab.sim.spawners.spawner_cfg import SpawnerCfg
from isaaclab.sim.utils import clone, get_current_stage, standardize_xform_ops
from isaaclab.utils import configclass
from isaaclab_newton.sim import NewtonMaterialCfg
from isaaclab_newton.sim.schemas import MujocoCollisionCfg
from pxr import Usd

from sage_gr00t.tasks.spec import ObjectSpec, ParticleSpec

_SHAPE_NAMES = {mujoco.mjtGeom.mjGEOM_BOX: "box", mujoco.mjtGeom.mjGEOM_SPHERE: "sphere",
                mujoco.mjtGeom.mjGEOM_CYLINDER: "cylinder", mujoco.mjtGeom.mjGEOM_CAPSULE: "capsule"}


@configclass
class PosedShapeCfg:
    """A shape spawner and its pose in the object's (body's) frame."""

    shape: ShapeCfg = MISSING
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rot: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # (x, y, z, w), Isaac Lab's order


@clone
def spawn_declared_object(prim_path: str, cfg: DeclaredObjectCfg, translation: tuple[float, float, float] | None = None,
                          orientation: tuple[float, float, float, float] | None = None, **kwargs) -> Usd.Prim:
    """Spawn the body shape at `prim_path` (its Xform is the rigid body), move its geometry to the geom's
    pose in the body frame, then add the visual-only shapes as children of the body."""
    body = cfg.body.shape
    prim = body.func(prim_path, body, translation=translation, orientation=orientation)
    # The shape spawners put the geometry at the body origin; a declared geom may sit elsewhere on the body
    # (a plate's disc rests on its origin).
    mesh = get_current_stage().GetPrimAtPath(f"{prim_path}/geometry/mesh")
    standardize_xform_ops(mesh, translation=cfg.body.pos, orientation=cfg.body.rot)
    for i, visual in enumerate(cfg.visuals):
        visual.shape.func(f"{prim_path}/visual_{i}", visual.shape, translation=visual.pos, orientation=visual.rot)
    return prim


@configclass
class DeclaredObjectCfg(SpawnerCfg):
    """An object of primitive geoms: one colliding body shape plus visual-only shapes (see module docstring)."""

    func: Callable | str = spawn_declared_object
    body: PosedShapeCfg = MISSING
    visuals: list[PosedShapeCfg] = field(default_factory=list)


def _shape_cfg(model: mujoco.MjModel, g: int, body_props: dict, fix: str) -> ShapeCfg:
    """Isaac Lab's shape spawner for compiled geom `g` (MuJoCo sizes are half extents / radius + half length,
    Isaac Lab's full sizes / radius + full height)."""
    kind = _SHAPE_NAMES.get(mujoco.mjtGeom(int(model.geom_type[g])))
    size = model.geom_size[g]
    rgba = model.geom_rgba[g]
    common = dict(visual_material=sim_utils.PreviewSurfaceCfg(diffuse_color=tuple(map(float, rgba[:3])),
                                                              opacity=float(rgba[3])), **body_props)
    if kind == "box":
        return sim_utils.CuboidCfg(size=tuple(float(2 * s) for s in size), **common)
    if kind == "sphere":
        return sim_utils.SphereCfg(radius=float(size[0]), **common)
    if kind == "cylinder":
        return sim_utils.CylinderCfg(radius=float(size[0]), height=float(2 * size[1]), axis="Z", **common)
    if kind == "capsule":  # USD's capsule height is its cylinder part, MuJoCo's half length that part's half
        return sim_utils.CapsuleCfg(radius=float(size[0]), height=float(2 * size[1]), axis="Z", **common)
    shape = mujoco.mjtGeom(int(model.geom_type[g])).name.removeprefix("mjGEOM_").lower()
    raise ValueError(f"Geom {model.geom(g).name!r} ({shape}): no Isaac Lab shape spawner makes that shape. {fix}")


def _body_props(model: mujoco.MjModel, g: int) -> dict:
    """Rigid body, mass, collision and contact material of the body carrying colliding geom `g`, as MuJoCo has
    them (friction: sliding, torsional, rolling)."""
    friction = model.geom_friction[g]
    return dict(
        rigid_props=sim_utils.UsdPhysicsRigidBodyCfg(rigid_body_enabled=True),
        mass_props=sim_utils.MassCfg(mass=float(model.body_mass[model.geom_bodyid[g]])),
        collision_props=[sim_utils.UsdPhysicsCollisionCfg(collision_enabled=True),
                         MujocoCollisionCfg(condim=int(model.geom_condim[g]),
                                            solref=tuple(map(float, model.geom_solref[g])),
                                            solimp=tuple(map(float, model.geom_solimp[g])))],
        physics_material=[UsdPhysicsRigidBodyMaterialCfg(static_friction=float(friction[0]),
                                                         dynamic_friction=float(friction[0])),
                          NewtonMaterialCfg(torsional_friction=float(friction[1]),
                                            rolling_friction=float(friction[2]))],
    )


def _pose(model: mujoco.MjModel, g: int) -> dict:
    w, x, y, z = model.geom_quat[g]
    return dict(pos=tuple(map(float, model.geom_pos[g])), rot=(float(x), float(y), float(z), float(w)))


def _declared_cfg(model: mujoco.MjModel, what: str, fix: str) -> DeclaredObjectCfg:
    colliding = [g for g in range(model.ngeom) if model.geom_contype[g] or model.geom_conaffinity[g]]
    if len(colliding) != 1:
        raise ValueError(f"{what} has {len(colliding)} colliding geoms and no USD file; Isaac Lab's shape spawners "
                         f"make one collider per rigid body. {fix}")
    body = colliding[0]
    visuals = [PosedShapeCfg(shape=_shape_cfg(model, g, {}, fix), **_pose(model, g))
               for g in range(model.ngeom) if g != body]
    return DeclaredObjectCfg(body=PosedShapeCfg(shape=_shape_cfg(model, body, _body_props(model, body), fix),
                                                **_pose(model, body)),
                             visuals=visuals)


def embedded_model(item: ObjectSpec | ParticleSpec) -> mujoco.MjModel:
    """An object (or one particle) alone, compiled the way the embedded simulator builds it."""
    from sage_gr00t.sim.mujoco_env import add_object, add_particles

    spec = mujoco.MjSpec()
    if isinstance(item, ParticleSpec):
        add_particles(spec, ParticleSpec(item.name, 1, item.radius, item.rgba, item.mass))
    else:
        add_object(spec, item)
    return spec.compile()


def nominal_friction(item: ObjectSpec | ParticleSpec) -> float:
    """Sliding friction of the object's first colliding geom in the embedded simulator."""
    model = embedded_model(item)
    colliding = [g for g in range(model.ngeom) if model.geom_contype[g] or model.geom_conaffinity[g]]
    return float(model.geom_friction[colliding[0] if colliding else 0, 0])


def object_spawner_cfg(item: ObjectSpec | ParticleSpec, fix: str = "") -> DeclaredObjectCfg:
    """The spawner of a declared object (or of one particle) without a USD file; `fix` ends the error message
    of an object it cannot spawn."""
    kind = "Particle" if isinstance(item, ParticleSpec) else "Object"
    return _declared_cfg(embedded_model(item), f"{kind} {item.name!r}", fix)
