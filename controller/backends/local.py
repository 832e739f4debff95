"""The ``local`` backend: the local OpenWhisk-compatible platform (``localwhisk``) on this machine.

It speaks only HTTP to the platform (``docs/localwhisk.md``), through :class:`controller.clients.openwhisk.OpenWhiskClient`:

* ``GET /api/v1/namespaces/_/activations?since=&upto=`` — the tick's activations (each once, see
  :class:`controller.backends.activations.ActivationWindow`): completions, latency (``waitTime +
  duration``; ``duration`` includes ``initTime`` on a cold start, as in OpenWhisk), execution time
  (``duration − initTime``), cold starts, SLO violations;
* ``GET /resources/v1/namespaces/_/actions`` — every pool at the snapshot instant: containers by
  state (``busy`` = in flight, as the platform runs one activation per container), ``queued``, the
  CPU shares per container, memory, and the pool's cumulative CPU seconds (so CPU used in a tick
  is the difference of two reads);
* ``GET /resources/v1/status`` — the one invoker: user memory and memory reserved;
* ``PUT /resources/v1/namespaces/_/actions/{name}`` with ``{"containers": k, "cpuShares": s}`` — act.

Arrivals: the platform counts activations when they complete, so arrivals of a tick are estimated by
conservation: completions + (in flight + queued now) − (in flight + queued at the last tick).

No data, no zeros: if the activations, the pools or the status cannot be read, ``observe`` raises
:class:`controller.clients.errors.ObservationError` with the client's kind (the tick fails, nothing
is decided). A function the platform does not know, or whose pool or activation records are garbled,
is ``valid=False`` and listed with its cause in :attr:`LocalBackend.problems`; CPU used is NaN on the
first tick (no earlier reading to subtract). A tick covers the time since the last good observation
(``tick_s``), so counts after a failed read are not squeezed into one interval. CPU allocated is the
snapshot's containers × shares / 1024 held over the tick.

Consistency (``controller.backends.base``): one platform, always the same invoker row (``local``);
``apply`` reads the pools and writes only the targets the platform does not hold (idempotent against
the platform's state, not against what was sent before), and a change the platform accepted has been
applied to its running containers (new containers start as it says).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from controller.backends.activations import ActivationWindow, fill_activation_columns, summarise
from controller.backends.base import ActionFailure, FailureKind
from controller.clients.errors import ObservationError, ObservationKind, ObservationProblem
from controller.clients.openwhisk import (
    NotFound,
    OpenWhiskClient,
    OpenWhiskError,
    RequestRejected,
    RetryPolicy,
    Unauthorized,
)
from controller.settings import mask_credentials
from policies.types import (
    KEEP_SHARES,
    SHARES_PER_CORE,
    ClusterSnapshot,
    Decisions,
    FunctionStats,
    InvokerStats,
)

#: Name of the one invoker row of a local platform.
LOCAL_INVOKER = "local"


class LocalBackend:
    """The local platform behind the backend contract (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        client: OpenWhiskClient,
        function_names: Sequence[str],
        slo_s: Sequence[float],
        *,
        epoch_origin_ms: float,
        cores: float,
        lookback_s: float = 120.0,
    ) -> None:
        if len(slo_s) != len(function_names):
            raise ValueError(f"local backend: {len(function_names)} functions but {len(slo_s)} SLOs")
        if cores <= 0:
            raise ValueError(f"local backend: cores must be > 0, got {cores}")
        self.client = client
        """Client of the platform (API host, key, namespace ``_``)."""
        self.function_names = tuple(function_names)
        """Actions managed, in the snapshot's order."""
        self.slo_s = np.asarray(slo_s, dtype=float)
        """SLO per function, s."""
        self.cores = float(cores)
        """CPU cores the platform's containers share (the machine's, or its cgroup's quota)."""
        self.activations = ActivationWindow(client, epoch_origin_ms, lookback_s)
        n = len(self.function_names)
        self._last_now = 0.0
        self._previous_cpu: dict[str, float] | None = None
        self._previous_backlog = np.zeros(n)
        self._recent: list[deque[float]] = [deque(maxlen=3) for _ in range(n)]
        self.problems: tuple[ObservationProblem, ...] = ()
        """What the last observation lost: functions without data and why (``controller.clients.errors``)."""

    def _resources_path(self, name: str | None = None) -> str:
        base = f"/resources/v1/namespaces/{quote(self.client.namespace, safe='')}/actions"
        return base if name is None else f"{base}/{quote(name, safe='')}"

    # --- observe --------------------------------------------------------------------------------

    def observe(self, now: float) -> ClusterSnapshot:
        """The tick since the last good observation; raises ``ObservationError`` when the platform
        cannot be read (see the module docstring)."""
        if now <= self._last_now:
            raise ValueError(f"local backend: now={now} s is not after the last observation at {self._last_now} s")
        self.problems = ()
        # The resource reads have no side effect; the activation window remembers what it handed
        # out, so it is read last: a failure before it loses nothing.
        pools = self._read("pools", self._resources_path(), list)
        status = self._read("status", "/resources/v1/status", dict)
        try:
            fresh = self.activations.read(now)
        except OpenWhiskError as error:
            raise ObservationError.from_error("activations", error) from None
        tick_s = now - self._last_now
        self._last_now = now
        n = len(self.function_names)
        by_name: dict[str, dict[str, Any]] = {p.get("action"): p for p in pools if isinstance(p, dict)}
        cols: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in (
            "memory_mb", "arrivals", "completions", "in_flight", "queued", "p50_latency_s", "p99_latency_s",
            "mean_exec_s", "recent_exec_s", "cold_starts", "slo_violations", "containers", "busy_containers",
            "cpu_shares", "cpu_used_core_s", "cpu_alloc_core_s")}
        valid = np.zeros(n, dtype=bool)
        problems: list[ObservationProblem] = []
        missing: list[str] = []
        cpu_now: dict[str, float] = {}
        backlog = np.zeros(n)
        shares_allocated = 0.0
        for name, pool in by_name.items():
            try:
                cpu_now[name] = _number(pool, "cpuSeconds", 0.0)
                shares_allocated += _number(pool.get("current") or {}, "total", 0.0) * _number(pool, "cpuShares", 0.0)
            except ValueError:
                continue  # its own row says so below (a managed action) or it is not ours
        for i, name in enumerate(self.function_names):
            pool = by_name.get(name)
            if pool is None:
                missing.append(name)
                backlog[i] = self._previous_backlog[i]
                continue
            source = "pools"
            try:
                current = pool.get("current") or {}
                busy, total = _number(current, "busy", 0.0), _number(current, "total", 0.0)
                queued, shares = _number(pool, "queued", 0.0), _number(pool, "cpuShares")
                memory = _number(pool, "memoryMB")
                source = "activations"
                tick = summarise(fresh.get(name, ()))
            except ValueError as error:
                problems.append(ObservationProblem(ObservationKind.MALFORMED, source, str(error), (name,)))
                backlog[i] = self._previous_backlog[i]
                continue
            valid[i] = True
            fill_activation_columns(cols, i, tick, self.slo_s[i], self._recent[i])
            backlog[i] = busy + queued
            cols["memory_mb"][i] = memory
            cols["arrivals"][i] = max(cols["completions"][i] + backlog[i] - self._previous_backlog[i], 0.0)
            cols["in_flight"][i], cols["queued"][i] = busy, queued
            cols["containers"][i], cols["busy_containers"][i] = total, busy
            cols["cpu_shares"][i] = shares
            if self._previous_cpu is not None and name in cpu_now:
                cols["cpu_used_core_s"][i] = max(cpu_now[name] - self._previous_cpu.get(name, 0.0), 0.0)
            cols["cpu_alloc_core_s"][i] = total * shares / SHARES_PER_CORE * tick_s
        if missing:
            problems.append(ObservationProblem(None, "pools", "the platform has no such action (not deployed)",
                                               tuple(missing)))
        if self.activations.unusable:
            problems.append(ObservationProblem(
                ObservationKind.MALFORMED, "activations",
                f"{self.activations.unusable} activation record(s) without an id or an action name were left out", ()))
        invoker_cpu = np.nan
        if self._previous_cpu is not None:
            invoker_cpu = sum(max(v - self._previous_cpu.get(k, 0.0), 0.0) for k, v in cpu_now.items())
        self._previous_cpu = cpu_now
        self._previous_backlog = backlog
        try:
            memory_mb, reserved_mb, invoker_ok = _number(status, "userMemoryMB"), _number(status, "reservedMemoryMB"), True
        except ValueError:
            memory_mb, reserved_mb, invoker_ok = np.nan, np.nan, False
        invokers = InvokerStats(
            names=(LOCAL_INVOKER,),
            cores=[self.cores],
            memory_mb=[memory_mb],
            memory_used_mb=[reserved_mb],
            cpu_used_core_s=[invoker_cpu],
            cpu_shares_allocated=[shares_allocated],
            valid=[invoker_ok],
        )
        self.problems = tuple(problems)
        functions = FunctionStats(names=self.function_names, slo_s=self.slo_s, valid=valid, **cols)
        return ClusterSnapshot(time_s=now, tick_s=tick_s, functions=functions, invokers=invokers)

    def _read(self, source: str, path: str, shape: type) -> Any:
        """GET ``path`` of the resource API; its JSON body, which must be a ``shape`` (list or dict)."""
        try:
            _, body = self.client.request("GET", path)
        except OpenWhiskError as error:
            raise ObservationError.from_error(source, error) from None
        if not isinstance(body, shape):
            raise ObservationError(ObservationKind.MALFORMED, source,
                                   f"GET {self.client.base_url}{path}: expected a JSON {'array' if shape is list else 'object'}, "
                                   f"got {type(body).__name__}")
        return body

    # --- act ------------------------------------------------------------------------------------

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]:
        """Hold each decided function to its targets: its pool is read first, and only the targets the
        platform does not hold already are written (idempotent against what the platform holds, not
        against what was sent: a platform that restarted with its defaults gets them again). When
        the pools cannot be read, every target given is written."""
        failures: list[ActionFailure] = []
        held = self._held_targets() if decisions.valid.any() else {}
        for i in np.flatnonzero(decisions.valid):
            if i >= len(self.function_names):
                failures.append(ActionFailure(f"#{i}", FailureKind.UNKNOWN_FUNCTION, f"no function at index {i}"))
                continue
            name = self.function_names[i]
            holds = held.get(name, {})
            body: dict[str, int] = {}
            containers, shares = int(decisions.containers[i]), int(decisions.cpu_shares[i])
            if holds.get("containers") != containers:
                body["containers"] = containers
            if shares != KEEP_SHARES and holds.get("cpuShares") != shares:
                body["cpuShares"] = shares
            if not body:
                continue
            try:
                self.client.request("PUT", self._resources_path(name), body=body)
            except NotFound as error:
                failures.append(ActionFailure(name, FailureKind.UNKNOWN_FUNCTION, str(error)))
            except (RequestRejected, Unauthorized) as error:
                failures.append(ActionFailure(name, FailureKind.REJECTED, str(error)))
            except OpenWhiskError as error:
                failures.append(ActionFailure(name, FailureKind.UNAVAILABLE, str(error)))
        return failures

    def _held_targets(self) -> dict[str, dict[str, Any]]:
        """Per action, the pool target (``containers``) and ``cpuShares`` the platform holds now;
        empty when the pools cannot be read (then nothing is known to be held)."""
        try:
            _, pools = self.client.request("GET", self._resources_path())
        except OpenWhiskError:
            return {}
        if not isinstance(pools, list):
            return {}
        return {str(p["action"]): p for p in pools if isinstance(p, dict) and "action" in p}


