"""From the suite's rows to what an operator needs to decide: frontiers, seed-paired dominance, plots.

Two planes, both costs an operator pays: (SLO-violation rate, memory GB-s held) and (cold-start rate,
idle memory GB-s). Each point of a family is the mean over seeds; a family's frontier is its points
that no other point of the family beats on both axes.

Comparisons are paired by seed (every point of a scenario sees the same arrivals for a seed). For two
points A and B, on each axis the paired differences A − B over the seeds give a mean and a 95%
t-interval: A is *better* on that axis when the whole interval is below 0, *worse* when it is above
0, and *tied* otherwise. B **dominates** A when A is worse on one axis and not better on the other;
a *tie* is tied on both axes; anything else is a *trade-off*. With one seed no interval exists and
the sign of the difference decides (said so in the table).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The two planes: (name, x metric, x label, y metric, y label).
PLANES: tuple[tuple[str, str, str, str, str], ...] = (
    ("violations-memory", "memory_gb_s", "memory held, GB-s", "slo_violation_rate", "SLO violations (% of invocations)"),
    ("coldstarts-idle", "idle_memory_gb_s", "idle memory held, GB-s", "cold_start_rate", "cold starts (% of completions)"),
)

#: Two-sided 95% Student-t quantiles by degrees of freedom (1..30); beyond, the normal's 1.96.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t95(dof: int) -> float:
    """The two-sided 95% Student-t quantile for ``dof`` degrees of freedom."""
    return _T95[dof - 1] if 1 <= dof <= len(_T95) else 1.96


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``results.csv``, numbers as floats."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    text = {"scenario", "family", "point", "policy", "knob", "value", "default"}
    return [{k: (v if k in text else float(v) if v not in ("", "nan") else math.nan) for k, v in row.items()}
            for row in rows]


@dataclass(frozen=True)
class PointSummary:
    """One point of one scenario over its seeds."""

    scenario: str
    family: str
    point: str
    default: bool
    seeds: tuple[int, ...]
    means: Mapping[str, float]
    """Mean of every metric over the seeds."""
    sds: Mapping[str, float]
    """Sample standard deviation over the seeds (0 with one seed)."""
    by_seed: Mapping[int, Mapping[str, float]]


def summarise(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[PointSummary]]:
    """Per scenario, every point's means and spreads over its seeds (in the rows' order)."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    order: list[tuple[str, str]] = []
    for row in rows:
        key = (row["scenario"], row["point"])
        if key not in grouped:
            order.append(key)
        grouped[key].append(row)
    out: dict[str, list[PointSummary]] = defaultdict(list)
    for key in order:
        group = grouped[key]
        metrics = [k for k, v in group[0].items() if isinstance(v, float) and k not in ("seed", "value")]
        values = {m: np.array([r[m] for r in group], dtype=float) for m in metrics}
        out[key[0]].append(PointSummary(
            scenario=key[0], family=group[0]["family"], point=key[1], default=group[0]["default"] == "true",
            seeds=tuple(int(r["seed"]) for r in group),
            means={m: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for m, v in values.items()},
            sds={m: float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0 for m, v in values.items()},
            by_seed={int(r["seed"]): {m: float(r[m]) for m in metrics} for r in group},
        ))
    return dict(out)


def frontier(points: Sequence[PointSummary], x: str, y: str) -> list[PointSummary]:
    """The points no other point beats on both ``x`` and ``y`` (lower is better), by ``x``."""
    kept = []
    for p in points:
        px, py = p.means[x], p.means[y]
        if not (math.isfinite(px) and math.isfinite(py)):
            continue
        if not any(q.means[x] <= px and q.means[y] <= py and (q.means[x] < px or q.means[y] < py) for q in points):
            kept.append(p)
    return sorted(kept, key=lambda p: p.means[x])


