"""Graphs a run starts from besides its records: its previous run, and the ids it merges.

- Its own previous run (`full_refresh: false`): TD combines "the previous final graph with
  the graph generated from newly added records" (TD's docs, incremental_update). The
  values and their first/last seen come from `{id}_lookup` (one row per value), what TD's
  tables do not hold (records per value, the node order a persistent id keeps) from the
  engine's own `{id}_local_state`, row for row beside the lookup; the rows from `{id}_graph`.
- An id it merges (`merge_by_canonical_ids` / `merge_by_persistent_ids`), run earlier in the
  same request: its graph's rows join the values it joined, so clusters of the merged ids
  that share a value become one (treasure-boxes id-unification-samples ex3, TD's docs
  "Multiple Canonical IDs"). How TD itself links them is not published; this is the reading
  that follows from the graph being TD's result (see docs/internals.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from cdp_mcp.backends.local.unification.sql import exists, scalar, table

STATE_SUFFIX = "local_state"  # the engine's own per-value figures, beside the lookup


@dataclass(frozen=True)
class Prior:
    # kt, v, fs, ls, settled, ids (BIGINT[] of table ids), prev_order, prev_processed
    nodes: str
    graph: str  # follower_id, follower_ns, leader_id, leader_ns
    own: bool  # the id's own previous run (whose leaders say which values were touched)


def own_prior(
    con: duckdb.DuckDBPyConnection, database: str, id_name: str, id_column: str
) -> Prior | None:
    """The id's previous run, or None when it cannot be continued (missing or out of step)."""
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
    # The state is written from the same ordered relation as the lookup; check it still is.
    off = scalar(
        con,
        f"SELECT count(*) FILTER (WHERE l.id_key_type IS DISTINCT FROM s.kt) FROM {lookup} l"
        f" POSITIONAL JOIN {state} s",
    )
    if off:
        return None
    nodes = f"""
        SELECT l.id_key_type AS kt, l.id AS v, l.id_first_seen_at AS fs,
               l.id_last_seen_at AS ls, s.settled, l.id_source_table_ids AS ids,
               s.node_order AS prev_order, l.id_last_processed_at AS prev_processed
        FROM {lookup} l POSITIONAL JOIN {state} s"""
    return Prior(nodes=nodes, graph=graph, own=True)


def merged_prior(database: str, id_name: str) -> Prior:
    """An id merged by the one running: its values and graph, as just written."""
    lookup, graph = (table(database, f"{id_name}_{s}") for s in ("lookup", "graph"))
    nodes = f"""
        SELECT id_key_type AS kt, id AS v, id_first_seen_at AS fs, id_last_seen_at AS ls,
               0::BIGINT AS settled, id_source_table_ids AS ids, NULL::BIGINT AS prev_order,
               NULL::BIGINT AS prev_processed
        FROM {lookup}"""
    return Prior(nodes=nodes, graph=graph, own=False)
