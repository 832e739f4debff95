"""localwhisk's HTTP front against raw sockets on loopback: authentication before the body, time-outs,
slow clients, and every malformed request answered with OpenWhisk's error body, never a traceback."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_http import AUTH_HEADER, Connection, RawAnswer, exchange

from localwhisk.api import MAX_PAYLOAD_BYTES
from localwhisk.server import LocalWhisk
from localwhisk.testing import WhiskClient, running_platform

ECHO = "def main(args):\n    return {'echo': args}\n"
ACTION = "/api/v1/namespaces/_/actions/echo"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalWhisk, WhiskClient]]:
    with running_platform(tmp_path_factory.mktemp("http"), cgroups="off") as running:
        running[1].put_action("echo", ECHO)
        yield running


def request(method: str, target: str, body: bytes = b"", headers: tuple[str, ...] = (), auth: bool = True) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if auth:
        lines.append(AUTH_HEADER)
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_openwhisk_error(answer: RawAnswer | None, status: int) -> dict:
    assert answer is not None, "the server closed the connection without an answer"
    assert answer.status == status, answer
    body = json.loads(answer.body)
    assert set(body) == {"error", "code"} and body["error"] and body["code"]
    return body


# --- authentication comes before the body ---------------------------------------------------


def test_a_request_without_the_key_is_refused_before_its_body_is_sent(platform: tuple[LocalWhisk, WhiskClient]) -> None:
    whisk, _ = platform
    with Connection(whisk.port) as connection:
        # Headers announcing 40 MB, and not one byte of the body: the answer comes anyway.
        connection.send(request("PUT", ACTION, headers=("Content-Length: 40000000",), auth=False))
        answer = connection.answer()
        assert_openwhisk_error(answer, 401)
        assert answer is not None and answer.headers["connection"] == "close"
        assert connection.until_closed() == b""


def test_a_client_that_expects_100_continue_without_the_key_gets_401_and_no_continue(
    platform: tuple[LocalWhisk, WhiskClient],
) -> None:
    whisk, _ = platform
    with Connection(whisk.port) as connection:
        connection.send(request("PUT", ACTION, headers=("Content-Length: 1000", "Expect: 100-continue"), auth=False))
        assert_openwhisk_error(connection.answer(), 401)


def test_a_client_that_expects_100_continue_with_the_key_is_told_to_continue(platform: tuple[LocalWhisk, WhiskClient]) -> None:
    whisk, _ = platform
    body = json.dumps({"n": 1}).encode()
    with Connection(whisk.port) as connection:
        connection.send(request("POST", ACTION + "?blocking=true&result=true",
                                headers=(f"Content-Length: {len(body)}", "Expect: 100-continue")))
        assert connection.answer() == RawAnswer(100, {}, b"")
        connection.send(body)
        answer = connection.answer()
    assert answer is not None and answer.status == 200 and json.loads(answer.body) == {"echo": {"n": 1}}


def test_slow_unauthenticated_connections_do_not_block_an_authenticated_request(
    platform: tuple[LocalWhisk, WhiskClient],
) -> None:
    whisk, client = platform
    handlers = whisk.config.max_http_handlers
    with contextlib.ExitStack() as stack:
        # Twice as many connections as there are handler threads, each stopped in the middle of its
        # headers, and one per thread stopped in the middle of an authenticated body.
        for i in range(2 * handlers):
            connection = stack.enter_context(Connection(whisk.port))
            connection.send(f"PUT {ACTION} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\nX-Slow: {i}\r\n".encode())
        for _ in range(handlers):
            connection = stack.enter_context(Connection(whisk.port))
            connection.send(request("POST", ACTION, headers=("Content-Length: 1000",)) + b'{"n": ')
        status, result = client.invoke("echo", {"n": 7}, blocking=True, result=True)
        assert (status, result) == (200, {"echo": {"n": 7}})
        assert client.request("GET", "/api/v1/namespaces/_/actions")[0] == 200


# --- time-outs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWhisk]:
    with running_platform(
        tmp_path_factory.mktemp("impatient"), cgroups="off", request_timeout_s=0.2, keepalive_timeout_s=0.2
    ) as (whisk, client):
        client.put_action("echo", ECHO)
        yield whisk


def test_a_client_that_stops_in_its_headers_is_disconnected_after_the_request_timeout(impatient: LocalWhisk) -> None:
    with Connection(impatient.port) as connection:
        connection.send(f"GET {ACTION} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        assert connection.until_closed() == b""


def test_a_client_that_stops_in_its_body_gets_408_and_is_disconnected(impatient: LocalWhisk) -> None:
    with Connection(impatient.port) as connection:
        connection.send(request("POST", ACTION, headers=("Content-Length: 100",)) + b'{"n":')
        assert_openwhisk_error(connection.answer(), 408)
        assert connection.until_closed() == b""


def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(impatient: LocalWhisk) -> None:
    with Connection(impatient.port) as connection:
        connection.send(request("GET", ACTION))
        answer = connection.answer()
        assert answer is not None and answer.status == 200 and "connection" not in answer.headers
        assert connection.until_closed() == b""


# --- bad input ------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (request("PUT", ACTION, b"{not json"), 400, "not valid JSON"),
        (request("PUT", ACTION, b'{"exec": "\xff\xfe"}'), 400, "not UTF-8"),
        (request("POST", ACTION, DEEP), 400, "nested too deeply"),
        (request("POST", ACTION, b'{"n": NaN}'), 400, "NaN is not a JSON value"),
        (request("POST", ACTION, b"[1, 2]"), 400, "must be a JSON object"),
        (request("POST", ACTION, headers=(f"Content-Length: {MAX_PAYLOAD_BYTES + 1}",)), 413, "exceeds the allowed size"),
        (request("POST", ACTION, headers=("Content-Length: 12abc",)), 400, "Content-Length"),
        (request("POST", ACTION, headers=("Content-Length: -1",)), 400, "Content-Length"),
        (request("POST", ACTION, headers=("Content-Length: 2", "Transfer-Encoding: chunked")), 400, "both"),
        (request("POST", ACTION, headers=("Transfer-Encoding: gzip",)), 501, "not supported"),
        (request("POST", ACTION, b"zz\r\n", headers=("Transfer-Encoding: chunked",)), 400, "hexadecimal"),
        (b"GARBAGE\r\n\r\n", 400, "request line"),
        (b"GET http://[x HTTP/1.1\r\n\r\n", 400, "not a valid URL"),
        (f"GET {ACTION} HTTP/2.0\r\n\r\n".encode(), 505, "HTTP/2.0"),
        (f"GET /{'a' * 70_000} HTTP/1.1\r\n\r\n".encode(), 414, "too long"),
        (request("GET", ACTION, headers=("X-Big: " + "b" * 70_000,)), 431, "too large"),
        (request("GET", ACTION, headers=tuple(f"X-H{i}: v" for i in range(120))), 431, "too large"),
        (request("GET", ACTION, headers=("no colon here",)), 400, "malformed"),
        (request("GET", ACTION, headers=(AUTH_HEADER,)), 400, "repeats"),
        (request("GET", "/api/v1/namespaces/_/actions/%ff%fe"), 400, "not a valid OpenWhisk entity name"),
        (request("GET", "/api/v1/namespaces/_/actions?limit=abc"), 400, "limit must be an integer"),
        (request("GET", "/api/v1/namespaces/_/activations?since=-5"), 400, "since must be >= 0"),
        (request("DELETE", "/api/v1/namespaces/_/activations"), 405, "not allowed"),
    ],
    ids=["malformed-json", "not-utf8", "nested-too-deeply", "nan", "payload-not-an-object", "payload-too-large",
         "length-not-a-number", "length-negative", "length-and-chunked", "unknown-transfer-coding", "bad-chunk-size",
         "garbage-request-line", "invalid-url", "http2", "request-line-too-long", "header-too-large", "too-many-headers",
         "header-without-colon", "repeated-authorization", "non-utf8-name", "limit-not-a-number", "negative-since",
         "wrong-method"],
)
def test_a_malformed_request_gets_openwhisks_error_body_and_no_traceback(
    platform: tuple[LocalWhisk, WhiskClient], caplog: pytest.LogCaptureFixture, raw: bytes, status: int, says: str
) -> None:
    whisk, _ = platform
    with caplog.at_level(logging.DEBUG, logger="localwhisk"):
        body = assert_openwhisk_error(exchange(whisk.port, raw), status)
    assert says in body["error"]
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


#: The fuzzed requests may update or delete this action, never the one other tests use.
FUZZED = "/api/v1/namespaces/_/actions/fuzzed"
PATHS = ("/ping", "/api/v1", FUZZED, FUZZED + "?blocking=true", FUZZED + "?overwrite=true",
         "/api/v1/namespaces/_/activations", "/resources/v1/actions/fuzzed", "/api/v1/namespaces/x%ff/actions", "/metrics")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "G\x00T"]),
    path=st.one_of(st.sampled_from(PATHS), st.text(min_size=1, max_size=40).map(lambda t: "/" + t.replace(" ", ""))),
    headers=st.lists(st.sampled_from([AUTH_HEADER, "Authorization: Basic !!", "Content-Type: application/json",
                                      "Connection: close", "Expect: 100-continue", "Content-Length: 3"]), max_size=3),
    body=st.one_of(st.binary(max_size=64), st.builds(lambda v: json.dumps(v).encode(), st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8))),
)
def test_any_request_is_answered_in_openwhisks_shape_without_a_traceback(
    platform: tuple[LocalWhisk, WhiskClient], caplog: pytest.LogCaptureFixture,
    method: str, path: str, headers: list[str], body: bytes,
) -> None:
    whisk, client = platform
    client.put_action("fuzzed", ECHO, overwrite=True)
    lines = [f"{method} {path} HTTP/1.1", *headers, f"Content-Length: {len(body)}"]
    # The path goes as UTF-8 bytes, as a client that does not percent-encode would send it.
    raw = ("\r\n".join(line for line in lines if "Content-Length: 3" not in line) + "\r\n\r\n").encode() + body
    with caplog.at_level(logging.DEBUG, logger="localwhisk"), Connection(whisk.port) as connection:
        connection.send(raw)
        answer = connection.answer()
        if answer is not None and answer.status == 100:
            answer = connection.answer()
    assert answer is not None
    if answer.status >= 400 and method != "HEAD":
        assert set(json.loads(answer.body)) == {"error", "code"}
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


def test_a_chunked_body_is_read(platform: tuple[LocalWhisk, WhiskClient]) -> None:
    whisk, _ = platform
    chunks = b'7\r\n{"n": 4\r\n1\r\n}\r\n0\r\n\r\n'
    answer = exchange(whisk.port, request("POST", ACTION + "?blocking=true&result=true", chunks,
                                          headers=("Transfer-Encoding: chunked",)))
    assert answer is not None and answer.status == 200 and json.loads(answer.body) == {"echo": {"n": 4}}


def test_requests_pipelined_on_one_connection_are_answered_in_order(platform: tuple[LocalWhisk, WhiskClient]) -> None:
    whisk, _ = platform
    with Connection(whisk.port) as connection:
        connection.send(request("GET", "/ping", auth=False) + request("GET", ACTION) + request("GET", "/api/v1/namespaces"))
        answers = [connection.answer() for _ in range(3)]
    assert [a.status for a in answers if a is not None] == [200, 200, 200]
    assert answers[0] is not None and answers[0].body == b"pong"
    assert answers[2] is not None and json.loads(answers[2].body) == ["guest"]


def test_a_connection_beyond_the_limit_is_answered_503(tmp_path: Path) -> None:
    with running_platform(tmp_path, cgroups="off", max_connections=2) as (whisk, client):
        with Connection(whisk.port) as first, Connection(whisk.port) as second:
            for connection in (first, second):
                connection.send(request("GET", "/ping", auth=False))
                assert connection.answer() is not None  # both are being served, and stay open
            assert_openwhisk_error(exchange(whisk.port, request("GET", "/ping", auth=False)), 503)
        client.close()


def test_a_platform_whose_port_is_taken_does_not_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError), running_platform(tmp_path, cgroups="off", port=taken.getsockname()[1]):
            pass
    with running_platform(tmp_path, cgroups="off") as (_, client):  # the state directory was released
        assert client.request("GET", "/api/v1/namespaces")[0] == 200
