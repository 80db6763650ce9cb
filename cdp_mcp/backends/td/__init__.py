"""The Treasure Data backend's parts: hosts, transport, Digdag REST and API v3 clients."""

from cdp_mcp.backends.td.apiv3 import PollPolicy
from cdp_mcp.backends.td.errors import AuthenticationError, TransientError
from cdp_mcp.backends.td.hosts import TDHosts, resolve_hosts
from cdp_mcp.backends.td.transport import RetryPolicy

__all__ = [
    "AuthenticationError",
    "PollPolicy",
    "RetryPolicy",
    "TDHosts",
    "TransientError",
    "resolve_hosts",
]
