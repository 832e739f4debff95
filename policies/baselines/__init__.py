"""The baseline resource managers every learned policy is compared with.

Importing this package registers each of them with :mod:`policies.registry` under its name:

=====================  ==========================================================================
``openwhisk-default``  OpenWhisk's own manager: containers on demand, shares in proportion to memory
``ensure``             ENSURE (Suresh et al., ACSOS 2020): square-root staffing, in-node CPU steps
``kpa``                Knative Pod Autoscaler: stable/panic concurrency windows
``hpa``                Kubernetes HPA on CPU utilisation, tolerance and scale-down stabilisation
``hybrid-histogram``   Shahrad et al. (ATC 2020): idle-time histogram pre-warm / keep-alive windows
=====================  ==========================================================================

Each is pure (no I/O, no clock), keeps its state in explicit per-function arrays and gives no
decision for a row the backend could not observe. docs/baselines.md describes the rules, their
parameters and sources, and what this decision model cannot express.
"""

from policies.baselines.ensure import (
    EnsureConfig,
    EnsurePolicy,
    halfin_whitt_delay_probability,
    staffing_c_for_delay,
)
from policies.baselines.hpa import HpaConfig, HpaPolicy
from policies.baselines.hybrid_histogram import HybridHistogramConfig, HybridHistogramPolicy, KeepWindows
from policies.baselines.kpa import KpaConfig, KpaPolicy
from policies.baselines.openwhisk_default import OpenWhiskDefaultConfig, OpenWhiskDefaultPolicy

__all__ = [
    "EnsureConfig",
    "EnsurePolicy",
    "HpaConfig",
    "HpaPolicy",
    "HybridHistogramConfig",
    "HybridHistogramPolicy",
    "KeepWindows",
    "KpaConfig",
    "KpaPolicy",
    "OpenWhiskDefaultConfig",
    "OpenWhiskDefaultPolicy",
    "halfin_whitt_delay_probability",
    "staffing_c_for_delay",
]
