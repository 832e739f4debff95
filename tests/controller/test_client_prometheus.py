"""The PromQL reader against a real HTTP server on 127.0.0.1 that answers like Prometheus (or fails like it)."""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from controller.clients.errors import Deadline, deadline_scope
from controller.clients.prometheus import (
    PrometheusReader,
    PromQLBadResponse,
    PromQLQueryError,
    PromQLServerError,
    PromQLThrottled,
    PromQLTimeout,
    PromQLUnauthorized,
    PromQLUnavailable,
    Sample,
    by_label,
    histogram_quantile,
)


@dataclass
class Script:
    """What the fake Prometheus answers next: status, body (dict as JSON, or raw bytes), or a hang."""

    status: int = 200
    body: object = field(default_factory=dict)
    hang: bool = False
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class FakePrometheus:
    def __init__(self) -> None:
        self.script = Script()
        script_holder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                s = script_holder.script
                url = urllib.parse.urlsplit(self.path)
                s.requests.append((url.path, urllib.parse.parse_qs(url.query)))
                if s.hang:
                    s.release.wait(timeout=600.0)  # until the test releases it (at teardown at the latest)
                    return
                body = s.body if isinstance(s.body, bytes) else json.dumps(s.body).encode()
                self.send_response(s.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.script.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    yield server
    server.close()


def _success(data: dict) -> dict:
    return {"status": "success", "data": data}


def test_an_instant_vector_becomes_samples_with_labels_and_float_values(prometheus):
    prometheus.script = Script(body=_success({"resultType": "vector", "result": [
        {"metric": {"action": "resize", "namespace": "guest"}, "value": [1700000000.5, "0.25"]},
        {"metric": {"action": "thumb"}, "value": [1700000000.5, "NaN"]},
    ]}))
    samples = PrometheusReader(prometheus.url).instant('histogram_quantile(0.99, x)', at_s=1700000000.5)
    assert samples[0] == Sample({"action": "resize", "namespace": "guest"}, 1700000000.5, 0.25)
    assert math.isnan(samples[1].value)
    path, params = prometheus.script.requests[0]
    assert path == "/api/v1/query"
    assert params["query"] == ["histogram_quantile(0.99, x)"]
    assert params["time"] == ["1700000000.500"]
    assert params["timeout"] == ["5.000"]  # seconds, as Prometheus parses a plain number


def test_a_scalar_is_one_sample_without_labels(prometheus):
    prometheus.script = Script(body=_success({"resultType": "scalar", "result": [1700000000, "3"]}))
    assert PrometheusReader(prometheus.url).instant("scalar(x)") == [Sample({}, 1700000000.0, 3.0)]


def test_a_range_query_returns_one_series_per_label_set(prometheus):
    prometheus.script = Script(body=_success({"resultType": "matrix", "result": [
        {"metric": {"action": "a"}, "values": [[100, "1"], [110, "2.5"], [120, "+Inf"]]},
    ]}))
    series = PrometheusReader(prometheus.url, timeout_s=2).range("rate(x[1m])", 100, 120, 10)
    assert series[0].labels == {"action": "a"}
    np.testing.assert_array_equal(series[0].times_s, [100.0, 110.0, 120.0])
    np.testing.assert_array_equal(series[0].values, [1.0, 2.5, np.inf])
    path, params = prometheus.script.requests[0]
    assert path == "/api/v1/query_range"
    assert (params["start"], params["end"], params["step"], params["timeout"]) == (
        ["100.000"], ["120.000"], ["10"], ["2.000"])


def test_an_empty_vector_is_no_samples_not_zero(prometheus):
    prometheus.script = Script(body=_success({"resultType": "vector", "result": []}))
    assert PrometheusReader(prometheus.url).instant("up") == []


def test_a_path_prefix_in_the_base_url_is_kept(prometheus):
    prometheus.script = Script(body=_success({"resultType": "vector", "result": []}))
    PrometheusReader(prometheus.url + "/prometheus/").instant("up")
    assert prometheus.script.requests[0][0] == "/prometheus/api/v1/query"


def _error(error_type: str, message: str) -> dict:
    return {"status": "error", "errorType": error_type, "error": message}


@pytest.mark.parametrize(
    ("status", "body", "error", "kind"),
    [
        (400, _error("bad_data", "parse error at char 5"), PromQLQueryError, "rejected"),
        (422, _error("execution", "many-to-many matching not allowed"), PromQLQueryError, "rejected"),
        (503, _error("timeout", "query timed out in expression evaluation"), PromQLTimeout, "timeout"),
        (503, _error("unavailable", "TSDB not ready"), PromQLServerError, "server_error"),
        (500, _error("internal", "oops"), PromQLServerError, "server_error"),
        (429, b"Too Many Requests", PromQLThrottled, "throttled"),
        (502, b"<html>Bad Gateway</html>", PromQLServerError, "server_error"),
        (503, b"Service Unavailable", PromQLServerError, "server_error"),
        (401, b"Unauthorized", PromQLUnauthorized, "unauthorized"),
        (200, b"<html>login</html>", PromQLBadResponse, "malformed"),
        (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}, PromQLBadResponse, "malformed"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]}},
         PromQLBadResponse, "malformed"),
    ],
    ids=["bad-query", "execution-error", "query-timeout", "not-ready", "internal", "throttled-429",
         "proxy-502-html", "plain-503", "proxy-401", "not-json", "wrong-result-type", "value-not-a-number"],
)
def test_failures_become_typed_errors_with_a_bounded_kind(prometheus, status, body, error, kind):
    prometheus.script = Script(status=status, body=body)
    with pytest.raises(error) as raised:
        PrometheusReader(prometheus.url).instant("up")
    assert raised.value.kind == kind
    assert prometheus.url in str(raised.value)


