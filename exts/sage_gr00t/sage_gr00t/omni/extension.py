"""The `sage_gr00t` Kit extension: registers the tasks, runs the SAGE controller, opens the panel.

on_startup:
1. registers the tasks: the embedded MuJoCo tasks' gymnasium ids (`SageGr00t/PickApple-v0`, ...) and the
   Isaac Lab 3.0 task ids (`SageGr00t-PickApple-v0`, ...; `sage_gr00t_tasks.isaaclab`, gymnasium only);
2. builds a `PanelViewModel` (embedded simulator + policy + H-module planner + SAGE bridge) from the
   extension settings (`/exts/sage_gr00t/...`, defaults in config/extension.toml);
3. drives it: inside Isaac Sim from the physics step (`driver = "auto"` or `"physics"`), else from Kit's
   update events; a `Pacer` turns steps into control ticks (20 Hz; `realtime = false`: one per update);
4. opens the omni.ui panel (`sage_gr00t.panel.omni_view`); without omni.ui it logs ONE warning and the
   controller runs headless (`sage-panel` serves the same view-model as a web page).
on_shutdown releases every subscription, destroys the window and closes the simulator.

`stats()` and `get_extension()` let scripts and tests see the extension from outside (Kit owns the object).
"""

from __future__ import annotations

import contextlib
import io
import weakref
from typing import Any

import carb
import carb.settings
import omni.ext

from sage_gr00t.omni.drivers import Pacer, Subscription, subscribe_physics_step, subscribe_update

EXT_NAME = "sage_gr00t"
SETTINGS_ROOT = f"/exts/{EXT_NAME}"
DRIVERS = ("auto", "physics", "update")
PANEL_UNAVAILABLE = ("[sage_gr00t] omni.ui is unavailable ({reason}): the SAGE panel window is not shown; "
                     "the controller runs headless (sage-panel serves the same panel as a web page).")

_STATS: dict[str, Any] = {"startups": 0, "shutdowns": 0, "callbacks": 0, "ticks": 0, "errors": 0,
                          "open_subscriptions": 0, "driver": "", "panel": "", "tasks": []}
_INSTANCE: weakref.ref | None = None


def stats() -> dict[str, Any]:
    """Counters across startups: callbacks received, control ticks, open subscriptions, driver, panel."""
    return dict(_STATS)


def get_extension() -> SageGr00tExtension | None:
    """The running extension object (None when disabled)."""
    return _INSTANCE() if _INSTANCE is not None else None


def read_settings() -> dict[str, Any]:
    settings = carb.settings.get_settings()
    keys = ("task", "policy", "planner", "seed", "embodiment", "device", "speed_percent", "dream_episodes",
            "command", "driver", "realtime", "control_hz", "window")
    return {k: v for k in keys if (v := settings.get(f"{SETTINGS_ROOT}/{k}")) is not None}


def register_tasks() -> list[str]:
    """Gymnasium ids of every installed task (the `sage_gr00t.tasks` entry points): embedded and Isaac Lab."""
    from sage_gr00t.tasks import get_task, task_names

    ids = [get_task(name).ids() for name in task_names()]
    try:
        from sage_gr00t.sim.isaaclab.registration import register_installed_tasks

        register_installed_tasks()
        isaaclab = [i.isaaclab for i in ids]
    except ImportError:
        isaaclab = []
    return [i.gym for i in ids] + isaaclab


def panel_config(values: dict[str, Any]) -> Any:
    from sage_gr00t.panel.config import PanelConfig

    fields = {"task": str, "policy": str, "planner": str, "seed": int, "embodiment": str, "device": str,
              "speed_percent": float, "dream_episodes": int, "control_hz": float, "learn_planner": bool}
    return PanelConfig(**{k: cast(values[k]) for k, cast in fields.items() if k in values})


