"""The embedded backend: a Digdag-compatible workflow runner over one DuckDB file.

This is the package's one face: the emulator, the CLI and the rest of cdp_mcp import from
here, never from a submodule. Modules inside the package import their siblings directly and
never this face, so importing it cannot loop.
"""

from cdp_mcp.backends.local.backend import LocalBackend
from cdp_mcp.backends.local.hooks import UnificationCall, UnificationHandler
from cdp_mcp.backends.local.runtime import LocalRuntime, default_unification_handler
from cdp_mcp.backends.local.sql import ENGINES, split_statements, translate
from cdp_mcp.backends.local.store import StateRow
from cdp_mcp.backends.local.store import parse_ts as parse_stored_time
from cdp_mcp.backends.local.tables import (
    append_by_name,
    create_empty,
    create_schema,
    create_table_as,
    retry_on_conflict,
    split_table,
    transaction,
    write_rows,
)
from cdp_mcp.backends.local.td_udfs import prepare as prepare_td_functions
from cdp_mcp.backends.local.warehouse import (
    Storage,
    Warehouse,
    json_value,
    list_databases,
    list_tables,
    qualified,
    table_columns,
)

__all__ = [
    "ENGINES",
    "LocalBackend",
    "LocalRuntime",
    "StateRow",
    "Storage",
    "UnificationCall",
    "UnificationHandler",
    "Warehouse",
    "append_by_name",
    "create_empty",
    "create_schema",
    "create_table_as",
    "default_unification_handler",
    "json_value",
    "list_databases",
    "list_tables",
    "parse_stored_time",
    "prepare_td_functions",
    "qualified",
    "retry_on_conflict",
    "split_statements",
    "split_table",
    "table_columns",
    "transaction",
    "translate",
    "write_rows",
]
