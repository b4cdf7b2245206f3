"""One DDS domain on one network interface, and the unitree_hg messages the G1 speaks, through Unitree's SDK.

The SDK's `ChannelFactoryInitialize` keeps one domain per process (a singleton); a `DdsDomain` instead owns
its own Cyclone DDS domain and participant and opens the SDK's `Channel`s on it, so a process (a test, the
benchmark) can hold a controller and a spy on the same domain, or several domains, without global state.

Topics (Unitree's names): rt/lowstate (LowState_, 500 Hz on the robot), rt/arm_sdk (LowCmd_ whose motor slot
29 carries the arm_sdk weight), rt/dex3/{left,right}/cmd (HandCmd_) and rt/dex3/{left,right}/state (HandState_).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from sage_gr00t.robot.g1_map import LOWCMD_SLOTS

LOWSTATE_TOPIC = "rt/lowstate"
ARM_SDK_TOPIC = "rt/arm_sdk"
LOWCMD_TOPIC = "rt/lowcmd"  # full-body low-level command; never used here (the legs stay Unitree's)


def hand_cmd_topic(side: str) -> str:
    return f"rt/dex3/{side}/cmd"


def hand_state_topic(side: str) -> str:
    return f"rt/dex3/{side}/state"


# Reserve words of LowCmd_ / LowState_ this project uses (the robot ignores them): the command's sequence
# number, and -- on the stand-in only -- the sequence number of the last command the physics applied.
SEQ_WORD = 0
# Stand-in only, in LowState_: how many world resets its scene has had. A state sent before a reset can arrive
# after the reset was asked for (a loaded machine delays delivery); the backend waits for this count instead.
RESET_WORD = 1

_INSTALL_HINT = ("the G1 backend needs Unitree's SDK and Cyclone DDS: pip install -e '.[robot]' "
                 "(unitree-sdk2py-dimos==1.0.3, cyclonedds==11.0.1)")


def _sdk() -> Any:
    try:
        import unitree_sdk2py.core.channel as channel
        import unitree_sdk2py.idl.default as default
        import unitree_sdk2py.idl.unitree_hg.msg.dds_ as hg
        from unitree_sdk2py.utils.crc import CRC
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc}).") from exc
    return channel, default, hg, CRC


def _domain_xml(interface: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", interface):
        raise ValueError(f"Network interface {interface!r} is not an interface name (e.g. lo, eth0, enp3s0).")
    # Unicast discovery would also work; Unitree's own config names the interface and leaves multicast default.
    return ('<?xml version="1.0" encoding="UTF-8" ?><CycloneDDS><Domain Id="any"><General><Interfaces>'
            f'<NetworkInterface name="{interface}" priority="default" multicast="default"/>'
            "</Interfaces></General></Domain></CycloneDDS>")


class DdsDomain:
    """A Cyclone DDS domain + participant on `interface`; opens the SDK's channels on it."""

    def __init__(self, domain_id: int, interface: str = "lo") -> None:
        if not (isinstance(domain_id, int) and 0 <= domain_id <= 232):
            raise ValueError(f"DDS domain id must be an integer in 0..232, got {domain_id!r}.")
        channel, default, hg, crc_cls = _sdk()
        from cyclonedds.domain import Domain, DomainParticipant

        self.domain_id, self.interface = domain_id, interface
        self._channel_cls = channel.Channel
        self.messages = default  # the SDK's zero-filled message constructors
        self.types = hg
        self._crc = crc_cls()
        self._crc_lock = threading.Lock()  # the SDK's CRC helper packs into shared buffers
        self._domain = Domain(domain_id, _domain_xml(interface))
        self._participant = DomainParticipant(domain_id)
        self._channels: list[Any] = []

    def writer(self, topic: str, msg_type: type) -> Any:
        ch = self._channel_cls(self._participant, topic, msg_type)
        ch.SetWriter(None)
        self._channels.append(ch)
        return ch

    def reader(self, topic: str, msg_type: type, handler: Callable[[Any], None]) -> Any:
        ch = self._channel_cls(self._participant, topic, msg_type)
        ch.SetReader(None, handler, 0)
        self._channels.append(ch)
        return ch

    def crc(self, msg: Any) -> int:
        with self._crc_lock:
            return int(self._crc.Crc(msg))

    # ------------------------------------------------------------------ message builders / readers
    def arm_sdk_command(self, q: np.ndarray, kp: np.ndarray, kd: np.ndarray, weight: float, seq: int) -> Any:
        """LowCmd_ for rt/arm_sdk: 35 slots of (q, kp, kd) with servo mode on where kp > 0; slot 29's q = weight."""
        msg = self.messages.unitree_hg_msg_dds__LowCmd_()
        for i in range(LOWCMD_SLOTS):
            m = msg.motor_cmd[i]
            m.q, m.kp, m.kd, m.dq, m.tau = float(q[i]), float(kp[i]), float(kd[i]), 0.0, 0.0
            m.mode = 1 if kp[i] > 0 else 0
        msg.motor_cmd[29].q = float(weight)
        msg.reserve[SEQ_WORD] = int(seq) & 0xFFFFFFFF
        msg.crc = self.crc(msg)
        return msg

    def hand_command(self, q: np.ndarray, kp: np.ndarray, kd: np.ndarray, seq: int) -> Any:
        from sage_gr00t.robot.g1_map import dex3_mode

        msg = self.messages.unitree_hg_msg_dds__HandCmd_()
        for i, m in enumerate(msg.motor_cmd):
            m.mode = dex3_mode(i)
            m.q, m.kp, m.kd, m.dq, m.tau = float(q[i]), float(kp[i]), float(kd[i]), 0.0, 0.0
        msg.reserve[SEQ_WORD] = int(seq) & 0xFFFFFFFF
        return msg

    def close(self) -> None:
        for ch in self._channels:
            try:
                ch.CloseReader()
                ch.CloseWriter()
            except Exception:  # closing what may already be closed
                pass
        self._channels.clear()
        # Delete the participant and the domain now, not when garbage collection gets to them: Cyclone refuses a
        # second Domain of the same id in a process while the first exists, so a process that closes one backend
        # and opens the next (sage-deploy run in-process after another controller) would fail. Entity.__del__ is
        # cyclonedds' own delete and is idempotent (a later collection of the objects does nothing).
        for entity in (self._participant, self._domain):
            entity.__del__()


def motor_q(msg: Any, count: int) -> np.ndarray:
    return np.array([msg.motor_state[i].q for i in range(count)], np.float64)


def motor_dq(msg: Any, count: int) -> np.ndarray:
    return np.array([msg.motor_state[i].dq for i in range(count)], np.float64)


def command_q(msg: Any) -> np.ndarray:
    return np.array([m.q for m in msg.motor_cmd], np.float64)
