"""The Prometheus exporter: names, units, bounded labels and the values each tick leaves behind."""

from __future__ import annotations

import math

import numpy as np
import pytest
import requests
from conftest import FakeBackend, FixedPolicy, make_snapshot
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.backends.base import FailureKind
from controller.clients.prometheus import PromQLThrottled, PromQLTimeout
from controller.estimator import PopulationEstimator
from controller.loop import ControlLoop
from controller.metrics import (
    ERROR_KINDS,
    GUARD_OUTCOMES,
    METRIC_NAMES,
    NO_DECISION_REASONS,
    MetricsExporter,
    error_kind,
)
from policies.types import KEEP_SHARES

NAMES = ("a", "b", "c")


def _run(exporter: MetricsExporter, snapshots, policy=None, backend_fail=None, ticks: int = 1) -> ControlLoop:
    backend = FakeBackend(snapshots=snapshots, fail=backend_fail or {})
    loop = ControlLoop(backend=backend, policy=policy or FixedPolicy(containers=3, shares=512),
                       estimator=PopulationEstimator(bins=4), sinks=[exporter])
    for k in range(1, ticks + 1):
        loop.step(10.0 * k)
    return loop


def _busy(now: float, **columns):
    values = {
        "arrivals": np.array([5.0, 7.0, 0.0]),
        "completions": np.array([5.0, 7.0, 0.0]),
        "containers": np.array([1.0, 4.0, 3.0]),
        "cpu_shares": np.array([256.0, 1024.0, 512.0]),
        "p99_latency_s": np.array([0.5, 2.0, np.nan]),
        "slo_violations": np.array([0.0, 3.0, 0.0]),
        "cold_starts": np.array([1.0, 0.0, 0.0]),
        "cpu_used_core_s": np.array([1.0, 2.0, 0.0]),
        "cpu_alloc_core_s": np.array([2.0, 4.0, 1.0]),
    }
    values.update(columns)
    return make_snapshot(NAMES, time_s=now, **values)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def _families(registry: CollectorRegistry) -> set[str]:
    # A counter family is named without "_total" (its samples carry it, plus the client's "_created").
    return {f.name + "_total" if f.type == "counter" else f.name for f in registry.collect()}


def test_the_exported_names_are_exactly_the_importable_list(registry):
    exporter = MetricsExporter(registry, wall_clock=lambda: 1.7e9)
    _run(exporter, _busy)
    exporter.on_checkpoint()
    assert _families(registry) == set(METRIC_NAMES)


def test_names_carry_the_prefix_and_counters_end_in_total(registry):
    MetricsExporter(registry)
    for family in registry.collect():
        assert family.name.startswith("mfrm_")
        if family.type == "counter":
            assert f"{family.name}_total" in METRIC_NAMES
    exposed = generate_latest(registry).decode()
    assert "mfrm_ticks_total{" in exposed


def test_a_tick_exports_decisions_rewards_latency_and_the_mean_field(registry):
    exporter = MetricsExporter(registry, wall_clock=lambda: 1_700_000_000.0)
    _run(exporter, _busy)
    get = registry.get_sample_value
    assert get("mfrm_decision_target_containers", {"function": "b"}) == 3
    assert get("mfrm_decision_cpu_shares", {"function": "b"}) == 512
    assert get("mfrm_latency_p99_seconds", {"function": "b"}) == 2.0
    assert math.isnan(get("mfrm_latency_p99_seconds", {"function": "c"}))
    assert get("mfrm_slo_seconds", {"function": "a"}) == 1.0
    assert get("mfrm_slo_violations_total", {"function": "b"}) == 3
    assert get("mfrm_invocations_total", {"function": "b"}) == 7
    assert get("mfrm_cold_starts_total", {"function": "a"}) == 1
    assert get("mfrm_containers", {"function": "b"}) == 4
    assert 0.0 <= get("mfrm_reward_ratio", {"function": "a"}) <= 1.0
    assert get("mfrm_reward_mean_ratio") == pytest.approx(
        np.nanmean([get("mfrm_reward_ratio", {"function": n}) for n in NAMES])
    )
    assert sum(get("mfrm_mean_field_ratio", {"bin": b}) for b in ("0.00", "0.25", "0.50", "0.75")) == pytest.approx(1.0)
    assert get("mfrm_ticks_total", {"result": "ok"}) == 1
    assert get("mfrm_ticks_completed") == 1
    assert get("mfrm_last_successful_tick_timestamp_seconds") == 1_700_000_000.0


