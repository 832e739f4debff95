"""Errors that become HTTP answers: OpenWhisk's ``{"error": ..., "code": ...}`` body and a status."""

from __future__ import annotations


class ApiError(Exception):
    """A request the platform refuses; ``status`` is the HTTP status, ``message`` goes in ``error``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(what: str = "The requested resource does not exist.") -> ApiError:
    return ApiError(404, what)


def conflict(message: str = "resource already exists") -> ApiError:
    return ApiError(409, message)


def unauthorized() -> ApiError:
    return ApiError(401, "The supplied authentication is invalid.")


def forbidden(namespace: str) -> ApiError:
    return ApiError(403, f"The supplied authentication is not authorized to access '{namespace}'.")


def unavailable(message: str) -> ApiError:
    return ApiError(503, message)
