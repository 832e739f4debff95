"""What the control loop needs from a cluster, and how a backend reports what went wrong.

A backend is the only part of mfrm that touches a cluster. It has two duties, one per direction:

* ``observe(now)`` returns one frozen :class:`~policies.types.ClusterSnapshot` covering the tick that
  ends at ``now``;
* ``apply(decisions, now)`` turns the guarded decisions into cluster changes and returns one
  :class:`ActionFailure` per function whose change did not happen.

Consistency assumptions every backend documents and the loop relies on:

* ``now`` only grows between calls; ``observe`` is called once per tick, before ``apply``.
* Function order in snapshots is stable for the backend's whole life; new functions are appended.
* ``apply`` is idempotent: applying the same target twice changes nothing the second time.
* ``apply`` never raises for one function's failure: it carries on with the others and returns the
  failure as a record (per-function error isolation). It raises only when the backend as a whole
  is unusable, which ends the run.
* A change that ``apply`` did not report as failed has been accepted; it may take effect later
  (a container takes its cold-start time to become warm), which the next snapshots show.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from policies.types import ClusterSnapshot, Decisions


class FailureKind(enum.Enum):
    """Why an action did not happen; bounded, so it can label a metric."""

    UNKNOWN_FUNCTION = "unknown_function"
    """The backend has no function of that name."""
    REJECTED = "rejected"
    """The cluster refused the change (invalid value, limit, no room)."""
    UNAVAILABLE = "unavailable"
    """The cluster or one of its nodes could not be reached; retrying later may work."""
    INTERNAL = "internal"
    """An unexpected error in the backend itself (a bug to report)."""


@dataclass(frozen=True)
class ActionFailure:
    """One function's change that did not happen this tick."""

    function: str
    """Name of the function whose change failed."""
    kind: FailureKind
    """Category of the failure (a bounded metric label)."""
    message: str
    """Human-readable detail for the log (never used as a label)."""


@runtime_checkable
class Backend(Protocol):
    """A cluster the control loop can observe and act on (see the module docstring for the contract)."""

    name: str

    def observe(self, now: float) -> ClusterSnapshot: ...

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]: ...


__all__ = ["ActionFailure", "Backend", "FailureKind"]