def test_counters_accumulate_over_ticks(registry):
    exporter = MetricsExporter(registry)
    _run(exporter, _busy, ticks=3)
    assert registry.get_sample_value("mfrm_slo_violations_total", {"function": "b"}) == 9
    assert registry.get_sample_value("mfrm_ticks_total", {"result": "ok"}) == 3
    assert registry.get_sample_value("mfrm_ticks_completed") == 3


def test_changes_are_counted_by_resource_and_direction_against_what_was_observed(registry):
    exporter = MetricsExporter(registry)
    # containers observed 1, 4, 3 -> target 3: a up, b down, c unchanged; shares 256, 1024, 512 -> 512.
    _run(exporter, _busy)
    get = registry.get_sample_value
    assert get("mfrm_decision_changes_total", {"resource": "containers", "direction": "up"}) == 1
    assert get("mfrm_decision_changes_total", {"resource": "containers", "direction": "down"}) == 1
    assert get("mfrm_decision_changes_total", {"resource": "cpu_shares", "direction": "up"}) == 1
    assert get("mfrm_decision_changes_total", {"resource": "cpu_shares", "direction": "down"}) == 1


def test_rows_without_data_count_as_no_decision_and_never_as_zero_load(registry):
    exporter = MetricsExporter(registry)
    invalid_b = lambda now: _busy(now, valid=np.array([True, False, True]))
    _run(exporter, invalid_b, ticks=2)
    get = registry.get_sample_value
    assert get("mfrm_no_decisions_total", {"reason": "no_data"}) == 2
    assert math.isnan(get("mfrm_latency_p99_seconds", {"function": "b"}))
    assert get("mfrm_invocations_total", {"function": "b"}) is None or get("mfrm_invocations_total", {"function": "b"}) == 0
    assert get("mfrm_slo_violations_total", {"function": "b"}) in (None, 0.0)


def test_a_policy_that_abstains_on_a_row_with_data_is_counted_separately(registry):
    class Abstains(FixedPolicy):
        def decide(self, snapshot, mu):
            d = super().decide(snapshot, mu)
            valid = d.valid.copy()
            valid[0] = False
            return type(d)(containers=d.containers, cpu_shares=d.cpu_shares, valid=valid, reasons=d.reasons)

    exporter = MetricsExporter(registry)
    _run(exporter, _busy, policy=Abstains())
    assert registry.get_sample_value("mfrm_no_decisions_total", {"reason": "policy"}) == 1
    assert registry.get_sample_value("mfrm_no_decisions_total", {"reason": "no_data"}) == 0


@pytest.mark.parametrize(
    ("max_functions", "configured", "exported", "left_out"),
    [
        (2, None, {"a", "b"}, 1),
        (200, {"a", "c"}, {"a", "c"}, 1),
        (1, {"b", "c"}, {"b"}, 2),
    ],
    ids=["cap-keeps-the-first-seen", "only-the-configured-set", "cap-within-the-configured-set"],
)
def test_function_labels_are_bounded_by_the_cap_and_the_configured_set(registry, max_functions, configured,
                                                                         exported, left_out):
    exporter = MetricsExporter(registry, max_functions=max_functions, functions=configured)
    _run(exporter, _busy, ticks=2)
    labelled = {
        s.labels["function"]
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if "function" in s.labels
    }
    assert labelled == exported
    assert registry.get_sample_value("mfrm_functions_unexported") == left_out
    # Aggregates still see every function.
    assert registry.get_sample_value("mfrm_functions_observed") == 3


def test_failed_actions_count_as_backend_errors_by_kind(registry):
    exporter = MetricsExporter(registry)
    _run(exporter, _busy, backend_fail={"a": FailureKind.UNAVAILABLE, "b": FailureKind.REJECTED})
    get = registry.get_sample_value
    assert get("mfrm_backend_errors_total", {"kind": "unavailable"}) == 1
    assert get("mfrm_backend_errors_total", {"kind": "rejected"}) == 1
    # A failed change is not counted as a change.
    assert get("mfrm_decision_changes_total", {"resource": "containers", "direction": "up"}) == 0


def test_learner_diagnostics_outside_the_declared_set_are_not_exported(registry):
    class Learns(FixedPolicy):
        diagnostics = ("approx_kl", "losses/critic", "entropy")

        def feedback(self, snapshot, mu, rewards):
            return {"approx_kl": 0.01, "losses/critic": 2.5, "container-1234": 7.0}

    exporter = MetricsExporter(registry, diagnostics=Learns.diagnostics)
    _run(exporter, _busy, policy=Learns())
    get = registry.get_sample_value
    assert get("mfrm_learner_diagnostic", {"name": "approx_kl"}) == 0.01
    assert get("mfrm_learner_diagnostic", {"name": "losses/critic"}) == 2.5
    assert get("mfrm_learner_diagnostic", {"name": "container-1234"}) is None
    # A declared diagnostic the learner has not returned yet is a series from the start (NaN).
    assert math.isnan(get("mfrm_learner_diagnostic", {"name": "entropy"}))


