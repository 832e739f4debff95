"""The Docker runtime driver against the recorded-shape fake: version negotiation, failure classes,
calls made at once, and the CPU readings of paused containers.

The fake stands in for what the real engine of ``test_docker_runtime_real_engine.py`` (Docker 20.10,
API 1.41) cannot be made to do on demand: answer as a newer engine (Docker 27, 29, or one newer than
the driver), change its API range under a running driver, answer through a gateway with 502-504, fail
one call of many, or hold its ``stats`` answers until several calls wait together (which shows that
the calls were made at once without measuring a time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest
from fakes.docker_engine import FakeDockerEngine
from fakes.server import Call, Reply, json_reply

from controller.backends.docker_runtime import (
    NEWEST_API_VERSION,
    OLDEST_API_VERSION,
    DockerRuntime,
    engine_client,
    negotiate_api_version,
)
from controller.backends.runtime import RuntimeRejected, RuntimeUnavailable

# --- choosing a version from GET /version -------------------------------------------------------

AGREED = [
    ("docker-20.10", {"ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "1.41"),
    ("docker-24", {"ApiVersion": "1.43", "MinAPIVersion": "1.12"}, "1.43"),
    ("docker-27", {"ApiVersion": "1.47", "MinAPIVersion": "1.24"}, "1.44"),
    ("docker-29-minimum-raised", {"ApiVersion": "1.52", "MinAPIVersion": "1.44"}, "1.44"),
    ("no-minimum-given", {"ApiVersion": "1.42"}, "1.42"),
]


@pytest.mark.parametrize("engine, version", [(e, v) for _, e, v in AGREED], ids=[i for i, *_ in AGREED])
def test_the_newest_version_both_sides_speak_is_chosen(engine: dict[str, Any], version: str) -> None:
    assert negotiate_api_version(engine) == version


REFUSED = [
    ("docker-19.03-too-old", {"ApiVersion": "1.40", "MinAPIVersion": "1.12", "Version": "19.03.15"},
     "the engine (Docker 19.03.15) speaks 1.12 to 1.40; mfrm speaks Engine API 1.41 to 1.44: upgrade the engine"),
    ("minimum-above-ours", {"ApiVersion": "1.56", "MinAPIVersion": "1.45", "Version": "31.0.0"},
     "the engine (Docker 31.0.0) speaks 1.45 to 1.56; mfrm speaks Engine API 1.41 to 1.44: this engine is newer"),
    ("not-a-version", {"ApiVersion": "latest"}, "GET /version gave no usable ApiVersion/MinAPIVersion"),
    ("no-version-at-all", {"message": "page not found"}, "GET /version gave no usable ApiVersion/MinAPIVersion"),
]


@pytest.mark.parametrize("engine, says", [(e, s) for _, e, s in REFUSED], ids=[i for i, *_ in REFUSED])
def test_an_engine_without_a_version_in_common_is_refused_saying_both_ranges(engine: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError) as refused:
        negotiate_api_version(engine)
    assert says in str(refused.value)


def test_the_range_spoken_starts_with_docker_20_10_and_reaches_docker_29s_minimum() -> None:
    assert (OLDEST_API_VERSION, NEWEST_API_VERSION) == ("1.41", "1.44")


# --- negotiating with an engine -----------------------------------------------------------------


@pytest.fixture
def newer_engine() -> Iterator[FakeDockerEngine]:
    """An engine as Docker 27 answers: Engine API 1.24 to 1.47."""
    with FakeDockerEngine(api_version="1.47", min_api_version="1.24", engine_version="27.5.1") as engine:
        yield engine


def test_a_newer_engine_is_asked_its_versions_once_and_spoken_to_at_ours(newer_engine: FakeDockerEngine) -> None:
    primes = newer_engine.add("wsk0_1_guest_primes", cpu_shares=256)
    runtime = DockerRuntime({"invoker0": newer_engine.url})
    assert [c.cpu_shares for c in runtime.read().containers] == [256.0]
    runtime.set_shares(runtime.read().containers[0], 512)
    assert primes.cpu_shares == 512
    assert runtime.api_versions == {"invoker0": "1.44"}
    versions = [c for c in newer_engine.calls if c.path.endswith("/version")]
    assert [c.path for c in versions] == ["/version"]  # unversioned, once for the host
    assert all(c.path.startswith("/v1.44/") for c in newer_engine.calls if c not in versions)


def test_an_engine_that_raised_its_minimum_like_docker_29_works() -> None:
    with FakeDockerEngine(api_version="1.52", min_api_version="1.44", engine_version="29.0.4") as engine:
        primes = engine.add("wsk0_1_guest_primes", cpu_shares=256)
        runtime = DockerRuntime({"invoker0": engine.url})
        runtime.set_shares(runtime.read().containers[0], 640)
        assert primes.cpu_shares == 640 and runtime.api_versions == {"invoker0": "1.44"}


def test_an_engine_newer_than_the_driver_is_unavailable_with_both_ranges_and_nothing_else_asked() -> None:
    with FakeDockerEngine(api_version="1.56", min_api_version="1.45", engine_version="31.0.0") as engine:
        engine.add("wsk0_1_guest_primes")
        runtime = DockerRuntime({"invoker0": engine.url})
        view = runtime.read()
        assert view.containers == ()
        assert "speaks 1.45 to 1.56; mfrm speaks Engine API 1.41 to 1.44" in view.failed["invoker0"]
        assert engine.url.replace("http://", "") in view.failed["invoker0"]  # which host
        assert [c.path for c in engine.calls] == ["/version"]
        assert runtime.api_versions == {}


def test_the_fake_refuses_a_version_outside_its_range_in_dockers_words() -> None:
    with FakeDockerEngine(api_version="1.52", min_api_version="1.44", engine_version="29.0.4") as engine:
        with pytest.raises(docker.errors.APIError) as too_new:
            engine_client(engine.url, "1.53", timeout_s=5.0).containers()
        with pytest.raises(docker.errors.APIError) as too_old:
            engine_client(engine.url, "1.43", timeout_s=5.0).containers()
    assert (too_new.value.status_code, too_new.value.explanation) == (
        400, "client version 1.53 is too new. Maximum supported API version is 1.52")
    assert (too_old.value.status_code, too_old.value.explanation) == (
        400, ("client version 1.43 is too old. Minimum supported API version is 1.44, please upgrade your client to a "
             "newer version"))


def test_an_engine_replaced_by_an_older_one_is_negotiated_again_at_the_next_contact(
        newer_engine: FakeDockerEngine) -> None:
    primes = newer_engine.add("wsk0_1_guest_primes", cpu_shares=256)
    runtime = DockerRuntime({"invoker0": newer_engine.url})
    seen = runtime.read().containers[0]
    newer_engine.api_version, newer_engine.engine_version = "1.41", "20.10.24"  # downgraded under the driver
    with pytest.raises(RuntimeUnavailable, match="client version 1.44 is too new"):
        runtime.set_shares(seen, 512)
    assert runtime.api_versions == {}
    runtime.set_shares(seen, 512)
    assert primes.cpu_shares == 512 and runtime.api_versions == {"invoker0": "1.41"}


# --- what a refused update means ----------------------------------------------------------------

REFUSALS = [
    # (id, status, engine's message, class the driver raises)
    ("runc-refuses-the-value", 500, ("Cannot update container abc: runc did not terminate successfully: exit status 1: "
                                    "the minimum allowed cpu-shares is 2\n: unknown"), RuntimeRejected),
    ("bad-request", 400, "invalid CpuShares", RuntimeRejected),
    ("conflict", 409, "Cannot update container abc: container is marked for removal", RuntimeRejected),
    ("gateway-without-engine", 502, "Bad Gateway", RuntimeUnavailable),
    ("engine-behind-proxy-unavailable", 503, "Service Unavailable", RuntimeUnavailable),
    ("gateway-timeout", 504, "Gateway Timeout", RuntimeUnavailable),
]


@pytest.mark.parametrize("status, message, raised", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_an_update_the_engine_answers_with_an_error_is_rejected_unless_no_engine_answered(
        newer_engine: FakeDockerEngine, status: int, message: str, raised: type[Exception]) -> None:
    newer_engine.add("wsk0_1_guest_primes")
    runtime = DockerRuntime({"invoker0": newer_engine.url})
    seen = runtime.read().containers[0]
    newer_engine.fail("POST", r"/update$", status, {"message": message})
    with pytest.raises(raised, match=str(status)):
        runtime.set_shares(seen, 512)
    assert runtime.api_versions == {"invoker0": "1.44"}  # an answer, even a refusal, keeps the version


def test_the_fake_refuses_shares_below_2_with_http_500_as_the_real_engine_does(newer_engine: FakeDockerEngine) -> None:
    primes = newer_engine.add("wsk0_1_guest_primes", cpu_shares=256)
    runtime = DockerRuntime({"invoker0": newer_engine.url})
    with pytest.raises(RuntimeRejected, match=r"answered 500: .*minimum allowed cpu-shares is 2"):
        runtime.set_shares(runtime.read().containers[0], 1)
    assert primes.cpu_shares == 256


# --- reading a host's containers at once ------------------------------------------------------


class Gate:
    """Holds every ``stats`` call it sees until ``expected`` of them are waiting together.

    A driver that makes its calls one after another never gets there: the first call then waits
    ``bound_s`` (a guard so that such a driver fails instead of hanging, not a measure of speed),
    is answered with an error, and the gate opens for the calls after it.
    """

    def __init__(self, expected: int, bound_s: float = 20.0) -> None:
        self.expected = expected
        self.bound_s = bound_s
        self.waiting = 0
        self.most_waiting = 0
        """Most ``stats`` calls that were waiting at once."""
        self._opened = threading.Event()
        self._lock = threading.Lock()

    def wait(self) -> bool:
        """Wait for the others; False if they never came."""
        with self._lock:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            if self.waiting >= self.expected:
                self._opened.set()
        came = self._opened.wait(self.bound_s)
        self._opened.set()
        with self._lock:
            self.waiting -= 1
        return came


class GatedEngine(FakeDockerEngine):
    """The fake engine, with its ``stats`` answers held by a :class:`Gate` (shared between hosts)."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(api_version="1.41", min_api_version="1.12", engine_version="20.10.24")
        self.gate = gate

    def route(self, call: Call) -> Reply:
        if call.path.endswith("/stats") and not self.gate.wait():
            return json_reply(500, {"message": "the stats calls were not made at once"})
        return super().route(call)


