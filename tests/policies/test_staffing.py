"""The staffing action scheme: a per-function staffing constant or the platform, and a CPU level."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_invokers, make_snapshot

from policies.baselines.kpa import KpaConfig, KpaPolicy
from policies.staffing import (
    ENSURE_ACTION,
    KPA_TARGETS,
    N_PORTFOLIO_ACTIONS,
    N_STAFFING_ACTIONS,
    POOL_LEVELS,
    PORTFOLIO_ACTIONS,
    PORTFOLIO_LEVELS,
    SHARE_FACTORS,
    STAFFING_ACTIONS,
    STAFFING_LEVELS,
    KpaMembers,
    StaffingSettings,
    action_index,
    cost_features,
    level_pools,
    staffing_decisions,
    staffing_features,
    wait_probability,
)
from policies.types import KEEP_SHARES, UNMANAGED


def snapshot(n=3, **columns):
    values = {"arrivals": np.full(n, 100.0), "mean_exec_s": np.full(n, 0.5), "memory_mb": np.full(n, 256.0),
              "slo_s": np.full(n, 1.0)}
    values.update(columns)
    return make_snapshot(tuple(f"f{i}" for i in range(n)), invokers=make_invokers(2, memory_mb=2048.0), **values)


def test_every_pool_level_and_share_factor_is_one_action():
    assert N_STAFFING_ACTIONS == len(POOL_LEVELS) * len(SHARE_FACTORS)
    assert len({action_index(p, s) for p in POOL_LEVELS for s in SHARE_FACTORS}) == N_STAFFING_ACTIONS
    assert ENSURE_ACTION == action_index("c=1.06", 1.0)


@pytest.mark.parametrize("c", STAFFING_LEVELS)
def test_a_staffing_level_keeps_the_square_root_staffed_pool(c):
    load = np.array([4.0, 0.3, 25.0])
    d = staffing_decisions(snapshot(), np.full(3, action_index(f"c={c:g}")), np.ones(3, dtype=bool), load,
                           StaffingSettings(), "nac")
    expected = [max(1, math.ceil(r + c * math.sqrt(r) - 1e-9)) for r in load]
    assert d.containers.tolist() == expected
    assert d.cpu_shares.tolist() == [128] * 3  # OpenWhisk's shares for 256 MB of 2048 MB
    assert (d.action == action_index(f"c={c:g}")).all()


def test_the_platform_level_hands_the_pool_back_and_still_learns_from_it():
    d = staffing_decisions(snapshot(), np.full(3, action_index("platform", 2.0)), np.ones(3, dtype=bool),
                           np.array([4.0, 4.0, 4.0]), StaffingSettings(), "nac")
    assert (d.containers == UNMANAGED).all() and (d.cpu_shares == KEEP_SHARES).all()
    assert (d.action == action_index("platform", 2.0)).all()  # a chosen move: it forms a transition


def test_an_idle_function_or_one_of_unknown_size_goes_to_the_platform_without_a_transition():
    snap = snapshot(arrivals=np.array([0.0, 10.0, 10.0]), mean_exec_s=np.array([0.5, np.nan, 0.5]),
                    recent_exec_s=np.array([np.nan, np.nan, np.nan]))
    d = staffing_decisions(snap, np.full(3, ENSURE_ACTION), np.ones(3, dtype=bool), np.array([0.0, np.nan, 2.0]),
                           StaffingSettings(), "nac")
    assert d.containers.tolist()[:2] == [UNMANAGED, UNMANAGED] and d.containers[2] == 4
    assert d.action.tolist() == [-1, -1, ENSURE_ACTION]
    assert "idle" in d.reasons[0] and "work size unknown" in d.reasons[1]


def test_double_shares_double_openwhisks_shares_within_the_bounds():
    d = staffing_decisions(snapshot(memory_mb=np.array([256.0, 2048.0, 128.0])), np.full(3, action_index("c=1.06", 2.0)),
                           np.ones(3, dtype=bool), np.ones(3), StaffingSettings(share_ceiling=1500), "nac")
    assert d.cpu_shares.tolist() == [256, 1500, 128]


def test_rows_without_data_get_no_decision():
    usable = np.array([True, False, True])
    d = staffing_decisions(snapshot(), np.full(3, ENSURE_ACTION), usable, np.ones(3), StaffingSettings(), "nac")
    assert d.valid.tolist() == usable.tolist() and d.reasons[1] == "no data" and d.action[1] == -1


def test_the_staffing_features_are_in_the_unit_interval_and_say_load_memory_and_slack():
    snap = snapshot(memory_mb=np.array([128.0, 1024.0, 8192.0]), mean_exec_s=np.array([0.1, 0.9, np.nan]),
                    recent_exec_s=np.array([np.nan, np.nan, np.nan]), slo_s=np.array([1.0, 1.0, 1.0]))
    x = staffing_features(snap, np.array([0.0, 10.0, 1e6]))
    assert ((x >= 0) & (x <= 1)).all()
    assert x[0, 0] == 0.0 and x[2, 0] == 1.0  # load
    assert x[0, 1] == 0.0 and x[1, 1] == pytest.approx(0.5) and x[2, 1] == 1.0  # memory: 128 MB .. 8 GB
    assert x[0, 2] == pytest.approx(0.9) and x[1, 2] == pytest.approx(0.1) and x[2, 2] == 0.0  # slack


def test_a_warm_started_learner_starts_as_ensure_does():
    from learner_fixtures import MU, busy_tick

    from policies.baselines.ensure import make_ensure
    from policies.registry import make

    for scheme in ("staffing", "portfolio"):
        learner = make("nac-linear", seed=2, scheme=scheme, warm_start="ensure", greedy=True, frozen=True,
                       load_smoothing_s=30.0)
        ensure = make_ensure()
        for t in range(1, 4):
            snap = busy_tick(t)
            assert learner.decide(snap, MU).containers.tolist() == ensure.decide(snap, MU).containers.tolist()


def test_the_portfolio_keeps_every_staffing_action_at_its_index_and_adds_the_kpa_members():
    assert N_PORTFOLIO_ACTIONS == len(PORTFOLIO_LEVELS) * len(SHARE_FACTORS)
    assert (PORTFOLIO_ACTIONS[:N_STAFFING_ACTIONS] == STAFFING_ACTIONS).all()
    assert PORTFOLIO_LEVELS[len(POOL_LEVELS):] == tuple(f"kpa={t:g}" for t in KPA_TARGETS)
    assert len({action_index(p, s) for p in PORTFOLIO_LEVELS for s in SHARE_FACTORS}) == N_PORTFOLIO_ACTIONS


def kpa_ticks(members: KpaMembers, alone: list[KpaPolicy], ticks: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Feed the members and lone KPA policies the same busy snapshots; their last pools."""
    counts, lone = None, []
    for t in range(1, ticks + 1):
        snap = make_snapshot(("f0", "f1"), time_s=10.0 * t, arrivals=np.array([200.0, 20.0]),
                             completions=np.array([200.0, 20.0]), mean_exec_s=np.array([0.5, 0.5]),
                             in_flight=np.array([6.0, 1.0]), queued=np.array([4.0, 0.0]),
                             containers=np.array([8.0, 2.0]), memory_mb=np.array([256.0, 256.0]))
        counts = members.counts(snap, np.full(10, 0.1))
        assert members.counts(snap, np.full(10, 0.1)) is counts  # once per tick, however often asked
        lone = [policy.decide(snap, np.full(10, 0.1)).containers for policy in alone]
    return counts, lone


