"""sage-serve: serve a policy over ZeroMQ, wire-compatible with upstream Isaac-GR00T N1.5's inference service.

    sage-serve --policy assets/policies/gr00t_compact --port 5555

Clients: `sage-eval --policy zmq://HOST:PORT`, `sage_gr00t.policy.remote.RemotePolicyClient`, or upstream's
`RobotInferenceClient` / `scripts/inference_service.py --client`. Binds to loopback unless --host names
another interface (it warns when that happens without --api-token); use --api-token on shared networks.
--port 0 picks a free port (printed). A remote 'kill' request needs the token, or --allow-remote-kill when
there is none. --protocol n1.6 (or n1.7) speaks upstream's N1.6 message layout instead (nested batched
observation + options in, [action, info] out: upstream's `PolicyClient`, or `zmq://HOST:PORT?protocol=n1.6`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Literal

from sage_gr00t.cli._parsing import parse
from sage_gr00t.policy.factory import PolicySpec, PolicySpecError, make_policy
from sage_gr00t.policy.remote import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_STATE_ABS,
    DEFAULT_PORT,
    PolicyServer,
)


@dataclass
class ServeConfig:
    policy: str = "assets/policies/gr00t_compact"
    """A checkpoint folder or upstream:CHECKPOINT (the scripted expert reads a simulator: it cannot be served)."""
    embodiment: str | None = None
    """Embodiment whose normalization the checkpoint applies (default: the checkpoint's first)."""
    device: str = "cpu"
    host: str = "127.0.0.1"
    """Address to bind (default: loopback only)."""
    port: int = DEFAULT_PORT
    api_token: str | None = None
    """Require this token in every request."""
    allow_pickle: bool = False
    """Also accept the pre-Sep-2025 upstream torch.save encoding (unpickles input: trusted networks only)."""
    allow_remote_kill: bool = False
    """Let a tokenless 'kill' request stop the server (with --api-token, 'kill' needs the token instead)."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest request accepted, in bytes (larger ones get an error reply)."""
    max_state_abs: float = DEFAULT_MAX_STATE_ABS
    """Largest |value| accepted in a state.* observation array."""
    protocol: Literal["n1.5", "n1.6", "n1.7"] = "n1.5"
    """Message layout: n1.5 (flat observation -> action map) or n1.6/n1.7 (nested batch -> [action, info])."""
    max_batch: int = DEFAULT_MAX_BATCH
    """Largest batch of observations in one N1.6 get_action request."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {self.port}.")
        if self.max_message_bytes < 1024:
            raise ValueError(f"--max-message-bytes must be at least 1024, got {self.max_message_bytes}.")
        if not self.max_state_abs > 0:
            raise ValueError(f"--max-state-abs must be positive, got {self.max_state_abs}.")
        if self.max_batch < 1:
            raise ValueError(f"--max-batch must be at least 1, got {self.max_batch}.")
        if PolicySpec.parse(self.policy).kind in ("expert", "zmq"):
            raise PolicySpecError(f"--policy {self.policy!r}: serve a checkpoint folder or upstream:CHECKPOINT.")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse(ServeConfig, argv, prog="sage-serve", description=__doc__)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        policy = make_policy(cfg.policy, device=cfg.device, embodiment=cfg.embodiment)
        server = PolicyServer(policy, host=cfg.host, port=cfg.port, api_token=cfg.api_token,
                              allow_pickle=cfg.allow_pickle, allow_remote_kill=cfg.allow_remote_kill,
                              max_message_bytes=cfg.max_message_bytes, max_state_abs=cfg.max_state_abs,
                              protocol=cfg.protocol, max_batch=cfg.max_batch)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"sage-serve: error: {exc}", file=sys.stderr)
        return 2
    stops = "Ctrl-C or an authorized 'kill' request" if cfg.api_token or cfg.allow_remote_kill else "Ctrl-C"
    print(f"serving {cfg.policy} on {server.address}, protocol {server.protocol} ({stops} stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
