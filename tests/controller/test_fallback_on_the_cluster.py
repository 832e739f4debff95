"""Safe online learning on the simulated cluster: a learner built to fail hands control to ENSURE while
it is worse, takes it back once it is not, and no 10-minute window is worse than ENSURE by more than
10% unless the fallback was active in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.assemble import build_workload, measure_slos
from controller.bench.cells import SAFETY_WINDOW_S, window_rows
from controller.bench.scenarios import load_scenario
from controller.runner import run_policy
from policies.baselines.ensure import make_ensure
from policies.fallback import FallbackLearner, FallbackSettings
from policies.types import KEEP_SHARES, Decisions

SCENARIO = """\
scenario:
  version: 1
  name: starved
  description: the 4 busiest functions for an hour
  train: {start_minute: 480, minutes: 2}
  evaluate: {start_minute: 600, minutes: 60}
cluster: {invokers: 4}
workload: {functions: 4, select: busiest, profiles: benchmark}
reward: {slo_probe_invocations: 200}
"""

#: The scripted learner starves every function (one container) until this time, s; then it decides
#: as ENSURE does, as a learner that has learned its lesson would.
BAD_UNTIL_S = 1500.0


class StarveThenRecover:
    """A learner (in the loop's protocol) that holds every pool at one container, then recovers."""

    def __init__(self) -> None:
        self.name, self.seed = "starver", 0
        self.diagnostics: tuple[str, ...] = ("transitions",)
        self.settings_record = {"bad_until_s": BAD_UNTIL_S}
        self.recovered = make_ensure()

    def decide(self, snapshot, mu):
        good = self.recovered.decide(snapshot, mu)
        if snapshot.time_s >= BAD_UNTIL_S:
            return good
        n = len(snapshot.functions)
        return Decisions(containers=np.ones(n, dtype=np.int64), cpu_shares=np.full(n, KEEP_SHARES),
                         valid=np.ones(n, dtype=bool), reasons=("starver: one container",) * n)

    def feedback(self, snapshot, mu, rewards):
        return {"transitions": float(np.isfinite(rewards).sum())}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def checkpoint_signature(self):
        return {"policy": self.name}


class ControlLog:
    """Who was in control at every tick (a metrics sink)."""

    def __init__(self) -> None:
        self.active: list[tuple[float, bool]] = []

    def on_tick(self, report) -> None:
        self.active.append((float(report.time_s), report.diagnostics.get("fallback_active", 0.0) >= 1.0))


def starved_scenario(folder: Path) -> tuple:
    """The scenario's evaluation settings (seed 3), its workload and its SLOs."""
    path = folder / "starved.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    settings = load_scenario(path).settings("evaluate", False, {"seed": 3, "output.plots": False})
    workload = build_workload(settings)
    return settings, workload, measure_slos(settings, workload)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    settings, workload, slo_s = starved_scenario(Path(tmp_path_factory.mktemp("fallback")))
    ensure = run_policy(settings, workload, slo_s, "ensure", save_learner=False)
    control = ControlLog()
    wrapped = FallbackLearner(StarveThenRecover(), make_ensure(), FallbackSettings())
    learner = run_policy(settings, workload, slo_s, "starver", policy=wrapped, sinks=[control], save_learner=False)
    return ensure, learner, control


def test_the_fallback_engages_while_the_learner_starves_and_releases_after_it_recovers(runs):
    _, _, control = runs
    engaged = [t for t, active in control.active if active]
    assert engaged, "the fallback never engaged"
    assert engaged[0] <= 60.0, f"engaged only at {engaged[0]} s: the starved functions queued meanwhile"
    released = [t for t, active in control.active if not active and t > engaged[0]]
    assert released and released[0] > BAD_UNTIL_S, "the fallback never released after the learner recovered"
    assert not control.active[-1][1], "still in fallback at the end"


def test_every_window_is_within_ten_percent_of_ensure_or_the_fallback_was_active_in_it(runs):
    ensure, learner, control = runs
    theirs = window_rows(ensure, [])
    mine = window_rows(learner, [t for t, active in control.active if active])
    assert len(mine) == len(theirs) == int(3600 / SAFETY_WINDOW_S)
    unsafe = [(m, t) for m, t in zip(mine, theirs)
              if not m["fallback_active"] and m["violations"] > 1.1 * t["violations"]]
    assert not unsafe, unsafe
    assert all(m["fallback_active"] for m in mine[: int(BAD_UNTIL_S // SAFETY_WINDOW_S) + 1])


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    settings, workload, slo_s = starved_scenario(Path(tmp_path_factory.mktemp("twin")))
    control = ControlLog()
    wrapped = FallbackLearner(StarveThenRecover(), make_ensure(), FallbackSettings(counterfactual="twin"))
    run_policy(settings, workload, slo_s, "starver", policy=wrapped, sinks=[control], save_learner=False)
    return wrapped, control


def test_a_run_gives_a_learner_that_asks_for_one_a_twin_and_the_twin_follows_every_tick(twin_runs):
    wrapped, control = twin_runs
    assert wrapped.counterfactual is not None
    assert wrapped.counterfactual.time_s == control.active[-1][0]  # stepped through the last tick


def test_with_the_twin_the_fallback_engages_while_the_learner_starves_and_releases_after(twin_runs):
    _, control = twin_runs
    engaged = [t for t, active in control.active if active]
    assert engaged and engaged[0] <= 60.0
    released = [t for t, active in control.active if not active and t > engaged[0]]
    assert released and released[0] > BAD_UNTIL_S


def test_a_twin_fed_the_arrivals_of_ensures_own_run_counts_about_its_violations(tmp_path):
    from controller.assemble import RunSeeds, attach_twin

    settings, workload, slo_s = starved_scenario(tmp_path)
    holder = FallbackLearner(StarveThenRecover(), make_ensure(), FallbackSettings(counterfactual="twin"))
    attach_twin(holder, settings, workload, slo_s, RunSeeds.from_seed(3))
    real, twin = [], []

    class Feed:
        def on_tick(self, report) -> None:
            real.append(float(np.nansum(report.snapshot.functions.slo_violations)))
            twin.append(holder.counterfactual.heuristic_violations(report.snapshot))

    run_policy(settings, workload, slo_s, "ensure", sinks=[Feed()], save_learner=False)
    assert len(real) == len(twin) == 360 and sum(real) > 0
    assert 0.5 * sum(real) <= sum(twin) <= 1.5 * sum(real)
    plain = FallbackLearner(StarveThenRecover(), make_ensure(), FallbackSettings())
    attach_twin(plain, settings, workload, slo_s, RunSeeds.from_seed(3))
    assert plain.counterfactual is None  # the model was asked for: no twin