@dataclass(frozen=True)
class Paired:
    """A against B on one metric, paired by seed."""

    mean: float
    """Mean of A − B over the common seeds."""
    half_width: float
    """Half-width of the 95% t-interval (NaN with one seed)."""
    seeds: int
    """Common seeds."""

    @property
    def verdict(self) -> int:
        """-1: A better (lower), +1: A worse, 0: tied."""
        if self.seeds == 0 or not math.isfinite(self.mean):
            return 0
        if self.seeds == 1 or not math.isfinite(self.half_width):
            return int(np.sign(self.mean))
        if self.mean + self.half_width < 0:
            return -1
        if self.mean - self.half_width > 0:
            return 1
        return 0


def paired(a: PointSummary, b: PointSummary, metric: str) -> Paired:
    """A − B on ``metric`` over the seeds both have."""
    common = sorted(set(a.by_seed) & set(b.by_seed))
    diffs = np.array([a.by_seed[s][metric] - b.by_seed[s][metric] for s in common], dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return Paired(math.nan, math.nan, 0)
    if diffs.size == 1:
        return Paired(float(diffs[0]), math.nan, 1)
    half = t95(diffs.size - 1) * float(diffs.std(ddof=1)) / math.sqrt(diffs.size)
    return Paired(float(diffs.mean()), half, int(diffs.size))


def relation(a: PointSummary, b: PointSummary, x: str, y: str) -> tuple[str, Paired, Paired]:
    """How A stands against B on (``x``, ``y``): ``dominated`` (B dominates A), ``dominates``, ``tie``
    or ``trade-off``, with the paired differences.

    B dominates A when it is better on one axis (its 95% interval clear of zero) and on the other
    tied or better, and there not worse on average either: a tie that only the seeds' noise makes
    (B's mean there far worse, its interval wide) is no dominance."""
    dx, dy = paired(a, b, x), paired(a, b, y)
    vx, vy = dx.verdict, dy.verdict

    def no_better(verdict: int, diff: Paired) -> bool:  # A no better than B on this axis
        return verdict > 0 or (verdict == 0 and not diff.mean < 0)

    def no_worse(verdict: int, diff: Paired) -> bool:  # A no worse than B on this axis
        return verdict < 0 or (verdict == 0 and not diff.mean > 0)

    if (vx > 0 and no_better(vy, dy)) or (vy > 0 and no_better(vx, dx)):
        kind = "dominated"
    elif (vx < 0 and no_worse(vy, dy)) or (vy < 0 and no_worse(vx, dx)):
        kind = "dominates"
    elif vx == 0 and vy == 0:
        kind = "tie"
    else:
        kind = "trade-off"
    return kind, dx, dy


def dominance_rows(summaries: Mapping[str, Sequence[PointSummary]], subjects: Sequence[str] | None = None
                   ) -> list[dict[str, Any]]:
    """For every scenario, plane and subject point (every point, or the families named), how it
    stands against every other point: one row per pair."""
    rows = []
    for scenario, points in summaries.items():
        for plane, x, _, y, _ in PLANES:
            for a in points:
                if subjects is not None and a.family not in subjects:
                    continue
                for b in points:
                    if b is a:
                        continue
                    kind, dx, dy = relation(a, b, x, y)
                    rows.append({
                        "scenario": scenario, "plane": plane, "point": a.point, "against": b.point, "relation": kind,
                        f"d_{y}": dy.mean, f"d_{y}_ci": dy.half_width, f"d_{x}": dx.mean, f"d_{x}_ci": dx.half_width,
                        "seeds": min(dx.seeds, dy.seeds),
                    })
    return rows


def _pct(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{100 * value:.2f}%"


def _signed_pct_points(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "–"
    text = f"{100 * mean:+.2f} pts"
    return text + (f" ± {100 * half:.2f}" if math.isfinite(half) else "")


def _signed_relative(mean: float, half: float, base: float) -> str:
    if not (math.isfinite(mean) and base > 0):
        return "–"
    text = f"{100 * mean / base:+.1f}%"
    return text + (f" ± {100 * half / base:.1f}" if math.isfinite(half) else "")


def dominance_table(summaries: Mapping[str, Sequence[PointSummary]], subjects: Sequence[str]) -> str:
    """Markdown: for every scenario and subject family's point, on the (violations, memory) plane, the
    points that dominate it (and by how much, paired by seed), or that it dominates, or ties."""
    _, x, _, y, _ = PLANES[0]
    lines = []
    for scenario, points in summaries.items():
        lines.append(f"### {scenario}\n")
        lines.append("| point | violations | memory GB-s | dominated by (Δ violations, Δ memory; 95% CI, seeds paired) "
                     "| dominates | ties |")
        lines.append("|---|---|---|---|---|---|")
        for a in points:
            if a.family not in subjects and not a.default:
                continue
            by, over, ties = [], [], []
            for b in points:
                if b is a:
                    continue
                kind, dx, dy = relation(a, b, x, y)
                detail = f"{b.point} ({_signed_pct_points(dy.mean, dy.half_width)}, " \
                         f"{_signed_relative(dx.mean, dx.half_width, b.means[x])})"
                if kind == "dominated":
                    by.append(detail)
                elif kind == "dominates":
                    over.append(b.point)
                elif kind == "tie":
                    ties.append(b.point)
            lines.append(f"| **{a.point}** | {_pct(a.means[y])} | {a.means[x]:,.0f} | {'; '.join(by) or 'none'} | "
                         f"{len(over)} points | {', '.join(ties) or 'none'} |")
        lines.append("")
    return "\n".join(lines)


def plot_frontiers(points: Sequence[PointSummary], scenario: str, description: str, path: Path) -> Path:
    """Both planes for one scenario: each family's points joined in knob order, its frontier, the
    learners marked; means over seeds with ±1 sd bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2))
    families: dict[str, list[PointSummary]] = defaultdict(list)
    for p in points:
        families[p.family].append(p)
    # Baselines in tab10's colours, learners (stars) in Dark2's: no two families of one kind share one.
    baseline_colours, learner_colours = plt.get_cmap("tab10"), plt.get_cmap("Dark2")
    colour: dict[str, Any] = {}
    for family in families:
        palette = learner_colours if family.startswith("nac-") else baseline_colours
        taken = sum(1 for f in colour if f.startswith("nac-") == family.startswith("nac-"))
        colour[family] = palette(taken % palette.N)
    for ax, (plane, x, xlabel, y, ylabel) in zip(axes, PLANES):
        for family, members in families.items():
            learner = family.startswith("nac-")
            xs = [m.means[x] for m in members]
            ys = [100 * m.means[y] for m in members]
            xe = [m.sds[x] for m in members]
            ye = [100 * m.sds[y] for m in members]
            # A family of several points is joined in knob order: a baseline's sweep with a solid
            # line, a learner's α sweep (its own frontier) with a dashed one.
            swept = len(members) > 1 and (not learner or all("alpha=" in m.point for m in members))
            line = "none" if not swept else "--" if learner else "-"
            style = {"marker": "*" if learner else "o", "markersize": 12 if learner else 6,
                     "linestyle": line, "color": colour[family]}
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, label=family, capsize=2, linewidth=1, **style)
            for m in members:
                if m.default and not learner and len(members) > 1:
                    ax.plot(m.means[x], 100 * m.means[y], marker="s", markersize=9, markerfacecolor="none",
                            color=colour[family])
        front = frontier([p for p in points if not p.family.startswith("nac-")], x, y)
        if front:
            ax.step([p.means[x] for p in front], [100 * p.means[y] for p in front], where="post", color="black",
                    linewidth=1, linestyle=":", label="baselines' frontier")
        # Rates from a hundredth of a percent to 100% and memory over a factor of ten: both axes
        # logarithmic (the y axis linear below 0.1%, so a point at 0 is still drawn).
        ax.set_yscale("symlog", linthresh=0.1, linscale=0.5)
        ax.set_ylim(bottom=0)  # a rate is never negative, whatever a bar of one sd says
        ax.set_xscale("log")
        ax.set_xlabel(xlabel + " (log scale)")
        ax.set_ylabel(ylabel + " (log scale above 0.1%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title("SLO violations against memory held" if plane.startswith("violations")
                     else "cold starts against idle memory")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=7, fontsize="small", frameon=False)
    fig.suptitle(f"{scenario}: {description}\n(means over seeds, ±1 sd; squares: each baseline's default; "
                 "stars: the learners, an α sweep dashed)", fontsize="medium")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Rows as CSV (columns of the first row, and any others after)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path




def safety_rows(windows: Iterable[Mapping[str, Any]], online: Iterable[str], heuristic_point: str = "ensure c=1.06",
                factor: float = 1.1) -> list[dict[str, Any]]:
    """The online-learning safety check, per cell of the ``online`` points (learners learning while
    judged): in how many of its windows its violations were at most ``factor`` x those of
    ``heuristic_point`` (the warm-start heuristic) on the same scenario, seed and window — the same
    arrivals — or its fallback was active.

    ``windows`` are rows of ``windows.csv`` (scenario, point, family, seed, window, violations,
    fallback_active).
    """
    by_key: dict[tuple[str, str, int], dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for row in windows:
        by_key[(str(row["scenario"]), str(row["point"]), int(row["seed"]))][int(row["window"])] = row
    out = []
    subjects = set(online)
    for (scenario, point, seed), rows in sorted(by_key.items()):
        if point not in subjects:
            continue
        reference = by_key.get((scenario, heuristic_point, seed))
        if reference is None:
            continue
        checked = ok = fallback = 0
        worst = 0.0
        for window, row in rows.items():
            base = reference.get(window)
            if base is None:
                continue
            checked += 1
            mine, theirs = float(row["violations"]), float(base["violations"])
            active = str(row["fallback_active"]).lower() == "true"
            fallback += active
            if mine <= factor * theirs or active:
                ok += 1
            elif theirs > 0:
                worst = max(worst, mine / theirs)
            else:
                worst = max(worst, math.inf)
        out.append({"scenario": scenario, "point": point, "seed": seed, "windows": checked, "safe_windows": ok,
                    "fallback_windows": fallback, "worst_ratio_unsafe": worst})
    return out


def safety_table(rows: Sequence[Mapping[str, Any]], heuristic_point: str = "ensure c=1.06", factor: float = 1.1) -> str:
    """Markdown: per scenario and learner point, the windows that passed the safety check over all seeds."""
    if not rows:
        return (f"No learner cell had a matching `{heuristic_point}` cell (same scenario and seed): nothing to "
                "check.\n")
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for row in rows:
        t = totals[(str(row["scenario"]), str(row["point"]))]
        t[0] += 1
        t[1] += int(row["windows"])
        t[2] += int(row["safe_windows"])
        t[3] += int(row["fallback_windows"])
        t[4] = max(t[4], float(row["worst_ratio_unsafe"]))
    lines = [(f"Windows of {SAFETY_WINDOW_MINUTES:g} minutes in which a learner's SLO violations were at most "
              f"{factor:g} x those of `{heuristic_point}` on the same arrivals, or its fallback was active."), "",
             "| scenario | point | seeds | windows | passed | with fallback | worst ratio where failed |",
             "|---|---|---|---|---|---|---|"]
    for (scenario, point), (seeds, windows, ok, fallback, worst) in sorted(totals.items()):
        shown = "–" if ok == windows else ("∞ (heuristic had none)" if math.isinf(worst) else f"{worst:.2f}")
        lines.append(f"| {scenario} | {point} | {seeds:g} | {windows:g} | {ok:g} | {fallback:g} | {shown} |")
    return "\n".join(lines) + "\n"


def _interpolate(xs: Sequence[float], ys: Sequence[float], at: float) -> float:
    """The piecewise-linear curve through (xs, ys) (xs ascending) at ``at``: NaN left of the first x,
    the last y right of the last."""
    if not xs or at < xs[0]:
        return math.nan
    return float(np.interp(at, xs, ys))


#: The margin by which a learner must be beyond the baselines' frontier: 20% fewer violations at no
#: more memory, or 20% less memory at no more violations.
BEYOND_MARGIN = 0.2


def acceptance_rows(summaries: Mapping[str, Sequence[PointSummary]], subjects: Sequence[str],
                    heuristic: str = "ensure c=1.06", margin: float = BEYOND_MARGIN) -> list[dict[str, Any]]:
    """For every scenario and point of the ``subjects`` families: is it beyond every baseline's frontier?

    * ``dominated_by``: the baseline points that dominate it, seeds paired (must be none); a baseline is
      a point of any family but the learners' (``nac-*``) and the subjects';
    * the baselines' frontier on (memory GB-s, violations), every point of every non-learner family,
      drawn as the piecewise-linear curve through its points (an operator could set a knob between two
      swept values; a curve of straight segments is what they could expect there): ``frontier_violations``
      is its violations at the point's memory (NaN when every baseline holds more memory) and
      ``frontier_memory`` its memory at the point's violations (NaN when every baseline violates more);
    * ``violations_gain`` = 1 − violations / frontier_violations and ``memory_gain`` = 1 − memory /
      frontier_memory (each +inf where the frontier has no point that far): ``beyond`` when either is at
      least ``margin``;
    * ``cold_starts_ok``: its cold-start rate not worse than ``heuristic``'s, seeds paired;
    * ``unfinished_ok``: its unfinished and dropped invocations not more than any baseline's, seeds paired;
    * ``passes``: all of the above;
    * ``seeds_beyond`` of ``seeds_judged``: the seeds on which the point, against the frontier of that
      seed's baseline runs alone, is beyond by the same margin (and ``seed_gains`` its violations gain
      there, seed by seed, as fractions joined by "; ") — whether a pass on the means holds seed by seed or rests on a few of them.
      Shown beside the verdict, not part of it.
    """
    _, x, _, y, _ = PLANES[0]
    out = []
    for scenario, points in summaries.items():
        baselines = [p for p in points if not p.family.startswith("nac-") and p.family not in subjects]
        edge = frontier(baselines, x, y)
        xs, ys = [p.means[x] for p in edge], [p.means[y] for p in edge]
        by_violations = sorted(edge, key=lambda p: p.means[y])
        vs, ms = [p.means[y] for p in by_violations], [p.means[x] for p in by_violations]
        reference = next((p for p in points if p.point == heuristic), None)
        for a in points:
            if a.family not in subjects:
                continue
            dominated = [b.point for b in baselines if relation(a, b, x, y)[0] == "dominated"]
            at_memory = _interpolate(xs, ys, a.means[x])
            at_violations = _interpolate(vs, ms, a.means[y])
            gain_v = math.nan if not math.isfinite(at_memory) else (
                1.0 - a.means[y] / at_memory if at_memory > 0 else (0.0 if a.means[y] <= 0 else -math.inf))
            gain_m = math.nan if not math.isfinite(at_violations) else 1.0 - a.means[x] / at_violations
            # Neither defined: it holds less memory than every baseline and violates less than every one.
            below_all = math.isnan(gain_v) and math.isnan(gain_m)
            beyond = not dominated and (gain_v >= margin or gain_m >= margin or below_all)
            cold_ok = reference is None or paired(a, reference, "cold_start_rate").verdict <= 0
            more_unfinished = [b.point for b in baselines
                               if paired(a, b, "unfinished").verdict > 0 or paired(a, b, "dropped").verdict > 0]
            seed_gains, seeds_beyond = [], 0
            for seed in a.seeds:
                runs = [(b.by_seed[seed][x], b.by_seed[seed][y]) for b in baselines if seed in b.by_seed]
                mine = a.by_seed[seed]
                g_v, g_m = _gains_against(runs, mine[x], mine[y])
                seed_gains.append(g_v)
                seeds_beyond += int(g_v >= margin or g_m >= margin or (math.isnan(g_v) and math.isnan(g_m)))
            out.append({
                "scenario": scenario, "point": a.point, "violations": a.means[y], "memory_gb_s": a.means[x],
                "dominated_by": "; ".join(dominated), "frontier_violations": at_memory, "frontier_memory": at_violations,
                "violations_gain": gain_v, "memory_gain": gain_m, "beyond": beyond,
                "cold_starts_ok": cold_ok, "unfinished_ok": not more_unfinished,
                "more_unfinished_than": "; ".join(more_unfinished),
                "passes": beyond and cold_ok and not more_unfinished,
                "seeds_beyond": seeds_beyond, "seeds_judged": len(a.seeds), "seed_gains": "; ".join(f"{g:.4f}" for g in seed_gains),
            })
    return out


def _gains_against(runs: Sequence[tuple[float, float]], memory: float, violations: float) -> tuple[float, float]:
    """(fewer violations, less memory) than the frontier of ``runs`` ((memory, violations) pairs), as
    fractions, at the given point; NaN where the frontier does not reach it."""
    runs = [(m, v) for m, v in runs if math.isfinite(m) and math.isfinite(v)]
    edge = sorted((m, v) for m, v in runs if not any(
        om <= m and ov <= v and (om < m or ov < v) for om, ov in runs))
    at_memory = _interpolate([m for m, _ in edge], [v for _, v in edge], memory)
    by_v = sorted(edge, key=lambda e: e[1])
    at_violations = _interpolate([v for _, v in by_v], [m for m, _ in by_v], violations)
    gain_v = math.nan if not math.isfinite(at_memory) else (
        1.0 - violations / at_memory if at_memory > 0 else (0.0 if violations <= 0 else -math.inf))
    gain_m = math.nan if not math.isfinite(at_violations) else 1.0 - memory / at_violations
    return gain_v, gain_m


def acceptance_table(rows: Sequence[Mapping[str, Any]], margin: float = BEYOND_MARGIN) -> str:
    """Markdown of :func:`acceptance_rows`."""
    def gain(value: float) -> str:
        return "– (no baseline that low)" if math.isnan(value) else f"{100 * value:+.1f}%"

    lines = [(f"Beyond every baseline's frontier: no baseline point dominates it (seeds paired), and against "
              f"the frontier's curve {100 * margin:.0f}% fewer violations at its memory or {100 * margin:.0f}% "
              "less memory at its violations; cold starts no worse than ENSURE's default; no more unfinished "
              "work than any baseline."), "",
             ("| scenario | point | violations | memory GB-s | dominated by | fewer violations than the frontier "
              "| less memory than the frontier | cold starts | unfinished | passes | seeds beyond, "
              "each against its own runs |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['point']} | {_pct(r['violations'])} | {r['memory_gb_s']:,.0f} | "
                     f"{r['dominated_by'] or 'none'} | {gain(r['violations_gain'])} | {gain(r['memory_gain'])} | "
                     f"{'ok' if r['cold_starts_ok'] else 'worse than ENSURE'} | "
                     f"{'ok' if r['unfinished_ok'] else 'more than ' + r['more_unfinished_than']} | "
                     f"{'**yes**' if r['passes'] else 'no'} | "
                     f"{r['seeds_beyond']} of {r['seeds_judged']} "
                     f"({', '.join(gain(float(g)).split(' ')[0] for g in r['seed_gains'].split('; ') if g)} fewer "
                     "violations) |")
    return "\n".join(lines) + "\n"


#: The safety check's window, minutes (``controller.bench.cells.SAFETY_WINDOW_S``).
SAFETY_WINDOW_MINUTES = 10.0


__all__ = [
    "BEYOND_MARGIN",
    "PLANES",
    "SAFETY_WINDOW_MINUTES",
    "Paired",
    "PointSummary",
    "acceptance_rows",
    "acceptance_table",
    "dominance_rows",
    "dominance_table",
    "frontier",
    "paired",
    "plot_frontiers",
    "read_rows",
    "relation",
    "safety_rows",
    "safety_table",
    "summarise",
    "t95",
    "write_csv",
]
