"""A fault-injecting HTTP proxy on loopback, in front of the OpenWhisk fake, for the replayer's tests.

Every request is passed on to the upstream (the fake), except that invocations (``POST`` to an
action) meet the fault the test's ``plan`` gives for their index (0, 1, 2, ... in the order the proxy
received them). A fault acts before the platform sees the call (the call does not run) or after
(the fake runs it and records an activation, then the proxy spoils the answer), so a test knows
exactly how many calls ran and can compare them with the rows the replayer wrote.
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

from fakes.openwhisk import FakeOpenWhisk

LISTEN_BACKLOG = 128
"""Listen backlog of the servers here: a replay opens up to ``concurrency`` connections at once, and
socketserver's default of 5 makes the kernel reset the ones beyond it (recorded as ``lost``)."""

HOLD_CAP_S = 120.0
"""Longest a held answer waits for its release: a test that forgets to release still ends."""


class RoomyFakeOpenWhisk(FakeOpenWhisk):
    """The OpenWhisk fake, listening with a backlog a replay's burst of connections fits in."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server.socket.listen(LISTEN_BACKLOG)

    @property
    def executions(self) -> int:
        """Activations the fake ran (every invocation that reached it)."""
        with self._state:
            return len(self.activations)


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one invocation."""

    name: str
    """Short name, used as a test id."""
    forward: bool
    """Whether the call reaches the platform (and runs) before the fault."""
    status: int = 0
    """HTTP status answered instead of the platform's; 0: the platform's own."""
    body: str = "platform"
    """``platform`` (the platform's answer), ``error`` ({"error": ...}), ``error+id`` (with the
    activation id), ``truncated`` (JSON cut short), ``bad-record`` (the record with a non-numeric
    duration), ``html`` (a gateway's error page)."""
    delay_s: float = 0.0
    """Wait before answering, s (a slow platform)."""
    hold: bool = False
    """Never answer until released (a hung platform)."""
    drop: str = ""
    """``before``: close without answering; ``during``: send the head and half the body, then close."""


PASS = Fault("pass", forward=True)


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``upstream``, faulting invocations by ``plan``."""

    def __init__(self, upstream: str, plan: Callable[[int], Fault] = lambda index: PASS) -> None:
        split = urlsplit(upstream)
        self.upstream = (split.hostname or "127.0.0.1", split.port or 80)
        self.plan = plan
        self.invocations = 0
        """Invocations received so far."""
        self.faults: list[Fault] = []
        """The fault met by each invocation, in order received."""
        self.received = threading.Event()
        """Set when the first invocation arrives."""
        self.release = threading.Event()
        """Set to answer held invocations (also set by :meth:`stop`)."""
        self.holding = 0
        """Invocations being held right now."""
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                invocation = self.command == "POST" and "/actions/" in self.path
                fault = proxy._next_fault() if invocation else PASS
                status, headers, answer = (0, {}, b"")
                if fault.forward:
                    status, headers, answer = proxy._forward(self.command, self.path, dict(self.headers), body)
                if fault.delay_s:
                    proxy.release.wait(fault.delay_s)
                if fault.hold:
                    proxy._hold()
                if fault.drop == "before":
                    self.close_connection = True
                    return
                status, answer = proxy._spoil(fault, status, answer)
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if fault.body == "html" else "application/json")
                self.send_header("Content-Length", str(len(answer)))
                for key in ("x-openwhisk-activation-id",):
                    if key in headers:
                        self.send_header(key, headers[key])
                self.end_headers()
                if fault.drop == "during":
                    self.wfile.write(answer[: len(answer) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(answer)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket.listen(LISTEN_BACKLOG)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self) -> Fault:
        with self._lock:
            fault = self.plan(self.invocations)
            self.invocations += 1
            self.faults.append(fault)
        self.received.set()
        return fault

    def _hold(self) -> None:
        with self._lock:
            self.holding += 1
        try:
            self.release.wait(HOLD_CAP_S)
        finally:
            with self._lock:
                self.holding -= 1

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type")}
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    @staticmethod
    def _spoil(fault: Fault, status: int, answer: bytes) -> tuple[int, bytes]:
        record: dict[str, Any] = {}
        if answer:
            try:
                decoded = json.loads(answer)
                record = decoded if isinstance(decoded, dict) else {}
            except ValueError:
                record = {}
        out_status = fault.status or status
        if fault.body == "platform":
            return out_status, answer
        if fault.body == "error":
            return out_status, json.dumps({"error": f"injected {fault.name}"}).encode()
        if fault.body == "error+id":
            return out_status, json.dumps({"error": f"injected {fault.name}",
                                           "activationId": record.get("activationId", "")}).encode()
        if fault.body == "truncated":
            return out_status, answer[: max(len(answer) // 2, 1)] or b'{"activationId": "'
        if fault.body == "bad-record":
            return out_status, json.dumps({**record, "duration": "slow", "annotations": "none"}).encode()
        if fault.body == "html":
            return out_status, b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        raise ValueError(f"unknown body {fault.body!r}")