def stats_calls(engine: FakeDockerEngine) -> list[str]:
    """Ids of the containers whose ``stats`` the engine was asked, in the order asked."""
    return [c.path.split("/")[-2] for c in engine.calls_to("GET", r"/stats$")]


def cpu_by_name(runtime: DockerRuntime, engine: FakeDockerEngine) -> dict[str, float | None]:
    view = runtime.read()
    assert view.failed == {}, view.failed
    names = {c.id: c.name for c in engine.containers.values()}
    return {names[c.ref]: c.cpu_total_s for c in view.containers}


def test_the_stats_calls_of_one_host_are_made_at_once_and_every_reading_arrives() -> None:
    with GatedEngine(Gate(expected=6)) as engine:
        for n in range(6):
            engine.add(f"wsk0_{n}_guest_primes", cpu_total_ns=(n + 1) * 500_000_000)
        runtime = DockerRuntime({"invoker0": engine.url}, timeout_s=30.0)
        cpu = cpu_by_name(runtime, engine)
    assert cpu == {f"wsk0_{n}_guest_primes": (n + 1) * 0.5 for n in range(6)}
    assert engine.gate.most_waiting == 6


def test_no_more_stats_calls_than_parallel_calls_are_made_at_once_and_the_rest_follow() -> None:
    with GatedEngine(Gate(expected=3)) as engine:
        for n in range(7):
            engine.add(f"wsk0_{n}_guest_primes", cpu_total_ns=1_000_000_000)
        runtime = DockerRuntime({"invoker0": engine.url}, timeout_s=30.0, parallel_calls=3)
        cpu = cpu_by_name(runtime, engine)
    assert list(cpu.values()) == [1.0] * 7
    assert engine.gate.most_waiting == 3


