"""The ``openwhisk`` backend with the real docker SDK and kubernetes client pointed at recorded-shape fakes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fakes.docker_engine import FakeDockerEngine
from fakes.kubernetes_api import FakeKubernetesApi
from fakes.openwhisk import AUTH, NAMESPACE, FakeOpenWhisk
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
from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
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


def test_an_unreadable_activation_store_makes_every_row_invalid(whisk):
    fake, client, _ = whisk
    fake.fail("GET", r"/activations$", 500, {"error": "db down"})
    assert not make_backend(client).observe(10.0).functions.valid.any()


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


def test_an_unreachable_docker_host_makes_its_invoker_invalid_and_containers_unknown(whisk, docker_host):
    _, client, _ = whisk
    docker_host.add("wsk0_1_guest_primes")
    runtime = DockerRuntime({"invoker0": f"tcp://127.0.0.1:{docker_host.port}", "invoker1": "tcp://127.0.0.1:9"},
                           timeout_s=1.0)
    snap = make_backend(client, runtime).observe(10.0)
    assert list(snap.invokers.valid) == [True, False]
    assert np.isnan(snap.functions.containers).all()
    assert snap.functions.valid.all()  # latency still observed


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


class FakePromQL:
    """Answers instant queries by the metric they mention (a recorded-shape stand-in for the reader)."""

    def __init__(self, answers: dict[str, list]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    def __call__(self, expr: str, time: float):
        self.queries.append(expr)
        for needle, value in self.answers.items():
            if needle in expr:
                return value
        return []


def test_prometheus_latency_adds_the_wait_and_duration_quantiles(whisk):
    prom = FakePromQL({
        "histogram_quantile(0.99, sum by (action, le) (rate(openwhisk_action_waitTime": [({"action": "primes"}, 0.05)],
        "histogram_quantile(0.99, sum by (action, le) (rate(openwhisk_action_duration": [({"action": "primes"}, 0.2)],
        "histogram_quantile(0.5, sum by (action, le) (rate(openwhisk_action_waitTime": [({"action": "primes"}, 0.01)],
        "histogram_quantile(0.5, sum by (action, le) (rate(openwhisk_action_duration": [({"action": "primes"}, 0.1)],
        "openwhisk_action_activations_total": [({"action": "primes"}, 40.0)],
        "openwhisk_action_coldStarts_total": [({"action": "primes"}, 2.0)],
        "openwhisk_action_duration_seconds_sum": [({"action": "primes"}, 4.0)],
    })
    backend = make_backend(whisk[1], prometheus=PrometheusLatency(prom, NAMESPACE))
    row = backend.observe(10.0).functions.row(0)
    assert (row["completions"], row["cold_starts"]) == (40, 2)
    assert row["p99_latency_s"] == pytest.approx(0.25) and row["p50_latency_s"] == pytest.approx(0.11)
    assert row["mean_exec_s"] == pytest.approx(0.1)
    assert all('namespace="guest"' in q and "[10s]" in q for q in prom.queries)


def test_a_failed_prometheus_query_makes_every_row_invalid(whisk):
    def broken(expr, time):
        raise ConnectionError("prometheus down")

    backend = make_backend(whisk[1], prometheus=PrometheusLatency(broken, NAMESPACE))
    assert not backend.observe(10.0).functions.valid.any()
