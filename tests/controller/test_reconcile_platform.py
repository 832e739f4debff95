"""Level-triggered control: the loop against a fake platform that holds, loses and slowly reaches targets.

The fake keeps what a platform keeps (a pool target and shares per function, containers that start,
drain and get created with the platform's default shares) and can restart to its defaults. Each
test says what the platform does; the loop must bring the observed state back to the targets in
force whatever it sent before, and write nothing while a change is merely in progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import FixedPolicy, make_invokers, make_snapshot
from prometheus_client import CollectorRegistry

from controller.backends.base import ActionFailure
from controller.estimator import PopulationEstimator
from controller.guard import GuardBounds
from controller.loop import ControlLoop, tick_times
from controller.metrics import MetricsExporter
from policies.types import KEEP_SHARES, UNMANAGED, ClusterSnapshot, Decisions

DEFAULT_SHARES = 256


@dataclass
class FakePlatform:
    """A platform of ``n`` functions: each has a pool target (``UNMANAGED`` until told), shares per
    container, and containers that are starting, busy or idle.

    * a target is held at once by starting the missing containers (counted as containers, as the
      simulator and localwhisk count them) while ``memory_free_mb`` admits, and by removing idle
      surplus; busy surplus leaves when ``finish`` is called;
    * ``restart()`` forgets every target and share and every container (a platform restarted);
    * ``spawn(i)`` adds a container the platform created itself, with its default shares.
    """

    n: int = 3
    memory_mb: float = 256.0
    memory_free_mb: float = 1e9
    targets: list[int] = field(default_factory=list)
    shares: list[int] = field(default_factory=list)
    containers: list[list[dict]] = field(default_factory=list)
    writes: list[tuple[float, str, int, int]] = field(default_factory=list)
    name: str = "fake-platform"

    def __post_init__(self) -> None:
        self.restart()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"f{i}" for i in range(self.n))

    def restart(self) -> None:
        self.targets = [UNMANAGED] * self.n
        self.shares = [DEFAULT_SHARES] * self.n
        self.containers = [[] for _ in range(self.n)]

    def spawn(self, i: int, busy: bool = False) -> None:
        self.containers[i].append({"busy": busy, "shares": DEFAULT_SHARES})

    def finish(self, i: int) -> None:
        for c in self.containers[i]:
            c["busy"] = False
        self._hold(i)

    def observe(self, now: float) -> ClusterSnapshot:
        count = np.array([len(c) for c in self.containers], dtype=float)
        busy = np.array([sum(c["busy"] for c in cs) for cs in self.containers], dtype=float)
        # Shares per container as an observer of the containers sees them: their mean (NaN without any).
        shares = np.array([np.mean([c["shares"] for c in cs]) if cs else np.nan for cs in self.containers])
        used = float(count.sum() * self.memory_mb)
        invokers = make_invokers(1, memory_mb=used + self.memory_free_mb, memory_used_mb=np.array([used]))
        return make_snapshot(self.names, time_s=now, containers=count, busy_containers=busy, in_flight=busy,
                             cpu_shares=shares, memory_mb=np.full(self.n, self.memory_mb), invokers=invokers)

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]:
        for i in np.flatnonzero(decisions.valid):
            k, s = int(decisions.containers[i]), int(decisions.cpu_shares[i])
            self.writes.append((now, self.names[i], k, s))
            self.targets[i] = k
            if s != KEEP_SHARES:
                self.shares[i] = s
                for c in self.containers[i]:
                    c["shares"] = s
            self._hold(i)
        return []

    def _hold(self, i: int) -> None:
        k = self.targets[i]
        if k == UNMANAGED:
            return
        pool = self.containers[i]
        while len(pool) > k and any(not c["busy"] for c in pool):
            pool.remove(next(c for c in pool if not c["busy"]))
        while len(pool) < k and self.memory_free_mb >= self.memory_mb:
            pool.append({"busy": False, "shares": self.shares[i]})
            self.memory_free_mb -= self.memory_mb


def _loop(platform, policy, **kwargs) -> ControlLoop:
    return ControlLoop(backend=platform, policy=policy, estimator=PopulationEstimator(bins=4, beta=0.5),
                       bounds=GuardBounds(respect_capacity=False, **kwargs.pop("bounds", {})), **kwargs)


def _holds(platform: FakePlatform, containers: int, shares: int) -> bool:
    snapshot = platform.observe(0.0)
    return bool(np.all(snapshot.functions.containers == containers)
                and np.all(snapshot.functions.cpu_shares == shares))


def test_after_a_platform_restart_the_observed_state_returns_to_the_desired_state_within_one_tick():
    platform = FakePlatform()
    registry = CollectorRegistry()
    loop = _loop(platform, FixedPolicy(containers=2, shares=512), sinks=[MetricsExporter(registry)])
    loop.run(tick_times(0.0, 10.0, 3))
    assert _holds(platform, 2, 512)
    platform.restart()
    assert _holds(platform, 0, np.nan) is False
    report = loop.step(40.0)  # the first tick that sees the platform at its defaults
    assert report.guarded.reapplied == 3 and not report.guarded.decisions.valid.any()
    assert _holds(platform, 2, 512)
    assert registry.get_sample_value("mfrm_guard_decisions_total", {"outcome": "reapplied"}) == 3
    # Healed: nothing more is written.
    before = len(platform.writes)
    loop.run(tick_times(40.0, 10.0, 5))
    assert len(platform.writes) == before


def test_a_healthy_run_writes_only_the_policys_changes():
    platform = FakePlatform()
    loop = _loop(platform, FixedPolicy(containers=3, shares=512))
    loop.run(tick_times(0.0, 10.0, 20))
    assert [w[0] for w in platform.writes] == [10.0] * 3
    assert loop.counters.reapplied == 0


def test_a_pool_still_cold_starting_is_not_written_again():
    # A pool of 5 ordered: the platform counts the 5 at once, 2 of them still starting.
    platform = FakePlatform(n=1)
    loop = _loop(platform, FixedPolicy(containers=5))
    loop.step(10.0)
    platform.containers[0][3]["starting"] = platform.containers[0][4]["starting"] = True
    loop.run(tick_times(10.0, 10.0, 3))
    assert len(platform.writes) == 1


def test_a_surplus_still_busy_drains_without_writes_and_an_idle_one_is_written_again():
    platform = FakePlatform(n=1)
    for _ in range(5):
        platform.spawn(0, busy=True)
    loop = _loop(platform, FixedPolicy(containers=3))
    loop.step(10.0)  # 5 busy containers; the target 3 removes none of them yet
    loop.run(tick_times(10.0, 10.0, 2))
    assert len(platform.writes) == 1
    # The work finished but the platform kept the idle surplus (it lost the target, say).
    platform.targets[0] = UNMANAGED
    for c in platform.containers[0]:
        c["busy"] = False
    loop.step(40.0)
    assert len(platform.writes) == 2 and len(platform.containers[0]) == 3


def test_a_pool_waiting_for_memory_is_not_written_again():
    platform = FakePlatform(n=1, memory_free_mb=512.0)  # room for 2 of the 4 containers asked
    loop = _loop(platform, FixedPolicy(containers=4))
    loop.run(tick_times(0.0, 10.0, 5))
    assert len(platform.writes) == 1 and len(platform.containers[0]) == 2
    # Memory frees up but the platform does not notice: the shortfall now differs, and is written again.
    platform.memory_free_mb = 1024.0
    loop.step(60.0)
    assert len(platform.writes) == 2 and len(platform.containers[0]) == 4


def test_containers_the_platform_creates_later_get_the_shares_in_force():
    platform = FakePlatform(n=1)
    loop = _loop(platform, FixedPolicy(containers=UNMANAGED, shares=768))
    platform.spawn(0)
    loop.step(10.0)
    assert [c["shares"] for c in platform.containers[0]] == [768]
    platform.spawn(0)  # a new container at the platform's default shares
    loop.step(20.0)
    assert [c["shares"] for c in platform.containers[0]] == [768, 768]
    assert platform.writes[-1] == (20.0, "f0", UNMANAGED, 768)


def test_a_restart_of_many_functions_is_healed_within_the_bound_per_tick():
    platform = FakePlatform(n=70)
    loop = _loop(platform, FixedPolicy(containers=1, shares=512), bounds={"max_reapply_per_tick": 32})
    loop.step(10.0)
    platform.restart()
    healed = []
    for now in (20.0, 30.0, 40.0):
        report = loop.step(now)
        healed.append(report.guarded.reapplied)
    assert healed == [32, 32, 6]
    assert _holds(platform, 1, 512)


def test_a_platform_that_cannot_follow_is_written_again_after_growing_pauses_not_every_tick():
    platform = FakePlatform(n=1, memory_free_mb=1e9)
    loop = _loop(platform, FixedPolicy(containers=2))
    loop.step(10.0)
    # A broken pool: the platform holds the target but no container ever starts; it has room.
    platform.containers[0].clear()
    platform._hold = lambda i: None  # type: ignore[method-assign]
    loop.run(tick_times(10.0, 10.0, 40))
    written = [w[0] for w in platform.writes]
    assert written[:5] == [10.0, 20.0, 40.0, 70.0, 120.0]
    assert len(written) <= 7


@pytest.mark.parametrize("unknown", [np.nan, np.inf, -1.0], ids=["nan", "inf", "negative"])
def test_nothing_is_written_again_on_an_unknown_observed_pool(unknown):
    platform = FakePlatform(n=1)
    loop = _loop(platform, FixedPolicy(containers=2))
    loop.step(10.0)
    observe = platform.observe

    def blind(now):
        snapshot = observe(now)
        fns = snapshot.functions
        return make_snapshot(fns.names, time_s=now, containers=np.array([unknown]), cpu_shares=fns.cpu_shares,
                             invokers=snapshot.invokers)

    platform.observe = blind  # type: ignore[method-assign]
    platform.restart()
    loop.run(tick_times(10.0, 10.0, 3))
    assert len(platform.writes) == 1
