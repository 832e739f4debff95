"""Every diagnostic a learner returns is on the daemon's ``/metrics``: the list comes from the learners."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from conftest import make_snapshot
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_daemon_clock import FakeClock

from controller.daemon import EndpointServer, build_daemon
from controller.settings import load_settings
from policies.registry import learned_policies, make

#: The factory parameters of every mode of each learner (a mode returns its own diagnostics).
MODES = {"nac-linear": ({"mode": "natural"}, {"mode": "kl"})}


class BusyBackend:
    """Eight busy functions whose numbers move every tick, so the learners form transitions."""

    name = "busy"
    function_names = tuple(f"f{i}" for i in range(8))

    def __init__(self) -> None:
        self.rng = np.random.default_rng(3)

    def observe(self, now: float):
        n = len(self.function_names)
        arrivals = self.rng.poisson(40, n).astype(float)
        return make_snapshot(self.function_names, time_s=now, arrivals=arrivals, completions=arrivals,
                             containers=np.full(n, 4.0), busy_containers=np.full(n, 2.0),
                             cpu_shares=np.full(n, 512.0), mean_exec_s=np.full(n, 0.2),
                             recent_exec_s=np.full(n, 0.2), p99_latency_s=self.rng.uniform(0.3, 1.5, n),
                             slo_violations=self.rng.poisson(1, n).astype(float),
                             cpu_used_core_s=np.full(n, 8.0), cpu_alloc_core_s=np.full(n, 20.0))

    def apply(self, decisions, now):
        return []


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {sample.labels["name"]: sample.value
            for family in text_string_to_metric_families(text) if family.name == "mfrm_learner_diagnostic"
            for sample in family.samples}


@pytest.mark.parametrize(
    ("name", "params"),
    [(name, params) for name in learned_policies() for params in MODES.get(name, ({},))],
    ids=lambda value: value if isinstance(value, str) else "-".join(f"{k}={v}" for k, v in value.items()) or "default",
)
def test_every_diagnostic_a_learner_returns_is_served_on_metrics(name, params, tmp_path):
    policy = make(name, seed=1, **params)
    settings = load_settings(overrides={"daemon.interval_s": 1.0, "daemon.dry_run": False,
                                        "daemon.checkpoint_dir": str(tmp_path), "policy.name": name})
    clock = FakeClock()
    registry = CollectorRegistry()
    daemon = build_daemon(settings, backend=BusyBackend(), policy=policy, registry=registry, clock=clock)
    returned: set[str] = set()
    for tick in range(1, 7):
        report = daemon.loop.step(10.0 * tick)
        returned |= set(report.diagnostics)
    server = EndpointServer(registry, daemon.health, clock, "127.0.0.1", 0)
    try:
        served = _scrape(server.port)
    finally:
        server.close()
    assert returned, f"{name} returned no diagnostics in six ticks"
    assert returned <= set(policy.diagnostics)
    # Every declared diagnostic has its series; every one returned carries the value of the last update.
    assert set(policy.diagnostics) <= set(served)
    assert "reward_centre" in served
    last = dict(report.diagnostics)
    for key, value in last.items():
        assert served[key] == pytest.approx(value, nan_ok=True), key
