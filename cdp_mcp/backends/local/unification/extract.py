"""Read the key values of unify.yml's tables: one row per valid value of a record.

A record is a row of a source table (usually `unif_input`). A value links only when it is
not NULL, not one of its key's `invalid_texts`, and matches its key's `valid_regexp`
(a partial match, like Presto's `regexp_like` on TD). Only the keys the id merges by
(`merge_by_keys`) are read.

Incremental runs read the rows whose `incremental_columns`, compared in their order, are at
or after the largest seen last run: a row at exactly the watermark may be read twice, which
is harmless because adding an edge the graph already has changes nothing (record counts are
kept exact: a row is `settled` once it is before the new watermark, see nodes.py). A table
without `incremental_columns` is read whole on every run (TD's docs: the previous graph
is combined with the graph of the records "when incremental_columns: [time] is specified").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from cdp_mcp.backends.local.unification.spec import (
    IdSpec,
    KeySpec,
    TableSpec,
    UnificationError,
    UnifySpec,
)
from cdp_mcp.backends.local.unification.sql import Scratch, columns, exists, lit, scalar, table
from cdp_mcp.core.sqltext import quote_ident

NUMERIC = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "DOUBLE")
TIME_COLUMN = "time"
Watermark = list[Any]  # the largest (incremental column values) read, in column order


@dataclass
class Extracted:
    # temp table (rid, kt: key code, p: merge priority, v, t: time, tb: table id,
    # s: the row is before this run's watermark, so the next run will not read it again)
    values: str
    n_records: int  # record ids are 0..n_records-1
    rows_read: int
    watermarks: dict[str, Watermark]  # table name -> where the next run starts
    at_mark: dict[str, int] = field(default_factory=dict)  # table -> rows at its watermark
    # Rows at the previous watermark were not read again (none came since): every record
    # the previous run counted is carried over, not only its settled ones (nodes.py).
    skipped_mark: bool = False


def extract_values(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    id_spec: IdSpec,
    since: dict[str, Watermark] | None,
    since_at_mark: dict[str, int] | None = None,
) -> Extracted:
    """Fill a temp table with the valid values of every record (since the watermarks).

    `since_at_mark`: the rows the previous run saw at each watermark. When no table has more
    there now (nothing arrived at the watermark since), the rows at it are not read again: a
    load writes one `time` for all its rows, so re-reading them would re-read the whole
    previous load."""
    priority = {k: i for i, k in enumerate(id_spec.rank_keys)}
    merged = set(id_spec.merge_by_keys)
    parts: list[str] = []
    offset = 0
    watermarks: dict[str, Watermark] = {}
    rows_read = 0
    at_mark: dict[str, int] = {}
    used = [
        t
        for t in spec.tables_for(id_spec)
        if set(id_spec.merge_by_keys) & {kc.key for kc in t.key_columns}
    ]
    skip = since is not None and _nothing_new_at_marks(con, used, since, since_at_mark)
    for t in spec.tables_for(id_spec):
        if not merged & {kc.key for kc in t.key_columns}:
            continue  # the id takes nothing from it (an id merging other ids, say)
        source, n_rows = source_relation(con, scratch, t)
        cols = columns(con, t.database, t.table)
        missing = [kc.column for kc in t.key_columns if kc.column not in cols]
        missing += [c for c in t.incremental_columns if c not in cols]
        if missing:
            raise UnificationError(
                f"{t.qualified} has no column {', '.join(missing)} (unify.yml key_columns "
                "or incremental_columns)"
            )
        time_sql = f"CAST({quote_ident(TIME_COLUMN)} AS BIGINT)" if TIME_COLUMN in cols else "NULL"
        inc = incremental_row(t, cols)
        new_rows, before_mark = "true", "false"
        if inc is not None:
            mark = scalar(con, f"SELECT max({inc}) FROM {source}")
            if mark is not None:
                watermarks[t.name] = list(mark) if isinstance(mark, tuple) else [mark]
                before_mark = f"({inc} < {row_literal(watermarks[t.name])})"
                at = (
                    f"SELECT count(*) FROM {source} WHERE {inc} = {row_literal(watermarks[t.name])}"
                )
                at_mark[t.name] = int(scalar(con, at) or 0)
            if since is not None and t.name in since:
                nulls = " OR ".join(f"{quote_ident(c)} IS NULL" for c in t.incremental_columns)
                after = ">" if skip else ">="
                new_rows = f"({inc} {after} {row_literal(since[t.name])} OR {nulls})"
        rows_read += int(scalar(con, f"SELECT count(*) FROM {source} WHERE {new_rows}") or 0)
        for kc in t.key_columns:
            if kc.key not in merged:
                continue
            key = spec.key(kc.key)
            value = f"CAST({quote_ident(kc.column)} AS VARCHAR)"
            parts.append(
                f"SELECT {offset} + rowid AS rid, {key.code}::BIGINT AS kt,"
                f" {priority[kc.key]}::BIGINT AS p, {value} AS v,"
                f" {time_sql} AS t, {t.table_id} AS tb, coalesce({before_mark}, false) AS s"
                f" FROM {source} WHERE {valid_sql(value, key)} AND {new_rows}"
            )
        offset += n_rows
    values = scratch.name("values")
    body = "\nUNION ALL\n".join(parts) or (
        "SELECT 0::BIGINT AS rid, 0::BIGINT AS kt, 0::BIGINT AS p, ''::VARCHAR AS v,"
        " 0::BIGINT AS t, 0 AS tb, false AS s WHERE false"
    )
    con.execute(f"CREATE TEMP TABLE {values} AS {body}")
    return Extracted(
        values=values,
        n_records=offset,
        rows_read=rows_read,
        watermarks=watermarks,
        at_mark=at_mark,
        skipped_mark=skip,
    )


def _nothing_new_at_marks(
    con: duckdb.DuckDBPyConnection,
    tables: list[TableSpec],
    since: dict[str, Watermark],
    counts: dict[str, int] | None,
) -> bool:
    """Whether every table the id reads has incremental columns and, at its previous
    watermark, no more rows than the previous run counted there (all or nothing, since the
    records carried over are counted per value, not per table). A row cannot arrive later
    with the `time` of an earlier load (each load writes its own), so more rows there means
    one did; fewer means rows left (which one vanished and another came in its place would
    not tell: two loads in the same second as the previous run)."""
    if not counts or not tables:
        return False
    for t in tables:
        if t.name not in since or t.name not in counts:
            return False
        if exists(con, t.database, t.table) != "BASE TABLE":
            return False  # a view is copied whole on every run anyway
        source = table(t.database, t.table)
        cols = columns(con, t.database, t.table)
        inc = incremental_row(t, cols)
        if inc is None or any(c not in cols for c in t.incremental_columns):
            return False
        # Rows without incremental values are read on every run, so they are never carried.
        nulls = " OR ".join(f"{quote_ident(c)} IS NULL" for c in t.incremental_columns)
        here, unmarked = con.execute(
            f"SELECT count(*) FILTER (WHERE {inc} = {row_literal(since[t.name])}),"
            f" count(*) FILTER (WHERE {nulls}) FROM {source}"
        ).fetchall()[0]
        # Fewer is fine: staging keeps an updated row's latest version, so the older one's
        # combination leaves unif_input (its links stay in the graph, as TD keeps them).
        if int(here or 0) > counts[t.name] or unmarked:
            return False
    return True


def source_relation(
    con: duckdb.DuckDBPyConnection, scratch: Scratch, t: TableSpec
) -> tuple[str, int]:
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


def incremental_row(t: TableSpec, cols: dict[str, str]) -> str | None:
    """The incremental columns as one comparable row (numbers as numbers, anything else as
    text, which orders ISO dates and times), or None when the table has none."""
    if not t.incremental_columns:
        return None
    parts = []
    for c in t.incremental_columns:
        kind = cols[c].upper()
        if kind.startswith(NUMERIC):
            cast = "DOUBLE" if kind.startswith("DOUBLE") else "BIGINT"
        else:
            cast = "VARCHAR"
        parts.append(f"CAST({quote_ident(c)} AS {cast})")
    # One column (the usual `time`) is compared as itself: a row() per record costs.
    return parts[0] if len(parts) == 1 else f"row({', '.join(parts)})"


def row_literal(mark: Watermark) -> str:
    return lit(mark[0]) if len(mark) == 1 else f"row({', '.join(lit(v) for v in mark)})"


def load_watermarks(text: str | None) -> dict[str, Watermark]:
    """The watermarks a run stored (a run before multi-column support stored one number)."""
    marks = json.loads(text or "{}")
    return {str(k): v if isinstance(v, list) else [v] for k, v in marks.items()}


def valid_sql(value: str, key: KeySpec) -> str:
    conditions = [f"{value} IS NOT NULL"]
    if key.invalid_texts:
        conditions.append(f"{value} NOT IN ({', '.join(lit(x) for x in key.invalid_texts)})")
    if key.valid_regexp is not None:
        conditions.append(f"regexp_matches({value}, {lit(key.valid_regexp)})")
    return " AND ".join(conditions)
