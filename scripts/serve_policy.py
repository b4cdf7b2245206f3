#!/usr/bin/env python
"""Serve a SAGE-GR00T policy checkpoint over ZeroMQ, wire-compatible with upstream Isaac-GR00T N1.5.

    python scripts/serve_policy.py --policy outputs/train/gr00t/checkpoint-last --port 5555

Clients: `sage_gr00t.policy.remote.RemotePolicyClient(host, port)`, or upstream's
`RobotInferenceClient` / `scripts/inference_service.py --client`. Binds to loopback unless
`--host 0.0.0.0` (or an interface address) is given; use `--api-token` on shared networks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sage_gr00t.policy.remote import DEFAULT_PORT, PolicyServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, required=True, help="native SAGE-GR00T checkpoint folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--api-token", default=None, help="require this token in every request")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also accept the pre-Sep-2025 upstream torch.save encoding (unpickles input: trusted networks only)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.policy.is_dir():
        print(f"error: --policy {args.policy} is not a checkpoint folder", file=sys.stderr)
        return 2
    from sage_gr00t.policy.gr00t import load_policy  # lazy: pulls in torch and the model

    policy = load_policy(args.policy)
    server = PolicyServer(
        policy, host=args.host, port=args.port, api_token=args.api_token, allow_pickle=args.allow_pickle
    )
    print(f"serving {args.policy} on {server.address} (Ctrl-C or a 'kill' request stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
