"""Shared fixtures: hand-built snapshots, a fake backend and trivial policies (fakes, never mocks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from controller.backends.base import ActionFailure, FailureKind
from policies.types import KEEP_SHARES, ClusterSnapshot, Decisions, FunctionStats, InvokerStats


def make_invokers(n: int = 2, *, cores: float = 8.0, memory_mb: float = 2048.0, **columns: Any) -> InvokerStats:
    """``n`` invokers, idle unless ``columns`` say otherwise."""
    values: dict[str, Any] = {
        "cores": np.full(n, cores),
        "memory_mb": np.full(n, memory_mb),
        "memory_used_mb": np.zeros(n),
        "cpu_used_core_s": np.zeros(n),
        "cpu_shares_allocated": np.zeros(n),
        "valid": np.ones(n, dtype=bool),
    }
    values.update(columns)
    return InvokerStats(names=tuple(f"invoker{i}" for i in range(n)), **values)


def make_snapshot(
    names: tuple[str, ...] = ("a", "b", "c"),
    *,
    time_s: float = 10.0,
    tick_s: float = 10.0,
    invokers: InvokerStats | None = None,
    **columns: Any,
) -> ClusterSnapshot:
    """A snapshot of ``names`` with 256 MB functions and an SLO of 1 s; other columns zero unless given."""
    n = len(names)
    defaults: dict[str, Any] = {"memory_mb": np.full(n, 256.0), "slo_s": np.ones(n)}
    defaults.update(columns)
    return ClusterSnapshot(
        time_s=time_s,
        tick_s=tick_s,
        functions=FunctionStats.empty_like(names, **defaults),
        invokers=invokers if invokers is not None else make_invokers(),
    )


@dataclass
class FakeBackend:
    """A backend that replays snapshots and records what it was asked to do.

    ``snapshots(now)`` builds the snapshot for each tick; ``fail`` maps function names to the failure
    kind their actions return. ``calls`` is a shared log of ("observe"|"apply", now) for order tests.
    """

    snapshots: Callable[[float], ClusterSnapshot] = lambda now: make_snapshot(time_s=now)
    fail: Mapping[str, FailureKind] = field(default_factory=dict)
    calls: list[tuple[str, float]] = field(default_factory=list)
    applied: list[Decisions] = field(default_factory=list)
    name: str = "fake"

    def observe(self, now: float) -> ClusterSnapshot:
        self.calls.append(("observe", now))
        return self.snapshots(now)

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]:
        self.calls.append(("apply", now))
        self.applied.append(decisions)
        snapshot = self.snapshots(now)
        failures = []
        for i in np.flatnonzero(decisions.valid):
            name = snapshot.functions.names[i]
            if name in self.fail:
                failures.append(ActionFailure(name, self.fail[name], "injected by the test"))
        return failures


@dataclass
class FixedPolicy:
    """Decides the same targets for every valid row; logs its calls into ``calls`` (shared with a backend)."""

    containers: int = 2
    shares: int = KEEP_SHARES
    calls: list[tuple[str, float]] = field(default_factory=list)
    feedback_rewards: list[np.ndarray] = field(default_factory=list)
    name: str = "fixed"

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        self.calls.append(("decide", snapshot.time_s))
        n = len(snapshot.functions)
        valid = snapshot.functions.valid.copy()
        return Decisions(
            containers=np.full(n, self.containers),
            cpu_shares=np.full(n, self.shares),
            valid=valid,
            reasons=tuple("fixed" if v else "no data" for v in valid),
        )

    def feedback(self, snapshot: ClusterSnapshot, mu: np.ndarray, rewards: np.ndarray) -> Mapping[str, float]:
        self.calls.append(("feedback", snapshot.time_s))
        self.feedback_rewards.append(np.array(rewards))
        return {"seen": float(np.sum(np.isfinite(rewards)))}


@pytest.fixture
def snapshot_factory() -> Callable[..., ClusterSnapshot]:
    return make_snapshot


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()
