"""Twins of the cluster, one per pool level: the regret entries, the memo across runs, and a run that
attaches them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import controller.level_twins as twins_module
from controller.assemble import PolicySpec, RunSeeds, build_policy, build_workload, measure_slos
from controller.bench.scenarios import load_scenario
from controller.level_twins import LevelTwins, attach_level_twins, cold_start_allowed, regrets, wants_twins
from controller.runner import run_policy
from policies.agent import AgentSettings
from policies.fallback import FallbackLearner, FallbackSettings
from policies.staffing import action_index

SCENARIO = """\
scenario:
  version: 1
  name: twins
  description: the 4 busiest functions for 20 minutes
  train: {start_minute: 480, minutes: 20}
  evaluate: {start_minute: 600, minutes: 20}
cluster: {invokers: 3}
workload: {functions: 4, select: busiest, profiles: benchmark}
reward: {kind: operator, slo_probe_invocations: 200}
policy:
  params:
    nac-linear: {scheme: portfolio, histogram_member: true, twin_features: true}
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> tuple:
    path = Path(tmp_path_factory.mktemp("twins")) / "twins.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    settings = load_scenario(path).settings("evaluate", False, {"seed": 2, "output.plots": False})
    workload = build_workload(settings)
    return settings, workload, measure_slos(settings, workload)


class Snapshots:
    """Every snapshot of a run (a metrics sink)."""

    def __init__(self) -> None:
        self.seen: list = []

    def on_tick(self, report) -> None:
        self.seen.append(report.snapshot)


@pytest.fixture(scope="module")
def snapshots(scenario) -> list:
    settings, workload, slo_s = scenario
    sink = Snapshots()
    run_policy(settings, workload, slo_s, "ensure", sinks=[sink], save_learner=False)
    return sink.seen


def test_a_regret_is_zero_for_the_cheapest_level_and_grows_with_the_cost() -> None:
    costs = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [1.0, 0.0, 6.0]])  # (levels, functions)
    out = regrets(costs, np.array([True, True, False]))
    assert out.shape == (3, 3)
    assert out[0].tolist() == [0.0, 0.5, 0.0]  # (3 − 1) / (3 + 1)
    assert out[1].tolist() == [0.0, 0.0, 0.0]  # every level free: nothing to regret
    assert out[2].tolist() == [0.0, 0.0, 0.0]  # not seen yet


def test_a_level_the_cold_start_rule_excludes_has_regret_one_and_the_least_is_taken_over_the_rest() -> None:
    levels = ("c=0", "c=1.06", "c=3")
    cold = np.array([[5.0, 0.0], [2.0, 0.0], [1.0, 0.0]])  # (levels, functions)
    assert cold_start_allowed(cold, levels, "free").all()
    allowed = cold_start_allowed(cold, levels, "ensure")
    assert allowed.T.tolist() == [[False, True, True], [True, True, True]]
    costs = np.where(allowed, np.array([[1.0, 1.0], [4.0, 3.0], [2.0, 2.0]]), np.inf)
    out = regrets(costs, np.array([True, True]))
    assert out[0].tolist() == [1.0, pytest.approx(1.0 / 3.0), 0.0]  # c=0 is out; c=3 is the cheapest left
    assert out[1].tolist() == [0.0, 0.5, pytest.approx(1.0 / 3.0)]


def test_the_ensure_rule_needs_ensures_level(scenario) -> None:
    settings, workload, slo_s = scenario
    with pytest.raises(ValueError, match="c=1.06"):
        LevelTwins(settings, workload, slo_s, RunSeeds.from_seed(2), "nac-linear", ("c=0", "c=3"), cold_starts="ensure")
    with pytest.raises(ValueError, match="cold-start rule 'never'"):
        LevelTwins(settings, workload, slo_s, RunSeeds.from_seed(2), "nac-linear", ("c=0",), cold_starts="never")


def _fed(scenario, snapshots, clear: bool = True) -> LevelTwins:
    settings, workload, slo_s = scenario
    if clear:
        twins_module.clear_memo()
    twins = LevelTwins(settings, workload, slo_s, RunSeeds.from_seed(2), "nac-linear",
                       AgentSettings(scheme="portfolio", histogram_member=True).levels)
    for snapshot in snapshots:
        twins.features(snapshot)
    return twins


