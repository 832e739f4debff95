"""Helpers shared by localwhisk's tests: raw HTTP exchanges on loopback, below any client library."""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass
from pathlib import Path

from localwhisk.testing import TEST_AUTH

#: Seconds a test waits for an answer before failing (a liveness bound, not a measurement).
ANSWER_WAIT_S = 60.0
AUTH_HEADER = "Authorization: Basic " + base64.b64encode(TEST_AUTH.encode()).decode()


@dataclass(frozen=True)
class RawAnswer:
    """One HTTP answer read off a socket."""

    status: int
    headers: dict[str, str]
    body: bytes


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT_S)


def read_answer(sock: socket.socket) -> RawAnswer | None:
    """The next answer on ``sock`` (None if the server closed without one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return RawAnswer(status, headers, rest[:length])


def exchange(port: int, raw: bytes) -> RawAnswer | None:
    """Send ``raw`` on a new connection and read one answer."""
    with connect(port) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes it (a socket time-out fails the test)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def process_state(pid: int) -> str | None:
    """The state letter of a live process (R, S, T...), None once it is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if state in ("Z", "X") else state
