"""OpenWhisk's own resource manager, as a policy: the reference every other manager is compared with.

Source: Apache OpenWhisk's invoker (``ContainerPool`` and its ``ContainerPoolConfig``), summarised
in docs/baselines.md and in the paper's Appendix E ("CPU shares proportional to memory, pack as
many containers per invoker as fit").

* Containers are not managed (``UNMANAGED``): the platform creates a container on demand when an
  activation finds no idle one (a cold start) and evicts a container after 10 minutes idle. The
  simulator and the real platforms do that themselves; this policy only says "leave it".
* CPU shares per container are ``max(floor(1024 / (userMemory // memory)), 2)``: an invoker's 1024
  Docker shares split evenly between as many containers of the function's memory as fit into its
  user memory. With 2048 MB of user memory a 256 MB action gets 1024 / 8 = 128 shares.
* Placement (home invoker by hash of the action, probing with a step coprime to the number of
  invokers) is the load balancer's; a ``Decisions`` has no placement field, so it stays the
  platform's, as it is under every policy here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from policies.baselines._common import assemble, check_range, config_from_params, openwhisk_cpu_shares
from policies.registry import register
from policies.types import KEEP_SHARES, UNMANAGED, ClusterSnapshot, Decisions, StatelessFeedback


@dataclass(frozen=True)
class OpenWhiskDefaultConfig:
    """Hyperparameters of the OpenWhisk default manager."""

    user_memory_mb: float | None = None
    """User memory of an invoker for action containers, MB (OpenWhisk's ``userMemory``). None reads it
    from the snapshot: the median over the invokers observed this tick (invokers of one deployment
    share one setting; the median ignores a single odd one). Set it to pin the shares when the
    snapshot has no invoker data. OpenWhisk's shipped default is 2048 MB."""

    def __post_init__(self) -> None:
        if self.user_memory_mb is not None:
            check_range("OpenWhiskDefaultConfig", "user_memory_mb", self.user_memory_mb, 1e-9)


@dataclass
class OpenWhiskDefaultPolicy(StatelessFeedback):
    """Containers left to the platform; CPU shares in proportion to memory (see the module docstring)."""

    name: ClassVar[str] = "openwhisk-default"
    config: OpenWhiskDefaultConfig = field(default_factory=OpenWhiskDefaultConfig)
    """The policy's hyperparameters."""

    def user_memory_mb(self, snapshot: ClusterSnapshot) -> float | None:
        """The ``userMemory`` the share rule uses this tick, or None when it cannot be known."""
        if self.config.user_memory_mb is not None:
            return self.config.user_memory_mb
        invokers = snapshot.invokers
        observed = invokers.memory_mb[invokers.valid & (invokers.memory_mb > 0)]
        if observed.size == 0:
            return None
        return float(np.median(observed))

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        functions = snapshot.functions
        n = len(functions)
        user_memory = self.user_memory_mb(snapshot)
        containers = np.full(n, UNMANAGED, dtype=np.int64)
        if user_memory is None:
            shares = np.full(n, KEEP_SHARES, dtype=np.int64)
            reasons = ["openwhisk-default: no invoker memory observed, shares kept"] * n
        else:
            shares = openwhisk_cpu_shares(functions.memory_mb, user_memory)
            reasons = [
                f"openwhisk-default: {memory:.0f} MB of {user_memory:.0f} MB -> {share} shares"
                for memory, share in zip(functions.memory_mb.tolist(), shares.tolist())
            ]
        return assemble(functions.valid, containers, shares, reasons)


@register("openwhisk-default")
def make_openwhisk_default(**params: Any) -> OpenWhiskDefaultPolicy:
    """Registry factory: ``params`` are fields of :class:`OpenWhiskDefaultConfig`."""
    return OpenWhiskDefaultPolicy(config_from_params(OpenWhiskDefaultConfig, "openwhisk-default", params))