def test_a_kpa_member_asks_for_what_the_kpa_at_its_target_would():
    members = KpaMembers()
    counts, lone = kpa_ticks(members, [KpaPolicy(KpaConfig(target_utilisation=t)) for t in KPA_TARGETS], 8)
    assert [row.tolist() for row in counts] == [c.tolist() for c in lone]
    assert counts[0, 0] > counts[2, 0]  # a lower target utilisation keeps more containers


def test_a_function_following_a_kpa_member_gets_its_pool_and_its_share_factor():
    followed = np.array([[30, 0, -1], [20, 0, -1], [12, 0, -1]])
    actions = np.array([action_index("kpa=0.4", 2.0), action_index("kpa=1"), action_index("kpa=0.7")])
    d = staffing_decisions(snapshot(), actions, np.ones(3, dtype=bool), np.full(3, 4.0), StaffingSettings(), "nac",
                           followed=followed)
    assert d.containers.tolist() == [30, 0, UNMANAGED]  # its pool, scaled to zero too; none decided: the platform
    assert d.cpu_shares.tolist() == [256, 128, KEEP_SHARES]
    assert "follows kpa=0.4" in d.reasons[0] and "made no decision" in d.reasons[2]
    staffed = staffing_decisions(snapshot(), np.full(3, ENSURE_ACTION), np.ones(3, dtype=bool), np.full(3, 4.0),
                                 StaffingSettings(), "nac", followed=followed)
    assert staffed.containers.tolist() == [7, 7, 7]  # a staffing action ignores the members
    with pytest.raises(ValueError, match="must be in"):
        staffing_decisions(snapshot(), actions, np.ones(3, dtype=bool), np.full(3, 4.0), StaffingSettings(), "nac")