def test_sixteen_calls_at_once_fit_in_the_clients_connection_pool(caplog: pytest.LogCaptureFixture) -> None:
    with GatedEngine(Gate(expected=16)) as engine:
        for n in range(16):
            engine.add(f"wsk0_{n}_guest_primes")
        runtime = DockerRuntime({"invoker0": engine.url}, timeout_s=30.0)
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            assert len(cpu_by_name(runtime, engine)) == 16
            assert len(cpu_by_name(runtime, engine)) == 16
    assert engine.gate.most_waiting == 16
    # The SDK's own pool of 10 would throw away six connections here, each with this warning.
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_the_hosts_are_read_at_once() -> None:
    gate = Gate(expected=2)
    with GatedEngine(gate) as first, GatedEngine(gate) as second:
        first.add("wsk0_1_guest_primes", cpu_total_ns=1_000_000_000)
        second.add("wsk1_1_guest_primes", cpu_total_ns=2_000_000_000)
        runtime = DockerRuntime({"invoker0": first.url, "invoker1": second.url}, timeout_s=30.0)
        view = runtime.read()
    assert view.failed == {}
    assert [(c.invoker, c.cpu_total_s) for c in view.containers] == [("invoker0", 1.0), ("invoker1", 2.0)]
    assert gate.most_waiting == 2


