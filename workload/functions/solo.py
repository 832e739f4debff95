"""Solo latency and resource profile of the benchmark functions through an OpenWhisk-compatible API.

    python -m workload.functions.solo --apihost http://127.0.0.1:3233 --auth UUID:KEY --runs 50 \
        [--cold-starts 5 --paused-runs 20] [--json FILE]

For each function, one at a time (blocking invocations, nothing else of ours running): deploys it
(overwriting) and invokes it cold ``--cold-starts`` times (each after a redeploy: a new revision
makes the platform start a new container), then ``--runs`` times warm back to back, then
``--paused-runs`` times warm with a pause between calls (``--pause-gap-s``, long enough for the
platform to pause the idle container, as it is between most invocations of a replay). It prints
the median cold initTime and the median and p99 of the warm client-side latency and ``duration``.
The paper's SLO of a function is its solo p99 plus 15%: the ``slo_ms`` column.

The JSON (``--json``) has that summary per function, which ``mfrm run --set local.slo_file=FILE``
reads, and every sample; on localwhisk also the CPU time of a warm and of each cold activation
(its resource API's ``cpuSeconds``) and the container's peak memory (its memory cgroup), from
which ``workload.profiles.profiles_from_solo`` makes the simulator's profiles.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from workload.functions import FUNCTIONS, BenchmarkFunction

#: The paper's SLO rule: solo p99 plus 15%.
SLO_MARGIN = 1.15


class SoloClient:
    """A minimal OpenWhisk REST client on one persistent connection."""

    def __init__(self, apihost: str, auth: str, namespace: str, timeout_s: float) -> None:
        split = urlsplit(apihost if "://" in apihost else f"http://{apihost}")
        if split.scheme != "http":
            raise SystemExit(f"--apihost must be an http:// URL, got {apihost!r}")
        self._host, self._port = split.hostname or "127.0.0.1", split.port or 80
        self._timeout = timeout_s
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
            "Content-Type": "application/json",
        }
        self._namespace = quote(namespace, safe="")
        self.resources_path = f"/resources/v1/namespaces/{self._namespace}/actions"
        self._connection = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        connection.connect()
        # Small requests go out at once (no Nagle delay waiting for the server's delayed ACK).
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self._connection.request(method, path, body=payload, headers=self._headers)
                response = self._connection.getresponse()
                data = response.read()
                return response.status, json.loads(data) if data else None
            except (ConnectionError, http.client.HTTPException):
                # The server may close an idle keep-alive connection: reconnect once.
                self._connection.close()
                self._connection = self._connect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def action_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self._namespace}/actions/{quote(name, safe='')}"


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


@dataclass(frozen=True)
class SoloResult:
    """One function's solo measurement: nothing else of ours runs while it is taken."""

    name: str
    """Function name."""
    memory_mb: int
    """Memory limit it was deployed with, MB."""
    cold_init_ms: np.ndarray
    """initTime of each cold start, ms (a new revision of the action forces each one)."""
    cold_duration_ms: np.ndarray
    """``duration`` of each cold activation (initTime included, as in OpenWhisk), ms."""
    latency_ms: np.ndarray
    """Client-side latency of each warm blocking invocation sent right after the previous one, ms."""
    duration_ms: np.ndarray
    """The warm activations' ``duration`` (run time in the container), ms."""
    wait_ms: np.ndarray
    """The warm activations' ``waitTime`` (platform's time before the run), ms."""
    paused_wait_ms: np.ndarray
    """``waitTime`` of invocations sent after the container had time to be paused, ms: what
    resuming a paused container adds (in a replay most warm activations find their container paused)."""
    paused_duration_ms: np.ndarray
    """``duration`` of those invocations, ms."""
    warm_cpu_s: float = float("nan")
    """Mean CPU time of one warm invocation, s (localwhisk's resource API ``cpuSeconds``; NaN
    on a platform without it)."""
    cold_cpu_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """CPU time of each cold activation (process start, imports, init and the first run), s."""
    peak_memory_mb: float = float("nan")
    """Peak memory the container's memory cgroup recorded, MB (NaN when it cannot be read)."""
    load_average: tuple[float, float] = (float("nan"), float("nan"))
    """The machine's 1-minute load average before and after the measurement."""

    def row(self) -> dict[str, Any]:
        """Summary (the fields ``local.slo_file`` reads) and every sample, for a JSON file."""
        p99 = _percentile(self.latency_ms, 99)
        return {
            "function": self.name,
            "init_ms": float(np.median(self.cold_init_ms)) if self.cold_init_ms.size else float("nan"),
            "latency_p50_ms": _percentile(self.latency_ms, 50),
            "latency_p99_ms": p99,
            "duration_p50_ms": _percentile(self.duration_ms, 50),
            "duration_p99_ms": _percentile(self.duration_ms, 99),
            "slo_ms": p99 * SLO_MARGIN,
            "memory_mb": self.memory_mb,
            "warm_cpu_s": self.warm_cpu_s,
            "peak_memory_mb": self.peak_memory_mb,
            "load_average_1m": list(self.load_average),
            "samples": {
                "cold_init_ms": self.cold_init_ms.tolist(),
                "cold_duration_ms": self.cold_duration_ms.tolist(),
                "cold_cpu_s": self.cold_cpu_s.tolist(),
                "latency_ms": self.latency_ms.tolist(),
                "duration_ms": self.duration_ms.tolist(),
                "wait_ms": self.wait_ms.tolist(),
                "paused_wait_ms": self.paused_wait_ms.tolist(),
                "paused_duration_ms": self.paused_duration_ms.tolist(),
            },
        }


