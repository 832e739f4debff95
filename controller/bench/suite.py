"""What the evaluation suite runs in every scenario: each baseline swept over its main knob, and the learners.

A *family* is one way of managing the cluster (ENSURE, KPA, fixed keep-alive, ...); its *points*
are the values of its main knob. A learner is better than a heuristic only where it lies beyond every
point of every family, so each family is run at several settings, not at its default alone:

=====================  ==================================  ======================================
family                 knob (settings key)                 values (the default in the middle)
=====================  ==================================  ======================================
``fixed-keepalive``    keep-alive, min                     5, 10 (OpenWhisk's), 20, 30, 60
                       (``cluster.idle_timeout_s``)
``faascache``          idle-memory budget, share of user   0.05, 0.1, 0.25, 0.5, 1.0
                       memory (``cluster.idle_memory_
                       fraction``) with Greedy-Dual
                       eviction
``ensure``             staffing constant c                 0, 0.5, 1.06, 1.5, 2, 2.5, 3, 4
``kpa``                target utilisation                  0.4, 0.55, 0.7, 0.85, 1.0
``hpa``                target utilisation                  0.4, 0.55, 0.7, 0.85, 1.0
``hybrid-histogram``   keep-alive percentile of idle time  0.9, 0.95, 0.99, 0.999
``nac-linear``,        the operator reward's α             0.1, 0.3, 0.5, 0.7
``nac-nn``             (``reward.alpha``), trained at it
                       and judged frozen and greedy
``nac-*-online``       one point: a fresh deployment warm-
                       started from ENSURE, learning while
                       judged, ENSURE as its fallback
``nac-*-no-mu``        one point: α 0.3 without μ in the
                       features (ablation)
``nac-untrained``      the staffing scheme and the moves
                       scheme (band and random moves)
                       untrained, sampling (ablation)
=====================  ==================================  ======================================

Every family whose name starts with ``nac-`` is a learner's; the others are the baselines whose
frontier a learner is judged against.

Every point is run, under ``--quick`` too (which only shortens the windows): a learner is judged
against the whole of each frontier, never against a thinned one whose straight segments would flatter it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from policies.registry import learns, make


@dataclass(frozen=True)
class Point:
    """One policy at one knob value: a point of its family's frontier."""

    family: str
    """The family (the frontier it belongs to)."""
    label: str
    """Unique name of the point in results, e.g. ``ensure c=1.06``."""
    policy: str
    """The registered policy that decides."""
    knob: str = ""
    """The knob's settings key ("" for a family of one point)."""
    value: float | None = None
    """The knob's value (None for a family of one point)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Settings overrides of this point (the knob and anything the family needs)."""
    default: bool = False
    """Whether this is the family's default setting."""
    mode: str = "trained"
    """Learners only, how it is judged: ``trained`` (trained on the scenario's training window, then
    frozen and greedy), ``online`` (a fresh deployment: built from its settings, e.g. warm-started with
    its fallback, learning while judged and sampling its actions), ``untrained`` (built fresh,
    frozen, sampling: what the action scheme does without learning) or ``warm-start`` (built fresh,
    frozen, greedy: the heuristic a warm-started learner starts from, played through its own action
    scheme — what learning is measured against)."""
    training: Mapping[str, Any] | None = None
    """Learners only: settings overrides of its training run when they differ from ``overrides``;
    None: the same."""

    def __post_init__(self) -> None:
        if self.mode not in POINT_MODES:
            raise ValueError(f"Point {self.label!r}: mode {self.mode!r} is not one of {', '.join(POINT_MODES)}")

    @property
    def learned(self) -> bool:
        """Whether the point's policy learns."""
        return learns(self.policy)

    @property
    def needs_training(self) -> bool:
        """Whether a checkpoint is trained for it before it is judged."""
        return self.learned and self.mode == "trained"


#: How a learner point is judged (``Point.mode``).
POINT_MODES: tuple[str, ...] = ("trained", "online", "untrained", "warm-start")


def _sweep(family: str, policy: str, knob: str, short: str, values: Sequence[float], default: float,
           base: Mapping[str, Any] | None = None, shown: Any = None) -> list[Point]:
    points = []
    for value in values:
        if knob.startswith("policy.params."):
            param = knob.rpartition(".")[2]
            overrides = {**(base or {}), "policy.params": {policy: {param: value}}}
        else:
            overrides = {**(base or {}), knob: value}
        text = shown(value) if shown else f"{value:g}"
        points.append(Point(family=family, label=f"{family} {short}={text}", policy=policy, knob=knob,
                            value=float(value), overrides=overrides, default=value == default))
    return points


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g}min"


