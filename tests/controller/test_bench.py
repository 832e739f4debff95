"""The evaluation suite: scenario files, the sweep, resumable runs, frontiers and seed-paired verdicts."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.assemble import build_workload
from controller.bench.analysis import PointSummary, frontier, paired, read_rows, relation, summarise
from controller.bench.cells import Cell
from controller.bench.execute import CallFailed, LocalExecutor, run_suite
from controller.bench.scenarios import ScenarioError, load_scenario, shipped_scenarios
from controller.bench.suite import FAMILIES, suite_points
from controller.commands.bench import bench_command

TINY = """\
scenario:
  version: 1
  name: tiny
  description: three functions, two minutes
  train: {start_minute: 480, minutes: 2}
  evaluate: {start_minute: 482, minutes: 2}
cluster: {invokers: 3}
workload: {functions: 3}
reward: {slo_probe_invocations: 200}
"""


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- scenario files ---------------------------------------------------------------------------


def test_every_shipped_scenario_loads_and_judges_on_data_learners_did_not_train_on():
    scenarios = [load_scenario(p) for p in shipped_scenarios()]
    assert {s.name for s in scenarios} >= {"paper-12", "memory-contended", "heavy-function", "bursty",
                                           "many-functions", "trace-2021", "unseen-functions"}
    for s in scenarios:
        train, evaluate = s.settings("train", quick=False), s.settings("evaluate", quick=False)
        later = evaluate.workload.start_minute >= train.workload.start_minute + train.workload.minutes
        assert later or s.split_seed is not None, s.name
    unseen = next(s for s in scenarios if s.name == "unseen-functions")
    assert unseen.settings("train", quick=True).workload.split_part == "train"
    assert unseen.settings("evaluate", quick=True).workload.split_part == "evaluate"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (TINY.replace("  version: 1\n", "  version: 2\n"), ":2:", "scenario.version: this mfrm reads version 1"),
        (TINY.replace("  name: tiny\n", "  name: a b\n"), ":3:", "scenario.name: letters, digits"),
        (TINY.replace("  train: {start_minute: 480, minutes: 2}\n", "  train: {start_minute: 480, minute: 2}\n"),
         ":5:", "scenario.train.minute: unknown key"),
        (TINY.replace("  evaluate: {start_minute: 482, minutes: 2}\n", "  evaluate: {start_minute: 481, minutes: 2}\n"),
         ":6:", "overlap the training window"),
        (TINY.replace("  train: {start_minute: 480, minutes: 2}\n", "  train: {start_minute: 480, minutes: -3}\n"),
         ":5:", "scenario.train.minutes: must be a whole number"),
        (TINY + "  colour: blue\n", ":10:", "not valid YAML"),
        (TINY.replace("scenario:\n", "scenari:\n"), "", "needs a top-level 'scenario' section"),
        (TINY.replace("cluster: {invokers: 3}", "cluster: {invokers: 0}"), ":7", "cluster.invokers = 0"),
        (TINY.replace("workload: {functions: 3}", "workload: {functions: 3, colour: blue}"), ":8",
         "workload.colour: unknown setting"),
        (TINY.replace("  description: three functions, two minutes\n", "  description: three\n  sprit: {seed: 1}\n"),
         ":5:", "scenario.sprit: unknown key"),
        (TINY.replace("  description: three functions, two minutes\n",
                      "  description: three\n  split: {seed: 1, within: {seed: 2, part: judge}}\n"),
         ":5:", "scenario.split.within.part: must be one of train, evaluate"),
        (TINY.replace("  description: three functions, two minutes\n",
                      "  description: three\n  split: {seed: 1, within: {part: train}}\n"),
         ":5:", "scenario.split.within: missing seed"),
    ],
    ids=["version", "name", "window-key", "overlap", "negative-minutes", "broken-yaml", "no-section",
         "setting-out-of-range", "unknown-setting", "unknown-scenario-key", "within-part", "within-seed"],
)
def test_a_malformed_scenario_file_is_refused_with_its_file_line_and_key(tmp_path, text, where, message):
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(path) in str(raised.value) and where in str(raised.value) and message in str(raised.value), raised.value


def test_the_command_refuses_a_malformed_scenario_with_one_line_and_exit_2(tmp_path):
    path = _write(tmp_path, TINY.replace("  version: 1\n", "  version: x\n"))
    result = CliRunner().invoke(bench_command, [str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and f"{path}:2: scenario.version" in result.output and "Traceback" not in result.output


# --- the sweep --------------------------------------------------------------------------------


def test_every_family_is_swept_in_order_and_has_one_default():
    for name, points in FAMILIES.items():
        assert sum(p.default for p in points) == 1, name
        assert len({p.label for p in points}) == len(points), name
        if points[0].knob:
            values = [p.value for p in points]
            assert values == sorted(values), name
    labels = [p.label for p in suite_points()]
    assert "nac-linear online" in labels and "nac-linear without mu" in labels and "nac-linear untrained moves" in labels
    assert "fixed-keepalive keepalive=10min" in labels and "fixed-keepalive keepalive=20min" in labels
    assert any(p.startswith("faascache ") for p in labels) and "nac-linear alpha=0.3" in labels and "nac-nn online" in labels
    with pytest.raises(ValueError, match="unknown family nope"):
        suite_points(["nope"])


def test_the_learner_points_take_another_scheme_and_say_so_while_the_rest_stay_as_they_are():
    default = {p.label: p for p in suite_points(["ensure", "nac-linear", "nac-untrained"])}
    other = {p.label: p for p in suite_points(["ensure", "nac-linear", "nac-untrained"], "portfolio")}
    assert other["nac-linear alpha=0.3 [portfolio]"].overrides["policy.params"]["nac-linear"]["scheme"] == "portfolio"
    assert default["nac-linear alpha=0.3"].overrides["policy.params"]["nac-linear"]["scheme"] == "staffing"
    assert other["nac-linear untrained moves"] == default["nac-linear untrained moves"]  # its own scheme stays
    assert other["ensure c=1.06"] == default["ensure c=1.06"]
    assert other["nac-linear alpha=0.3 [portfolio]"].overrides["reward.alpha"] == 0.3
    with pytest.raises(ValueError, match="unknown learner scheme"):
        suite_points(None, "moves")


# --- running, resuming ------------------------------------------------------------------------


def _cells(tmp_path: Path, seeds=(0, 1)) -> list[Cell]:
    scenario = load_scenario(_write(tmp_path, TINY))
    points = suite_points(["ensure", "fixed-keepalive"])[:3]
    return [Cell(scenario, point, seed) for point in points for seed in seeds]


def test_one_worker_or_two_give_the_same_results_file_byte_for_byte(tmp_path):
    cells = _cells(tmp_path)
    one = run_suite(cells, tmp_path / "one", LocalExecutor(workers=1))
    two = run_suite(cells, tmp_path / "two", LocalExecutor(workers=2))
    assert one.read_bytes() == two.read_bytes()
    rows = list(csv.DictReader(one.open()))
    assert [(r["point"], r["seed"]) for r in rows] == [(c.point.label, str(c.seed)) for c in cells]


def test_a_rerun_skips_every_finished_cell_and_runs_only_new_ones(tmp_path):
    cells = _cells(tmp_path, seeds=(0,))
    out = tmp_path / "out"
    run_suite(cells, out, LocalExecutor(workers=1))
    timings = (out / "timings.csv").read_text().splitlines()
    run_suite(cells, out, LocalExecutor(workers=1))
    assert (out / "timings.csv").read_text().splitlines() == timings  # nothing ran again
    more = _cells(tmp_path, seeds=(0, 3))
    run_suite(more, out, LocalExecutor(workers=1))
    assert len((out / "timings.csv").read_text().splitlines()) == len(timings) + len(cells)  # only seed 3
    assert len(read_rows(out / "results.csv")) == len(more)


def test_a_changed_scenario_gives_new_cells_not_stale_rows(tmp_path):
    cell = _cells(tmp_path, seeds=(0,))[0]
    changed = load_scenario(_write(tmp_path, TINY.replace("invokers: 3", "invokers: 4"), "t.yaml"))
    assert Cell(changed, cell.point, 0).key() != cell.key()


# --- verdicts ---------------------------------------------------------------------------------


def _point(name: str, by_seed: dict[int, tuple[float, float]], family: str = "f") -> PointSummary:
    rows = {s: {"slo_violation_rate": v, "memory_gb_s": m} for s, (v, m) in by_seed.items()}
    means = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("slo_violation_rate", "memory_gb_s")}
    return PointSummary("s", family, name, False, tuple(rows), means, {k: 0.0 for k in means}, rows)


def test_the_frontier_keeps_the_points_nothing_beats_on_both_axes():
    a = _point("a", {0: (0.10, 100.0)})
    b = _point("b", {0: (0.05, 200.0)})
    c = _point("c", {0: (0.08, 250.0)})  # beaten by b on both
    d = _point("d", {0: (0.01, 400.0)})
    assert [p.point for p in frontier([a, b, c, d], "memory_gb_s", "slo_violation_rate")] == ["a", "b", "d"]


def test_paired_differences_give_a_t_interval_and_a_verdict_per_axis():
    a = _point("a", {s: (0.02 + 0.001 * s, 100.0 + s) for s in range(5)})
    b = _point("b", {s: (0.03 + 0.001 * s, 100.0 + s) for s in range(5)})
    d = paired(a, b, "slo_violation_rate")
    assert d.seeds == 5 and d.mean == pytest.approx(-0.01) and d.half_width == pytest.approx(0.0, abs=1e-12)
    assert d.verdict == -1 and paired(a, b, "memory_gb_s").verdict == 0
    assert relation(a, b, "memory_gb_s", "slo_violation_rate")[0] == "dominates"
    assert relation(b, a, "memory_gb_s", "slo_violation_rate")[0] == "dominated"


def test_noisy_seeds_make_a_tie_not_a_win():
    a = _point("a", {0: (0.01, 100.0), 1: (0.05, 100.0), 2: (0.02, 100.0)})
    b = _point("b", {0: (0.03, 100.0), 1: (0.02, 100.0), 2: (0.025, 100.0)})
    kind, _, dy = relation(a, b, "memory_gb_s", "slo_violation_rate")
    assert kind == "tie" and dy.verdict == 0 and not math.isnan(dy.half_width)


def test_a_trade_off_is_called_one():
    a = _point("a", {s: (0.01, 300.0 + s) for s in range(3)})
    b = _point("b", {s: (0.05, 100.0 + s) for s in range(3)})
    assert relation(a, b, "memory_gb_s", "slo_violation_rate")[0] == "trade-off"


def test_a_point_far_better_on_average_on_one_axis_is_not_dominated_because_its_seeds_are_noisy():
    # A holds more memory (clearly) but violates far less on average; the seeds vary too much for that
    # to be significant, so the pair is a tie there, and B, far worse on average, does not dominate A.
    a = _point("a", {0: (0.028, 17000.0), 1: (0.048, 18000.0), 2: (0.016, 17500.0)})
    b = _point("b", {0: (0.12, 13500.0), 1: (0.17, 14000.0), 2: (0.24, 13700.0)})
    kind, dx, dy = relation(a, b, "memory_gb_s", "slo_violation_rate")
    assert dx.verdict == 1 and dy.verdict == 0 and kind == "trade-off"


def test_summaries_pool_each_point_over_its_seeds(tmp_path):
    cells = _cells(tmp_path)
    results = run_suite(cells, tmp_path / "out", LocalExecutor(workers=1))
    summaries = summarise(read_rows(results))["tiny"]
    assert len(summaries) == 3 and all(p.seeds == (0, 1) for p in summaries)


@pytest.mark.parametrize(("text", "seeds"), [(None, (0, 1, 2, 3, 4)), ("0-4", (0, 1, 2, 3, 4)), ("0,1,7", (0, 1, 7)),
                                              ("3, 1-2, 3", (3, 1, 2))])
def test_seeds_are_a_list_and_ranges(text, seeds):
    from controller.commands.bench import parse_seeds

    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["a", "4-1", "-3", "1,,2"])
def test_bad_seeds_are_refused_by_name(text):
    import click

    from controller.commands.bench import parse_seeds

    with pytest.raises(click.BadParameter):
        parse_seeds(text)


# --- the online-learning safety check ---------------------------------------------------------


def test_every_cell_leaves_its_windows_and_they_add_up_to_its_completions(tmp_path):
    from controller.bench.execute import ResultStore

    cells = _cells(tmp_path, seeds=(0,))
    out = tmp_path / "out"
    rows = {r["point"]: r for r in read_rows(run_suite(cells, out, LocalExecutor(workers=1)))}
    windows = ResultStore(out).windows(cells)
    for cell in cells:
        mine = [w for w in windows if w["key"] == cell.key()]
        assert mine and sum(int(w["completed"]) for w in mine) == int(float(rows[cell.point.label]["completed"]))


def _window(point: str, violations: int, fallback: bool = False, window: int = 0, family: str = "nac-linear"):
    return {"scenario": "s", "point": point, "family": family, "seed": 0, "window": window,
            "violations": violations, "fallback_active": str(fallback).lower()}


def test_a_learner_window_passes_within_ten_percent_of_ensure_or_with_its_fallback_active():
    from controller.bench.analysis import safety_rows, safety_table

    ensure = [_window("ensure c=1.06", v, window=w, family="ensure") for w, v in enumerate((100, 100, 100, 0))]
    learner = [_window("nac-linear online", 110, window=0), _window("nac-linear online", 111, window=1),
               _window("nac-linear online", 500, True, window=2), _window("nac-linear online", 0, window=3)]
    frozen = [_window("nac-linear alpha=0.3", 900, window=0)]
    [row] = safety_rows(ensure + learner + frozen, ["nac-linear online"])
    assert (row["windows"], row["safe_windows"], row["fallback_windows"]) == (4, 3, 1)
    assert row["worst_ratio_unsafe"] == pytest.approx(1.11)
    assert "| s | nac-linear online | 1 | 4 | 3 | 1 | 1.11 |" in safety_table([row])


# --- beyond the frontier ----------------------------------------------------------------------


def _costly(name: str, family: str, violations: float, memory: float, seeds=(0, 1, 2), cold=0.01, unfinished=0.0):
    rows = {s: {"slo_violation_rate": violations * (1 + 0.01 * s), "memory_gb_s": memory * (1 + 0.01 * s),
                "cold_start_rate": cold, "unfinished": unfinished, "dropped": 0.0} for s in seeds}
    means = {k: sum(r[k] for r in rows.values()) / len(rows) for k in rows[seeds[0]]}
    return PointSummary("s", family, name, False, tuple(rows), means, {k: 0.0 for k in means}, rows)


def test_a_learner_is_beyond_the_frontier_only_by_the_margin_against_the_curve_between_baseline_points():
    from controller.bench.analysis import acceptance_rows

    base = [_costly("ensure c=1.06", "ensure", 0.10, 1000.0), _costly("ensure c=3", "ensure", 0.02, 3000.0)]
    # At 2000 GB-s the frontier's curve is at 6% violations: 4.7% is 22% fewer, 5% only 17% fewer.
    good = _costly("nac-linear a", "nac-linear", 0.047, 2000.0)
    near = _costly("nac-linear b", "nac-linear", 0.05, 2000.0)
    # More memory than every baseline for fewer violations: compared with c=3 at its memory.
    costly = _costly("nac-linear c", "nac-linear", 0.019, 5000.0)
    colder = _costly("nac-linear d", "nac-linear", 0.047, 2000.0, cold=0.05)
    stuck = _costly("nac-linear e", "nac-linear", 0.047, 2000.0, unfinished=50.0)
    rows = {r["point"]: r for r in acceptance_rows({"s": [*base, good, near, costly, colder, stuck]}, ["nac-linear"])}
    assert rows["nac-linear a"]["passes"] and rows["nac-linear a"]["violations_gain"] == pytest.approx(0.217, abs=0.01)
    assert not rows["nac-linear b"]["beyond"]
    assert not rows["nac-linear c"]["beyond"] and rows["nac-linear c"]["violations_gain"] < 0.2
    assert rows["nac-linear d"]["beyond"] and not rows["nac-linear d"]["cold_starts_ok"] and not rows["nac-linear d"]["passes"]
    assert not rows["nac-linear e"]["unfinished_ok"] and "ensure c=3" in rows["nac-linear e"]["more_unfinished_than"]
    dominated = _costly("nac-linear f", "nac-linear", 0.12, 1100.0)
    [row] = acceptance_rows({"s": [*base, dominated]}, ["nac-linear"])
    assert row["dominated_by"] == "ensure c=1.06" and not row["passes"]


def test_every_tuning_copy_is_its_scenario_judged_inside_the_scenarios_training_window():
    from controller.bench.scenarios import SCENARIO_DIR

    copies = sorted((SCENARIO_DIR / "tuning").glob("*.yaml"))
    assert copies and not set(copies) & set(shipped_scenarios())
    for path in copies:
        tune, shipped = load_scenario(path), load_scenario(SCENARIO_DIR / path.name)
        assert tune.name == f"{shipped.name}-tune"
        for quick in (False, True):
            judged, trained = tune.window("evaluate", quick), shipped.window("train", False)
            assert trained.start_minute <= judged.start_minute
            assert judged.start_minute + judged.minutes <= trained.start_minute + trained.minutes
        mine, theirs = (s.settings("evaluate", True).workload.model_dump() for s in (tune, shipped))
        if shipped.split_seed is None:
            # Everything but the name and the windows is the scenario's own.
            assert tune.settings("evaluate", True).cluster == shipped.settings("evaluate", True).cluster
            assert {k: v for k, v in mine.items() if k != "start_minute"} == {
                k: v for k, v in theirs.items() if k != "start_minute"}
            continue
        # A copy of a split scenario splits the scenario's training half again: it trains and judges on
        # functions the scenario trains on, never on the half the scenario judges.
        names = {(s.name, part): set(build_workload(s.settings(part, True)).names)
                 for s in (tune, shipped) for part in ("train", "evaluate")}
        copy_train, copy_judged = names[tune.name, "train"], names[tune.name, "evaluate"]
        assert copy_train.isdisjoint(copy_judged)
        assert copy_train | copy_judged == names[shipped.name, "train"]
        # The same cluster per function: the invokers scale with the functions judged, nothing else moves.
        mine_cluster, their_cluster = (s.settings("evaluate", True).cluster.model_dump() for s in (tune, shipped))
        share = len(copy_judged) / len(names[shipped.name, "evaluate"])
        assert mine_cluster.pop("invokers") == math.ceil(their_cluster.pop("invokers") * share)
        assert mine_cluster == their_cluster
        skip = {"start_minute", "split_seed", "split_within_seed", "split_within_part"}
        assert {k: v for k, v in mine.items() if k not in skip} == {k: v for k, v in theirs.items() if k not in skip}
        assert (mine["split_within_seed"], mine["split_within_part"]) == (theirs["split_seed"], "train")


def test_the_beyond_verdict_says_on_how_many_seeds_it_holds_against_that_seeds_own_runs():
    from controller.bench.analysis import acceptance_rows, acceptance_table

    def seeded(name, family, per_seed):
        rows = {s: {"slo_violation_rate": v, "memory_gb_s": m, "cold_start_rate": 0.01, "unfinished": 0.0,
                    "dropped": 0.0} for s, (v, m) in enumerate(per_seed)}
        means = {k: sum(r[k] for r in rows.values()) / len(rows) for k in rows[0]}
        return PointSummary("s", family, name, False, tuple(rows), means, {k: 0.0 for k in means}, rows)

    base = [seeded("ensure c=1.06", "ensure", [(0.10, 1000.0)] * 3),
            seeded("ensure c=3", "ensure", [(0.02, 3000.0)] * 3)]
    # At 2000 GB-s every seed's frontier is at 6%: seeds 0 and 1 are 50% below it, seed 2 50% above;
    # the mean (5%) is only 17% below.
    learner = seeded("nac-linear a", "nac-linear", [(0.03, 2000.0), (0.03, 2000.0), (0.09, 2000.0)])
    [row] = acceptance_rows({"s": [*base, learner]}, ["nac-linear"])
    assert (row["seeds_beyond"], row["seeds_judged"]) == (2, 3)
    assert [float(g) for g in row["seed_gains"].split("; ")] == pytest.approx([0.5, 0.5, -0.5])
    assert not row["beyond"]  # the verdict stays on the means
    assert "| 2 of 3 (+50.0%, +50.0%, -50.0% fewer violations) |" in acceptance_table([row])


def test_a_learner_warm_start_changes_the_trained_learner_points_only():
    plain = {p.label: p for p in suite_points(["ensure", "nac-linear", "nac-linear-online", "nac-untrained"])}
    fitted = {p.label: p for p in suite_points(["ensure", "nac-linear", "nac-linear-online", "nac-untrained"],
                                                "portfolio", "fitted")}
    trained = fitted["nac-linear alpha=0.3 [fitted] [portfolio]"]
    assert trained.overrides["policy.params"]["nac-linear"] == {"scheme": "portfolio", "warm_start": "fitted"}
    assert fitted["ensure c=1.06"] == plain["ensure c=1.06"]  # a baseline's cell (and key) is untouched
    online = fitted["nac-linear online [portfolio]"]
    assert online.overrides["policy.params"]["nac-linear"]["warm_start"] == "ensure"  # what its fallback needs
    assert "nac-linear untrained staffing [portfolio]" in fitted  # untrained: no warm start to fit
    with pytest.raises(ValueError, match="needs the portfolio"):
        suite_points(["nac-linear"], "staffing", "kpa")
    with pytest.raises(ValueError, match="unknown learner warm start"):
        suite_points(["nac-linear"], "staffing", "imitated")


def test_learner_params_reach_the_trained_learner_points_only_and_are_checked():
    families = ["ensure", "nac-linear", "nac-nn", "nac-linear-online", "nac-untrained"]
    plain = {p.label: p for p in suite_points(families, "portfolio", "fitted")}
    ruled = {p.label: p for p in suite_points(families, "portfolio", "fitted", {"fit_cold_starts": "ensure"})}
    for policy in ("nac-linear", "nac-nn"):
        trained = ruled[f"{policy} alpha=0.3 [fitted] [portfolio] [fit_cold_starts=ensure]"]
        assert trained.overrides["policy.params"][policy] == {
            "scheme": "portfolio", "warm_start": "fitted", "fit_cold_starts": "ensure"}
    assert ruled["ensure c=1.06"] == plain["ensure c=1.06"]
    assert ruled["nac-linear online [portfolio]"] == plain["nac-linear online [portfolio]"]
    assert ruled["nac-linear untrained staffing [portfolio]"] == plain["nac-linear untrained staffing [portfolio]"]
    one = {p.label: p for p in suite_points(families, "portfolio", "fitted", {"nac-linear.policy_lr": 0.01})}
    assert one["nac-linear alpha=0.3 [fitted] [portfolio] [policy_lr=0.01]"].overrides["policy.params"][
        "nac-linear"]["policy_lr"] == 0.01
    assert one["nac-nn alpha=0.3 [fitted] [portfolio]"] == plain["nac-nn alpha=0.3 [fitted] [portfolio]"]
    with pytest.raises(ValueError, match="'nac-nm', which is not a learner"):
        suite_points(families, "portfolio", "fitted", {"nac-nm.learning_rate": 1e-4})
    with pytest.raises(ValueError, match="unknown parameter 'policy_lr'"):
        suite_points(families, "portfolio", "fitted", {"nac-nn.policy_lr": 1e-4})
    with pytest.raises(ValueError, match="unknown parameter 'fit_cold_start'"):
        suite_points(["nac-linear"], "portfolio", "fitted", {"fit_cold_start": "ensure"})
    with pytest.raises(ValueError, match="fit_cold_starts='often'"):
        suite_points(["nac-nn"], "portfolio", "fitted", {"fit_cold_starts": "often"})


def test_the_command_refuses_a_learner_param_it_cannot_read_in_one_line(tmp_path):
    result = CliRunner().invoke(bench_command, [str(_write(tmp_path, TINY)), "--families", "nac-linear",
                                                "--learner-param", "fit_cold_starts", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--learner-param" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(bench_command, [str(_write(tmp_path, TINY)), "--families", "nac-linear",
                                                "--learner-param", "colour=blue", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown parameter 'colour'" in result.output
    assert not (tmp_path / "o").exists()


def _refuse_with_a_list(name: str) -> None:
    raise ValueError(f"checkpoint {name} does not fit:\n  value a is not a count\n  array b: absent")


def test_a_failed_call_keeps_every_line_of_its_reason_on_one_line() -> None:
    # A message that lists its problems under a heading must not lose them to the heading alone.
    with pytest.raises(CallFailed) as failure:
        list(LocalExecutor(workers=1).run(_refuse_with_a_list, [("p.ckpt",)]))
    assert failure.value.reason == (
        "ValueError: checkpoint p.ckpt does not fit: value a is not a count; array b: absent"
    )


def test_the_check_copy_of_unseen_functions_judges_other_unseen_functions():
    from controller.bench.scenarios import SCENARIO_DIR

    check = load_scenario(SCENARIO_DIR / "checks" / "unseen-functions-other-split.yaml")
    shipped = load_scenario(SCENARIO_DIR / "unseen-functions.yaml")
    assert SCENARIO_DIR / "checks" / "unseen-functions-other-split.yaml" not in set(shipped_scenarios())
    names = {(s.name, part): set(build_workload(s.settings(part, True)).names)
             for s in (check, shipped) for part in ("train", "evaluate")}
    trained, judged = names[check.name, "train"], names[check.name, "evaluate"]
    assert trained.isdisjoint(judged) and len(trained) == len(judged) == 200
    # Another half of the sample: neither the scenario's judged half nor its training half.
    assert judged != names[shipped.name, "evaluate"] and judged != names[shipped.name, "train"]
