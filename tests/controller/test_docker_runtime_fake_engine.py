"""The Docker runtime driver's version negotiation and failure classes, against the recorded-shape fake.

The fake stands in for what the real engine of ``test_docker_runtime_real_engine.py`` (Docker 20.10,
API 1.41) cannot be made to do on demand: answer as a newer engine (Docker 27, 29, or one newer than
the driver), change its API range under a running driver, or answer through a gateway with 502-504.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest
from fakes.docker_engine import FakeDockerEngine

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
