"""A stand-in G1: the project's MuJoCo G1 task env behind the robot's DDS topics, in real time at 500 Hz.

It subscribes rt/arm_sdk and rt/dex3/{left,right}/cmd and publishes rt/lowstate and rt/dex3/{left,right}/state,
as the robot does; head-camera frames go out on a ZMQ image stream -- colour and the depth of the same render with
the camera's intrinsics, as a RealSense D435i gives them (`depth=False`: colour only, as Unitree's image server
streams) -- and a world link (object poses, success, resets by seed) serves tests, demos and benchmarks. What it
models of the real arm_sdk:
  * the blend: each arm joint's servo target is weight * command + (1 - weight) * the pose the locomotion
    controller holds (the embodiment's home), the weight read from motor slot 29;
  * the last command stays in force when commands stop (the robot keeps its last arm_sdk target);
  * a LowCmd_ whose CRC is wrong, or whose targets are non-finite, is dropped.
The servo gains are the simulator's (the backend sends the same values). `encoder_offset_*` fakes a miscalibrated
joint encoder: the reported position is off by that much (the calibration check must refuse it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from sage_gr00t.modality import EGO_CAMERA, action_key
from sage_gr00t.robot.dds import (
    ARM_SDK_TOPIC,
    LOWSTATE_TOPIC,
    RESET_WORD,
    SEQ_WORD,
    DdsDomain,
    hand_cmd_topic,
    hand_state_topic,
)
from sage_gr00t.robot.g1_map import ARM_SDK_WEIGHT_SLOT, BODY_MOTORS, LOWCMD_SLOTS, G1MotorMap
from sage_gr00t.robot.images import DEPTH_ENCODINGS, ImagePublisher
from sage_gr00t.robot.realtime import check_priority, promote_current_thread
from sage_gr00t.robot.world import WorldServer, snapshot
from sage_gr00t.sim.actions import InvalidActionError
from sage_gr00t.sim.embodiment import SIDES

logger = logging.getLogger(__name__)


@dataclass
class StandinConfig:
    """The stand-in robot's task, links and rates."""

    task: str = "pick_apple"
    variant: str = "train"
    seed: int = 0  # scene at start (the world link resets it per episode)
    domain_id: int = 0
    interface: str = "lo"
    image_endpoint: str = "tcp://127.0.0.1:5555"
    world_endpoint: str = "tcp://127.0.0.1:5556"
    world_control_endpoint: str = "tcp://127.0.0.1:5557"
    image_size: int = 224  # square head-camera frames
    camera_hz: float = 10.0
    depth: bool = True  # depth beside colour on the image stream (--no-depth: colour only, as Unitree's image server)
    depth_encoding: str = "raw"  # raw: uint16 millimetres; png: a 16-bit PNG of them (smaller, ~1 ms more per frame)
    # rt/lowstate every n physics steps: 1 is the robot's 500 Hz. Each message costs ~1 ms of Python on both
    # ends (the SDK packs its CRC field by field, Cyclone's Python serializer walks 35 motor structs), so 5
    # (100 Hz) takes most of the stand-in's and the backend's CPU off the link and still refreshes state 5x
    # inside the 50 ms watchdog timeout. Round trips are then seen up to 10 ms later.
    state_every: int = 5
    hand_state_every: int = 10  # Dex3 states every n physics steps (50 Hz: the policy reads them at 20 Hz)
    world_hz: float = 50.0
    encoder_offset_motor: int = -1  # body motor whose reported position is offset (-1: none)
    encoder_offset_rad: float = 0.0
    duration_s: float = 0.0  # stop after this long (0: run until killed)
    realtime_priority: int = 0  # SCHED_FIFO priority of the physics loop (0: off; needs CAP_SYS_NICE)

    def __post_init__(self) -> None:
        checks = ((16 <= self.image_size <= 1024, f"image_size must be in 16..1024, got {self.image_size}"),
                  (0 < self.camera_hz <= 60, f"camera_hz must be in (0, 60], got {self.camera_hz}"),
                  (self.depth_encoding in DEPTH_ENCODINGS,
                   f"depth_encoding must be one of {sorted(DEPTH_ENCODINGS)}, got {self.depth_encoding!r}"),
                  (self.state_every >= 1 and self.hand_state_every >= 1, "state_every / hand_state_every must be >= 1"),
                  (-1 <= self.encoder_offset_motor < BODY_MOTORS,
                   f"encoder_offset_motor must be a body motor 0..{BODY_MOTORS - 1} or -1"))
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Bad stand-in option: {message}.")
        check_priority(self.realtime_priority)


