"""sage-serve: serve a policy over ZeroMQ, wire-compatible with upstream Isaac-GR00T N1.5's inference service.

    sage-serve --policy assets/policies/gr00t_compact --port 5555

Clients: `sage-eval --policy zmq://HOST:PORT`, `sage_gr00t.policy.remote.RemotePolicyClient`, or upstream's
`RobotInferenceClient` / `scripts/inference_service.py --client`. Binds to loopback unless --host names
another interface; use --api-token on shared networks. --port 0 picks a free port (printed).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import tyro

from sage_gr00t.policy.factory import PolicySpec, PolicySpecError, make_policy
from sage_gr00t.policy.remote import DEFAULT_PORT, PolicyServer


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

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {self.port}.")
        if PolicySpec.parse(self.policy).kind in ("expert", "zmq"):
            raise PolicySpecError(f"--policy {self.policy!r}: serve a checkpoint folder or upstream:CHECKPOINT.")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = tyro.cli(ServeConfig, args=argv, description=__doc__)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        policy = make_policy(cfg.policy, device=cfg.device, embodiment=cfg.embodiment)
        server = PolicyServer(policy, host=cfg.host, port=cfg.port, api_token=cfg.api_token,
                              allow_pickle=cfg.allow_pickle)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"sage-serve: error: {exc}", file=sys.stderr)
        return 2
    print(f"serving {cfg.policy} on {server.address} (Ctrl-C or a 'kill' request stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
