"""The Grafana dashboards (deploy/grafana) and the Prometheus examples (deploy/prometheus).

Static checks: the dashboards follow OpenWhisk's conventions (a Prometheus data source chosen by a
``datasource`` variable whose default is the data source OpenWhisk's dashboards name, the
``openwhisk`` tag that their "Related dashboards" lists select), show every topic of the issue and
every metric family the daemon exports, and read only families it exports.

Type check: ``tests/js/check_dashboards.mjs`` assigns every dashboard to Grafana's published
dashboard type (npm ``@grafana/schema``, each panel narrowed to its plugin's published options) and
runs ``tsc --strict --noEmit``; it also requires the schema version that package writes. Without
node or the npm packages (``npm ci --prefix tests/js``) these tests FAIL, naming the install command.

PromQL: every expression is parsed offline by ``promtool check rules`` (one recording rule each).

Live check, against a real Prometheus server (Debian's ``prometheus`` package): a short run of the
daemon (``mfrm run`` on the simulated backend with a 50 ms interval and the learning policy) is
scraped every second; once its series exist, every dashboard expression is sent to
``/api/v1/query`` (status ``success`` means Prometheus parsed and ran it) and must return series,
and every metric name in it must be one the daemon exports (``controller.metrics.METRIC_NAMES``)
and one Prometheus has scraped.

Without a ``prometheus`` or ``promtool`` binary those tests FAIL, naming the install command. On a
developer machine they may be skipped instead by setting ``MFRM_ALLOW_NO_PROMETHEUS=1``; under CI
(``CI`` set) that variable is ignored.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from controller.metrics import METRIC_NAMES, MetricsExporter
from localwhisk.testing import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
JS_DIR = ROOT / "tests" / "js"
TYPE_CHECK = JS_DIR / "check_dashboards.mjs"
NPM_INSTALL = "npm ci --prefix tests/js"
NODE_INSTALL = "apt-get update && apt-get install -y nodejs npm"
PROMETHEUS_EXAMPLES = ROOT / "deploy" / "prometheus"
DASHBOARDS = {path.stem: json.loads(path.read_text()) for path in sorted(GRAFANA.glob("*.json"))}
INSTALL_HINT = "apt-get update && apt-get install -y prometheus"
ALLOW_MISSING_ENV = "MFRM_ALLOW_NO_PROMETHEUS"

#: Histogram families add these series to their name.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _histogram_families() -> frozenset[str]:
    registry = CollectorRegistry()
    MetricsExporter(registry)
    return frozenset(family.name for family in registry.collect() if family.type == "histogram")


HISTOGRAMS = _histogram_families()
#: Names a dashboard may use: every exported family, histograms by their series.
KNOWN_NAMES = (frozenset(METRIC_NAMES) - HISTOGRAMS) | {
    name + suffix for name in HISTOGRAMS for suffix in HISTOGRAM_SUFFIXES
}
#: Every panel and query variable reads the data source the ``datasource`` variable picks.
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
#: What Grafana puts in place of its variables when the tests run the expressions.
GRAFANA_VARIABLES = {
    "${__range_s}": "60",
    "$__range": "1m",
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$function": ".*",
    "$diagnostic": ".*",
    "$instance": ".*",
}
#: The range selectors a dashboard may use: windows that follow the time range and the zoom.
#: ``$__rate_interval`` always covers several scrapes; ``$__interval`` (one bar of a bar chart) only
#: where the panel sets a minimum interval; ``$__range`` for values over the whole time range.
WINDOWS = {"[$__rate_interval]", "[$__interval]", "[$__range]"}


# --------------------------------------------------------------------------------------------
# reading dashboards and PromQL
# --------------------------------------------------------------------------------------------


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions() -> list[tuple[str, str]]:
    """(id, PromQL) of every query target of every dashboard panel."""
    found = []
    for name, dashboard in DASHBOARDS.items():
        for panel in panels(dashboard):
            for t in panel.get("targets") or []:
                found.append((f"{name}/{panel['title']}/{t['refId']}", t["expr"]))
    return found


def variable_queries() -> list[tuple[str, str]]:
    return [(f"{name}/${v['name']}", v["query"]) for name, d in DASHBOARDS.items()
            for v in d["templating"]["list"] if v["type"] == "query"]


#: Words of PromQL that look like names but are not metrics.
_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                    "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (strings, label matchers, ranges, label lists and
    function calls are not names)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("("):
            continue
        if match.group(0).lower() in _PROMQL_KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def substitute(expr: str) -> str:
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("mfrm_ticks_total", {"mfrm_ticks_total"}),
        ('sum by (result) (rate(mfrm_ticks_total{result="ok"}[$__rate_interval]))', {"mfrm_ticks_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))", {"a_bucket"}),
        ('x{name=~"losses/critic|approx_kl"} / on (job) group_left y', {"x", "y"}),
        ("time() - max(a:b:c)", {"a:b:c"}),
        ("sum(a) without (instance) > bool 1e3", {"a"}),
        ('label_values(mfrm_slo_seconds, function)', {"mfrm_slo_seconds", "function"}),
    ],
    ids=["bare", "labels-and-range", "histogram", "regex-string-and-matching", "recording-rule-name",
         "keywords-and-numbers", "grafana-label-values"],
)
def test_metric_names_finds_exactly_the_selected_series(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# --------------------------------------------------------------------------------------------
# static checks
# --------------------------------------------------------------------------------------------


def test_there_are_dashboards_with_distinct_uids_and_titles() -> None:
    assert {"mfrm-overview", "mfrm-functions", "mfrm-learning"} <= set(DASHBOARDS)
    assert len({d["uid"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)
    assert len({d["title"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)


@pytest.mark.parametrize("name", list(DASHBOARDS), ids=list(DASHBOARDS))
def test_a_dashboard_picks_its_prometheus_like_openwhisks_dashboards(name: str) -> None:
    dashboard = DASHBOARDS[name]
    (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["name"] == "datasource" and source["query"] == "prometheus"
    # openwhisk-deploy-kube provisions one data source named "Prometheus", which OpenWhisk's own
    # dashboards name directly; ours default to it and let the viewer switch.
    assert source["current"]["value"] == "Prometheus"
    for panel in panels(dashboard):
        if panel.get("targets"):
            assert panel["datasource"] == DATASOURCE_REF, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE_REF, f"{panel['title']}/{target['refId']}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE_REF, variable["name"]
    assert "openwhisk" in dashboard["tags"], "OpenWhisk's 'Related dashboards' lists select this tag"


@pytest.mark.parametrize("name", list(DASHBOARDS), ids=list(DASHBOARDS))
def test_panels_do_not_overlap_and_ids_are_unique(name: str) -> None:
    boxes = [(p["id"], p["gridPos"]) for p in panels(DASHBOARDS[name])]
    assert len({i for i, _ in boxes}) == len(boxes)
    cells: dict[tuple[int, int], int] = {}
    for panel_id, g in boxes:
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel_id} overlap"
                cells[(x, y)] = panel_id


TOPICS = [
    ("slo-violations", "mfrm-functions", "mfrm_slo_violations_total"),
    ("p99-against-slo", "mfrm-functions", "mfrm_latency_p99_seconds{function=~\"$function\"} / mfrm_slo_seconds"),
    ("warm-pools", "mfrm-functions", "mfrm_containers"),
    ("cpu-shares", "mfrm-functions", "mfrm_decision_cpu_shares"),
    ("rewards", "mfrm-learning", "mfrm_reward_ratio"),
    ("learner-diagnostics", "mfrm-learning", "mfrm_learner_diagnostic"),
    ("mean-field", "mfrm-learning", "mfrm_mean_field_ratio"),
    ("backend-errors", "mfrm-overview", "mfrm_backend_errors_total"),
    ("tick-duration", "mfrm-overview", "mfrm_tick_duration_seconds_bucket"),
    ("what-each-daemon-runs", "mfrm-overview", "mfrm_build_info"),
]


@pytest.mark.parametrize(("dashboard", "needle"), [t[1:] for t in TOPICS], ids=[t[0] for t in TOPICS])
def test_the_dashboards_show_every_topic_of_the_issue(dashboard: str, needle: str) -> None:
    exprs = [t["expr"] for p in panels(DASHBOARDS[dashboard]) for t in p.get("targets") or []]
    assert any(needle in e for e in exprs)


def test_the_mean_field_is_drawn_as_a_heatmap_of_its_bins() -> None:
    (heat,) = [p for p in panels(DASHBOARDS["mfrm-learning"]) if p["type"] == "heatmap"]
    (target,) = heat["targets"]
    assert metric_names(target["expr"]) == {"mfrm_mean_field_ratio"}
    # One series per bin, named by its lower edge. Not the data source's "heatmap" format: that one
    # takes the series for cumulative histogram buckets and subtracts each from the next, but every
    # bin's share is its own.
    assert target["format"] == "time_series" and target["legendFormat"] == "{{bin}}"
    assert heat["options"]["calculate"] is False
    assert heat["options"]["rowsFrame"]["layout"] == "ge", "a bin's label is its lower edge"


@pytest.mark.parametrize("name", list(DASHBOARDS), ids=list(DASHBOARDS))
def test_every_panel_that_shows_numbers_states_their_unit(name: str) -> None:
    for panel in panels(DASHBOARDS[name]):
        if panel["type"] in ("timeseries", "stat", "table", "bargauge"):
            assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]


@pytest.mark.parametrize("name", list(DASHBOARDS), ids=list(DASHBOARDS))
def test_windows_follow_the_time_range_and_cover_several_scrapes(name: str) -> None:
    for panel in panels(DASHBOARDS[name]):
        for target in panel.get("targets") or []:
            windows = set(re.findall(r"\[[^\]]*\]", target["expr"]))
            assert windows <= WINDOWS, f"{panel['title']}: {sorted(windows - WINDOWS)}"
            if "[$__interval]" in windows:
                assert panel.get("interval"), f"{panel['title']}: $__interval needs the panel's minimum interval"


@pytest.mark.parametrize(("where", "expr"), expressions() + variable_queries(),
                         ids=[i for i, _ in expressions() + variable_queries()])
def test_every_metric_a_dashboard_reads_is_one_mfrm_exports(where: str, expr: str) -> None:
    variable = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", expr)
    names = metric_names(variable.group(1) if variable else expr)
    assert names, f"{where}: no metric in {expr}"
    assert names <= KNOWN_NAMES, f"{where}: not exported by mfrm: {sorted(names - KNOWN_NAMES)}"


def test_every_family_the_daemon_exports_is_on_a_dashboard() -> None:
    read = set().union(*(metric_names(e) for _, e in expressions()))
    shown = {name for name in METRIC_NAMES if name in read or any(name + s in read for s in HISTOGRAM_SUFFIXES)}
    missing = sorted(set(METRIC_NAMES) - shown)
    assert not missing, f"exported by controller.metrics but on no dashboard: {missing}"


# --------------------------------------------------------------------------------------------
# Grafana's published dashboard type (npm @grafana/schema, TypeScript)
# --------------------------------------------------------------------------------------------


def node_binary() -> str:
    """The ``node`` executable; fails the test, naming the install commands, without one."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not installed; install it ({NODE_INSTALL}), then run {NPM_INSTALL}")
    return node


