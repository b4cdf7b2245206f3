"""Process setup for one-core benchmarks: CPU pinning, native thread counts, the offline Menagerie copy.

Call these before numpy, torch or mujoco are imported: threads a native library starts inherit the CPU
affinity of the thread that starts them, and thread-count variables are read when the library loads.
"""

from __future__ import annotations

import os

from sage_gr00t.paths import REPO_ROOT


def limit_native_threads(*, gl: bool = True) -> None:
    """One OpenMP thread (and, with `gl`, one llvmpipe rendering thread), unless already set; MuJoCo headless."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if gl:
        os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe (software EGL) honours it
    os.environ.setdefault("MUJOCO_GL", "egl")  # must precede the first mujoco import


def pin_to_core(core: int | None = None) -> int | None:
    """Pin this thread (and every thread it starts later) to `core`, by default the first allowed one.

    Returns the core, or None where the OS has no `sched_setaffinity` (nothing pinned)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0)) if core is None else core
    try:
        os.sched_setaffinity(0, {core})
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot pin to CPU core {core} (allowed: {sorted(os.sched_getaffinity(0))}): {exc}") from exc
    return core


def allowed_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def use_local_menagerie() -> None:
    """MENAGERIE_ROOT -> the offline MuJoCo Menagerie beside the repository (../shared/menagerie, as
    tests/conftest.py does), unless it is set or that folder is missing: the Unitree G1 loads from there."""
    local = REPO_ROOT.parent / "shared" / "menagerie"
    if "MENAGERIE_ROOT" not in os.environ and local.is_dir():
        os.environ["MENAGERIE_ROOT"] = str(local)
