"""Where the project's shipped files live."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
# exts/sage_gr00t/sage_gr00t -> repository root.
REPO_ROOT = _PACKAGE_DIR.parents[2]


def assets_dir() -> Path:
    """The `assets/` folder (override with SAGE_GR00T_ASSETS for installed copies)."""
    override = os.environ.get("SAGE_GR00T_ASSETS")
    path = Path(override) if override else REPO_ROOT / "assets"
    if not path.is_dir():
        raise FileNotFoundError(
            f"SAGE-GR00T assets folder not found at {path}. Install the project with "
            "`pip install -e .` from a checkout, or set SAGE_GR00T_ASSETS to the assets/ folder."
        )
    return path


def config_dir() -> Path:
    """The `config/` folder with YAML defaults (override with SAGE_GR00T_CONFIG)."""
    override = os.environ.get("SAGE_GR00T_CONFIG")
    return Path(override) if override else REPO_ROOT / "config"
