"""The ``openwhisk`` group of the settings, ``controller.backends.openwhisk.from_settings`` and the chart's
openwhisk settings: the real clients pointed at the recorded-shape fakes of ``tests/fakes``."""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from fakes.docker_engine import FakeDockerEngine
from fakes.kubernetes_api import FakeKubernetesApi
from fakes.openwhisk import AUTH, NAMESPACE, FakeOpenWhisk
from fakes.server import Call, FakeServer, Reply, json_reply
from fakes.user_events import UserEvents

from controller.assemble import build_backend
from controller.backends.docker_runtime import DockerRuntime
from controller.backends.kube_runtime import KubeRuntime
from controller.backends.openwhisk import (
    OpenWhiskBackend,
    PrometheusLatency,
    WarmPoolMode,
    from_settings,
    promql_query,
)
from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
from controller.clients.prometheus import PrometheusReader
from controller.commands.run import run_command
from controller.settings import OpenWhiskSettings, Settings, SettingsError, load_settings
from policies.types import KEEP_SHARES, UNMANAGED, Decisions

ORIGIN_MS = 1_700_000_000_000
CODE = "def main(args):\n    return {}\n"
NAMES = ["primes", "image-inference-003"]
CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "mfrm"


@pytest.fixture(autouse=True)
def no_mfrm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the developer's MFRM_* variables nor a surrounding pod's Kubernetes service leak in."""
    for name in [n for n in os.environ if n.startswith(("MFRM_", "KUBERNETES_SERVICE_"))]:
        monkeypatch.delenv(name)


class WhiskWithNamespaces(FakeOpenWhisk):
    """The OpenWhisk fake plus ``GET /api/v1/namespaces`` (Swagger ``getAllNamespaces``: an array of names)."""

    def route(self, call: Call) -> Reply:
        if call.path.rstrip("/") == "/api/v1/namespaces" and call.method == "GET":
            if call.headers.get("authorization") != self.auth_header:
                return json_reply(401, {"error": "The supplied authentication is invalid"})
            return json_reply(200, [NAMESPACE])
        return super().route(call)


class FakePrometheusServer(FakeServer):
    """``/api/v1/query`` answering a vector (Prometheus HTTP API v1 shape): per metric named in the
    query, or from ``answer(expr, unix_time)`` when given."""

    def __init__(self, answers: dict[str, list[tuple[dict[str, str], float]]] | None = None,
                 answer: Callable[[str, float], list[tuple[dict[str, str], float]]] | None = None) -> None:
        super().__init__()
        self.answers = answers or {}
        self.answer = answer

    def route(self, call: Call) -> Reply:
        if call.path != "/api/v1/query":
            return json_reply(404, {"status": "error", "errorType": "bad_data", "error": "not found"})
        expr, at = call.query["query"], float(call.query["time"])
        if self.answer is not None:
            series = self.answer(expr, at)
        else:
            series = next((value for needle, value in self.answers.items() if needle in expr), [])
        result = [{"metric": labels, "value": [at, str(value)]} for labels, value in series]
        return json_reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.fixture
def whisk() -> Iterator[tuple[WhiskWithNamespaces, dict[str, int]]]:
    clock = {"ms": ORIGIN_MS}
    with WhiskWithNamespaces(clock_ms=lambda: clock["ms"]) as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        for name in NAMES:
            client.put_action(name, {"exec": {"kind": "python:3.11", "code": CODE}, "limits": {"memory": 256}})
        yield fake, clock


def settings_for(fake: FakeOpenWhisk, monkeypatch: pytest.MonkeyPatch, auth: str | None = AUTH,
                 **openwhisk: Any) -> Settings:
    """Settings of the openwhisk backend against ``fake``; the key comes from the environment, as in the chart."""
    if auth is None:
        monkeypatch.delenv("MFRM_OPENWHISK__AUTH", raising=False)
    else:
        monkeypatch.setenv("MFRM_OPENWHISK__AUTH", auth)
    group = {"api_host": fake.url, "functions": NAMES, "slo_s": {"primes": 0.5}, "default_slo_s": 1.0,
             "max_attempts": 1, **openwhisk}
    return load_settings(overrides={"daemon.backend": "openwhisk", "openwhisk": group})


def decisions(shares: list[int]) -> Decisions:
    n = len(shares)
    return Decisions(containers=[UNMANAGED] * n, cpu_shares=shares, valid=[True] * n, reasons=("r",) * n)


# --------------------------------------------------------------------------------------------
# the settings group
# --------------------------------------------------------------------------------------------


def test_the_api_key_is_never_shown_by_the_logged_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFRM_OPENWHISK__AUTH", AUTH)
    settings = load_settings()
    assert settings.openwhisk.auth is not None and settings.openwhisk.auth.get_secret_value() == AUTH
    logged = json.dumps(settings.logged())
    key = AUTH.split(":")[1]
    assert key not in logged and key not in repr(settings) and key not in str(settings)
    assert settings.logged()["openwhisk"]["auth"] == "**********"


def test_the_key_from_the_environment_joins_the_rest_of_the_group_from_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mfrm.yaml"
    path.write_text("openwhisk:\n  api_host: http://owdev-controller.openwhisk.svc.cluster.local:8080\n"
                    "  functions: [primes]\n  slo_s: {primes: 0.4}\n")
    monkeypatch.setenv("MFRM_OPENWHISK__AUTH", AUTH)
    group = load_settings(path).openwhisk
    assert group.api_host == "http://owdev-controller.openwhisk.svc.cluster.local:8080"
    assert group.functions == ("primes",) and group.slo_s == {"primes": 0.4}
    assert group.auth is not None and group.auth.get_secret_value() == AUTH


BAD_GROUPS = [
    ("host-without-scheme", {"api_host": "owdev-controller:8080"}, "openwhisk.api_host="),
    ("password-in-the-url", {"api_host": "http://admin:hunter2@owdev:8080"}, "no user or password"),
    ("packaged-action", {"functions": ["utils/primes"], "default_slo_s": 1}, "not OpenWhisk action names"),
    ("action-twice", {"functions": ["primes", "primes"], "default_slo_s": 1}, "listed more than once"),
    ("slo-of-an-unmanaged-action", {"functions": ["primes"], "slo_s": {"prims": 1}, "default_slo_s": 1},
     "['prims'] are not in openwhisk.functions"),
    ("action-without-slo", {"functions": ["primes", "sort"], "slo_s": {"primes": 1}}, "no SLO for ['sort']"),
    ("negative-slo", {"functions": ["primes"], "slo_s": {"primes": -1}}, "allowed: 0 < value <= 3600"),
    ("docker-over-ssh", {"docker_hosts": {"invoker0": "ssh://root@host"}}, "openwhisk.docker_hosts.invoker0"),
    ("unknown-warm-pool-mode", {"warm_pool": "prewarm"}, "openwhisk.warm_pool"),
    ("unknown-runtime", {"runtime": "podman"}, "openwhisk.runtime"),
    ("unknown-latency-source", {"latency_source": "logs"}, "openwhisk.latency_source"),
    ("too-many-functions", {"functions": [f"f{i}" for i in range(1001)], "default_slo_s": 1}, "openwhisk.functions"),
    ("zero-cores", {"invoker_cores": 0}, "allowed: 0 < value <= 1024"),
]


@pytest.mark.parametrize("group, said", [(g, s) for _, g, s in BAD_GROUPS], ids=[i for i, *_ in BAD_GROUPS])
def test_an_inconsistent_openwhisk_group_is_refused_when_the_settings_load(group: dict[str, Any], said: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(overrides={"openwhisk": group})
    assert said in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_the_warm_pool_choices_are_exactly_the_backends_modes() -> None:
    choices = typing.get_args(OpenWhiskSettings.model_fields["warm_pool"].annotation)
    assert set(choices) == {mode.value for mode in WarmPoolMode}


def test_the_default_group_loads_for_any_backend() -> None:
    group = load_settings().openwhisk
    assert (group.api_host, group.auth, group.functions, group.runtime) == (None, None, (), "none")


# --------------------------------------------------------------------------------------------
# what the backend needs at start
# --------------------------------------------------------------------------------------------

MISSING = [
    ("no-api-host", {"api_host": None}, "openwhisk.api_host is not set"),
    ("no-key", {"auth": None}, "openwhisk.auth is not set"),
    ("key-without-colon", {"auth": "just-a-token"}, "openwhisk.auth is not an API key of the form uuid:key"),
    ("no-functions", {"functions": [], "slo_s": {}}, "openwhisk.functions is empty"),
    ("prometheus-without-url", {"latency_source": "prometheus"}, "openwhisk.prometheus_url is not set"),
    ("docker-without-hosts", {"runtime": "docker"}, "openwhisk.docker_hosts is empty"),
    ("plain-tcp-to-a-remote-engine", {"runtime": "docker", "docker_hosts": {"invoker0": "tcp://10.0.0.5:2375"}},
     "openwhisk.docker_hosts.invoker0=tcp://10.0.0.5:2375: plain TCP"),
    ("tls-folder-without-certificates", {"runtime": "docker", "docker_hosts": {"invoker0": "tcp://10.0.0.5:2376"},
                                         "docker_tls_dir": "/nonexistent-tls"}, "openwhisk.docker_tls_dir"),
    ("kubeconfig-missing", {"runtime": "kubernetes", "kubeconfig": "/nonexistent/kubeconfig"},
     "openwhisk.kubeconfig=/nonexistent/kubeconfig"),
]


@pytest.mark.parametrize("group, said", [(g, s) for _, g, s in MISSING], ids=[i for i, *_ in MISSING])
def test_a_backend_missing_what_it_needs_does_not_start_and_names_the_key(
        whisk, monkeypatch: pytest.MonkeyPatch, group: dict[str, Any], said: str) -> None:
    settings = settings_for(whisk[0], monkeypatch, **group)
    with pytest.raises(SettingsError, match="openwhisk") as raised:
        from_settings(settings, epoch_origin_ms=ORIGIN_MS)
    assert said in str(raised.value)
    assert AUTH.split(":")[1] not in str(raised.value)


def test_every_missing_setting_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        from_settings(load_settings(overrides={"daemon.backend": "openwhisk"}))
    message = str(raised.value)
    assert all(key in message for key in ("openwhisk.api_host", "openwhisk.auth", "openwhisk.functions"))


def test_mfrm_run_without_an_api_host_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(run_command, ["--backend", "openwhisk", "--once", "--set", f"output.out_dir={tmp_path}"])
    assert result.exit_code == 2, result.output
    assert "openwhisk.api_host is not set" in result.output


def test_a_key_the_platform_refuses_is_reported_when_the_namespace_is_looked_up(
        whisk, docker_host, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(whisk[0], monkeypatch, auth="23bc46b1-71f6-4ed5-8c54-816aa4f8c502:wrong-key",
                            runtime="docker", docker_hosts={"invoker0": docker_host.url})
    with pytest.raises(SettingsError, match=r"openwhisk.namespace is '_'.*HTTP 401.*openwhisk.auth"):
        from_settings(settings, epoch_origin_ms=ORIGIN_MS)


# --------------------------------------------------------------------------------------------
# a working backend, per runtime
# --------------------------------------------------------------------------------------------


@pytest.fixture
def docker_host() -> Iterator[FakeDockerEngine]:
    with FakeDockerEngine() as engine:
        yield engine


@pytest.fixture
def kube() -> Iterator[FakeKubernetesApi]:
    with FakeKubernetesApi() as api:
        yield api


def kubeconfig_for(api: FakeKubernetesApi, folder: Path) -> Path:
    """A kubeconfig file (kubectl's format) whose only context points at the fake API server."""
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
        "users": [{"name": "mfrm", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "mfrm"}}],
    }))
    return path