def _number(doc: Any, key: str, default: float | None = None) -> float:
    """``doc[key]`` as a finite number >= 0 (``default`` when absent); ``ValueError`` naming the key otherwise."""
    if not isinstance(doc, dict):
        # A ValueError like every other garbled value: the caller makes the row invalid on it.
        raise ValueError(f"expected an object holding {key!r}, got {type(doc).__name__}")  # noqa: TRY004
    raw = doc.get(key)
    if raw is None and default is not None:
        return default
    value = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else np.nan
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{key}={raw!r} is not a number >= 0")
    return value


def benchmark_slos_s(slo_file: Path, names: Sequence[str]) -> np.ndarray:
    """Each action's SLO, s, from the JSON of ``python -m workload.functions.solo --json``.

    An action named ``<benchmark>`` or ``<benchmark>-<n>`` (as ``mfrm replay --deploy`` names them)
    gets that benchmark's ``slo_ms``. Raises ``ValueError`` naming the file and the action at fault.
    """
    try:
        rows = json.loads(Path(slo_file).read_text(encoding="utf-8"))["functions"]
        slo_ms = {str(row["function"]): float(row["slo_ms"]) for row in rows}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"local.slo_file={slo_file}: not a solo-latency JSON (functions[].function, slo_ms): {error}") from None
    out = np.empty(len(names))
    for i, name in enumerate(names):
        # Longest first, so that a benchmark whose name extends another's is matched by its own.
        match = next((b for b in sorted(slo_ms, key=len, reverse=True)
                      if name == b or (name.startswith(b + "-") and name[len(b) + 1:].isdigit())), None)
        if match is None:
            raise ValueError(f"local.slo_file={slo_file}: no SLO for action {name!r} (known: {', '.join(sorted(slo_ms))})")
        out[i] = slo_ms[match] / 1000.0
    return out


