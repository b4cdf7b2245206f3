#!/usr/bin/env python
"""Export the embedded simulator's MJCF pieces and convert them to USD for Isaac Lab (`assets/usd/`).

    .venv/bin/python scripts/convert_assets.py --converter /tmp/usdconv-venv/bin/mujoco_usd_converter

Pieces (each its own MJCF model, then its own USD file):
    robot/sage_humanoid.usdc   the robot as `load_robot_spec` prepares it (fixed base, ego camera
                               mount), without actuators: Isaac Lab sets explicit PD gains instead
    table/table.usdc           table top + legs + floor as static colliders (world geoms)
    objects/<task>/<body>.usdc each task object as a free rigid body (static ones -- plate, bins,
                               cup -- are made kinematic in the Isaac Lab config)

`mujoco-usd-converter` needs a newer mujoco than the project pins (Isaac Lab 3.0 needs 3.12), so it
lives in its own venv, never in .venv:

    PYENV_VERSION=3.12.1 python3.12 -m venv /tmp/usdconv-venv
    /tmp/usdconv-venv/bin/pip install mujoco-usd-converter
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mujoco
import numpy as np

from sage_gr00t.paths import REPO_ROOT
from sage_gr00t.sim.embodiment import WORLD_CONTYPE, get_embodiment, load_robot_spec
from sage_gr00t.sim.mujoco_env import add_object, add_particles
from sage_gr00t.sim.scene import TableConfig, table_geoms, table_origin
from sage_gr00t.tasks import ParticleSpec, get_task, task_names

DEFAULT_CONVERTER = "/tmp/usdconv-venv/bin/mujoco_usd_converter"


def robot_spec(embodiment: str) -> mujoco.MjSpec:
    spec = load_robot_spec(get_embodiment(embodiment))
    for actuator in list(spec.actuators):
        spec.delete(actuator)
    # Cameras are not converted (Isaac Lab mounts its own camera sensor on the head body).
    for camera in list(spec.cameras):
        spec.delete(camera)
    return spec


def table_spec(table: TableConfig) -> mujoco.MjSpec:
    """Static world geoms only (the converter turns them into colliders without a rigid body): the embedded
    scene's table (`sim.scene.table_geoms`) placed at its origin, and a floor slab."""
    spec = mujoco.MjSpec()
    spec.modelname = "table"
    world = spec.worldbody
    origin = np.array(table_origin(table))
    for geom in table_geoms(table):
        world.add_geom(**{**geom, "pos": (origin + np.asarray(geom.get("pos", (0, 0, 0)))).tolist()})
    # The embedded floor's extent (a plane of half size 3 m at the origin, drawn that far): a smaller slab ends
    # inside the ego view, which then shows background where MuJoCo shows floor. (Worlds do not collide with
    # or render each other, so neighbouring envs' floors may overlap.)
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_BOX, size=[3.0, 3.0, 0.02], pos=[0, 0, -0.02],
                   rgba=[0.55, 0.57, 0.6, 1], contype=WORLD_CONTYPE, conaffinity=1)
    return spec


def object_specs(task: str) -> dict[str, mujoco.MjSpec]:
    """One MjSpec per declared object (a free rigid body each; settings -- plate, bins, cup -- are dynamic
    bodies resting on the table in the Isaac Lab config), plus one per particle kind (identical particles:
    one USD serves all)."""
    declared = get_task(task)()
    specs = {}
    for obj in declared.objects():
        spec = mujoco.MjSpec()
        spec.modelname = obj.name
        add_object(spec, obj)
        body = spec.worldbody.bodies[0]
        body.pos = [0, 0, 0]
        if not body.joints:
            body.add_freejoint(name=f"{obj.name}_free")
        specs[obj.name] = spec
    for particles in declared.particles():
        spec = mujoco.MjSpec()
        spec.modelname = particles.name
        add_particles(spec, ParticleSpec(particles.name, 1, particles.radius, particles.rgba, particles.mass))
        body = spec.worldbody.bodies[0]
        body.name, body.pos = particles.name, [0, 0, 0]
        specs[particles.name] = spec
    return specs


# Run with the converter venv's Python (it has pxr): attributes Newton reads under other names.
_FIXUP = """
import sys
from pxr import Sdf, Usd
stage = Usd.Stage.Open(sys.argv[1])
for prim in stage.Traverse():
    # The converter writes mjc:body:gravcomp; Newton's MuJoCo solver reads mjc:gravcomp.
    old = prim.GetAttribute("mjc:body:gravcomp")
    if old and old.Get() is not None:
        prim.CreateAttribute("mjc:gravcomp", Sdf.ValueTypeNames.Float, custom=False).Set(float(old.Get()))
    # MJCF robots here never self-collide (contype 0 / conaffinity 2); Newton's default is to collide.
    if prim.GetAttribute("newton:jointsAddMobility") or "PhysicsArticulationRootAPI" in prim.GetAppliedSchemas():
        prim.CreateAttribute("newton:selfCollisionEnabled", Sdf.ValueTypeNames.Bool, custom=False).Set(False)
stage.GetRootLayer().Save()
"""


def convert(spec: mujoco.MjSpec, out_dir: Path, converter: str, work: Path) -> Path:
    spec.compile()  # fail early on a broken piece
    xml = work / f"{spec.modelname}.xml"
    # attach_body leaves an unnamed nested default class, which the converter rejects.
    xml.write_text(re.sub(r"\n\s*<default/>", "", spec.to_xml()))
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([converter, "--no-physics-scene", "--no-layer-structure", str(xml), str(out_dir)], check=True,
                   stdout=subprocess.DEVNULL)
    path = out_dir / f"{spec.modelname}.usdc"
    if not path.is_file():
        raise RuntimeError(f"Converter wrote no {path}.")
    subprocess.run([str(Path(converter).with_name("python")), "-c", _FIXUP, str(path)], check=True)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--converter", default=shutil.which("mujoco_usd_converter") or DEFAULT_CONVERTER,
                   help="mujoco_usd_converter executable (in its own venv)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "assets" / "usd")
    p.add_argument("--embodiment", default="sage_humanoid")
    p.add_argument("--task", nargs="+", default=task_names())
    p.add_argument("--keep-mjcf", type=Path, default=None, help="also keep the exported MJCF files here")
    args = p.parse_args(argv)
    if not Path(args.converter).is_file():
        print(f"mujoco_usd_converter not found at {args.converter}; see this script's docstring.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pieces = [(robot_spec(args.embodiment), args.out / "robot"), (table_spec(TableConfig()), args.out / "table")]
        for task in args.task:
            pieces += [(spec, args.out / "objects" / task) for spec in object_specs(task).values()]
        for spec, out_dir in pieces:
            path = convert(spec, out_dir, args.converter, work)
            print(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
                  f"({path.stat().st_size / 1024:.0f} KiB)")
        if args.keep_mjcf:
            args.keep_mjcf.mkdir(parents=True, exist_ok=True)
            for xml in work.glob("*.xml"):
                shutil.copy(xml, args.keep_mjcf / xml.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
