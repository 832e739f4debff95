"""The official OpenWhisk JavaScript client (npm ``openwhisk``, pinned in tests/js) against the local platform.

``tests/js/client_check.js`` creates an action, reads it back, invokes it blocking (whole record and
result only) and non-blocking, fetches the activation and lists activations, printing what it got.
It talks to the platform through a recording proxy, so that every request the client sent and
every answer it read is checked against OpenWhisk's Swagger spec (``reference/openwhisk/swagger/
apiv1swagger.json``): the body parameter's schema for requests, the response schema of the status
for answers, and the spec's definitions (Action, Activation, ActivationId, ActivationBrief) for the
values the client handed back.

Needs node and ``npm ci --prefix tests/js``; the test fails (never skips) when either is missing.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest

from localwhisk.testing import TEST_AUTH, running_platform

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "js"
SCRIPT = JS_DIR / "client_check.js"
SPEC = json.loads((ROOT / "reference" / "openwhisk" / "swagger" / "apiv1swagger.json").read_text())
INSTALL = "npm ci --prefix tests/js"
ACTION = "js-client-hello"


@dataclass(frozen=True)
class Exchange:
    """One request the client sent through the proxy and the answer it got."""

    method: str
    """HTTP method."""
    path: str
    """Path without the query."""
    query: dict[str, list[str]]
    """Query parameters."""
    request_body: Any
    """Decoded JSON body sent, or None."""
    status: int
    """HTTP status of the answer."""
    response_body: Any
    """Decoded JSON body of the answer, or its text."""


class RecordingProxy:
    """Forwards HTTP to ``upstream`` (host, port) and records each exchange; 127.0.0.1, ephemeral port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.exchanges: list[Exchange] = []
        lock = threading.Lock()
        exchanges = self.exchanges

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection = http.client.HTTPConnection(*upstream, timeout=120)
                try:
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                    content_type = answer.getheader("Content-Type", "")
                    status = answer.status
                finally:
                    connection.close()
                split = urlsplit(self.path)
                with lock:
                    exchanges.append(Exchange(
                        self.command, split.path, parse_qs(split.query), json.loads(body) if body else None, status,
                        json.loads(data) if data and content_type.startswith("application/json") else data.decode(),
                    ))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def definition(name: str) -> jsonschema.Draft4Validator:
    """A validator of one Swagger definition (the spec's ``#/definitions`` refs resolvable)."""
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": SPEC["definitions"]})


def spec_operation(method: str, path: str) -> dict[str, Any] | None:
    """The spec's operation for a concrete request path (after the ``/api/v1`` base path), or None."""
    base = SPEC.get("basePath", "/api/v1").rstrip("/")
    if not path.startswith(base + "/"):
        return None
    relative = path[len(base):]
    for template, operations in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, relative) and method.lower() in operations:
            return operations[method.lower()]
    return None


