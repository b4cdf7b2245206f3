"""SAGE panel: a UI-free view-model (`viewmodel`), its omni.ui view (`omni_view`, Kit only) and a web view (`web`).

The view-model's settings are in `config`, its image helpers in `imaging`, its sleep cycles in `sleep`.

Nothing here imports omni: `sage_gr00t.panel.omni_view` does, and only the Kit extension loads it.
"""

from sage_gr00t.panel.config import SPEED_RANGE, STATUSES, PanelConfig
from sage_gr00t.panel.sleep import SleepCycle
from sage_gr00t.panel.viewmodel import ControlLoop, PanelViewModel

__all__ = ["SPEED_RANGE", "STATUSES", "ControlLoop", "PanelConfig", "PanelViewModel", "SleepCycle"]
