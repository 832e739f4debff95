"""The OpenWhisk REST client against a recorded-shape fake: calls, typed errors, retries, spec shapes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from fakes.openwhisk import AUTH, FakeOpenWhisk

from controller.clients import openwhisk as ow
from localwhisk.testing import free_port

SPEC_PATH = Path(__file__).resolve().parents[2] / "reference" / "openwhisk" / "swagger" / "apiv1swagger.json"
CODE = "def main(args):\n    return {'ok': True}\n"


class RecordingSleep:
    """The injected sleep: records each delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake():
    with FakeOpenWhisk() as server:
        yield server


def make_client(url: str, sleep: RecordingSleep | None = None, **kwargs) -> ow.OpenWhiskClient:
    kwargs.setdefault("retry", ow.RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=2.0, jitter=0.5))
    return ow.OpenWhiskClient(url, AUTH, rng=np.random.default_rng(1), sleep=sleep or RecordingSleep(), **kwargs)


def deploy(client: ow.OpenWhiskClient, name: str = "hello") -> dict:
    return client.put_action(name, {"exec": {"kind": "python:3.11", "code": CODE}, "limits": {"memory": 256}})


# --- spec -------------------------------------------------------------------------------------


def spec_validator(definition: str) -> jsonschema.Draft4Validator:
    """A validator of one Swagger definition, with the spec's ``#/definitions`` refs resolvable."""
    spec = json.loads(SPEC_PATH.read_text())
    schema = {"$ref": f"#/definitions/{definition}", "definitions": spec["definitions"]}
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize(
    "definition, produce",
    [
        ("Action", lambda c: deploy(c)),
        ("Action", lambda c: (deploy(c), c.get_action("hello"))[1]),
        ("ActionMeta", lambda c: (deploy(c), c.list_actions()[0])[1]),
        ("Activation", lambda c: (deploy(c), c.invoke("hello", blocking=True).record)[1]),
        ("ActivationBrief", lambda c: (deploy(c), c.invoke("hello"), c.list_activations()[0])[2]),
        ("Activation", lambda c: (deploy(c), c.get_activation(c.invoke("hello").activation_id))[1]),
    ],
    ids=["put-action", "get-action", "list-actions", "blocking-invoke", "list-activations", "get-activation"],
)
def test_what_the_fake_returns_matches_the_swagger_definition(fake, definition, produce):
    client = make_client(fake.url)
    body = produce(client)
    errors = sorted(e.message for e in spec_validator(definition).iter_errors(body))
    # The spec types "version" as a string; OpenWhisk's semver is a string too.
    assert errors == []


def test_the_action_body_the_client_sends_matches_action_put(fake):
    client = make_client(fake.url)
    deploy(client)
    sent = fake.calls_to("PUT", r"/actions/hello$")[0]
    assert list(spec_validator("ActionPut").iter_errors(sent.body)) == []
    assert sent.query == {"overwrite": "true"}


def test_the_benchmark_action_bodies_match_action_put_except_the_runtime_kind():
    from workload.functions import FUNCTIONS

    validator = spec_validator("ActionPut")
    for benchmark in FUNCTIONS.values():
        messages = [e.message for e in validator.iter_errors(benchmark.action_body())]
        # 'python:3' is the kind the local platform and older runtime manifests use; the spec's
        # enum lists the kinds of the current upstream manifest only.
        assert all("'python:3' is not one of" in m for m in messages), (benchmark.name, messages)


def test_error_bodies_of_the_fake_match_error_message(fake):
    client = make_client(fake.url)
    with pytest.raises(ow.NotFound) as caught:
        client.get_action("missing")
    assert list(spec_validator("ErrorMessage").iter_errors(caught.value.body)) == []


# --- calls ------------------------------------------------------------------------------------


def test_a_blocking_invocation_returns_the_activation_record_and_the_first_is_cold(fake):
    client = make_client(fake.url)
    deploy(client)
    first = client.invoke("hello", {"x": 1}, blocking=True)
    second = client.invoke("hello", blocking=True)
    assert first.status == 200 and first.record["response"]["result"]["echo"] == {"x": 1}
    assert ow.annotation(first.record, "initTime") == 300
    assert ow.annotation(second.record, "initTime") is None


def test_a_non_blocking_invocation_returns_only_the_activation_id(fake):
    client = make_client(fake.url)
    deploy(client)
    answer = client.invoke("hello")
    assert answer.status == 202 and answer.record is None and len(answer.activation_id) == 32


def test_requests_use_basic_auth_and_the_default_namespace(fake):
    client = make_client(fake.url)
    client.list_actions()
    call = fake.calls[-1]
    assert call.path == "/api/v1/namespaces/_/actions"
    assert call.headers["authorization"] == fake.auth_header


