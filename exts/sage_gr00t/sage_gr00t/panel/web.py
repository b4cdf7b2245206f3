"""Web view of the SAGE panel: the same `PanelViewModel` served as a local page (stdlib http.server only).

    vm = PanelViewModel(PanelConfig(task="pick_apple"))
    server = PanelServer(vm, port=8765).start()   # also starts the ControlLoop that ticks the simulator
    ... server.url ...
    server.stop()

Endpoints (JSON in and out unless noted):
    GET  /                      the page (index.html next to this file; plain JS + SVG, no CDN)
    GET  /api/state             view-model state (?history=0 leaves the trust history out)
    POST /api/command {text}    plan and run a command ("run" is an alias; no text: the last command again)
    POST /api/stop              abort; the robot holds its pose
    POST /api/estop {engage}    engage (default) or release the emergency stop
    POST /api/speed {percent}   speed slider, 10..100 %
    POST /api/reset {seed}      new scene (no seed: the next one)
    POST /api/sleep             a sleep cycle now (replay, dreams, consolidation) unless a command runs
    GET  /camera.jpg?view=ego   latest camera image (ego or front; .png also served)
    GET  /dream/<id>/<k>.png    dream thumbnail
"""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from sage_gr00t.panel.viewmodel import ControlLoop, PanelViewModel

PAGE = Path(__file__).with_name("index.html")
_DREAM = re.compile(r"^/dream/(\d+)/(\d+)\.png$")
MAX_BODY = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # ------------------------------------------------------------------ replies
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: dict, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(payload, allow_nan=False, default=str).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"ok": False, "message": message}, status)

    def _body(self) -> dict | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return None
        if length < 0 or length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY} bytes")
            return None
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}")
            return None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
            return None
        return body

    # ------------------------------------------------------------------ routes
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        vm = self.server.vm
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif url.path == "/api/state":
            history = query.get("history", ["1"])[0] not in ("0", "false")
            self._json(_finite(vm.state(history=history)))
        elif url.path in ("/camera.jpg", "/camera.png"):
            view = query.get("view", ["ego"])[0]
            if view not in ("ego", "front"):
                self._error(HTTPStatus.BAD_REQUEST, "view must be 'ego' or 'front'")
                return
            fmt = "png" if url.path.endswith(".png") else "jpeg"
            data = vm.image(view, fmt)
            if data is None:
                self._error(HTTPStatus.NOT_FOUND, f"no {view} image (start the panel with --front-view)")
            else:
                self._send(HTTPStatus.OK, data, "image/png" if fmt == "png" else "image/jpeg")
        elif (m := _DREAM.match(url.path)) is not None:
            data = vm.dream_thumbnail(int(m.group(1)), int(m.group(2)))
            if data is None:
                self._error(HTTPStatus.NOT_FOUND, "no such dream thumbnail")
            else:
                self._send(HTTPStatus.OK, data, "image/png")
        elif url.path == "/health":
            self._json({"ok": True})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"unknown path {url.path}")

    def do_POST(self) -> None:
        vm = self.server.vm
        path = urlparse(self.path).path
        body = self._body()
        if body is None:
            return
        try:
            if path in ("/api/command", "/api/run"):
                text = body.get("text")
                ok = vm.run(text if text is not None else None)
            elif path == "/api/stop":
                vm.stop()
                ok = True
            elif path == "/api/estop":
                engage = body.get("engage", True)
                if not isinstance(engage, bool):
                    self._error(HTTPStatus.BAD_REQUEST, "'engage' must be true or false")
                    return
                vm.emergency_stop() if engage else vm.release_estop()
                ok = True
            elif path == "/api/speed":
                if "percent" not in body:
                    self._error(HTTPStatus.BAD_REQUEST, "send {\"percent\": 10..100}")
                    return
                vm.set_speed(body["percent"])
                ok = True
            elif path == "/api/sleep":
                ok = vm.sleep_now()
            elif path == "/api/reset":
                seed = body.get("seed")
                if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
                    self._error(HTTPStatus.BAD_REQUEST, "'seed' must be a non-negative integer")
                    return
                vm.reset(seed)
                ok = True
            else:
                self._error(HTTPStatus.NOT_FOUND, f"unknown path {path}")
                return
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        state = vm.state(history=False)
        self._json({"ok": bool(ok), "message": state["message"], "status": state["status"],
                    "speed_percent": state["safety"]["speed_percent"]})


def _finite(value: object) -> object:
    """NaN/inf -> None so the reply is strict JSON (history series start with NaN for late sensors)."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], vm: PanelViewModel, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.vm, self.verbose = vm, verbose


class PanelServer:
    """HTTP server + control loop for one view-model; `start()` returns self, `stop()` ends both."""

    def __init__(self, vm: PanelViewModel, host: str = "127.0.0.1", port: int = 8765, *, tick: bool = True,
                 idle_hz: float = 5.0, verbose: bool = False) -> None:
        self.vm = vm
        self.httpd = _Server((host, port), vm, verbose)
        self.loop = ControlLoop(vm, idle_hz=idle_hz) if tick else None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/"

    def start(self) -> PanelServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="sage-panel-http", daemon=True)
        self._thread.start()
        if self.loop is not None:
            self.loop.start()
        return self

    def serve_forever(self) -> None:
        """Blocking form for scripts: control loop in the background, HTTP in this thread."""
        if self.loop is not None:
            self.loop.start()
        try:
            self.httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.stop()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()
