"""Newton physics manager for C MuJoCo on the CPU (`MJWarpSolverCfg(use_mujoco_cpu=True)`).

Two fixes to Isaac Lab 3.0.0 / Newton for that backend:

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
  geoms' own (correct) bounding volumes.
"""

from __future__ import annotations

import mujoco
from isaaclab_newton.physics import NewtonManager
from isaaclab_newton.physics.mjwarp_manager import NewtonMJWarpManager


class NewtonMujocoCpuManager(NewtonMJWarpManager):
    """(Its name must start with "newton": Isaac Lab picks asset backends by the manager class name.)"""

    @classmethod
    def _build_solver(cls, model, solver_cfg) -> None:
        super()._build_solver(model, solver_cfg)
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
