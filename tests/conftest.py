"""Test setup: offline Menagerie copy for the Unitree G1, headless rendering."""

from __future__ import annotations

import os
from pathlib import Path

# The mujoco-menagerie package would download from GitHub; point it at the offline copy that
# ships beside the repository (../shared/menagerie) unless the user set one.
_LOCAL_MENAGERIE = Path(__file__).resolve().parents[2] / "shared" / "menagerie"
if "MENAGERIE_ROOT" not in os.environ and _LOCAL_MENAGERIE.is_dir():
    os.environ["MENAGERIE_ROOT"] = str(_LOCAL_MENAGERIE)
os.environ.setdefault("MUJOCO_GL", "egl")
