"""SAGE panel: a UI-free view-model (`viewmodel`), its omni.ui view (`omni_view`, Kit only) and a web view (`web`).

Nothing here imports omni: `sage_gr00t.panel.omni_view` does, and only the Kit extension loads it.
"""

from sage_gr00t.panel.viewmodel import (
    SPEED_RANGE,
    STATUSES,
    ControlLoop,
    PanelConfig,
    PanelViewModel,
    SleepCycle,
)

__all__ = ["SPEED_RANGE", "STATUSES", "ControlLoop", "PanelConfig", "PanelViewModel", "SleepCycle"]
