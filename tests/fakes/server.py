"""The HTTP plumbing the fakes share: a threaded server, a request log and scripted faults."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    """Decoded JSON body, raw bytes when not JSON, None when empty."""


@dataclass
class Fault:
    """A scripted answer that replaces the fake's own for the next ``times`` matching requests."""

    method: str
    path: re.Pattern[str]
    status: int
    body: bytes
    times: int
    content_type: str = "application/json"
    hold: threading.Event | None = None
    """If set, the handler waits on it (bounded) before answering: a server that is too slow."""
    hold_s: float = 5.0


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, value: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(value).encode(), "application/json", headers or {})


class FakeServer:
    """Base of the fakes: subclasses implement ``route(call) -> Reply``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body: Any = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw
                call = Call(
                    self.command, split.path, dict(parse_qsl(split.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()}, body,
                )
                reply = fake._answer(call)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        class _Server(ThreadingHTTPServer):
            # A burst of clients (a replay's workers start together) must queue, not be refused.
            request_queue_size = 128

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        for fault in self.faults:
            if fault.hold is not None:
                fault.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(
        self, method: str, path_regex: str, status: int, body: Any = None, *, times: int = 1,
        raw: bytes | None = None, content_type: str = "application/json", hold: threading.Event | None = None,
    ) -> Fault:
        """Answer the next ``times`` requests matching (method, path) with ``status`` and ``body``."""
        payload = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        fault = Fault(method.upper(), re.compile(path_regex), status, payload, times, content_type, hold)
        with self._lock:
            self.faults.append(fault)
        return fault

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        pattern = re.compile(path_regex)
        with self._lock:
            return [c for c in self.calls if c.method == method.upper() and pattern.search(c.path)]

    def _answer(self, call: Call) -> Reply:
        with self._lock:
            self.calls.append(call)
            fault = next(
                (f for f in self.faults if f.times > 0 and f.method == call.method and f.path.search(call.path)), None
            )
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.hold is not None:
                fault.hold.wait(fault.hold_s)
            return Reply(fault.status, fault.body, fault.content_type)
        try:
            return self.route(call)
        except Exception as error:  # noqa: BLE001 - a bug in the fake must show in the test, not hang it
            return json_reply(500, {"error": f"fake failed: {type(error).__name__}: {error}"})

    def route(self, call: Call) -> Reply:
        raise NotImplementedError
