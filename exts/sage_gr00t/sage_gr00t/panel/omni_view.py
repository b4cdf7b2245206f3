"""omni.ui view of the SAGE panel: draws `PanelViewModel.state()` and forwards clicks. Nothing else.

Imports omni.ui at module level (the extension catches the ImportError where Kit has no omni.ui).
`refresh()` is called from Kit's update loop and redraws at most `REFRESH_S` apart.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import omni.ui as ui

from sage_gr00t.panel.config import SPEED_RANGE
from sage_gr00t.panel.viewmodel import PanelViewModel, robot_summary

STATUS_COLORS = {"running": 0xFFFF9A4C, "planning": 0xFFFF9A4C, "succeeded": 0xFF6FB93F, "done": 0xFF6FB93F,
                 "failed": 0xFF4D48E5, "refused": 0xFF4D48E5, "estop": 0xFF4D48E5, "stopped": 0xFF30A0E0}


def _rgba(image: np.ndarray) -> tuple[list[int], list[int]]:
    h, w = image.shape[:2]
    rgba = np.concatenate([image[..., :3], np.full((h, w, 1), 255, np.uint8)], axis=-1)
    return rgba.ravel().tolist(), [w, h]


def _png_to_rgba(data: bytes) -> tuple[list[int], list[int]]:
    from PIL import Image

    return _rgba(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


class _Bars:
    """Name + ProgressBar rows; the frame is rebuilt only when the set of names changes."""

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}
        self.names: tuple[str, ...] = ()
        self.frame = ui.Frame(height=0)
        self.frame.set_build_fn(self._build)

    def _build(self) -> None:
        with ui.VStack(spacing=2, height=0):
            for name in self.names:
                with ui.HStack(height=18):
                    ui.Label(name, width=130)
                    ui.ProgressBar(self.models[name])

    def update(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.models.setdefault(name, ui.SimpleFloatModel(0.0)).set_value(float(value or 0.0))
        if tuple(values) != self.names:
            self.names = tuple(values)
            self.frame.rebuild()


class _Plots:
    """One ui.Plot line per trust series (0..1)."""

    def __init__(self) -> None:
        self.plots: dict[str, Any] = {}
        self.series: dict[str, list[float]] = {}
        self.frame = ui.Frame(height=0)
        self.frame.set_build_fn(self._build)

    def _build(self) -> None:
        self.plots = {}
        with ui.VStack(spacing=2, height=0):
            for name, values in self.series.items():
                ui.Label(name, height=14)
                self.plots[name] = ui.Plot(ui.Type.LINE, 0.0, 1.0, *(values or [0.0]), height=40)

    def update(self, series: dict[str, list[float | None]]) -> None:
        clean = {k: [v for v in vals if v is not None and v == v] for k, vals in series.items()}
        rebuild = tuple(clean) != tuple(self.series)
        self.series = clean
        if rebuild:
            self.frame.rebuild()
            return
        for name, values in clean.items():
            if name in self.plots and values:
                self.plots[name].set_data(*values)


class SagePanelWindow:
    REFRESH_S = 0.25

    def __init__(self, vm: PanelViewModel, title: str = "SAGE-GR00T") -> None:
        self.vm = vm
        self._last = 0.0
        self._dreams_shown = -1
        self._command = ui.SimpleStringModel(vm.command_text or vm.example_command)
        self._speed = ui.SimpleFloatModel(vm.speed_percent)
        self._speed_cb = self._speed.add_value_changed_fn(lambda m: self.vm.set_speed(m.get_value_as_float()))
        self._camera = ui.ByteImageProvider()
        self._thumbs: list[Any] = []
        self.window = ui.Window(title, width=480, height=900)
        with self.window.frame, ui.ScrollingFrame(), ui.VStack(spacing=6, height=0):
            self._status = ui.Label("", height=22)
            self._message = ui.Label("", word_wrap=True, height=0)
            self._robot = ui.Label("", word_wrap=True, height=0)  # a deployment's link / speed / watchdog
            ui.ImageWithProvider(self._camera, width=224, height=224)
            ui.StringField(self._command, height=22)
            with ui.HStack(height=26, spacing=4):
                ui.Button("Run", clicked_fn=lambda: self.vm.run(self._command.get_value_as_string()))
                ui.Button("Stop", clicked_fn=self.vm.stop)
                self._estop = ui.Button("Emergency stop", clicked_fn=self._toggle_estop,
                                        style={"background_color": 0xFF3B3BC8})
                ui.Button("Sleep now", clicked_fn=self.vm.sleep_now)
                ui.Button("New scene", clicked_fn=lambda: self.vm.reset())
            with ui.HStack(height=20):
                ui.Label("Speed %", width=70)
                ui.FloatSlider(self._speed, min=SPEED_RANGE[0], max=SPEED_RANGE[1], step=5)
            ui.Label("Plan", height=16)
            self._plan = ui.Label("", word_wrap=True, height=0)
            ui.Label("Sensor trust", height=16)
            self._sensor_bars = _Bars()
            ui.Label("Component trust", height=16)
            self._component_bars = _Bars()
            ui.Label("Trust history", height=16)
            self._plots = _Plots()
            self._metabolic = ui.Label("", word_wrap=True, height=0)
            ui.Label("SNARC salience (last step)", height=16)
            self._snarc_bars = _Bars()
            ui.Label("Dreams", height=16)
            self._dreams = ui.Frame(height=0)
            self._dreams.set_build_fn(self._build_dreams)
        self.refresh(force=True)

    def _toggle_estop(self) -> None:
        if self.vm.bridge.safety.estop_engaged:
            self.vm.release_estop()
        else:
            self.vm.emergency_stop()

    def _build_dreams(self) -> None:
        self._thumbs = []
        with ui.VStack(spacing=4, height=0):
            for cycle in reversed(self.vm.dreams):
                with ui.HStack(height=64, spacing=2):
                    for data in cycle.thumbnails:
                        provider = ui.ByteImageProvider()
                        provider.set_bytes_data(*_png_to_rgba(data))
                        self._thumbs.append(provider)
                        ui.ImageWithProvider(provider, width=64, height=64)
                ui.Label(f"sleep {cycle.id}: replayed {cycle.replayed}, dreamt {len(cycle.dreams)}; "
                         + "; ".join(cycle.captions[:2]), word_wrap=True, height=0)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.REFRESH_S:
            return
        self._last = now
        s = self.vm.state()
        status = "sleeping" if s["sleeping"] else s["status"]
        self._status.text = f"{status.upper()}   {s['task']} seed {s['seed']} step {s['step']}"
        self._status.style = {"color": STATUS_COLORS.get(s["status"], 0xFFDDDDDD)}
        self._message.text = s["message"] + (f"\nerror: {s['error']}" if s["error"] else "")
        self._robot.text = robot_summary(s.get("robot"))
        frame = self.vm.frame("ego")
        if frame is not None:
            self._camera.set_bytes_data(*_rgba(frame))
        self._plan.text = "\n".join(f"{i + 1}. {p['language']} ({p['status']})" for i, p in enumerate(s["plan"])) \
            or s["plan_message"] or "no plan"
        self._estop.text = "Release e-stop" if s["safety"]["estop"] else "Emergency stop"
        self._sensor_bars.update({k: v["trust"] for k, v in s["trust"]["sensors"].items()})
        self._component_bars.update(s["trust"]["components"])
        history = s.get("history", {})
        self._plots.update({**{f"sensor {k}": v for k, v in history.get("sensors", {}).items()},
                            **history.get("components", {})})
        m = s["metabolic"]
        self._metabolic.text = (f"Metabolic: {m['state'].upper()}  energy {m['energy']:.2f}  "
                                f"buffer {s['buffer']['size']} salient ({s['buffer']['unconsolidated']} new)")
        self._snarc_bars.update({k: v for k, v in s["snarc"].items() if k != "salient"})
        latest = s["dreams"][0]["id"] if s["dreams"] else 0
        if latest != self._dreams_shown:
            self._dreams_shown = latest
            self._dreams.rebuild()

    def destroy(self) -> None:
        if self._speed_cb is not None:
            self._speed.remove_value_changed_fn(self._speed_cb)
            self._speed_cb = None
        self._thumbs = []
        if self.window is not None:
            self.window.destroy()
            self.window = None