def test_an_idle_function_following_a_kpa_member_is_scaled_to_zero_and_learns_from_it():
    snap = snapshot(arrivals=np.zeros(3), mean_exec_s=np.full(3, np.nan), recent_exec_s=np.full(3, 0.5))
    followed = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1]])
    actions = np.array([action_index("kpa=0.4"), action_index("kpa=1"), action_index("c=1.06")])
    d = staffing_decisions(snap, actions, np.ones(3, dtype=bool), np.zeros(3), StaffingSettings(), "nac",
                           followed=followed)
    # The member's scale to zero stands (1 container in its grace period); a staffing level goes to the
    # platform's keep-alive, as before.
    assert d.containers.tolist() == [0, 1, UNMANAGED]
    assert d.action.tolist() == actions.tolist()  # each choice decided the memory held: all three learn
    staffed = staffing_decisions(snap, np.full(3, ENSURE_ACTION), np.ones(3, dtype=bool), np.zeros(3),
                                 StaffingSettings(), "nac")
    assert staffed.action.tolist() == [-1, -1, -1]  # under the staffing scheme idle rows form no transition


def test_an_idle_function_of_unknown_work_size_goes_to_the_platform_even_under_a_kpa_member():
    snap = snapshot(arrivals=np.full(3, 5.0), mean_exec_s=np.full(3, np.nan), recent_exec_s=np.full(3, np.nan))
    d = staffing_decisions(snap, np.full(3, action_index("kpa=0.7")), np.ones(3, dtype=bool), np.zeros(3),
                           StaffingSettings(), "nac", followed=np.zeros((3, 3), dtype=np.int64))
    assert (d.containers == UNMANAGED).all() and (d.action == -1).all()


def test_a_kpa_warm_started_portfolio_sizes_pools_as_the_kpa_does():
    from learner_fixtures import MU, busy_tick

    from policies.registry import make

    learner = make("nac-linear", seed=2, scheme="portfolio", warm_start="kpa", greedy=True, frozen=True)
    kpa = KpaPolicy(KpaConfig(target_utilisation=0.7))
    for t in range(1, 6):
        snap = busy_tick(t)
        assert learner.decide(snap, MU).containers.tolist() == kpa.decide(snap, MU).containers.tolist()


@pytest.mark.parametrize(("params", "message"), [
    ({"scheme": "staffing", "warm_start": "kpa"}, "needs scheme=portfolio"),
    ({"scheme": "portfolio", "warm_start": "kpa", "fallback": "ensure"}, "hands control to ENSURE"),
    ({"scheme": "portfolio", "warm_start": "knative"}, "must be one of none, ensure, kpa"),
])
def test_a_kpa_warm_start_outside_the_portfolio_or_with_ensures_fallback_is_refused(params, message):
    from policies.agent import AgentSettings

    with pytest.raises(ValueError, match=message):
        AgentSettings(**params)


def test_the_wait_probability_is_halfin_whitts_and_is_certain_at_or_under_the_load():
    # β = 1: 1 / (1 + Φ(1)/φ(1)) = 0.2234 (the "near 20%" of one square root of headroom).
    assert wait_probability(np.array([110.0]), np.array([100.0]))[0] == pytest.approx(0.2234, abs=1e-4)
    p = wait_probability(np.array([4.0, 5.0, 8.0, 12.0, 3.0, 1.0]), np.array([4.0, 4.0, 4.0, 4.0, 9.0, 0.0]))
    assert p[0] == 1.0 and p[4] == 1.0  # no headroom: every arrival may wait
    assert 1.0 > p[1] > p[2] > p[3] > 0.0  # more containers, fewer waits
    assert p[5] == 0.0  # nothing arrives, nothing waits
    assert wait_probability(np.array([1e4]), np.array([1.0]))[0] == 0.0  # far above the load: no overflow


