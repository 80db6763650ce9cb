"""`run_enrichments`: TD's `enriched_{table}` per unify.yml table, every row plus each id.

As TD's enrichment does it (aps_claude_tools' port of TD's SQL, "Assign canonical ids
through keys"; TD's docs "ID Unification Output"): a row's id is looked up by its first key
column, in the id's merge priority, whose value is valid for its key, joining `{id}_lookup`
on `id` and `id_key_type`; a value the lookup lacks gets the id it would have as a profile of
its own; a row without a valid value gets NULL. The id's column is named by the id
(`unified_id`), one column per id that covers the table.

Incremental (TD's docs, incremental_update: with `incremental_columns`, "the enrichment
process applies the canonical_id only to the delta records"): when every id enriching the
table ran incrementally, the rows at or after the previous watermark are replaced (after it
only, when the unification did not read the rows at it again: none came since). An id that
continued only the profiles its records touched (delta.py) also says which profiles took
another id (merged into an older one, or a canonical id's new leader); the older rows
holding such an id are given the new one, so the table is what a full rebuild would write.
An id that ran its whole-graph incremental path does not say: then older rows keep the ids
they were given, as TD's docs describe (a full refresh gives them the merged id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from cdp_mcp.backends.local.tables import retry_on_conflict, transaction
from cdp_mcp.backends.local.unification.extract import incremental_row, row_literal, valid_sql
from cdp_mcp.backends.local.unification.outputs import uid_sql
from cdp_mcp.backends.local.unification.spec import IdSpec, TableSpec, UnificationError, UnifySpec
from cdp_mcp.backends.local.unification.sql import arrays, columns, exists, scalar, table
from cdp_mcp.core.sqltext import quote_ident


@dataclass(frozen=True)
class IdChanges:
    """What an id's run changed for the enrichment (engine.RunSummary)."""

    merged: list[tuple[str, str]] | None  # (id before, id after); None: not known
    skipped_mark: bool = False  # the rows at the previous watermark were not read again


@dataclass(frozen=True)
class IdLookup:
    """How one id is found for a row of a table: value and key code expressions."""

    id_spec: IdSpec
    value: str  # the first valid key value, VARCHAR (NULL when none)
    key_code: str  # its key's id_key_type


def id_lookups(
    spec: UnifySpec, t: TableSpec, ids: tuple[IdSpec, ...], alias: str
) -> list[IdLookup]:
    out = []
    for id_spec in ids:
        rank = {k: i for i, k in enumerate(id_spec.rank_keys)}
        ordered = sorted(
            (kc for kc in t.key_columns if kc.key in rank), key=lambda kc: rank[kc.key]
        )
        values, codes = [], []
        for kc in ordered:
            v = f"CAST({alias}.{quote_ident(kc.column)} AS VARCHAR)"
            valid = valid_sql(v, spec.key(kc.key))
            values.append(f"WHEN {valid} THEN {v}")
            codes.append(f"WHEN {valid} THEN {spec.key(kc.key).code}::BIGINT")
        out.append(
            IdLookup(
                id_spec=id_spec,
                value=f"(CASE {' '.join(values)} END)",
                key_code=f"(CASE {' '.join(codes)} END)",
            )
        )
    return out


def with_ids_sql(spec: UnifySpec, t: TableSpec, ids: tuple[IdSpec, ...], where: str = "") -> str:
    """SELECT every column of `t` plus one column per id (named by the id)."""
    lookups = id_lookups(spec, t, ids, "s")
    keyed = ", ".join(
        f"{lk.value} AS __v{i}, {lk.key_code} AS __k{i}" for i, lk in enumerate(lookups)
    )
    drop = ", ".join(f"__v{i}, __k{i}" for i in range(len(lookups)))
    picked = ", ".join(
        f"coalesce(l{i}.{quote_ident(lk.id_spec.id_column)},"
        f" CASE WHEN r.__v{i} IS NOT NULL THEN {uid_sql(spec, f'r.__k{i}', f'r.__v{i}')} END)"
        f" AS {quote_ident(lk.id_spec.name)}"
        for i, lk in enumerate(lookups)
    )
    joins = " ".join(
        f"LEFT JOIN {table(spec.database, lk.id_spec.name + '_lookup')} l{i}"
        f" ON l{i}.id = r.__v{i} AND l{i}.id_key_type = r.__k{i}"
        for i, lk in enumerate(lookups)
    )
    return (
        f"SELECT r.* EXCLUDE ({drop}), {picked}"
        f" FROM (SELECT s.*, {keyed} FROM {table(t.database, t.table)} s {where}) r {joins}"
    )


