"""`run_master_tables`: each of unify.yml's `master_tables`, one row per profile.

A master table has the id (named by the id, e.g. `unified_cookie_id`) of every profile in
the id's lookup, then one column per attribute (TD's docs "ID Unification Output"; the
attribute options as treasure-boxes id-unification-samples ex1-ex5 use them):
- `source_columns`: candidates are the non-NULL values of `column` (default: the attribute's
  name) in the rows of `table` that the enrichment gives the profile's id; values failing the
  attribute's `valid_regexp` / `invalid_texts` are left out. The best candidate has the
  smallest `priority` (default: its place in the list), then, within a priority, the largest
  `order_by` (default `time`) for `order: last` (the default) or the smallest for `first`,
  then the smallest value.
- `array_elements: n`: the n best distinct values, best first, instead of one value.
- `source_canonical_id` / `source_persistent_id`: the other id's value(s) for the profile
  (the other id of its values, earliest first seen first).
A column keeps its source columns' type when they share one, else it is text.
"""

from __future__ import annotations

import duckdb

from cdp_mcp.backends.local.tables import retry_on_conflict, transaction
from cdp_mcp.backends.local.unification.enrich import check_id_columns, with_ids_sql
from cdp_mcp.backends.local.unification.spec import (
    DEFAULT_ORDER_BY,
    AttributeSpec,
    MasterSpec,
    UnificationError,
    UnifySpec,
)
from cdp_mcp.backends.local.unification.sql import Scratch, columns, lit, scalar, table
from cdp_mcp.core.sqltext import quote_ident

TEXT = "VARCHAR"
NUMERIC = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "DOUBLE", "FLOAT", "DECIMAL", "U")


def write_master_table(con: duckdb.DuckDBPyConnection, spec: UnifySpec, m: MasterSpec) -> int:
    """Replace `{database}.{m.name}`; returns its rows (profiles)."""
    id_spec = spec.id(m.id_name)
    lookup = table(spec.database, f"{id_spec.name}_lookup")
    id_col = quote_ident(id_spec.id_column)
    scratch = Scratch(con)
    try:
        rows: dict[str, str] = {}  # unify.yml table -> temp table of its rows with the id
        selects, joins = [], []
        for j, a in enumerate(m.attributes):
            values = _attribute(con, scratch, spec, m, j, a, rows)
            selects.append(f"a{j}.value AS {quote_ident(a.name)}")
            joins.append(f"LEFT JOIN ({values}) a{j} ON a{j}.uid = p.uid")
        body = (
            f"SELECT p.uid AS {quote_ident(id_spec.name)}"
            + "".join(f", {s}" for s in selects)
            + f" FROM (SELECT DISTINCT {id_col} AS uid FROM {lookup}) p "
            + " ".join(joins)
        )
        target = table(spec.database, m.name)

        def write() -> None:
            with transaction(con):
                con.execute(f"CREATE OR REPLACE TABLE {target} AS {body}")

        retry_on_conflict(write)
        return int(scalar(con, f"SELECT count(*) FROM {target}") or 0)
    finally:
        scratch.close()


def _attribute(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    m: MasterSpec,
    j: int,
    a: AttributeSpec,
    rows: dict[str, str],
) -> str:
    """A relation (uid, value) for one attribute."""
    if a.source_id is not None:
        candidates = _id_candidates(spec, m.id_name, a.source_id)
    else:
        candidates = _column_candidates(con, scratch, spec, m, j, a, rows)
    ranked = f"""
        SELECT uid, value, row_number() OVER (
            PARTITION BY uid
            ORDER BY priority, o_last DESC NULLS LAST, o_first NULLS LAST, CAST(value AS VARCHAR)
        ) AS r
        FROM ({candidates})"""
    if a.array_elements is None:
        return f"SELECT uid, value FROM ({ranked}) WHERE r = 1"
    return f"""
        SELECT uid, list(value ORDER BY r)[1:{int(a.array_elements)}] AS value
        FROM (SELECT uid, value, min(r) AS r FROM ({ranked}) GROUP BY uid, value)
        GROUP BY uid"""