#: Actions asked for per page when listing them: OpenWhisk's largest page.
ACTIONS_PAGE = 200


def deployed_actions(client: OpenWhiskClient, page: int = ACTIONS_PAGE) -> list[str]:
    """Names of every action of the client's namespace, in the platform's order, page after page
    (``limit``/``skip``) until a page brings nothing new: a platform whose pages are smaller than
    asked, or one that ignores ``skip``, still ends the listing."""
    names: dict[str, None] = {}  # insertion-ordered set
    skip = 0
    while True:
        listed = client.list_actions(limit=page, skip=skip)
        skip += len(listed)
        before = len(names)
        names.update((str(a["name"]), None) for a in listed if isinstance(a, dict) and "name" in a)
        if len(names) == before:
            return list(names)


def from_settings(settings: Any) -> LocalBackend:
    """The backend of ``settings.local`` (``mfrm run --backend local``); see ``controller.settings.LocalSettings``.

    The run's time 0 is now: activations before the daemon started are not observed.
    """
    local = settings.local
    if local.auth is None:
        raise ValueError("local.auth is not set: give the platform's key (MFRM_LOCAL__AUTH=uuid:key)")
    if local.slo_file is None:
        raise ValueError("local.slo_file is not set: measure it with python -m workload.functions.solo --json FILE")
    client = OpenWhiskClient(local.api_host, local.auth.get_secret_value(), namespace=local.namespace,
                             connect_timeout_s=local.connect_timeout_s, read_timeout_s=local.read_timeout_s,
                             retry=RetryPolicy(max_attempts=local.max_attempts), rng=np.random.default_rng(settings.seed))
    api_host = mask_credentials(local.api_host)  # never a password in a message
    names = list(local.functions)
    if not names:
        try:
            names = deployed_actions(client)
        except OpenWhiskError as error:
            # A settings problem (wrong key, wrong URL) as the daemon reports one: exit 2, not a traceback.
            raise ValueError(f"local.functions is empty and the actions of {api_host} cannot be listed: {error}") from None
    if not names:
        raise ValueError(f"local.functions is empty and the platform at {api_host} has no actions: deploy them first")
    cores = local.cores if local.cores is not None else float(len(os.sched_getaffinity(0)))
    return LocalBackend(client, names, benchmark_slos_s(local.slo_file, names), epoch_origin_ms=time.time() * 1000.0,
                        cores=cores, lookback_s=local.lookback_s)


__all__ = ["ACTIONS_PAGE", "LOCAL_INVOKER", "LocalBackend", "benchmark_slos_s", "deployed_actions", "from_settings"]
