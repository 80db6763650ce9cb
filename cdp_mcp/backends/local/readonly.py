"""The `query` path's second guard, on the DuckDB text that will run, and SHOW / DESCRIBE.

`check_duckdb` decides on what DuckDB itself reads from the text: its own statement
splitter (one statement, of type SELECT), its parse tree (tables only from the pipeline's
databases, no table function but unnest / range / generate_series, no configuration
read-back) and its bound plan (every scan is a table of the pipeline's databases, so a name
that would resolve to one of DuckDB's system views is caught after name resolution). The
connection it runs on cannot write or reach files anyway (`Warehouse.reader`); this guard
keeps the query inside the pipeline's data.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from cdp_mcp.backends.base import QueryError
from cdp_mcp.backends.local import td_udfs
from cdp_mcp.backends.readonly import KINDS, ReadOnlyError, Show
from cdp_mcp.core.schema import Column, presto_type

# Table functions a read may use: they compute rows, they read nothing.
TABLE_FUNCTIONS = frozenset({"unnest", "range", "generate_series"})
# information_schema views a query may name (limited to the pipeline's databases), with
# their catalog and schema columns; the DuckDB functions behind them in a plan.
INFO_VIEWS = {
    "schemata": ("catalog_name", "schema_name"),
    "tables": ("table_catalog", "table_schema"),
    "columns": ("table_catalog", "table_schema"),
    "views": ("table_catalog", "table_schema"),
}
_INFO_FUNCTIONS = frozenset({"duckdb_schemas", "duckdb_tables", "duckdb_views", "duckdb_columns"})
# Scalar functions that read the engine's settings back (paths of the host among them).
_SETTING_FUNCTIONS = frozenset({"current_setting", "getvariable"})
# Table references that are not reads of a table: DESCRIBE / SUMMARIZE inside a FROM.
_REFUSED_REFS = frozenset({"SHOW_REF", "COLUMN_DATA"})
_HINT = re.compile(r"\n?Did you mean [^\n]*")

Tables = Mapping[str, Sequence[str]]  # database -> its tables and views


def pipeline_tables(
    cur: duckdb.DuckDBPyConnection, databases: Sequence[str]
) -> dict[str, list[str]]:
    rows = cur.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_catalog = current_database() ORDER BY 1, 2"
    ).fetchall()
    found: dict[str, list[str]] = {db: [] for db in databases}
    for schema, name in rows:
        if schema in found:
            found[schema].append(name)
    return found


# SHOW / DESCRIBE as SELECTs


def show_sql(show: Show, default_db: str, tables: Tables, columns: list[Column] | None) -> str:
    """DuckDB SQL answering `show` like Presto, over the pipeline's databases only.

    `columns` are those of the table a SHOW COLUMNS / DESCRIBE names (looked up by the
    caller after `show_table`).
    """
    if show.what == "columns":
        rows = ", ".join(
            f"({_literal(c.name)}, {_literal(presto_type(c.type))}, '', '')" for c in columns or []
        )
        if not rows:
            return 'SELECT NULL AS "Column", NULL AS "Type", NULL AS "Extra", NULL AS "Comment" LIMIT 0'
        return f'SELECT * FROM (VALUES {rows}) AS t("Column", "Type", "Extra", "Comment")'
    like = ""
    if show.like is not None:
        name = "table_name" if show.what == "tables" else "schema_name"
        like = f" AND {name} LIKE {_literal(show.like)}"
        if show.escape is not None:
            like += f" ESCAPE {_literal(show.escape)}"
    if show.what == "tables":
        database = database_of(show.database or default_db, tables)
        return (
            'SELECT table_name AS "Table" FROM information_schema.tables'
            f" WHERE table_catalog = current_database() AND table_schema = {_literal(database)}"
            f"{like} ORDER BY 1"
        )
    names = ", ".join(_literal(db) for db in tables)
    return (
        'SELECT schema_name AS "Schema" FROM information_schema.schemata'
        f" WHERE catalog_name = current_database() AND schema_name IN ({names}){like}"
        " ORDER BY 1"
    )


def show_table(show: Show, default_db: str, tables: Tables) -> tuple[str, str]:
    """(database, table) a SHOW COLUMNS / DESCRIBE names, or QueryError naming the choices."""
    assert show.table is not None
    database = database_of(show.database or default_db, tables)
    table = _find(show.table, tables[database])
    if table is None:
        raise QueryError(_missing_table(f"{database}.{show.table}", tables))
    return database, table


def database_of(name: str, tables: Tables) -> str:
    found = _find(name, list(tables))
    if found is None:
        choices = ", ".join(tables) or "none yet"
        raise QueryError(
            f"database {name!r} is not one of this pipeline's databases ({choices}); "
            "SHOW SCHEMAS lists them"
        )
    return found


# information_schema, limited to the pipeline's databases


def scope_information_schema(tree: exp.Expr, databases: Sequence[str]) -> exp.Expr:
    """`tree` with each information_schema view replaced by its rows for `databases`."""
    names = ", ".join(_literal(db) for db in databases) or "NULL"

    def scoped(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or node.db.lower() != "information_schema":
            return node
        view = node.name.lower()
        if node.catalog or view not in INFO_VIEWS:
            raise ReadOnlyError(
                f"information_schema.{node.name} is not available to `query`; use "
                f"information_schema.{{{', '.join(INFO_VIEWS)}}}, SHOW TABLES or DESCRIBE"
            )
        catalog_col, schema_col = INFO_VIEWS[view]
        inner = sqlglot.parse_one(
            f"SELECT * FROM information_schema.{view} WHERE {catalog_col} = current_database()"
            f" AND {schema_col} IN ({names})",
            read="presto",
        )
        return exp.Subquery(
            this=inner, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name))
        )

    return tree.transform(scoped, copy=False)


# the DuckDB-side check


def check_duckdb(cur: duckdb.DuckDBPyConnection, sql: str, default_db: str, tables: Tables) -> None:
    """Raise unless `sql` is, to DuckDB, one SELECT over the pipeline's tables only."""
    try:
        statements = cur.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(clean_error(str(e), tables)) from None
    if len(statements) != 1:
        raise ReadOnlyError(
            f"send one statement at a time: DuckDB reads {len(statements)} statements in "
            f"the translated query; use one {KINDS}"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ReadOnlyError(
            f"`query` is read-only: DuckDB reads the translated query as a {kind.name} "
            f"statement; use {KINDS}"
        )
    tree = _serialized(cur, "json_serialize_sql", sql, tables)
    info = _check_tree(tree, default_db, tables)
    plan = _serialized(cur, "json_serialize_plan", sql, tables)
    _check_plan(plan, cur, tables, info)


def _serialized(
    cur: duckdb.DuckDBPyConnection, function: str, sql: str, tables: Tables
) -> dict[str, Any]:
    row = cur.execute(f"SELECT {function}(?)", [sql]).fetchone()
    found: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
    if found.get("error"):
        message = str(found.get("error_message") or "DuckDB could not read the query")
        kind = str(found.get("error_type") or "").replace("_", " ")
        prefix = f"{kind.capitalize()} Error: " if kind and "Error" not in message else ""
        raise QueryError(clean_error(prefix + message, tables))
    return found


def _check_tree(tree: dict[str, Any], default_db: str, tables: Tables) -> bool:
    """Check DuckDB's parse tree; True when the query names information_schema."""
    ctes = {str(entry["key"]).lower() for node in _dicts(tree) for entry in _cte_entries(node)}
    info = False
    for node in _dicts(tree):
        kind = node.get("type") if isinstance(node.get("type"), str) else None
        if kind in _REFUSED_REFS:
            raise ReadOnlyError(
                f"`query` reads tables only; DESCRIBE or SUMMARIZE inside a query is refused; use {KINDS}"
            )
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
                raise ReadOnlyError(
                    f"`query` reads the pipeline's tables only: the table function {name}() "
                    f"is refused (allowed: {', '.join(sorted(TABLE_FUNCTIONS))})"
                )
        elif kind == "BASE_TABLE":
            info = _check_table(node, default_db, tables, ctes) or info
        if "function_name" in node and kind != "TABLE_FUNCTION":
            name = str(node["function_name"]).lower()
            if name in _SETTING_FUNCTIONS or node.get("schema") or node.get("catalog"):
                shown = ".".join(p for p in (node.get("catalog"), node.get("schema"), name) if p)
                raise ReadOnlyError(f"`query` reads the pipeline's data only: {shown}() is refused")
    return info


def _check_table(node: dict[str, Any], default_db: str, tables: Tables, ctes: set[str]) -> bool:
    catalog = str(node.get("catalog_name") or "")
    schema = str(node.get("schema_name") or "")
    name = str(node.get("table_name") or "")
    shown = ".".join(p for p in (catalog, schema, name) if p)
    if catalog:
        raise QueryError(_missing_table(shown, tables))
    if schema.lower() == "information_schema":
        if name.lower() not in INFO_VIEWS:
            raise ReadOnlyError(
                f"information_schema.{name} is not available to `query`; use "
                f"information_schema.{{{', '.join(INFO_VIEWS)}}}"
            )
        return True
    if not schema:
        if name.lower() in ctes:
            return False
        schema = default_db
    database = _find(schema, list(tables))
    if database is None or _find(name, tables[database]) is None:
        raise QueryError(_missing_table(f"{schema}.{name}" if database else shown, tables))
    return False


def _check_plan(
    plan: dict[str, Any], cur: duckdb.DuckDBPyConnection, tables: Tables, info: bool
) -> None:
    row = cur.execute("SELECT current_database()").fetchone()
    catalog = row[0] if row else ""
    allowed = TABLE_FUNCTIONS | (_INFO_FUNCTIONS if info else frozenset())
    for node in _dicts(plan):
        if node.get("type") != "LOGICAL_GET":
            continue
        path = [str(p) for p in (node.get("qname") or {}).get("path", [])]
        function = path[-1].lower() if path else ""
        if function == "seq_scan":
            data = node.get("function_data") or {}
            if data.get("catalog") == catalog and data.get("schema") in tables:
                continue
            shown = ".".join(str(data.get(k) or "") for k in ("schema", "table"))
            raise QueryError(_missing_table(shown, tables))
        if function not in allowed:
            raise ReadOnlyError(
                f"`query` reads the pipeline's tables only; the query reads {function or 'a source'} "
                "(a DuckDB system view or function); name tables as database.table"
            )


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _cte_entries(node: dict[str, Any]) -> list[dict[str, Any]]:
    cte_map = node.get("cte_map")
    entries = cte_map.get("map") if isinstance(cte_map, dict) else None
    return [e for e in entries or [] if isinstance(e, dict) and "key" in e]


# errors


def clean_error(message: str, tables: Tables) -> str:
    """DuckDB's message without catalog hints that name what the pipeline does not have."""
    text = td_udfs.readable_error(message.strip())
    if text.startswith("Catalog Error"):
        text = _HINT.sub("", text)
        missing = re.search(r"Table with name (\S+) does not exist", text)
        if missing:
            text = _missing_table(missing.group(1).strip('"'), tables) + text[text.find("\n") :]
    return text


def _missing_table(name: str, tables: Tables) -> str:
    known = [f"{db}.{t}" for db, names in tables.items() for t in names]
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    if not close and "." not in name:
        close = difflib.get_close_matches(name.lower(), [k.split(".", 1)[1] for k in known], n=3)
        close = [k for k in known if k.split(".", 1)[1] in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"table {name} is not in this pipeline's databases ({', '.join(tables) or 'none yet'})."
        f"{hint} SHOW TABLES FROM <database> lists the tables."
    )


def _find(name: str, names: Sequence[str]) -> str | None:
    """`name` among `names` as DuckDB resolves identifiers (case-insensitively)."""
    for candidate in names:
        if candidate == name:
            return candidate
    lowered = name.lower()
    return next((c for c in names if c.lower() == lowered), None)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