def type_check(*files: Path) -> subprocess.CompletedProcess[str]:
    """Run the type check on ``files`` (all dashboards when none); fails the test, naming the install
    command, when the npm packages are missing."""
    result = subprocess.run([node_binary(), str(TYPE_CHECK), *map(str, files)], cwd=ROOT, check=False,
                            capture_output=True, text=True, timeout=300)
    if result.returncode == 2:
        pytest.fail(result.stderr.strip())
    return result


def test_every_dashboard_is_a_grafana_dashboard_by_its_published_type() -> None:
    result = type_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"^0 type errors, 0 other problems in {len(DASHBOARDS)} dashboards", result.stdout, re.MULTILINE)


def _with_a_grafana_6_datasource(tmp_path: Path) -> tuple[Path, int]:
    """A copy of the overview whose first time series names its data source the Grafana 6 way;
    the file and the line of that value."""
    dashboard = json.loads(json.dumps(DASHBOARDS["mfrm-overview"]))
    (panel, *_) = [p for p in dashboard["panels"] if p["type"] == "timeseries"]
    panel["datasource"] = "$datasource"
    path = tmp_path / "old-style.json"
    text = json.dumps(dashboard, indent=2)
    path.write_text(text)
    line = text.splitlines().index('      "datasource": "$datasource",') + 1
    return path, line


