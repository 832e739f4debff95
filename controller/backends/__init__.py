"""Backends: the clusters the control loop can drive (see ``base`` for the contract).

``sim`` — the embedded simulated cluster (``controller.backends.sim``). Backends are imported by
their own module so that the loop does not pull in a simulator or a cluster client it does not use.
"""

from controller.backends.base import ActionFailure, Backend, FailureKind

__all__ = ["ActionFailure", "Backend", "FailureKind"]