def test_the_twins_cost_each_level_for_each_function_and_the_regrets_follow(scenario, snapshots) -> None:
    twins = _fed(scenario, snapshots)
    levels = twins.levels
    assert twins.seen.all() and (twins.memory_gb_s >= 0).all()
    # The platform keeps containers 10 minutes after a need; c=0 keeps only the load's containers.
    assert twins.memory_gb_s[levels.index("platform")].sum() > twins.memory_gb_s[levels.index("c=0")].sum()
    assert twins.violations[levels.index("c=0")].sum() > twins.violations[levels.index("c=3")].sum()
    x = regrets(twins.costs(), twins.seen)
    assert x.shape == (len(snapshots[0].functions), len(levels))
    assert np.all(x.min(axis=1) == 0.0) and np.all((x >= 0) & (x < 1))


def test_a_second_run_of_the_same_ticks_reads_the_memo_and_differing_ticks_catch_up(scenario, snapshots) -> None:
    first = _fed(scenario, snapshots)
    again = _fed(scenario, snapshots, clear=False)
    assert again._loops is None  # nothing simulated: every tick was in the memo
    assert np.array_equal(again.violations, first.violations) and np.array_equal(again.memory_gb_s, first.memory_gb_s)
    # Arrivals that differ from some tick on: the twins simulate from the first tick, as a fresh run does.
    k = len(snapshots) // 2
    busier = [s if i < k else _with_arrivals(s, np.asarray(s.functions.arrivals) + 3.0) for i, s in enumerate(snapshots)]
    caught_up = _fed(scenario, busier, clear=False)
    assert caught_up._loops is not None
    fresh = _fed(scenario, busier, clear=True)
    assert np.array_equal(caught_up.violations, fresh.violations)
    assert np.array_equal(caught_up.memory_gb_s, fresh.memory_gb_s)
    assert not np.array_equal(caught_up.memory_gb_s, first.memory_gb_s)


def test_the_memo_ignores_the_reward_weight_which_only_prices_the_outcome(scenario, snapshots) -> None:
    settings, workload, slo_s = scenario
    first = _fed(scenario, snapshots)
    other = settings.model_copy(update={"reward": settings.reward.model_copy(update={"alpha": 0.9})})
    twins = LevelTwins(other, workload, slo_s, RunSeeds.from_seed(2), "nac-linear", first.levels)
    for snapshot in snapshots:
        twins.features(snapshot)
    assert twins._loops is None and np.array_equal(twins.violations, first.violations)
    assert twins.price() > first.price()  # a dearer GB-s at a larger α


def test_the_ensure_rule_shares_the_memo_and_rules_out_levels_of_more_cold_starts(scenario, snapshots) -> None:
    settings, workload, slo_s = scenario
    first = _fed(scenario, snapshots)
    twins = LevelTwins(settings, workload, slo_s, RunSeeds.from_seed(2), "nac-linear", first.levels, cold_starts="ensure")
    for snapshot in snapshots:
        twins.features(snapshot)
    assert twins._loops is None  # the same outcome, priced by another rule
    bound = twins.cold_starts[twins.levels.index("c=1.06")]
    more = twins.cold_starts > bound[None, :] + 1e-12
    assert more.any()  # some level (scaling to zero) had more cold starts than ENSURE's for some function
    x = regrets(twins.costs(), twins.seen).T
    assert np.all(x[more] == 1.0)
    assert np.all(x[twins.levels.index("c=1.06")] < 1.0) and np.all(x.min(axis=0) == 0.0)