def test_the_type_check_names_the_file_and_line_of_what_grafana_would_not_read(tmp_path: Path) -> None:
    path, line = _with_a_grafana_6_datasource(tmp_path)
    result = type_check(path)
    assert result.returncode == 1
    assert f"{path}:{line}:" in result.stdout and "error TS" in result.stdout
    assert re.search(r"^1 type errors, 0 other problems in 1 dashboards", result.stdout, re.MULTILINE)


def test_the_type_check_refuses_an_older_schema_version(tmp_path: Path) -> None:
    dashboard = json.loads(json.dumps(DASHBOARDS["mfrm-overview"]))
    dashboard["schemaVersion"] = 18
    path = tmp_path / "schema-18.json"
    path.write_text(json.dumps(dashboard, indent=2))
    result = type_check(path)
    assert result.returncode == 1
    assert f"{path}: schemaVersion is 18; @grafana/schema" in result.stdout


def test_the_type_check_without_its_npm_packages_says_how_to_install_them(tmp_path: Path) -> None:
    alone = tmp_path / "check_dashboards.mjs"
    shutil.copy(TYPE_CHECK, alone)
    result = subprocess.run([node_binary(), str(alone)], cwd=ROOT, check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "is not installed in tests/js; run: npm ci --prefix tests/js" in result.stderr


# --------------------------------------------------------------------------------------------
# every expression parsed by promtool
# --------------------------------------------------------------------------------------------


def promtool_problems(exprs: list[tuple[str, str]], workdir: Path) -> str:
    """Parse every (where, PromQL) with ``promtool check rules``, as one recording rule each; ""
    when all parse, else promtool's complaint with each rule's name followed by its ``where``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_prometheus("promtool")
    names = {f"dashboard:check:expr_{i}": where for i, (where, _) in enumerate(exprs)}
    rules = [{"record": name, "expr": substitute(expr)} for name, (_, expr) in zip(names, exprs)]
    path = workdir / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    result = subprocess.run([promtool, "check", "rules", str(path)], check=False, capture_output=True, text=True,
                            timeout=60)
    if result.returncode == 0:
        return ""
    return re.sub(r'"(dashboard:check:expr_\d+)"', lambda m: f"{m.group(0)} ({names[m.group(1)]})",
                  result.stdout + result.stderr)


def variable_selectors() -> list[tuple[str, str]]:
    """The metric selector of each ``label_values(selector, label)`` variable, which is PromQL."""
    found = []
    for where, query in variable_queries():
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"{where}: variables use label_values(metric, label): {query}"
        found.append((where, match.group(1)))
    return found


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    exprs = expressions() + variable_selectors()
    assert exprs
    assert promtool_problems(exprs, tmp_path) == ""


def test_promtool_names_the_panel_of_an_expression_that_does_not_parse(tmp_path: Path) -> None:
    problems = promtool_problems([("mfrm-overview/Ticks/A", "sum(rate(mfrm_ticks_total[$__rate_interval])"),
                                  ("mfrm-overview/Ticks/B", "sum(mfrm_ticks_total)")], tmp_path)
    assert "(mfrm-overview/Ticks/A)" in problems and "parse error" in problems
    assert "mfrm-overview/Ticks/B" not in problems


def test_the_static_scrape_example_is_a_valid_prometheus_configuration() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_prometheus("promtool")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS_EXAMPLES / "prometheus.yml")],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_scrape_job_keeps_only_the_charts_metrics_port() -> None:
    config = yaml.safe_load((PROMETHEUS_EXAMPLES / "kubernetes-scrape-job.yml").read_text())
    (job,) = config["scrape_configs"]
    keeps = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    # The chart's Service carries app.kubernetes.io/name=mfrm and names its port "metrics".
    assert keeps == {("__meta_kubernetes_service_label_app_kubernetes_io_name",): "mfrm",
                     ("__meta_kubernetes_endpoint_port_name",): "metrics"}
    assert job["kubernetes_sd_configs"] == [{"role": "endpoints", "namespaces": {"names": ["openwhisk"]}}]


# --------------------------------------------------------------------------------------------
# a real Prometheus scraping a short run of the daemon
# --------------------------------------------------------------------------------------------


def missing_prometheus(binary: str) -> None:
    message = f"{binary} is not installed; install Debian's Prometheus: {INSTALL_HINT}"
    if os.environ.get(ALLOW_MISSING_ENV) == "1" and not os.environ.get("CI"):
        pytest.skip(f"{message} (skipped because {ALLOW_MISSING_ENV}=1)")
    pytest.fail(message)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


MISSING_CASES = [
    ("ci-fails", {"CI": "true"}, "fail"),
    ("ci-fails-even-when-allowed", {"CI": "true", ALLOW_MISSING_ENV: "1"}, "fail"),
    ("developer-fails-by-default", {}, "fail"),
    ("developer-skips-when-allowed", {ALLOW_MISSING_ENV: "1"}, "skip"),
]


@pytest.mark.parametrize(("env", "outcome"), [c[1:] for c in MISSING_CASES], ids=[c[0] for c in MISSING_CASES])
def test_a_missing_prometheus_fails_unless_a_developer_allows_a_skip(monkeypatch: pytest.MonkeyPatch,
                                                                      env: dict[str, str], outcome: str) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(ALLOW_MISSING_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="apt-get install -y prometheus"):
        missing_prometheus("prometheus")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        missing_prometheus("prometheus")
    return binary


@pytest.fixture(scope="module")
def daemon_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of /metrics of ``mfrm run`` on the sim backend, ticking every 50 ms."""
    workdir = tmp_path_factory.mktemp("daemon")
    config = workdir / "mfrm.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 3,
        "workload": {"functions": 3, "minutes": 2},
        "policy": {"name": "nac-linear"},
        "loop": {"checkpoint_every_ticks": 50},
        "output": {"out_dir": str(workdir / "out"), "plots": False},
        "daemon": {"backend": "sim", "interval_s": 0.05, "metrics_host": "127.0.0.1", "metrics_port": 0},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFRM_")}
    process = subprocess.Popen(
        [sys.executable, "-c", "from controller.commands.run import run_command; run_command()", "--config", str(config)],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        for line in process.stderr:
            log.append(line)
            if "serving /metrics" in line:
                lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def address() -> str | None:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return None
        match = re.search(r"http://(127\.0\.0\.1:\d+)", line)
        return match.group(1) if match else None

    try:
        yield wait_until("the daemon serving /metrics", address, 120, process)
    finally:
        stop(process)
        if process.returncode not in (0, None):
            print("".join(log[-30:]), file=sys.stderr)


@pytest.fixture(scope="module")
def prometheus(prometheus_binary: str, daemon_metrics: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a Prometheus scraping the daemon every second."""
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "mfrm", "static_configs": [{"targets": [daemon_metrics]}]}],
    }))
    port = free_port()
    process = subprocess.Popen(
        [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until("Prometheus ready", ready, 60, process)
        yield url
    finally:
        stop(process)


def query(url: str, expr: str) -> dict[str, Any]:
    response = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    return response.json()


@pytest.fixture(scope="module")
def scraped(prometheus: str) -> tuple[str, set[str]]:
    """(Prometheus URL, metric names it holds) once every family the dashboards read has been
    scraped and the counters have enough samples for a rate over the dashboards' window."""
    needed = set().union(*(metric_names(e) for _, e in expressions()))

    def names_when_complete() -> set[str] | None:
        answer = requests.get(f"{prometheus}/api/v1/label/__name__/values", timeout=5).json()
        names = set(answer.get("data", []))
        if not needed <= names:
            return None
        samples = query(prometheus, 'count_over_time(mfrm_ticks_total{result="ok"}[30s])')
        result = samples["data"]["result"]
        return names if result and float(result[0]["value"][1]) >= 5 else None

    return prometheus, wait_until("every dashboard series scraped", names_when_complete, 120)


@pytest.mark.parametrize(("where", "expr"), expressions(), ids=[i for i, _ in expressions()])
def test_prometheus_parses_every_dashboard_expression_and_finds_its_series(scraped, where: str, expr: str) -> None:
    url, present = scraped
    answer = query(url, substitute(expr))
    assert answer["status"] == "success", f"{where}: {answer.get('error')}"
    assert answer["data"]["result"], f"{where}: no series for {substitute(expr)}"
    assert metric_names(expr) <= present


@pytest.mark.parametrize(("where", "expr"), variable_queries(), ids=[i for i, _ in variable_queries()])
def test_every_dashboard_variable_lists_values(scraped, where: str, expr: str) -> None:
    url, _ = scraped
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr)
    assert match, f"{where}: variables use label_values(metric, label): {expr}"
    metric, label = match.groups()
    answer = requests.get(f"{url}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=5).json()
    assert answer["status"] == "success" and answer["data"], where


def test_every_exported_family_reaches_prometheus(scraped) -> None:
    _, present = scraped
    assert HISTOGRAMS <= set(METRIC_NAMES)
    assert KNOWN_NAMES - present == set()
