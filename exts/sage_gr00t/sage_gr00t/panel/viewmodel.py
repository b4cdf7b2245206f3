"""The SAGE panel's state and actions, free of any UI toolkit (omni.ui and the web page only draw it).

One `PanelViewModel` drives one controller session: a task environment (the embedded MuJoCo simulator by
default) and a `SAGEGr00TBridge` around a policy and the H-module planner. `tick()` advances one control
step (bridge.step -> env.step); something else calls it at control rate (`ControlLoop` thread for the web
panel, Kit's update or physics-step events in the Omniverse extension).

    vm = PanelViewModel(PanelConfig(task="pick_apple", seed=1000))
    vm.run("put the apple on the plate")   # -> the planner at the next tick
    for _ in range(300): vm.tick()
    vm.state()                             # JSON-ready dict: status, plan, trust (+ history), metabolic, SNARC, dreams

Actions: `run(text)` (plan and execute a command; an empty command is refused here with a message and the
robot keeps holding), `stop()` (abort; the robot holds its pose), `emergency_stop()` / `release_estop()`
(the safety filter holds the measured joint positions; engaged before the lock is taken, so it is effective
at the next filter call even while a tick is in flight), `set_speed(percent)` (10..100 % -> the safety
filter's speed scale), `reset(seed)` (new scene), `sleep_now()` (a sleep cycle at the next tick).

Settings live in `panel.config`, image helpers in `panel.imaging`, and sleep cycles (run off the lock, their
gallery) in `panel.sleep`.
"""

from __future__ import annotations

import math
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from sage_gr00t.bridge import SAGEGr00TBridge
from sage_gr00t.modality import EGO_VIEW
from sage_gr00t.panel.config import SPEED_RANGE, STATUSES, PanelConfig
from sage_gr00t.panel.imaging import encode_jpeg, encode_png, release_gl_context, thumbnail
from sage_gr00t.panel.sleep import THUMBNAIL_KEY, SleepCycle, gallery, run_sleep_cycle
from sage_gr00t.plan.planner import HModulePlanner
from sage_gr00t.policy.base import Policy
from sage_gr00t.session import build_session
from sage_gr00t.tasks import task_names
from sage_gr00t.tasks.protocols import TaskEnv


def robot_summary(robot: dict | None) -> str:
    """A deployment's indicators (`state()["robot"]`, see docs/ROBOT.md) as the Kit panel's few lines; "" without
    a robot. The web panel draws the same fields (index.html, renderRobot)."""
    if not robot:
        return ""
    link, speed, watchdog = robot["link"], robot["speed"], robot["watchdog"]
    holding = f" (holding: {link['holding']})" if link["holding"] else ""
    return (f"Robot link {str(link['status']).upper()}{holding}, weight {link['weight']:.2f}\n"
            f"Speed stage {speed['stage'] + 1}/{len(speed['stages'])}: {speed['speed_percent']:g}% "
            f"(clean {speed['clean_streak']}/{speed['clean_needed']})\n"
            f"Watchdog trips {watchdog['trips']}, rejected commands {link['rejected_commands']}"
            + (", E-STOP" if robot["estop"] else ""))


def clean_command(text: object, max_chars: int) -> tuple[str, str]:
    """(command, problem): control characters dropped and whitespace collapsed; problem is '' when usable."""
    if not isinstance(text, str):
        return "", f"The command must be text, got {type(text).__name__}."
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = " ".join(text.split())
    if not text:
        return "", "Type a command first, e.g. 'put the apple on the plate'. The robot keeps holding still."
    if len(text) > max_chars:
        return "", f"The command is {len(text)} characters long; at most {max_chars} are accepted. Robot holding."
    if not any(ch.isalpha() for ch in text):
        return "", f"{text!r} has no words; type a command such as 'put the apple on the plate'. Robot holding."
    return text, ""


class PanelBridge(SAGEGr00TBridge):
    """The bridge with two panel hooks: the last scored experience, and camera thumbnails on salient ones.

    Both are read by the view-model: the last experience for the live SNARC / salience readout, the thumbnails
    (`Experience.trajectory[THUMBNAIL_KEY]`) by the sleep gallery (`sleep.gallery`)."""

    thumbnail_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_experience = None
        self.last_command = None  # the SafeCommand sent to the robot at the last step

    def learn(self, obs: dict, command: Any, outcome: str, subtask: Any = None) -> Any:
        admitted = self.buffer.n_offered - self.buffer.n_rejected
        exp = super().learn(obs, command, outcome, subtask)
        self.last_experience, self.last_command = exp, command
        image = obs.get(EGO_VIEW)
        if image is not None and self.buffer.n_offered - self.buffer.n_rejected > admitted:
            exp.trajectory = {**(exp.trajectory or {}), THUMBNAIL_KEY: thumbnail(image, self.thumbnail_size)}
        return exp


