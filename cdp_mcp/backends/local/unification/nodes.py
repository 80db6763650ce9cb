"""The nodes of the graph: every distinct (key, value), numbered in leader order.

A node's number is its position in the order TD's loop prefers leaders by (smaller wins):
- canonical_id: key priority (`merge_by_keys`, then the keys of the ids it merges), then
  the value;
- persistent_id: a node from an earlier run before any new one (its earlier order kept),
  then first seen (`time`), then key priority, then value. So an existing person's leader,
  and the id derived from it, only changes when it merges with an older person.

Per node the table keeps what TD's graph reports (first/last seen, source tables) and the
number of records carrying the value. Records before a table's watermark are not read
again, so only they are `settled` and carried over; the count of a run is settled + what it
read.

Besides the records, a run starts from `Prior`s (prior.py): its own previous run
(incremental) and the ids it merges (`merge_by_canonical_ids`). Their values are nodes too.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from cdp_mcp.backends.local.unification.prior import Prior
from cdp_mcp.backends.local.unification.spec import IdSpec, UnificationError, UnifySpec
from cdp_mcp.backends.local.unification.sql import Scratch, scalar

MAX_TABLES = 63  # source tables are a BIGINT bit set per node


@dataclass
class Nodes:
    table: str  # temp table ordered by node number (= rowid): p, kt, v, fs, ls, recs, settled,
    # tabs (bit set of table ids), prev_order, prev_processed, seen_now
    count: int


def priority_sql(id_spec: IdSpec, spec: UnifySpec, column: str = "kt") -> str:
    whens = " ".join(f"WHEN {spec.key(k).code} THEN {i}" for i, k in enumerate(id_spec.rank_keys))
    return f"(CASE {column} {whens} END)"


def build_nodes(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    id_spec: IdSpec,
    values: str,
    priors: list[Prior],
    run_time: int,
) -> Nodes:
    tables = spec.tables_for(id_spec)
    if max(t.table_id for t in tables) > MAX_TABLES:
        raise UnificationError(
            f"the local engine unifies at most {MAX_TABLES} tables per id (TD allows 255); "
            "union them into one input table (the generated unif_input does)"
        )
    # One table (the usual unif_input): its bit is a constant, no aggregate needed.
    tabs = (
        f"{1 << (tables[0].table_id - 1)}::BIGINT"
        if len(tables) == 1
        else ("bit_or(1::BIGINT << (tb - 1))")
    )
    new = f"""
        SELECT p, kt, v, min(coalesce(t, {run_time})) AS fs, max(coalesce(t, {run_time})) AS ls,
               count(*) AS recs, count(*) FILTER (WHERE s) AS settled, {tabs} AS tabs
        FROM {values} GROUP BY p, kt, v"""
    # Sort keys are stored columns: an expression in ORDER BY makes DuckDB's sort slower.
    order = "p, v" if id_spec.method == "canonical_id" else "prev_order NULLS LAST, fs, p, v"
    if not priors:
        body = f"""
            SELECT p, kt, v, fs, ls, recs, settled, tabs, NULL::BIGINT AS prev_order,
                   NULL::BIGINT AS prev_processed, true AS seen_now
            FROM ({new}) n"""
    else:
        previous = _prior_nodes(priors, priority_sql(id_spec, spec, "kt"))
        body = f"""
            SELECT p, kt, v, least(o.fs, n.fs) AS fs, greatest(o.ls, n.ls) AS ls,
                   coalesce(o.settled, 0) + coalesce(n.recs, 0) AS recs,
                   coalesce(o.settled, 0) + coalesce(n.settled, 0) AS settled,
                   coalesce(o.tabs, 0) | coalesce(n.tabs, 0) AS tabs,
                   o.prev_order, o.prev_processed, n.recs IS NOT NULL AS seen_now
            FROM ({new}) n FULL OUTER JOIN ({previous}) o USING (p, kt, v)"""
    if not scalar(con, "SELECT current_setting('preserve_insertion_order')"):
        raise UnificationError(
            "the local engine needs DuckDB's preserve_insertion_order setting (the default) on"
        )
    nodes = scratch.name("nodes")
    # The node number is the rowid of an ordered insert: no window over all nodes.
    con.execute(f"CREATE TEMP TABLE {nodes} AS SELECT * FROM ({body}) ORDER BY {order}")
    return Nodes(table=nodes, count=int(scalar(con, f"SELECT count(*) FROM {nodes}") or 0))


def tables_list_sql(mask: str) -> str:
    """A table-id bit set as TD's array of ids ([1, 3]); run on distinct sets only."""
    return f"list_filter(range(1, {MAX_TABLES + 1}), lambda i: ({mask} >> (i - 1)) & 1 = 1)"


def _prior_nodes(priors: list[Prior], priority: str) -> str:
    """Per value of the priors: p, kt, v, fs, ls, settled, tabs, prev_order, prev_processed."""
    union = " UNION ALL ".join(f"SELECT * FROM ({p.nodes})" for p in priors)
    if len(priors) > 1:  # a value several priors hold
        union = f"""
            SELECT kt, v, min(fs) AS fs, max(ls) AS ls, sum(settled)::BIGINT AS settled,
                   flatten(list(ids)) AS ids, min(prev_order) AS prev_order,
                   max(prev_processed) AS prev_processed
            FROM ({union}) GROUP BY kt, v"""
    parse = "list_reduce(list_transform(ids, lambda x: 1::BIGINT << (x - 1)), lambda a, b: a | b)"
    return f"""
        WITH p AS (SELECT {priority}::BIGINT AS p, * FROM ({union})),
        m AS (SELECT DISTINCT ids, {parse} AS tabs FROM p WHERE len(ids) > 0)
        SELECT p.* EXCLUDE (ids), coalesce(m.tabs, 0) AS tabs FROM p LEFT JOIN m USING (ids)"""
