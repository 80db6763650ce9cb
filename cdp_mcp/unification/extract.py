"""Read the key values of unify.yml's tables: one row per valid value of a record.

A record is a row of a source table (usually `unif_input`). A value links only when it is
not NULL, not one of its key's `invalid_texts`, and matches its key's `valid_regexp`
(a partial match, like Presto's `regexp_like` on TD). Only the keys the id merges by
(`merge_by_keys`) are read.

Incremental runs read the rows whose incremental column (`time`) is at or after the value
seen last run: a row at exactly the watermark may be read twice, which is harmless
because adding an edge the graph already has changes nothing (record counts are kept exact
by `settled` counts, see nodes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from cdp_mcp.sources import quote_ident
from cdp_mcp.unification.spec import IdSpec, KeySpec, TableSpec, UnificationError, UnifySpec
from cdp_mcp.unification.sql import Scratch, columns, exists, lit, scalar, table

NUMERIC = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "DOUBLE")
TIME_COLUMN = "time"


@dataclass
class Extracted:
    values: str  # temp table (rid, kt: key code, p: merge priority, v, t: time, tb: table id)
    n_records: int  # record ids are 0..n_records-1
    rows_read: int
    watermarks: dict[str, int]  # table name -> largest incremental value (the next start)


def extract_values(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    id_spec: IdSpec,
    since: dict[str, int] | None,
) -> Extracted:
    """Fill a temp table with the valid values of every record (since the watermarks)."""
    priority = {k: i for i, k in enumerate(id_spec.merge_by_keys)}
    parts: list[str] = []
    offset = 0
    watermarks: dict[str, int] = {}
    rows_read = 0
    for t in spec.tables_for(id_spec):
        source, n_rows = _source(con, scratch, t)
        cols = columns(con, t.database, t.table)
        missing = [kc.column for kc in t.key_columns if kc.column not in cols]
        if missing:
            raise UnificationError(
                f"{t.qualified} has no column {', '.join(missing)} (unify.yml key_columns)"
            )
        time_sql = f"CAST({quote_ident(TIME_COLUMN)} AS BIGINT)" if TIME_COLUMN in cols else "NULL"
        inc = _incremental_expr(t, cols)
        new_rows = "true"
        if inc is not None:
            mark = scalar(con, f"SELECT max({inc}) FROM {source}")
            if mark is not None:
                watermarks[t.name] = int(mark)
            if since is not None and t.name in since:
                new_rows = f"({inc} >= {int(since[t.name])} OR {inc} IS NULL)"
        rows_read += int(scalar(con, f"SELECT count(*) FROM {source} WHERE {new_rows}") or 0)
        for kc in t.key_columns:
            if kc.key not in priority:
                continue
            key = spec.key(kc.key)
            value = f"CAST({quote_ident(kc.column)} AS VARCHAR)"
            parts.append(
                f"SELECT {offset} + rowid AS rid, {key.code}::BIGINT AS kt,"
                f" {priority[kc.key]}::BIGINT AS p, {value} AS v,"
                f" {time_sql} AS t, {t.table_id} AS tb FROM {source}"
                f" WHERE {_valid(value, key)} AND {new_rows}"
            )
        offset += n_rows
    values = scratch.name("values")
    body = "\nUNION ALL\n".join(parts) or (
        "SELECT 0::BIGINT AS rid, 0::BIGINT AS kt, 0::BIGINT AS p, ''::VARCHAR AS v,"
        " 0::BIGINT AS t, 0 AS tb WHERE false"
    )
    con.execute(f"CREATE TEMP TABLE {values} AS {body}")
    return Extracted(values=values, n_records=offset, rows_read=rows_read, watermarks=watermarks)


def _source(con: duckdb.DuckDBPyConnection, scratch: Scratch, t: TableSpec) -> tuple[str, int]:
    """A relation with dense `rowid`s for the table, and the size of its rowid range."""
    kind = exists(con, t.database, t.table)
    if kind is None:
        raise UnificationError(
            f"table {t.qualified} (unify.yml tables) does not exist: run the prep first"
        )
    if kind == "BASE TABLE":
        source = table(t.database, t.table)
        size = scalar(con, f"SELECT max(rowid) + 1 FROM {source}")
        return source, int(size or 0)
    # A view has no rowid; a copy gives every row one id shared by all its key columns.
    copy = scratch.name(f"copy_{t.table_id}")
    con.execute(f"CREATE TEMP TABLE {copy} AS SELECT * FROM {table(t.database, t.table)}")
    return copy, int(scalar(con, f"SELECT count(*) FROM {copy}") or 0)


def _incremental_expr(t: TableSpec, cols: dict[str, str]) -> str | None:
    """The incremental column as BIGINT, or None when the table has no numeric one."""
    col_type = cols.get(t.incremental_column, "")
    if not col_type.upper().startswith(NUMERIC):
        return None
    return f"CAST({quote_ident(t.incremental_column)} AS BIGINT)"


def _valid(value: str, key: KeySpec) -> str:
    conditions = [f"{value} IS NOT NULL"]
    if key.invalid_texts:
        conditions.append(f"{value} NOT IN ({', '.join(lit(x) for x in key.invalid_texts)})")
    if key.valid_regexp is not None:
        conditions.append(f"regexp_matches({value}, {lit(key.valid_regexp)})")
    return " AND ".join(conditions)