class StandinRobot:
    """The stand-in's physics loop (call `run()`; it blocks) and its links."""

    def __init__(self, config: StandinConfig) -> None:
        from sage_gr00t.tasks import make_env

        self.config = c = config
        self.env = make_env(c.task, embodiment="unitree_g1", variant=c.variant, image_height=c.image_size,
                            image_width=c.image_size)
        self.env.reset(seed=c.seed)  # renders once: the GL context exists before the real-time loop starts
        self.motor_map = G1MotorMap.from_embodiment(self.env.embodiment)
        self._index()
        self.dt = float(self.env.model.opt.timestep)
        self._lock = threading.Lock()
        self._arm_cmd: tuple[np.ndarray, float, int] | None = None  # (35 q, weight, seq) newest valid command
        self._hand_cmd: dict[str, np.ndarray] = {}
        self.dropped = 0
        self.resets = 0
        self.dds = DdsDomain(c.domain_id, c.interface)
        t = self.dds.types
        self._state_writer = self.dds.writer(LOWSTATE_TOPIC, t.LowState_)
        self._hand_writers = {s: self.dds.writer(hand_state_topic(s), t.HandState_) for s in SIDES}
        self.dds.reader(ARM_SDK_TOPIC, t.LowCmd_, self._on_arm_cmd)
        for side in SIDES:
            self.dds.reader(hand_cmd_topic(side), t.HandCmd_, lambda m, s=side: self._on_hand_cmd(s, m))
        self.images = ImagePublisher(c.image_endpoint, c.depth_encoding)
        self.world = WorldServer(c.world_endpoint, c.world_control_endpoint)
        self._state_msg = self.dds.messages.unitree_hg_msg_dds__LowState_()
        self._hand_msgs = {s: self.dds.messages.unitree_hg_msg_dds__HandState_() for s in SIDES}
        self._applied_seq = 0
        self._tick = 0
        self._stop = threading.Event()
        self._camera = threading.Thread(target=self._camera_loop, name="standin-camera", daemon=True)

    def _index(self) -> None:
        m, emb = self.env.model, self.env.embodiment
        self._joint_qpos: dict[str, np.ndarray] = {}
        self._joint_dof: dict[str, np.ndarray] = {}
        for group, joints in emb.state_groups.items():
            self._joint_qpos[action_key(group)] = np.array([m.joint(j).qposadr[0] for j in joints])
            self._joint_dof[action_key(group)] = np.array([m.joint(j).dofadr[0] for j in joints])
        self._rest = self.env.home_action()  # what the locomotion controller holds at arm_sdk weight 0

    # ------------------------------------------------------------------ DDS handlers
    def _on_arm_cmd(self, msg: Any) -> None:
        if self.dds.crc(msg) != msg.crc:
            self.dropped += 1
            return
        q = np.array([m.q for m in msg.motor_cmd], float)
        weight = float(q[ARM_SDK_WEIGHT_SLOT])
        if not np.all(np.isfinite(q)) or not 0.0 <= weight <= 1.0:
            self.dropped += 1
            return
        with self._lock:
            self._arm_cmd = (q, weight, int(msg.reserve[SEQ_WORD]))

    def _on_hand_cmd(self, side: str, msg: Any) -> None:
        q = np.array([m.q for m in msg.motor_cmd], float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            self.dropped += 1
            return
        with self._lock:
            self._hand_cmd[action_key(f"{side}_hand")] = q

    # ------------------------------------------------------------------ physics
    def _apply_commands(self) -> None:
        with self._lock:
            arm_cmd, hand_cmd = self._arm_cmd, dict(self._hand_cmd)
        if arm_cmd is None and not hand_cmd:
            return
        action = {k: v.copy() for k, v in self._rest.items()}
        if arm_cmd is not None:
            q, weight, _ = arm_cmd
            for key, motors in self.motor_map.arm_motors.items():
                action[key] = weight * q[list(motors)] + (1.0 - weight) * self._rest[key]
        action.update(hand_cmd)
        try:
            self.env.data.ctrl[:] = self.env.validate_action(action)
        except InvalidActionError:
            self.dropped += 1
            return
        if arm_cmd is not None:
            self._applied_seq = arm_cmd[2]

    def _publish_state(self) -> None:
        d, c = self.env.data, self.config
        msg = self._state_msg
        q = np.zeros(LOWCMD_SLOTS)
        dq = np.zeros(LOWCMD_SLOTS)
        for key, motors in self.motor_map.arm_motors.items():
            q[list(motors)] = d.qpos[self._joint_qpos[key]]
            dq[list(motors)] = d.qvel[self._joint_dof[key]]
        if c.encoder_offset_motor >= 0:
            q[c.encoder_offset_motor] += c.encoder_offset_rad
        for i in range(BODY_MOTORS):
            ms = msg.motor_state[i]
            ms.q, ms.dq = float(q[i]), float(dq[i])
        msg.tick = self._tick & 0xFFFFFFFF
        msg.reserve[SEQ_WORD] = self._applied_seq & 0xFFFFFFFF
        msg.reserve[RESET_WORD] = self.resets & 0xFFFFFFFF
        msg.crc = self.dds.crc(msg)
        self._state_writer.Write(msg)

    def _publish_hands(self) -> None:
        d = self.env.data
        for side in SIDES:
            key = action_key(f"{side}_hand")
            msg = self._hand_msgs[side]
            for i, (a, v) in enumerate(zip(self._joint_qpos[key], self._joint_dof[key], strict=True)):
                msg.motor_state[i].q, msg.motor_state[i].dq = float(d.qpos[a]), float(d.qvel[v])
            self._hand_writers[side].Write(msg)

    def _camera_loop(self) -> None:
        """Head-camera frames from private renderers on this thread: a software-GL render takes 5-40 ms, which
        would stall the 2 ms physics loop (the render releases the GIL, so the loop keeps its pace). Colour and
        depth are rendered from the same copied state, so they show the same instant."""
        c = self.config
        model = None
        renderers: list[mujoco.Renderer] = []
        data: mujoco.MjData | None = None
        intrinsics: tuple[float, float, float, float] | None = None
        period = 1.0 / c.camera_hz
        next_frame = time.monotonic()
        while not self._stop.is_set():
            next_frame += period
            wait = next_frame - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                next_frame = time.monotonic()
            if model is not self.env.model:  # first frame, or a procedural reset rebuilt the scene
                for r in renderers:
                    r.close()
                model = self.env.model
                data = mujoco.MjData(model)
                renderers = [mujoco.Renderer(model, c.image_size, c.image_size) for _ in range(2 if c.depth else 1)]
                for r in renderers:
                    r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
                    r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
                if c.depth:
                    renderers[1].enable_depth_rendering()
                _, _, *k = self.env.camera_pose_intrinsics(EGO_CAMERA, c.image_size, c.image_size)
                intrinsics = (k[0], k[1], k[2], k[3])  # the simulator's pinhole model, as a RealSense reports its own
            assert data is not None
            with self._lock:
                data.qpos[:] = self.env.data.qpos
                resets = self.resets
            mujoco.mj_forward(model, data)
            for r in renderers:
                r.update_scene(data, camera=EGO_CAMERA)
            depth = renderers[1].render() if c.depth else None
            self.images.publish(renderers[0].render(), depth, intrinsics, reset=resets)
        for r in renderers:
            r.close()

    def _serve_world(self) -> bool:
        request = self.world.poll_request()
        if request is None:
            return False
        if request.get("op") != "reset":
            self.world.reply({"error": f"unknown op {request.get('op')!r}"})
            return False
        with self._lock:  # the commands before the reset were for the old scene
            self.env.reset(seed=request.get("seed"))
            self._arm_cmd = None
            self._hand_cmd.clear()
            self.resets += 1  # under the lock: a camera frame's reset count is that of the scene it shows
        self._publish_world()
        self.world.reply({"instruction": self.env.instruction, "reset": self.resets})
        return True

    def _publish_world(self) -> None:
        self.world.publish(snapshot(self.env.scene, self.env.task, float(self.env.data.time), self.resets))

    def run(self) -> None:
        """Real-time loop: physics at 1 / timestep, state and images published as the robot does."""
        c = self.config
        world_every = max(1, round(1.0 / (c.world_hz * self.dt)))
        start = time.monotonic()
        steps = 0
        self._publish_state()
        self._publish_hands()
        self._publish_world()
        self._camera.start()  # before promoting: the camera thread keeps normal scheduling (renders are long)
        promote_current_thread(c.realtime_priority, "stand-in physics loop")
        logger.info("stand-in G1 up: DDS domain %d on %s, images %s", c.domain_id, c.interface, c.image_endpoint)
        while c.duration_s <= 0 or time.monotonic() - start < c.duration_s:
            if self._serve_world():
                start, steps = time.monotonic(), 0  # the reset took wall time: restart the clock
                self._publish_state()
                self._publish_hands()
            due = int((time.monotonic() - start) / self.dt)
            if due - steps > 50:  # more than 100 ms behind (a slow render): drop the backlog, keep real time
                start = time.monotonic() - steps * self.dt
                due = steps + 1
            while steps < due:
                self._apply_commands()
                mujoco.mj_step(self.env.model, self.env.data)
                steps += 1
                self._tick += 1
                if self._tick % c.state_every == 0:
                    self._publish_state()
                if self._tick % c.hand_state_every == 0:
                    self._publish_hands()
                if self._tick % world_every == 0:
                    self._publish_world()
            wait = start + (steps + 1) * self.dt - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def close(self) -> None:
        self._stop.set()
        if self._camera.is_alive():
            self._camera.join(timeout=2.0)
        self.images.close()
        self.world.close()
        self.dds.close()
        self.env.close()


# ---------------------------------------------------------------------------------------- as a child process
def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandinProcess:
    """`sage-standin` as a child process on loopback with its own DDS domain and free ports (tests, benchmarks).

    `link_config()` is the backend's side of the same endpoints. `kill()` is SIGKILL: the robot vanishing."""

    def __init__(self, domain_id: int, image_size: int = 96, extra_args: tuple[str, ...] = (),
                 log_path: str | None = None) -> None:
        import os
        import subprocess
        import sys

        ports = [free_tcp_port() for _ in range(3)]
        self.domain_id = domain_id
        self.image_endpoint, self.world_endpoint, self.world_control_endpoint = (f"tcp://127.0.0.1:{p}" for p in ports)
        args = [sys.executable, "-m", "sage_gr00t.cli.standin", "--domain-id", str(domain_id), "--interface", "lo",
                "--image-size", str(image_size), "--image-endpoint", self.image_endpoint,
                "--world-endpoint", self.world_endpoint, "--world-control-endpoint", self.world_control_endpoint,
                *extra_args]
        self._log = open(log_path or os.devnull, "w")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def link_kwargs(self) -> dict:
        return {"domain_id": self.domain_id, "interface": "lo", "image_endpoint": self.image_endpoint,
                "world_endpoint": self.world_endpoint, "world_control_endpoint": self.world_control_endpoint}

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except Exception:  # did not stop on Ctrl-C: kill it
                self.kill()
        self._log.close()

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