def test_the_daemon_builds_the_openwhisk_backend_from_the_settings(whisk, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = build_backend(settings_for(whisk[0], monkeypatch))
    assert isinstance(backend, OpenWhiskBackend)
    assert backend.function_names == tuple(NAMES) and list(backend.slo_s) == [0.5, 1.0]
    assert backend.runtime is None and backend.prometheus is None and backend.warm_pool is WarmPoolMode.REJECT


def test_with_docker_the_backend_observes_and_sets_shares_on_the_invokers_engine(
        whisk, docker_host, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, clock = whisk
    settings = settings_for(fake, monkeypatch, runtime="docker", docker_hosts={"invoker0": docker_host.url},
                            invoker_cores=4, invoker_memory_mb=4096)
    primes = docker_host.add("wsk0_1_guest_primes", cpu_shares=128)
    docker_host.add("wsk0_2_guest_imageinference003", cpu_shares=128, paused=True)
    clock["ms"] = ORIGIN_MS + 2000
    client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
    for _ in range(3):
        client.invoke("primes", blocking=True)

    backend = from_settings(settings, epoch_origin_ms=ORIGIN_MS)
    assert isinstance(backend.runtime, DockerRuntime) and backend.namespace == NAMESPACE  # '_' looked up
    snapshot = backend.observe(10.0)
    row = snapshot.functions.row(0)
    assert (row["completions"], row["cold_starts"], row["containers"], row["cpu_shares"]) == (3, 1, 1, 128)
    assert snapshot.functions.row(1)["busy_containers"] == 0
    assert snapshot.invokers.names == ("invoker0",)
    assert (snapshot.invokers.cores[0], snapshot.invokers.memory_mb[0]) == (4, 4096)
    assert backend.apply(decisions([512, KEEP_SHARES]), 10.0) == []
    assert primes.cpu_shares == 512
    assert len(fake.calls_to("GET", r"^/api/v1/namespaces/?$")) == 1


def test_with_a_tls_folder_tcp_engines_are_spoken_to_over_https_with_the_client_certificate(
        whisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text(f"placeholder {name}: read when the first connection is made\n")
    settings = settings_for(whisk[0], monkeypatch, namespace=NAMESPACE, runtime="docker", docker_tls_dir=str(tmp_path),
                            docker_hosts={"invoker0": "tcp://10.0.0.5:2376", "invoker1": "unix:///var/run/docker.sock"})
    runtime = from_settings(settings, epoch_origin_ms=ORIGIN_MS).runtime
    assert isinstance(runtime, DockerRuntime)
    remote, local = (runtime._clients[name] for name in ("invoker0", "invoker1"))  # the SDK's own clients
    assert remote.base_url == "https://10.0.0.5:2376"
    assert remote.cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    assert remote.verify == str(tmp_path / "ca.pem")
    assert local.base_url == "http+docker://localhost"  # the socket: no TLS


def test_with_kubernetes_the_backend_reads_pods_and_resizes_them_through_the_kubeconfig(
        whisk, kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = whisk
    pod = kube.add("wsk0-1-guest-primes", namespace="ow-prod", cpu="250m")
    kube.add("wsk0-2-guest-primes", namespace="elsewhere", cpu="250m")
    settings = settings_for(fake, monkeypatch, namespace=NAMESPACE, runtime="kubernetes",
                            kubernetes_namespace="ow-prod", kubeconfig=str(kubeconfig_for(kube, tmp_path)))
    backend = from_settings(settings, epoch_origin_ms=ORIGIN_MS)
    assert isinstance(backend.runtime, KubeRuntime)
    row = backend.observe(10.0).functions.row(0)
    assert (row["containers"], row["cpu_shares"]) == (1, 256)
    assert backend.apply(decisions([512, KEEP_SHARES]), 10.0) == []
    assert pod.cpu == "500m"
    assert all(c.headers.get("authorization") == "Bearer fake-token" for c in kube.calls)
    assert fake.calls_to("GET", r"^/api/v1/namespaces/?$") == []  # the namespace was given: no look-up


def test_with_prometheus_latency_comes_from_the_user_events_metrics(whisk, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = whisk
    events = UserEvents(NAMESPACE)
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=10)
    events.scrape(0.0)
    events.action("primes").record(wait_s=0.004, duration_s=0.08, times=38)
    events.action("primes").record(wait_s=0.04, duration_s=0.3, init_s=0.4, times=2)
    events.scrape(10.0)
    with FakePrometheusServer(answer=lambda expr, at: events(expr, at - ORIGIN_MS / 1000)) as prometheus:
        settings = settings_for(fake, monkeypatch, latency_source="prometheus", prometheus_url=prometheus.url,
                                lookback_s=10.0)
        backend = from_settings(settings, epoch_origin_ms=ORIGIN_MS)
        row = backend.observe(10.0).functions.row(0)
        queries = prometheus.calls_to("GET", r"^/api/v1/query$")
    assert isinstance(backend.prometheus, PrometheusLatency) and backend.prometheus.namespace == NAMESPACE
    assert (row["completions"], row["cold_starts"]) == (40, 2)
    assert row["p99_latency_s"] > 0.4  # the cold starts' init and runs reach the 99th percentile
    # The counters at the tick, and (the first time only) a tick earlier to difference with.
    assert {float(q.query["time"]) for q in queries} == {ORIGIN_MS / 1000, ORIGIN_MS / 1000 + 10.0}
    assert all('namespace="guest"' in q.query["query"] for q in queries)


def test_the_promql_adapter_turns_run_time_into_unix_time_and_samples_into_pairs() -> None:
    with FakePrometheusServer({"up": [({"action": "a", "namespace": "guest"}, 1.5), ({"action": "b"}, float("nan"))]}) as server:
        query = promql_query(PrometheusReader(server.url, timeout_s=2.0), epoch_origin_s=1_700_000_000.0)
        answer = query("up", 30.0)
        (call,) = server.calls
    assert call.query["time"] == "1700000030.000"
    assert answer[0] == ({"action": "a", "namespace": "guest"}, 1.5)
    assert answer[1][0] == {"action": "b"} and np.isnan(answer[1][1])


def test_the_instances_limit_mode_reaches_the_backend(whisk, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = from_settings(settings_for(whisk[0], monkeypatch, warm_pool="instances-limit"), epoch_origin_ms=ORIGIN_MS)
    assert backend.warm_pool is WarmPoolMode.INSTANCES_LIMIT
    assert backend.apply(Decisions(containers=[3, UNMANAGED], cpu_shares=[KEEP_SHARES] * 2, valid=[True, True],
                                   reasons=("r", "r")), 10.0) == []
    assert whisk[0].actions["primes"]["limits"]["instances"] == 3


# --------------------------------------------------------------------------------------------
# the chart's settings file
# --------------------------------------------------------------------------------------------


def chart_variant(name: str) -> dict[str, Any]:
    return {} if name == "default" else yaml.safe_load((CHART / "ci" / f"{name}.yaml").read_text()) or {}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    loaded = helm.Chart.load(CHART)
    yield loaded
    loaded.close()


def manifests(chart: helm.Chart, values: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The rendered manifests of ``kind`` (``helm template`` with ``values``)."""
    rendered = chart.render(values, name="mfrm", namespace="openwhisk", is_install=True)
    return [d for path, text in rendered.items() if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d and d["kind"] == kind]


def rendered_settings(chart: helm.Chart, values: dict[str, Any], tmp_path: Path) -> Settings:
    (configmap,) = manifests(chart, values, "ConfigMap")
    path = tmp_path / "mfrm.yaml"
    path.write_text(configmap["data"]["mfrm.yaml"])
    return load_settings(path)


CHART_VARIANTS = [
    ("default", "kubernetes", {}),
    ("kubernetes-values", "kubernetes", {}),
    ("docker-values", "docker", {"invoker0": "unix:///var/run/docker.sock"}),
]


@pytest.mark.parametrize("variant, runtime, docker_hosts", CHART_VARIANTS, ids=[v for v, *_ in CHART_VARIANTS])
def test_the_chart_renders_an_openwhisk_group_the_settings_accept(
        chart: helm.Chart, tmp_path: Path, variant: str, runtime: str, docker_hosts: dict[str, str]) -> None:
    values = chart_variant(variant)
    group = rendered_settings(chart, values, tmp_path).openwhisk
    default_api = "http://owdev-controller.openwhisk.svc.cluster.local:8080"
    assert group.api_host == values.get("openwhisk", {}).get("apiHost", default_api)
    assert group.runtime == runtime and group.docker_hosts == docker_hosts
    assert group.kubernetes_namespace == values.get("openwhisk", {}).get("namespace", "openwhisk")
    assert group.auth is None  # the key comes from the Secret, as an environment variable, never in the file
    if variant != "default":
        assert group.functions and all(name in group.slo_s or group.default_slo_s for name in group.functions)


def test_the_chart_maps_its_connection_values_into_the_openwhisk_group(chart: helm.Chart, tmp_path: Path) -> None:
    values = {"openwhisk": {"apiHost": "https://whisk.example:31001", "namespace": "ow-prod",
                            "containerFactory": "docker"},
              "docker": {"socket": {"enabled": True, "hostPath": "/var/run/docker.sock"},
                         "tls": {"existingSecret": "docker-client-cert"}},
              "settings": {"openwhisk": {"docker_hosts": {"invoker0": "tcp://10.0.0.5:2376"}, "functions": ["primes"],
                                         "default_slo_s": 0.5}}}
    group = rendered_settings(chart, values, tmp_path).openwhisk
    assert (group.api_host, group.runtime, group.kubernetes_namespace) == ("https://whisk.example:31001", "docker", "ow-prod")
    assert group.docker_hosts == {"invoker0": "tcp://10.0.0.5:2376"}  # the operator's hosts, not the socket default
    (pod,) = manifests(chart, values, "Deployment")
    mounts = {m["name"]: m for m in pod["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["template"]["spec"]["volumes"]}
    assert mounts["docker-tls"] == {"name": "docker-tls", "mountPath": str(group.docker_tls_dir), "readOnly": True}
    assert volumes["docker-tls"]["secret"]["secretName"] == "docker-client-cert"
    assert {item["path"] for item in volumes["docker-tls"]["secret"]["items"]} == {"ca.pem", "cert.pem", "key.pem"}


CHART_OWNED = ["api_host", "auth", "runtime", "kubernetes_namespace", "docker_tls_dir"]


@pytest.mark.parametrize("key", CHART_OWNED, ids=CHART_OWNED)
def test_the_chart_refuses_openwhisk_settings_it_sets_itself(chart: helm.Chart, key: str) -> None:
    value = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:secret" if key == "auth" else "x"
    with pytest.raises(helm.HelmValuesError):
        chart.render({"settings": {"openwhisk": {key: value}}}, name="mfrm", namespace="openwhisk")


def test_the_api_key_passed_by_the_chart_reaches_the_group(chart: helm.Chart, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (deployment,) = manifests(chart, {}, "Deployment")
    (env,) = [e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
              if "secretKeyRef" in e.get("valueFrom", {})]
    monkeypatch.setenv(env["name"], AUTH)
    group = rendered_settings(chart, {}, tmp_path).openwhisk
    assert group.auth is not None and group.auth.get_secret_value() == AUTH
