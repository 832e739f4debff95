"""The driver of a learned mean-field agent: one shared policy deciding for every function at once.

Every function is an agent of the serverless mean-field game, and all agents share one policy (the
parameter sharing of Mao et al., NeurIPS 2022: one π(·|s, μ) for the whole population). Each tick
:class:`SharedPolicyAgent` builds the state vectors of all functions
(:mod:`policies.serverless_features`), asks the shared learner for π(·|s) of every function at
once, draws one action per function, and remembers (s, a, π(·|s)) as an :class:`AgentStep`. On the
next tick's ``feedback`` it pairs that with the reward each function earned and with the new state
and action (s′, a′) -- the sample (s_k, a_k, r_k, s_{k+1}, a_{k+1}) that Algorithm 2's TD(0) critic
consumes -- so one tick of N functions yields up to N transitions for the one shared critic and
actor (:func:`pair_transitions`). Transitions with no reward (NaN) or no usable next state are
skipped, never read as zero.

The learner behind the driver is anything with the :class:`SharedLearner` interface: the linear
learners of :mod:`policies.nac_linear` and the MLP learner of :mod:`policies.nac_nn`. The driver
also owns what both share: reward centring, the checkpoint state of the decision whose reward is
still due (keys under :data:`PENDING_PREFIX`), and the routing of a factory's flat keyword
parameters to its settings groups (:func:`split_params`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import numpy as np

from policies.history import HISTORY_FEATURES, ArrivalHistory
from policies.imitation import imitation_rows, likeliest_temperature
from policies.record import RECORD_ENTRIES, LevelRecord
from policies.serverless_features import (
    N_ACTIONS,
    ActionSettings,
    FeatureSettings,
    actions_to_decisions,
    greedy_actions,
    offered_load,
    sample_actions,
    smooth_load,
    state_features,
)
from policies.staffing import (
    ENSURE_ACTION,
    N_PORTFOLIO_ACTIONS,
    N_PORTFOLIO_HISTOGRAM_ACTIONS,
    N_STAFFING_ACTIONS,
    POOL_LEVELS,
    PORTFOLIO_HISTOGRAM_LEVELS,
    PORTFOLIO_LEVELS,
    SHARE_FACTORS,
    STAFFING_FEATURES,
    KpaMembers,
    StaffingSettings,
    action_index,
    cost_features,
    level_pools,
    staffing_decisions,
    staffing_features,
)
from policies.types import ClusterSnapshot, Decisions

#: Bumped whenever the meaning or layout of a learner's state changes; checkpoints carry it.
STATE_VERSION = 3

#: State keys of the decision whose reward is still due; their shapes follow the number of
#: functions, so checkpoints do not compare them (see controller/checkpoint.py).
PENDING_PREFIX = "pending/"

#: The keys the driver itself adds to what ``feedback`` returns, before the learner's own: the
#: transitions formed this tick, the decisions skipped for want of a reward or of a usable next
#: state (counts), the batch's mean raw reward and the running mean r̄ subtracted from it.
AGENT_DIAGNOSTICS: tuple[str, ...] = (
    "transitions",
    "skipped_no_reward",
    "skipped_no_next_state",
    "mean_reward",
    "reward_centre",
)


@dataclass(frozen=True, eq=False)
class Transitions:
    """A batch of M transitions (s, a, r, s′, a′) of the shared policy, gathered over functions."""

    x: np.ndarray
    """(M, d) state vectors x(s)."""
    action: np.ndarray
    """(M,) action taken in s, int."""
    reward: np.ndarray
    """(M,) reward earned for it, in [0, 1], finite."""
    x_next: np.ndarray
    """(M, d) state vectors x(s′) one tick later."""
    action_next: np.ndarray
    """(M,) action taken in s′ (Algorithm 2's a_{k+1}), int."""
    probs: np.ndarray
    """(M, A) π(·|s) of the policy that chose ``action`` (the behaviour policy)."""
    probs_next: np.ndarray
    """(M, A) π(·|s′) of the policy that chose ``action_next``."""

    def __len__(self) -> int:
        return len(self.action)


class SharedLearner(Protocol):
    """What the driver needs from a learner: a batched policy, an update, and its state."""

    diagnostics: tuple[str, ...]
    """Every key :meth:`update` returns."""

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """π(·|s) for every row of ``x`` (N, d): an (N, A) array whose rows sum to 1."""
        ...

    def update(self, batch: Transitions) -> dict[str, float]:
        """Learn from one tick's transitions; returns diagnostics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: arrays (numpy or torch) and JSON-able values."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...

    def signature(self) -> dict[str, Any]:
        """The shapes a checkpoint must agree with (feature dimension, actions, network sizes)."""
        ...

    def prefer(self, action: int, logit: float, bias_entry: float) -> None:
        """Start the policy preferring ``action`` by ``logit`` over every other action, in every state
        (a warm start; learning moves it from there); ``bias_entry`` is x(s)'s constant first entry."""
        ...

    def sharpen(self, factor: float) -> None:
        """Multiply every logit of the policy by ``factor`` in every state (a temperature of 1/factor)."""
        ...

    def add_logits(self, weights: np.ndarray) -> None:
        """Add ``weights[a] · x(s)`` to action a's logit in every state (``weights`` (A, d)): a warm start
        that is a linear rule of the state. Only non-negative entries of x(s) may carry a weight (a
        network passes each such entry through a unit of its hidden layer)."""
        ...

    x_blocks: int
    """Equal blocks of x(s) of which every state fills one, each with its own weights (1: no blocks)."""

    novel_fit_l2: float
    """The penalty of the second block's fit when ``AgentSettings.novel_fit_l2`` is unset."""

    def imitate_block(self, block: int, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        """:meth:`imitate` for the weights of one block of x(s) only, ``x`` holding that block's entries."""
        ...

    def sharpen_block(self, block: int, factor: float) -> None:
        """:meth:`sharpen` in the states that fill block ``block`` only."""
        ...

    def imitate(self, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator, l2: float | None = None) -> float:
        """Replace the policy by the one of its form that best predicts ``actions`` in states ``x``
        (maximum likelihood, ``policies.imitation``): a fitted warm start. ``l2``: the penalty on the
        fitted weights (None: the learner's own default). Returns the share of states whose most
        probable action is the label."""
        ...

    def imitate_costs(self, x: np.ndarray, costs: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        """Replace the policy by the one of its form with the least expected cost, ``costs`` (N, A)
        giving every action's cost in each state of ``x`` (``policies.imitation``), with the penalty
        ``l2`` as in :meth:`imitate`. Returns the share of states whose most probable action is their
        cheapest."""
        ...


@dataclass(frozen=True, eq=False)
class AgentStep:
    """What the driver knew and did at one tick."""

    time_s: float
    """The snapshot's time, s."""
    names: tuple[str, ...]
    """The snapshot's function names (the rows of the arrays below)."""
    x: np.ndarray
    """(N, d) state vectors."""
    usable: np.ndarray
    """(N,) rows with complete data (the only rows decided and learned from)."""
    actions: np.ndarray
    """(N,) the action drawn for every row."""
    probs: np.ndarray
    """(N, A) π(·|s) the actions were drawn from."""
    restored: bool = False
    """Read from a checkpoint: pair it only with a later tick of the same functions."""
    acted: np.ndarray | None = None
    """(N,) rows whose move was applied (False where the function was left to the platform as
    idle); None until ``decide`` has mapped the actions. Only these rows start a transition."""
    decided: bool = True
    """Whether the actions were drawn at this tick (False: held from an earlier tick,
    ``AgentSettings.decision_ticks``)."""

    def precedes(self, snapshot: ClusterSnapshot) -> bool:
        """Whether ``snapshot`` can be the tick after this one (always true within one run)."""
        if not self.restored:
            return True
        names = snapshot.functions.names
        return snapshot.time_s > self.time_s and tuple(names[: len(self.names)]) == self.names


@dataclass(frozen=True)
class AgentSettings:
    """How the driver uses its learner."""

    frozen: bool = False
    """No learning: ``feedback`` does nothing; decisions only (evaluation, or a trained policy in production)."""
    greedy: bool = False
    """Choose the most probable move instead of sampling one. Sampling (the default) is what the
    learner's theory assumes; greedy is for evaluating a frozen policy without exploration noise."""
    label: str = "nac"
    """Prefix of every decision's reason string."""
    reward_centering: float = 0.01
    """Step size of the running mean r̄ of the reward that is subtracted from every reward before
    the learner sees it (reward centring, Naik et al. 2024); 0 turns it off. A constant shift of r
    shifts every soft Q-value by the same c/(1 − γ), so π's target softmax(q/λ) is unchanged; but
    a critic that starts at q̂ = 0 under values of r/(1 − γ) ≈ 80 rises fastest for the moves it
    samples most, which then look best: centred, the values are O(1) and that bias is gone.
    0.01 per tick averages over ~100 ticks (17 minutes): long against one burst, short against
    the diurnal swing of the trace."""

    scheme: str = "moves"
    """How an action becomes targets: ``moves`` (the nine moves of ``policies.serverless_features``:
    the pool and the shares one step up, down or held, inside the staffing band) or ``staffing``
    (``policies.staffing``: per function a staffing constant or the platform's keep-alive, and a
    CPU level) or ``portfolio`` (the staffing scheme's levels and, as further pool levels, the
    Knative pod autoscaler at three target utilisations: per function, whose rule sizes its pool)."""
    warm_start: str = "none"
    """Where the policy starts: ``none`` (θ₀ = 0, the uniform policy, as Algorithm 1 does),
    ``ensure`` (``staffing`` and ``portfolio`` schemes: the policy starts as ENSURE's pool rule, its default
    constant with OpenWhisk's shares, chosen with probability ``warm_start_probability`` in every
    state), so a fresh deployment is not worse than ENSURE from its first tick, ``kpa``
    (``portfolio`` scheme: the same, from the KPA at its default target 0.7 with OpenWhisk's shares),
    ``twins`` (with ``twin_features``: the policy starts as "follow the twins", each level's logit
    −``twin_sharpness`` times its regret for the function, and OpenWhisk's shares preferred at each level
    with probability ``warm_start_probability``; a rule of the state that means the same for every
    function, so it needs no plays and no fit), or ``fitted`` (``staffing`` and ``portfolio``: training first plays every pool level for every
    function over the training window, labels each function with the level whose violations and
    memory its reward prices lowest, and fits the policy to those labels in every state the functions
    were in, ``controller.warm_fit``; the natural actor-critic then learns from that θ₀). ``fitted``
    is made by ``mfrm train`` (and the bench's training); a policy built with it and not trained
    starts from θ₀ = 0."""
    warm_start_probability: float = 0.9
    """With a warm start: the initial probability of the heuristic's action in every state. 0.9
    keeps some exploration of the others from the start."""
    decision_ticks: int = 1
    """Ticks a drawn action is held for (action repeat): every function's action is drawn every this
    many ticks and repeated in between, and the learner gets one transition per held action, from the
    state it was drawn in to the state of the next draw, with the mean reward of the ticks between.
    1 draws every tick (the game as the paper states it). A staffing level's effect on violations
    shows over minutes — a pool that follows the KPA for one tick in ten is not the KPA's pool — so a
    choice held for several ticks is what the reward can tell apart."""
    fit_cold_starts: str = "free"
    """With ``warm_start=fitted``: ``free`` labels each function with the level cheapest in violations
    and memory; ``ensure`` only among the levels that had no more cold starts for it than ENSURE's
    c = 1.06 on the training window (``controller.warm_fit.cheapest_levels``); ``priced`` counts each
    cold start as a violation. The level twins (``twin_features``) price the levels by the same rule.
    ``free`` is what the fitted warm start was first judged with; under it the fitted policies had more
    cold starts than ENSURE. With ``warm_start=twins`` it is the twins' rule alone."""
    fit_target: str = "label"
    """With ``warm_start=fitted``: ``label`` fits the policy to each function's cheapest level (the
    most likely action in its states); ``cost`` to every level's cost for the function, as its regret
    against the cheapest (the policy of least expected cost, ``policies.imitation``), so functions whose
    levels nearly tie hardly move the fit and those whose choice matters do. Levels the cold-start
    rule excludes, and share factors the plays did not try, cost more than any allowed level. ``twins``
    (with ``twin_features``) labels each state with the level its twins' entries price lowest in that
    state (under the same cold-start rule), the function's window label where that is among the
    lowest: the heuristic "follow the twins", fitted in the states the plays were in."""
    fit_l2: float | None = None
    """With ``warm_start=fitted``: the L2 penalty on the fitted policy's weights, ``fit_l2``/2 · ‖θ‖²
    (on features rescaled to unit size, ``policies.imitation``); None keeps the learner's own (NAC-Linear
    0.001, NAC-NN none). A fit of one sample of functions' labels can tell them apart by whatever sets
    them apart there; a stronger penalty keeps only what the labels share broadly. It also flattens the
    policy a learner samples from (docs/evaluation.md: judged at 0.1 it did worse)."""
    fit_temperature: bool = False
    """With ``warm_start=fitted`` and ``fit_target=label``: after the fit, scale the policy's logits by
    the factor that makes the labels likeliest in the fitted states (``policies.imitation.
    likeliest_temperature``). A penalised fit sets both which level the policy prefers and how firmly;
    a learner draws its levels from the policy, so a strong ``fit_l2`` that ranks the levels well for
    other functions leaves it drawing nearly uniformly. This keeps the ranking and fits the firmness."""
    histogram_member: bool = False
    """``portfolio`` scheme: one more pool level, ``hist``, that follows the hybrid-histogram keep-alive
    policy (``policies.baselines.hybrid_histogram``, default settings; it loads a function only inside
    the window its idle-time histogram predicts). False keeps the portfolio's nine levels (and its
    checkpoints' shape)."""
    cost_features: bool = False
    """``staffing`` and ``portfolio`` schemes: add to x(s), per pool level, what the level would cost the
    function this tick by a queueing model — its idle memory and its chance of a wait, in the operator
    reward's currencies (``policies.staffing.cost_features``). The reward is linear in both, but they
    are products and non-linear functions of load, pool and memory that no linear critic of the other
    features can form, so without them a linear critic barely tells one function's best level from
    another's. False keeps the game's features alone (and the shipped checkpoints' shape)."""
    history_features: bool = False
    """``staffing`` and ``portfolio`` schemes: add to x(s) five entries of the function's longer arrival
    history — minutes since it was last busy, how often it is busy over an hour, and the typical length,
    spread and count of its idle gaps (``policies.history``). Which pool level suits a function over an
    hour shows in its history, not in one tick: idle functions look alike in the game's features whether
    they are invoked every 5 minutes or every 5 hours. False keeps the game's features alone (and the
    shipped checkpoints' shape)."""
    record_features: bool = False
    """``staffing`` and ``portfolio`` schemes: add to x(s), per pool level, that level's record for the
    function over the last hour — the share of its arrivals the level's pools would have left without a
    warm container, and the idle memory they would have held (``policies.record``). Every level decides
    a pool for every function each tick, so the record is known for the levels a function does not
    follow too; unlike the function's own features it means the same for every function ("this level
    would have served you well"), which is what a policy fitted on one sample of functions can carry to
    another. False keeps the game's features alone (and the shipped checkpoints' shape)."""
    twin_features: bool = False
    """``staffing`` and ``portfolio`` schemes: add to x(s), per pool level, its *regret* for the function:
    how much more than the cheapest level it would have cost over the last hour, by simulated twins of
    the cluster, one per level, fed the arrivals every function had (``controller.level_twins``; priced
    at the reward's α as the fitted warm start prices the levels). Like the records it means the same for
    every function; unlike them it counts what a level's pools would have done to the function's
    latency, cold starts and queueing included. The twins know the functions' profiles, so they exist
    where the cluster is simulated: a run there attaches them, and deciding without them is refused.
    False keeps the game's features alone (and the shipped checkpoints' shape)."""
    twin_sharpness: float = 30.0
    """With ``warm_start=twins``: the weight k of a level's regret r in its starting logit, −k·r. A level
    of regret r is drawn e^{−k r} times as often as the level of least regret (k = 30: a level 10% dearer
    over the hour, r ≈ 0.05, one time in 4.5; one the cold-start rule excludes, r = 1, never)."""
    novel_block: bool = False
    """With ``warm_start=fitted``: x(s) in two blocks, one for the functions the fit was made on (those
    with a labelled state in the training window) and one for every other function, x(s) in the block
    that applies and zeros in the other; so the shared policy keeps two sets of weights (NAC-Linear: of
    Θ; NAC-NN: an actor and a critic network per block), fitted apart on the same labels. The first is fitted as ``fit_l2`` and ``fit_temperature``
    say and learns as before; the second with the stronger penalty ``novel_fit_l2``, which keeps only
    what the labels share broadly, and its firmness then fitted to the labels (as ``fit_temperature``).
    A fit of a sample's labels can tell those functions apart by whatever happens to set them apart
    there, which serves them and misleads for any other function; one penalty cannot serve both
    (docs/evaluation.md). The policy is still one linear softmax over φ(s, a), updated by the same
    natural actor-critic (or NAC-NN's KL-penalised step); a function it was not fitted on keeps the second
    block however long it runs. False keeps one block (and the shipped checkpoints' shape)."""
    novel_fit_l2: float | None = None
    """With ``novel_block``: the L2 penalty of the second block's fit, in ``fit_l2``'s form (on the rescaled
    features' weights for NAC-Linear, on every weight of the block's actor for NAC-NN); None keeps the
    learner's own (its ``novel_fit_l2``: NAC-Linear 0.1, NAC-NN 0.01, each chosen on the tuning copy of
    unseen-functions, docs/evaluation.md)."""
    fallback: str = "none"
    """``ensure``: while learning online, hand control to ENSURE whenever the learner is measurably
    worse than ENSURE would have been, and take it back when it no longer is
    (``policies.fallback``); ``none``: the learner always decides."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "bool" and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"AgentSettings.{item.name}={value!r}: must be true or false")
        if not (math.isfinite(self.reward_centering) and 0 <= self.reward_centering <= 1):
            raise ValueError(f"AgentSettings.reward_centering={self.reward_centering}: must be in [0, 1]")
        if self.scheme not in ACTION_SCHEMES:
            raise ValueError(f"AgentSettings.scheme={self.scheme!r}: must be one of {', '.join(ACTION_SCHEMES)}")
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"AgentSettings.warm_start={self.warm_start!r}: must be one of {', '.join(WARM_STARTS)}")
        if self.warm_start == "ensure" and not self.staffed:
            raise ValueError("AgentSettings.warm_start=ensure needs scheme=staffing or portfolio (ENSURE's rule is "
                             "one of their actions)")
        if self.warm_start == "kpa" and self.scheme != "portfolio":
            raise ValueError("AgentSettings.warm_start=kpa needs scheme=portfolio (the KPA's rule is one of its "
                             "actions)")
        if self.warm_start == "fitted" and not self.staffed:
            raise ValueError("AgentSettings.warm_start=fitted needs scheme=staffing or portfolio (it chooses among "
                             "their pool levels)")
        if self.warm_start == "twins" and not self.twin_features:
            raise ValueError("AgentSettings.warm_start=twins needs twin_features=true (the rule it starts as reads "
                             "the twins' regrets)")
        if self.warm_start == "twins" and self.novel_block:
            raise ValueError("AgentSettings.warm_start=twins with novel_block: the second block is a fit, and this "
                             "warm start has none")
        if not (isinstance(self.twin_sharpness, (int, float)) and not isinstance(self.twin_sharpness, bool)
                and math.isfinite(self.twin_sharpness) and self.twin_sharpness >= 0):
            raise ValueError(f"AgentSettings.twin_sharpness={self.twin_sharpness!r}: must be a number >= 0")
        if self.warm_start == "kpa" and self.fallback != "none":
            raise ValueError("AgentSettings.warm_start=kpa with fallback=ensure: the fallback hands control to "
                             "ENSURE, not to the heuristic the learner started from; use warm_start=ensure")
        if self.fallback not in ("none", "ensure"):
            raise ValueError(f"AgentSettings.fallback={self.fallback!r}: must be none or ensure")
        if self.fit_cold_starts not in ("free", "ensure", "priced"):
            raise ValueError(f"AgentSettings.fit_cold_starts={self.fit_cold_starts!r}: must be free, ensure or priced")
        if self.fit_l2 is not None and not (isinstance(self.fit_l2, (int, float)) and not isinstance(self.fit_l2, bool)
                                            and math.isfinite(self.fit_l2) and self.fit_l2 >= 0):
            raise ValueError(f"AgentSettings.fit_l2={self.fit_l2}: must be a number >= 0 (or unset)")
        if self.fit_target not in ("label", "cost", "twins"):
            raise ValueError(f"AgentSettings.fit_target={self.fit_target!r}: must be label, cost or twins")
        if self.fit_target == "twins" and not self.twin_features:
            raise ValueError("AgentSettings.fit_target=twins needs twin_features=true (its labels are read from "
                             "the twins' entries of each state)")
        if self.fit_temperature and self.fit_target != "label":
            raise ValueError("AgentSettings.fit_temperature needs fit_target=label (a cost fit's likeliest "
                             "temperature is always the greedy policy)")
        if self.novel_block and (self.warm_start != "fitted" or self.fit_target != "label"):
            raise ValueError("AgentSettings.novel_block needs warm_start=fitted and fit_target=label (its second "
                             "block is a fit of the same labels)")
        if self.novel_fit_l2 is not None and (
                isinstance(self.novel_fit_l2, bool) or not isinstance(self.novel_fit_l2, (int, float))
                or not (math.isfinite(self.novel_fit_l2) and self.novel_fit_l2 >= 0)):
            raise ValueError(f"AgentSettings.novel_fit_l2={self.novel_fit_l2!r}: must be a number >= 0 (or unset)")
        if self.histogram_member and self.scheme != "portfolio":
            raise ValueError("AgentSettings.histogram_member needs scheme=portfolio (it adds one of its members)")
        if self.cost_features and not self.staffed:
            raise ValueError("AgentSettings.cost_features needs scheme=staffing or portfolio (it prices their pool "
                             "levels)")
        if self.history_features and not self.staffed:
            raise ValueError("AgentSettings.history_features needs scheme=staffing or portfolio (its entries join "
                             "their features)")
        if self.twin_features and not self.staffed:
            raise ValueError("AgentSettings.twin_features needs scheme=staffing or portfolio (its entries are one "
                             "per pool level)")
        if self.record_features and not self.staffed:
            raise ValueError("AgentSettings.record_features needs scheme=staffing or portfolio (it keeps a record of "
                             "their pool levels)")
        if self.decision_ticks < 1:
            raise ValueError(f"AgentSettings.decision_ticks={self.decision_ticks}: must be >= 1")
        if not 0 < self.warm_start_probability < 1:
            raise ValueError(f"AgentSettings.warm_start_probability={self.warm_start_probability}: must be in (0, 1)")

    @property
    def staffed(self) -> bool:
        """Whether the scheme sizes pools by staffing levels (``staffing`` or ``portfolio``)."""
        return self.scheme in ("staffing", "portfolio")

    @property
    def n_actions(self) -> int:
        """How many actions the scheme has (the learner's A)."""
        if self.histogram_member:
            return N_PORTFOLIO_HISTOGRAM_ACTIONS
        return ACTION_SCHEMES[self.scheme]

    def state_dim(self, features: FeatureSettings) -> int:
        """Length of the state vector x(s) the learner sees: :meth:`base_state_dim`, twice with
        ``novel_block``."""
        return self.base_state_dim(features) * (2 if self.novel_block else 1)

    def base_state_dim(self, features: FeatureSettings) -> int:
        """Length of one function's features under this scheme: the game's features, and the staffing
        scheme's own (``policies.staffing.STAFFING_FEATURES``) after them."""
        return features.state_dim + self.extra_dim

    @property
    def levels(self) -> tuple[str, ...]:
        """The pool levels of a staffed scheme (empty under ``moves``)."""
        if self.scheme == "portfolio":
            return PORTFOLIO_HISTOGRAM_LEVELS if self.histogram_member else PORTFOLIO_LEVELS
        return POOL_LEVELS if self.staffed else ()

    @property
    def extra_dim(self) -> int:
        """Entries the scheme adds after the game's features: the staffing features, and with
        ``cost_features`` two per pool level, with ``history_features`` the history's five, and with
        ``record_features`` two more per pool level, and with ``twin_features`` one more per pool level."""
        if not self.staffed:
            return 0
        return (len(STAFFING_FEATURES) + (2 * len(self.levels) if self.cost_features else 0)
                + (len(HISTORY_FEATURES) if self.history_features else 0)
                + (len(RECORD_ENTRIES) * len(self.levels) if self.record_features else 0)
                + (len(self.levels) if self.twin_features else 0))

    def warm_start_logit(self, among: int | None = None) -> float:
        """The preference of the warm-start action over every other that gives it
        ``warm_start_probability`` among ``among`` actions (None: all A of the scheme): log(p (A − 1) / (1 − p))."""
        p, a = self.warm_start_probability, self.n_actions if among is None else among
        return math.log(p * (a - 1) / (1 - p))


#: The values of ``AgentSettings.warm_start``.
WARM_STARTS: tuple[str, ...] = ("none", "ensure", "kpa", "twins", "fitted")
#: The action a warm start prefers: ENSURE's default constant, or the KPA member at the KPA's default
#: target, each with OpenWhisk's shares.
WARM_START_ACTIONS: dict[str, int] = {"ensure": ENSURE_ACTION, "kpa": action_index("kpa=0.7", 1.0)}

#: The action schemes and their number of actions.
ACTION_SCHEMES: dict[str, int] = {"moves": N_ACTIONS, "staffing": N_STAFFING_ACTIONS,
                                  "portfolio": N_PORTFOLIO_ACTIONS}


class SharedPolicyAgent:
    """The :class:`~policies.types.Learner` of a mean-field agent: one shared learner, all functions.

    Keeps the last two ticks' (s, a, π(·|s)) so that ``feedback`` can be called before or after
    ``decide`` of the same tick: either way the reward of tick t's decision is paired with tick
    t + 1's state and action.

    ``diagnostics`` names every key ``feedback`` may return under this policy's name, whichever
    learner (mode) it was built with; by default the driver's :data:`AGENT_DIAGNOSTICS` followed by
    the learner's own. It must contain both.
    """

    def __init__(
        self,
        name: str,
        learner: SharedLearner,
        *,
        features: FeatureSettings,
        actions: ActionSettings,
        agent: AgentSettings,
        seed: int,
        staffing: StaffingSettings | None = None,
        settings_record: Mapping[str, Any],
        diagnostics: Sequence[str] | None = None,
    ) -> None:
        returned = (*AGENT_DIAGNOSTICS, *learner.diagnostics)
        declared = returned if diagnostics is None else tuple(diagnostics)
        undeclared = [key for key in returned if key not in declared]
        if undeclared:
            raise ValueError(
                f"policy {name!r}: diagnostics must list every key feedback returns; missing {undeclared}"
            )
        self.name = name
        """The registered name of the policy (also the name in its checkpoints)."""
        self.learner = learner
        """The shared learner: π(·|s) for all functions, the update, the learned state."""
        self.features = features
        """How snapshots become state vectors x(s)."""
        self.actions = actions
        """How the nine moves become container and CPU-share targets."""
        self.agent = agent
        """How the driver uses the learner (frozen, greedy, reward centring, action scheme)."""
        self.staffing = staffing or StaffingSettings()
        """The staffing scheme's constants (``agent.scheme`` ``staffing`` or ``portfolio``)."""
        self.members = KpaMembers(histogram=agent.histogram_member) if agent.scheme == "portfolio" else None
        """The rules a ``portfolio`` pool level can follow (None under the other schemes)."""
        self.history = ArrivalHistory() if agent.history_features else None
        """Each function's longer arrival history (``agent.history_features``; None without)."""
        self.record = LevelRecord(agent.levels) if agent.record_features else None
        """Each pool level's record for each function (``agent.record_features``; None without)."""
        self.level_twins: Any = None
        """With ``agent.twin_features``: the simulated twins of the cluster, one per pool level, attached by
        the run (``controller.level_twins``); anything with ``features(snapshot) -> (N, levels)``."""
        if agent.novel_block and getattr(learner, "x_blocks", 1) != 2:
            raise ValueError(f"policy {name!r}: AgentSettings.novel_block needs a learner built for two blocks of "
                             "x(s); this one has one")
        self.known: frozenset[str] = frozenset()
        """With ``agent.novel_block``: the functions the fit was made on (the others use the second block;
        before any fit every function uses the first)."""
        self._known_rows: tuple[tuple[str, ...], np.ndarray] | None = None
        """The last function list's rows in ``known`` (the list rarely changes between ticks)."""
        if agent.warm_start in WARM_START_ACTIONS:
            learner.prefer(WARM_START_ACTIONS[agent.warm_start], agent.warm_start_logit(), self._bias_entry())
        if agent.warm_start == "twins":
            self._start_as_twins()
        self.seed = seed
        """The seed the driver's and the learner's generators were spawned from."""
        self.settings_record = dict(settings_record)
        """Every hyperparameter of the policy, grouped as the factory routed them (saved with results)."""
        self.diagnostics: tuple[str, ...] = declared
        """Every key ``feedback`` may return (see the class docstring)."""
        self.rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
        self._before: AgentStep | None = None
        """The tick decided before ``_latest`` (its reward arrives with ``_latest``'s tick)."""
        self._latest: AgentStep | None = None
        """The last tick decided (or drawn by ``feedback`` ahead of ``decide``)."""
        self._prepared: AgentStep | None = None
        """Actions ``feedback`` drew for a tick whose ``decide`` has not run yet; ``decide`` reuses them."""
        self._fed_time: float | None = None
        """Snapshot time of the last ``feedback`` (a second call for the same tick learns nothing)."""
        self.reward_mean = 0.0
        """The running mean r̄ subtracted from rewards (``AgentSettings.reward_centering``)."""
        self.reward_batches = 0
        """Batches folded into ``reward_mean`` (the first one sets it)."""
        self.load: np.ndarray | None = None
        """Smoothed offered load per function the staffing band follows (``smooth_load``)."""
        self.load_time: float | None = None
        """Snapshot time ``load`` was last advanced at (once per tick, however often decide runs)."""
        self._held: AgentStep | None = None
        """With ``decision_ticks`` > 1: the tick whose actions are being held."""
        self._open: AgentStep | None = None
        """With ``decision_ticks`` > 1: the tick whose held actions await their transition."""
        self._held_reward: np.ndarray | None = None
        """Sum of the rewards of the held actions so far, per function."""
        self._held_count: np.ndarray | None = None
        """Ticks summed into ``_held_reward``, per function."""

    def imitate(self, x: np.ndarray, actions: np.ndarray) -> float:
        """Fit the shared policy to ``actions`` in states ``x`` (rows of this driver's x(s); with
        ``agent.novel_block`` one function's features, :meth:`base_state`): a fitted warm start
        (``policies.imitation``). Returns the share of states whose most probable action is the label."""
        if self.agent.novel_block:
            return self._imitate_blocks(x, actions)
        accuracy = float(self.learner.imitate(x, actions, self.rng, l2=self.agent.fit_l2))
        if self.agent.fit_temperature:
            x_fit, labels = imitation_rows(x, actions, self.rng)
            probs = np.clip(self.learner.probabilities(x_fit), 1e-300, None)
            self.learner.sharpen(likeliest_temperature(np.log(probs), labels))
        return accuracy

    def _imitate_blocks(self, x: np.ndarray, actions: np.ndarray) -> float:
        """The two blocks of ``agent.novel_block`` fitted to the same labels, the first as a single
        block is, the second with ``novel_fit_l2`` and its fitted temperature; the first's accuracy."""
        d = self.agent.base_state_dim(self.features)
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"{self.name}: a two-block fit needs one function's features (N, {d}); got {x.shape}")
        accuracy = float(self.learner.imitate_block(0, x, actions, self.rng, l2=self.agent.fit_l2))
        novel_l2 = self.learner.novel_fit_l2 if self.agent.novel_fit_l2 is None else self.agent.novel_fit_l2
        self.learner.imitate_block(1, x, actions, self.rng, l2=novel_l2)
        x_fit, labels = imitation_rows(x, actions, self.rng)
        for block in (0, 1) if self.agent.fit_temperature else (1,):
            placed = np.zeros((len(x_fit), 2 * d))
            placed[:, block * d:(block + 1) * d] = x_fit
            probs = np.clip(self.learner.probabilities(placed), 1e-300, None)
            self.learner.sharpen_block(block, likeliest_temperature(np.log(probs), labels))
        return accuracy

    def know(self, names: Sequence[str]) -> None:
        """With ``agent.novel_block``: the functions the fit was made on (they use the first block)."""
        self.known = frozenset(str(n) for n in names)
        self._known_rows = None

    def _novel_rows(self, names: tuple[str, ...]) -> np.ndarray:
        """(N,) which of ``names`` use the second block: those not in ``known`` (none before a fit)."""
        cached = self._known_rows
        if cached is not None and cached[0] is names:
            return cached[1]
        novel = np.array([n not in self.known for n in names], dtype=bool) if self.known else np.zeros(len(names), bool)
        self._known_rows = (names, novel)
        return novel

    def imitate_costs(self, x: np.ndarray, costs: np.ndarray) -> float:
        """Fit the shared policy to every action's cost ``costs`` (N, A) in states ``x``: a fitted warm
        start by expected cost (``AgentSettings.fit_target``). Returns the share of states whose most
        probable action is their cheapest."""
        return float(self.learner.imitate_costs(x, costs, self.rng, l2=self.agent.fit_l2))

    def _start_as_twins(self) -> None:
        """θ₀ of ``warm_start=twins``: each action's logit −k·(its level's regret entry), plus, at every
        level, the preference for OpenWhisk's shares (share factor 1) that the warm-start probability gives
        over the other factors."""
        levels = self.agent.levels
        d = self.agent.base_state_dim(self.features)
        # The twins' entries are the last of x(s), each a regret divided by x(s)'s scale (base_state).
        first = d - len(levels)
        weights = np.zeros((self.agent.n_actions, d))
        for index, level in enumerate(levels):
            for share in SHARE_FACTORS:
                weights[action_index(level, share), first + index] = -self.agent.twin_sharpness * self._x_scale()
        self.learner.add_logits(weights)
        logit = self.agent.warm_start_logit(among=len(SHARE_FACTORS))
        for level in levels:
            self.learner.prefer(action_index(level, 1.0), logit, self._bias_entry())

    def _x_scale(self) -> float:
        """What x(s) is divided by under this scheme: sqrt of its squared-norm bound (``base_state``)."""
        base = self.features.state_dim - self.features.mu_bins + 1  # the game's vector's bound
        return math.sqrt(base + self.agent.extra_dim)

    def _bias_entry(self) -> float:
        """The value of x(s)'s first entry (the bias) in every state, under this scheme's scaling."""
        return 1.0 / self._x_scale()

    def _state(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state vectors x(s) the learner sees for every function (‖x‖ <= 1) and which rows are
        usable: :meth:`base_state`, in the block that applies under ``agent.novel_block``."""
        x, usable = self.base_state(snapshot, mu)
        if not self.agent.novel_block:
            return x, usable
        novel = self._novel_rows(snapshot.functions.names)
        d = x.shape[1]
        blocked = np.zeros((len(x), 2 * d))
        blocked[~novel, :d] = x[~novel]
        blocked[novel, d:] = x[novel]
        return blocked, usable

    def base_state(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One function's features for every function (‖x‖ <= 1) and which rows are usable."""
        feats = state_features(snapshot, mu, self.features)
        if not self.agent.staffed:
            return feats.x, feats.usable
        # The game's vector is scaled by 1/sqrt(b) (b its squared-norm bound); the scheme's entries
        # (each in [0, 1]) join it and the whole is rescaled by 1/sqrt(b + extra), keeping ‖x‖ <= 1.
        bound = self.features.state_dim - self.features.mu_bins + 1
        load = self._staffing_load(snapshot)
        extra = [staffing_features(snapshot, load)]
        if self.agent.cost_features:
            followed = self.members.counts(snapshot, mu) if self.members is not None else None
            extra.append(cost_features(snapshot, load, self.agent.levels, followed))
        if self.history is not None:
            extra.append(self.history.features(snapshot))
        if self.record is not None:
            followed = self.members.counts(snapshot, mu) if self.members is not None else None
            pools = level_pools(snapshot, load, self.agent.levels, followed)
            extra.append(self.record.features(snapshot, pools, load, self.actions.idle_load))
        if self.agent.twin_features:
            if self.level_twins is None:
                raise RuntimeError(f"policy {self.name!r}: twin_features needs the simulated twins of the cluster, "
                                   "which only a run on the embedded simulated cluster attaches")
            extra.append(np.asarray(self.level_twins.features(snapshot), dtype=float))
        x = np.hstack([feats.x * math.sqrt(bound), *extra]) / math.sqrt(bound + self.agent.extra_dim)
        return np.where(feats.usable[:, None], x, 0.0), feats.usable

    def _observe(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> AgentStep:
        x, usable = self._state(snapshot, mu)
        probs = self.learner.probabilities(x)
        held = self._held
        if (self.agent.decision_ticks > 1 and held is not None and held.names == snapshot.functions.names
                and 0 < snapshot.time_s - held.time_s < self.agent.decision_ticks * snapshot.tick_s - 1e-9):
            return AgentStep(float(snapshot.time_s), snapshot.functions.names, x, usable, held.actions.copy(), probs,
                             decided=False)
        chosen = greedy_actions(probs) if self.agent.greedy else sample_actions(probs, self.rng)
        step = AgentStep(float(snapshot.time_s), snapshot.functions.names, x, usable, chosen, probs)
        self._held = step
        return step

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        step = self._prepared
        if step is None or step.time_s != snapshot.time_s or len(step.actions) != len(snapshot.functions):
            step = self._observe(snapshot, mu)
        self._prepared = None
        if self._latest is None or self._latest.time_s != step.time_s:
            self._before, self._latest = self._latest, step
        if self.agent.staffed:
            followed = self.members.counts(snapshot, mu) if self.members is not None else None
            decisions = staffing_decisions(snapshot, step.actions, step.usable, self._staffing_load(snapshot),
                                           self.staffing, self.agent.label, self.actions.idle_load, followed)
        else:
            decisions = actions_to_decisions(
                snapshot.functions,
                step.actions,
                step.usable,
                self.actions,
                self.agent.label,
                snapshot.tick_s,
                load=self._staffing_load(snapshot),
            )
        if self._latest is not None and self._latest.time_s == step.time_s and self._latest.acted is None:
            self._latest = replace(self._latest, acted=np.asarray(decisions.action) >= 0)
        return decisions

    def _staffing_load(self, snapshot: ClusterSnapshot) -> np.ndarray:
        """max(tick's offered load, its smoothed value): what the staffing band staffs for."""
        tick_load = offered_load(snapshot.functions, snapshot.tick_s)
        if self.load_time != snapshot.time_s or self.load is None or len(self.load) != len(tick_load):
            self.load = smooth_load(self.load, tick_load, snapshot.tick_s, self.actions)
            self.load_time = float(snapshot.time_s)
        return np.maximum(tick_load, self.load)

    def feedback(self, snapshot: ClusterSnapshot, mu: np.ndarray, rewards: np.ndarray) -> Mapping[str, float]:
        if self.agent.frozen:
            return {}
        rewards = np.asarray(rewards, dtype=float)
        n = len(snapshot.functions)
        if rewards.shape != (n,):
            raise ValueError(f"{self.name}.feedback: rewards has shape {rewards.shape}, expected ({n},)")
        if self._fed_time == snapshot.time_s:
            return {"transitions": 0.0}
        if self._latest is not None and self._latest.time_s == snapshot.time_s:
            previous, current = self._before, self._latest  # decide ran first this tick
        else:
            previous, current = self._latest, self._observe(snapshot, mu)
            self._prepared = current  # decide of this tick reuses these actions
        self._fed_time = snapshot.time_s
        if previous is None or not previous.precedes(snapshot):
            self._open = current if current.decided else None
            self._held_reward = self._held_count = None
            return {"transitions": 0.0}
        if self.agent.decision_ticks > 1:
            ended = self._held_transition(previous, current, rewards)
            if ended is None:
                return {"transitions": 0.0}
            previous, rewards = ended
        batch, skipped_reward, skipped_next = pair_transitions(previous, current, rewards)
        out: dict[str, float] = {
            "transitions": float(len(batch)),
            "skipped_no_reward": float(skipped_reward),
            "skipped_no_next_state": float(skipped_next),
        }
        if len(batch) == 0:
            return out
        out["mean_reward"] = float(np.mean(batch.reward))
        out["reward_centre"] = self._centre(out["mean_reward"])
        if self.agent.reward_centering:
            batch = replace(batch, reward=batch.reward - out["reward_centre"])
        out.update(self.learner.update(batch))
        return out

    def _held_transition(self, previous: AgentStep, current: AgentStep, rewards: np.ndarray
                         ) -> tuple[AgentStep, np.ndarray] | None:
        """Fold ``previous``'s rewards into the held actions' sums; when ``current`` draws new actions,
        the step the held ones were drawn at and their mean rewards (NaN for a function with none)."""
        m = len(previous.actions)
        if self._held_reward is None or len(self._held_reward) != m:
            self._held_reward, self._held_count = np.zeros(m), np.zeros(m)
        had = previous.usable if previous.acted is None else previous.usable & previous.acted
        counted = had & np.isfinite(rewards[:m])
        self._held_reward[counted] += rewards[:m][counted]
        self._held_count[counted] += 1
        if not current.decided:
            return None
        opened, self._open = self._open, current
        sums, counts = self._held_reward, self._held_count
        self._held_reward = self._held_count = None
        if opened is None or len(opened.actions) != m:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return opened, np.concatenate([mean, np.full(max(len(rewards) - m, 0), np.nan)])

    def pending_batch(self, rewards: np.ndarray) -> Transitions:
        """The transitions the last two decided ticks form with ``rewards`` (uncentred), changing nothing.

        What ``feedback`` would hand the learner for those ticks; for measuring an update on its own.
        """
        if self._before is None or self._latest is None:
            raise ValueError(f"{self.name}.pending_batch: decide has not run on two ticks yet")
        return pair_transitions(self._before, self._latest, np.asarray(rewards, dtype=float))[0]

    def _centre(self, batch_mean: float) -> float:
        """Fold one batch's mean reward into r̄ and return r̄ (0 with centring off)."""
        rate = self.agent.reward_centering
        if rate == 0:
            return 0.0
        self.reward_mean = batch_mean if self.reward_batches == 0 else self.reward_mean + rate * (
            batch_mean - self.reward_mean
        )
        self.reward_batches += 1
        return self.reward_mean

    # ---- checkpoints (controller/checkpoint.py stores these)

    def state_dict(self) -> dict[str, Any]:
        """Learner state under ``learner/``, the driver's generator, and the decision whose reward is due.

        With the pending decision a resumed run learns from the first tick after the checkpoint
        exactly as the uninterrupted run would have.
        """
        state = {f"learner/{key}": value for key, value in self.learner.state_dict().items()}
        state["agent/rng"] = self.rng.bit_generator.state
        state["agent/reward_mean"] = self.reward_mean
        state["agent/reward_batches"] = self.reward_batches
        if self.agent.novel_block:
            state["agent/known_functions"] = sorted(self.known)
        if self.load is not None:
            state[f"{PENDING_PREFIX}load"] = self.load.copy()
            state[f"{PENDING_PREFIX}load_time"] = self.load_time
        step = self._latest
        if step is not None:
            state.update(
                {
                    f"{PENDING_PREFIX}time_s": step.time_s,
                    f"{PENDING_PREFIX}names": list(step.names),
                    f"{PENDING_PREFIX}x": step.x.copy(),
                    f"{PENDING_PREFIX}usable": step.usable.copy(),
                    f"{PENDING_PREFIX}actions": step.actions.copy(),
                    f"{PENDING_PREFIX}probs": step.probs.copy(),
                }
            )
            if step.acted is not None:
                state[f"{PENDING_PREFIX}acted"] = step.acted.copy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`. The pending decision is paired only with a later tick of the
        same functions (a resumed run against another workload starts learning one tick later)."""
        self.learner.load_state_dict(
            {k[len("learner/") :]: v for k, v in state.items() if k.startswith("learner/")}
        )
        self.rng.bit_generator.state = state["agent/rng"]
        self.reward_mean = float(state["agent/reward_mean"])
        self.reward_batches = int(state["agent/reward_batches"])
        if self.agent.novel_block:
            self.know(state.get("agent/known_functions", ()))
        self._before = self._prepared = None
        self._fed_time = None
        self._latest = None
        self._held = self._open = None  # a resumed run draws fresh actions at its first tick
        self._held_reward = self._held_count = None
        self.load = self.load_time = None
        if f"{PENDING_PREFIX}load" in state:
            self.load = np.array(state[f"{PENDING_PREFIX}load"], dtype=float)
            self.load_time = float(state[f"{PENDING_PREFIX}load_time"])
        if f"{PENDING_PREFIX}x" in state:
            self._latest = AgentStep(
                time_s=float(state[f"{PENDING_PREFIX}time_s"]),
                names=tuple(state[f"{PENDING_PREFIX}names"]),
                x=np.array(state[f"{PENDING_PREFIX}x"], dtype=float),
                usable=np.array(state[f"{PENDING_PREFIX}usable"], dtype=bool),
                actions=np.array(state[f"{PENDING_PREFIX}actions"], dtype=np.int64),
                probs=np.array(state[f"{PENDING_PREFIX}probs"], dtype=float),
                restored=True,
                acted=(
                    np.array(state[f"{PENDING_PREFIX}acted"], dtype=bool)
                    if f"{PENDING_PREFIX}acted" in state
                    else None
                ),
            )

    def checkpoint_signature(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded into this policy."""
        return {
            "policy": self.name,
            "state_version": STATE_VERSION,
            "mu_bins": self.features.mu_bins,
            **self.learner.signature(),
        }


def pair_transitions(
    previous: AgentStep, current: AgentStep, rewards: np.ndarray
) -> tuple[Transitions, int, int]:
    """Pair tick t's (s, a) with tick t + 1's reward and (s′, a′), row by row (functions keep their index).

    Returns the batch, the decisions skipped for want of a reward and those skipped for want of a
    usable next state.
    """
    m = min(len(previous.actions), len(current.actions))
    had_decision = previous.usable[:m] if previous.acted is None else previous.usable[:m] & previous.acted[:m]
    has_reward = had_decision & np.isfinite(rewards[:m])
    ok = has_reward & current.usable[:m]
    idx = np.flatnonzero(ok)
    batch = Transitions(
        x=previous.x[idx],
        action=previous.actions[idx],
        reward=rewards[idx],
        x_next=current.x[idx],
        action_next=current.actions[idx],
        probs=previous.probs[idx],
        probs_next=current.probs[idx],
    )
    return batch, int(had_decision.sum() - has_reward.sum()), int(has_reward.sum() - ok.sum())


def with_fallback(policy: SharedPolicyAgent, params: Mapping[str, Any]) -> Any:
    """``policy`` as it runs: wrapped in ENSURE's safety net when its agent settings ask for one
    (``AgentSettings.fallback``), the ``FallbackSettings`` fields taken from ``params``."""
    if policy.agent.fallback == "none":
        return policy
    from policies.baselines.ensure import make_ensure
    from policies.fallback import FallbackLearner, FallbackSettings

    return FallbackLearner(policy, make_ensure(), FallbackSettings(**params))


def field_names(cls: type, exclude: tuple[str, ...] = ()) -> frozenset[str]:
    """The field names of dataclass ``cls`` a caller may set (minus ``exclude``)."""
    return frozenset(f.name for f in fields(cls)) - set(exclude)


def split_params(
    params: Mapping[str, Any], groups: Mapping[str, frozenset[str]]
) -> dict[str, dict[str, Any]]:
    """Route flat keyword parameters to the settings group that has a field of that name."""
    owner = {name: group for group, names in groups.items() for name in names}
    routed: dict[str, dict[str, Any]] = {group: {} for group in groups}
    for key, value in params.items():
        if key not in owner:
            raise TypeError(f"unknown parameter {key!r}; known parameters: {', '.join(sorted(owner))}")
        routed[owner[key]][key] = value
    return routed
