"""The daemon's health and its HTTP endpoints: ``/metrics`` and ``/healthz``, served from a thread.

:class:`HealthState` is shared between the loop's thread (which reports finished and failed ticks)
and the HTTP thread (which answers ``/healthz`` from it); :class:`EndpointServer` serves both paths.
"""

from __future__ import annotations

import http.server
import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from controller.clock import Clock

log = logging.getLogger(__name__)


class HealthState:
    """When the last tick finished, shared between the loop's thread and the HTTP thread."""

    def __init__(self, started_s: float, stale_after_s: float) -> None:
        self._lock = threading.Lock()
        self._started_s = started_s
        self._finished_s: float | None = None
        self._last_error = ""
        self._stopping = False
        self.stale_after_s = stale_after_s
        """A tick finished longer ago than this (s, monotonic) makes the daemon unhealthy."""

    def finished(self, now_s: float) -> None:
        """A tick completed at monotonic time ``now_s``."""
        with self._lock:
            self._finished_s = now_s
            self._last_error = ""

    def failed(self, reason: str) -> None:
        """A tick failed; ``reason`` is shown by ``/healthz`` until a tick finishes."""
        with self._lock:
            self._last_error = reason

    def stopping(self) -> None:
        """A shutdown started: the daemon no longer ticks."""
        with self._lock:
            self._stopping = True

    def check(self, now_s: float) -> tuple[bool, str]:
        """(healthy, why) at monotonic time ``now_s``: healthy when a tick finished within
        ``stale_after_s`` (or the daemon started that recently and has not finished one yet)."""
        with self._lock:
            if self._stopping:
                return False, "shutting down"
            error = f"; last tick failed: {self._last_error}" if self._last_error else ""
            if self._finished_s is None:
                age = now_s - self._started_s
                if age <= self.stale_after_s:
                    return True, f"starting: no tick finished yet ({age:.1f} s since start){error}"
                return False, f"no tick finished in {age:.1f} s since start (limit {self.stale_after_s:g} s){error}"
            age = now_s - self._finished_s
            if age <= self.stale_after_s:
                return True, f"last tick finished {age:.1f} s ago{error}"
            return False, f"last tick finished {age:.1f} s ago (limit {self.stale_after_s:g} s){error}"


class EndpointServer:
    """``/metrics`` (Prometheus text or OpenMetrics, by the Accept header) and ``/healthz`` in a thread."""

    def __init__(self, registry: CollectorRegistry, health: HealthState, clock: Clock, host: str, port: int) -> None:
        def handler_factory(*args: Any) -> http.server.BaseHTTPRequestHandler:
            return _Handler(registry, health, clock, *args)

        self._server = http.server.ThreadingHTTPServer((host, port), handler_factory)
        self._server.daemon_threads = True
        # A short poll keeps shutdown quick (it is part of the bounded exit).
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mfrm-endpoints", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (the chosen one when 0 was asked for)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, registry: CollectorRegistry, health: HealthState, clock: Clock, *args: Any) -> None:
        self._registry = registry
        self._health = health
        self._clock = clock
        super().__init__(*args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(self._registry))
        elif path == "/healthz":
            ok, why = self._health.check(self._clock.monotonic())
            self._send(200 if ok else 503, "text/plain; charset=utf-8", f"{'ok' if ok else 'unhealthy'}: {why}\n".encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


__all__ = ["EndpointServer", "HealthState"]
