"""Web view of the SAGE panel: the same `PanelViewModel` served as a local page (stdlib http.server only).

    vm = PanelViewModel(PanelConfig(task="pick_apple"))
    server = PanelServer(vm, port=8765).start()   # also starts the ControlLoop that ticks the simulator
    ... server.url ...
    server.stop()

Security (the panel moves a robot): every POST must be `Content-Type: application/json` (415: a cross-origin
page cannot send that without a CORS preflight, which this server never grants); a request whose `Host` is not
the panel's own address, or whose `Origin` (when sent) is not `http://<that Host>`, is refused with 403 (other
web pages, DNS rebinding); with a token (`PanelServer(token=...)`, `sage-panel --token`; generated when bound
beyond loopback, where it is required) every request but /health needs it: `X-SAGE-Token: <token>` (the page
sends that) or `?token=<token>` (the URL printed at start, images), else 401.

Endpoints (JSON in and out unless noted):
    GET  /                      the page (index.html next to this file; plain JS + SVG, no CDN)
    GET  /api/state             view-model state (?history=0 leaves the trust history out)
    POST /api/command {text}    plan and run a command ("run" is an alias; no text: the last command again)
    POST /api/stop              abort; the robot holds its pose
    POST /api/estop {engage}    engage (default) or release ({"engage": false}) the emergency stop
    POST /api/speed {percent}   speed slider, a number in 10..100 (%); anything else: 400
    POST /api/reset {seed}      new scene (no seed: the next one)
    POST /api/sleep             a sleep cycle now (replay, dreams, consolidation) unless a command runs
    GET  /camera.jpg?view=ego   latest camera image (ego or front; .png also served)
    GET  /dream/<id>/<k>.png    dream thumbnail
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import math
import re
import secrets
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from sage_gr00t.panel.config import SPEED_RANGE
from sage_gr00t.panel.viewmodel import ControlLoop, PanelViewModel

PAGE = Path(__file__).with_name("index.html")
_DREAM = re.compile(r"^/dream/([0-9]{1,9})/([0-9]{1,9})\.png$")
_DIGITS = re.compile(r"^[0-9]{1,12}$")
MAX_BODY = 64 * 1024
TOKEN_HEADER = "X-SAGE-Token"
REQUEST_QUEUE = 128  # listen backlog: a burst of connections (many tabs, a script) is queued, not dropped
REQUEST_TIMEOUT_S = 20.0  # a client that stops sending mid-request releases its thread after this


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; False for wildcards (0.0.0.0, ::, "") and other addresses."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _json_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # ------------------------------------------------------------------ replies
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")  # no clickjacking of the buttons from a framing page
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: dict, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(payload, allow_nan=False, default=str).encode(), "application/json")

    def _error(self, status: int, message: str, *, close: bool = False) -> None:
        if close:  # the request body was not read: the connection cannot carry another request
            self.close_connection = True
        self._json({"ok": False, "message": message}, status)

    # ------------------------------------------------------------------ checks
    def _allowed(self, query: dict[str, list[str]]) -> bool:
        """Host, Origin and token checks for every request; replies (and returns False) when refused."""
        srv = self.server
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or not srv.host_allowed(hosts[0]):
            self._error(HTTPStatus.FORBIDDEN, "Host is not this panel's address", close=True)
            return False
        origins = self.headers.get_all("Origin") or []
        if len(origins) > 1 or (origins and origins[0].strip().lower() != "http://" + hosts[0].strip().lower()):
            self._error(HTTPStatus.FORBIDDEN, "cross-origin requests are refused", close=True)
            return False
        if srv.token is not None and urlparse(self.path).path != "/health":
            sent = self.headers.get(TOKEN_HEADER) or query.get("token", [""])[0]
            if not hmac.compare_digest(sent.encode("utf-8", "replace"), srv.token.encode()):
                self._error(HTTPStatus.UNAUTHORIZED, "this panel needs its token: open the URL sage-panel "
                            f"printed (…/?token=…) or send the {TOKEN_HEADER} header", close=True)
                return False
        return True

    def _body(self) -> dict | None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "POST needs Content-Type: application/json", close=True)
            return None
        if self.headers.get("Transfer-Encoding") is not None:
            self._error(HTTPStatus.BAD_REQUEST, "Transfer-Encoding is not supported; send Content-Length",
                        close=True)
            return None
        lengths = self.headers.get_all("Content-Length") or ["0"]
        if len(set(lengths)) != 1 or not _DIGITS.match(lengths[0].strip()):
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length", close=True)
            return None
        length = int(lengths[0])
        if length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY} bytes", close=True)
            return None
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            self._error(HTTPStatus.BAD_REQUEST, "request body shorter than its Content-Length", close=True)
            return None
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw, parse_constant=_json_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, deep nesting
            message = "too deeply nested" if isinstance(exc, RecursionError) else str(exc)
            self._error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {message}"[:300])
            return None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
            return None
        return body

    # ------------------------------------------------------------------ routes
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.headers.get("Transfer-Encoding") is not None or (self.headers.get("Content-Length") or "0") != "0":
            self.close_connection = True  # a body on GET is never read: no further request on this connection
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _guarded(self, route: Callable[[dict[str, list[str]]], None]) -> None:
        """Checks, then the route; an unexpected error is a JSON 500, never a dropped connection."""
        try:
            query = parse_qs(urlparse(self.path).query)
            if self._allowed(query):
                route(query)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # the server must keep answering
            self.close_connection = True
            if self.server.verbose:
                self.log_error("error on %s: %r", self.path, exc)
            with contextlib.suppress(OSError):
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

    def _get(self, query: dict[str, list[str]]) -> None:
        vm = self.server.vm
        url = urlparse(self.path)
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

    def _post(self, query: dict[str, list[str]]) -> None:
        vm = self.server.vm
        path = urlparse(self.path).path
        body = self._body()
        if body is None:
            return
        try:
            if path in ("/api/command", "/api/run"):
                text = body.get("text")
                if text is not None and not isinstance(text, str):
                    self._error(HTTPStatus.BAD_REQUEST, "'text' must be a string")
                    return
                ok = vm.run(text)
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
                lo, hi = SPEED_RANGE
                percent = body.get("percent")
                if isinstance(percent, bool) or not isinstance(percent, (int, float)):
                    self._error(HTTPStatus.BAD_REQUEST, f"'percent' must be a number in {lo:g}..{hi:g}")
                    return
                if not (math.isfinite(percent) and lo <= percent <= hi):
                    self._error(HTTPStatus.BAD_REQUEST, f"'percent' must be in {lo:g}..{hi:g}, got {percent!r}")
                    return
                vm.set_speed(percent)
                ok = True
            elif path == "/api/sleep":
                ok = vm.sleep_now()
            elif path == "/api/reset":
                seed = body.get("seed")
                if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                                         or not 0 <= seed < 2**32):
                    self._error(HTTPStatus.BAD_REQUEST, "'seed' must be an integer in 0..2**32-1")
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
    request_queue_size = REQUEST_QUEUE

    def __init__(self, address: tuple[str, int], vm: PanelViewModel, verbose: bool, token: str | None) -> None:
        super().__init__(address, _Handler)
        self.vm, self.verbose, self.token = vm, verbose, token
        host, port = address[0], int(self.server_address[1])
        names = {"127.0.0.1", "localhost", "[::1]", host.lower()}
        self.wildcard = host in ("", "0.0.0.0", "::")
        if self.wildcard:  # every interface: this machine's names too (and any IP literal, see host_allowed)
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.port = port
        self.hosts = {f"{n}:{port}" for n in names if n}
        if port == 80:
            self.hosts |= {n for n in names if n}

    def host_allowed(self, value: str) -> bool:
        """The Host header names this panel: its bound address or a loopback form with its port (DNS rebinding:
        an attacker's name resolving to this machine is refused). Bound to every interface: also this
        machine's names and any IP literal with the panel's port (the token is required there)."""
        host = value.strip().lower()
        if host in self.hosts:
            return True
        if self.wildcard:
            name, sep, port = host.rpartition(":")
            return bool(sep) and port == str(self.port) and _is_ip_literal(name)
        return False


class PanelServer:
    """HTTP server + control loop for one view-model; `start()` returns self, `stop()` ends both.

    `token`: required on every request (see the module doc); None on loopback: none needed (Host, Origin and
    Content-Type checks still hold); None beyond loopback: one is generated (`server.url` carries it)."""

    def __init__(self, vm: PanelViewModel, host: str = "127.0.0.1", port: int = 8765, *, tick: bool = True,
                 idle_hz: float = 5.0, verbose: bool = False, token: str | None = None) -> None:
        if token is not None and not re.fullmatch(r"[A-Za-z0-9_-]{8,128}", token):
            raise ValueError("the panel token must be 8..128 characters of A-Z a-z 0-9 _ -")
        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(18)
        self.vm, self.token = vm, token
        self.httpd = _Server((host, port), vm, verbose, token)
        self.loop = ControlLoop(vm, idle_hz=idle_hz) if tick else None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.httpd.server_address[0])
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

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