def test_a_memo_bound_keeps_the_first_ticks_and_a_later_run_simulates_the_rest_as_a_fresh_one(
        scenario, snapshots, monkeypatch) -> None:
    first = _fed(scenario, snapshots)
    per_tick = twins_module.memo_bytes() // len(snapshots)
    twins_module.clear_memo()
    monkeypatch.setattr(twins_module, "MEMO_BYTES", per_tick * 5)
    bounded = _fed(scenario, snapshots, clear=False)
    assert twins_module.memo_bytes() == per_tick * 5  # the first five ticks kept, no more
    again = _fed(scenario, snapshots, clear=False)
    assert again._loops is not None  # past the kept ticks it simulated
    for twins in (bounded, again):
        assert np.array_equal(twins.violations, first.violations)
        assert np.array_equal(twins.memory_gb_s, first.memory_gb_s)
        assert np.array_equal(twins.cold_starts, first.cold_starts)
    # Another run's twins make room by forgetting the older run.
    settings, workload, slo_s = scenario
    other = LevelTwins(settings, workload, slo_s, RunSeeds.from_seed(3), "nac-linear", first.levels)
    for snapshot in snapshots[:3]:
        other.features(snapshot)
    assert twins_module.memo_bytes() <= per_tick * 5 and list(twins_module._MEMO)[-1] == other._key


def _with_arrivals(snapshot, arrivals: np.ndarray):
    from dataclasses import replace

    return replace(snapshot, functions=replace(snapshot.functions, arrivals=arrivals))


def test_a_run_attaches_twins_to_an_agent_that_asks_and_it_decides_with_them(scenario) -> None:
    settings, workload, slo_s = scenario
    twins_module.clear_memo()
    agent = build_policy(settings, PolicySpec("nac-linear", frozen=True, greedy=True))
    assert agent.agent.twin_features and agent.level_twins is None
    sink = Snapshots()
    run_policy(settings, workload, slo_s, PolicySpec("nac-linear", frozen=True, greedy=True), policy=agent,
               sinks=[sink], save_learner=False)
    last = sink.seen[-1]
    assert agent.level_twins is not None and agent.level_twins.time_s == float(last.time_s)
    x, usable = agent.base_state(last, np.full(agent.features.mu_bins, 0.1))
    assert x.shape[1] == agent.agent.base_state_dim(agent.features)
    # The last entries are the twins' regrets (rescaled with the rest of x): the cheapest level's is 0.
    twin_part = x[usable, -len(agent.agent.levels):]
    assert np.all(twin_part.min(axis=1) == 0.0) and np.any(twin_part > 0)


def test_deciding_without_twins_is_refused_with_what_is_missing(scenario, snapshots) -> None:
    settings, _, _ = scenario
    agent = build_policy(settings, PolicySpec("nac-linear", frozen=True, greedy=True))
    with pytest.raises(RuntimeError, match="twin_features needs the simulated twins"):
        agent.decide(snapshots[0], np.full(agent.features.mu_bins, 0.1))


def test_twins_are_attached_through_a_fallback_and_left_off_for_an_agent_that_does_not_ask(scenario) -> None:
    settings, workload, slo_s = scenario
    agent = build_policy(settings, PolicySpec("nac-linear", frozen=True, greedy=True))
    from policies.baselines.ensure import make_ensure

    wrapped = FallbackLearner(agent, make_ensure(), FallbackSettings())
    assert wants_twins(wrapped) is agent
    attach_level_twins(wrapped, settings, workload, slo_s, RunSeeds.from_seed(2))
    assert agent.level_twins is not None
    plain = build_policy(settings.model_copy(update={"policy": settings.policy.model_copy(update={"params": {}})}),
                         PolicySpec("nac-linear", frozen=True, greedy=True))
    assert wants_twins(plain) is None
    attach_level_twins(plain, settings, workload, slo_s, RunSeeds.from_seed(2))
    assert plain.level_twins is None


def test_twin_features_need_a_scheme_with_pool_levels() -> None:
    with pytest.raises(ValueError, match="twin_features needs scheme=staffing or portfolio"):
        AgentSettings(scheme="moves", twin_features=True)
    assert AgentSettings(scheme="portfolio", histogram_member=True, twin_features=True).extra_dim == \
        AgentSettings(scheme="portfolio", histogram_member=True).extra_dim + 10


