"""The one root every refusal derives from.

A caller that must turn any refusal into a clear message (the CLI, the MCP tool layer)
catches `CdpError`; anything else reaching it is a bug and keeps its traceback. Control-flow
signals (a cancelled unification, a task failure inside the runner) are not refusals and do
not derive from it.
"""

from __future__ import annotations


class CdpError(Exception):
    """A request cdp-mcp refused or could not carry out; the message says why and what to do."""
