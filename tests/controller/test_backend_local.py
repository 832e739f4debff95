"""The ``local`` backend against a recorded-shape fake of the local platform (OpenWhisk API + resource API)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes.openwhisk import AUTH, FakeOpenWhisk

from controller.backends.base import Backend, FailureKind
from controller.backends.local import LOCAL_INVOKER, LocalBackend, benchmark_slos_s, from_settings
from controller.clients.errors import ObservationError
from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
from controller.settings import Settings, load_settings
from policies.types import KEEP_SHARES, UNMANAGED, Decisions

ORIGIN_MS = 1_700_000_000_000
CODE = "def main(args):\n    return {}\n"


class FakeClockMs:
    """Platform time, ms since the epoch, moved by the test."""

    def __init__(self, start: int = ORIGIN_MS) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def setup():
    clock = FakeClockMs()
    with FakeOpenWhisk(clock_ms=clock) as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        for name in ("a", "b"):
            client.put_action(name, {"exec": {"kind": "python:3", "code": CODE}})
        backend = LocalBackend(client, ["a", "b", "ghost"], [0.1, 0.1, 0.1], epoch_origin_ms=ORIGIN_MS, cores=4)
        yield fake, client, backend, clock


def invoke_at(client, clock, name, at_s, times=1):
    clock.now = ORIGIN_MS + int(at_s * 1000)
    for _ in range(times):
        client.invoke(name, blocking=True)


def test_the_local_backend_satisfies_the_backend_protocol(setup):
    assert isinstance(setup[2], Backend)


def test_a_tick_counts_completions_latency_and_cold_starts_from_the_activation_records(setup):
    _fake, client, backend, clock = setup
    invoke_at(client, clock, "a", 2.0, times=4)
    snap = backend.observe(10.0)
    row = snap.functions.row(0)
    # The first is cold: wait 3 + duration (20 + init 300) = 323 ms; the warm ones 3 + 20 = 23 ms.
    assert row["completions"] == 4 and row["cold_starts"] == 1
    assert row["p50_latency_s"] == pytest.approx(0.023)
    assert row["p99_latency_s"] == pytest.approx(0.023 + 0.97 * 0.300)  # numpy's linear interpolation
    assert row["mean_exec_s"] == pytest.approx(0.020)
    assert row["slo_violations"] == 1
    assert row["recent_exec_s"] == pytest.approx(0.020)


def test_each_activation_is_counted_in_one_tick_only(setup):
    _fake, client, backend, clock = setup
    invoke_at(client, clock, "a", 2.0, times=2)
    backend.observe(10.0)
    invoke_at(client, clock, "a", 12.0)
    snap = backend.observe(20.0)
    assert snap.functions.completions[0] == 1


def test_a_function_without_activations_has_nan_latency_not_zero(setup):
    _, _, backend, _ = setup
    snap = backend.observe(10.0)
    assert snap.functions.valid[1] and snap.functions.completions[1] == 0
    assert np.isnan(snap.functions.p99_latency_s[1])


def test_an_action_the_platform_does_not_know_is_invalid(setup):
    _, _, backend, _ = setup
    snap = backend.observe(10.0)
    assert not snap.functions.valid[2]


def test_pools_give_containers_shares_queue_and_cpu_used_as_a_difference(setup):
    fake, _client, backend, _clock = setup
    pool = fake.pools["a"]
    pool.current.update(busy=2, idle=1, total=3)
    pool.queued, pool.cpu_seconds = 4, 10.0
    first = backend.observe(10.0)
    pool.cpu_seconds = 13.5
    second = backend.observe(20.0)
    assert np.isnan(first.functions.cpu_used_core_s[0])
    row = second.functions.row(0)
    assert (row["containers"], row["busy_containers"], row["in_flight"], row["queued"]) == (3, 2, 2, 4)
    assert row["cpu_shares"] == 128 and row["cpu_used_core_s"] == pytest.approx(3.5)
    assert row["cpu_alloc_core_s"] == pytest.approx(3 * 128 / 1024 * 10.0)
    assert second.invokers.names == (LOCAL_INVOKER,)
    assert second.invokers.cpu_used_core_s[0] == pytest.approx(3.5)


def test_arrivals_are_completions_plus_the_growth_of_the_backlog(setup):
    fake, client, backend, clock = setup
    backend.observe(10.0)
    fake.pools["a"].queued = 5
    invoke_at(client, clock, "a", 12.0, times=2)
    snap = backend.observe(20.0)
    assert snap.functions.arrivals[0] == 2 + 5


@pytest.mark.parametrize(
    ("path", "status", "kind", "source"),
    [
        (r"/activations$", 503, "server_error", "activations"),
        (r"/resources/v1/namespaces/[^/]+/actions$", 503, "server_error", "pools"),
        (r"/resources/v1/status$", 401, "unauthorized", "status"),
        (r"/activations$", 429, "throttled", "activations"),
    ],
    ids=["activations-503", "pools-503", "status-401", "activations-429"],
)
def test_a_failed_read_fails_the_whole_observation_with_its_kind_never_zero(setup, path, status, kind, source):
    fake, _, backend, _ = setup
    fake.fail("GET", path, status, {"error": "down"})
    with pytest.raises(ObservationError) as caught:
        backend.observe(10.0)
    assert (caught.value.kind, caught.value.source) == (kind, source)
    assert fake.url.split("://")[1] in str(caught.value)


def test_after_a_failed_read_the_next_tick_covers_the_time_since_the_last_good_one(setup):
    fake, client, backend, clock = setup
    backend.observe(10.0)
    fake.fail("GET", r"/activations$", 503, {"error": "down"})
    invoke_at(client, clock, "a", 15.0, times=3)
    with pytest.raises(ObservationError):
        backend.observe(20.0)
    snap = backend.observe(30.0)
    assert snap.tick_s == 20.0  # the three completions are spread over the 20 s they happened in
    assert snap.functions.completions[0] == 3


@pytest.mark.parametrize(
    ("answer", "source"),
    [({"a": 1}, "pools"), ([], "status")],
    ids=["pools-not-a-list", "status-not-an-object"],
)
def test_an_answer_of_the_wrong_shape_fails_the_observation_as_malformed(setup, answer, source):
    fake, _, backend, _ = setup
    path = r"/resources/v1/status$" if source == "status" else r"/resources/v1/namespaces/[^/]+/actions$"
    fake.fail("GET", path, 200, answer)
    with pytest.raises(ObservationError) as caught:
        backend.observe(10.0)
    assert (caught.value.kind, caught.value.source) == ("malformed", source)


def test_a_garbled_pool_or_activation_invalidates_only_its_own_row_and_says_why(setup):
    fake, client, backend, clock = setup
    fake.pools["a"].cpu_shares = "lots"  # type: ignore[assignment]
    invoke_at(client, clock, "b", 2.0)
    fake.activations[-1]["duration"] = "forever"
    snap = backend.observe(10.0)
    assert not snap.functions.valid.any()
    by_function = {p.functions: p for p in backend.problems}
    assert by_function[("a",)].label == "malformed" and "cpuShares='lots'" in by_function[("a",)].cause
    assert by_function[("b",)].source == "activations" and "duration='forever'" in by_function[("b",)].cause
    assert by_function[("ghost",)].kind is None and "not deployed" in by_function[("ghost",)].cause
    fake.pools["a"].cpu_shares = 256
    invoke_at(client, clock, "b", 12.0)
    snap = backend.observe(20.0)
    assert snap.functions.valid.tolist() == [True, True, False]
    assert [p.functions for p in backend.problems] == [("ghost",)]


def test_apply_sends_only_the_changes_and_is_idempotent(setup):
    fake, _, backend, _ = setup
    backend.observe(10.0)
    decisions = Decisions(containers=[2, UNMANAGED, UNMANAGED], cpu_shares=[512, KEEP_SHARES, KEEP_SHARES],
                          valid=[True, True, False], reasons=("r",) * 3)
    assert backend.apply(decisions, 10.0) == []
    assert backend.apply(decisions, 20.0) == []
    puts = fake.calls_to("PUT", r"/resources/")
    assert [c.body for c in puts] == [{"containers": 2, "cpuShares": 512}]
    assert fake.pools["a"].containers == 2 and fake.pools["a"].cpu_shares == 512


@pytest.mark.parametrize(
    "status, kind",
    [(404, FailureKind.UNKNOWN_FUNCTION), (400, FailureKind.REJECTED), (503, FailureKind.UNAVAILABLE),
     (500, FailureKind.UNAVAILABLE)],
    ids=["404", "400", "503", "500"],
)
def test_a_refused_change_is_a_typed_failure_and_the_others_still_apply(setup, status, kind):
    fake, _, backend, _ = setup
    fake.fail("PUT", r"/resources/v1/namespaces/[^/]+/actions/a$", status, {"error": "no"})
    decisions = Decisions(containers=[1, 3, UNMANAGED], cpu_shares=[KEEP_SHARES] * 3, valid=[True, True, False],
                          reasons=("r",) * 3)
    failures = backend.apply(decisions, 10.0)
    assert [(f.function, f.kind) for f in failures] == [("a", kind)]
    assert fake.pools["b"].containers == 3
    # The failed change is retried on the next apply (it was not recorded as set).
    assert backend.apply(decisions, 20.0) == [] and fake.pools["a"].containers == 1


def test_now_must_grow(setup):
    _, _, backend, _ = setup
    backend.observe(10.0)
    with pytest.raises(ValueError, match="not after"):
        backend.observe(10.0)


# --- the SLO file: benchmark_slos_s ----------------------------------------------------------------

#: Solo-latency SLOs, ms, as ``python -m workload.functions.solo --json`` writes them. ``image`` and
#: ``image-resize`` check that an action is matched by the longest benchmark name it extends.
SOLO_SLO_MS = {"primes": 350.0, "image": 800.0, "image-resize": 900.0}


def write_solo_json(path: Path, slo_ms: dict[str, float] = SOLO_SLO_MS) -> Path:
    rows = [{"function": name, "latency_p99_ms": ms / 1.15, "slo_ms": ms} for name, ms in slo_ms.items()]
    path.write_text(json.dumps({"runs": 20, "apihost": "http://127.0.0.1:3233", "functions": rows}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "names, expected_s",
    [
        (["primes"], [0.35]),
        (["primes-3", "primes-12"], [0.35, 0.35]),
        (["image-resize-2", "image-2", "image-resize"], [0.9, 0.8, 0.9]),
        ([], []),
    ],
    ids=["a-bare-benchmark-name-gets-its-slo", "numbered-copies-share-their-benchmark-slo",
         "the-longest-benchmark-name-wins", "no-actions-give-no-slos"],
)
def test_each_action_gets_the_slo_of_the_benchmark_it_is_named_after(tmp_path, names, expected_s):
    slos = benchmark_slos_s(write_solo_json(tmp_path / "solo.json"), names)
    np.testing.assert_allclose(slos, expected_s)


@pytest.mark.parametrize(
    "name",
    ["graph-bfs", "primes-x", "primes-", "primes2", "xprimes"],
    ids=["unknown-benchmark", "suffix-not-a-number", "empty-suffix", "no-dash-before-the-number", "prefix-before-the-name"],
)
def test_an_action_without_a_matching_benchmark_is_an_error_naming_the_action_and_the_file(tmp_path, name):
    path = write_solo_json(tmp_path / "solo.json")
    with pytest.raises(ValueError, match=re.escape(f"local.slo_file={path}")) as error:
        benchmark_slos_s(path, ["primes", name])
    assert repr(name) in str(error.value)


@pytest.mark.parametrize(
    "content",
    [None, "not json {", json.dumps({"runs": 3}), json.dumps({"functions": [{"function": "primes"}]}),
     json.dumps({"functions": [{"function": "primes", "slo_ms": "fast"}]}), json.dumps({"functions": 7}),
     json.dumps([1, 2])],
    ids=["missing-file", "not-json", "no-functions-list", "row-without-slo", "slo-not-a-number",
         "functions-not-a-list", "top-level-not-an-object"],
)
def test_an_unreadable_or_malformed_slo_file_is_an_error_naming_the_file(tmp_path, content):
    path = tmp_path / "solo.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"local.slo_file={path}: not a solo-latency JSON")):
        benchmark_slos_s(path, ["primes"])


# --- from_settings ---------------------------------------------------------------------------------


@pytest.fixture
def no_mfrm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's MFRM_* variables do not leak into the settings of these tests."""
    for name in [n for n in os.environ if n.startswith("MFRM_")]:
        monkeypatch.delenv(name)