def schema_of(node: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a response or body parameter, following a ``#/responses/...`` reference."""
    if "$ref" in node:
        node = SPEC["responses"][node["$ref"].rsplit("/", 1)[-1]]
    schema = node.get("schema")
    return None if schema is None else {**schema, "definitions": SPEC["definitions"]}


@pytest.fixture(scope="module")
def client_run(tmp_path_factory) -> Iterator[tuple[dict[str, Any], list[Exchange]]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: apt-get install -y nodejs npm, then " + INSTALL)
    if not (JS_DIR / "node_modules" / "openwhisk" / "package.json").is_file():
        pytest.fail(f"the OpenWhisk JS client is not installed in {JS_DIR / 'node_modules'}: run `{INSTALL}`")
    with running_platform(tmp_path_factory.mktemp("lw-js")) as (whisk, _client):
        split = urlsplit(whisk.url)
        proxy = RecordingProxy((split.hostname, split.port))
        try:
            env = {**os.environ, "OW_API_HOST": proxy.url, "OW_AUTH": TEST_AUTH}
            done = subprocess.run([node, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120,
                                  cwd=ROOT, check=False)
        finally:
            proxy.close()
    assert done.returncode == 0, f"client_check.js failed ({done.returncode}): {done.stdout} {done.stderr}"
    yield json.loads(done.stdout), proxy.exchanges


def test_the_js_client_creates_the_action_as_sent(client_run):
    out, _ = client_run
    for action in (out["created"], out["fetchedAction"]):
        definition("Action").validate(action)
        assert action["name"] == ACTION and action["exec"]["kind"] == "python:3.11"


def test_a_blocking_invocation_returns_the_whole_activation_record(client_run):
    out, _ = client_run
    record = out["blocking"]
    definition("Activation").validate(record)
    assert record["name"] == ACTION and record["response"]["success"] is True
    assert record["response"]["result"] == {"greeting": "hello blocking"}


def test_a_blocking_invocation_with_result_returns_only_the_result(client_run):
    assert client_run[0]["blockingResult"] == {"greeting": "hello result"}


def test_a_non_blocking_invocation_returns_an_activation_id_whose_record_can_be_fetched(client_run):
    out, _ = client_run
    definition("ActivationId").validate(out["nonBlocking"])
    fetched = out["fetched"]
    definition("Activation").validate(fetched)
    assert fetched["activationId"] == out["nonBlocking"]["activationId"]
    assert fetched["response"]["result"] == {"greeting": "hello non-blocking"}
    assert any(line.endswith("greeting non-blocking") for line in fetched["logs"])


def test_listing_activations_shows_the_three_invocations_newest_first(client_run):
    out, _ = client_run
    listed = out["listed"]
    for brief in listed:
        definition("ActivationBrief").validate(brief)
    ids = [a["activationId"] for a in listed]
    assert len(ids) == 3 and all(a["name"] == ACTION for a in listed)
    assert ids[0] == out["nonBlocking"]["activationId"] and ids[2] == out["blocking"]["activationId"]
    starts = [a["start"] for a in listed]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize(
    "method, path_end, query",
    [
        ("PUT", f"/actions/{ACTION}", {"overwrite": ["true"]}),
        ("POST", f"/actions/{ACTION}", {"blocking": ["true"]}),
        ("GET", "/activations", {"name": [ACTION], "limit": ["10"]}),
    ],
    ids=["create-overwrites", "invoke-blocking", "list-by-name"],
)
def test_the_client_sent_the_request_the_spec_describes(client_run, method, path_end, query):
    _, exchanges = client_run
    sent = [e for e in exchanges if e.method == method and e.path.endswith(path_end)
            and all(e.query.get(k) == v for k, v in query.items())]
    assert sent, f"no {method} ...{path_end} with {query} among {[(e.method, e.path, e.query) for e in exchanges]}"


def test_result_only_is_a_blocking_invocation_whose_result_the_client_extracts(client_run):
    # openwhisk-client-js 3.21 asks for the whole record (blocking=true, no result=true) and returns
    # its response.result: two blocking invocations on the wire, one non-blocking.
    _, exchanges = client_run
    invokes = [e for e in exchanges if e.method == "POST"]
    assert sorted(e.query.get("blocking", ["false"])[0] for e in invokes) == ["false", "true", "true"]
    assert [e.request_body for e in invokes] == [{"name": "blocking"}, {"name": "result"}, {"name": "non-blocking"}]


def test_every_exchange_is_an_operation_of_the_spec_with_bodies_of_its_schemas(client_run):
    _, exchanges = client_run
    assert len(exchanges) >= 7
    for e in exchanges:
        operation = spec_operation(e.method, e.path)
        assert operation is not None, f"{e.method} {e.path}: not an operation of the OpenWhisk API spec"
        body_params = [p for p in operation.get("parameters", []) if p.get("in") == "body"]
        if e.request_body is not None:
            assert body_params, f"{e.method} {e.path}: sent a body the spec does not take"
            jsonschema.Draft4Validator(schema_of(body_params[0])).validate(e.request_body)
        response = operation["responses"].get(str(e.status))
        assert response is not None, f"{e.method} {e.path}: status {e.status} is not in the spec's responses"
        schema = schema_of(response)
        if schema is not None:
            jsonschema.Draft4Validator(schema).validate(e.response_body)


def test_the_action_put_body_the_client_sent_is_an_action_put(client_run):
    _, exchanges = client_run
    put = next(e for e in exchanges if e.method == "PUT")
    definition("ActionPut").validate(put.request_body)
    assert put.request_body["exec"]["kind"] == "python:3.11" and "def main(args)" in put.request_body["exec"]["code"]


def test_the_404s_of_a_not_yet_finished_activation_carry_the_spec_error_message(client_run):
    _, exchanges = client_run
    for e in exchanges:
        if e.status == 404:
            definition("ErrorMessage").validate(e.response_body)
