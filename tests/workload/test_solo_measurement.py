"""The solo measurement (``python -m workload.functions.solo``) against a real localwhisk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from localwhisk.clock import ManualClock
from localwhisk.testing import TEST_AUTH, running_platform
from workload.functions import get
from workload.functions.solo import SLO_MARGIN, SoloClient, main, measure
from workload.profiles import profile_from_solo


def test_a_measurement_has_every_cold_warm_and_paused_run_and_the_cpu_they_used(tmp_path: Path) -> None:
    pauses: list[float] = []
    with running_platform(tmp_path / "state", clock=ManualClock()) as (whisk, _):
        client = SoloClient(whisk.url, TEST_AUTH, "_", timeout_s=60.0)
        result = measure(client, get("base64"), runs=4, cold_starts=2, paused_runs=3, pause_gap_s=0.2,
                         sleep=pauses.append)
    assert result.cold_init_ms.size == 2 and np.all(result.cold_init_ms > 0)  # a redeploy makes each one cold
    assert np.all(result.cold_duration_ms >= result.cold_init_ms)  # OpenWhisk's duration includes init
    assert result.duration_ms.size == result.latency_ms.size == result.wait_ms.size == 4
    assert result.paused_duration_ms.size == result.paused_wait_ms.size == 3
    assert pauses == [0.2, 0.2, 0.2]
    assert result.memory_mb == 256
    assert result.warm_cpu_s > 0 and result.cold_cpu_s.size == 2  # localwhisk's resource API counts CPU
    row = result.row()
    assert row["slo_ms"] == pytest.approx(np.percentile(result.latency_ms, 99) * SLO_MARGIN)
    assert row["init_ms"] == pytest.approx(float(np.median(result.cold_init_ms)))
    assert len(row["samples"]["paused_duration_ms"]) == 3
    profile = profile_from_solo(json.loads(json.dumps(row)))  # what the JSON file gives back
    assert profile.name == "base64" and profile.memory_mb == 256
    assert 0 < profile.cpu_fraction <= 1


def test_the_command_refuses_a_cold_start_count_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--apihost", "http://127.0.0.1:9", "--auth", "a:b", "--cold-starts", "0"])
    assert "--cold-starts must be >= 1, got 0" in capsys.readouterr().err
