"""The platform on HTTP: an event loop that reads requests, a bounded pool of threads that answers
them, and :class:`LocalWhisk` to start and stop both.

Reading is the event loop's, with no thread per connection: a connection that is idle, or whose
client is still sending, holds only its socket. A request is checked from its request line and
headers before its body is read (route, method, credentials, namespace, size), so a caller without
the key is answered 401 without the platform reading a byte of its body. Every request must arrive
in full within ``request_timeout_s`` of its first byte; an idle keep-alive connection is closed after
``keepalive_timeout_s``. Only a complete, admitted request takes a thread (``max_http_handlers`` of
them: a blocking invocation may hold one for a minute); when all are busy it is answered 503 at once.

Shutdown stops accepting, lets running activations finish (``drain_timeout_s``) while their
connections stay open to answer, removes every container and cgroup, then closes the connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import logging
import re
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from localwhisk import __version__
from localwhisk.api import Api, Request, Response, error_response
from localwhisk.cgroups import CgroupDriver
from localwhisk.clock import Clock
from localwhisk.config import PlatformConfig
from localwhisk.engine import Platform
from localwhisk.errors import ApiError

log = logging.getLogger(__name__)

#: Longest request line (method, target, version), bytes; a longer one is answered 414.
MAX_REQUEST_LINE_BYTES = 16 * 1024
#: Largest header block, bytes, and most header fields; beyond either, 431.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_FIELDS = 100
#: Buffer limit of a connection's reader, bytes: bounds one line (request line, header, chunk size).
_READ_LIMIT = MAX_HEADER_BYTES
_HEADER_NAME = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_VERSION = re.compile(r"^HTTP/1\.[01]$")


class _Refusal(Exception):
    """A request the HTTP layer answers itself; the connection is closed after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Head:
    """A request line and its headers, parsed."""

    method: str
    """HTTP method as sent (upper case for every method the API knows)."""
    target: str
    """Request target: path and query, still percent-encoded."""
    version: str
    """``HTTP/1.0`` or ``HTTP/1.1``."""
    headers: dict[str, str]
    """Header fields by lower-case name (each of the framing and credential headers at most once)."""

    def keep_alive(self) -> bool:
        """Whether the connection stays open after the answer (HTTP/1.1 unless ``close``; HTTP/1.0
        only with ``keep-alive``)."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class HttpFront:
    """The event loop's side: accepts connections, reads and checks requests, writes answers.

    The loop runs on a thread of its own; everything but :meth:`start`, :meth:`stop_accepting` and
    :meth:`stop` happens there. ``api.handle`` runs on the handler threads.
    """

    def __init__(self, api: Api, config: PlatformConfig) -> None:
        self.api = api
        self.config = config
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(config.max_http_handlers, thread_name_prefix="localwhisk-handler")
        self._busy = 0
        self._connections: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None

    # --- lifecycle (called from other threads) ---------------------------------------------

    def start(self) -> None:
        """Bind and start serving; raises ``OSError`` if the address cannot be bound."""
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="localwhisk-http", daemon=True)
        self._thread.start()
        self.port = ready.result()

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections are still served."""
        if self._server is not None and self._loop.is_running():
            self._call(self._close_server)

    def stop(self) -> None:
        """Close every connection and the loop; handler threads finish what they are doing."""
        if self._loop.is_running():
            self._call(self._close_all)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, coroutine_function: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine_function(), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            future.result(timeout=10.0)

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            # One socket on exactly the configured address (a host name is not expanded to several).
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            listener = socket.create_server(
                (self.config.host, self.config.port), family=family, backlog=min(self.config.max_connections, 4096)
            )
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, sock=listener, limit=_READ_LIMIT)
            )
        except OSError as error:
            ready.set_exception(error)
            self._loop.close()
            return
        # Reported once the loop runs, so that a stop right after the start finds it running.
        self._loop.call_soon(ready.set_result, int(self._server.sockets[0].getsockname()[1]))
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _close_server(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5.0)

    # --- one connection --------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Replies are written in one piece; without TCP_NODELAY, Nagle's algorithm meeting the
            # client's delayed ACK adds about 40 ms to every small request/response exchange.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self._connections) >= self.config.max_connections:
            await self._answer(writer, error_response(503, "The server is too busy; retry later."), "", close=True)
            writer.close()
            return
        self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a defect of this module: the connection goes, the platform stays
            log.exception("closing an HTTP connection after an internal error")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection stays open for another."""
        try:
            async with asyncio.timeout(self.config.keepalive_timeout_s):
                first = await reader.readexactly(1)
        except (TimeoutError, asyncio.IncompleteReadError):
            return False  # idle past the keep-alive time-out, or the client closed: nothing to answer
        method = ""
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                head = await self._read_head(reader, first)
                method = head.method
                request = await self._read_request(reader, writer, head)
        except TimeoutError:
            if method:
                await self._answer(writer, error_response(408, "The request was not received in time."), method, close=True)
            return False
        except _Refusal as refusal:
            await self._answer(writer, error_response(refusal.status, refusal.message), method, close=True)
            return False
        except asyncio.IncompleteReadError:
            return False  # the client went away in the middle of its request
        if self._busy >= self.config.max_http_handlers:
            response = error_response(503, "The server is too busy; retry later.")
        else:
            self._busy += 1
            try:
                response = await self._loop.run_in_executor(self._pool, self.api.handle, request)
            finally:
                self._busy -= 1
        keep = head.keep_alive()
        await self._answer(writer, response, head.method, close=not keep, http10_keep_alive=keep and head.version == "HTTP/1.0")
        log.debug("%s %s %d", head.method, head.target, response.status)
        return keep

    async def _read_head(self, reader: asyncio.StreamReader, first: bytes) -> _Head:
        line = first
        # Empty lines before a request line are skipped (RFC 9112, 2.2), a few of them at most.
        for _ in range(4):
            try:
                line += await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _Refusal(414, "The request line is too long.") from None
            if line.strip():
                break
            line = b""
        if len(line) > MAX_REQUEST_LINE_BYTES:
            raise _Refusal(414, "The request line is too long.")
        parts = line.decode("latin-1").strip().split(" ")
        if len(parts) != 3 or not all(parts):
            raise _Refusal(400, "The request line is malformed.")
        method, target, version = parts
        if not _VERSION.match(version):
            if version.startswith("HTTP/"):
                raise _Refusal(505, f"{version} is not supported; use HTTP/1.1.")
            raise _Refusal(400, "The request line is malformed.")
        headers: dict[str, str] = {}
        size = 0
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _Refusal(431, "A request header is too large.") from None
            size += len(raw)
            if raw in (b"\r\n", b"\n"):
                break
            if size > MAX_HEADER_BYTES or len(headers) >= MAX_HEADER_FIELDS:
                raise _Refusal(431, "The request headers are too large.")
            name, colon, value = raw.partition(b":")
            if not colon or not _HEADER_NAME.match(name):
                raise _Refusal(400, "A request header is malformed.")
            key = name.decode("ascii").lower()
            text = value.strip().decode("latin-1")
            if key in headers and key in ("content-length", "transfer-encoding", "authorization", "host"):
                raise _Refusal(400, f"The request repeats the header {key}.")
            headers[key] = text
        return _Head(method, target, version, headers)

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: _Head) -> Request:
        try:
            split = urlsplit(head.target)
            query = dict(parse_qsl(split.query, keep_blank_values=True))
        except ValueError:
            raise _Refusal(400, "The request target is not a valid URL.") from None
        try:
            limit = self.api.admit(head.method, split.path, head.headers)
        except ApiError as error:
            raise _Refusal(error.status, error.message) from None
        chunked = head.headers.get("transfer-encoding", "").lower()
        length_text = head.headers.get("content-length")
        if chunked and length_text is not None:
            raise _Refusal(400, "The request has both Content-Length and Transfer-Encoding.")
        if chunked and chunked != "chunked":
            raise _Refusal(501, f"Transfer-Encoding {chunked!r} is not supported; send Content-Length or chunked.")
        length = 0
        if length_text is not None:
            if not length_text.isdigit() or len(length_text) > 18:
                raise _Refusal(400, "The Content-Length header is not a byte count.")
            length = int(length_text)
            if length > limit:
                raise _Refusal(413, f"The request content of {length} bytes exceeds the allowed size of {limit} bytes.")
        if head.headers.get("expect", "").lower() == "100-continue" and head.version == "HTTP/1.1":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await (self._read_chunked(reader, limit) if chunked else reader.readexactly(length))
        return Request(
            method=head.method,
            path=split.path,
            query=query,
            headers=head.headers,
            body=body,
        )

    async def _read_chunked(self, reader: asyncio.StreamReader, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                size_line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _Refusal(400, "A chunk size line is too long.") from None
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Refusal(400, "A chunk size is not a hexadecimal number.") from None
            if size == 0:
                break
            total += size
            if total > limit:
                raise _Refusal(413, f"The request content exceeds the allowed size of {limit} bytes.")
            parts.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise _Refusal(400, "A chunk does not end with CRLF.")
        while (await reader.readuntil(b"\n")) not in (b"\r\n", b"\n"):
            pass  # trailer fields: read and ignored
        return b"".join(parts)

    async def _answer(
        self, writer: asyncio.StreamWriter, response: Response, method: str, close: bool, http10_keep_alive: bool = False
    ) -> None:
        payload = response.encoded()
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: localwhisk/{__version__}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(payload)}",
        ]
        lines += [f"{key}: {value}" for key, value in response.headers.items()]
        if close:
            lines.append("Connection: close")
        elif http10_keep_alive:
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(head if method == "HEAD" else head + payload)
        if writer.transport.get_write_buffer_size() == 0:
            return  # all of it went out at once, the usual case
        try:
            # A client that does not read its answer gives its connection up after the request time-out.
            async with asyncio.timeout(self.config.request_timeout_s):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            writer.transport.abort()


class LocalWhisk:
    """A running platform: ``with LocalWhisk(config) as whisk: ... whisk.url ...``."""

    def __init__(self, config: PlatformConfig, clock: Clock | None = None, cgroups: CgroupDriver | None = None) -> None:
        self.config = config
        self.platform = Platform(config, clock=clock, cgroups=cgroups)
        self.api = Api(self.platform)
        self._front: HttpFront | None = None

    @property
    def port(self) -> int:
        if self._front is None:
            raise RuntimeError("the platform is not started")
        return self._front.port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:3233`` (the ``apihost`` of OpenWhisk clients)."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> LocalWhisk:
        """Listen and start the janitor; raises ``OSError`` (the platform closed) if the address
        cannot be bound."""
        front = HttpFront(self.api, self.config)
        try:
            front.start()
        except OSError:
            self.platform.close()
            raise
        self._front = front
        self.api.api_host = self.url
        self.platform.start_janitor()
        containers = self.platform.containers
        # A platform without CPU control says so at the level operators watch.
        level = logging.INFO if containers.status.cpu_control else logging.WARNING
        log.log(level, "localwhisk %s listening on %s; containers: %s", __version__, self.url, containers.describe())
        return self

    def stop(self) -> None:
        """Graceful: stop accepting, drain, remove containers and cgroups, close the connections."""
        if self._front is not None:
            self._front.stop_accepting()
        self.platform.close()
        if self._front is not None:
            self._front.stop()

    def __enter__(self) -> LocalWhisk:  # noqa: PYI034 - the class is not meant to be subclassed
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