# --- paused containers: no stats call -------------------------------------------------------------


@pytest.fixture
def engine_20_10() -> Iterator[FakeDockerEngine]:
    """An engine as Docker 20.10 answers (Engine API 1.12 to 1.41)."""
    with FakeDockerEngine(api_version="1.41", min_api_version="1.12", engine_version="20.10.24") as engine:
        yield engine


def test_a_paused_container_is_not_asked_for_stats_and_keeps_the_reading_it_had_when_it_ran(
        engine_20_10: FakeDockerEngine) -> None:
    primes = engine_20_10.add("wsk0_1_guest_primes", cpu_total_ns=2_500_000_000)
    runtime = DockerRuntime({"invoker0": engine_20_10.url})
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": 2.5}
    primes.paused = True
    primes.cpu_total_ns = 9_000_000_000  # what a stats call would say; frozen, it cannot have run
    for _ in range(2):
        view = runtime.read()
        assert [(c.busy, c.cpu_total_s) for c in view.containers] == [(False, 2.5)]
    assert stats_calls(engine_20_10) == [primes.id]  # the first read only


def test_a_container_first_seen_paused_after_the_first_read_reads_zero_then_its_whole_counter(
        engine_20_10: FakeDockerEngine) -> None:
    runtime = DockerRuntime({"invoker0": engine_20_10.url})
    assert cpu_by_name(runtime, engine_20_10) == {}
    late = engine_20_10.add("wsk0_2_guest_primes", paused=True, cpu_total_ns=1_200_000_000)  # a cold start's CPU
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_2_guest_primes": 0.0}
    late.paused, late.cpu_total_ns = False, 1_700_000_000
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_2_guest_primes": 1.7}  # counted, as for one seen running
    late.cpu_total_ns = 2_000_000_000
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_2_guest_primes": pytest.approx(2.0)}


def test_a_container_already_paused_at_the_first_read_counts_from_its_first_reading(
        engine_20_10: FakeDockerEngine) -> None:
    old = engine_20_10.add("wsk0_1_guest_primes", paused=True, cpu_total_ns=3600 * 10**9)  # an hour of history
    runtime = DockerRuntime({"invoker0": engine_20_10.url})
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": 0.0}
    old.paused, old.cpu_total_ns = False, 3601 * 10**9
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": 0.0}  # its history never counts
    old.cpu_total_ns = 3603 * 10**9
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": pytest.approx(2.0)}
    old.paused = True
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": pytest.approx(2.0)}
    assert stats_calls(engine_20_10) == [old.id, old.id]


def test_a_host_that_could_not_be_read_at_first_has_its_first_read_later(engine_20_10: FakeDockerEngine) -> None:
    old = engine_20_10.add("wsk0_1_guest_primes", paused=True, cpu_total_ns=3600 * 10**9)
    runtime = DockerRuntime({"invoker0": engine_20_10.url})
    engine_20_10.fail("GET", r"/containers/json$", 503, {"message": "Service Unavailable"})
    assert list(runtime.read().failed) == ["invoker0"]
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": 0.0}
    old.paused, old.cpu_total_ns = False, 3601 * 10**9
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": 0.0}


def test_without_read_cpu_no_stats_call_is_made_and_cpu_is_unknown(engine_20_10: FakeDockerEngine) -> None:
    engine_20_10.add("wsk0_1_guest_primes", cpu_total_ns=10**9)
    engine_20_10.add("wsk0_2_guest_primes", paused=True)
    runtime = DockerRuntime({"invoker0": engine_20_10.url}, read_cpu=False)
    assert cpu_by_name(runtime, engine_20_10) == {"wsk0_1_guest_primes": None, "wsk0_2_guest_primes": None}
    assert stats_calls(engine_20_10) == []


# --- one container's failure --------------------------------------------------------------------