def check_id_columns(
    con: duckdb.DuckDBPyConnection, t: TableSpec, ids: tuple[IdSpec, ...]
) -> dict[str, str]:
    """The table's columns; raises when it is missing or has a column named like an id."""
    cols = columns(con, t.database, t.table)
    if not cols:
        raise UnificationError(f"table {t.qualified} (unify.yml tables) does not exist")
    for i in ids:
        if i.name in cols:
            raise UnificationError(
                f"{t.qualified} already has a column {i.name!r}: enrichment adds the id under "
                "that name"
            )
    return cols


def enrich_table(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    t: TableSpec,
    modes: dict[str, str],
    since: dict[str, dict[str, list[Any]]],
    changes: dict[str, IdChanges] | None = None,
) -> int | None:
    """Write `enriched_{t}`; returns its rows, or None when no id covers the table."""
    ids = spec.ids_for(t)
    if not ids:
        return None
    cols = check_id_columns(con, t, ids)
    target = table(spec.database, t.enriched)
    changes = changes or {}
    delta = _delta(con, spec, t, ids, modes, since, cols)
    known = [changes.get(i.name, IdChanges(None)) for i in ids]
    after = ">" if delta is not None and all(c.skipped_mark for c in known) else ">="

    def write() -> None:
        with transaction(con):
            if delta is None:
                con.execute(f"CREATE OR REPLACE TABLE {target} AS {with_ids_sql(spec, t, ids)}")
            else:
                inc, mark = delta
                have = columns(con, spec.database, t.enriched)
                for name, kind in cols.items():  # columns the source gained since (TD's way)
                    if name not in have:
                        con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(name)} {kind}")
                for i, c in zip(ids, known, strict=True):
                    _give_new_ids(con, target, i.name, c.merged or [])
                con.execute(f"DELETE FROM {target} WHERE {inc} {after} {mark}")
                body = with_ids_sql(spec, t, ids, f"WHERE {inc} {after} {mark}")
                con.execute(f"INSERT INTO {target} BY NAME {body}")

    retry_on_conflict(write)
    return int(scalar(con, f"SELECT count(*) FROM {target}") or 0)


def record_enrichable(
    con: duckdb.DuckDBPyConnection, spec: UnifySpec, id_spec: IdSpec
) -> TableSpec | None:
    """The table a full run of `id_spec` can enrich from its own arrays (`enrich_records`),
    or None. A record's id is its first valid key value's (in merge priority) profile: with
    one column per key, that is the record's value of the smallest key priority, which the
    run has (first_keys); and the record is the row (rowid) of the id's only table, which
    no other id enriches."""
    if id_spec.merge_by_ids:
        return None
    tables = spec.tables_for(id_spec)
    if len(tables) != 1 or spec.ids_for(tables[0]) != (id_spec,):
        return None
    t = tables[0]
    keys = [kc.key for kc in t.key_columns if kc.key in id_spec.rank_keys]
    if len(keys) != len(set(keys)) or exists(con, t.database, t.table) != "BASE TABLE":
        return None  # two columns of a key: the first, not the smallest, is the record's
    if _dense_rows(con, table(t.database, t.table)) is None:
        # Rows deleted since it was written (the prep's delta): a checkpoint during the run
        # may compact them away and renumber the rowids the records were read by.
        return None
    return t


def _dense_rows(con: duckdb.DuckDBPyConnection, source: str) -> int | None:
    """The table's rows when its rowids have no gaps (0..rows-1), else None."""
    count, top = con.execute(f"SELECT count(*), max(rowid) + 1 FROM {source}").fetchall()[0]
    return int(count or 0) if int(count or 0) == int(top or 0) else None


