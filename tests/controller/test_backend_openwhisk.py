"""The ``openwhisk`` backend with the real docker SDK and kubernetes client pointed at recorded-shape fakes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fakes.docker_engine import FakeDockerEngine
from fakes.kubernetes_api import FakeKubernetesApi
from fakes.openwhisk import AUTH, NAMESPACE, FakeOpenWhisk
from fakes.user_events import UserEvents
from kubernetes import client as k8s

from controller.backends.base import Backend, FailureKind
from controller.backends.docker_runtime import DockerRuntime
from controller.backends.kube_runtime import (
    KUBERNETES_API_CALLS,
    KubeRuntime,
    cpu_to_shares,
    shares_to_millicpu,
)
from controller.backends.openwhisk import (
    OpenWhiskBackend,
    PrometheusLatency,
    WarmPoolMode,
    docker_default_shares,
    memory_for_shares,
)
from controller.backends.runtime import action_key, container_action_key
from controller.clients.errors import ObservationError
from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
from controller.clients.prometheus import PromQLBadResponse, PromQLTimeout, PromQLUnavailable
from policies.types import KEEP_SHARES, UNMANAGED, Decisions

ORIGIN_MS = 1_700_000_000_000
CODE = "def main(args):\n    return {}\n"
NAMES = ["primes", "image-inference-003"]


def decisions(containers, shares, valid=None):
    n = len(containers)
    return Decisions(containers=containers, cpu_shares=shares, valid=valid or [True] * n, reasons=("r",) * n)


@pytest.fixture
def whisk():
    clock = {"ms": ORIGIN_MS}
    with FakeOpenWhisk(clock_ms=lambda: clock["ms"]) as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        for name in NAMES:
            client.put_action(name, {"exec": {"kind": "python:3.11", "code": CODE}, "limits": {"memory": 256}})
        yield fake, client, clock


@pytest.fixture
def docker_host():
    with FakeDockerEngine() as engine:
        yield engine


def make_backend(client, runtime=None, **kwargs) -> OpenWhiskBackend:
    return OpenWhiskBackend(client, NAMES, [0.5, 0.5], epoch_origin_ms=ORIGIN_MS, namespace=NAMESPACE,
                            runtime=runtime, **kwargs)


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "container, kubernetes, key",
    [
        ("/wsk0_12_guest_primes", False, "guest_primes"),
        ("wsk0_3_guest_imageinference003", False, "guest_imageinference003"),
        ("wskmyinvoker1_3_guest_primes", False, "guest_primes"),
        ("/wsk0_4_prewarm_python3", False, None),
        ("/registry", False, None),
        ("wsk0-7-guest-imageinference003", True, "guest-imageinference003"),
        ("wsk0-8-prewarm-python311", True, None),
    ],
    ids=["docker", "docker-sanitised", "unique-name-prefix", "stem-cell", "foreign", "pod", "pod-stem-cell"],
)
def test_container_names_map_to_the_action_key_openwhisk_builds(container, kubernetes, key):
    assert container_action_key(container, kubernetes=kubernetes) == key


def test_the_action_key_drops_characters_openwhisk_filters_out():
    assert action_key("guest", "image-inference-003") == "guest_imageinference003"
    assert action_key("Guest", "My_Fn.v2", kubernetes=True) == "guest-my-fnv2"


def test_default_shares_and_the_memory_knob_are_inverse():
    assert docker_default_shares(256, 2048) == 128
    assert docker_default_shares(memory_for_shares(256, 2048), 2048) == 256


@pytest.mark.parametrize("shares", [2, 128, 256, 512, 1000, 1024, 4096], ids=str)
def test_a_cpu_request_of_the_computed_millicores_gives_at_least_the_shares(shares):
    assert cpu_to_shares(shares_to_millicpu(shares) / 1000) >= shares
    # One millicore less falls short (except at the kubelet's floor of 2 shares, which any request reaches).
    assert cpu_to_shares((shares_to_millicpu(shares) - 1) / 1000) < shares or shares == 2


# --- observe ----------------------------------------------------------------------------------


def test_the_openwhisk_backend_satisfies_the_backend_protocol(whisk):
    assert isinstance(make_backend(whisk[1]), Backend)


def test_latency_comes_from_activation_records_as_wait_plus_duration(whisk):
    _fake, client, clock = whisk
    clock["ms"] = ORIGIN_MS + 1000
    for _ in range(3):
        client.invoke("primes", blocking=True)
    snap = make_backend(client).observe(10.0)
    row = snap.functions.row(0)
    assert row["completions"] == 3 and row["cold_starts"] == 1
    assert row["p50_latency_s"] == pytest.approx(0.023)
    assert row["memory_mb"] == 256
    assert np.isnan(row["queued"])  # OpenWhisk does not expose its queues: unknown, not zero


def test_activations_from_before_the_run_are_not_counted(whisk):
    _fake, client, clock = whisk
    clock["ms"] = ORIGIN_MS - 5000
    client.invoke("primes", blocking=True)
    assert make_backend(client).observe(10.0).functions.completions[0] == 0


@pytest.mark.parametrize(
    ("path", "status", "kind", "source"),
    [(r"/activations$", 500, "server_error", "activations"), (r"/activations$", 401, "unauthorized", "activations"),
     (r"/actions$", 429, "throttled", "actions")],
    ids=["activations-500", "activations-401", "actions-429"],
)
def test_an_unreadable_activation_store_or_action_list_fails_the_observation(whisk, path, status, kind, source):
    fake, client, _ = whisk
    fake.fail("GET", path, status, {"error": "db down"})
    with pytest.raises(ObservationError) as caught:
        make_backend(client).observe(10.0)
    assert (caught.value.kind, caught.value.source) == (kind, source)


def test_a_garbled_activation_record_invalidates_only_its_functions_row(whisk):
    fake, client, clock = whisk
    clock["ms"] = ORIGIN_MS + 1000
    client.invoke("primes", blocking=True)
    client.invoke("image-inference-003", blocking=True)
    fake.activations[0]["annotations"] = [{"key": "waitTime", "value": -3}]
    backend = make_backend(client)
    snap = backend.observe(10.0)
    assert snap.functions.valid.tolist() == [False, True]
    (problem,) = backend.problems
    assert (problem.label, problem.functions) == ("malformed", ("primes",)) and "waitTime=-3" in problem.cause


def test_docker_containers_give_counts_busy_shares_and_cpu_per_action(whisk, docker_host):
    _, client, _ = whisk
    a = docker_host.add("wsk0_1_guest_primes", cpu_total_ns=1_000_000_000)
    docker_host.add("wsk0_2_guest_primes", paused=True, cpu_total_ns=0)
    docker_host.add("wsk0_3_guest_imageinference003", cpu_shares=512)
    docker_host.add("wsk0_4_prewarm_python3")
    backend = make_backend(client, DockerRuntime({"invoker0": f"tcp://127.0.0.1:{docker_host.port}"}))
    first = backend.observe(10.0)
    a.cpu_total_ns = 3_500_000_000
    second = backend.observe(20.0)
    assert np.isnan(first.functions.cpu_used_core_s[0])
    rows = [second.functions.row(i) for i in range(2)]
    assert (rows[0]["containers"], rows[0]["busy_containers"], rows[0]["cpu_shares"]) == (2, 1, 256)
    assert rows[0]["cpu_used_core_s"] == pytest.approx(2.5)
    assert rows[0]["cpu_alloc_core_s"] == pytest.approx(2 * 256 / 1024 * 10.0)
    assert (rows[1]["containers"], rows[1]["cpu_shares"]) == (1, 512)
    assert second.invokers.names == ("invoker0",) and second.invokers.valid[0]
    assert second.invokers.cpu_shares_allocated[0] == 256 * 2 + 512  # stem cells are not attributed, not counted


def test_a_container_whose_cpu_reading_failed_for_a_tick_is_charged_only_what_it_used_since_its_last(whisk, docker_host):
    from fakes.server import json_reply

    _, client, _ = whisk
    a = docker_host.add("wsk0_1_guest_primes", cpu_total_ns=100_000_000_000)  # 100 s used before the daemon came
    backend = make_backend(client, DockerRuntime({"invoker0": f"tcp://127.0.0.1:{docker_host.port}"}))
    backend.observe(10.0)
    failing = {a.id}
    answer = docker_host.route

    def route(call):
        if call.path.endswith("/stats") and call.path.split("/")[-2] in failing:
            return json_reply(500, {"message": "stats failed"})
        return answer(call)

    docker_host.route = route
    a.cpu_total_ns = 101_000_000_000
    assert np.isnan(backend.observe(20.0).functions.cpu_used_core_s[0])  # unknown this tick
    failing.clear()
    a.cpu_total_ns = 102_000_000_000
    # Its 2 s since the last reading, not the 102 s of its lifetime.
    assert backend.observe(30.0).functions.cpu_used_core_s[0] == pytest.approx(2.0)


def test_an_unreachable_docker_host_makes_its_invoker_invalid_and_containers_unknown(whisk, docker_host):
    _, client, _ = whisk
    docker_host.add("wsk0_1_guest_primes")
    runtime = DockerRuntime({"invoker0": f"tcp://127.0.0.1:{docker_host.port}", "invoker1": "tcp://127.0.0.1:9"},
                           timeout_s=1.0)
    backend = make_backend(client, runtime)
    snap = backend.observe(10.0)
    assert list(snap.invokers.valid) == [True, False]
    assert np.isnan(snap.functions.containers).all()
    # A partial count would read as fewer containers: no row is valid, and the cause says which host.
    assert not snap.functions.valid.any()
    (problem,) = backend.problems
    assert problem.label == "unreachable" and problem.source == "runtime" and "invoker1" in problem.cause


# --- act: shares ------------------------------------------------------------------------------


def test_shares_go_to_every_container_of_the_action_and_again_to_new_ones(whisk, docker_host):
    _, client, _ = whisk
    docker_host.add("wsk0_1_guest_primes")
    backend = make_backend(client, DockerRuntime({"invoker0": f"tcp://127.0.0.1:{docker_host.port}"}))
    backend.observe(10.0)
    assert backend.apply(decisions([UNMANAGED, UNMANAGED], [640, KEEP_SHARES]), 10.0) == []
    late = docker_host.add("wsk0_2_guest_primes")
    backend.observe(20.0)
    assert backend.apply(decisions([UNMANAGED, UNMANAGED], [KEEP_SHARES, KEEP_SHARES]), 20.0) == []
    assert [c.cpu_shares for c in docker_host.containers.values()] == [640, 640]
    assert late.cpu_shares == 640
    updates = docker_host.calls_to("POST", r"/update$")
    assert [u.body for u in updates] == [{"CpuShares": 640}, {"CpuShares": 640}]  # nothing re-sent to the first


def test_a_docker_refusal_is_reported_rejected(whisk, docker_host):
    _, client, _ = whisk
    docker_host.add("wsk0_1_guest_primes")
    docker_host.fail("POST", r"/update$", 400, {"message": "Invalid CpuShares"})
    backend = make_backend(client, DockerRuntime({"invoker0": f"tcp://127.0.0.1:{docker_host.port}"}))
    backend.observe(10.0)
    failures = backend.apply(decisions([UNMANAGED, UNMANAGED], [640, KEEP_SHARES]), 10.0)
    assert [(f.function, f.kind) for f in failures] == [("primes", FailureKind.REJECTED)]
    assert "Invalid CpuShares" in failures[0].message


def test_without_runtime_access_shares_are_rejected_as_not_stock(whisk):
    failures = make_backend(whisk[1]).apply(decisions([UNMANAGED, UNMANAGED], [512, KEEP_SHARES]), 10.0)
    assert failures[0].kind is FailureKind.REJECTED and "not supported by stock OpenWhisk" in failures[0].message


def test_actions_whose_container_names_collide_are_never_touched(whisk, docker_host):
    _, client, _ = whisk
    backend = OpenWhiskBackend(client, ["a-b", "ab"], [1.0, 1.0], epoch_origin_ms=ORIGIN_MS, namespace=NAMESPACE,
                               runtime=DockerRuntime({"invoker0": f"tcp://127.0.0.1:{docker_host.port}"}))
    docker_host.add("wsk0_1_guest_ab")
    snap = backend.observe(10.0)
    assert np.isnan(snap.functions.containers).all()
    failures = backend.apply(decisions([UNMANAGED, UNMANAGED], [512, 512]), 10.0)
    assert {f.kind for f in failures} == {FailureKind.REJECTED} and len(failures) == 2


# --- kubernetes -------------------------------------------------------------------------------


@pytest.fixture
def kube():
    with FakeKubernetesApi() as api:
        yield api


def kube_runtime(api: FakeKubernetesApi) -> KubeRuntime:
    return KubeRuntime(k8s.ApiClient(k8s.Configuration(host=api.url)), "openwhisk")


def test_pods_give_containers_and_shares_from_their_cpu_request(whisk, kube):
    _, client, _ = whisk
    kube.add("wsk0-1-guest-primes", cpu="250m")
    kube.add("wsk1-2-guest-primes", cpu="250m", invoker="invoker1")
    kube.add("wsk0-3-prewarm-python311")
    snap = make_backend(client, kube_runtime(kube)).observe(10.0)
    row = snap.functions.row(0)
    assert (row["containers"], row["cpu_shares"]) == (2, 256)
    assert np.isnan(row["busy_containers"]) and np.isnan(row["cpu_used_core_s"])
    assert snap.invokers.names == ("invoker0", "invoker1")


def test_shares_resize_the_pod_in_place(whisk, kube):
    _, client, _ = whisk
    pod = kube.add("wsk0-1-guest-primes", cpu="250m")
    backend = make_backend(client, kube_runtime(kube))
    backend.observe(10.0)
    assert backend.apply(decisions([UNMANAGED, UNMANAGED], [512, KEEP_SHARES]), 10.0) == []
    assert pod.cpu == "500m"
    patch = kube.calls_to("PATCH", r"/resize$")[0]
    assert patch.body == {"spec": {"containers": [{"name": "user-action", "resources": {
        "requests": {"cpu": "500m"}, "limits": {"cpu": "500m"}}}]}}


@pytest.mark.parametrize(
    "resize_supported, cpu, words",
    [(False, "250m", "in-place pod resize"), (True, None, "no CPU request")],
    ids=["no-resize-subresource", "pod-without-cpu"],
)
def test_shares_that_cannot_change_on_a_running_pod_are_rejected_with_the_reason(whisk, kube, resize_supported, cpu, words):
    _, client, _ = whisk
    kube.resize_supported = resize_supported
    kube.add("wsk0-1-guest-primes", cpu=cpu)
    backend = make_backend(client, kube_runtime(kube))
    backend.observe(10.0)
    failures = backend.apply(decisions([UNMANAGED, UNMANAGED], [512, KEEP_SHARES]), 10.0)
    assert failures[0].kind is FailureKind.REJECTED and words in failures[0].message


def test_the_kubernetes_calls_made_are_exactly_the_declared_list(whisk, kube):
    _, client, _ = whisk
    kube.add("wsk0-1-guest-primes")
    backend = make_backend(client, kube_runtime(kube))
    backend.observe(10.0)
    backend.apply(decisions([UNMANAGED, UNMANAGED], [512, 512]), 10.0)
    made = set()
    for call in kube.calls:
        sub = re.search(r"/pods/[^/]+/([a-z]+)$", call.path)
        verb = {"GET": "list" if call.path.endswith("/pods") else "get", "PATCH": "patch"}[call.method]
        made.add((verb, "pods/" + sub.group(1) if sub else "pods"))
    assert made == set(KUBERNETES_API_CALLS)


# --- act: warm pools --------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0, 3], ids=["scale-to-zero", "keep-3"])
def test_a_container_target_is_rejected_as_not_supported_by_stock_openwhisk(whisk, target):
    failures = make_backend(whisk[1]).apply(decisions([target, UNMANAGED], [KEEP_SHARES, KEEP_SHARES]), 10.0)
    assert [(f.function, f.kind) for f in failures] == [("primes", FailureKind.REJECTED)]
    assert "not supported by stock OpenWhisk" in failures[0].message


def test_the_instances_limit_mode_sets_limits_instances_and_keeps_the_other_limits(whisk):
    fake, client, _ = whisk
    backend = make_backend(client, warm_pool=WarmPoolMode.INSTANCES_LIMIT)
    assert backend.apply(decisions([4, UNMANAGED], [KEEP_SHARES, KEEP_SHARES]), 10.0) == []
    assert backend.apply(decisions([4, UNMANAGED], [KEEP_SHARES, KEEP_SHARES]), 20.0) == []
    assert fake.actions["primes"]["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1, "instances": 4}
    assert len(fake.calls_to("PUT", r"/actions/primes$")) == 2  # the deploy and one update


# --- prometheus -------------------------------------------------------------------------------


def prometheus_backend(whisk, events: UserEvents, first_lookback_s: float = 10.0) -> OpenWhiskBackend:
    return make_backend(whisk[1], prometheus=PrometheusLatency(events, NAMESPACE, first_lookback_s=first_lookback_s))


def test_prometheus_counts_are_differences_of_the_counters_between_two_scrapes(whisk):
    events = UserEvents()
    events.action("primes").record(wait_s=0.004, duration_s=0.3, init_s=0.4)
    events.scrape(0.0)  # the first tick differences with what Prometheus held a tick earlier
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=39)
    events.action("primes").record(wait_s=0.04, duration_s=0.3, init_s=0.4)
    events.scrape(10.0)
    backend = prometheus_backend(whisk, events)
    row = backend.observe(10.0).functions.row(0)
    assert (row["completions"], row["arrivals"], row["cold_starts"]) == (40, 40, 1)
    # p50: wait in 0..0.005, init 0 (39 of 40 warm), run in 0.05..0.1, each interpolated as PromQL does.
    assert row["p50_latency_s"] == pytest.approx(0.005 * 20 / 39 + 0.0 + 0.05 + 0.05 * (20 / 39))
    assert row["p99_latency_s"] > 0.5  # the cold start's init and long run reach the 99th percentile
    assert row["mean_exec_s"] == pytest.approx((39 * 0.08 + 0.3) / 40)
    assert all('namespace="guest"' in q for q, _ in events.queries)
    assert [t for _, t in events.queries[:1]] == [0.0] and events.queries[-1][1] == 10.0


def test_a_function_without_series_in_prometheus_has_no_data_not_zero_invocations(whisk):
    events = UserEvents()
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=5)
    events.scrape(0.0)
    events.scrape(10.0)
    backend = prometheus_backend(whisk, events)
    snap = backend.observe(10.0)
    assert snap.functions.valid.tolist() == [True, False]
    assert snap.functions.completions[0] == 0  # a series that did not grow: truly no traffic
    assert np.isnan(snap.functions.completions[1])
    (problem,) = backend.problems
    assert problem.functions == ("image-inference-003",) and problem.kind is None
    assert "no series of openwhisk_action_activations_total" in problem.cause


def test_with_a_scrape_as_often_as_the_tick_every_invocation_is_seen_once(whisk):
    # Scrapes every 10 s, 4 s after each tick, as a Prometheus scraping "every 10 s" would: an
    # increase() over the tick's 10 s would hold one sample and say nothing.
    events = UserEvents()
    backend = prometheus_backend(whisk, events)
    events.action("primes")  # its series exists (at 0) before the first tick
    events.scrape(-6.0)
    sent = seen = 0
    for tick in range(1, 31):
        events.action("primes").record(wait_s=0.004, duration_s=0.08, times=16)
        sent += 16
        events.scrape(tick * 10.0 - 6.0)
        snap = backend.observe(tick * 10.0)
        assert snap.functions.valid[0]
        seen += snap.functions.completions[0]
    assert seen == sent


def test_a_tick_without_a_new_scrape_has_no_data_and_the_next_spreads_what_it_sees_over_its_tick(whisk):
    events = UserEvents()
    backend = prometheus_backend(whisk, events)
    events.action("primes").record(wait_s=0.004, duration_s=0.08)
    events.scrape(0.0)
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=20)
    events.scrape(10.0)
    assert backend.observe(10.0).functions.completions[0] == 20
    stale = backend.observe(20.0)  # Prometheus scrapes every 20 s now
    assert not stale.functions.valid[0]
    assert "no new scrape" in backend.problems[0].cause
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=40)
    events.scrape(30.0)
    snap = backend.observe(30.0)
    # 40 over the 20 s between the two scrapes: 20 in this 10-s tick, a rate and not a lump.
    assert snap.functions.valid[0] and snap.functions.completions[0] == 20


def test_a_restarted_exporter_counts_from_zero_again_and_a_returning_series_restarts_counting(whisk):
    events = UserEvents()
    backend = prometheus_backend(whisk, events)
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=100)
    events.scrape(0.0)
    events.scrape(10.0)
    backend.observe(10.0)
    events.restart()
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=7)
    events.scrape(20.0)
    assert backend.observe(20.0).functions.completions[0] == 7  # a counter that fell was reset
    events.target_down(30.0)
    assert not backend.observe(30.0).functions.valid[0]  # stale: no data, not zero
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=50)
    events.scrape(40.0)
    back = backend.observe(40.0)
    assert not back.functions.valid[0] and "came back after a gap" in backend.problems[0].cause
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=3)
    events.scrape(50.0)
    assert backend.observe(50.0).functions.completions[0] == 3


def test_a_series_that_appears_after_the_first_tick_counts_everything_it_holds(whisk):
    events = UserEvents()
    backend = prometheus_backend(whisk, events)
    events.scrape(0.0)
    events.scrape(10.0)
    backend.observe(10.0)
    events.action("image-inference-003").record(wait_s=0.004, duration_s=0.3, init_s=0.5, times=2)
    events.scrape(20.0)
    row = backend.observe(20.0).functions.row(1)
    assert (row["completions"], row["cold_starts"]) == (2, 2)


def test_the_first_tick_reads_a_look_back_earlier_and_counts_the_rate_over_it(whisk):
    events = UserEvents()
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=5)
    events.scrape(-110.0)  # two minutes before the first tick, as lookback_s says
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=120)
    events.action("image-inference-003").record(wait_s=0.004, duration_s=0.08, times=9)
    events.scrape(10.0)
    backend = prometheus_backend(whisk, events, first_lookback_s=120.0)
    snap = backend.observe(10.0)  # the first tick may come at once (mfrm run --once): it still has data
    assert snap.functions.completions[0] == pytest.approx(120 * 10 / 120)  # the rate over 120 s, for a 10-s tick
    # A series the look-back did not see began at an unknown time: what it holds is no rate.
    assert not snap.functions.valid[1]
    assert "read for the first time" in backend.problems[0].cause


@pytest.mark.parametrize(
    ("error", "kind"),
    [(PromQLUnavailable("http://prometheus.test/api/v1/query: cannot connect", url="http://prometheus.test"),
      "unreachable"),
     (PromQLTimeout("no answer within 5 s", url="http://prometheus.test"), "timeout"),
     (PromQLBadResponse("not a Prometheus API answer", url="http://prometheus.test"), "malformed")],
    ids=["down", "slow", "garbled"],
)
def test_a_failed_prometheus_query_fails_the_observation_with_its_kind(whisk, error, kind):
    def broken(expr, time):
        raise error

    backend = make_backend(whisk[1], prometheus=PrometheusLatency(broken, NAMESPACE))
    with pytest.raises(ObservationError) as caught:
        backend.observe(10.0)
    assert (caught.value.kind, caught.value.source) == (kind, "prometheus")
