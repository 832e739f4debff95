"""The assembly of a run's parts from settings: function splits, arrival modes, cluster options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.assemble import AssemblyError, build_arrivals, build_workload, cluster_config, split_half
from controller.settings import load_settings

DATA = Path(__file__).resolve().parents[2] / "data"
TRACE_2021 = DATA / "azure-functions-2021-sample"


def _settings(**overrides):
    return load_settings(overrides=overrides)


def test_the_two_halves_of_a_split_are_disjoint_cover_everything_and_ignore_the_runs_seed():
    train = split_half(400, 2026, "train")
    evaluate = split_half(400, 2026, "evaluate")
    assert len(train) == len(evaluate) == 200
    assert set(train).isdisjoint(evaluate) and set(train) | set(evaluate) == set(range(400))
    assert split_half(400, 2027, "train") != train  # another split seed, another split
    names = {}
    for part in ("train", "evaluate"):
        for seed in (0, 9):
            w = build_workload(_settings(**{"workload.functions": 400, "workload.select": "busiest",
                                            "workload.profiles": "trace", "workload.split_seed": 2026,
                                            "workload.split_part": part, "seed": seed}))
            names.setdefault(part, set()).add(w.names)
    assert len(names["train"]) == len(names["evaluate"]) == 1  # the run's seed does not move a function
    assert set(next(iter(names["train"]))).isdisjoint(next(iter(names["evaluate"])))


def test_a_split_within_a_half_splits_only_that_half():
    base = {"workload.functions": 40, "workload.select": "busiest", "workload.profiles": "trace"}
    outer = set(build_workload(_settings(**base, **{"workload.split_seed": 2026,
                                                     "workload.split_part": "train"})).names)
    inner = {part: set(build_workload(_settings(**base, **{
        "workload.split_seed": 7, "workload.split_part": part, "workload.split_within_seed": 2026,
        "workload.split_within_part": "train"})).names) for part in ("train", "evaluate")}
    assert len(inner["train"]) == len(inner["evaluate"]) == 10
    assert inner["train"].isdisjoint(inner["evaluate"]) and inner["train"] | inner["evaluate"] == outer
    with pytest.raises(AssemblyError, match="split_within_seed needs workload.split_seed"):
        build_workload(_settings(**base, **{"workload.split_within_seed": 2026}))


def test_a_split_of_one_function_is_refused():
    with pytest.raises(AssemblyError, match="cannot be split"):
        build_workload(_settings(**{"workload.functions": 1, "workload.split_seed": 1, "workload.split_part": "train"}))


def test_trace_arrivals_replay_the_recorded_times_of_the_chosen_functions():
    from workload.azure2021 import read_trace_2021

    settings = _settings(**{"workload.trace_dir": str(TRACE_2021), "workload.start_minute": 10,
                            "workload.minutes": 60, "workload.functions": 8, "workload.arrivals": "trace",
                            "workload.profiles": "trace"})
    workload = build_workload(settings)
    times, fn = build_arrivals(settings, workload).window(0.0, 3600.0)
    trace = read_trace_2021(TRACE_2021 / "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv")
    for i, function in enumerate(workload.functions):
        row = next(r for r in range(len(trace.functions)) if trace.function_name(r) == function.trace_id)
        recorded = trace.start_s[(trace.fn == row) & (trace.start_s >= 600) & (trace.start_s < 4200)] - 600
        np.testing.assert_allclose(np.sort(times[fn == i]), np.sort(recorded))
        assert int(function.counts_per_minute.sum()) == recorded.size


def test_trace_arrivals_need_a_2021_trace_at_its_own_rate():
    with pytest.raises(AssemblyError, match="2021"):
        build_workload(_settings(**{"workload.arrivals": "trace"}))
    with pytest.raises(AssemblyError, match="rate_scale=1"):
        build_workload(_settings(**{"workload.trace_dir": str(TRACE_2021), "workload.start_minute": 0,
                                    "workload.arrivals": "trace", "workload.rate_scale": 2.0}))


def test_the_cluster_options_reach_the_simulator():
    config = cluster_config(_settings(**{"cluster.eviction": "greedy-dual", "cluster.idle_memory_fraction": 0.25}))
    assert (config.eviction, config.idle_memory_fraction, config.idle_timeout_s) == ("greedy-dual", 0.25, float("inf"))
    assert cluster_config(_settings()).idle_timeout_s == 600.0  # OpenWhisk's keep-alive, unset
    assert cluster_config(_settings(**{"cluster.idle_timeout_s": 1200})).idle_timeout_s == 1200.0