def test_each_pool_level_holds_its_own_pool():
    snap = snapshot(containers=np.array([5.0, 0.0, 2.0]))
    followed = np.array([[9, 0, -1], [6, 0, -1], [4, 0, -1]])
    pools = level_pools(snap, np.array([4.0, 0.0, 1.0]), PORTFOLIO_LEVELS, followed)
    assert pools.shape == (len(PORTFOLIO_LEVELS), 3)
    assert pools[0].tolist() == [5, 0, 2]  # the platform keeps what there is
    assert pools[PORTFOLIO_LEVELS.index("c=2")].tolist() == [8, 1, 3]  # ⌈R + 2√R⌉, at least 1
    assert pools[PORTFOLIO_LEVELS.index("kpa=0.4")].tolist() == [9, 0, 2]  # the member's; undecided: as is
    with pytest.raises(ValueError, match="members' pools"):
        level_pools(snap, np.ones(3), PORTFOLIO_LEVELS)


def test_the_cost_features_price_idle_memory_and_waits_per_level():
    snap = snapshot(memory_mb=np.array([256.0, 1024.0, 256.0]), arrivals=np.array([100.0, 100.0, 0.0]),
                    containers=np.array([4.0, 4.0, 3.0]))
    x = cost_features(snap, np.array([4.0, 4.0, 0.0]), POOL_LEVELS)
    levels = len(POOL_LEVELS)
    assert x.shape == (3, 2 * levels) and ((x >= 0) & (x <= 1)).all()
    idle, wait = x[:, :levels], x[:, levels:]
    c3 = POOL_LEVELS.index("c=3")
    # c = 3 at R = 4 keeps 10 containers, 6 idle: 6 x 256 MB of a 2048 MB invoker; 4x the memory, clipped.
    assert idle[0, c3] == pytest.approx(0.75) and idle[1, c3] == 1.0
    assert idle[2, 0] == pytest.approx(3 * 256 / 2048)  # an idle function's warm pool under the platform
    assert (np.diff(wait[0, 1:]) <= 0).all() and wait[0, 1] > wait[0, -1]  # more headroom, fewer waits
    assert (wait[2] == 0).all()  # no arrivals, no waits


def test_cost_features_lengthen_the_state_and_keep_it_in_the_unit_ball():
    from learner_fixtures import MU, busy_tick

    from policies.registry import make

    for scheme, levels in (("staffing", POOL_LEVELS), ("portfolio", PORTFOLIO_LEVELS)):
        plain = make("nac-linear", seed=1, scheme=scheme)
        priced = make("nac-linear", seed=1, scheme=scheme, cost_features=True)
        x_plain, _ = plain._state(busy_tick(3), MU)
        x, usable = priced._state(busy_tick(3), MU)
        assert x.shape[1] == x_plain.shape[1] + 2 * len(levels)
        assert (np.linalg.norm(x, axis=1) <= 1 + 1e-12).all() and np.abs(x[usable, -2 * len(levels):]).sum() > 0
    with pytest.raises(ValueError, match="cost_features needs scheme"):
        make("nac-linear", seed=1, cost_features=True)


class RecordingLearner:
    """Wraps a learner and keeps every batch its update is given."""

    def __init__(self, inner) -> None:
        self.inner, self.batches = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def update(self, batch):
        self.batches.append(batch)
        return self.inner.update(batch)


@pytest.mark.parametrize("feedback_first", [False, True])
def test_held_actions_repeat_for_their_ticks_and_learn_once_from_the_mean_reward(feedback_first):
    from learner_fixtures import busy_tick, run_tick

    from policies.registry import make

    policy = make("nac-linear", seed=4, scheme="staffing", decision_ticks=3, load_smoothing_s=30.0,
                  reward_centering=0.0)
    policy.learner = RecordingLearner(policy.learner)
    actions, drawn = [], []
    for t in range(1, 8):
        snap = busy_tick(t)
        rewards = np.full(len(snap.functions), float(t))  # the reward of tick t-1's decision is t
        decisions, out = run_tick(policy, snap, rewards, feedback_first)
        actions.append(decisions.action.copy())
        drawn.append(out.get("transitions", 0.0) > 0)
    assert (actions[0] == actions[1]).all() and (actions[1] == actions[2]).all()  # ticks 1-3 hold one draw
    assert (actions[3] == actions[4]).all() and (actions[4] == actions[5]).all()  # ticks 4-6 the next
    assert drawn == [False, False, False, True, False, False, True]
    first = policy.learner.batches[0]
    # Ticks 1-3's actions earned the rewards fed at ticks 2, 3 and 4 (2, 3, 4): their mean is 3.
    assert len(first) == 6 and np.allclose(first.reward, 3.0)
    assert np.allclose(policy.learner.batches[1].reward, 6.0)  # ticks 4-6: rewards 5, 6, 7
    assert np.allclose(first.action, actions[0]) and np.allclose(first.action_next, actions[3])