def _column_candidates(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    m: MasterSpec,
    j: int,
    a: AttributeSpec,
    rows: dict[str, str],
) -> str:
    """(uid, value, priority, o_last, o_first) from the attribute's source columns."""
    path = f"master_tables[{m.name}].attributes[{j}]"
    found = []  # (source column, its table's columns, order_by or None)
    for sc in a.source_columns:
        t = spec.table(sc.table)
        cols = columns(con, t.database, t.table)
        if sc.column not in cols:
            raise UnificationError(f"{path} ({a.name}): {t.qualified} has no column {sc.column!r}")
        order: str | None = sc.order_by
        if sc.order_by not in cols:
            if sc.order_by != DEFAULT_ORDER_BY:
                raise UnificationError(
                    f"{path} ({a.name}): {t.qualified} has no column {sc.order_by!r} (order_by)"
                )
            order = None  # the default order_by on a table without TD's `time`
        found.append((sc, cols, order))
    value_types = {cols[sc.column] for sc, cols, _ in found}
    value_type = value_types.pop() if len(value_types) == 1 else TEXT
    order_types = {cols[o] for _, cols, o in found if o is not None}
    numeric = all(k.upper().startswith(NUMERIC) for k in order_types)
    order_type = "DOUBLE" if numeric else TEXT
    parts = []
    uid = quote_ident(m.id_name)
    for sc, _, order in found:
        o = f"CAST({quote_ident(order)} AS {order_type})" if order else f"NULL::{order_type}"
        last, first = (
            (o, f"NULL::{order_type}") if sc.order == "last" else (f"NULL::{order_type}", o)
        )
        value = f"CAST({quote_ident(sc.column)} AS {value_type})"
        text = f"CAST({quote_ident(sc.column)} AS VARCHAR)"
        source = _rows_with_id(con, scratch, spec, m.id_name, sc.table, rows)
        parts.append(
            f"SELECT {uid} AS uid, {value} AS value, {sc.priority}::BIGINT AS priority,"
            f" {last} AS o_last, {first} AS o_first"
            f" FROM {source} WHERE {uid} IS NOT NULL AND {_valid(text, a)}"
        )
    return " UNION ALL ".join(parts)


def _valid(text: str, a: AttributeSpec) -> str:
    conditions = [f"{text} IS NOT NULL"]
    texts = [t for t in a.invalid_texts if t is not None]
    if texts:
        conditions.append(f"{text} NOT IN ({', '.join(lit(t) for t in texts)})")
    if a.valid_regexp is not None:
        conditions.append(f"regexp_matches({text}, {lit(a.valid_regexp)})")
    return " AND ".join(conditions)


def _rows_with_id(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    id_name: str,
    table_name: str,
    rows: dict[str, str],
) -> str:
    """A temp table: every row of a unify.yml table with the id's column, as enriched."""
    if table_name not in rows:
        t = spec.table(table_name)
        ids = (spec.id(id_name),)
        check_id_columns(con, t, ids)
        temp = scratch.name(f"master_rows_{t.table_id}")
        con.execute(f"CREATE TEMP TABLE {temp} AS {with_ids_sql(spec, t, ids)}")
        rows[table_name] = temp
    return rows[table_name]


def _id_candidates(spec: UnifySpec, id_name: str, other: str) -> str:
    """(uid, value, priority, o): the other id of each value of the profile."""
    mine, theirs = spec.id(id_name), spec.id(other)
    a = table(spec.database, f"{mine.name}_lookup")
    b = table(spec.database, f"{theirs.name}_lookup")
    return f"""
        SELECT x.{quote_ident(mine.id_column)} AS uid, y.{quote_ident(theirs.id_column)} AS value,
               1::BIGINT AS priority, NULL::DOUBLE AS o_last,
               CAST(y.{quote_ident(theirs.id_column + "_first_seen_at")} AS DOUBLE) AS o_first
        FROM {a} x JOIN {b} y ON y.id = x.id AND y.id_key_type = x.id_key_type"""
