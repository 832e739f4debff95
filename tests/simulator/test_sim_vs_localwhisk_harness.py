"""The simulator side of ``benchmarks/sim_vs_localwhisk.py``: the closed loop of the shares test and
the error table."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

from workload.profiles import FunctionProfile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
bench = importlib.import_module("sim_vs_localwhisk")


def cpu_bound(name: str, seconds: float) -> FunctionProfile:
    # median = p99: every run takes exactly ``seconds`` alone
    return FunctionProfile(name=name, memory_mb=256, exec_median_s=seconds, exec_p99_s=seconds, init_s=0.05)


def test_alone_a_closed_loop_client_sees_the_functions_own_execution_time() -> None:
    [alone] = bench.simulate_shares([cpu_bound("a", 0.1)], [1024], [1], seconds=5.0, cores=2.0)
    assert alone["mean_s"] == pytest.approx(0.1, rel=1e-6)
    assert alone["cores"] == pytest.approx(0.1 / 0.101, rel=0.02)  # the client's 1-ms step between runs


@pytest.mark.parametrize(
    ("shares", "rates"),
    [
        pytest.param((1024, 1024), (0.5, 0.5), id="equal-shares-halve-each"),
        pytest.param((1024, 256), (0.8, 0.2), id="four-to-one"),
    ],
)
def test_four_cpu_bound_containers_on_two_cores_share_them_by_weight(shares: tuple[int, int],
                                                                       rates: tuple[float, float]) -> None:
    a, b = bench.simulate_shares([cpu_bound("a", 0.1), cpu_bound("b", 0.1)], list(shares), [2, 2], seconds=20.0,
                                 cores=2.0)
    # each container runs at its weight's share of the cores: 2 containers x rate of a core each
    assert a["mean_s"] == pytest.approx(0.1 / rates[0], rel=0.03)
    assert b["mean_s"] == pytest.approx(0.1 / rates[1], rel=0.03)
    assert a["cores"] + b["cores"] == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize(
    ("metric", "sim", "real", "error"),
    [
        pytest.param("p50_s", 0.11, 0.10, 0.10, id="relative"),
        pytest.param("cold_starts", 3.0, 0.0, 3.0, id="cold-starts-against-none-are-absolute"),
        pytest.param("cold_starts", 21.0, 20.0, 0.05, id="cold-starts-relative"),
    ],
)
def test_the_error_is_relative_except_against_a_platform_count_of_zero(metric: str, sim: float, real: float,
                                                                       error: float) -> None:
    assert bench.error_of(metric, sim, real) == pytest.approx(error)


def test_a_latency_against_a_zero_platform_value_has_no_error() -> None:
    assert math.isnan(bench.error_of("p50_s", 0.1, 0.0))


def test_the_comparison_averages_the_platforms_runs_and_the_simulators_seeds_separately() -> None:
    def run(p50: float, cold: float) -> dict[str, dict[str, float]]:
        return {"f": {"invocations": 10.0, "p50_s": p50, "p99_s": 2 * p50, "cold_starts": cold, "containers": 1.0}}

    live_runs = [{"functions": run(0.10, 2.0)}, {"functions": run(0.14, 4.0)}]
    table = bench.compare(live_runs, [run(0.130, 3.0), run(0.134, 3.0)])
    p50 = table["f"]["p50_s"]
    assert (p50["live"], p50["live_min"], p50["live_max"], p50["sim"]) == pytest.approx((0.12, 0.10, 0.14, 0.132))
    assert p50["error"] == pytest.approx(0.1)
    assert table["f"]["cold_starts"]["error"] == pytest.approx(0.0)
    assert "**+10%**" not in bench.markdown_table(table)  # 10% is within the p50 tolerance
