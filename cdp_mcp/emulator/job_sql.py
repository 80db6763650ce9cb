"""A query job's SQL run the way TD runs it, on one warehouse cursor (so a kill can interrupt it).

- Each statement is translated from the job's engine (presto, trino or hive) to DuckDB.
- `CREATE TABLE t AS <query>` stores TD's column types (long, double, string, boolean);
  `CREATE TABLE t (a varchar)` makes (a, time): every TD table has `time`.
- `INSERT INTO t [(cols)] <query>` appends by column name and adds the columns the table
  lacks (TD's schema-on-write: a plain DuckDB INSERT would fill columns by position, so a
  new table holding only `time` would take the first value as its time). The table must
  exist, as on TD.
- Hive's `INSERT OVERWRITE TABLE t <query>` replaces the rows.
- A write answers, on Presto and Trino, one `rows` column with the rows written (Presto's
  own answer); on Hive, nothing. Other statements without a result (DDL) answer nothing.
- The result schema names each column's Presto type (Hive's for a hive job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from cdp_mcp.backends.base import QueryError
from cdp_mcp.backends.local import (
    ENGINES,
    append_by_name,
    create_table_as,
    json_value,
    list_tables,
    split_statements,
    split_table,
    translate,
    write_rows,
)
from cdp_mcp.core.sqltext import quiet_sqlglot, quote_ident

# sqlglot's arg name for a WITH clause ("with_" since sqlglot 28, "with" before)
_WITH = "with_" if "with_" in exp.Insert.arg_types else "with"


class Stopped(Exception):
    """The job was killed between statements."""


@dataclass
class Outcome:
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)


def run_job_sql(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    database: str,
    engine: str,
    stopped: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Run every statement; the last one's result is the job's. QueryError names the line."""
    statements = split_statements(sql)
    if not statements:
        raise QueryError("no SQL statement to run")
    outcome = Outcome()
    for statement in statements:
        if stopped():
            raise Stopped
        try:
            outcome = _run_statement(cur, statement.text, database, engine)
        except (duckdb.Error, ValueError, QueryError) as e:
            if isinstance(e, duckdb.InterruptException) or stopped():
                raise Stopped from None
            where = f"line {statement.line}: " if len(statements) > 1 else ""
            raise QueryError(f"{where}{str(e).strip()}") from None
    return outcome


def _run_statement(
    cur: duckdb.DuckDBPyConnection, text: str, database: str, engine: str
) -> Outcome:
    tree = _parse(text, engine)
    if (
        isinstance(tree, exp.Create)
        and str(tree.args.get("kind") or "").upper() == "TABLE"
        and isinstance(tree.expression, exp.Query)
    ):
        return _create_as(cur, tree, database, engine)
    if isinstance(tree, exp.Insert) and not tree.args.get("overwrite"):
        written = _insert_by_name(cur, tree, database, engine)
        if written is not None:
            return _written(written, engine)
    if _declares_table_without_time(tree):
        assert isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema)
        time_column = exp.ColumnDef(
            this=exp.to_identifier("time"), kind=exp.DataType.build("BIGINT")
        )
        tree.this.append("expressions", time_column)
        text = tree.sql(dialect=ENGINES[engine])
    translated = translate(text, engine)
    if translated.target:  # Hive's INSERT OVERWRITE (the other writes are handled above)
        if not translated.create_table:
            _require_table(cur, *split_table(translated.target, database))
        return _written(write_rows(cur, database, translated), engine)
    cur.execute(translated.sql)
    if cur.description is None:
        return Outcome()
    if isinstance(tree, exp.Insert):  # DuckDB's own INSERT (by position) answers `Count`
        row = cur.fetchone()
        return _written(int(row[0]) if row else 0, engine)
    if not translated.is_query:  # DDL answers DuckDB's `Success`; TD answers nothing
        cur.fetchall()
        return Outcome()
    columns = _column_names(tree, [str(d[0]) for d in cur.description], engine)
    types = [type_name(d[1], engine) for d in cur.description]
    rows = [[json_value(v) for v in r] for r in cur.fetchall()]
    return Outcome(columns, types, rows)


def _declares_table_without_time(tree: exp.Expression | None) -> bool:
    """`CREATE TABLE t (a varchar)`: on TD every table has `time` (unix seconds), declared or
    not (docs.treasuredata.com, Schema Management), so the table made is (a, time)."""
    if not (
        isinstance(tree, exp.Create)
        and str(tree.args.get("kind", "")).upper() == "TABLE"
        and tree.expression is None
        and isinstance(tree.this, exp.Schema)
    ):
        return False
    defs = [d for d in tree.this.expressions if isinstance(d, exp.ColumnDef)]
    return bool(defs) and not any(d.name.lower() == "time" for d in defs)


def _parse(text: str, engine: str) -> exp.Expression | None:
    try:
        with quiet_sqlglot():  # a SHOW is kept as a command: no warning
            parsed = sqlglot.parse_one(text, read=ENGINES[engine])
    except sqlglot.errors.SqlglotError:
        return None  # translate() passes it through as written
    return parsed if isinstance(parsed, exp.Expression) else None