def first_keys(
    record: np.ndarray, node: np.ndarray, priority: np.ndarray, n_records: int, n_nodes: int
) -> np.ndarray:
    """Per record: the node of its value of the smallest key priority (a record has one
    value per key here), or the id type's largest value when it has none."""
    none = np.iinfo(node.dtype).max
    key = priority.astype(np.int64) * max(n_nodes, 1) + node
    best = np.full(n_records, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, record, key)
    out = np.full(n_records, none, dtype=node.dtype)
    has = best != np.iinfo(np.int64).max
    out[has] = best[has] % max(n_nodes, 1)
    return out


def enrich_records(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    t: TableSpec,
    id_spec: IdSpec,
    leader: np.ndarray,
    people: str,
) -> int | None:
    """Write `enriched_{t}` of a full run from its arrays: per record (the table's rowid)
    its profile's leader node (-1: none), whose id `people` (node, uid) holds; what
    enrich_table writes, without evaluating the keys again and joining every row to the
    lookup on its value. None (nothing written) when the rows no longer line up."""
    check_id_columns(con, t, (id_spec,))
    target, source = table(spec.database, t.enriched), table(t.database, t.table)
    # Rowids without gaps (record_enrichable) are the scan's positions: the arrays line up
    # with the rows. Should the table have changed since it was read, SQL enriches it.
    rows = _dense_rows(con, source)
    if rows is None or rows != len(leader):
        return None
    uid = f"p.uid AS {quote_ident(id_spec.name)}"

    def write() -> None:
        with arrays(con, leader=leader) as arr, transaction(con):
            body = f"""SELECT s.*, {uid} FROM {source} s POSITIONAL JOIN {arr} r
                       LEFT JOIN {people} p ON p.node = r.leader"""
            con.execute(f"CREATE OR REPLACE TABLE {target} AS {body}")

    retry_on_conflict(write)
    return rows


def _give_new_ids(
    con: duckdb.DuckDBPyConnection, target: str, id_name: str, merged: list[tuple[str, str]]
) -> None:
    """Rows holding an id that changed get the new one (a profile's values all move
    together, so the old id names the rows exactly). Deleted and inserted again, not
    updated: an update of a column rewrites it in every row group the rows are spread over.
    The rows are found by one scan of the id column and deleted by rowid (stable inside the
    caller's transaction), not looked up by id a second time."""
    if not merged:
        return
    before = np.array([a for a, _ in merged], dtype=object)
    after = np.array([b for _, b in merged], dtype=object)
    col = quote_ident(id_name)
    moved = quote_ident(f"__enrich_moved_{id_name}")
    row = quote_ident(f"__enrich_row_{id_name}")
    with arrays(con, before=before, after=after) as changed:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {moved} AS SELECT t.rowid AS {row},"
            f" t.* REPLACE (c.after AS {col}) FROM {target} t JOIN {changed} c"
            f" ON c.before = t.{col}"
        )
    con.execute(f"DELETE FROM {target} WHERE rowid IN (SELECT {row} FROM {moved})")
    con.execute(f"INSERT INTO {target} BY NAME SELECT * EXCLUDE ({row}) FROM {moved}")
    con.execute(f"DROP TABLE temp.{moved}")


def _delta(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    t: TableSpec,
    ids: tuple[IdSpec, ...],
    modes: dict[str, str],
    since: dict[str, dict[str, list[Any]]],
    cols: dict[str, str],
) -> tuple[str, str] | None:
    """(incremental row expression, previous watermark) when only new rows are enriched."""
    inc = incremental_row(t, cols)
    if inc is None or exists(con, spec.database, t.enriched) is None:
        return None
    if any(modes.get(i.name) != "incremental" for i in ids):
        return None
    marks = [since.get(i.name, {}).get(t.name) for i in ids]
    if any(m is None for m in marks):
        return None
    have = columns(con, spec.database, t.enriched)
    if any(i.name not in have for i in ids) or any(c not in have for c in t.incremental_columns):
        return None
    return inc, row_literal(min(m for m in marks if m is not None))
