"""Graphs a run starts from besides its records: its previous run, and the ids it merges.

- Its own previous run (`full_refresh: false`): TD combines "the previous final graph with
  the graph generated from newly added records" (TD's docs, incremental_update). The
  values and their first/last seen come from `{id}_lookup` (one row per value), what TD's
  tables do not hold (records per value, the node order a persistent id keeps) from the
  engine's own `{id}_local_state`, joined to the lookup on (id_key_type, id) (an incremental
  run rewrites only the rows of the profiles it changed, so the two tables' row orders
  differ); the rows from `{id}_graph`.
- An id it merges (`merge_by_canonical_ids` / `merge_by_persistent_ids`), run earlier in the
  same request: its graph's rows join the values it joined, so clusters of the merged ids
  that share a value become one (treasure-boxes id-unification-samples ex3, TD's docs
  "Multiple Canonical IDs"). How TD itself links them is not published; this is the reading
  that follows from the graph being TD's result (see docs/internals.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from cdp_mcp.backends.local.unification.sql import columns, exists, lit, table

STATE_SUFFIX = "local_state"  # the engine's own per-value figures, beside the lookup
# What a state needs to be continued from (an older engine's state lacks them: full refresh).
STATE_COLUMNS = ("kt", "id", "records", "settled", "node_order", "leader_order", "tabs", "mark")


@dataclass(frozen=True)
class Prior:
    # kt, v, fs, ls, settled, ids (BIGINT[] of table ids), prev_order, prev_processed
    nodes: str
    graph: str  # follower_id, follower_ns, leader_id, leader_ns
    own: bool  # the id's own previous run (whose leaders say which values were touched)


def own_prior(
    con: duckdb.DuckDBPyConnection,
    database: str,
    id_name: str,
    id_column: str,
    carry_all: bool = False,
    mark: str = "",
) -> Prior | None:
    """The id's previous run, or None when it cannot be continued (missing or out of step).

    The records carried over per value (`carried_sql`): `carry_all`, this run does not read
    the records at the previous watermark (`mark`, its JSON) again; else only the records
    before it are carried."""
    lookup, state, graph = (
        table(database, f"{id_name}_{s}") for s in ("lookup", STATE_SUFFIX, "graph")
    )
    for suffix in ("lookup", STATE_SUFFIX, "graph"):
        if exists(con, database, f"{id_name}_{suffix}") is None:
            return None
    cols = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ?"
            " AND table_name = ?",
            [database, f"{id_name}_lookup"],
        ).fetchall()
    ]
    if id_column not in cols:
        return None  # written by an older engine (the id under its own name)
    if not state_is_current(con, database, id_name):
        return None
    carried = carried_sql("s", carry_all, mark)
    nodes = f"""
        SELECT l.id_key_type AS kt, l.id AS v, l.id_first_seen_at AS fs,
               l.id_last_seen_at AS ls, {carried} AS settled, l.id_source_table_ids AS ids,
               s.node_order AS prev_order, l.id_last_processed_at AS prev_processed
        FROM {lookup} l JOIN {state} s ON s.kt = l.id_key_type AND s.id = l.id"""
    return Prior(nodes=nodes, graph=graph, own=True)


def carried_sql(alias: str, carry_all: bool, mark: str) -> str:
    """A state row's records this run does not read again. `settled` counts those before the
    watermarks of the run that wrote the row; a row a later run left as it was (delta.py)
    has all its records before this run's previous watermark, unless that is the same."""
    if carry_all:
        return f"{alias}.records"
    return f"(CASE WHEN {alias}.mark = {lit(mark)} THEN {alias}.settled ELSE {alias}.records END)"


def state_is_current(con: duckdb.DuckDBPyConnection, database: str, id_name: str) -> bool:
    """Whether `{id}_local_state` has this engine's columns and a row per lookup row."""
    have = columns(con, database, f"{id_name}_{STATE_SUFFIX}")
    if any(c not in have for c in STATE_COLUMNS):
        return False
    lookup, state = (table(database, f"{id_name}_{s}") for s in ("lookup", STATE_SUFFIX))
    counts = con.execute(f"SELECT (SELECT count(*) FROM {lookup}), (SELECT count(*) FROM {state})")
    n_lookup, n_state = counts.fetchall()[0]
    return bool(n_lookup == n_state)


def merged_prior(database: str, id_name: str) -> Prior:
    """An id merged by the one running: its values and graph, as just written."""
    lookup, graph = (table(database, f"{id_name}_{s}") for s in ("lookup", "graph"))
    nodes = f"""
        SELECT id_key_type AS kt, id AS v, id_first_seen_at AS fs, id_last_seen_at AS ls,
               0::BIGINT AS settled, id_source_table_ids AS ids, NULL::BIGINT AS prev_order,
               NULL::BIGINT AS prev_processed
        FROM {lookup}"""
    return Prior(nodes=nodes, graph=graph, own=False)
