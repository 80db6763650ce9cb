"""Incremental runs whose cost follows the change: only the profiles new records touch.

TD's incremental run combines "the previous final graph with the graph generated from
newly added records". In a previous graph whose clusters all converged, every value of a
profile follows the profile's leader, so the new records can only change the profiles
holding one of their values: those profiles' values and the records' new values are the
whole subgraph the loop needs. Every other profile keeps its leader, its id and its rows.
So this run:

- reads the new records (extract.py) and the lookup rows of the profiles they touch (a scan
  of `{id}_lookup` for their values, then of the profiles' ids), with the engine's state
  for those rows (`{id}_local_state`: records, node order, leader's node order, tables);
- runs TD's loop on that subgraph: the profiles' star rows (value -> leader, rebuilt from
  the state, not read from `{id}_graph`) plus the new records' rows;
- deletes and re-inserts the rows of those profiles in `{id}_lookup`, `{id}_local_state`
  and `{id}_graph` (one transaction); new values get node orders after the largest, so a
  persistent id's order (earlier run first) is kept;
- appends the key stats computed over every value (from the state's integer columns, which
  is cheap next to the strings) and replaces the cluster report, as a full run does.

The merged profiles' old -> new ids are returned, so the enrichment rewrites the rows whose
id changed besides the new rows (enrich.py).

It runs when the previous run can be continued this way (`delta_ready`): the id merges no
other ids, has no `do_not_merge_key` (values held apart keep several leaders), no debug
graphs were asked for, and the previous graph has one row per value (no cluster was left
unconverged). Otherwise the engine runs its whole-graph incremental path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from cdp_mcp.backends.local.tables import retry_on_conflict, transaction
from cdp_mcp.backends.local.unification import stats
from cdp_mcp.backends.local.unification.delta_report import report_from_arrays
from cdp_mcp.backends.local.unification.extract import Extracted
from cdp_mcp.backends.local.unification.nodes import priority_sql, tables_list_sql
from cdp_mcp.backends.local.unification.outputs import (
    RUN_COLUMNS,
    RowTable,
    RunRecord,
    append_rows,
    graph_sql,
    keys_sql,
    lookup_sql,
    tables_sql,
    uid_sql,
)
from cdp_mcp.backends.local.unification.prior import STATE_SUFFIX, carried_sql, state_is_current
from cdp_mcp.backends.local.unification.report import REPORT_COLUMNS, ClusterReport, report_rows
from cdp_mcp.backends.local.unification.results import _split_clusters as split_clusters
from cdp_mcp.backends.local.unification.spec import IdSpec, UnificationError, UnifySpec
from cdp_mcp.backends.local.unification.sql import Scratch, arrays, fetch_ints, lit, scalar, table
from cdp_mcp.backends.local.unification.td_loop import NONE, run_loop
from cdp_mcp.core.sqltext import quote_ident

Merged = list[tuple[str, str]]  # (id before this run, id after) of profiles whose id changed


@dataclass
class DeltaResult:
    record: RunRecord
    report: ClusterReport
    merged: Merged


def delta_ready(
    con: duckdb.DuckDBPyConnection, spec: UnifySpec, id_spec: IdSpec, keep_debug_tables: bool
) -> bool:
    """Whether the previous run of the id can be continued profile by profile."""
    if id_spec.merge_by_ids or id_spec.do_not_merge_key is not None or keep_debug_tables:
        return False
    if len(spec.tables_for(id_spec)) != 1:
        return False  # records at a watermark are told apart per run, not per table
    if not state_is_current(con, spec.database, id_spec.name):
        return False
    lookup, graph = (table(spec.database, f"{id_spec.name}_{s}") for s in ("lookup", "graph"))
    counts = con.execute(f"SELECT (SELECT count(*) FROM {lookup}), (SELECT count(*) FROM {graph})")
    n_lookup, n_graph = counts.fetchall()[0]
    return bool(n_lookup == n_graph)  # more graph rows: some cluster kept several leaders


def run_delta(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    id_spec: IdSpec,
    ext: Extracted,
    record: RunRecord,
    since: dict[str, list[Any]],
    *,
    threshold: int | None,
    started: float,
    lap: Callable[[str, str], None],
) -> DeltaResult | None:
    """Continue the previous run with the records `ext` read; None when its state turns out
    out of step (the caller then runs the whole-graph path)."""
    db, name = spec.database, id_spec.name
    lookup, state = (table(db, f"{name}_{s}") for s in ("lookup", STATE_SUFFIX))
    uid = quote_ident(id_spec.id_column)
    run = record.time
    carried = carried_sql("s", ext.skipped_mark, json.dumps(since, sort_keys=True))

    new = scratch.name("delta_new")
    tables = spec.tables_for(id_spec)
    tabs = (
        f"{1 << (tables[0].table_id - 1)}::BIGINT"
        if len(tables) == 1
        else "bit_or(1::BIGINT << (tb - 1))"
    )
    # As nodes.build_nodes: one row per value read, with its first/last seen and records.
    con.execute(
        f"""CREATE TEMP TABLE {new} AS
            SELECT kt, v, min(coalesce(t, {run})) AS fs, max(coalesce(t, {run})) AS ls,
                   count(*) AS recs, count(*) FILTER (WHERE s) AS settled, {tabs} AS tabs
            FROM {ext.values} GROUP BY kt, v"""
    )
    hit = scratch.name("delta_hit")
    con.execute(
        f"""CREATE TEMP TABLE {hit} AS SELECT DISTINCT l.{uid} AS uid
            FROM {lookup} l JOIN {new} n ON l.id_key_type = n.kt AND l.id = n.v"""
    )
    old = scratch.name("delta_old")
    con.execute(
        f"""CREATE TEMP TABLE {old} AS
            SELECT l.id_key_type AS kt, l.id AS v, l.id_first_seen_at AS fs,
                   l.id_last_seen_at AS ls, l.id_last_processed_at AS prev_processed,
                   l.{uid} AS old_uid, l.rowid AS lookup_row
            FROM {lookup} l SEMI JOIN {hit} h ON h.uid = l.{uid}"""
    )
    old_state = scratch.name("delta_old_state")
    con.execute(
        f"""CREATE TEMP TABLE {old_state} AS
            SELECT o.*, {carried} AS carried, s.node_order, s.leader_order, s.tabs,
                   s.rowid AS state_row
            FROM {old} o JOIN {state} s ON s.kt = o.kt AND s.id = o.v"""
    )
    n_old = int(scalar(con, f"SELECT count(*) FROM {old}") or 0)
    if int(scalar(con, f"SELECT count(*) FROM {old_state}") or 0) != n_old:
        return None
    nodes = scratch.name("delta_nodes")
    order = "p, v" if id_spec.method == "canonical_id" else "prev_order NULLS LAST, fs, p, v"
    con.execute(
        f"""CREATE TEMP TABLE {nodes} AS
            SELECT {priority_sql(id_spec, spec, "kt")}::BIGINT AS p, * FROM (
              SELECT kt, v, least(o.fs, n.fs) AS fs, greatest(o.ls, n.ls) AS ls,
                     coalesce(o.carried, 0) + coalesce(n.recs, 0) AS recs,
                     coalesce(o.carried, 0) + coalesce(n.settled, 0) AS settled,
                     coalesce(o.tabs, 0) | coalesce(n.tabs, 0) AS tabs,
                     o.node_order AS prev_order, o.leader_order AS prev_leader_order,
                     o.prev_processed, o.old_uid, n.recs IS NOT NULL AS seen_now
              FROM {new} n FULL OUTER JOIN {old_state} o USING (kt, v))
            ORDER BY {order}"""
    )
    cols = fetch_ints(
        con,
        f"""SELECT kt, tabs, fs, ls, coalesce(prev_order, -1) AS prev_order,
                   coalesce(prev_leader_order, -1) AS prev_leader, seen_now::BIGINT AS seen
            FROM {nodes}""",
    )
    m = len(cols["kt"])
    lap("graph", f"{m} values in the profiles the new records touch; running the loop")

    # The previous graph of those profiles: each value follows its leader (a member).
    was = np.flatnonzero(cols["prev_order"] >= 0)
    by_order = was[np.argsort(cols["prev_order"][was], kind="stable")]
    sorted_orders = cols["prev_order"][by_order]
    at = np.searchsorted(sorted_orders, cols["prev_leader"][was])
    if len(was) and (
        at.max() >= len(by_order) or np.any(sorted_orders[at] != cols["prev_leader"][was])
    ):
        return None  # a leader outside its profile's rows: not a state this engine wrote
    prev_leader = np.full(m, -1, dtype=np.int64)
    prev_leader[was] = by_order[at]
    got = fetch_ints(
        con, f"SELECT v.rid, n.rowid AS node FROM {ext.values} v JOIN {nodes} n USING (kt, v)"
    )
    _, rec = np.unique(got["rid"], return_inverse=True)  # the records read, numbered densely
    first = np.full(int(rec.max()) + 1 if len(rec) else 0, NONE, dtype=np.int64)
    np.minimum.at(first, rec, got["node"])
    follower = np.concatenate([got["node"], was])
    leader = np.concatenate([first[rec], prev_leader[was]])
    del got, rec, first
    initial = np.full(m, NONE, dtype=np.int64)
    np.minimum.at(initial, follower, leader)
    limit = record.iterations_allowed
    loop = run_loop(m, follower, leader, limit)
    record.iterations_used = loop.iterations
    record.split_clusters = len(loop.split_components)
    lap("loop", f"{loop.iterations} iterations; writing the changed profiles")

    # Node orders: kept, and after the largest for new values (in this run's leader order).
    base = int(scalar(con, f"SELECT coalesce(max(node_order), -1) + 1 FROM {state}") or 0)
    fresh = cols["prev_order"] < 0
    order_of = cols["prev_order"].copy()
    order_of[fresh] = base + np.arange(int(fresh.sum()), dtype=np.int64)
    touched = (loop.leader != prev_leader) | (cols["seen"] == 1)
    first_seen = np.full(m, NONE, dtype=np.int64)
    np.minimum.at(first_seen, loop.leader, cols["fs"])
    last_seen = np.full(m, -1, dtype=np.int64)
    np.maximum.at(last_seen, loop.leader, cols["ls"])
    size = np.bincount(loop.leader, minlength=m).astype(np.int64)
    is_leader = np.zeros(m, dtype=bool)
    is_leader[loop.leader] = True
    people = scratch.name("delta_people")
    with arrays(con, is_leader=is_leader, fs=first_seen, ls=last_seen, n_values=size) as arr:
        con.execute(
            f"""CREATE TEMP TABLE {people} AS
                SELECT n.rowid AS node, n.kt, n.v, {uid_sql(spec, "n.kt", "n.v")} AS uid,
                       a.fs, a.ls, a.n_values
                FROM {nodes} n POSITIONAL JOIN {arr} a WHERE a.is_leader"""
        )
    tablists = scratch.name("delta_tablists")  # a handful of distinct table sets
    con.execute(
        f"CREATE TEMP TABLE {tablists} AS SELECT tabs, {tables_list_sql('tabs')} AS ids"
        f" FROM (SELECT DISTINCT tabs FROM {nodes})"
    )
    assigned = scratch.name("delta_assigned")
    unsettled = np.isin(loop.component, loop.kept_components)
    with arrays(
        con,
        node=np.arange(m, dtype=np.int64),
        leader=loop.leader,
        touched=touched,
        unsettled=unsettled,
        node_order=order_of,
        leader_order=order_of[loop.leader],
    ) as arr:
        con.execute(
            f"""CREATE TEMP TABLE {assigned} AS
                SELECT a.node, n.kt, n.v, n.fs, n.ls, n.recs, n.settled, n.tabs,
                       tl.ids, a.unsettled, a.node_order,
                       a.leader_order, n.old_uid,
                       CASE WHEN a.touched THEN {run} ELSE coalesce(n.prev_processed, {run})
                       END AS processed,
                       p.uid, p.kt AS lkt, p.v AS lv, p.fs AS pfs, p.ls AS pls
                FROM {nodes} n POSITIONAL JOIN {arr} a JOIN {people} p ON p.node = a.leader
                JOIN {tablists} tl ON tl.tabs = n.tabs"""
        )
    kept = scratch.name("delta_kept")
    with arrays(con, f=loop.kept_rows[0], l=loop.kept_rows[1]) as arr:
        con.execute(f"CREATE TEMP TABLE {kept} AS SELECT * FROM {arr}")
    merged: Merged = [
        (str(a), str(b))
        for a, b in con.execute(
            f"SELECT DISTINCT old_uid, uid FROM {assigned}"
            " WHERE old_uid IS NOT NULL AND old_uid <> uid ORDER BY 1"
        ).fetchall()
    ]
    splits = split_clusters(con, people, loop)
    box: dict[str, Any] = {}

    def write() -> None:
        with transaction(con):
            _replace_rows(con, spec, id_spec, old_state, assigned, kept, run, record.row_mark())
            now = _node_arrays(con, state, assigned, initial)
            record.values_total = len(now.nodes.leader)
            record.profiles = now.profiles
            result_rows = stats.result_key_stats(spec, id_spec, now.nodes, run, now.sizes)
            source_rows = stats.source_key_stats(spec, id_spec, now.nodes, run)
            rep = report_from_arrays(
                con,
                scratch,
                spec,
                name,
                threshold,
                now.orders,
                now.nodes.leader,
                now.records,
                now.sizes,
            )
            del now
            rep.split_clusters = splits
            box["report"] = rep
            record.over_merge_warnings = len(rep.over_merge_warnings)
            for t in (
                RowTable("result_key_stats", stats.result_columns(id_spec), lambda: result_rows),
                RowTable("source_key_stats", stats.source_columns(id_spec), lambda: source_rows),
                RowTable(
                    "cluster_report", list(REPORT_COLUMNS), lambda: report_rows(rep, run), True
                ),
                RowTable("runs", RUN_COLUMNS, lambda: [_finished(record, started)]),
            ):
                if t.replace:
                    con.execute(f"DROP TABLE IF EXISTS {table(db, f'{name}_{t.suffix}')}")
                append_rows(con, db, f"{name}_{t.suffix}", t.columns, t.rows())

    retry_on_conflict(write)
    lap("write", f"{m} values rewritten, {len(merged)} profiles merged into others")
    return DeltaResult(record=record, report=box["report"], merged=merged)


def _finished(record: RunRecord, started: float) -> tuple[Any, ...]:
    record.seconds = round(time.monotonic() - started, 3)
    return record.row()


def _replace_rows(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    id_spec: IdSpec,
    old: str,
    assigned: str,
    kept: str,
    run: int,
    mark: str,
) -> None:
    """Delete the touched profiles' rows and insert them as they are now (TD's columns, as
    outputs.write_outputs writes them)."""
    db, name = spec.database, id_spec.name
    lookup, state, graph = (table(db, f"{name}_{s}") for s in ("lookup", STATE_SUFFIX, "graph"))
    t = f"{run}::BIGINT"
    # By rowid where the rows were found before; the graph's by the values they follow.
    con.execute(f"DELETE FROM {lookup} WHERE rowid IN (SELECT lookup_row FROM {old})")
    con.execute(f"DELETE FROM {state} WHERE rowid IN (SELECT state_row FROM {old})")
    gone = f"(SELECT kt AS gone_kt, v AS gone_v FROM {old}) o"
    con.execute(
        f"DELETE FROM {graph} USING {gone} WHERE follower_ns = gone_kt AND follower_id = gone_v"
    )
    con.execute(f"INSERT INTO {lookup} BY NAME {lookup_sql(id_spec, assigned, t)}")
    con.execute(
        f"""INSERT INTO {state} BY NAME
            SELECT kt, v AS id, recs AS records, settled, node_order, leader_order, tabs,
                   {lit(mark)} AS mark
            FROM {assigned}"""
    )
    con.execute(f"INSERT INTO {graph} BY NAME {graph_sql(assigned, kept, t)}")
    con.execute(f"CREATE OR REPLACE TABLE {table(db, f'{name}_keys')} AS {keys_sql(spec, t)}")
    con.execute(f"CREATE OR REPLACE TABLE {table(db, f'{name}_tables')} AS {tables_sql(spec, t)}")


@dataclass
class _AllNodes:
    nodes: stats.NodeArrays  # per state row; leaders as node orders
    profiles: int
    orders: np.ndarray  # per state row: its node order
    records: np.ndarray
    sizes: np.ndarray  # per node order: the values it leads (stats.profile_sizes)


def _node_arrays(
    con: duckdb.DuckDBPyConnection, state: str, assigned: str, initial_local: np.ndarray
) -> _AllNodes:
    """Every value's key, tables, leader and leader before the loop, from the state's
    integer columns: what the key stats and the report are computed over. Node orders are
    dense (a full run numbers 0..n-1 and every later run adds the next numbers, values are
    never removed), so a leader's node order indexes the per-profile counts as it is and the
    rows stay in the state's order (reordering them cost four scatters of every value). A
    value this run did not touch had its leader before the loop too."""
    # As the state holds them (node orders INTEGER): a copy to int64 of every value is not
    # needed to index with them.
    got = {
        k: np.asarray(v)
        for k, v in con.execute(f"SELECT kt, tabs, node_order, leader_order, records FROM {state}")
        .fetchnumpy()
        .items()
    }
    n = len(got["node_order"])
    where = got["node_order"]
    leader = got["leader_order"]
    inside = n == 0 or (where.min() >= 0 and where.max() < n)
    if inside:
        seen = np.zeros(n, dtype=bool)
        seen[where] = True
        inside = bool(seen.all())
        del seen
    if not inside or (n and (leader.min() < 0 or leader.max() >= n)):
        raise UnificationError(
            "the unification state is out of step (its node orders have gaps): run it again"
            " with full_refresh: true"
        )
    mine = fetch_ints(con, f"SELECT node_order FROM {assigned} ORDER BY node")["node_order"]
    before = np.full(n, -1, dtype=np.int64)  # by node order: this run's values' initial
    before[mine] = mine[initial_local]
    at = before[where]
    initial = np.where(at >= 0, at, leader)
    del before, at
    sizes = stats.profile_sizes(leader)
    return _AllNodes(
        nodes=stats.NodeArrays(got["kt"], got["tabs"], leader, initial),
        profiles=int(np.count_nonzero(sizes)),
        orders=where,
        records=got["records"],
        sizes=sizes,
    )
