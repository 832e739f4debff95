"""localwhisk's OpenWhisk REST API, exercised over HTTP against a real platform on 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from localwhisk.clock import ManualClock
from localwhisk.config import PlatformConfig, Subject, ThrottleConfig
from localwhisk.server import LocalWhisk
from localwhisk.testing import TEST_AUTH, WhiskClient, annotation, running_platform

DOUBLE = "def main(args):\n    print('doubling', args.get('n'))\n    return {'n': args.get('n', 0) * 2}\n"
APP_ERROR = "def main(args):\n    return {'error': 'no such order'}\n"
RAISES = "def main(args):\n    raise ValueError('boom')\n"
SLEEPS = "import time\n\ndef main(args):\n    time.sleep(args.get('s', 1.0))\n    return {'slept': True}\n"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalWhisk, WhiskClient]]:
    # The real clock: activation timestamps must follow the order of the invocations.
    with running_platform(tmp_path_factory.mktemp("whisk")) as running:
        yield running


@pytest.fixture
def client(platform: tuple[LocalWhisk, WhiskClient]) -> WhiskClient:
    return platform[1]


@pytest.fixture
def whisk(platform: tuple[LocalWhisk, WhiskClient]) -> LocalWhisk:
    return platform[0]


def test_info_and_ping_are_served_without_credentials(whisk: LocalWhisk) -> None:
    anonymous = WhiskClient(whisk.url)
    anonymous.auth_header = None
    status, info = anonymous.request("GET", "/api/v1")
    assert status == 200 and info["api_paths"] == ["/api/v1"]
    assert anonymous.request("GET", "/ping") == (200, "pong")


@pytest.mark.parametrize(
    "header",
    [None, "Basic " + base64.b64encode(b"someone:wrong-key").decode(), "Basic not-base64!", "Bearer token"],
    ids=["missing", "wrong-key", "malformed", "wrong-scheme"],
)
def test_requests_without_valid_credentials_are_refused_with_401(whisk: LocalWhisk, header: str | None) -> None:
    stranger = WhiskClient(whisk.url)
    stranger.auth_header = header
    status, body = stranger.request("GET", "/api/v1/namespaces/_/actions")
    assert status == 401
    assert set(body) == {"error", "code"} and body["code"]


def test_another_namespace_is_forbidden(client: WhiskClient) -> None:
    status, body = client.request("GET", "/api/v1/namespaces/someone-else/actions")
    assert status == 403 and "someone-else" in body["error"]


def test_the_underscore_namespace_is_the_callers_own(client: WhiskClient) -> None:
    assert client.request("GET", "/api/v1/namespaces") == (200, ["guest"])


def test_an_action_is_created_read_listed_updated_and_deleted(client: WhiskClient) -> None:
    status, created = client.put_action("crud", DOUBLE, limits={"memory": 128})
    assert status == 200
    assert (created["name"], created["version"], created["limits"]["memory"]) == ("crud", "0.0.1", 128)
    assert created["limits"]["timeout"] == 60_000  # OpenWhisk's default where none is given

    status, again = client.put_action("crud", DOUBLE)
    assert status == 409 and again["error"] == "resource already exists"

    status, updated = client.put_action("crud", DOUBLE.replace("* 2", "* 3"), overwrite=True)
    assert status == 200 and updated["version"] == "0.0.2"
    assert updated["limits"]["memory"] == 128  # limits not given in an update keep their values

    status, read = client.request("GET", client.action_path("crud"))
    assert status == 200 and "* 3" in read["exec"]["code"]
    status, without_code = client.request("GET", client.action_path("crud") + "?code=false")
    assert "code" not in without_code["exec"]

    status, listed = client.request("GET", "/api/v1/namespaces/_/actions")
    assert status == 200 and "crud" in [a["name"] for a in listed]

    assert client.request("DELETE", client.action_path("crud"))[0] == 200
    assert client.request("GET", client.action_path("crud"))[0] == 404
    assert client.request("DELETE", client.action_path("crud"))[0] == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"limits": {"memory": 64}}, "memory 64 MB below allowed threshold of 128 MB"),
        ({"limits": {"memory": 1024}}, "memory 1024 MB exceeds allowed threshold of 512 MB"),
        ({"limits": {"timeout": 50}}, "timeout 50 ms below allowed threshold of 100 ms"),
        ({"limits": {"timeout": 300_001}}, "timeout 300001 ms exceeds allowed threshold of 300000 ms"),
        ({"limits": {"logs": 11}}, "logs 11 MB exceeds allowed threshold of 10 MB"),
        ({"limits": {"concurrency": 2}}, "concurrency 2 exceeds allowed threshold of 1"),
        ({"limits": {"memory": "lots"}}, "limits.memory must be an integer"),
        ({"exec": {"kind": "nodejs:20", "code": "x"}}, "kind 'nodejs:20' is not supported"),
        ({"exec": {"kind": "python:3", "code": ""}}, "exec.code must be a non-empty string"),
        ({"exec": None}, "exec is required"),
    ],
    ids=["memory-low", "memory-high", "timeout-low", "timeout-high", "logs-high", "concurrency-high",
         "memory-not-int", "other-kind", "empty-code", "no-exec"],
)
def test_invalid_actions_are_refused_with_400_and_an_openwhisk_error_body(
    client: WhiskClient, body: dict, message: str
) -> None:
    full = {"exec": {"kind": "python:3", "code": DOUBLE}} | body
    if full["exec"] is None:
        del full["exec"]
    status, error = client.request("PUT", client.action_path("invalid"), full)
    assert status == 400
    assert message in error["error"]
    assert error["code"]


@pytest.mark.parametrize(
    ("raw", "path"),
    [(b"{not json", "/api/v1/namespaces/_/actions/x"), (b"{}", "/api/v1/namespaces/_/actions/bad%2Fname!")],
    ids=["malformed-json", "invalid-name"],
)
def test_malformed_requests_are_refused_with_400(client: WhiskClient, raw: bytes, path: str) -> None:
    status, error = client.request("PUT", path, raw=raw)
    assert status == 400 and error["error"]


def test_a_blocking_invocation_answers_200_with_the_activation(client: WhiskClient) -> None:
    client.put_action("double", DOUBLE, overwrite=True)
    status, record = client.invoke("double", {"n": 21}, blocking=True)
    assert status == 200
    assert record["response"] == {"status": "success", "statusCode": 0, "success": True, "result": {"n": 42}, "size": 8}
    assert any("doubling 21" in line for line in record["logs"])
    status, result = client.invoke("double", {"n": 5}, blocking=True, result=True)
    assert (status, result) == (200, {"n": 10})


def test_default_parameters_are_overridden_by_the_payload(client: WhiskClient) -> None:
    client.put_action("defaults", DOUBLE, overwrite=True, parameters=[{"key": "n", "value": 4}])
    assert client.invoke("defaults", {}, blocking=True, result=True) == (200, {"n": 8})
    assert client.invoke("defaults", {"n": 1}, blocking=True, result=True) == (200, {"n": 2})


def test_a_non_blocking_invocation_answers_202_and_its_record_tells_cold_from_warm(
    client: WhiskClient, whisk: LocalWhisk
) -> None:
    client.put_action("annotated", DOUBLE, overwrite=True)
    status, accepted = client.invoke("annotated", {"n": 1})
    assert status == 202 and len(accepted["activationId"]) == 32
    cold = whisk.platform.wait_activation(accepted["activationId"], timeout_s=30)
    assert cold is not None

    status, record = client.activation(accepted["activationId"])
    assert status == 200 and record["response"]["result"] == {"n": 2}
    assert annotation(record, "initTime") is not None and annotation(record, "initTime") > 0
    assert annotation(record, "path") == "guest/annotated"
    assert annotation(record, "kind") == "python:3"
    assert annotation(record, "limits") == {"timeout": 60_000, "memory": 256, "logs": 10, "concurrency": 1}
    assert annotation(record, "waitTime") >= 0
    assert record["duration"] >= annotation(record, "initTime")  # a cold duration includes the init

    status, warm = client.invoke("annotated", {"n": 2}, blocking=True)
    assert status == 200 and annotation(warm, "initTime") is None and annotation(warm, "waitTime") is not None

    assert client.activation(accepted["activationId"], "result")[1]["result"] == {"n": 2}
    assert client.activation(accepted["activationId"], "logs")[1] == {"logs": record["logs"]}


@pytest.mark.parametrize(
    ("code", "status_text"),
    [(APP_ERROR, "application error"), (RAISES, "action developer error")],
    ids=["returns-error", "raises"],
)
def test_a_failing_action_answers_502(client: WhiskClient, code: str, status_text: str) -> None:
    client.put_action("fails", code, overwrite=True)
    status, record = client.invoke("fails", blocking=True)
    assert status == 502
    assert record["response"]["status"] == status_text and record["response"]["success"] is False
    assert "error" in record["response"]["result"]


def test_a_container_survives_an_exception_in_the_action(client: WhiskClient) -> None:
    client.put_action("raises-then-warm", RAISES, overwrite=True)
    assert client.invoke("raises-then-warm", blocking=True)[0] == 502
    status, again = client.invoke("raises-then-warm", blocking=True)
    assert status == 502 and annotation(again, "initTime") is None


def test_an_unknown_action_or_activation_is_404(client: WhiskClient) -> None:
    assert client.invoke("no-such-action", blocking=True)[0] == 404
    assert client.activation("0" * 32)[0] == 404


def test_a_blocking_invocation_that_outlasts_its_wait_answers_202(client: WhiskClient, whisk: LocalWhisk) -> None:
    client.put_action("slow", SLEEPS, overwrite=True)
    status, accepted = client.invoke("slow", {"s": 1.0}, blocking=True, timeout_ms=100)
    assert status == 202 and "activationId" in accepted
    record = whisk.platform.wait_activation(accepted["activationId"], timeout_s=30)
    assert record is not None and record["response"]["success"]


def test_an_action_past_its_time_limit_is_killed_as_a_developer_error(client: WhiskClient) -> None:
    # The limit covers the cold start too: 3 s leave a loaded machine room to start the container,
    # and are still far below the 30 s the action asks to sleep.
    client.put_action("too-slow", SLEEPS, overwrite=True, limits={"timeout": 3000})
    status, record = client.invoke("too-slow", {"s": 30}, blocking=True)
    assert status == 502
    assert record["response"]["status"] == "action developer error"
    assert annotation(record, "timeout") is True
    assert "3000 milliseconds" in record["response"]["result"]["error"]
    # The next activation needs a new container: the killed one is gone.
    status, record = client.invoke("too-slow", {"s": 0}, blocking=True)
    assert status == 200 and annotation(record, "initTime") is not None


def test_the_activations_list_filters_by_name_and_limits_and_hides_docs_unless_asked(client: WhiskClient) -> None:
    client.put_action("listed", DOUBLE, overwrite=True)
    ids = [client.invoke("listed", {"n": i}, blocking=True)[1]["activationId"] for i in range(3)]
    status, listed = client.activations(name="listed", limit=2)
    assert status == 200 and [r["activationId"] for r in listed] == ids[::-1][:2]
    assert "response" not in listed[0] and "logs" not in listed[0]
    status, skipped = client.activations(name="listed", skip=2)
    assert [r["activationId"] for r in skipped] == ids[:1]
    status, docs = client.activations(name="listed", docs="true", limit=1)
    assert docs[0]["response"]["result"] == {"n": 4}
    upto = docs[0]["start"] - 10**9
    assert client.activations(name="listed", upto=upto)[1] == []


def test_the_invocation_timeout_parameter_is_validated(client: WhiskClient) -> None:
    client.put_action("double", DOUBLE, overwrite=True)
    status, error = client.invoke("double", blocking=True, timeout_ms=61_000)
    assert status == 400 and "at most 60000" in error["error"]


def test_invocations_over_the_per_minute_limit_are_throttled_with_429(tmp_path: Path) -> None:
    clock = ManualClock()
    with running_platform(tmp_path, clock=clock, throttle=ThrottleConfig(invocations_per_minute=2)) as (_, client):
        client.put_action("limited", DOUBLE)
        assert [client.invoke("limited", blocking=True)[0] for _ in range(2)] == [200, 200]
        status, error = client.invoke("limited", blocking=True)
        assert status == 429
        assert "allowed: 2" in error["error"] and error["code"]
        clock.advance(61.0)  # the window has moved on
        assert client.invoke("limited", blocking=True)[0] == 200


def test_invocations_over_the_concurrency_limit_are_throttled_with_429(tmp_path: Path) -> None:
    with running_platform(tmp_path, clock=ManualClock(), throttle=ThrottleConfig(concurrent_invocations=1)) as (
        whisk,
        client,
    ):
        client.put_action("slow", SLEEPS)
        status, accepted = client.invoke("slow", {"s": 0.5})
        assert status == 202
        status, error = client.invoke("slow", {"s": 0.0})
        assert status == 429 and "concurrent" in error["error"]
        assert whisk.platform.wait_activation(accepted["activationId"], timeout_s=30) is not None
        assert client.invoke("slow", {"s": 0.0}, blocking=True)[0] == 200


def test_a_platform_that_is_shutting_down_answers_503(tmp_path: Path) -> None:
    whisk = LocalWhisk(PlatformConfig(subject=Subject.parse(TEST_AUTH), state_dir=tmp_path, port=0)).start()
    client = WhiskClient(whisk.url, TEST_AUTH)
    client.put_action("late", DOUBLE)
    whisk.platform.scheduler.shutdown(drain_timeout_s=1.0)
    status, error = client.invoke("late", blocking=True)
    client.close()
    whisk.stop()
    assert status == 503 and "shutting down" in error["error"]


def test_actions_survive_a_restart_on_the_same_state_directory(tmp_path: Path) -> None:
    with running_platform(tmp_path) as (_, client):
        client.put_action("kept", DOUBLE)
    with running_platform(tmp_path) as (_, client):
        assert client.invoke("kept", {"n": 3}, blocking=True, result=True) == (200, {"n": 6})
