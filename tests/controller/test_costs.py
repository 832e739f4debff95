"""The evaluation metrics (``controller.costs``) on hand-made records, where every answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.costs import COST_COLUMNS, Activations, GuardCuts, Usage, function_costs, overall_costs

NAMES = ("a", "b")
SLO = np.array([1.0, 2.0])


def usage(**columns) -> Usage:
    values = {"arrivals": [10.0, 4.0], "unfinished": [0.0, 0.0], "dropped": [0.0, 0.0],
              "memory_mb_s": [2048.0, 1024.0], "idle_memory_mb_s": [1024.0, 0.0], "container_s": [8.0, 4.0],
              "cpu_used_core_s": [5.0, 2.0], "cpu_alloc_core_s": [10.0, 8.0]}
    values.update(columns)
    return Usage(**{k: np.asarray(v, dtype=float) for k, v in values.items()})


def activations(latencies_a, latencies_b, cold_a=(), cold_b=()) -> Activations:
    latency = [*latencies_a, *latencies_b]
    index = [0] * len(latencies_a) + [1] * len(latencies_b)
    cold = [i in cold_a for i in range(len(latencies_a))] + [i in cold_b for i in range(len(latencies_b))]
    return Activations(np.array(index), np.array(latency, dtype=float), np.array(cold))


def by_name(rows):
    return {row["function"]: row for row in rows}


def test_violations_count_slow_completions_against_the_functions_own_slo():
    acts = activations([0.5] * 8 + [1.5, 3.0], [1.5, 1.9, 2.5, 0.1])
    rows = by_name(function_costs(NAMES, SLO, acts, usage(), GuardCuts.none(2)))
    assert rows["a"]["slo_violation_rate"] == pytest.approx(2 / 10)
    assert rows["b"]["slo_violation_rate"] == pytest.approx(1 / 4)  # 1.5 and 1.9 are within b's 2 s
    overall = overall_costs(SLO, acts, usage(), GuardCuts.none(2))
    assert overall["slo_violation_rate"] == pytest.approx(3 / 14)


def test_unfinished_and_dropped_work_counts_as_violations_and_is_reported():
    done = activations([0.5] * 6, [0.1] * 4)
    idle = overall_costs(SLO, done, usage(arrivals=[6.0, 4.0]), GuardCuts.none(2))
    lazy = overall_costs(SLO, done, usage(arrivals=[10.0, 4.0], unfinished=[3.0, 0.0], dropped=[1.0, 0.0]),
                         GuardCuts.none(2))
    # The same completions: only the work left undone tells the two apart, and it costs.
    assert idle["slo_violation_rate"] == 0.0 and idle["completed_slo_violation_rate"] == 0.0
    assert lazy["slo_violation_rate"] == pytest.approx(4 / 14)
    assert lazy["completed_slo_violation_rate"] == 0.0
    assert (lazy["unfinished"], lazy["dropped"], lazy["completed"], lazy["invocations"]) == (3.0, 1.0, 10.0, 14.0)


def test_smaller_cpu_shares_change_the_papers_utilisation_but_no_cost():
    acts = activations([0.5] * 10, [0.5] * 4)
    big = overall_costs(SLO, acts, usage(cpu_alloc_core_s=[10.0, 8.0]), GuardCuts.none(2))
    small = overall_costs(SLO, acts, usage(cpu_alloc_core_s=[1.25, 1.0]), GuardCuts.none(2))  # shares / 8
    assert small["paper_cpu_utilisation"] == pytest.approx(8 * big["paper_cpu_utilisation"])
    for cost in ("slo_violation_rate", "memory_gb_s", "idle_memory_gb_s", "cpu_core_s", "container_s",
                 "cold_start_rate", "p99_over_slo"):
        assert small[cost] == big[cost], cost


def test_memory_and_idle_memory_are_reported_in_gb_seconds_and_summed_over_functions():
    rows = by_name(function_costs(NAMES, SLO, activations([0.1], [0.1]), usage(), GuardCuts.none(2)))
    assert rows["a"]["memory_gb_s"] == 2.0 and rows["a"]["idle_memory_gb_s"] == 1.0
    assert rows["b"]["memory_gb_s"] == 1.0 and rows["b"]["idle_memory_gb_s"] == 0.0
    overall = overall_costs(SLO, activations([0.1], [0.1]), usage(), GuardCuts.none(2))
    assert overall["memory_gb_s"] == 3.0 and overall["container_s"] == 12.0 and overall["cpu_core_s"] == 7.0


def test_p99_over_slo_pools_each_invocation_against_its_own_slo():
    # a: latencies 0.5 (ratio 0.5); b: 4.0 against SLO 2 (ratio 2): the pooled 99th percentile is near 2.
    acts = activations([0.5] * 99, [4.0])
    overall = overall_costs(SLO, acts, usage(arrivals=[99.0, 1.0]), GuardCuts.none(2))
    ratios = np.array([0.5] * 99 + [2.0])
    assert overall["p99_over_slo"] == pytest.approx(np.percentile(ratios, 99))
    rows = by_name(function_costs(NAMES, SLO, acts, usage(arrivals=[99.0, 1.0]), GuardCuts.none(2)))
    assert rows["b"]["p99_over_slo"] == pytest.approx(2.0)


def test_cold_start_rate_overall_and_its_75th_percentile_over_functions():
    names = ("a", "b", "c", "d")
    slo = np.ones(4)
    # Per-function cold rates 0, 0.5, 1, and d completes nothing (left out of the percentile).
    acts = Activations(np.array([0, 0, 1, 1, 2]), np.full(5, 0.1), np.array([False, False, True, False, True]))
    left = {"arrivals": np.array([2.0, 2.0, 1.0, 3.0]), "unfinished": np.array([0.0, 0.0, 0.0, 3.0])}
    u = Usage(**{k: left.get(k, np.zeros(4)) for k in Usage.__dataclass_fields__})
    overall = overall_costs(slo, acts, u, GuardCuts.none(4))
    assert overall["cold_start_rate"] == pytest.approx(2 / 5)
    assert overall["cold_start_rate_p75"] == pytest.approx(np.percentile([0.0, 0.5, 1.0], 75))
    rows = by_name(function_costs(names, slo, acts, u, GuardCuts.none(4)))
    assert math.isnan(rows["d"]["cold_start_rate"]) and rows["d"]["slo_violation_rate"] == 1.0  # 3 arrived, none done


def test_guard_cuts_are_reported_per_function_and_in_total():
    cuts = GuardCuts(np.array([3.0, 0.0]), np.array([12.0, 0.0]))
    rows = by_name(function_costs(NAMES, SLO, activations([0.1], [0.1]), usage(), cuts))
    assert (rows["a"]["guard_cut_decisions"], rows["a"]["guard_cut_containers"]) == (3.0, 12.0)
    overall = overall_costs(SLO, activations([0.1], [0.1]), usage(), cuts)
    assert (overall["guard_cut_decisions"], overall["guard_cut_containers"]) == (3.0, 12.0)


def test_every_column_is_in_every_overall_row_and_every_function_row_but_the_pooled_one():
    overall = overall_costs(SLO, activations([0.1], [0.1]), usage(), GuardCuts.none(2))
    assert [key for key, _ in COST_COLUMNS if key not in overall] == []
    row = function_costs(NAMES, SLO, activations([0.1], [0.1]), usage(), GuardCuts.none(2))[0]
    assert [key for key, _ in COST_COLUMNS if key not in row] == ["cold_start_rate_p75"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Activations(np.array([0]), np.array([-1.0]), np.array([False])), "finite and >= 0"),
        (lambda: Activations(np.array([0, 1]), np.array([1.0]), np.array([False, True])), "latency_s must have shape"),
        (lambda: usage(memory_mb_s=[-1.0, 0.0]), "memory_mb_s must be >= 0"),
        (lambda: usage(unfinished=[1.0]), "unfinished must have shape"),
        (lambda: function_costs(NAMES, SLO, Activations(np.array([5]), np.array([1.0]), np.array([False])),
                                usage(), GuardCuts.none(2)), r"function_index must lie in \[0, 2\)"),
    ],
    ids=["negative-latency", "ragged-activations", "negative-memory", "short-usage", "unknown-function"],
)
def test_malformed_inputs_are_refused_naming_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()