def test_paging_reads_every_activation_of_the_window(fake):
    client = make_client(fake.url)
    deploy(client)
    ids = {client.invoke("hello").activation_id for _ in range(7)}
    got = client.iter_activations(since_ms=0, upto_ms=1 << 60, page=3)
    assert {r["activationId"] for r in got} == ids
    assert len(fake.calls_to("GET", r"/activations$")) == 3


def test_the_key_is_never_in_the_clients_repr():
    client = ow.OpenWhiskClient("http://127.0.0.1:1", AUTH)
    assert AUTH.split(":")[1] not in repr(client)


@pytest.mark.parametrize("auth", ["nocolon", ":key", "uuid:"], ids=["no-colon", "no-uuid", "no-key"])
def test_a_malformed_key_is_refused_at_construction(auth):
    with pytest.raises(ValueError, match="uuid:key"):
        ow.OpenWhiskClient("http://127.0.0.1:1", auth)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, error, attempts",
    [
        (401, {"error": "The supplied authentication is invalid"}, ow.Unauthorized, 1),
        (403, {"error": "not authorized"}, ow.Unauthorized, 1),
        (404, {"error": "The requested resource does not exist."}, ow.NotFound, 1),
        (400, {"error": "malformed"}, ow.RequestRejected, 1),
        (409, {"error": "resource already exists"}, ow.RequestRejected, 1),
        (500, {"error": "internal"}, ow.ServerError, 1),
        (502, {"activationId": "a" * 32, "response": {"statusCode": 1}}, ow.ApplicationError, 1),
        (429, {"error": "Too many requests in the last minute"}, ow.Throttled, 4),
        (503, {"error": "System is overloaded"}, ow.Unavailable, 4),
        (408, {"error": "request timed out"}, ow.Timeout, 1),
    ],
    ids=["401", "403", "404", "400", "409", "500", "502", "429-exhausted", "503-exhausted", "408"],
)
def test_each_failed_status_raises_its_typed_error_after_the_allowed_attempts(fake, status, body, error, attempts):
    sleep = RecordingSleep()
    client = make_client(fake.url, sleep)
    fake.fail("GET", r"/actions/x$", status, body, times=10)
    with pytest.raises(error) as caught:
        client.get_action("x")
    assert caught.value.status == status
    assert len(fake.calls_to("GET", r"/actions/x$")) == attempts
    assert len(sleep.delays) == attempts - 1


def test_a_throttled_invocation_is_retried_with_backoff_then_succeeds(fake):
    sleep = RecordingSleep()
    client = make_client(fake.url, sleep)
    deploy(client)
    fake.fail("POST", r"/actions/hello$", 429, {"error": "Too many concurrent requests in flight"}, times=2)
    answer = client.invoke("hello", blocking=True)
    assert answer.status == 200
    assert len(fake.calls_to("POST", r"/actions/hello$")) == 3
    # Capped exponential with 50% jitter: the k-th delay is in [0.5, 1] x min(2, 0.5 x 2^(k-1)).
    assert 0.25 <= sleep.delays[0] <= 0.5 and 0.5 <= sleep.delays[1] <= 1.0