#: What every learner point of the suite is, unless the point says otherwise: the ``staffing`` action
#: scheme (ENSURE's sweep among its fixed policies) and the operator's reward. Set here rather than
#: left to the settings' defaults, so that the suite judges the same learner whatever those are.
LEARNER_SCHEME: str = "staffing"
LEARNER_REWARD: str = "operator"


def _learner(policy: str, **params: Any) -> dict[str, Any]:
    return {"reward.kind": LEARNER_REWARD, "policy.params": {policy: {"scheme": LEARNER_SCHEME, **params}}}


#: The reward weights α a learner is trained and judged at: its own frontier (0.3 is the paper's α).
LEARNER_ALPHAS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)


def _learner_sweep(policy: str) -> list[Point]:
    """A learner at every α of :data:`LEARNER_ALPHAS`, trained at that α and judged frozen and greedy."""
    return [Point(family=policy, label=f"{policy} alpha={alpha:g}", policy=policy, knob="reward.alpha",
                  value=alpha, overrides={**_learner(policy), "reward.alpha": alpha}, default=alpha == 0.3) for alpha in LEARNER_ALPHAS]


def _online(policy: str) -> Point:
    """A fresh deployment of the learner: warm-started from ENSURE, learning while judged, with ENSURE
    as its fallback (the online-learning safety check is made on it)."""
    return Point(family=f"{policy}-online", label=f"{policy} online", policy=policy,
                 mode="online", default=True,
                 overrides=_learner(policy, warm_start="ensure", fallback="ensure"))


def _no_mu(policy: str) -> Point:
    """The learner at its default α, trained and judged without the population state in its features."""
    return Point(family=f"{policy}-no-mu", label=f"{policy} without mu", policy=policy, default=True,
                 overrides=_learner(policy, population=False))


#: Every family of the suite and its points, in table order.
FAMILIES: dict[str, list[Point]] = {
    "fixed-keepalive": _sweep("fixed-keepalive", "openwhisk-default", "cluster.idle_timeout_s", "keepalive",
                              [300.0, 600.0, 1200.0, 1800.0, 3600.0], 600.0, shown=_minutes),
    "faascache": _sweep("faascache", "openwhisk-default", "cluster.idle_memory_fraction", "idle-memory",
                        [0.05, 0.1, 0.25, 0.5, 1.0], 1.0, base={"cluster.eviction": "greedy-dual"}),
    "ensure": _sweep("ensure", "ensure", "policy.params.ensure.staffing_c", "c",
                     [0.0, 0.5, 1.06, 1.5, 2.0, 2.5, 3.0, 4.0], 1.06),
    "kpa": _sweep("kpa", "kpa", "policy.params.kpa.target_utilisation", "target", [0.4, 0.55, 0.7, 0.85, 1.0], 0.7),
    "hpa": _sweep("hpa", "hpa", "policy.params.hpa.target_utilisation", "target", [0.4, 0.55, 0.7, 0.85, 1.0], 0.7),
    "hybrid-histogram": _sweep("hybrid-histogram", "hybrid-histogram", "policy.params.hybrid-histogram.tail_percentile",
                               "tail", [0.9, 0.95, 0.99, 0.999], 0.99),
    "nac-linear": _learner_sweep("nac-linear"),
    "nac-nn": _learner_sweep("nac-nn"),
    "nac-linear-online": [_online("nac-linear")],
    "nac-nn-online": [_online("nac-nn")],
    "nac-linear-no-mu": [_no_mu("nac-linear")],
    "nac-nn-no-mu": [_no_mu("nac-nn")],
    "nac-untrained": [
        Point(family="nac-untrained", label="nac-linear untrained staffing", policy="nac-linear",
              mode="untrained", default=True, overrides=_learner("nac-linear")),
        Point(family="nac-untrained", label="nac-linear untrained moves", policy="nac-linear",
              mode="untrained", overrides=_learner("nac-linear", scheme="moves")),
    ],
}


