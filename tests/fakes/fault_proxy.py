"""A fault-injecting HTTP proxy on 127.0.0.1, in front of a real server (localwhisk, Prometheus).

It forwards every request to ``upstream`` and returns the answer, unless a fault is set:

=============  ====================================================================================
fault          what a client sees
=============  ====================================================================================
``pass``       the upstream's own answer
``slow``       the upstream's answer, ``delay_s`` late
``hang``       nothing: the request is held (until the fault ends, at most ``hold_s``), then dropped
``trickle``    the upstream's answer, one byte every ``delay_s``: no read ever waits long, the whole does
``status``     ``status`` (500, 429, 503, 401, ...) with an OpenWhisk-style JSON error body
``malformed``  200 with an HTML page where JSON was promised
``refuse``     connection refused: the proxy stops listening on its port (and listens again after)
``rewrite``    the upstream's answer passed through ``rewrite(path, body) -> body`` (garbled records)
=============  ====================================================================================

Every connection is closed after its answer (HTTP/1.0), so a fault applies from the next request
on, whatever keep-alive a client would like. :attr:`FaultProxy.held` counts requests that met
``hang`` (tests wait on :attr:`FaultProxy.hanging` to know a client is stuck).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

#: Headers that belong to one connection and are not forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}

FAULTS = ("pass", "slow", "hang", "trickle", "status", "malformed", "refuse", "rewrite")


@dataclass(frozen=True)
class Fault:
    """What the proxy does to the next requests."""

    kind: str = "pass"
    """One of :data:`FAULTS`."""
    status: int = 500
    """Status of a ``status`` fault."""
    delay_s: float = 1.0
    """Delay of ``slow``; time between two bytes of ``trickle``."""
    rewrite: Callable[[str, bytes], bytes] | None = None
    """What ``rewrite`` does to an answer's body, given the request's path."""


class FaultProxy:
    """See the module docstring. ``with FaultProxy(url) as proxy: proxy.set(Fault("hang"))``."""

    def __init__(self, upstream: str, hold_s: float = 60.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold_s = hold_s
        """Longest a ``hang`` holds a request, s (so that a forgotten test cannot leave threads behind)."""
        self.fault = Fault()
        self.held = 0
        """Requests that met ``hang`` so far."""
        self.forwarded = 0
        """Requests forwarded to the upstream so far."""
        self.hanging = threading.Event()
        """Set when a request is being held."""
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def set(self, fault: Fault | str) -> None:
        """Apply ``fault`` from the next request on (``pass`` ends any fault and frees held requests)."""
        fault = Fault(fault) if isinstance(fault, str) else fault
        if fault.kind not in FAULTS:
            raise ValueError(f"unknown fault {fault.kind!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            previous, self.fault = self.fault, fault
            if fault.kind != "hang":
                self._released.set()
                self.hanging.clear()
            else:
                self._released.clear()
        if fault.kind == "refuse" and previous.kind != "refuse":
            self._close()
        elif fault.kind != "refuse" and previous.kind == "refuse":
            self._listen()

    def start(self) -> Self:
        self._listen()
        return self

    def stop(self) -> None:
        self._released.set()
        self._close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the server -----------------------------------------------------------------------------

    def _listen(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

            def _serve(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fault-proxy", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        fault = self.fault
        if fault.kind == "hang":
            with self._lock:
                self.held += 1
            self.hanging.set()
            self._released.wait(self.hold_s)
            handler.close_connection = True
            return  # no answer at all: the client's own bounds must end its wait
        if fault.kind == "status":
            self._reply(handler, fault.status, json.dumps({"error": f"injected {fault.status}",
                                                           "code": "0" * 32}).encode(), "application/json")
            return
        if fault.kind == "malformed":
            self._reply(handler, 200, b"<html><body>upstream login page</body></html>", "text/html")
            return
        if fault.kind == "slow":
            threading.Event().wait(fault.delay_s)
        status, headers, payload = self._forward(handler.command, handler.path, handler.headers, body)
        if fault.kind == "trickle":
            self._trickle(handler, status, headers, payload, fault.delay_s)
            return
        if fault.kind == "rewrite" and fault.rewrite is not None:
            payload = fault.rewrite(handler.path, payload)
        self._reply(handler, status, payload, headers.get("Content-Type", "application/json"), headers)

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(split.hostname, split.port, timeout=self.hold_s)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            payload = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}}
            with self._lock:
                self.forwarded += 1
            return response.status, kept, payload
        finally:
            connection.close()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes, content_type: str,
               headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            if key.lower() not in ("content-type", "date", "server"):
                handler.send_header(key, value)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _trickle(self, handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes,
                 delay_s: float) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", headers.get("Content-Type", "application/json"))
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        pause = threading.Event()
        for i in range(len(payload)):
            handler.wfile.write(payload[i:i + 1])
            handler.wfile.flush()
            if self.fault.kind == "trickle":  # the rest goes at once when the fault ends
                pause.wait(delay_s)
