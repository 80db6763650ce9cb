"""The embedded backend: a Digdag-compatible workflow runner over one DuckDB file."""

from cdp_mcp.backends.local.backend import LocalBackend
from cdp_mcp.backends.local.hooks import UnificationCall, UnificationHandler
from cdp_mcp.backends.local.runtime import LocalRuntime

__all__ = ["LocalBackend", "LocalRuntime", "UnificationCall", "UnificationHandler"]
