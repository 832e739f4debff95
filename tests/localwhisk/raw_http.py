"""Raw HTTP on loopback for localwhisk's tests, below any client library: exact bytes out, answers read off the
wire; and the state of a process by its PID."""

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


class Connection:
    """One client connection on loopback that reads answers off the wire itself (``with Connection(port) as c``)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT_S)
        self._buffer = b""

    def __enter__(self) -> Connection:  # noqa: PYI034 - the class is not meant to be subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self._buffer += chunk
        return bool(chunk)

    def answer(self) -> RawAnswer | None:
        """The next answer (None if the server closed the connection without one)."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                return None
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length and self._fill():
            pass
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return RawAnswer(status, headers, body)

    def until_closed(self) -> bytes:
        """Everything the server still sends until it closes the connection (a socket time-out
        fails the test)."""
        while self._fill():
            pass
        received, self._buffer = self._buffer, b""
        return received


def exchange(port: int, raw: bytes) -> RawAnswer | None:
    """Send ``raw`` on a new connection and read one answer."""
    with Connection(port) as connection:
        connection.send(raw)
        return connection.answer()


def process_state(pid: int) -> str | None:
    """The state letter of a live process (R, S, T...), None once it is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if state in ("Z", "X") else state
