"""Errors the emulator answers with, and the status code TD gives each."""

from __future__ import annotations

from cdp_mcp.backends.base import BackendError, ConflictError, NotFoundError, ProjectRejectedError


class RequestError(BackendError):
    """A request TD would refuse with 400 (bad parameter or body)."""


def status_of(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, ProjectRejectedError | RequestError | BackendError | ValueError):
        return 400
    return 500
