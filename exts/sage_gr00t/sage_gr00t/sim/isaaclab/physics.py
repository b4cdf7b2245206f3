"""Newton physics for the SAGE-GR00T tasks: C MuJoCo for one env on the CPU, mujoco_warp otherwise.

`SageMujocoSolverCfg` is an `MJWarpSolverCfg` whose backend follows the scene: with
`use_mujoco_cpu=None` (the default) `NewtonMujocoManager` picks C MuJoCo (`use_mujoco_cpu=True`) for a
single environment on the CPU -- about 8x faster there than mujoco_warp on Warp's CPU device -- and
mujoco_warp for several environments (C MuJoCo in Newton is single-world: `SolverMuJoCo` raises
"separate_worlds=False is only supported for single-world models") or any CUDA device. So the usual
Isaac Lab overrides (`cfg.scene.num_envs`, `cfg.sim.device`, `parse_env_cfg(..., num_envs=, device=)`)
choose the backend at build time. The constraint / contact capacities follow the backend too
(`njmax` / `nconmax` when set explicitly, else `cpu_*` or the per-world `warp_*` values: mujoco_warp
allocates and loops over them per world, so generous C-sized buffers cost it ~7x step time).

Two fixes to Isaac Lab 3.0.0 / Newton for the C MuJoCo backend:

* `NewtonMJWarpManager._initialize_contacts` asks the solver for its maximum contact count to size
  Newton's contact buffer, which `SolverMuJoCo` does not implement for the C MuJoCo backend
  (`NotImplementedError`). That buffer only feeds contact sensors (none here), and C MuJoCo runs its
  own collision detection, so this manager skips it.
* MuJoCo's midphase is switched off. `SolverMuJoCo` compiles each body with a temporary inertial frame
  (COM shifted by 1 mm in x, inertia axes as given) and only afterwards writes the physical COM and
  the re-diagonalised inertia frame (`body_ipos`, `body_iquat`) into the compiled model. MuJoCo's
  per-body bounding-volume hierarchies (`bvh_aabb`, used by the midphase of bodies with several geoms)
  are expressed in the inertial frame and computed only at compile time, so they stay in the stale
  frame: boxes shifted by 1 mm and, where the inertia axes were permuted (the fingers: x <-> y), a
  7 mm thick box where the finger is 18 mm wide. Contacts between such bodies are then silently
  dropped -- the fingers pass through the pitcher's 6 mm walls and water particles leak out of it.
  Without the midphase, C MuJoCo tests every geom pair of a broadphase body pair, each pruned by the
  geoms' own (correct) bounding volumes. (mujoco_warp has no midphase: its collision uses per-geom
  bounds only.)
"""

from __future__ import annotations

import copy

import mujoco
from isaaclab.physics import PhysicsManager
from isaaclab.utils import configclass
from isaaclab.utils.configclass import replace
from isaaclab_newton.physics import MJWarpSolverCfg, NewtonManager
from isaaclab_newton.physics.mjwarp_manager import NewtonMJWarpManager


@configclass
class SageMujocoSolverCfg(MJWarpSolverCfg):
    """`MJWarpSolverCfg` with the backend (and its buffer sizes) chosen from the env count and device."""

    class_type: type | str = "sage_gr00t.sim.isaaclab.physics:NewtonMujocoManager"

    use_mujoco_cpu: bool | None = None
    """None: C MuJoCo for one environment on the CPU, mujoco_warp otherwise. True / False force a backend."""

    njmax: int | None = None
    """Constraint rows (per world for mujoco_warp); None: `cpu_njmax` or `warp_njmax` by backend."""

    nconmax: int | None = None
    """Contacts (per world for mujoco_warp); None: `cpu_nconmax` or `warp_nconmax` by backend."""

    cpu_njmax: int = 6000
    cpu_nconmax: int = 1500
    warp_njmax: int = 600
    warp_nconmax: int = 150


def use_mujoco_cpu(solver_cfg, world_count: int, device: str) -> bool:
    """The backend a solver config gets for `world_count` environments on `device`."""
    choice = getattr(solver_cfg, "use_mujoco_cpu", False)
    if choice is None:
        return world_count == 1 and "cuda" not in str(device)
    if choice and world_count > 1:
        raise ValueError(f"use_mujoco_cpu=True needs a single environment (C MuJoCo in Newton is single-world); "
                         f"got num_envs={world_count}. Leave use_mujoco_cpu=None to use mujoco_warp.")
    return bool(choice)


def resolve_solver_cfg(solver_cfg, world_count: int, device: str):
    """A copy of a `SageMujocoSolverCfg` with the backend and buffer sizes fixed (other configs unchanged)."""
    if not isinstance(solver_cfg, SageMujocoSolverCfg):
        return solver_cfg
    cpu = use_mujoco_cpu(solver_cfg, world_count, device)
    njmax = solver_cfg.njmax if solver_cfg.njmax is not None else (
        solver_cfg.cpu_njmax if cpu else solver_cfg.warp_njmax)
    nconmax = solver_cfg.nconmax if solver_cfg.nconmax is not None else (
        solver_cfg.cpu_nconmax if cpu else solver_cfg.warp_nconmax)
    return replace(solver_cfg, use_mujoco_cpu=cpu, njmax=njmax, nconmax=nconmax)


class NewtonMujocoManager(NewtonMJWarpManager):
    """(Its name must start with "newton": Isaac Lab picks asset backends by the manager class name.)"""

    @classmethod
    def _resolved(cls, solver_cfg, model=None):
        model = model if model is not None else cls.backend.model
        return resolve_solver_cfg(solver_cfg, model.world_count, str(PhysicsManager._device or model.device))

    @classmethod
    def _apply_deterministic_request(cls, cfg):
        resolved = copy.copy(cfg)  # (`replace` would re-run NewtonCfg's checks, which reject its own class_type)
        resolved.solver_cfg = cls._resolved(cfg.solver_cfg)
        return super()._apply_deterministic_request(resolved)

    @classmethod
    def _validate_deterministic_solver_cfg(cls, solver_cfg, deterministic_mode) -> None:
        super()._validate_deterministic_solver_cfg(cls._resolved(solver_cfg), deterministic_mode)

    @classmethod
    def _build_solver(cls, model, solver_cfg) -> None:
        super()._build_solver(model, cls._resolved(solver_cfg, model))
        solver = NewtonManager._solver
        if getattr(solver, "use_mujoco_cpu", False):
            solver.mj_model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_MIDPHASE)

    @classmethod
    def _initialize_contacts(cls) -> None:
        solver = cls._solver
        if solver is not None and getattr(solver, "use_mujoco_cpu", False) and not cls._needs_collision_pipeline:
            NewtonManager._contacts = None
            return
        super()._initialize_contacts()
