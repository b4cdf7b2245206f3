"""What drives the controller inside Kit: Isaac Sim's physics step when there is one, else Kit's update loop.

Thin, guarded adapters; each returns a `Subscription` whose `release()` ends it (the extension releases all
of them in `on_shutdown`):
- `subscribe_physics_step(fn)`: Isaac Sim's `SimulationManager.register_callback(..., event=IsaacEvents.
  PRE_PHYSICS_STEP)` (or `SimulationEvent.PHYSICS_PRE_STEP` in later Isaac Sim), else raw PhysX
  `get_physx_interface().subscribe_physics_step_events(fn)`; None when neither is importable.
- `subscribe_update(fn)`: Kit's per-frame update event (`carb.eventdispatcher` observer of
  `omni.kit.app.GLOBAL_EVENT_UPDATE`; the legacy update event stream on older Kits).
`fn` receives the step's dt in seconds. `Pacer` turns those dts into control ticks (20 Hz by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Subscription:
    """A named subscription; `release()` ends it once (later calls do nothing)."""

    def __init__(self, name: str, release: Callable[[], Any], handle: Any = None) -> None:
        self.name = name
        self._release: Callable[[], Any] | None = release
        self._handle = handle  # Kit subscriptions live as long as their handle object

    @property
    def active(self) -> bool:
        return self._release is not None

    def release(self) -> None:
        release, self._release = self._release, None
        try:
            if release is not None:
                release()
        finally:
            self._handle = None

    def __repr__(self) -> str:
        return f"Subscription({self.name!r}, active={self.active})"


def event_dt(args: tuple, default: float = 1.0 / 60.0) -> float:
    """The dt of a callback's arguments: a number (physics step) or an event with a 'dt' payload (Kit update)."""
    if not args:
        return default
    first = args[0]
    if isinstance(first, int | float):
        return float(first)
    for source in (first, getattr(first, "payload", None)):
        try:
            value = source["dt"]  # carb.eventdispatcher.Event and payload dicts
        except (KeyError, TypeError, IndexError, AttributeError):
            continue
        if isinstance(value, int | float):
            return float(value)
    return default


def subscribe_physics_step(fn: Callable[[float], None], name: str = "sage_gr00t") -> Subscription | None:
    """Per-physics-step callback inside Isaac Sim / PhysX; None when neither is importable here."""
    try:
        import isaacsim.core.simulation_manager as simulation_manager
    except ImportError:
        simulation_manager = None
    if simulation_manager is not None:
        manager = simulation_manager.SimulationManager
        event = getattr(getattr(simulation_manager, "IsaacEvents", None), "PRE_PHYSICS_STEP", None)
        if event is None:
            event = getattr(getattr(simulation_manager, "SimulationEvent", None), "PHYSICS_PRE_STEP", None)
        if event is not None:
            callback_id = manager.register_callback(lambda *args: fn(event_dt(args)), event=event)
            return Subscription("isaacsim.pre_physics_step", lambda: manager.deregister_callback(callback_id))
    try:
        from omni.physx import get_physx_interface
    except ImportError:
        return None
    handle = get_physx_interface().subscribe_physics_step_events(lambda dt: fn(float(dt)))
    return Subscription("omni.physx.physics_step", getattr(handle, "unsubscribe", lambda: None), handle)


def subscribe_update(fn: Callable[[float], None], name: str = "sage_gr00t") -> Subscription:
    """Kit's per-frame update event."""
    import omni.kit.app

    try:
        import carb.eventdispatcher

        guard = carb.eventdispatcher.get_eventdispatcher().observe_event(
            event_name=omni.kit.app.GLOBAL_EVENT_UPDATE, on_event=lambda event: fn(event_dt((event,))),
            observer_name=name)
        return Subscription("kit.update", guard.reset, guard)
    except (ImportError, AttributeError):  # older Kit: the update event stream
        stream = omni.kit.app.get_app().get_update_event_stream()
        sub = stream.create_subscription_to_pop(lambda event: fn(event_dt((event,))), name=name)
        return Subscription("kit.update_stream", getattr(sub, "unsubscribe", lambda: None), sub)


class Pacer:
    """Control ticks from frame / physics dts: one tick per `1 / hz` seconds (at most one per call; a slow
    frame does not make the robot catch up in a burst). `realtime=False`: one tick per call."""

    def __init__(self, hz: float = 20.0, realtime: bool = True) -> None:
        if hz <= 0:
            raise ValueError(f"control rate must be > 0 Hz, got {hz}.")
        self.period, self.realtime, self.elapsed = 1.0 / hz, realtime, 0.0

    def due(self, dt: float) -> int:
        if not self.realtime:
            return 1
        self.elapsed += max(float(dt), 0.0)
        if self.elapsed < self.period:
            return 0
        self.elapsed = min(self.elapsed - self.period, self.period)
        return 1
