"""Solo latency of the benchmark functions through an OpenWhisk-compatible API.

    python -m workload.functions.solo --apihost http://127.0.0.1:3233 --auth UUID:KEY --runs 50

Deploys each function (overwriting), invokes it once cold, then ``--runs`` times warm, one at a time
(blocking invocations, nothing else of ours running), and prints per function: the cold start's
initTime, and median and p99 of the client-side latency and of the activation's ``duration``. The
paper's SLO of a function is its solo p99 plus 15%: the ``slo_ms`` column.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from workload.functions import FUNCTIONS, BenchmarkFunction

#: The paper's SLO rule: solo p99 plus 15%.
SLO_MARGIN = 1.15


class _Client:
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


@dataclass(frozen=True)
class SoloResult:
    """One function's solo measurement."""

    name: str
    """Function name."""
    init_ms: float
    """initTime of the cold start, ms."""
    latency_ms: np.ndarray
    """Client-side latency of each warm blocking invocation, ms."""
    duration_ms: np.ndarray
    """The activations' ``duration`` (run time in the container), ms."""

    def row(self) -> dict[str, float | str]:
        p99 = float(np.percentile(self.latency_ms, 99))
        return {
            "function": self.name,
            "init_ms": self.init_ms,
            "latency_p50_ms": float(np.median(self.latency_ms)),
            "latency_p99_ms": p99,
            "duration_p50_ms": float(np.median(self.duration_ms)),
            "duration_p99_ms": float(np.percentile(self.duration_ms, 99)),
            "slo_ms": p99 * SLO_MARGIN,
        }


def _annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record.get("annotations", []) if a["key"] == key), None)


def measure(client: _Client, function: BenchmarkFunction, runs: int) -> SoloResult:
    path = client.action_path(function.name)
    status, body = client.call("PUT", path + "?overwrite=true", function.action_body())
    if status != 200:
        raise SystemExit(f"deploying {function.name} failed: HTTP {status} {body}")
    status, record = client.call("POST", path + "?blocking=true")
    if status != 200:
        raise SystemExit(f"cold invocation of {function.name} failed: HTTP {status} {record}")
    init_ms = float(_annotation(record, "initTime") or 0.0)
    latency, duration = [], []
    for _ in range(runs):
        started = time.perf_counter()
        status, record = client.call("POST", path + "?blocking=true")
        latency.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"invocation of {function.name} failed: HTTP {status} {record}")
        duration.append(float(record["duration"]))
    return SoloResult(function.name, init_ms, np.array(latency), np.array(duration))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workload.functions.solo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--apihost", required=True, help="e.g. http://127.0.0.1:3233")
    parser.add_argument("--auth", required=True, help="UUID:KEY")
    parser.add_argument("--namespace", default="_")
    parser.add_argument("--runs", type=int, default=50, help="warm invocations per function (default 50)")
    parser.add_argument("--functions", default=",".join(FUNCTIONS), help="comma-separated names (default: all 12)")
    parser.add_argument("--json", dest="json_path", help="also write the table as JSON here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    names = [n.strip() for n in args.functions.split(",") if n.strip()]
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown:
        parser.error(f"unknown functions {unknown}; known: {', '.join(FUNCTIONS)}")
    client = _Client(args.apihost, args.auth, args.namespace, timeout_s=120.0)
    rows = []
    header = f"{'function':<20}{'init ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'dur p50':>9}{'dur p99':>9}{'SLO ms':>9}"
    print(header)
    print("-" * len(header))
    for name in names:
        row = measure(client, FUNCTIONS[name], args.runs).row()
        rows.append(row)
        print(
            f"{row['function']:<20}{row['init_ms']:>9.0f}{row['latency_p50_ms']:>9.1f}{row['latency_p99_ms']:>9.1f}"
            f"{row['duration_p50_ms']:>9.1f}{row['duration_p99_ms']:>9.1f}{row['slo_ms']:>9.1f}",
            flush=True,
        )
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"runs": args.runs, "apihost": args.apihost, "functions": rows}, handle, indent=2)
        print(f"wrote {args.json_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
