"""Compose a tabletop scene with `mujoco.MjSpec`: robot + table + lights + cameras + task objects."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sage_gr00t.sim.embodiment import WORLD_CONTYPE, EmbodimentSpec, _look_at_quat, load_robot_spec


@dataclass(frozen=True)
class PhysicsConfig:
    """Settings that make contact grasps hold (see RESEARCH.md: implicitfast, elliptic, impratio)."""

    timestep: float = 0.002
    impratio: float = 10.0
    noslip_iterations: int = 0


@dataclass(frozen=True)
class TableConfig:
    height: float = 0.78
    center_x: float = 0.52
    half_size: tuple[float, float] = (0.30, 0.55)
    thickness: float = 0.03


def table_origin(table: TableConfig) -> tuple[float, float, float]:
    """World position of the table body: the centre of its top slab."""
    return (table.center_x, 0.0, table.height - table.thickness / 2)


def table_geoms(table: TableConfig) -> list[dict]:
    """The table's geoms in its body frame (`table_origin`): a collidable top and four drawn legs. The USD
    conversion (scripts/convert_assets.py) builds Isaac Lab's table from the same list."""
    leg_h = (table.height - table.thickness) / 2
    geoms = [dict(name="table_top", type=mujoco.mjtGeom.mjGEOM_BOX,
                  size=[table.half_size[0], table.half_size[1], table.thickness / 2],
                  rgba=[0.62, 0.47, 0.33, 1], friction=[0.8, 0.02, 0.002], contype=WORLD_CONTYPE, conaffinity=1)]
    for i, (sx, sy) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
        geoms.append(dict(
            name=f"table_leg{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, leg_h],
            pos=[sx * (table.half_size[0] - 0.04), sy * (table.half_size[1] - 0.04), -table.thickness / 2 - leg_h],
            rgba=[0.35, 0.26, 0.18, 1], contype=0, conaffinity=0,
        ))
    return geoms


def new_scene(emb: EmbodimentSpec, physics: PhysicsConfig, table: TableConfig) -> mujoco.MjSpec:
    """The robot, a floor, a table, lights and a `front_view` camera; tasks add their objects."""
    spec = load_robot_spec(emb)
    spec.modelname = f"sage_gr00t_{emb.name}"
    spec.option.timestep = physics.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = physics.impratio
    spec.option.noslip_iterations = physics.noslip_iterations
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 480
    spec.visual.quality.shadowsize = 0

    world = spec.worldbody
    world.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.05], rgba=[0.55, 0.57, 0.6, 1],
        contype=WORLD_CONTYPE, conaffinity=1,
    )
    table_body = world.add_body(name="table", pos=list(table_origin(table)))
    for geom in table_geoms(table):
        table_body.add_geom(**geom)
    world.add_light(
        name="key_light", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, pos=[0.6, 0.4, 2.5],
        dir=[-0.2, -0.15, -1.0], diffuse=[0.75, 0.75, 0.75], specular=[0.1, 0.1, 0.1], castshadow=False,
    )
    world.add_light(
        name="fill_light", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, pos=[1.5, -1, 2.0],
        dir=[-0.6, 0.4, -0.7], diffuse=[0.3, 0.3, 0.3], specular=[0, 0, 0], castshadow=False,
    )
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.2, 0.2, 0.2]
    front_pos = np.array([1.45, 0.0, 1.45])
    world.add_camera(
        name="front_view", pos=front_pos.tolist(),
        quat=_look_at_quat(front_pos, np.array([0.25, 0.0, 0.85])).tolist(), fovy=55.0,
    )
    return spec


def add_free_body(
    spec: mujoco.MjSpec,
    name: str,
    geoms: list[dict],
    mass: float | None = None,
) -> mujoco.MjsBody:
    """A movable object (free joint) made of primitive geoms; pose is set at reset through qpos."""
    body = spec.worldbody.add_body(name=name, pos=[0, 0, 2.0])
    body.add_freejoint(name=f"{name}_free")
    for i, g in enumerate(geoms):
        kw = dict(g)
        kw.setdefault("name", f"{name}_g{i}")
        kw.setdefault("condim", 4)
        kw.setdefault("friction", [1.0, 0.01, 0.001])
        kw.setdefault("contype", WORLD_CONTYPE)
        kw.setdefault("conaffinity", 1)
        body.add_geom(**kw)
    if mass is not None:
        # Spread the requested mass over the geoms by volume.
        body.explicitinertial = False
        for geom in body.geoms:
            geom.density = 0.0
        body.geoms[0].mass = mass
    return body


def add_static_body(spec: mujoco.MjSpec, name: str, geoms: list[dict]) -> mujoco.MjsBody:
    """A fixed object (plate, bin, cup); moved at reset through `model.body_pos`."""
    body = spec.worldbody.add_body(name=name, pos=[0, 0, 0])
    for i, g in enumerate(geoms):
        kw = dict(g)
        kw.setdefault("name", f"{name}_g{i}")
        kw.setdefault("contype", WORLD_CONTYPE)
        kw.setdefault("conaffinity", 1)
        body.add_geom(**kw)
    return body


def ring_walls(radius: float, height: float, thickness: float, segments: int, z0: float, rgba: list[float],
               prefix: str, **extra) -> list[dict]:
    """Box segments forming a round open container wall (primitives render fast)."""
    geoms = []
    seg_len = 2 * radius * np.tan(np.pi / segments) + thickness
    for i in range(segments):
        angle = 2 * np.pi * i / segments
        quat = np.zeros(4)
        mujoco.mju_axisAngle2Quat(quat, np.array([0.0, 0.0, 1.0]), angle)
        geoms.append(dict(
            name=f"{prefix}_wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[thickness / 2, seg_len / 2, height / 2],
            pos=[(radius + thickness / 2) * np.cos(angle), (radius + thickness / 2) * np.sin(angle), z0 + height / 2],
            quat=quat.tolist(), rgba=rgba, **extra,
        ))
    return geoms
