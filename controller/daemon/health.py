"""The daemon's health and its HTTP endpoints: ``/metrics``, ``/healthz`` and ``/livez``, served from a thread.

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
    """Whether the daemon still works, shared between the loop's thread and the HTTP thread.

    Two limits make ``/healthz`` answer 503, each with its cause in the body:

    * **stuck**: no tick has ended (well or not) for ``stale_after_s`` past the time the next one
      was due — the loop itself no longer runs (the driver's own waits, backoff included, are
      not counted against it);
    * **blind**: ticks run, but none has observed the cluster for ``blind_after_s`` — every
      observation failed, or gave no function any data. The body names the last cause.

    A tick that observed the cluster while some functions had no data is healthy; the body says
    which and why.
    """

    def __init__(self, started_s: float, stale_after_s: float, blind_after_s: float = float("inf")) -> None:
        self._lock = threading.Lock()
        self._started_s = started_s
        self._ended_s: float | None = None
        self._due_s = started_s
        self._observed_s: float | None = None
        self._blind_cause = ""
        self._last_error = ""
        self._partial = ""
        self._stopping = False
        self.stale_after_s = stale_after_s
        """Past the time a tick was due, this long without one ending (s, monotonic) means stuck."""
        self.blind_after_s = blind_after_s
        """This long without an observation of the cluster (s, monotonic) means blind."""

    def ended(self, now_s: float, next_due_in_s: float) -> None:
        """A tick ended (well or not) at ``now_s``; the next one is due ``next_due_in_s`` later."""
        with self._lock:
            self._ended_s = now_s
            self._due_s = now_s + next_due_in_s

    def observed(self, now_s: float, partial: str = "") -> None:
        """A tick observed the cluster at ``now_s``; ``partial`` says which functions had no data and why."""
        with self._lock:
            self._observed_s = now_s
            self._blind_cause = ""
            self._last_error = ""
            self._partial = partial

    def failed(self, reason: str) -> None:
        """A tick failed; ``reason`` is shown by ``/healthz`` until a tick observes the cluster."""
        with self._lock:
            self._last_error = reason
            self._blind_cause = reason

    def saw_nothing(self, reason: str) -> None:
        """A tick ran but no function had data; ``reason`` says why."""
        with self._lock:
            self._blind_cause = reason

    def stopping(self) -> None:
        """A shutdown started: the daemon no longer ticks."""
        with self._lock:
            self._stopping = True

    def check(self, now_s: float, *, alive_only: bool = False) -> tuple[bool, str]:
        """(healthy, why) at monotonic time ``now_s`` (see the class docstring). ``alive_only``: judge
        only whether the loop runs (stuck or shutting down), not whether it sees the cluster — what
        a liveness probe should ask, since a restart cures a stuck loop but not a platform outage."""
        with self._lock:
            if self._stopping:
                return False, "shutting down"
            late = now_s - self._due_s
            if late > self.stale_after_s:
                since = "since start" if self._ended_s is None else f"since {now_s - self._ended_s:.1f} s ago"
                return False, (f"stuck: no tick has ended {since} ({late:.1f} s after one was due, "
                               f"limit {self.stale_after_s:g} s)")
            cause = f": {self._blind_cause}" if self._blind_cause else ""
            if alive_only:
                since = "no tick yet" if self._ended_s is None else f"last tick ended {now_s - self._ended_s:.1f} s ago"
                return True, f"alive: {since}"
            if self._observed_s is None:
                age = now_s - self._started_s
                if age > self.blind_after_s:
                    return False, f"blind: no observation of the cluster in {age:.1f} s since start (limit {self.blind_after_s:g} s){cause}"
                return True, f"starting: no observation yet ({age:.1f} s since start){cause}"
            age = now_s - self._observed_s
            if age > self.blind_after_s:
                return False, f"blind: last observation of the cluster {age:.1f} s ago (limit {self.blind_after_s:g} s){cause}"
            error = f"; last tick failed: {self._last_error}" if self._last_error else ""
            partial = f"; {self._partial}" if self._partial else ""
            return True, f"last observation of the cluster {age:.1f} s ago{error}{partial}"


class EndpointServer:
    """``/metrics`` (Prometheus text or OpenMetrics, by the Accept header), ``/healthz`` (stuck or blind:
    503) and ``/livez`` (stuck: 503; for a liveness probe) in a thread."""

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
        elif path in ("/healthz", "/livez"):
            ok, why = self._health.check(self._clock.monotonic(), alive_only=path == "/livez")
            self._send(200 if ok else 503, "text/plain; charset=utf-8", f"{'ok' if ok else 'unhealthy'}: {why}\n".encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /livez\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


__all__ = ["EndpointServer", "HealthState"]
