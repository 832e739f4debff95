"""Each backend's ``apply`` compares with what the platform holds, never with what it sent before.

A platform that lost a target (restarted, reset by someone else) gets it again on the next apply;
a platform that holds it gets no write.
"""

from __future__ import annotations

import numpy as np
import pytest
from fakes.openwhisk import AUTH, NAMESPACE, FakeOpenWhisk, Pool

from controller.assemble import build_workload
from controller.backends.local import LocalBackend
from controller.backends.openwhisk import OpenWhiskBackend, WarmPoolMode
from controller.backends.sim import SimBackend
from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
from controller.estimator import PopulationEstimator
from controller.guard import GuardBounds
from controller.loop import ControlLoop
from controller.settings import load_settings
from policies.types import KEEP_SHARES, UNMANAGED, Decisions
from simulator import Cluster, ClusterConfig
from workload.arrivals import ArrivalStream

CODE = "def main(args):\n    return {}\n"
ORIGIN_MS = 1_700_000_000_000


def _decisions(containers, shares):
    n = len(containers)
    return Decisions(containers=np.array(containers), cpu_shares=np.array(shares), valid=np.ones(n, dtype=bool),
                     reasons=("r",) * n)


# --- sim --------------------------------------------------------------------------------------


def _sim_backend() -> SimBackend:
    settings = load_settings(overrides={"workload.functions": 2, "workload.minutes": 2})
    workload = build_workload(settings)
    cluster = Cluster(ClusterConfig(invokers=2), [f.profile for f in workload.functions], seed=0)
    arrivals = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute, seed=0)
    return SimBackend(cluster, arrivals, workload.names, 10.0)


def test_the_sim_backend_sets_again_what_the_cluster_no_longer_holds():
    backend = _sim_backend()
    backend.observe(10.0)
    decided = _decisions([3, UNMANAGED], [512, KEEP_SHARES])
    assert backend.apply(decided, 10.0) == []
    # Reset behind the backend's back, as a restart would.
    default = int(backend.cluster.default_cpu_shares[0])
    backend.cluster.set_pool(0, UNMANAGED)
    backend.cluster.set_cpu_shares(0, default)
    assert backend.apply(decided, 10.0) == []
    assert backend.cluster.pool_targets.tolist()[0] == 3 and backend.cluster.cpu_shares.tolist()[0] == 512


def test_after_the_simulated_cluster_loses_its_targets_the_loop_restores_them_within_one_tick():
    backend = _sim_backend()

    class Holds:
        name = "holds"

        def decide(self, snapshot, mu):
            return _decisions([2, 2], [384, 384])

        def feedback(self, snapshot, mu, rewards):
            return {}

    loop = ControlLoop(backend=backend, policy=Holds(), estimator=PopulationEstimator(bins=10, beta=0.1),
                       bounds=GuardBounds(respect_capacity=False))
    loop.step(10.0)
    default = int(backend.cluster.default_cpu_shares[1])
    backend.cluster.set_pool(1, UNMANAGED)
    backend.cluster.set_cpu_shares(1, default)
    report = loop.step(20.0)
    assert report.guarded.reapply.tolist() == [False, True]
    assert backend.cluster.pool_targets.tolist() == [2, 2] and backend.cluster.cpu_shares.tolist() == [384, 384]
    observed = loop.step(30.0).snapshot.functions
    assert observed.cpu_shares.tolist() == [384, 384] and observed.containers.tolist() == [2, 2]


# --- local ------------------------------------------------------------------------------------


@pytest.fixture
def local():
    with FakeOpenWhisk() as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        for name in ("a", "b"):
            client.put_action(name, {"exec": {"kind": "python:3", "code": CODE}})
        yield fake, LocalBackend(client, ["a", "b"], [0.1, 0.1], epoch_origin_ms=ORIGIN_MS, cores=4)


def test_the_local_backend_writes_again_to_a_platform_that_restarted_with_its_defaults(local):
    fake, backend = local
    decided = _decisions([2, UNMANAGED], [512, KEEP_SHARES])
    backend.apply(decided, 10.0)
    fake.pools["a"] = Pool()  # the platform restarted: on demand, default shares
    assert backend.apply(decided, 20.0) == []
    assert [c.body for c in fake.calls_to("PUT", r"/resources/")] == [{"containers": 2, "cpuShares": 512}] * 2
    assert (fake.pools["a"].containers, fake.pools["a"].cpu_shares) == (2, 512)