def local_settings(**group: Any) -> Settings:
    return load_settings(overrides={"daemon.backend": "local", "local": {"cores": 2, **group}})


@pytest.mark.parametrize(
    "missing, key",
    [("auth", "local.auth"), ("slo_file", "local.slo_file")],
    ids=["without-a-key", "without-an-slo-file"],
)
def test_the_backend_refuses_to_start_naming_the_missing_key(tmp_path, no_mfrm_environment, missing, key):
    group = {"api_host": "http://127.0.0.1:9", "auth": AUTH, "slo_file": str(write_solo_json(tmp_path / "solo.json")),
             "functions": ["primes"]}
    del group[missing]
    with pytest.raises(ValueError, match=re.escape(f"{key} is not set")):
        from_settings(local_settings(**group))


@pytest.mark.parametrize(
    "deployed, functions, expected",
    [
        (["primes-1", "image-resize-1", "image-2"], [], ["image-2", "image-resize-1", "primes-1"]),
        (["primes-1", "image-resize-1", "image-2"], ["image-2", "primes-1"], ["image-2", "primes-1"]),
    ],
    ids=["an-empty-list-manages-every-deployed-action", "a-given-list-manages-only-those-in-its-order"],
)
def test_the_backend_manages_the_listed_actions_or_discovers_the_deployed_ones(
    tmp_path, no_mfrm_environment, deployed, functions, expected
):
    with FakeOpenWhisk() as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        for name in deployed:
            client.put_action(name, {"exec": {"kind": "python:3", "code": CODE}})
        backend = from_settings(local_settings(api_host=fake.url, auth=AUTH, functions=functions,
                                               slo_file=str(write_solo_json(tmp_path / "solo.json"))))
        assert sorted(backend.function_names) == sorted(expected)
        if functions:
            assert list(backend.function_names) == expected
            assert fake.calls_to("GET", r"/api/v1/namespaces/[^/]+/actions$") == []
        slo_by_name = dict(zip(backend.function_names, backend.slo_s, strict=True))
        assert slo_by_name["image-2"] == pytest.approx(0.8) and slo_by_name["primes-1"] == pytest.approx(0.35)
        assert backend.cores == 2.0