def test_the_guards_outcomes_are_counted(registry):
    exporter = MetricsExporter(registry)
    loop = ControlLoop(backend=FakeBackend(snapshots=_busy), policy=FixedPolicy(containers=500),
                       estimator=PopulationEstimator(bins=10, beta=0.05), sinks=[exporter])
    loop.step(10.0)
    loop.step(20.0)
    get = registry.get_sample_value
    # 500 containers is above the guard's bound: clamped on the first tick, then equal to the target in force.
    assert get("mfrm_guard_decisions_total", {"outcome": "clamped"}) == loop.counters.clamped > 0
    assert get("mfrm_guard_decisions_total", {"outcome": "unchanged"}) == loop.counters.unchanged > 0
    assert {"clamped", "unchanged", "blocked_invalid"} <= set(GUARD_OUTCOMES)


def test_a_failed_tick_counts_every_known_function_as_without_decision(registry):
    exporter = MetricsExporter(registry)
    _run(exporter, _busy)
    exporter.on_tick_failed("timeout")
    get = registry.get_sample_value
    assert get("mfrm_ticks_total", {"result": "failed"}) == 1
    assert get("mfrm_backend_errors_total", {"kind": "timeout"}) == 1
    assert get("mfrm_no_decisions_total", {"reason": "tick_failed"}) == 3


def test_an_unknown_error_kind_is_refused_rather_than_becoming_a_new_label(registry):
    exporter = MetricsExporter(registry)
    with pytest.raises(ValueError, match="unknown error kind"):
        exporter.on_tick_failed("connection refused by 10.0.0.7")


def test_every_bounded_label_value_exists_from_the_start(registry):
    MetricsExporter(registry)
    for kind in ERROR_KINDS:
        assert registry.get_sample_value("mfrm_backend_errors_total", {"kind": kind}) == 0
    for reason in NO_DECISION_REASONS:
        assert registry.get_sample_value("mfrm_no_decisions_total", {"reason": reason}) == 0


def test_keep_shares_leaves_the_shares_gauge_alone(registry):
    exporter = MetricsExporter(registry)
    _run(exporter, _busy, policy=FixedPolicy(containers=2, shares=KEEP_SHARES))
    assert registry.get_sample_value("mfrm_decision_cpu_shares", {"function": "a"}) is None


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"HTTP {status}", response=response)


class _SaysItsKind(Exception):
    kind = FailureKind.UNAVAILABLE


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_http_error(500), "server_error"),
        (_http_error(503), "server_error"),
        (_http_error(429), "throttled"),
        (_http_error(404), "rejected"),
        (requests.ReadTimeout("read timed out"), "timeout"),
        (requests.ConnectTimeout("connect timed out"), "timeout"),
        (requests.ConnectionError("refused"), "unreachable"),
        (ConnectionRefusedError(111, "refused"), "unreachable"),
        (TimeoutError("slow"), "timeout"),
        (PromQLThrottled("429", url="http://p"), "throttled"),
        (PromQLTimeout("slow", url="http://p"), "timeout"),
        (_SaysItsKind("down"), "unavailable"),
        (ValueError("a bug"), "internal"),
    ],
    ids=["http-500", "http-503", "http-429", "http-404", "read-timeout", "connect-timeout", "requests-refused",
         "socket-refused", "timeout-error", "promql-throttled", "promql-timeout", "own-failure-kind", "other"],
)
def test_errors_map_to_a_bounded_kind(error, kind):
    assert error_kind(error) == kind
    assert kind in ERROR_KINDS


def test_a_learner_falling_back_to_its_heuristic_is_exported_with_the_reason(registry):
    class FallsBack(FixedPolicy):
        diagnostics = ("fallback_active", "fallback_reason_violations", "fallback_reason_memory")

        def feedback(self, snapshot, mu, rewards):
            return {"fallback_active": 1.0, "fallback_reason_violations": 1.0, "fallback_reason_memory": 0.0}

    exporter = MetricsExporter(registry, diagnostics=FallsBack.diagnostics)
    get = registry.get_sample_value
    assert get("mfrm_fallback_active", {"reason": "violations"}) == 0  # a series from the start
    _run(exporter, _busy, policy=FallsBack())
    assert get("mfrm_fallback_active", {"reason": "violations"}) == 1
    assert get("mfrm_fallback_active", {"reason": "memory"}) == 0