def _target(node: exp.Expression, database: str) -> tuple[str, str, list[str]]:
    """(database, table, column list) of an INSERT's or CREATE's target."""
    columns: list[str] = []
    if isinstance(node, exp.Schema):
        columns = [c.name for c in node.expressions]
        node = node.this
    if not isinstance(node, exp.Table) or not node.name:
        raise QueryError(f"cannot tell the target table of {node.sql()!r}")
    return node.db or database, node.name, columns


def _query_sql(query: exp.Expression, engine: str, ctes: exp.Expression | None = None) -> str:
    if ctes is not None and isinstance(query, exp.Query):  # Hive's `WITH q AS (..) INSERT ..`
        query = query.copy()
        query.set(_WITH, ctes.copy())
    return translate(query.sql(dialect=ENGINES[engine]), engine).sql


def _column_names(tree: exp.Expression | None, names: list[str], engine: str) -> list[str]:
    """Presto names an unnamed result column `_col0`, `_col1`...; Hive `_c0`, `_c1`..."""
    if not isinstance(tree, exp.Query):
        return names
    selects = tree.selects
    if len(selects) != len(names) or any(isinstance(e, exp.Star) for e in selects):
        return names
    prefix = "_c" if engine == "hive" else "_col"
    out = []
    for i, (projection, name) in enumerate(zip(selects, names, strict=True)):
        named = isinstance(projection, exp.Alias | exp.Column) or (
            isinstance(projection, exp.Dot) and projection.name
        )
        out.append(name if named else f"{prefix}{i}")
    return out


def _require_table(cur: duckdb.DuckDBPyConnection, database: str, table: str) -> None:
    if table not in list_tables(cur, database):
        raise QueryError(f"Table '{database}.{table}' does not exist")


def _create_as(
    cur: duckdb.DuckDBPyConnection, tree: exp.Create, database: str, engine: str
) -> Outcome:
    db, table, columns = _target(tree.this, database)
    select = _query_sql(tree.expression, engine)
    if columns:
        select = f"SELECT * FROM ({select}) AS __q({', '.join(map(quote_ident, columns))})"
    if table in list_tables(cur, db) and not tree.args.get("replace"):
        if tree.args.get("exists"):  # IF NOT EXISTS
            return _written(0, engine)
        raise QueryError(f"Table '{db}.{table}' already exists")
    return _written(create_table_as(cur, db, table, select), engine)


def _insert_by_name(
    cur: duckdb.DuckDBPyConnection, tree: exp.Insert, database: str, engine: str
) -> int | None:
    """Rows appended, or None for an INSERT left to DuckDB (VALUES without a column list)."""
    db, table, columns = _target(tree.this, database)
    source = tree.expression
    if not columns and not isinstance(source, exp.Query):
        return None
    _require_table(cur, db, table)
    select = _query_sql(source, engine, tree.args.get(_WITH))
    if columns:
        select = f"SELECT * FROM ({select}) AS __q({', '.join(map(quote_ident, columns))})"
    return append_by_name(cur, db, table, select)


def _written(rows: int, engine: str) -> Outcome:
    if engine == "hive":
        return Outcome()
    return Outcome(["rows"], ["bigint"], [[rows]])


_PRESTO_TYPES = {
    "tinyint": "tinyint",
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "hugeint": "decimal(38,0)",
    "utinyint": "smallint",
    "usmallint": "integer",
    "uinteger": "bigint",
    "ubigint": "decimal(20,0)",
    "float": "real",
    "double": "double",
    "boolean": "boolean",
    "varchar": "varchar",
    "blob": "varbinary",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamp with time zone": "timestamp with time zone",
    "uuid": "uuid",
    "json": "json",
    "null": "unknown",
}
_HIVE_TYPES = {
    "integer": "int",
    "utinyint": "smallint",
    "usmallint": "int",
    "uinteger": "bigint",
    "float": "float",
    "varchar": "string",
    "blob": "binary",
    "timestamp with time zone": "timestamp",
    "uuid": "string",
    "json": "string",
    "null": "void",
}


def type_name(dtype: Any, engine: str) -> str:
    """The Presto (or Hive) name of a DuckDB result type, as TD's `hive_result_schema` has it."""
    hive = engine == "hive"
    kind = str(getattr(dtype, "id", str(dtype))).lower()
    children = list(getattr(dtype, "children", []) or []) if kind in _NESTED else []
    if kind == "decimal":
        params = dict(children)
        return f"decimal({params.get('precision', 38)},{params.get('scale', 0)})"
    if kind == "list":
        inner = type_name(children[0][1], engine)
        return f"array<{inner}>" if hive else f"array({inner})"
    if kind == "map":
        key, value = (type_name(t, engine) for _, t in children)
        return f"map<{key},{value}>" if hive else f"map({key}, {value})"
    if kind == "struct":
        fields = [(n, type_name(t, engine)) for n, t in children]
        if hive:
            return "struct<" + ",".join(f"{n}:{t}" for n, t in fields) + ">"
        return "row(" + ", ".join(f"{n} {t}" for n, t in fields) + ")"
    if hive and kind in _HIVE_TYPES:
        return _HIVE_TYPES[kind]
    return _PRESTO_TYPES.get(kind, "varchar" if not hive else "string")


_NESTED = ("decimal", "list", "map", "struct")
