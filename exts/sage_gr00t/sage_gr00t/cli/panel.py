"""SAGE panel in the browser for the embedded simulator: camera, trust, metabolic state, dreams, commands.

    sage-panel --task pick_apple --port 8765      # then open http://127.0.0.1:8765/

A background thread ticks the simulator at control rate (20 Hz, or as fast as the CPU allows; `--idle-hz` while
no command runs). Type a command ("put the apple on the plate"), press Run; Stop holds the robot, Emergency
stop makes the safety filter hold the measured joint positions (released only by "Release e-stop…" then
"Confirm release"), the slider sets the safety filter's speed scale (10-100 %). The JSON API
(sage_gr00t/panel/web.py): GET /api/state, POST /api/command {text}, POST to /api/stop, /api/estop {engage},
/api/speed {percent}, /api/reset {seed}. Only the panel's own page may use it (JSON content type, Host and
Origin checked); `--token` (generated when `--host` is beyond loopback) makes every request carry it: open the
printed URL, which has `?token=...`.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from dataclasses import dataclass, field
from typing import Annotated

import tyro

from sage_gr00t.cli._parsing import check, parse
from sage_gr00t.panel.config import PanelConfig
from sage_gr00t.tasks import get_task

PROG = "sage-panel"


def _panel_defaults() -> PanelConfig:
    # The command shows the front view (every 4th tick) by default; embedded panels leave it off.
    return PanelConfig(front_view_every=4)


@dataclass
class PanelCommandConfig:
    """The panel's settings (`PanelConfig`: task, policy, planner, seed, speed, dreams, ...) and its server."""

    panel: Annotated[PanelConfig, tyro.conf.arg(name="")] = field(default_factory=_panel_defaults)
    host: str = "127.0.0.1"  # address to listen on (beyond loopback, e.g. 0.0.0.0: a token is required)
    token: str | None = None  # access token (8-128 of A-Za-z0-9_-); none: none on loopback, generated beyond
    port: int = 8765  # TCP port; 0 picks a free one (the URL is printed)
    idle_hz: float = 5.0  # tick rate while no command runs
    verbose: bool = False  # log every HTTP request

    def __post_init__(self) -> None:
        get_task(self.panel.task)  # UnknownTaskError (a ValueError) lists the installed tasks
        check(0 <= self.port <= 65535, f"--port must be in 0..65535, got {self.port}.")
        check(self.idle_hz > 0, f"--idle-hz must be > 0, got {self.idle_hz}.")
        check(self.token is None or re.fullmatch(r"[A-Za-z0-9_-]{8,128}", self.token) is not None,
              "--token must be 8 to 128 characters of A-Z a-z 0-9 _ -.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    cfg = parse(PanelCommandConfig, argv, prog=PROG, description=__doc__)
    from sage_gr00t.panel.viewmodel import PanelViewModel
    from sage_gr00t.panel.web import PanelServer

    p = cfg.panel
    print(f"loading {p.task} (policy {p.policy}, planner {p.planner}) ...", flush=True)
    # The view-model assembles env, policy, planner, dreamer and its bridge with the one session builder
    # (`build_session(PanelConfig.session_config())`), and closes them in `close()`.
    vm = PanelViewModel(p)
    try:
        try:
            server = PanelServer(vm, cfg.host, cfg.port, idle_hz=cfg.idle_hz, verbose=cfg.verbose, token=cfg.token)
        except OSError as exc:
            print(f"cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
            return 2
        # Ctrl-C and SIGTERM stop the panel cleanly, also when it was started with SIGINT ignored (a
        # background job of a non-interactive shell inherits that, and Python then keeps it ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        if server.token is not None and cfg.token is None:
            print(f"listening on {cfg.host} (beyond loopback): generated an access token, in the URL below",
                  flush=True)
        print(f"SAGE panel: {server.url}  (Ctrl-C to quit)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C / SIGTERM: the normal way to quit
            server.serve_forever()
    finally:
        vm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