def test_a_prometheus_that_never_answers_times_out_within_the_bound(prometheus):
    prometheus.script = Script(hang=True)
    with pytest.raises(PromQLTimeout, match="no answer within 0.2 s"):
        PrometheusReader(prometheus.url, timeout_s=0.2).instant("up")
    # The request reached the server, which is still holding it: the reader gave up on its own bound,
    # not because the server answered or closed the connection.
    assert len(prometheus.script.requests) == 1
    assert not prometheus.script.release.is_set()


def test_a_prometheus_that_is_down_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    with pytest.raises(PromQLUnavailable, match="cannot connect") as raised:
        PrometheusReader(f"http://127.0.0.1:{port}", timeout_s=1).instant("up")
    assert raised.value.kind == "unreachable"


def test_by_label_keys_samples_and_refuses_ambiguous_series():
    samples = [Sample({"action": "a"}, 1.0, 0.5), Sample({"action": "b"}, 1.0, 2.0)]
    assert by_label(samples, "action") == {"a": 0.5, "b": 2.0}
    with pytest.raises(PromQLBadResponse, match="aggregate the query by action"):
        by_label(samples + [Sample({"action": "a", "pod": "x"}, 1.0, 1.0)], "action")
    with pytest.raises(PromQLBadResponse, match="no label 'action'"):
        by_label([Sample({}, 1.0, 1.0)], "action")


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("nan")], ids=["zero", "negative", "nan"])
def test_a_reader_without_a_positive_timeout_is_refused(timeout_s):
    with pytest.raises(ValueError, match="timeout_s"):
        PrometheusReader("http://127.0.0.1:1", timeout_s=timeout_s)


def test_inside_a_tick_deadline_the_query_waits_only_for_what_is_left_of_it(prometheus):
    prometheus.script = Script(hang=True)
    now = [100.0]
    with deadline_scope(Deadline(at_s=100.3, clock=lambda: now[0])):
        with pytest.raises(PromQLTimeout, match="no answer within 0.3 s"):
            PrometheusReader(prometheus.url, timeout_s=5).instant("up")
        assert prometheus.script.requests[0][1]["timeout"] == ["0.300"]
        now[0] = 100.5  # past the deadline: nothing more is sent
        with pytest.raises(PromQLTimeout, match="deadline passed"):
            PrometheusReader(prometheus.url, timeout_s=5).instant("up")
    assert len(prometheus.script.requests) == 1


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {0.1: 0.0, 0.5: 10.0, math.inf: 10.0}, 0.3),   # inside the second bucket, linearly
        (0.99, {0.1: 5.0, 1.0: 5.0, math.inf: 10.0}, 1.0),   # in the +Inf bucket: the highest finite bound
        (0.5, {0.2: 4.0, math.inf: 4.0}, 0.1),               # the first bucket starts at 0
        (0.5, {0.1: 0.0, math.inf: 0.0}, math.nan),          # nothing observed
        (0.5, {0.1: 3.0, 0.5: 3.0}, math.nan),               # no +Inf bucket: not a histogram
    ],
    ids=["interpolated", "in-the-inf-bucket", "first-bucket-from-zero", "empty", "no-inf-bucket"],
)
def test_histogram_quantile_interpolates_like_promql(q, buckets, expected):
    got = histogram_quantile(q, buckets)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)