def test_discovery_on_a_platform_without_actions_is_an_error_naming_the_functions_key(tmp_path, no_mfrm_environment):
    with FakeOpenWhisk() as fake:
        settings = local_settings(api_host=fake.url, auth=AUTH, slo_file=str(write_solo_json(tmp_path / "solo.json")))
        with pytest.raises(ValueError, match=r"local\.functions is empty and the platform at .* has no actions"):
            from_settings(settings)


def test_a_discovered_action_without_a_benchmark_slo_stops_the_start(tmp_path, no_mfrm_environment):
    with FakeOpenWhisk() as fake:
        OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY).put_action("graph-bfs", {"exec": {"kind": "python:3", "code": CODE}})
        settings = local_settings(api_host=fake.url, auth=AUTH, slo_file=str(write_solo_json(tmp_path / "solo.json")))
        with pytest.raises(ValueError, match="no SLO for action 'graph-bfs'"):
            from_settings(settings)


def test_discovery_with_a_wrong_key_is_a_settings_error_naming_the_host_and_the_status(tmp_path, no_mfrm_environment):
    with FakeOpenWhisk() as fake:
        settings = local_settings(api_host=fake.url, auth="00000000-0000-0000-0000-000000000000:wrong",
                                  slo_file=str(write_solo_json(tmp_path / "solo.json")))
        with pytest.raises(ValueError, match=re.escape(f"actions of {fake.url} cannot be listed")) as error:
            from_settings(settings)
        assert "401" in str(error.value)
