"""The serverless game's features and actions on hand-made snapshots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.serverless_features import (
    ACTIONS,
    HOLD_ACTION,
    LOCAL_FEATURES,
    N_ACTIONS,
    ActionSettings,
    FeatureSettings,
    action_features,
    actions_to_decisions,
    greedy_actions,
    offered_load,
    sample_actions,
    smooth_load,
    staffing_band,
    state_features,
)
from policies.types import KEEP_SHARES, UNMANAGED

FEATURES = FeatureSettings()
MU = np.array([0.5, 0.5] + [0.0] * 8)
SCALE = math.sqrt(len(LOCAL_FEATURES) + 1)


def column(name: str) -> int:
    return LOCAL_FEATURES.index(name)


def one_function(**columns: float):
    return make_snapshot(("f",), **{k: np.array([v], dtype=float) for k, v in columns.items()})


FEATURE_CASES = [
    ("arrival_rate", {"arrivals": 100.0}, math.log1p(10.0) / math.log1p(1000.0)),
    ("arrival_rate", {"arrivals": 1e9}, 1.0),
    ("containers", {"containers": 3.0}, math.log1p(3.0) / math.log1p(256.0)),
    ("shares_per_container", {"cpu_shares": 1024.0}, 0.25),
    ("p99_over_slo", {"p99_latency_s": 2.0, "slo_s": 1.0}, 0.5),
    ("p99_over_slo", {"p99_latency_s": 40.0, "slo_s": 1.0}, 1.0),
    ("p99_over_slo", {"p99_latency_s": math.nan}, 0.0),
    ("no_latency", {"p99_latency_s": math.nan}, 1.0),
    ("no_latency", {"p99_latency_s": 0.3}, 0.0),
    ("cpu_utilisation", {"cpu_used_core_s": 5.0, "cpu_alloc_core_s": 10.0}, 0.5),
    ("cpu_utilisation", {"cpu_used_core_s": 5.0, "cpu_alloc_core_s": 0.0}, 0.0),
    ("cpu_utilisation", {"cpu_used_core_s": 30.0, "cpu_alloc_core_s": 10.0}, 1.0),
    ("cold_start_fraction", {"cold_starts": 2.0, "arrivals": 4.0}, 0.5),
    ("cold_start_fraction", {"cold_starts": 1.0, "arrivals": 0.0}, 1.0),
    ("queue_per_container", {"queued": 6.0, "containers": 2.0}, math.log1p(3.0) / math.log1p(64.0)),
    ("queue_per_container", {"queued": 6.0, "containers": 0.0}, math.log1p(6.0) / math.log1p(64.0)),
    # Offered load ρ = (arrivals / 10 s) x mean execution time / containers, over load_max = 2.
    ("offered_load_per_container", {"arrivals": 40.0, "mean_exec_s": 0.5, "containers": 2.0}, 0.5),
    ("offered_load_per_container", {"arrivals": 400.0, "mean_exec_s": 0.5, "containers": 2.0}, 1.0),
    # No completion this tick: the last 3 completions' mean stands in; neither known: ρ = 0.
    (
        "offered_load_per_container",
        {"arrivals": 40.0, "mean_exec_s": math.nan, "recent_exec_s": 0.25, "containers": 1.0},
        0.5,
    ),
    (
        "offered_load_per_container",
        {"arrivals": 40.0, "mean_exec_s": math.nan, "recent_exec_s": math.nan, "containers": 1.0},
        0.0,
    ),
    ("busy_fraction", {"busy_containers": 3.0, "containers": 4.0}, 0.75),
    ("busy_fraction", {"busy_containers": 0.0, "containers": 0.0}, 0.0),
    ("bias", {}, 1.0),
]


@pytest.mark.parametrize(
    ("name", "columns", "expected"),
    FEATURE_CASES,
    ids=[
        f"{name}-{'-'.join(f'{k}={v}' for k, v in cols.items()) or 'default'}"
        for name, cols, _ in FEATURE_CASES
    ],
)
def test_each_local_feature_is_its_documented_normalisation(
    name: str, columns: dict[str, float], expected: float
) -> None:
    feats = state_features(one_function(**columns), MU, FEATURES)
    assert feats.usable.tolist() == [True]
    assert feats.x[0, column(name)] == pytest.approx(expected / SCALE)


def test_mu_fills_the_entries_after_the_local_features() -> None:
    feats = state_features(one_function(), MU, FEATURES)
    assert feats.x.shape == (1, FEATURES.state_dim)
    np.testing.assert_allclose(feats.x[0, len(LOCAL_FEATURES) :] * SCALE, MU)


@pytest.mark.parametrize(
    ("columns", "mu"),
    [
        ({"valid": False}, MU),
        ({"arrivals": math.nan}, MU),
        ({"cpu_used_core_s": math.inf}, MU),
        ({}, np.full(10, math.nan)),
        ({"containers": -1.0}, MU),
        ({"queued": -math.inf}, MU),
        ({"slo_s": 0.0}, MU),
        ({"slo_s": math.nan}, MU),
        ({"completions": 4.0, "p99_latency_s": math.nan}, MU),
        ({"p99_latency_s": -0.5}, MU),
        ({"mean_exec_s": -0.1}, MU),
        ({"recent_exec_s": math.inf}, MU),
        ({}, np.array([-0.1, 0.3] + [0.1] * 8)),
    ],
    ids=["invalid-row", "nan-counter", "infinite-counter", "no-population-estimate", "negative-pool",
         "minus-infinite-queue", "zero-slo", "unknown-slo", "completions-without-a-latency", "negative-latency",
         "negative-execution-time", "infinite-execution-time", "negative-population-share"],
)
def test_rows_without_complete_data_are_not_usable_and_read_as_zero(columns: dict, mu: np.ndarray) -> None:
    feats = state_features(one_function(**columns), mu, FEATURES)
    assert feats.usable.tolist() == [False]
    assert not feats.x.any()


def test_a_load_max_that_is_not_positive_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="load_max=0.0"):
        FeatureSettings(load_max=0.0)


def test_a_mu_of_the_wrong_length_is_rejected_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="mu_bins=10"):
        state_features(one_function(), np.full(5, 0.2), FEATURES)


extreme = st.floats(min_value=0.0, max_value=1e12, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    arrivals=extreme,
    containers=extreme,
    shares=extreme,
    p99=extreme,
    slo=extreme,
    used=extreme,
    alloc=extreme,
    cold=extreme,
    queued=extreme,
    mu=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=10, max_size=10),
)
def test_state_and_action_features_never_exceed_unit_norm(
    arrivals, containers, shares, p99, slo, used, alloc, cold, queued, mu
) -> None:
    mu = np.array(mu)
    mu = mu / mu.sum() if mu.sum() > 0 else np.full(10, 0.1)
    snap = one_function(
        arrivals=arrivals,
        containers=containers,
        cpu_shares=shares,
        p99_latency_s=p99,
        slo_s=slo,
        cpu_used_core_s=used,
        cpu_alloc_core_s=alloc,
        cold_starts=cold,
        queued=queued,
    )
    feats = state_features(snap, mu, FEATURES)
    assert np.linalg.norm(feats.x[0]) <= 1.0 + 1e-12
    assert np.all(np.linalg.norm(action_features(feats.x), axis=2) <= 1.0 + 1e-12)


def test_action_features_are_the_state_in_the_block_of_the_action() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((4, 6))
    phi = action_features(x)
    assert phi.shape == (4, N_ACTIONS, N_ACTIONS * 6)
    theta = rng.normal(size=N_ACTIONS * 6)
    # θᵀφ(s, a) = Θ[a]·x(s): the shortcut the policies use for their logits.
    np.testing.assert_allclose(phi @ theta, x @ theta.reshape(N_ACTIONS, 6).T)
    np.testing.assert_allclose(
        np.linalg.norm(phi, axis=2), np.linalg.norm(x, axis=1)[:, None] * np.ones(N_ACTIONS)
    )


def test_the_nine_actions_are_every_pair_of_container_and_share_moves() -> None:
    assert sorted(map(tuple, ACTIONS.tolist())) == [(dc, ds) for dc in (-1, 0, 1) for ds in (-1, 0, 1)]
    assert tuple(ACTIONS[HOLD_ACTION]) == (0, 0)


def action(dc: int, ds: int) -> int:
    return int(np.flatnonzero((ACTIONS[:, 0] == dc) & (ACTIONS[:, 1] == ds))[0])


DECISION_CASES = [
    # (containers, shares, move, settings, expected containers, expected shares, reason)
    (3, 256, (1, 1), ActionSettings(), 4, 384, "nac: containers 3→4 (move more), shares 256→384"),
    (3, 256, (0, 0), ActionSettings(), 3, 256, "nac: containers 3 (move hold), shares 256"),
    (1, 128, (-1, -1), ActionSettings(max_containers=64), 1, 128,
     "nac: containers 1 (move fewer to 0, kept within [1, 64]), shares 128"),
    (64, 2048, (1, 1), ActionSettings(max_containers=64), 64, 2048,
     "nac: containers 64 (move more to 80, kept within [1, 64]), shares 2048"),
    (0, 0, (1, 0), ActionSettings(), 2, 256, "nac: containers 1→2 (move more), shares 256"),
    # The container step is ⌈0.25 x pool⌉: 20 → 25 and 20 → 15; 9 → 12 (⌈2.25⌉ = 3).
    (20, 256, (1, 0), ActionSettings(), 25, 256, "nac: containers 20→25 (move more), shares 256"),
    (20, 256, (-1, 0), ActionSettings(), 15, 256, "nac: containers 20→15 (move fewer), shares 256"),
    (9, 256, (1, 0), ActionSettings(), 12, 256, "nac: containers 9→12 (move more), shares 256"),
    (60, 256, (1, 0), ActionSettings(max_containers=64), 64, 256,
     "nac: containers 60→64 (move more to 75, kept within [1, 64]), shares 256"),
    (
        20,
        256,
        (1, 0),
        ActionSettings(container_step_fraction=0.0),
        21,
        256,
        "nac: containers 20→21 (move more), shares 256",
    ),
    (
        0,
        0,
        (0, -1),
        ActionSettings(initial_containers=2, initial_shares=512),
        2,
        384,
        "nac: containers 2 (move hold), shares 512→384",
    ),
    (
        5,
        1000,
        (0, 1),
        ActionSettings(share_step=100, max_shares=1050),
        5,
        1050,
        "nac: containers 5 (move hold), shares 1000→1050",
    ),
]


@pytest.mark.parametrize(
    ("containers", "shares", "move", "action_settings", "want_c", "want_s", "reason"),
    DECISION_CASES,
    ids=[
        "grow-both",
        "hold",
        "clamped-at-minimum",
        "clamped-at-maximum",
        "new-function-starts-from-initial-pool",
        "proportional-grow",
        "proportional-shrink",
        "proportional-step-rounds-up",
        "proportional-clamped-at-maximum",
        "one-container-steps",
        "configured-initial-pool",
        "configured-step-and-bound",
    ],
)
def test_an_action_moves_the_pool_and_shares_by_one_step_within_bounds(
    containers, shares, move, action_settings, want_c, want_s, reason
) -> None:
    # Work arriving, size not known yet: no staffing band, so the move alone sets the targets.
    snap = one_function(containers=containers, cpu_shares=shares, arrivals=1.0)
    decisions = actions_to_decisions(
        snap.functions, np.array([action(*move)]), np.array([True]), action_settings, "nac", snap.tick_s
    )
    assert decisions.valid.tolist() == [True]
    assert (decisions.containers[0], decisions.cpu_shares[0]) == (want_c, want_s)
    assert decisions.reasons == (reason,)
    assert decisions.action.tolist() == [action(*move)]


@pytest.mark.parametrize(
    ("columns", "settings", "want"),
    [
        # 100 arrivals in 10 s x 0.45 s = 4.5 busy containers: with c = 0 a shrink of 6 → 4 stops at 5.
        ({"arrivals": 100.0, "mean_exec_s": 0.45}, {"staffing_c": 0.0}, 5),
        # With the default c = 1 the floor is ⌈4.5 + √4.5⌉ = ⌈6.62⌉ = 7.
        ({"arrivals": 100.0, "mean_exec_s": 0.45}, {}, 7),
        # Without a completion this tick, the last 3 completions' mean (here 0.7 s → 7) is used.
        ({"arrivals": 100.0, "mean_exec_s": math.nan, "recent_exec_s": 0.7}, {"staffing_c": 0.0}, 7),
        # Nothing known about the work's size: no floor.
        ({"arrivals": 100.0}, {}, 4),
        # load_floor = 0 turns the floor off.
        ({"arrivals": 100.0, "mean_exec_s": 0.45}, {"load_floor": 0.0}, 4),
        # Twice the load: ⌈2 x 4.5⌉ = 9.
        ({"arrivals": 100.0, "mean_exec_s": 0.45}, {"load_floor": 2.0, "load_ceiling": 2.0, "staffing_c": 0.0}, 9),
        # The floor never exceeds max_containers (here an operator's 64).
        ({"arrivals": 10_000.0, "mean_exec_s": 1.0}, {"max_containers": 64}, 64),
        # With no cap of its own, a heavy function is staffed for its load: R = 1000, ⌈R + √R⌉ = 1032.
        ({"arrivals": 10_000.0, "mean_exec_s": 1.0}, {}, 1032),
    ],
    ids=["floor-stops-a-shrink", "square-root-headroom", "recent-execution-time", "unknown-size", "off", "double", "capped",
         "heavy"],
)
def test_the_load_floor_keeps_at_least_the_offered_load_in_containers(
    columns: dict, settings: dict, want: int
) -> None:
    snap = one_function(containers=6.0, cpu_shares=256.0, **columns)
    decisions = actions_to_decisions(
        snap.functions, np.array([action(-1, 0)]), np.array([True]), ActionSettings(**settings), "nac", 10.0
    )
    assert decisions.containers.tolist() == [want]
    assert ("raised to the load floor" in decisions.reasons[0]) == (want > 4)


@pytest.mark.parametrize(
    ("containers", "columns", "settings", "want"),
    [
        # 4.5 busy containers, staffed 6.62: ceiling ⌈2 x 6.62⌉ = 14, so growing 20 → 25 stops at 14.
        (20.0, {"arrivals": 100.0, "mean_exec_s": 0.45}, {}, 14),
        # load_ceiling = 0: no ceiling, 20 + ⌈0.25 x 20⌉ = 25.
        (20.0, {"arrivals": 100.0, "mean_exec_s": 0.45}, {"load_ceiling": 0.0}, 25),
        # An idle function of known size kept managed (idle_load = 0) keeps min_containers.
        (8.0, {"arrivals": 0.0, "mean_exec_s": 0.45}, {"idle_load": 0.0}, 1),
        # Work arriving before its first completion (size unknown): no ceiling either.
        (8.0, {"arrivals": 5.0}, {}, 10),
    ],
    ids=["ceiling-stops-a-grow", "off", "idle-keeps-the-minimum", "unknown-size"],
)
def test_the_load_ceiling_reclaims_containers_far_above_the_load(
    containers: float, columns: dict, settings: dict, want: int
) -> None:
    snap = one_function(containers=containers, cpu_shares=256.0, **columns)
    decisions = actions_to_decisions(
        snap.functions, np.array([action(1, 0)]), np.array([True]), ActionSettings(**settings), "nac", 10.0
    )
    assert decisions.containers.tolist() == [want]
    assert ("lowered to the load ceiling" in decisions.reasons[0]) == (want < containers)


def test_an_idle_function_is_left_to_the_platform_and_its_move_is_not_applied() -> None:
    snap = make_snapshot(
        ("idle", "busy", "new"),
        containers=np.array([3.0, 3.0, 3.0]),
        cpu_shares=np.array([256.0, 256.0, 256.0]),
        arrivals=np.array([0.0, 100.0, 0.0]),
        mean_exec_s=np.array([0.5, 0.5, np.nan]),  # "new" has never completed
    )
    moves = np.array([action(1, 1)] * 3)
    decisions = actions_to_decisions(snap.functions, moves, np.ones(3, dtype=bool), ActionSettings(), "nac", 10.0)
    assert decisions.valid.tolist() == [True, True, True]
    assert decisions.containers[0] == UNMANAGED and decisions.cpu_shares[0] == KEEP_SHARES
    assert decisions.reasons[0] == "nac: idle (R=0), containers left to the platform"
    assert decisions.containers[1] > 0 and decisions.containers[2] == UNMANAGED
    assert decisions.action.tolist()[2] == -1  # never completed and nothing arrived: idle, not unknown
    kept = actions_to_decisions(
        snap.functions, moves, np.ones(3, dtype=bool), ActionSettings(idle_load=0.0), "nac", 10.0
    )
    assert kept.containers[0] == 1 and kept.action[0] == action(1, 1)


def test_the_band_follows_the_load_it_is_given_not_the_ticks() -> None:
    # The driver passes its smoothed load: a quiet tick after a burst keeps the burst's floor.
    snap = one_function(containers=2.0, cpu_shares=256.0, arrivals=0.0, mean_exec_s=0.5)
    decisions = actions_to_decisions(
        snap.functions, np.array([action(0, 0)]), np.array([True]), ActionSettings(staffing_c=0.0), "nac", 10.0,
        load=np.array([5.0]),
    )
    assert decisions.containers.tolist() == [5]
    with pytest.raises(ValueError, match=r"load has shape \(2,\)"):
        actions_to_decisions(
            snap.functions, np.array([0]), np.array([True]), ActionSettings(), "nac", 10.0, load=np.zeros(2)
        )


def test_staffing_band_is_square_root_staffing_between_floor_and_ceiling() -> None:
    loads = np.array([0.0, 1.0, 4.0, 100.0])
    floor, ceiling = staffing_band(loads, ActionSettings(staffing_c=1.0, load_ceiling=2.0, min_containers=1))
    assert floor.tolist() == [0, 2, 6, 110]
    assert ceiling.tolist() == [1, 4, 12, 220]


def test_smoothed_load_follows_with_the_configured_time_constant() -> None:
    settings = ActionSettings(load_smoothing_s=30.0)
    first = smooth_load(None, np.array([6.0, 1.0]), 10.0, settings)
    assert first.tolist() == [6.0, 1.0]
    second = smooth_load(first, np.array([0.0, np.nan]), 10.0, settings)
    weight = 1 - math.exp(-10 / 30)
    assert second[0] == pytest.approx(6.0 * (1 - weight))
    # A non-finite previous value restarts from the tick's load; 0 s turns smoothing off.
    assert smooth_load(np.array([np.nan]), np.array([3.0]), 10.0, settings).tolist() == [3.0]
    assert smooth_load(first, np.array([2.0, 2.0]), 10.0, ActionSettings(load_smoothing_s=0.0)).tolist() == [2.0, 2.0]
    # A function appended since starts from its load; the others keep their average.
    grown = smooth_load(first, np.array([0.0, 1.0, 4.0]), 10.0, settings)
    assert grown[0] == pytest.approx(second[0]) and grown[1] == 1.0 and grown[2] == 4.0
    # Fewer functions than averaged (another workload): everything restarts.
    assert smooth_load(grown, np.array([2.0]), 10.0, settings).tolist() == [2.0]


def test_rows_without_data_get_no_decision() -> None:
    snap = make_snapshot(
        ("a", "b"), containers=np.array([2.0, 2.0]), cpu_shares=np.array([256.0, 256.0]), arrivals=np.ones(2)
    )
    decisions = actions_to_decisions(
        snap.functions, np.array([0, 8]), np.array([False, True]), ActionSettings(), "nac", snap.tick_s
    )
    assert decisions.valid.tolist() == [False, True]
    assert decisions.containers[0] == UNMANAGED and decisions.cpu_shares[0] == KEEP_SHARES
    assert decisions.reasons[0] == "no data"
    assert decisions.action.tolist() == [-1, 8]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"share_step": 0}, "share_step=0"),
        ({"min_containers": 5, "max_containers": 3}, "max_containers=3"),
        ({"initial_shares": 10_000}, "initial_shares=10000"),
        ({"min_shares": 1}, "min_shares=1"),
        ({"container_step_fraction": 1.5}, "container_step_fraction=1.5"),
        ({"load_floor": -1.0}, "load_floor=-1.0"),
        ({"staffing_c": -0.5}, "staffing_c=-0.5"),
        ({"load_ceiling": 0.5}, "load_ceiling=0.5"),
        ({"load_floor": 3.0}, "load_ceiling=2.0"),
        ({"load_smoothing_s": math.inf}, "load_smoothing_s=inf"),
        ({"idle_load": -1.0}, "idle_load=-1.0"),
    ],
    ids=[
        "zero-step",
        "inverted-container-bounds",
        "initial-shares-out-of-bounds",
        "shares-below-docker-minimum",
        "container-step-above-one",
        "negative-load-floor",
        "negative-staffing-c",
        "ceiling-below-one",
        "ceiling-below-floor",
        "infinite-smoothing",
        "negative-idle-load",
    ],
)
def test_invalid_action_settings_are_rejected_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActionSettings(**kwargs)


def test_sampled_actions_follow_the_probabilities_and_greedy_takes_the_most_likely() -> None:
    probs = np.tile(np.array([0.5, 0.3, 0.2] + [0.0] * 6), (20_000, 1))
    counts = np.bincount(sample_actions(probs, np.random.default_rng(0)), minlength=N_ACTIONS) / 20_000
    np.testing.assert_allclose(counts[:3], [0.5, 0.3, 0.2], atol=0.015)
    assert counts[3:].sum() == 0
    assert greedy_actions(probs[:2]).tolist() == [0, 0]


def test_a_reason_names_the_observed_pool_and_the_decided_target_whatever_bounds_and_band_did() -> None:
    import re

    rng = np.random.default_rng(11)
    for _ in range(300):
        containers = float(rng.integers(0, 70))
        snap = one_function(containers=containers, cpu_shares=256.0, arrivals=float(rng.integers(0, 400)),
                            mean_exec_s=float(rng.uniform(0.05, 3.0)))
        move = int(rng.integers(0, len(ACTIONS)))
        decisions = actions_to_decisions(snap.functions, np.array([move]), np.array([True]), ActionSettings(),
                                         "nac", 10.0)
        reason = decisions.reasons[0]
        if "idle" in reason:
            continue
        found = re.search(r"containers (\d+)(?:→(\d+))? \(move (fewer|hold|more)(?: to (\d+))?", reason)
        assert found, reason
        before, after = int(found[1]), int(found[2] or found[1])
        assert after == decisions.containers[0], reason
        word, moved = found[3], found[4]
        start = int(containers) if containers > 0 else ActionSettings().initial_containers
        assert before == start, reason
        if moved is None:  # the move stood: its direction is the change's direction
            assert {"fewer": after < before or after == before == 1, "hold": after == before,
                    "more": after > before or after == before}[word], reason


def test_a_tick_after_a_gap_reads_rates_not_a_lump() -> None:
    # 40 arrivals over the 20 s since the last good observation are the rate of 20 over 10 s.
    lump = make_snapshot(("f",), tick_s=20.0, arrivals=np.array([40.0]), mean_exec_s=np.array([0.5]),
                         containers=np.array([2.0]))
    steady = make_snapshot(("f",), tick_s=10.0, arrivals=np.array([20.0]), mean_exec_s=np.array([0.5]),
                           containers=np.array([2.0]))
    np.testing.assert_allclose(state_features(lump, MU, FEATURES).x, state_features(steady, MU, FEATURES).x)
    assert offered_load(lump.functions, lump.tick_s) == pytest.approx(offered_load(steady.functions, 10.0)) == [1.0]


@pytest.mark.parametrize(
    "columns",
    [{"arrivals": math.nan}, {"arrivals": -3.0}, {"mean_exec_s": -1.0}, {"recent_exec_s": math.inf}],
    ids=["unknown-arrivals", "negative-arrivals", "negative-execution-time", "infinite-recent-execution-time"],
)
def test_an_unknown_offered_load_is_nan_never_no_load(columns: dict) -> None:
    values = {"arrivals": 10.0, "mean_exec_s": 0.2, **columns}
    assert math.isnan(offered_load(one_function(**values).functions, 10.0)[0])


def test_a_work_size_not_known_yet_is_no_load_and_no_band() -> None:
    assert offered_load(one_function(arrivals=10.0).functions, 10.0).tolist() == [0.0]


def test_a_tick_without_a_known_load_leaves_the_smoothed_load_where_it_was() -> None:
    smoothed = smooth_load(np.array([4.0, 4.0]), np.array([math.nan, 0.0]), 10.0, ActionSettings())
    assert smoothed[0] == 4.0 and smoothed[1] < 4.0


def test_a_caller_that_calls_a_row_with_an_unknown_pool_usable_still_gets_no_decision() -> None:
    fs = make_snapshot(("a", "b"), containers=np.array([math.nan, 2.0]), cpu_shares=np.array([256.0, 256.0])).functions
    decisions = actions_to_decisions(fs, np.array([HOLD_ACTION, HOLD_ACTION]), np.array([True, True]),
                                     ActionSettings(), "p", 10.0)
    assert decisions.valid.tolist() == [False, True]
    assert decisions.containers[0] == UNMANAGED and decisions.action[0] == -1
