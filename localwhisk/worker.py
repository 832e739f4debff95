"""The process inside one container: loads one action and runs it, one activation at a time.

Run as ``python -m localwhisk.worker [--parent-pid PID] [--rlimit-as BYTES]`` by
:mod:`localwhisk.containers`; with ``--parent-pid`` it dies with the platform (:func:`die_with_parent`).
It talks to the platform in JSON lines over its standard input and output, which it moves to private
file descriptors at start; file descriptors 1 and 2 then point at the container's log file, so output
the action writes outside Python's ``sys.stdout`` cannot corrupt the protocol.

In a Docker container (:mod:`localwhisk.docker_containers`) it runs as ``python3 -m localwhisk.worker
--connect SOCKET --log FILE``: the protocol goes over the unix socket ``SOCKET``, which the platform
listens on, and file descriptors 1 and 2 point at ``FILE``. It exits when the platform closes the
connection, or dies: a container then ends with its platform.

Requests and replies (one JSON object per line):

* ``{"op": "init", "code": str, "main": str}`` -> ``{"ok": true}`` or ``{"ok": false, "error": str}``
* ``{"op": "run", "value": dict, "env": dict, "logLimit": int}`` ->
  ``{"ok": true, "result": dict, "logs": [str]}`` or ``{"ok": false, "error": str, "logs": [str]}``

Only the standard library is imported here: this module's import time is part of every cold start.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

#: Run-environment variables the OpenWhisk Python runtime exposes to an action.
_OW_ENV_KEYS = ("__OW_API_HOST", "__OW_NAMESPACE", "__OW_ACTION_NAME", "__OW_ACTIVATION_ID", "__OW_DEADLINE")


class _LogCapture(io.TextIOBase):
    """A text stream that records whole lines as OpenWhisk log lines (``<time> stdout: <text>``)."""

    def __init__(self, stream_name: str, sink: _Logs) -> None:
        self._name = stream_name
        self._sink = sink
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._sink.add(self._name, line)
        return len(text)

    def flush_partial(self) -> None:
        if self._partial:
            self._sink.add(self._name, self._partial)
            self._partial = ""


class _Logs:
    def __init__(self, limit_bytes: int) -> None:
        self.lines: list[str] = []
        self._left = limit_bytes
        self._truncated = False
        self._limit = limit_bytes

    def add(self, stream: str, text: str) -> None:
        if self._truncated:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        line = f"{stamp} {stream}: {text}"
        self._left -= len(line.encode())
        if self._left < 0:
            self._truncated = True
            self.lines.append(f"{stamp} stderr: Logs were truncated: they exceed the limit of {self._limit} bytes.")
            return
        self.lines.append(line)


class _Runtime:
    def __init__(self) -> None:
        self.entry: Callable[[dict[str, Any]], Any] | None = None

    def init(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.entry is not None:
            return {"ok": False, "error": "the container is already initialised"}
        namespace: dict[str, Any] = {"__name__": "__action__", "__file__": "__action__.py"}
        try:
            # Running the user's code is this process's whole purpose; it is isolated in its container.
            exec(compile(request["code"], "__action__.py", "exec"), namespace)  # noqa: S102
        except BaseException as error:  # noqa: BLE001 - a failed load is reported, the worker lives on
            traceback.print_exc()
            return {"ok": False, "error": f"{type(error).__name__}: {error}"}
        entry = namespace.get(request.get("main") or "main")
        if not callable(entry):
            return {"ok": False, "error": f"the action has no callable {request.get('main') or 'main'!r}"}
        self.entry = entry
        return {"ok": True}

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.entry is None:
            return {"ok": False, "error": "the container is not initialised", "logs": []}
        for key in _OW_ENV_KEYS:
            os.environ.pop(key, None)
        os.environ.update({k: str(v) for k, v in request.get("env", {}).items()})
        logs = _Logs(int(request.get("logLimit", 10 * 1024 * 1024)))
        out, err = _LogCapture("stdout", logs), _LogCapture("stderr", logs)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            result = self.entry(request.get("value") or {})
        except BaseException as error:  # noqa: BLE001 - any failure of user code is the activation's
            traceback.print_exc()
            reply = {"ok": False, "error": f"An error has occurred: {type(error).__name__}: {error}"}
        else:
            if not isinstance(result, dict):
                reply = {"ok": False, "error": f"The action did not return a dictionary (it returned {type(result).__name__})."}
            else:
                reply = {"ok": True, "result": result}
        finally:
            out.flush_partial()
            err.flush_partial()
            sys.stdout, sys.stderr = saved
        reply["logs"] = logs.lines
        return reply


def _serve(proto_in: io.BufferedReader, proto_out: io.BufferedWriter) -> None:
    runtime = _Runtime()
    for raw in proto_in:
        request = json.loads(raw)
        op = request.get("op")
        if op == "init":
            reply = runtime.init(request)
        elif op == "run":
            reply = runtime.run(request)
        elif op == "exit":
            return
        else:
            reply = {"ok": False, "error": f"unknown op {op!r}"}
        try:
            line = json.dumps(reply, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            line = json.dumps({"ok": False, "error": f"The action returned a value that is not JSON: {error}", "logs": reply.get("logs", [])})
        proto_out.write(line.encode() + b"\n")
        proto_out.flush()


#: ``prctl`` option that asks the kernel for a signal when the parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when the thread that started it ends, however the
    platform ends (SIGKILL included); a stopped (paused) worker is killed too, since SIGKILL needs
    no cooperation. If the platform died before this call, exit now. Without ``prctl`` (not Linux)
    the worker relies on the platform, or on the next platform's clean-up of its state directory."""
    import ctypes  # about 1 ms of a cold start; only here, where it is needed

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def main(argv: list[str]) -> None:
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    if "--parent-pid" in options:
        die_with_parent(int(options["--parent-pid"]))
    rlimit_as = int(options.get("--rlimit-as", 0))
    if rlimit_as > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))
    if "--log" in options:
        log_fd = os.open(options["--log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    if "--connect" in options:
        import socket  # only a container's worker needs it

        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(options["--connect"])
        proto_in, proto_out = connection.makefile("rb"), connection.makefile("wb")
    else:
        # Move the protocol off fds 0/1; 0 then points at /dev/null and 1 at the log file (fd 2).
        proto_in = os.fdopen(os.dup(0), "rb")
        proto_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    _serve(proto_in, proto_out)


if __name__ == "__main__":
    main(sys.argv[1:])
