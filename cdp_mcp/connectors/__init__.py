"""TD input connectors: the catalog (catalog.yml), its validator and the `in:` it renders."""

from cdp_mcp.connectors.catalog import (
    AUTH_ID,
    Connector,
    catalog,
    check_settings,
    connector_types,
    get,
    unknown_type_message,
)

__all__ = [
    "AUTH_ID",
    "Connector",
    "catalog",
    "check_settings",
    "connector_types",
    "get",
    "unknown_type_message",
]