def test_the_local_backend_writes_only_the_target_the_platform_does_not_hold(local):
    fake, backend = local
    backend.apply(_decisions([2, UNMANAGED], [512, KEEP_SHARES]), 10.0)
    fake.pools["a"].cpu_shares = 256  # someone reset the shares, the pool is intact
    backend.apply(_decisions([2, UNMANAGED], [512, KEEP_SHARES]), 20.0)
    assert [c.body for c in fake.calls_to("PUT", r"/resources/")][1:] == [{"cpuShares": 512}]


def test_the_local_backend_writes_every_target_when_the_pools_cannot_be_read(local):
    fake, backend = local
    backend.apply(_decisions([2, 1], [512, KEEP_SHARES]), 10.0)
    fake.fail("GET", r"/resources/v1/namespaces/[^/]+/actions/?$", 503, {"error": "busy"})
    assert backend.apply(_decisions([2, 1], [512, KEEP_SHARES]), 20.0) == []
    assert [c.body for c in fake.calls_to("PUT", r"/resources/")][2:] == [{"containers": 2, "cpuShares": 512},
                                                                          {"containers": 1}]


# --- openwhisk ----------------------------------------------------------------------------------


def test_the_instances_limit_is_read_back_and_set_again_when_the_action_lost_it():
    with FakeOpenWhisk() as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        client.put_action("primes", {"exec": {"kind": "python:3.11", "code": CODE}, "limits": {"memory": 256}})
        backend = OpenWhiskBackend(client, ["primes"], [0.5], epoch_origin_ms=ORIGIN_MS, namespace=NAMESPACE,
                                   warm_pool=WarmPoolMode.INSTANCES_LIMIT)
        decided = _decisions([4], [KEEP_SHARES])
        backend.apply(decided, 10.0)
        backend.apply(decided, 20.0)
        assert len(fake.calls_to("PUT", r"/actions/primes$")) == 2  # the deploy and one update
        fake.actions["primes"]["limits"].pop("instances")  # redeployed without it
        backend.apply(decided, 30.0)
        assert len(fake.calls_to("PUT", r"/actions/primes$")) == 3
        assert fake.actions["primes"]["limits"]["instances"] == 4


def test_containers_an_invoker_creates_later_get_the_shares_in_force_from_the_loop():
    from fakes.docker_engine import FakeDockerEngine

    from controller.backends.docker_runtime import DockerRuntime

    class Shares:
        name = "shares"

        def decide(self, snapshot, mu):
            n = len(snapshot.functions)
            return Decisions(containers=np.full(n, UNMANAGED), cpu_shares=np.full(n, 640),
                             valid=snapshot.functions.valid.copy(), reasons=("shares",) * n)

        def feedback(self, snapshot, mu, rewards):
            return {}

    with FakeOpenWhisk() as fake, FakeDockerEngine() as engine:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        client.put_action("primes", {"exec": {"kind": "python:3.11", "code": CODE}, "limits": {"memory": 256}})
        engine.add("wsk0_1_guest_primes")
        backend = OpenWhiskBackend(client, ["primes"], [0.5], epoch_origin_ms=ORIGIN_MS, namespace=NAMESPACE,
                                   runtime=DockerRuntime({"invoker0": f"tcp://127.0.0.1:{engine.port}"}))
        loop = ControlLoop(backend=backend, policy=Shares(), estimator=PopulationEstimator(bins=10, beta=0.1),
                           bounds=GuardBounds(respect_capacity=False, max_shares=4096))
        loop.step(10.0)
        late = engine.add("wsk0_2_guest_primes")  # the invoker's own default shares
        report = loop.step(20.0)
        assert report.guarded.reapply.tolist() == [True] and not report.guarded.decisions.valid.any()
        assert late.cpu_shares == 640
        assert [c.cpu_shares for c in engine.containers.values()] == [640, 640]
        loop.step(30.0)
        assert [u.body for u in engine.calls_to("POST", r"/update$")] == [{"CpuShares": 640}] * 2
