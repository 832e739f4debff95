"""The platform on HTTP: a bounded threading server, and :class:`LocalWhisk` to start and stop it.

Each connection gets a thread, up to ``max_http_handlers`` at once; a connection beyond that is
answered 503 straight away and closed (a blocking invocation may hold its thread for a minute, so an
unbounded pool could grow without limit). Shutdown stops accepting, lets running activations finish
(``drain_timeout_s``), removes every container and cgroup, then closes the socket.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from localwhisk import __version__
from localwhisk.api import MAX_BODY_BYTES, Api, Request
from localwhisk.cgroups import CgroupDriver
from localwhisk.clock import Clock
from localwhisk.config import PlatformConfig
from localwhisk.engine import Platform

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"localwhisk/{__version__}"
    # A buffered writer: headers and body leave together when the base class flushes after each
    # request, instead of the headers going out in a packet of their own.
    wbufsize = 1 << 16
    # An idle keep-alive connection gives its handler slot back after this long, s.
    timeout = 120
    server: BoundedHTTPServer

    def setup(self) -> None:
        super().setup()
        # Replies are written in one piece; without TCP_NODELAY, Nagle's algorithm meeting the
        # client's delayed ACK adds about 40 ms to every small request/response exchange.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, b'{"error":"The request content exceeds the allowed size."}', "application/json", {})
            self.close_connection = True
            return
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.server.api.handle(request)
        self._send(response.status, response.encoded(), response.content_type, response.headers)

    def _send(self, status: int, payload: bytes, content_type: str, headers: Any) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class BoundedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most ``max_handlers`` connections served at once."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Api, max_handlers: int) -> None:
        self.api = api
        self._slots = threading.BoundedSemaphore(max_handlers)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"error": "The server is too busy; retry later.", "code": ""}).encode()
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class LocalWhisk:
    """A running platform: ``with LocalWhisk(config) as whisk: ... whisk.url ...``."""

    def __init__(self, config: PlatformConfig, clock: Clock | None = None, cgroups: CgroupDriver | None = None) -> None:
        self.config = config
        self.platform = Platform(config, clock=clock, cgroups=cgroups)
        self.api = Api(self.platform)
        self._server: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the platform is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:3233`` (the ``apihost`` of OpenWhisk clients)."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> LocalWhisk:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        BoundedHTTPServer.address_family = family
        self._server = BoundedHTTPServer((self.config.host, self.config.port), self.api, self.config.max_http_handlers)
        self.api.api_host = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, name="localwhisk-http", daemon=True)
        self._thread.start()
        self.platform.start_janitor()
        status = self.platform.cgroups.status
        if status.cpu_control:
            log.info(
                "localwhisk %s listening on %s; cgroups %s (cpu: %s, memory: %s)%s",
                __version__, self.url, status.mode, status.cpu_dir, status.memory_dir or "RLIMIT_AS",
                f"; note: {status.reason}" if status.reason else "",
            )
        else:
            log.warning(
                "localwhisk %s listening on %s WITHOUT CPU control (CPU shares are recorded but not enforced): %s",
                __version__, self.url, status.reason,
            )
        return self

    def stop(self) -> None:
        """Graceful: stop accepting, drain, remove containers and cgroups, close the socket."""
        if self._server is not None:
            self._server.shutdown()
        self.platform.close()
        if self._server is not None:
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> LocalWhisk:  # noqa: PYI034 - the class is not meant to be subclassed
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
