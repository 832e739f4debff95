"""The Helm chart (deploy/helm/mfrm) rendered by Helm's own engine, checked like an operator would.

Helm runs in process through ``helm-python-sdk`` (Helm's Go SDK behind a C ABI), so ``helm lint`` and
``helm template`` are the real ones, including the values schema. Every rendered manifest is
validated against the Kubernetes OpenAPI schemas of ``kubernetes-validate`` (strict: unknown fields
are errors), for the oldest Kubernetes the chart supports and the newest the package knows.

Variants: the default values and every documented values file in ``deploy/helm/mfrm/ci/``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from prometheus_client import CollectorRegistry

from controller.backends.kube_runtime import KUBERNETES_API_CALLS
from controller.commands.run import run_command
from controller.daemon import EndpointServer, HealthState
from controller.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "mfrm"
VARIANT_FILES = sorted((CHART / "ci").glob("*.yaml"))
VARIANTS: dict[str, dict[str, Any]] = {"default": {}} | {
    path.stem: yaml.safe_load(path.read_text()) or {} for path in VARIANT_FILES
}
RELEASE = "mfrm"
NAMESPACE = "openwhisk"
#: Oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest the schemas cover.
KUBE_VERSIONS = ("1.25.0", kv_utils.latest_version())
#: Kinds that are CustomResourceDefinitions of other projects, not in Kubernetes' schemas.
CUSTOM_KINDS = {"ServiceMonitor"}


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    loaded = helm.Chart.load(CHART)
    yield loaded
    loaded.close()


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every manifest of ``helm template`` with ``values``, as parsed documents."""
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    documents = []
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


@pytest.fixture(scope="module")
def rendered(chart: helm.Chart) -> dict[str, list[dict[str, Any]]]:
    return {name: render(chart, values) for name, values in VARIANTS.items()}


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [d for d in documents if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, got {len(matches)}"
    return matches[0]


def kinds(documents: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in documents}


def pod_spec(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return only(documents, "Deployment")["spec"]["template"]["spec"]


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = pod_spec(documents)["containers"]
    return main


variant_names = pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))


# --------------------------------------------------------------------------------------------
# Helm's lint, Kubernetes' schemas, the values schema
# --------------------------------------------------------------------------------------------


def test_the_documented_variants_exist() -> None:
    assert {"kubernetes-values", "docker-values", "sim-values", "shard-values"} <= {p.stem for p in VARIANT_FILES}


@variant_names
def test_helm_lint_finds_no_error_in_any_variant(variant: str) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems or report["errors"]