STATS_FAILURES = [
    # (id, status, engine's message, version kept)
    ("engine-error", 500, "failed to collect stats", True),
    ("gateway", 502, "Bad Gateway", True),
    ("version-refused", 400, "client version 1.41 is too new. Maximum supported API version is 1.40", False),
]


@pytest.mark.parametrize("status, message, version_kept", [f[1:] for f in STATS_FAILURES],
                         ids=[f[0] for f in STATS_FAILURES])
def test_a_failed_stats_call_makes_only_that_containers_cpu_unknown(
        engine_20_10: FakeDockerEngine, status: int, message: str, version_kept: bool) -> None:
    engine_20_10.add("wsk0_1_guest_primes", cpu_total_ns=1_000_000_000)
    broken = engine_20_10.add("wsk0_2_guest_primes", cpu_total_ns=2_000_000_000, cpu_shares=512)
    engine_20_10.add("wsk0_3_guest_primes", cpu_total_ns=3_000_000_000)
    engine_20_10.add("wsk0_4_guest_primes", paused=True)
    runtime = DockerRuntime({"invoker0": engine_20_10.url})
    engine_20_10.fail("GET", rf"/containers/{broken.id}/stats$", status, {"message": message})
    view = runtime.read()
    assert view.failed == {}
    assert [(c.ref[-1], c.cpu_total_s, c.cpu_shares) for c in view.containers] == [
        ("1", 1.0, 256.0), ("2", None, 512.0), ("3", 3.0, 256.0), ("4", 0.0, 256.0)]
    assert (runtime.api_versions == {"invoker0": "1.41"}) is version_kept
    assert cpu_by_name(runtime, engine_20_10)["wsk0_2_guest_primes"] == 2.0  # read again at the next tick


def test_a_stats_answer_without_the_counter_makes_only_that_containers_cpu_unknown(
        engine_20_10: FakeDockerEngine) -> None:
    engine_20_10.add("wsk0_1_guest_primes", cpu_total_ns=1_000_000_000)
    odd = engine_20_10.add("wsk0_2_guest_primes")
    engine_20_10.fail("GET", rf"/containers/{odd.id}/stats$", 200, {"read": "0001-01-01T00:00:00Z"})
    assert cpu_by_name(DockerRuntime({"invoker0": engine_20_10.url}), engine_20_10) == {
        "wsk0_1_guest_primes": 1.0, "wsk0_2_guest_primes": None}


def test_a_container_removed_between_the_list_and_its_stats_is_left_out(engine_20_10: FakeDockerEngine) -> None:
    engine_20_10.add("wsk0_1_guest_primes", cpu_total_ns=1_000_000_000)
    gone = engine_20_10.add("wsk0_2_guest_primes")
    engine_20_10.fail("GET", rf"/containers/{gone.id}/stats$", 404, {"message": f"No such container: {gone.id}"})
    assert cpu_by_name(DockerRuntime({"invoker0": engine_20_10.url}), engine_20_10) == {"wsk0_1_guest_primes": 1.0}


def test_a_failed_inspect_makes_the_host_unavailable_as_a_partial_list_would_undercount(
        engine_20_10: FakeDockerEngine) -> None:
    engine_20_10.add("wsk0_1_guest_primes")
    broken = engine_20_10.add("wsk0_2_guest_primes")
    engine_20_10.fail("GET", rf"/containers/{broken.id}/json$", 500, {"message": "engine trouble"})
    view = DockerRuntime({"invoker0": engine_20_10.url}).read()
    assert view.containers == () and "engine trouble" in view.failed["invoker0"]


def test_a_host_that_cannot_be_reached_next_to_one_that_answers_loses_only_its_own_containers(
        engine_20_10: FakeDockerEngine) -> None:
    engine_20_10.add("wsk0_1_guest_primes", cpu_total_ns=10**9)
    runtime = DockerRuntime({"invoker0": "tcp://127.0.0.1:9", "invoker1": engine_20_10.url}, timeout_s=5.0)
    view = runtime.read()
    assert [(c.invoker, c.cpu_total_s) for c in view.containers] == [("invoker1", 1.0)]
    assert list(view.failed) == ["invoker0"] and "127.0.0.1:9" in view.failed["invoker0"]


def test_parallel_calls_below_one_is_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match="parallel_calls must be at least 1, not 0"):
        DockerRuntime({"invoker0": "tcp://127.0.0.1:9"}, parallel_calls=0)
