"""Newton physics manager for C MuJoCo on the CPU (`MJWarpSolverCfg(use_mujoco_cpu=True)`).

Isaac Lab 3.0.0's `NewtonMJWarpManager._initialize_contacts` asks the solver for its maximum contact
count to size Newton's contact buffer, which `SolverMuJoCo` does not implement for the C MuJoCo
backend (`NotImplementedError`). That buffer only feeds contact sensors (none here), and C MuJoCo
runs its own collision detection, so this manager skips it.
"""

from __future__ import annotations

from isaaclab_newton.physics import NewtonManager
from isaaclab_newton.physics.mjwarp_manager import NewtonMJWarpManager


class NewtonMujocoCpuManager(NewtonMJWarpManager):
    """(Its name must start with "newton": Isaac Lab picks asset backends by the manager class name.)"""

    @classmethod
    def _initialize_contacts(cls) -> None:
        solver = cls._solver
        if solver is not None and getattr(solver, "use_mujoco_cpu", False) and not cls._needs_collision_pipeline:
            NewtonManager._contacts = None
            return
        super()._initialize_contacts()