def test_delays_never_exceed_the_cap():
    policy = ow.RetryPolicy(max_attempts=20, base_delay_s=1.0, max_delay_s=3.0, jitter=0.0)
    rng = np.random.default_rng(0)
    assert [policy.delay_s(k, rng) for k in range(1, 6)] == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_the_jitter_comes_from_the_injected_generator():
    policy = ow.RetryPolicy()
    a = [policy.delay_s(2, np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]


def test_a_malformed_json_answer_raises_malformed_response(fake):
    client = make_client(fake.url)
    fake.fail("GET", r"/actions$", 200, raw=b"{not json", times=1)
    with pytest.raises(ow.MalformedResponse, match="not JSON"):
        client.list_actions()


def test_a_json_answer_of_the_wrong_shape_raises_malformed_response(fake):
    client = make_client(fake.url)
    fake.fail("GET", r"/actions$", 200, {"not": "a list"}, times=1)
    with pytest.raises(ow.MalformedResponse, match="array"):
        client.list_actions()


def test_a_slow_answer_is_a_timeout_and_an_invocation_is_not_retried_after_it(fake):
    release = threading.Event()
    client = make_client(fake.url, read_timeout_s=0.2)
    deploy(client)
    fake.fail("POST", r"/actions/hello$", 200, {"activationId": "b" * 32}, times=1, hold=release)
    try:
        with pytest.raises(ow.Timeout):
            client.invoke("hello", blocking=True)
    finally:
        release.set()
    assert len(fake.calls_to("POST", r"/actions/hello$")) == 1


def test_a_slow_read_is_retried_because_reading_is_idempotent(fake):
    release = threading.Event()
    sleep = RecordingSleep()
    client = make_client(fake.url, sleep, read_timeout_s=0.2)
    fake.fail("GET", r"/actions$", 200, [], times=1, hold=release)
    try:
        assert client.list_actions() == []
    finally:
        release.set()
    assert len(sleep.delays) == 1


def test_a_refused_connection_is_retried_then_reported_unavailable():
    sleep = RecordingSleep()
    client = make_client(f"http://127.0.0.1:{free_port()}", sleep)
    with pytest.raises(ow.Unavailable, match="cannot connect"):
        client.invoke("hello", blocking=True)
    assert len(sleep.delays) == 3  # a refused invocation never reached the platform: safe to retry


def test_the_error_message_names_the_request_and_the_servers_words(fake):
    client = make_client(fake.url)
    with pytest.raises(ow.NotFound) as caught:
        client.get_action("nope")
    text = str(caught.value)
    assert "GET" in text and "/actions/nope" in text and "404" in text and "does not exist" in text


# --- kinds, credentials, deadlines --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, "unauthorized"), (403, "unauthorized"), (404, "rejected"), (400, "rejected"), (408, "timeout"),
     (429, "throttled"), (500, "server_error"), (502, "server_error"), (503, "server_error"), (504, "server_error")],
    ids=lambda value: str(value),
)
def test_every_failed_answer_says_its_kind_so_the_daemon_never_counts_it_as_internal(fake, status, kind):
    from controller.metrics import error_kind

    client = make_client(fake.url, retry=ow.NO_RETRY)
    fake.fail("GET", r"/activations$", status, {"error": "scripted"}, times=1)
    with pytest.raises(ow.OpenWhiskError) as caught:
        client.list_activations()
    assert caught.value.kind == kind
    assert error_kind(caught.value) == kind


def test_a_refused_connection_is_unreachable_and_a_garbled_answer_malformed(fake):
    refused = make_client(f"http://127.0.0.1:{free_port()}", retry=ow.NO_RETRY)
    with pytest.raises(ow.Unavailable) as caught:
        refused.list_activations()
    assert caught.value.kind == "unreachable"
    fake.fail("GET", r"/activations$", 200, raw=b"<html>proxy login</html>", times=1)
    with pytest.raises(ow.MalformedResponse) as garbled:
        make_client(fake.url).list_activations()
    assert garbled.value.kind == "malformed"


def test_a_password_in_the_api_url_is_never_sent_nor_named_in_an_error(fake):
    host = fake.url.split("://", 1)[1]
    client = make_client(f"http://operator:hunter2@{host}", retry=ow.NO_RETRY)
    fake.fail("GET", r"/activations$", 500, {"error": "scripted"}, times=1)
    with pytest.raises(ow.ServerError) as caught:
        client.list_activations()
    assert "hunter2" not in str(caught.value) and "operator" not in str(caught.value)
    assert "hunter2" not in client.base_url and "hunter2" not in repr(client)
    # The platform's key is what authenticates, never the URL's user.
    assert fake.calls[-1].headers["authorization"] == fake.auth_header


def test_inside_a_tick_deadline_a_hanging_read_gives_up_when_the_deadline_does(fake):
    from controller.clients.errors import Deadline, deadline_scope

    release = threading.Event()
    sleep = RecordingSleep()
    client = make_client(fake.url, sleep, read_timeout_s=30.0)
    fake.fail("GET", r"/activations$", 200, [], times=5, hold=release)
    now = [50.0]
    try:
        with deadline_scope(Deadline(at_s=50.2, clock=lambda: now[0])):
            with pytest.raises(ow.Timeout, match="0.2 s"):
                client.list_activations()
            # The retry of an idempotent read would wait past the deadline: it is not made.
            assert sleep.delays == []
            now[0] = 51.0
            with pytest.raises(ow.Timeout, match="deadline passed"):
                client.list_activations()
    finally:
        release.set()
    assert len(fake.calls_to("GET", r"/activations$")) == 1


def test_a_window_too_large_to_page_through_is_refused_rather_than_read_in_part(fake):
    client = make_client(fake.url)
    deploy(client)
    for _ in range(5):
        client.invoke("hello")
    with pytest.raises(ow.WindowTooLarge, match="window not read completely") as caught:
        client.iter_activations(since_ms=0, upto_ms=1 << 62, page=2, max_pages=2)
    assert caught.value.kind == "rejected"