def _annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record.get("annotations", []) if a["key"] == key), None)


def _pool(client: SoloClient, name: str) -> dict[str, Any] | None:
    """localwhisk's view of the action's pool (``/resources/v1``), None on a platform without it."""
    status, body = client.call("GET", f"{client.resources_path}/{quote(name, safe='')}")
    return body if status == 200 and isinstance(body, dict) else None


def _cpu_s(client: SoloClient, name: str) -> float:
    pool = _pool(client, name)
    return float(pool["cpuSeconds"]) if pool is not None else float("nan")


def _peak_memory_mb(pool: dict[str, Any] | None) -> float:
    """The largest peak among the pool's containers' memory cgroups (v1 ``memory.max_usage_in_bytes``
    or v2 ``memory.peak``), MB; NaN when none can be read (another machine, no memory cgroup)."""
    peaks = []
    for instance in (pool or {}).get("instances", []):
        directory = Path(instance.get("cgroup", {}).get("memory") or "")
        for file in ("memory.max_usage_in_bytes", "memory.peak"):
            try:
                peaks.append(int((directory / file).read_text()) / (1024 * 1024))
                break
            except (OSError, ValueError):
                continue
    return max(peaks) if peaks else float("nan")


def _invoke(client: SoloClient, function: BenchmarkFunction, path: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    status, record = client.call("POST", path + "?blocking=true")
    latency_ms = (time.perf_counter() - started) * 1000
    if status != 200:
        raise SystemExit(f"invocation of {function.name} failed: HTTP {status} {record}")
    return latency_ms, record


def _deploy(client: SoloClient, function: BenchmarkFunction, path: str) -> None:
    status, body = client.call("PUT", path + "?overwrite=true", function.action_body())
    if status != 200:
        raise SystemExit(f"deploying {function.name} failed: HTTP {status} {body}")


def measure(client: SoloClient, function: BenchmarkFunction, runs: int, cold_starts: int = 1, paused_runs: int = 0,
            pause_gap_s: float = 0.2, sleep: Callable[[float], None] = time.sleep) -> SoloResult:
    """Solo measurement of one function: ``cold_starts`` cold activations (each after a redeploy,
    which makes the platform start a new container), ``runs`` warm ones back to back, then
    ``paused_runs`` warm ones each sent ``pause_gap_s`` after the previous answer (longer than
    OpenWhisk's 50-ms pause grace, so the container is paused in between)."""
    path = client.action_path(function.name)
    load_before = os.getloadavg()[0]
    cold_init, cold_duration, cold_cpu = [], [], []
    for _ in range(max(cold_starts, 1)):
        _deploy(client, function, path)
        cpu_before = _cpu_s(client, function.name)
        _, record = _invoke(client, function, path)
        cold_cpu.append(_cpu_s(client, function.name) - cpu_before)
        cold_init.append(float(_annotation(record, "initTime") or 0.0))
        cold_duration.append(float(record["duration"]))
    latency, duration, wait = [], [], []
    cpu_before = _cpu_s(client, function.name)
    for _ in range(runs):
        latency_ms, record = _invoke(client, function, path)
        latency.append(latency_ms)
        duration.append(float(record["duration"]))
        wait.append(float(_annotation(record, "waitTime") or 0.0))
    warm_cpu_s = (_cpu_s(client, function.name) - cpu_before) / runs if runs else float("nan")
    paused_wait, paused_duration = [], []
    for _ in range(paused_runs):
        sleep(pause_gap_s)
        _, record = _invoke(client, function, path)
        paused_wait.append(float(_annotation(record, "waitTime") or 0.0))
        paused_duration.append(float(record["duration"]))
    return SoloResult(
        name=function.name,
        memory_mb=function.memory_mb,
        cold_init_ms=np.array(cold_init),
        cold_duration_ms=np.array(cold_duration),
        latency_ms=np.array(latency),
        duration_ms=np.array(duration),
        wait_ms=np.array(wait),
        paused_wait_ms=np.array(paused_wait),
        paused_duration_ms=np.array(paused_duration),
        warm_cpu_s=warm_cpu_s,
        cold_cpu_s=np.array(cold_cpu),
        peak_memory_mb=_peak_memory_mb(_pool(client, function.name)),
        load_average=(load_before, os.getloadavg()[0]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workload.functions.solo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--apihost", required=True, help="e.g. http://127.0.0.1:3233")
    parser.add_argument("--auth", required=True, help="UUID:KEY")
    parser.add_argument("--namespace", default="_")
    parser.add_argument("--runs", type=int, default=50, help="warm invocations per function (default 50)")
    parser.add_argument("--cold-starts", type=int, default=1, help="cold invocations per function (default 1)")
    parser.add_argument("--paused-runs", type=int, default=0,
                        help="warm invocations each after a pause of --pause-gap-s (default 0)")
    parser.add_argument("--pause-gap-s", type=float, default=0.2,
                        help="seconds between paused runs, longer than the platform's pause grace (default 0.2)")
    parser.add_argument("--functions", default=",".join(FUNCTIONS), help="comma-separated names (default: all 12)")
    parser.add_argument("--json", dest="json_path", help="also write the table as JSON here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.cold_starts < 1:
        parser.error(f"--cold-starts must be >= 1, got {args.cold_starts}")
    if args.paused_runs < 0 or not args.pause_gap_s >= 0:
        parser.error(f"--paused-runs and --pause-gap-s must be >= 0, got {args.paused_runs} and {args.pause_gap_s}")
    names = [n.strip() for n in args.functions.split(",") if n.strip()]
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown:
        parser.error(f"unknown functions {unknown}; known: {', '.join(FUNCTIONS)}")
    client = SoloClient(args.apihost, args.auth, args.namespace, timeout_s=120.0)
    rows = []
    header = f"{'function':<20}{'init ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'dur p50':>9}{'dur p99':>9}{'SLO ms':>9}"
    print(header)
    print("-" * len(header))
    for name in names:
        row = measure(client, FUNCTIONS[name], args.runs, args.cold_starts, args.paused_runs, args.pause_gap_s).row()
        rows.append(row)
        print(
            f"{row['function']:<20}{row['init_ms']:>9.0f}{row['latency_p50_ms']:>9.1f}{row['latency_p99_ms']:>9.1f}"
            f"{row['duration_p50_ms']:>9.1f}{row['duration_p99_ms']:>9.1f}{row['slo_ms']:>9.1f}",
            flush=True,
        )
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"runs": args.runs, "cold_starts": args.cold_starts, "paused_runs": args.paused_runs,
                       "pause_gap_s": args.pause_gap_s, "apihost": args.apihost,
                       "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                       "functions": rows}, handle, indent=2)
        print(f"wrote {args.json_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