def test_the_priced_rule_counts_a_cold_start_as_a_violation(scenario, snapshots) -> None:
    from controller.prices import level_costs

    levels = ("c=0", "c=1.06")
    violations, memory, cold = np.array([[1.0], [2.0]]), np.array([[10.0], [20.0]]), np.array([[3.0], [0.0]])
    assert level_costs(violations, memory, cold, 0.1, "free")[:, 0].tolist() == [2.0, 4.0]
    assert level_costs(violations, memory, cold, 0.1, "priced")[:, 0].tolist() == [5.0, 4.0]
    assert cold_start_allowed(cold, levels, "priced").all()
    with pytest.raises(ValueError, match="cold-start rule 'never'"):
        level_costs(violations, memory, cold, 0.1, "never")
    settings, workload, slo_s = scenario
    first = _fed(scenario, snapshots)
    twins = LevelTwins(settings, workload, slo_s, RunSeeds.from_seed(2), "nac-linear", first.levels, cold_starts="priced")
    for snapshot in snapshots:
        twins.features(snapshot)
    assert np.allclose(twins.costs(), first.costs() + first.cold_starts)


def _with_params(settings, name: str, **params):
    merged = {name: {"scheme": "portfolio", "histogram_member": True, "twin_features": True, **params}}
    return settings.model_copy(update={"policy": settings.policy.model_copy(update={"params": merged})})


@pytest.mark.parametrize("name,extra", [("nac-linear", {}), ("nac-nn", {}), ("nac-nn", {"activation": "tanh"})])
def test_the_twins_warm_start_draws_each_level_by_its_regret_and_openwhisk_shares_at_it(scenario, name, extra) -> None:
    settings, workload, slo_s = scenario
    twins_module.clear_memo()
    settings = _with_params(settings, name, warm_start="twins", twin_sharpness=20.0, **extra)
    agent = build_policy(settings, PolicySpec(name, frozen=True, greedy=True))
    sink = Snapshots()
    run_policy(settings, workload, slo_s, PolicySpec(name, frozen=True, greedy=True), policy=agent, sinks=[sink],
               save_learner=False)
    x, usable = agent.base_state(sink.seen[-1], np.full(agent.features.mu_bins, 0.1))
    regret = agent.level_twins.features(sink.seen[-1])[usable]
    assert np.any(regret > 0.05)  # the levels differ for some function, so the check below has teeth
    logp = np.log(agent.learner.probabilities(x[usable]))
    levels = agent.agent.levels
    own = np.array([action_index(level, 1.0) for level in levels])
    doubled = np.array([action_index(level, 2.0) for level in levels])
    # Between levels, at OpenWhisk's shares: the log-odds are −k times the difference of the regrets.
    # (A network starts with small random logits of its own beside the rule's.)
    tolerance = 1e-6 if name == "nac-linear" else 0.2
    spread = logp[:, own] - logp[:, own[:1]]
    assert np.allclose(spread, -20.0 * (regret - regret[:, :1]), atol=tolerance)
    # At each level OpenWhisk's shares are drawn with the warm-start probability, 0.9, over the other factor.
    assert np.allclose(logp[:, own] - logp[:, doubled], np.log(9.0), atol=tolerance)
    # Drawn greedily, every function follows a level of least regret, at OpenWhisk's shares.
    chosen = np.argmax(logp, axis=1)
    assert np.isin(chosen, own).all()
    taken = regret[np.arange(len(chosen)), np.searchsorted(own, chosen)]
    assert np.allclose(taken, regret.min(axis=1), atol=0.01 if name == "nac-linear" else 0.02)


def test_the_twins_warm_start_needs_the_twins_and_a_players_settings_drop_it(scenario) -> None:
    with pytest.raises(ValueError, match="warm_start=twins needs twin_features=true"):
        AgentSettings(scheme="portfolio", warm_start="twins")
    with pytest.raises(ValueError, match="twin_sharpness=-1"):
        AgentSettings(scheme="portfolio", twin_features=True, warm_start="twins", twin_sharpness=-1)
    settings = _with_params(scenario[0], "nac-linear", warm_start="twins")
    player = twins_module._player_settings(settings, "nac-linear").policy.params["nac-linear"]
    assert player["warm_start"] == "none" and player["twin_features"] is False