class PanelViewModel:
    """State and actions of the SAGE panel over one controller session (env + bridge). Thread-safe."""

    # A robot deployment's indicators (link state, speed stage, watchdog trips): `sage_gr00t.robot.protocol.
    # DeploymentRunner.panel_state`, set by whoever runs one; `state()["robot"]` is None without a robot.
    robot_panel: Callable[[], dict] | None = None

    def __init__(self, config: PanelConfig | None = None, *, env: TaskEnv | None = None, policy: Policy | None = None,
                 planner: HModulePlanner | None = None) -> None:
        self.config = c = config or PanelConfig()
        self._lock = threading.RLock()
        self._build_session(env, policy, planner)
        self.ticks = 0
        self.episode = 0
        self.seed = c.seed
        self.dreams: deque[SleepCycle] = deque(maxlen=c.max_dreams)
        self._dream_ids = 0
        self.sleeping = False
        self._sleep_requested = False
        self.log: deque[dict] = deque(maxlen=c.log_len)
        self.closed = False
        self.error = ""
        self.bridge.safety.set_speed_scale(c.speed_percent / 100.0)
        self.reset(c.seed)

    def _build_session(self, env: TaskEnv | None = None, policy: Policy | None = None,
                       planner: HModulePlanner | None = None) -> None:
        """The controller session from the shared builder (`sage_gr00t.session`): env (made from the config when
        None; then the view-model closes it), policy, planner, dreamer / sleep trainer, and the panel's bridge."""
        session = build_session(self.config.session_config(), env=env, policy=policy, planner=planner,
                                bridge_cls=PanelBridge, with_bridge=True)
        if session.dreamer is not None:
            release_gl_context()  # the dreamer rendered on this thread; the control loop ticks on another
        self.session = session  # closed with the view-model (what it made itself: env, dreamer)
        self.env, self.policy, self.planner = session.env, session.policy, session.planner
        self.dreamer, self.sleep_trainer = session.dreamer, session.sleep_trainer
        self.bridge = session.bridge
        self.bridge.thumbnail_size = self.config.thumbnail_size

    # ------------------------------------------------------------------ helpers
    def _note(self, text: str) -> None:
        self.log.append({"tick": self.ticks, "step": self.bridge.steps, "text": text})

    def _set(self, status: str, message: str) -> None:
        assert status in STATUSES, status
        self.status, self.message = status, message
        self._note(message)

    @property
    def task(self) -> str:
        return getattr(self.env, "task_name", self.config.task)

    @property
    def example_command(self) -> str:
        return self.env.task.example_command

    # ------------------------------------------------------------------ actions
    def reset(self, seed: int | None = None) -> None:
        """New episode on a new scene (seed None: the next seed). Keeps speed, e-stop, memory and dreams."""
        with self._lock:
            if self.sleeping:
                self.message = "The robot is asleep (replaying and dreaming); a new scene when it wakes."
                self._note(self.message)
                return
            self.seed = self.seed + 1 if seed is None and self.episode > 0 else int(self.seed if seed is None else seed)
            try:
                obs, info = self.env.reset(seed=self.seed)
                self.bridge.reset(obs, meta={"seed": self.seed, "source": "panel"})
                self._obs = obs
                self._front: np.ndarray | None = None
                self._render_front()
            finally:
                release_gl_context()
            self.episode += 1
            self.command_text = ""
            self.plan: list[dict] = []
            self.plan_message = ""
            self.success = bool(info.get("success", False))
            self.succeeded_at: int | None = None
            self._awaiting_plan = False
            self._bridge_events = 0
            self.command_steps = 0
            self.history: deque[dict] = deque(maxlen=self.config.history_len)
            self._images: dict[str, tuple[int, bytes]] = {}
            self._record()
            if self.bridge.safety.estop_engaged:
                self._set("estop", "Emergency stop engaged: the safety filter holds the robot. Release it to continue.")
            else:
                self._set("idle", f"New scene: {self.task}, seed {self.seed}. Type a command and press Run"
                          + (f" (e.g. '{self.example_command}')." if self.example_command else "."))

    def run(self, text: str | None = None) -> bool:
        """Plan and execute a command (None: the last one again). Returns False (with a message) if refused here."""
        with self._lock:
            if self.bridge.safety.estop_engaged:
                self.message = "The emergency stop is engaged; release it before running a command."
                self._note(self.message)
                return False
            if self.sleeping:
                self.message = "The robot is asleep (replaying and dreaming); run the command when it wakes."
                self._note(self.message)
                return False
            command, problem = clean_command(self.command_text if text is None else text,
                                             self.config.max_command_chars)
            if problem:
                if self.bridge.active or self._awaiting_plan:  # a bad command aborts the old one: hold still
                    self.bridge.command("")
                    self._bridge_events = 0
                    self._awaiting_plan = False
                self._set("idle" if self.status in ("running", "planning") else self.status, problem)
                return False
            self.bridge.command(command)
            self.bridge.lmodule.executor.reset()  # a fresh chunk from the current observation
            self._bridge_events = 0
            self._awaiting_plan = True
            self.command_text = command
            self.command_steps = 0
            self.plan, self.plan_message = [], ""
            self._set("planning", f"Planning {command!r} from the perceived scene...")
            return True

    def stop(self) -> None:
        """Abort the command; the robot holds its current pose (Run re-plans from the perceived scene)."""
        with self._lock:
            self._abort()
            if self.bridge.safety.estop_engaged:
                return
            self._set("stopped", "Stopped: the robot holds its pose. Run re-plans the command from what it sees now.")

    def emergency_stop(self) -> None:
        """The safety filter holds the measured joint positions from its next call on, until released."""
        self.bridge.safety.engage_estop()  # first, without waiting for a tick in flight
        with self._lock:
            self._abort()
            self._set("estop", "EMERGENCY STOP: the safety filter holds the robot at its measured pose. "
                               "Release the e-stop, then Run to continue.")

    def release_estop(self) -> None:
        with self._lock:
            if not self.bridge.safety.estop_engaged:
                return
            self.bridge.safety.release_estop()
            self._set("stopped", "Emergency stop released; the robot holds still. Press Run to continue.")

    def set_speed(self, percent: object) -> float:
        """Speed slider (10..100 %) -> the safety filter's speed scale (velocity and acceleration limits)."""
        try:
            value = float(percent)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"Speed must be a number of percent in 10..100, got {percent!r}.") from None
        if not math.isfinite(value):
            raise ValueError(f"Speed must be a finite number of percent in 10..100, got {percent!r}.")
        lo, hi = SPEED_RANGE
        value = min(max(value, lo), hi)
        with self._lock:
            self.bridge.safety.set_speed_scale(value / 100.0)
            self._note(f"speed {value:.0f}%")
        return value

    @property
    def speed_percent(self) -> float:
        return 100.0 * self.bridge.safety.speed_scale

    def _abort(self) -> None:
        if self.bridge.active or self._awaiting_plan:
            self.bridge.command("")  # clears the plan; the bridge holds the robot where it is
            self._bridge_events = 0
        self._awaiting_plan = False
        for entry in self.plan:
            if entry["status"] in ("running", "pending"):
                entry["status"] = "aborted"

    # ------------------------------------------------------------------ the control step
    def sleep_now(self) -> bool:
        """Ask for a sleep cycle at the next tick even if the metabolic controller is not in DREAM (not while a
        command runs). Returns False with a message when refused."""
        with self._lock:
            if self.sleeping:
                self.message = "Already asleep."
                return False
            if self.status in ("planning", "running"):
                self.message = "Not now: a command is running (Stop it first, or let it finish)."
                self._note(self.message)
                return False
            self._sleep_requested = True
            self._note("sleep requested")
            return True

    def tick(self) -> dict:
        """One control step: bridge.step (perceive, plan, act, learn) -> env.step; status; a sleep cycle
        when the metabolic controller (or `sleep_now`) asks for one."""
        out = self._tick()
        if out.get("sleep"):
            self._sleep(forced=out["sleep"] == "forced")
        return out

    def _tick(self) -> dict:
        with self._lock:
            if self.closed:
                return {"ticked": False}
            try:
                action = self.bridge.step(self._obs)
                obs, _, _, _, info = self.env.step(action)
                self._obs = obs
                if self.config.front_view_every and (self.ticks + 1) % self.config.front_view_every == 0:
                    self._render_front()
            finally:
                release_gl_context()
            self.ticks += 1
            if self.status in ("planning", "running"):
                self.command_steps += 1
            self.success = bool(info.get("success", False))
            self._follow_bridge()
            self._record()
            out = {"ticked": True, "tick": self.ticks, "status": self.status}
            if self.bridge.metabolic.should_sleep or self._sleep_requested:
                out["sleep"] = "metabolic" if self.bridge.metabolic.should_sleep else "forced"
                self._sleep_requested = False
                self.sleeping = True
                self._replay = self.bridge.buffer.pending()  # most salient first, before consolidation
                self._note("sleeping: replaying salient memories" + (" and dreaming" if self.dreamer else ""))
            return out

    def _follow_bridge(self) -> None:
        bridge = self.bridge
        if self._awaiting_plan and bridge.plan_result is not None:
            self._awaiting_plan = False
            result = bridge.plan_result
            if result.ok:
                self.plan_message = bridge.message
                self._set("running", f"Plan ({len(result.subtasks)} subtask"
                          f"{'s' if len(result.subtasks) != 1 else ''}, {result.latency_ms:.0f} ms): "
                          + "; ".join(s.language for s in result.subtasks))
            else:
                self.plan_message = result.message
                self._set("refused", f"The planner refused the command ({result.refusal}): {result.message} "
                          "The robot holds still.")
        if bridge.plan_result is not None and bridge.plan_result.ok:
            current = bridge.pending[0] if bridge.active else None
            self.plan = [{"skill": s.skill, "object": s.object_name, "target": s.target_name,
                          "language": s.language,
                          "status": "done" if s in bridge.completed else "failed" if s in bridge.failed
                          else "running" if s == current else "pending"} for s in bridge.plan_result.subtasks]
        for event in bridge.events[self._bridge_events:]:
            if event["kind"] in ("done", "failed", "retry"):
                self._note(f"subtask {event['kind']}: {event['subtask']}")
        self._bridge_events = len(bridge.events)
        if self.status != "running":
            return
        if self.success and self.config.stop_on_success:
            self.succeeded_at = self.command_steps
            bridge.end_episode(True)
            self._abort()
            for entry in self.plan:
                if entry["status"] == "aborted":
                    entry["status"] = "done"  # the task's own success predicate covers the whole plan
            self._set("succeeded", f"Task succeeded in {self.command_steps} control steps "
                      f"(the {self.task} success check holds); the robot holds still.")
        elif not bridge.active:
            if bridge.failed:
                self._set("failed", f"Finished with failed subtasks: {'; '.join(s.language for s in bridge.failed)}.")
            else:
                self.succeeded_at = self.command_steps if self.success else None
                self._set("succeeded" if self.success else "done",
                          f"Plan done in {self.command_steps} control steps"
                          + (" and the task's success check holds." if self.success else "."))

    def _sleep(self, forced: bool) -> None:
        """One sleep cycle, outside the lock (see `sleep.run_sleep_cycle`), then its gallery under the lock."""
        bridge = self.bridge
        n_dreams = len(bridge.dreams)
        summary, error, seconds = run_sleep_cycle(bridge)
        with self._lock:
            self.sleeping = False
            replay, self._replay = self._replay, []
            if summary is None:
                self.error = error
                self._note(error or "sleep cycle skipped")
                return
            shots, captions = gallery(list(bridge.dreams)[n_dreams:], replay, self.config.thumbnails_per_dream)
            self._dream_ids += 1
            cycle = SleepCycle.from_summary(self._dream_ids, self.ticks, self.episode, summary, shots, captions,
                                            seconds, forced)
            self.dreams.append(cycle)
            self._note(cycle.log_text())

    def _render_front(self) -> None:
        h, w = self.config.front_view_size
        render = getattr(self.env, "render_camera", None)
        if self.config.front_view_every and render is not None:
            self._front = render("front_view", h, w)

    def _record(self) -> None:
        trust = self.bridge.trust
        exp = self.bridge.last_experience
        self.history.append({
            "tick": self.ticks,
            "sensors": {k: float(v) for k, v in trust.trusts().items()},
            "components": {k: float(v) for k, v in trust.components.items()},
            "salience": float(exp.salience) if exp is not None else 0.0,
        })

    # ------------------------------------------------------------------ reading
    def joint_positions(self) -> np.ndarray:
        with self._lock:
            state = self.env.state()
            return np.concatenate([np.ravel(state[k]) for k in sorted(state)])

    def frame(self, view: str = "ego") -> np.ndarray | None:
        with self._lock:
            if view == "front":
                return None if self._front is None else self._front.copy()
            return np.array(self._obs[EGO_VIEW], copy=True)

    def image(self, view: str = "ego", fmt: str = "jpeg") -> bytes | None:
        """The latest camera image, encoded (cached per tick)."""
        with self._lock:
            key, tick = f"{view}.{fmt}", self.ticks
            cached = self._images.get(key)
            if cached is not None and cached[0] == tick:
                return cached[1]
            frame = self.frame(view)
        if frame is None:
            return None
        data = encode_png(frame) if fmt == "png" else encode_jpeg(frame)
        with self._lock:
            self._images[key] = (tick, data)
        return data

    def dream_thumbnail(self, dream_id: int, index: int) -> bytes | None:
        with self._lock:
            for d in self.dreams:
                if d.id == dream_id and 0 <= index < len(d.thumbnails):
                    return d.thumbnails[index]
        return None

    def state(self, history: bool = True) -> dict:
        """Everything the panel draws, as a JSON-ready dict."""
        with self._lock:
            bridge, trust = self.bridge, self.bridge.trust
            sensors = {}
            for name in trust.sensors:
                st = trust.sensors[name]
                sensors[name] = {"trust": round(trust.trust(name), 4), "frozen": bool(st.frozen),
                                 **{k: round(float(v), 4) for k, v in vars(st.scores).items()}}
            exp = bridge.last_experience
            snarc = {k: round(float(v), 4) for k, v in exp.scores.as_dict().items()} if exp and exp.scores else {}
            if snarc:
                snarc["salient"] = bool(exp.salience >= bridge.buffer.config.threshold)
            meta = bridge.metabolic
            out = {
                "sleeping": self.sleeping,
                "task": self.task, "tasks": task_names(), "seed": self.seed, "episode": self.episode,
                "tick": self.ticks,
                "step": bridge.steps, "command_steps": self.command_steps,
                "status": self.status, "message": self.message, "error": self.error,
                "command": self.command_text, "example_command": self.example_command,
                "plan": [dict(p) for p in self.plan], "plan_message": self.plan_message,
                "success": self.success, "succeeded_at": self.succeeded_at,
                "trust": {"sensors": sensors,
                          "components": {k: round(float(v), 4) for k, v in trust.components.items()}},
                "metabolic": {"state": str(meta.state), "energy": round(meta.energy, 4),
                              "salience_level": round(meta.salience_level, 4), "failure_streak": meta.failure_streak,
                              "transitions": [{"step": s, "state": str(st), "reason": r}
                                              for s, st, r in meta.transitions[-6:]]},
                "snarc": snarc,
                "buffer": {"size": len(bridge.buffer), "unconsolidated": bridge.buffer.n_unconsolidated,
                           "offered": bridge.buffer.n_offered},
                "dreams": [d.summary() for d in reversed(self.dreams)],
                "safety": {"speed_percent": round(self.speed_percent, 1), "estop": bridge.safety.estop_engaged,
                           "interventions": {k: int(v) for k, v in bridge.safety.stats.items()},
                           "calls": bridge.safety.calls},
                "overhead_ms": {k: round(v, 2) for k, v in bridge.overhead_ms().items()},
                "log": list(self.log)[-12:],
                "has_front_view": self._front is not None,
                "robot": self.robot_panel() if self.robot_panel is not None else None,
            }
            if history:
                samples = list(self.history)
                names = sorted({n for s in samples for n in s["sensors"]})
                comps = sorted({n for s in samples for n in s["components"]})
                out["history"] = {
                    "tick": [s["tick"] for s in samples],
                    "sensors": {n: [round(s["sensors"].get(n, float("nan")), 4) for s in samples] for n in names},
                    "components": {n: [round(s["components"].get(n, float("nan")), 4) for s in samples]
                                   for n in comps},
                    "salience": [round(s["salience"], 4) for s in samples],
                }
            return out

    def close(self, timeout: float = 120.0) -> None:
        """Close the simulator(s); a sleep cycle in flight is cancelled and waited for (it uses the
        dreamer's simulator): at most the dream episode or training update it is in."""
        for part in (self.dreamer, self.sleep_trainer):
            if part is not None:
                part.cancel()
        deadline = time.monotonic() + timeout
        while self.sleeping and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.session.close()
            finally:
                release_gl_context()


class ControlLoop:
    """Background thread that calls `vm.tick()` at control rate (at `idle_hz` while nothing runs)."""

    ACTIVE = ("planning", "running", "estop")  # ticked at control rate; other statuses at idle_hz

    def __init__(self, vm: PanelViewModel, hz: float | None = None, idle_hz: float = 5.0) -> None:
        self.vm, self.hz, self.idle_hz = vm, float(hz or vm.config.control_hz), float(idle_hz)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ControlLoop:
        self._thread = threading.Thread(target=self._run, name="sage-panel-control", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        import traceback

        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self.vm.tick()
            except Exception as exc:  # keep the panel alive; show the error and hold off a little
                self.vm.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                self._stop.wait(1.0)
            hz = self.hz if self.vm.status in self.ACTIVE else self.idle_hz
            self._stop.wait(max(0.0, 1.0 / hz - (time.perf_counter() - t0)))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
