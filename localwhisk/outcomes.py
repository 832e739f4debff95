"""What one activation produced, and the OpenWhisk activation record built from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from localwhisk.actions import Action

#: OpenWhisk's activation status codes (``statusCode`` of a record, ``response.statusCode``).
SUCCESS = 0
APPLICATION_ERROR = 1
DEVELOPER_ERROR = 2
INTERNAL_ERROR = 3

#: ``response.status`` strings of an activation record, by status code.
RESPONSE_STATUS = {
    SUCCESS: "success",
    APPLICATION_ERROR: "application error",
    DEVELOPER_ERROR: "action developer error",
    INTERNAL_ERROR: "whisk internal error",
}
#: ``status`` label values of ``openwhisk_action_status`` (user-events), by status code.
METRIC_STATUS = {
    SUCCESS: "success",
    APPLICATION_ERROR: "application_error",
    DEVELOPER_ERROR: "developer_error",
    INTERNAL_ERROR: "internal_error",
}
#: HTTP status of a blocking invocation that completed, by status code: OpenWhisk answers 502 for
#: an application or developer error and 500 for its own failure.
HTTP_STATUS = {SUCCESS: 200, APPLICATION_ERROR: 502, DEVELOPER_ERROR: 502, INTERNAL_ERROR: 500}


@dataclass(frozen=True)
class Outcome:
    """The end of one activation, as measured by the container that ran it."""

    status_code: int
    """SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR or INTERNAL_ERROR."""
    result: dict[str, Any]
    """The action's result, or ``{"error": message}``."""
    wait_ms: int
    """From arrival to the start of the container's work on it (init on a cold start, else run), ms."""
    duration_ms: int
    """From that start to the end, ms; includes ``init_ms`` on a cold start (OpenWhisk's convention)."""
    init_ms: int | None = None
    """Process start + imports + action load, ms, on a cold start only."""
    logs: list[str] = field(default_factory=list)
    """The activation's log lines."""
    timed_out: bool = False
    """Whether the action ran past its time limit and was killed."""

    @property
    def run_ms(self) -> int:
        """Execution alone, ms (duration without the initialisation)."""
        return self.duration_ms - (self.init_ms or 0)


def classify_result(result: dict[str, Any]) -> int:
    """An action that returns a dict with ``error`` has failed by its own account (application error)."""
    return APPLICATION_ERROR if "error" in result else SUCCESS


def activation_record(
    activation_id: str,
    action: Action,
    subject_namespace: str,
    arrival_ms: int,
    outcome: Outcome,
) -> dict[str, Any]:
    """The full OpenWhisk activation document (``GET .../activations/{id}``)."""
    start = arrival_ms + outcome.wait_ms
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": action.path},
        {"key": "waitTime", "value": outcome.wait_ms},
        {"key": "kind", "value": action.kind},
        {"key": "timeout", "value": outcome.timed_out},
        {"key": "limits", "value": action.limits.to_json()},
    ]
    if outcome.init_ms is not None:
        annotations.append({"key": "initTime", "value": outcome.init_ms})
    body = json.dumps(outcome.result, separators=(",", ":"))
    return {
        "namespace": action.namespace,
        "name": action.name,
        "version": action.version,
        "publish": False,
        "subject": subject_namespace,
        "activationId": activation_id,
        "start": start,
        "end": start + outcome.duration_ms,
        "duration": outcome.duration_ms,
        "statusCode": outcome.status_code,
        "response": {
            "status": RESPONSE_STATUS[outcome.status_code],
            "statusCode": outcome.status_code,
            "success": outcome.status_code == SUCCESS,
            "result": outcome.result,
            "size": len(body.encode()),
        },
        "logs": outcome.logs,
        "annotations": annotations,
    }


def brief(record: dict[str, Any]) -> dict[str, Any]:
    """The list view of a record (no response, no logs), as ``GET .../activations`` without ``docs``."""
    return {k: v for k, v in record.items() if k not in ("response", "logs")}