class SageGr00tExtension(omni.ext.IExt):
    def on_startup(self, ext_id: str) -> None:
        global _INSTANCE
        self._ext_id = ext_id
        self._subs: list[Subscription] = []
        self._window: Any = None
        self._errors: set[str] = set()
        self.viewmodel: Any = None
        _STATS["startups"] += 1
        values = read_settings()
        _STATS["tasks"] = register_tasks()
        carb.log_info(f"[{EXT_NAME}] registered tasks: {', '.join(_STATS['tasks'])}")
        loading = io.StringIO()  # progress bars of the model loaders: Kit would log stderr lines as errors
        try:
            from sage_gr00t.panel.viewmodel import PanelViewModel

            with contextlib.redirect_stderr(loading):
                self.viewmodel = PanelViewModel(panel_config(values))
        except Exception as exc:  # the extension stays loaded; the controller is off
            carb.log_error(f"[{EXT_NAME}] could not start the SAGE controller: {type(exc).__name__}: {exc}")
            return
        finally:
            if loading.getvalue().strip():
                carb.log_info(f"[{EXT_NAME}] while loading: {loading.getvalue().strip()}")
        if values.get("command"):
            self.viewmodel.run(str(values["command"]))
        self._pacer = Pacer(float(values.get("control_hz", self.viewmodel.config.control_hz)),
                            bool(values.get("realtime", True)))
        driver = str(values.get("driver", "auto"))
        if driver not in DRIVERS:
            carb.log_warn(f"[{EXT_NAME}] unknown driver {driver!r} (use {', '.join(DRIVERS)}); using 'auto'.")
            driver = "auto"
        sub = subscribe_physics_step(self._on_step, f"{EXT_NAME}.control") if driver != "update" else None
        if sub is None:
            if driver == "physics":
                carb.log_warn(f"[{EXT_NAME}] no Isaac Sim / PhysX physics step here; driving from Kit updates.")
            sub = subscribe_update(self._on_step, f"{EXT_NAME}.control")
        self._subs.append(sub)
        _STATS["driver"] = sub.name
        if values.get("window", True):
            self._open_panel()
        _STATS["open_subscriptions"] = self.subscription_count
        _INSTANCE = weakref.ref(self)
        carb.log_info(f"[{EXT_NAME}] controller on {self.viewmodel.task} (seed {self.viewmodel.seed}), "
                      f"driven by {sub.name}")

    @property
    def subscription_count(self) -> int:
        return sum(s.active for s in getattr(self, "_subs", []))

    # ------------------------------------------------------------------ callbacks
    def _on_step(self, dt: float) -> None:
        _STATS["callbacks"] += 1
        vm = self.viewmodel
        if vm is None:
            return
        try:
            for _ in range(self._pacer.due(dt)):
                vm.tick()
                _STATS["ticks"] += 1
        except Exception as exc:
            self._report(exc)

    def _on_refresh(self, dt: float) -> None:
        if self._window is not None:
            try:
                self._window.refresh()
            except Exception as exc:
                self._report(exc)

    def _report(self, exc: Exception) -> None:
        """Log each distinct error once (a failing callback runs every frame)."""
        _STATS["errors"] += 1
        text = f"{type(exc).__name__}: {exc}"
        if self.viewmodel is not None:
            self.viewmodel.error = text
        if text not in self._errors:
            self._errors.add(text)
            carb.log_error(f"[{EXT_NAME}] {text}")

    # ------------------------------------------------------------------ panel
    def _open_panel(self) -> None:
        try:
            from sage_gr00t.panel.omni_view import SagePanelWindow
        except ImportError as exc:
            _STATS["panel"] = "unavailable"
            carb.log_warn(PANEL_UNAVAILABLE.format(reason=exc))
            return
        self._window = SagePanelWindow(self.viewmodel)
        self._subs.append(subscribe_update(self._on_refresh, f"{EXT_NAME}.panel"))
        _STATS["panel"] = "omni.ui"

    # ------------------------------------------------------------------ shutdown
    def on_shutdown(self) -> None:
        global _INSTANCE
        for sub in reversed(getattr(self, "_subs", [])):
            try:
                sub.release()
            except Exception as exc:
                carb.log_warn(f"[{EXT_NAME}] releasing {sub.name}: {exc}")
        self._subs = []
        _STATS["open_subscriptions"] = 0
        if self._window is not None:
            self._window.destroy()
            self._window = None
        if self.viewmodel is not None:
            self.viewmodel.close()
            self.viewmodel = None
        _STATS["shutdowns"] += 1
        _INSTANCE = None
