"""Errors of the Treasure Data backend (all BackendError, so the pipeline handles them alike)."""

from __future__ import annotations

from cdp_mcp.backends.base import BackendError, UnavailableError

AUTH_HINT = "check TD_API_KEY and td_endpoint"


class AuthenticationError(BackendError):
    """TD refused the API key (HTTP 401 or 403). The message never holds the key."""


class TransientError(UnavailableError):
    """TD kept failing (connection errors, 5xx, 408, 429) until the retry bound was reached."""