def suite_points(families: Sequence[str] | None = None, learner_scheme: str = LEARNER_SCHEME,
                 learner_warm_start: str = "none", learner_params: Mapping[str, Any] | None = None) -> list[Point]:
    """The points to run: every point of every family (or of those named). ``learner_scheme`` replaces
    the action scheme of every learner point that uses the suite's (:data:`LEARNER_SCHEME`); the
    untrained moves ablation keeps its own. ``learner_warm_start`` (one of :data:`LEARNER_WARM_STARTS`)
    is where every *trained* learner point starts (``AgentSettings.warm_start``); the online points
    keep ENSURE's, which their fallback needs. ``learner_params`` are more parameters of every trained
    learner point (e.g. ``fit_cold_starts``), or of one learner's (``nac-linear.policy_lr``), checked
    against each learner's own; a point that has them is labelled with them. Baseline points are never touched, so their cells (and keys) stay the same."""
    names = list(families) if families else list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                         f"the suite has {', '.join(FAMILIES)}")
    points = [point for name in names for point in FAMILIES[name]]
    if learner_warm_start not in LEARNER_WARM_STARTS:
        raise ValueError(f"unknown learner warm start {learner_warm_start!r}; one of {', '.join(LEARNER_WARM_STARTS)}")
    if learner_warm_start == "kpa" and learner_scheme != "portfolio":
        raise ValueError("the kpa warm start needs the portfolio learner scheme (the KPA's rule is one of its actions)")
    if learner_warm_start != "none":
        points = [_with_warm_start(point, learner_warm_start) for point in points]
    if learner_scheme not in LEARNER_SCHEMES and learner_scheme != LEARNER_SCHEME:
        raise ValueError(f"unknown learner scheme {learner_scheme!r}; one of {', '.join(LEARNER_SCHEMES)}")
    if learner_scheme != LEARNER_SCHEME:
        points = [_with_scheme(point, learner_scheme) for point in points]
    if learner_params:
        prefixes = {key.split(".", 1)[0] for key in learner_params if "." in key}
        unknown = sorted(prefixes - {p.policy for p in points if p.learned})
        if unknown:
            raise ValueError(f"learner parameter for {unknown[0]!r}, which is not a learner of these families")
        points = [_with_params(point, learner_params) for point in points]
    return points


#: The action schemes a suite's learner points can be run with (``mfrm bench --learner-scheme``).
LEARNER_SCHEMES: tuple[str, ...] = ("staffing", "portfolio")
#: Where the suite's trained learner points can start (``mfrm bench --learner-warm-start``): ``none``
#: (θ₀ = 0, the suite's default), ``ensure``, ``kpa`` (portfolio scheme), ``twins`` (with the learner
#: parameter ``twin_features=true``) or ``fitted``.
LEARNER_WARM_STARTS: tuple[str, ...] = ("none", "ensure", "kpa", "twins", "fitted")


def _with_warm_start(point: Point, warm_start: str) -> Point:
    if not (point.learned and point.mode == "trained"):
        return point
    params = point.overrides.get("policy.params", {}).get(point.policy, {})
    if params.get("scheme") != LEARNER_SCHEME:
        return point
    overrides = {**point.overrides, "policy.params": {point.policy: {**params, "warm_start": warm_start}}}
    return replace(point, label=f"{point.label} [{warm_start}]", overrides=overrides)


def _with_params(point: Point, extra: Mapping[str, Any]) -> Point:
    if not (point.learned and point.mode == "trained"):
        return point
    mine = {key.split(".", 1)[1] if "." in key else key: value for key, value in extra.items()
            if "." not in key or key.split(".", 1)[0] == point.policy}
    if not mine:
        return point
    params = point.overrides.get("policy.params", {}).get(point.policy, {})
    merged = {**params, **mine}
    try:
        make(point.policy, **merged)
    except (TypeError, ValueError) as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(mine.items()))
        raise ValueError(f"{point.policy} with {shown}: {error}") from None
    shown = " ".join(f"{k}={v}" for k, v in sorted(mine.items()))
    overrides = {**point.overrides, "policy.params": {point.policy: merged}}
    return replace(point, label=f"{point.label} [{shown}]", overrides=overrides)


def _with_scheme(point: Point, scheme: str) -> Point:
    params = point.overrides.get("policy.params", {}).get(point.policy, {}) if point.learned else {}
    if params.get("scheme") != LEARNER_SCHEME:
        return point
    overrides = {**point.overrides, "policy.params": {point.policy: {**params, "scheme": scheme}}}
    return replace(point, label=f"{point.label} [{scheme}]", overrides=overrides)


__all__ = ["FAMILIES", "LEARNER_SCHEMES", "LEARNER_WARM_STARTS", "Point", "suite_points"]