@variant_names
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS, ids=[f"k8s-{v}" for v in KUBE_VERSIONS])
def test_every_rendered_manifest_is_valid_for_kubernetes(rendered, variant: str, kube_version: str) -> None:
    for document in rendered[variant]:
        if document["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(document, kube_version, strict=True)


def test_the_service_monitor_scrapes_the_services_metrics_port(rendered) -> None:
    documents = rendered["kubernetes-values"]
    monitor = only(documents, "ServiceMonitor")
    service = only(documents, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


BAD_VALUES = [
    ("two-replicas-of-one-release", {"replicaCount": 2}),
    ("api-key-in-clear", {"openwhisk": {"auth": {"apiKey": "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:secret"}}}),
    ("api-key-as-a-setting-value", {"openwhisk": {"auth": {"value": "uuid:key"}}}),
    ("dry-run-hidden-in-settings", {"settings": {"daemon": {"dry_run": False}}}),
    ("metrics-port-hidden-in-settings", {"settings": {"daemon": {"metrics_port": 1234}}}),
    ("checkpoint-dir-hidden-in-settings", {"settings": {"daemon": {"checkpoint_dir": "/elsewhere"}}}),
    ("unknown-backend", {"backend": "docker"}),
    ("unknown-container-factory", {"openwhisk": {"containerFactory": "podman"}}),
    ("root-user", {"securityContext": {"runAsUser": 0}}),
    ("port-as-text", {"metrics": {"port": "metrics"}}),
    ("misspelt-top-level-key", {"dryrun": False}),
    ("relative-state-path", {"persistence": {"mountPath": "state"}}),
]


@pytest.mark.parametrize("values", [v for _, v in BAD_VALUES], ids=[name for name, _ in BAD_VALUES])
def test_helm_refuses_values_that_break_the_schema(chart: helm.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert helm.lint(CHART, values)["errors"], "lint must report the schema violation too"


def test_a_values_file_that_breaks_the_schema_is_refused(chart: helm.Chart, tmp_path: Path) -> None:
    values_file = tmp_path / "bad-values.yaml"
    values_file.write_text("dryRun: false\nopenwhisk:\n  auth:\n    existingSecret: ''\n    apiKey: uuid:key\n")
    values = helm.values_from_yaml(values_file.read_text())
    with pytest.raises(helm.HelmValuesError, match="apiKey"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_every_top_level_value_is_in_the_schema_and_the_schema_allows_nothing_else(chart: helm.Chart) -> None:
    schema = chart.schema
    assert schema is not None and schema["additionalProperties"] is False
    values_keys = set(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert values_keys == set(schema["properties"]) - {"global"}


def test_every_top_level_value_is_documented_in_values_yaml() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            block = [line]
            for other in lines[i + 1:]:
                if other and not other.startswith(" "):
                    break
                block.append(other)
            before = lines[i - 1] if i else ""
            if not before.startswith("#") and not any("#" in b for b in block):
                undocumented.append(line)
    assert undocumented == []


# --------------------------------------------------------------------------------------------
# security
# --------------------------------------------------------------------------------------------


@variant_names
def test_the_daemon_runs_as_non_root_on_a_read_only_root_without_privileges(rendered, variant: str) -> None:
    pod = pod_spec(rendered[variant])
    main = container(rendered[variant])
    security = main["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and security["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


@variant_names
def test_the_only_writable_paths_are_the_state_volume_and_tmp(rendered, variant: str) -> None:
    mounts = {m["mountPath"]: m for m in container(rendered[variant])["volumeMounts"]}
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
    assert writable == {"/var/lib/mfrm", "/tmp"}
    assert mounts["/etc/mfrm"]["readOnly"] is True


@variant_names
def test_a_host_path_is_mounted_only_for_the_docker_socket(rendered, variant: str) -> None:
    host_paths = [v for v in pod_spec(rendered[variant])["volumes"] if "hostPath" in v]
    if VARIANTS[variant].get("docker", {}).get("socket", {}).get("enabled"):
        (socket,) = host_paths
        assert socket["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    else:
        assert host_paths == []


def test_the_docker_variant_joins_the_sockets_group_and_runs_on_the_invoker_node(rendered) -> None:
    pod = pod_spec(rendered["docker-values"])
    assert pod["securityContext"]["supplementalGroups"] == [999]
    assert pod["nodeSelector"] == {"openwhisk-role": "invoker"}
    assert pod["automountServiceAccountToken"] is False


@variant_names
def test_resources_are_requested_and_memory_is_limited(rendered, variant: str) -> None:
    main = container(rendered[variant])
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert "memory" in main["resources"]["limits"]


#: What each probe asks: whether the loop runs (a restart cures a stuck loop) for the probes that
#: restart the container, whether it also sees the cluster for readiness (a restart cures no outage).
PROBE_PATHS = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/healthz"}


@variant_names
def test_startup_and_liveness_probes_ask_livez_and_readiness_asks_healthz(rendered, variant: str) -> None:
    main = container(rendered[variant])
    asked = {probe: main[probe]["httpGet"] for probe in PROBE_PATHS}
    assert asked == {probe: {"path": path, "port": "metrics"} for probe, path in PROBE_PATHS.items()}
    assert {p["name"] for p in main["ports"]} == {"metrics"}


class SetClock:
    """A monotonic clock that reads what the test sets (the endpoint server asks only ``monotonic``)."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def monotonic(self) -> float:
        return self.now_s

    def wait(self, seconds: float) -> bool:
        return True

    @property
    def stop_requested(self) -> bool:
        return True

    def request_stop(self) -> None:
        pass


def probe_status(port: int, path: str) -> int:
    """The status the kubelet would get for an HTTP probe of ``path`` (it passes for 200-399)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_daemon_blind_through_a_platform_outage_is_not_ready_but_never_restarted_and_a_stuck_one_is(
        rendered) -> None:
    main = container(rendered["default"])
    paths = {probe: main[probe]["httpGet"]["path"] for probe in PROBE_PATHS}
    # Ticks end every 10 s but none has observed the cluster since the start: blind past 120 s.
    health = HealthState(started_s=0.0, stale_after_s=30.0, blind_after_s=120.0)
    health.failed("unreachable: pools: GET http://owdev-controller:8080/api/v1/namespaces/_/actions: refused")
    health.ended(600.0, 10.0)
    clock = SetClock(605.0)
    server = EndpointServer(CollectorRegistry(), health, clock, "127.0.0.1", 0)
    try:
        blind = {probe: probe_status(server.port, path) for probe, path in paths.items()}
        clock.now_s = 600.0 + 10.0 + 31.0  # the next tick was due 31 s ago: the loop is stuck
        stuck = {probe: probe_status(server.port, path) for probe, path in paths.items()}
    finally:
        server.close()
    assert blind == {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 503}
    assert stuck == {"startupProbe": 503, "livenessProbe": 503, "readinessProbe": 503}


def test_the_service_keeps_routing_to_a_pod_that_is_not_ready_so_its_metrics_stay_reachable(rendered) -> None:
    service = only(rendered["default"], "Service")
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]


def api_calls_allowed(role: dict[str, Any]) -> set[tuple[str, str]]:
    allowed = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""], "only the core API group is needed"
        assert "resourceNames" not in rule or rule["resourceNames"]
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                assert "*" not in (resource, verb), "no wildcards"
                allowed.add((verb, resource))
    return allowed


def uses_kubernetes_api(values: dict[str, Any]) -> bool:
    backend = values.get("backend", "openwhisk")
    factory = values.get("openwhisk", {}).get("containerFactory", "kubernetes")
    return backend == "openwhisk" and factory == "kubernetes"


@variant_names
def test_rbac_allows_exactly_the_kubernetes_calls_the_backend_makes(rendered, variant: str) -> None:
    documents = rendered[variant]
    assert not kinds(documents) & {"ClusterRole", "ClusterRoleBinding"}, "nothing cluster-wide"
    if not uses_kubernetes_api(VARIANTS[variant]):
        assert not kinds(documents) & {"Role", "RoleBinding"}
        assert pod_spec(documents)["automountServiceAccountToken"] is False
        return
    role = only(documents, "Role")
    binding = only(documents, "RoleBinding")
    openwhisk_namespace = VARIANTS[variant].get("openwhisk", {}).get("namespace", "openwhisk")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == openwhisk_namespace
    assert api_calls_allowed(role) == {tuple(call) for call in KUBERNETES_API_CALLS}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    account = only(documents, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert pod_spec(documents)["serviceAccountName"] == account["metadata"]["name"]
    assert pod_spec(documents)["automountServiceAccountToken"] is True


@variant_names
def test_the_api_key_comes_from_a_secret_reference_and_the_chart_makes_no_secret(rendered, variant: str) -> None:
    documents = rendered[variant]
    assert "Secret" not in kinds(documents)
    env = container(documents).get("env", [])
    keyed = [e for e in env if e["name"] == "MFRM_OPENWHISK__AUTH"]
    if VARIANTS[variant].get("backend", "openwhisk") == "openwhisk":
        assert keyed == [{"name": "MFRM_OPENWHISK__AUTH",
                          "valueFrom": {"secretKeyRef": {"name": "whisk.auth", "key": "guest"}}}]
    else:
        assert keyed == []
    assert all("value" not in e for e in keyed)


# --------------------------------------------------------------------------------------------
# what the daemon gets
# --------------------------------------------------------------------------------------------


def settings_of(documents: list[dict[str, Any]], tmp_path: Path) -> Settings:
    text = only(documents, "ConfigMap")["data"]["mfrm.yaml"]
    path = tmp_path / "mfrm.yaml"
    path.write_text(text)
    return load_settings(path)


@variant_names
def test_the_configmap_is_a_settings_file_the_daemon_accepts(rendered, variant: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MFRM_")]:
        monkeypatch.delenv(name)
    settings = settings_of(rendered[variant], tmp_path)
    values = VARIANTS[variant]
    assert settings.daemon.backend == values.get("backend", "openwhisk")
    assert settings.daemon.metrics_host == "0.0.0.0"
    (port,) = container(rendered[variant])["ports"]
    assert settings.daemon.metrics_port == port["containerPort"]
    mounts = {m["name"]: m["mountPath"] for m in container(rendered[variant])["volumeMounts"]}
    assert Path(mounts["state"]) in settings.daemon.checkpoint_dir.parents
    assert Path(mounts["state"]) in settings.output.out_dir.parents


@variant_names
def test_the_container_arguments_are_ones_mfrm_run_accepts(rendered, variant: str) -> None:
    args = container(rendered[variant])["args"]
    context = run_command.make_context("run", list(args))
    assert context.params["config"] == Path("/etc/mfrm/mfrm.yaml")
    assert context.params["dry_run"] is VARIANTS[variant].get("dryRun", True)


def test_dry_run_is_on_unless_the_values_turn_it_off(chart: helm.Chart) -> None:
    assert "--dry-run" in container(render(chart, {}))["args"]
    assert "--dry-run" not in container(render(chart, {"dryRun": False}))["args"]


def test_a_settings_change_rolls_the_pod_only_when_asked(chart: helm.Chart) -> None:
    def checksum(values: dict[str, Any]) -> str | None:
        pod = only(render(chart, values), "Deployment")["spec"]["template"]
        return pod["metadata"]["annotations"].get("checksum/settings")

    before = checksum({})
    after = checksum({"settings": {"guard": {"max_containers": 8}}})
    assert before is not None and after is not None and before != after
    assert checksum({"rollOnConfigChange": False}) is None


def test_the_deployment_never_runs_two_writers(rendered) -> None:
    deployment = only(rendered["default"], "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_checkpoints_go_to_a_kept_claim_when_persistence_is_on(rendered) -> None:
    documents = rendered["kubernetes-values"]
    claim = only(documents, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    state = next(v for v in pod_spec(documents)["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    assert "PersistentVolumeClaim" not in kinds(rendered["default"])
    default_state = next(v for v in pod_spec(rendered["default"])["volumes"] if v["name"] == "state")
    assert default_state == {"name": "state", "emptyDir": {}}


def test_the_termination_grace_period_outlasts_the_daemons_shutdown(rendered) -> None:
    settings_default = Settings.model_fields["daemon"].default.shutdown_timeout_s
    assert pod_spec(rendered["default"])["terminationGracePeriodSeconds"] > settings_default


def test_the_pod_is_annotated_for_openwhisk_deploy_kubes_prometheus(rendered) -> None:
    annotations = only(rendered["default"], "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container(rendered["default"])["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
