"""Which hosts the TD backend calls for a configured endpoint, per site."""

from __future__ import annotations

import pytest

from cdp_mcp.backends.base import BackendError
from cdp_mcp.backends.td.hosts import resolve_hosts


@pytest.mark.parametrize(
    ("endpoint", "api", "workflow", "presto"),
    [
        (
            "https://api.treasuredata.com",
            "https://api.treasuredata.com",
            "https://api-workflow.treasuredata.com",
            "https://api-presto.treasuredata.com",
        ),
        (
            "https://api.eu01.treasuredata.com/",
            "https://api.eu01.treasuredata.com",
            "https://api-workflow.eu01.treasuredata.com",
            "https://api-presto.eu01.treasuredata.com",
        ),
        (
            "https://api.treasuredata.co.jp",
            "https://api.treasuredata.co.jp",
            "https://api-workflow.treasuredata.co.jp",
            "https://api-presto.treasuredata.co.jp",
        ),
        (
            "https://api.ap02.treasuredata.com",
            "https://api.ap02.treasuredata.com",
            "https://api-workflow.ap02.treasuredata.com",
            "https://api-presto.ap02.treasuredata.com",
        ),
        # the seed pasted the CDP host as "endpoint": same site, not an error
        (
            "https://api-cdp.eu01.treasuredata.com",
            "https://api.eu01.treasuredata.com",
            "https://api-workflow.eu01.treasuredata.com",
            "https://api-presto.eu01.treasuredata.com",
        ),
        (
            "https://api-cdp.treasuredata.co.jp",
            "https://api.treasuredata.co.jp",
            "https://api-workflow.treasuredata.co.jp",
            "https://api-presto.treasuredata.co.jp",
        ),
        (
            "https://api-workflow.treasuredata.com",
            "https://api.treasuredata.com",
            "https://api-workflow.treasuredata.com",
            "https://api-presto.treasuredata.com",
        ),
        (
            "api.ap03.treasuredata.com",  # no scheme: https
            "https://api.ap03.treasuredata.com",
            "https://api-workflow.ap03.treasuredata.com",
            "https://api-presto.ap03.treasuredata.com",
        ),
    ],
)
def test_td_sites_map_to_their_service_hosts(
    endpoint: str, api: str, workflow: str, presto: str
) -> None:
    hosts = resolve_hosts(endpoint)
    assert (hosts.api, hosts.workflow, hosts.presto) == (api, workflow, presto)
    assert hosts.is_td


def test_a_non_td_host_serves_every_api_on_its_origin() -> None:
    hosts = resolve_hosts("http://127.0.0.1:8765/")
    assert hosts.api == hosts.workflow == hosts.presto == "http://127.0.0.1:8765"
    assert not hosts.is_td


@pytest.mark.parametrize(
    "endpoint", ["ftp://api.treasuredata.com", "https://www.treasuredata.com", "https://"]
)
def test_bad_endpoints_say_what_is_expected(endpoint: str) -> None:
    with pytest.raises(BackendError, match=r"api\.treasuredata\.com"):
        resolve_hosts(endpoint)


@pytest.mark.parametrize(
    ("endpoint", "workflow_endpoint", "api", "workflow"),
    [
        # a private Digdag server beside TD's API of the site
        (
            "https://api.eu01.treasuredata.com",
            "http://digdag.internal:65432/",
            "https://api.eu01.treasuredata.com",
            "http://digdag.internal:65432",
        ),
        # a proxy in front of both, under names TD's site rules cannot derive from
        (
            "https://td-api.proxy.example",
            "https://td-workflow.proxy.example",
            "https://td-api.proxy.example",
            "https://td-workflow.proxy.example",
        ),
    ],
)
def test_a_configured_workflow_endpoint_replaces_the_derived_host(
    endpoint: str, workflow_endpoint: str, api: str, workflow: str
) -> None:
    hosts = resolve_hosts(endpoint, workflow_endpoint)
    assert (hosts.api, hosts.workflow) == (api, workflow)
    assert resolve_hosts(endpoint, None) == resolve_hosts(endpoint)


def test_a_bad_workflow_endpoint_is_named() -> None:
    with pytest.raises(BackendError, match=r"^workflow_endpoint 'ftp://x' is not a URL"):
        resolve_hosts("https://api.treasuredata.com", "ftp://x")
