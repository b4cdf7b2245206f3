#!/usr/bin/env python
"""SAGE panel in the browser for the embedded simulator: camera, trust, metabolic state, dreams, commands.

    python scripts/panel.py --task pick_apple --port 8765      # then open http://127.0.0.1:8765/

A background thread ticks the simulator at control rate (20 Hz, or as fast as the CPU allows; `--idle-hz`
while no command runs). Type a command ("put the apple on the plate"), press Run; Stop holds the robot,
Emergency stop makes the safety filter hold the measured joint positions, the slider sets the safety
filter's speed scale (10-100 %). JSON API: GET /api/state, POST /api/command {text}, /api/stop,
/api/estop {engage}, /api/speed {percent}, /api/reset {seed} (see sage_gr00t/panel/web.py).
"""

from __future__ import annotations

import argparse
import signal
import sys

from sage_gr00t.memory.metabolic import MetabolicConfig
from sage_gr00t.panel.config import PanelConfig
from sage_gr00t.panel.viewmodel import PanelViewModel
from sage_gr00t.panel.web import PanelServer
from sage_gr00t.tasks import task_names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pick_apple", choices=sorted(task_names()))
    p.add_argument("--policy", default="assets/policies/gr00t_compact", help="checkpoint folder or 'expert'")
    p.add_argument("--planner", default="assets/planner")
    p.add_argument("--seed", type=int, default=1000, help="scene seed (New scene takes the next one)")
    p.add_argument("--embodiment", default="sage_humanoid")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--speed", type=float, default=100.0, help="initial speed, percent (10..100)")
    p.add_argument("--idle-hz", type=float, default=5.0, help="tick rate while no command runs")
    p.add_argument("--front-view", type=int, default=4, metavar="N",
                   help="render the front view every N ticks (0: off; the ego camera is always shown)")
    p.add_argument("--rest-after", type=int, default=None, metavar="STEPS",
                   help="idle steps before the metabolic controller rests (and may dream); default 200")
    p.add_argument("--dream-min", type=int, default=None, metavar="N",
                   help="salient memories needed to dream; default 64")
    p.add_argument("--device", default="cpu")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request")
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metabolic = MetabolicConfig()
    if args.rest_after is not None:
        metabolic.idle_steps_to_rest = args.rest_after
    if args.dream_min is not None:
        metabolic.dream_min_unconsolidated = args.dream_min
    config = PanelConfig(task=args.task, policy=args.policy, planner=args.planner, seed=args.seed,
                         embodiment=args.embodiment, device=args.device, speed_percent=args.speed,
                         front_view_every=args.front_view, metabolic=metabolic)
    print(f"loading {args.task} (policy {args.policy}, planner {args.planner}) ...", flush=True)
    vm = PanelViewModel(config)
    try:
        server = PanelServer(vm, args.host, args.port, idle_hz=args.idle_hz, verbose=args.verbose)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        vm.close()
        return 2
    # Ctrl-C and SIGTERM stop the panel cleanly, also when it was started with SIGINT ignored (a
    # background job of a non-interactive shell inherits that, and Python then keeps it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"SAGE panel: {server.url}  (Ctrl-C to quit)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        vm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
