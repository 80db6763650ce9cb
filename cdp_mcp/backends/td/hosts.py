"""Which hosts serve API v3, TD Workflow (Digdag REST) and Presto for a configured endpoint.

TD runs one host per service and site: `api.<site>` (API v3), `api-workflow.<site>`,
`api-presto.<site>`, `api-cdp.<site>`. People paste any of them (the seed used `api-cdp`),
or the console's host, as "the endpoint"; all map to the same site. A host outside TD's
domains (the loopback emulator) serves every API on its one origin. A configured
`workflow_endpoint` (a private or proxied TD Workflow host, or a Digdag server) replaces the
derived workflow host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from cdp_mcp.backends.base import BackendError

TD_DOMAINS = (".treasuredata.com", ".treasuredata.co.jp")
# First labels of a TD host that name a service of the site rather than the site itself.
_SERVICE_PREFIXES = ("api", "console")


@dataclass(frozen=True)
class TDHosts:
    api: str  # API v3 origin, e.g. https://api.eu01.treasuredata.com
    workflow: str  # Digdag REST origin, e.g. https://api-workflow.eu01.treasuredata.com
    presto: str  # Presto/Trino origin
    is_td: bool  # False for an emulator: every API on one origin


def _origin(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def _parse(field: str, endpoint: str, example: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an endpoint; BackendError names the field and an example."""
    text = endpoint.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise BackendError(f"{field} {endpoint!r} is not a URL; use e.g. {example}")
    try:
        port = parts.port
    except ValueError:
        raise BackendError(f"{field} {endpoint!r} has an invalid port") from None
    return parts.scheme, host, port


def resolve_hosts(endpoint: str, workflow_endpoint: str | None = None) -> TDHosts:
    """The origins to call for `endpoint` (and `workflow_endpoint`, when given); raises
    BackendError naming what is expected."""
    hosts = _derived_hosts(endpoint)
    if workflow_endpoint is None:
        return hosts
    scheme, host, port = _parse(
        "workflow_endpoint", workflow_endpoint, "https://api-workflow.treasuredata.com"
    )
    return replace(hosts, workflow=_origin(scheme, host, port))


def _derived_hosts(endpoint: str) -> TDHosts:
    scheme, host, port = _parse("td_endpoint", endpoint, "https://api.treasuredata.com")
    if not host.endswith(TD_DOMAINS):
        origin = _origin(scheme, host, port)
        return TDHosts(api=origin, workflow=origin, presto=origin, is_td=False)
    first, _, site = host.partition(".")
    if not first.startswith(_SERVICE_PREFIXES) or not site:
        raise BackendError(
            f"td_endpoint {endpoint!r}: {host} is not a Treasure Data API host; use the API "
            "host of your site, e.g. https://api.treasuredata.com, "
            "https://api.eu01.treasuredata.com or https://api.treasuredata.co.jp"
        )

    def service(prefix: str) -> str:
        return _origin(scheme, f"{prefix}.{site}", port)

    return TDHosts(
        api=service("api"),
        workflow=service("api-workflow"),
        presto=service("api-presto"),
        is_td=True,
    )