def test_the_histogram_member_is_one_more_level_after_the_portfolios():
    from policies.agent import AgentSettings
    from policies.staffing import (
        HISTOGRAM_LEVEL,
        N_PORTFOLIO_HISTOGRAM_ACTIONS,
        PORTFOLIO_HISTOGRAM_ACTIONS,
        PORTFOLIO_HISTOGRAM_LEVELS,
    )

    assert PORTFOLIO_HISTOGRAM_LEVELS == (*PORTFOLIO_LEVELS, HISTOGRAM_LEVEL)
    assert (PORTFOLIO_HISTOGRAM_ACTIONS[:N_PORTFOLIO_ACTIONS] == PORTFOLIO_ACTIONS).all()
    assert action_index(HISTOGRAM_LEVEL, 1.0) == N_PORTFOLIO_ACTIONS  # every other action keeps its index
    settings = AgentSettings(scheme="portfolio", histogram_member=True)
    assert settings.levels[-1] == HISTOGRAM_LEVEL and settings.n_actions == N_PORTFOLIO_HISTOGRAM_ACTIONS
    assert AgentSettings(scheme="portfolio").n_actions == N_PORTFOLIO_ACTIONS
    with pytest.raises(ValueError, match="histogram_member needs scheme=portfolio"):
        AgentSettings(scheme="staffing", histogram_member=True)


def _busy_then_idle(t: int):
    """Ticks 1-6 busy, then idle (no arrivals, nothing held) with the work size known."""
    from learner_fixtures import busy_tick

    f = busy_tick(min(t, 6)).functions
    common = {"p99_latency_s": f.p99_latency_s, "busy_containers": f.busy_containers, "cpu_shares": f.cpu_shares,
              "cpu_used_core_s": f.cpu_used_core_s, "cpu_alloc_core_s": f.cpu_alloc_core_s}
    if t <= 6:
        return make_snapshot(f.names, time_s=10.0 * t, arrivals=f.arrivals, completions=f.completions,
                             mean_exec_s=f.mean_exec_s, containers=f.containers, in_flight=np.ones(6),
                             queued=np.zeros(6), **common)
    return make_snapshot(f.names, time_s=10.0 * t, arrivals=np.zeros(6), completions=np.zeros(6),
                         mean_exec_s=np.full(6, np.nan), recent_exec_s=np.full(6, 0.2), containers=np.ones(6),
                         in_flight=np.zeros(6), queued=np.zeros(6), **common)


def test_a_portfolio_learner_following_the_histogram_sizes_pools_as_the_hybrid_histogram_does():
    from learner_fixtures import MU

    from policies.baselines.hybrid_histogram import HybridHistogramConfig, HybridHistogramPolicy
    from policies.registry import make

    learner = make("nac-linear", seed=2, scheme="portfolio", histogram_member=True, greedy=True, frozen=True)
    learner.learner.prefer(action_index("hist", 1.0), 50.0, learner._bias_entry())
    alone = HybridHistogramPolicy(HybridHistogramConfig())
    seen_zero = False
    for t in range(1, 75):  # past the histogram's 10-minute fallback keep-alive
        snap = _busy_then_idle(t)
        mine, theirs = learner.decide(snap, MU), alone.decide(snap, MU)
        assert mine.containers.tolist() == theirs.containers.tolist(), t
        seen_zero |= bool((theirs.containers == 0).any())
        assert all("follows hist" in reason for reason in mine.reasons)
    assert seen_zero  # the histogram's own unloading between invocations stands
    assert learner.decide(_busy_then_idle(75), MU).action.tolist() == [action_index("hist", 1.0)] * 6
