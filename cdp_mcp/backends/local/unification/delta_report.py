"""The cluster report of a profile-by-profile incremental run (delta.py), from arrays.

`report.compute_report` reads the whole lookup and state as strings (a join of the two, a
group by id), which would cost an incremental run as much as a full one. The same report
follows from every value's leader and records (integers, read from `{id}_local_state`):
sizes, the size histogram and the median are numpy; only the few values the report names
(the largest clusters' and those over the threshold) are read as strings. It is the report
`compute_report` gives on the same tables (tests/test_incremental_equivalence.py).
"""

from __future__ import annotations

import duckdb
import numpy as np
import numpy.typing as npt

from cdp_mcp.backends.local.unification.outputs import uid_sql
from cdp_mcp.backends.local.unification.prior import STATE_SUFFIX
from cdp_mcp.backends.local.unification.report import (
    TOP_CLUSTERS,
    ClusterReport,
    _buckets,
    _clusters,
    _key_names,
    _over_merge,
    scaled_threshold,
)
from cdp_mcp.backends.local.unification.spec import UnifySpec
from cdp_mcp.backends.local.unification.sql import Scratch, arrays, table
from cdp_mcp.backends.local.unification.stats import profile_sizes

Ints = npt.NDArray[np.int64]


def report_from_arrays(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    id_name: str,
    threshold: int | None,
    orders: Ints,  # per value: its node order (dense: 0..n-1, in any order)
    leader: Ints,  # per value (same order): its leader's node order
    records: Ints,  # per value: records carrying it
    led: Ints | None = None,  # per node order: values it leads (stats.profile_sizes)
) -> ClusterReport:
    db = spec.database
    state = table(db, f"{id_name}_{STATE_SUFFIX}")
    keys = _key_names(con, db, id_name)
    size = profile_sizes(leader) if led is None else led
    profiles = np.flatnonzero(size)  # their leaders' node orders
    n = size[profiles]
    # Profiles per size, counted in numpy: a Counter over millions of Python ints is not.
    per_size = np.bincount(n) if len(n) else np.zeros(0, np.int64)
    histogram = [(int(k), int(c)) for k, c in enumerate(per_size.tolist()) if c]
    # The largest: every profile as large as the TOP-th largest, then ordered by id as
    # compute_report orders them (size, then id).
    top_rows: list[tuple[str, int]] = []
    top_leaders: list[int] = []
    if len(n):
        cut = np.sort(n)[::-1][min(TOP_CLUSTERS, len(n)) - 1]
        big = profiles[n >= cut]
        for uid, k, order in _people(con, spec, state, big, size[big])[:TOP_CLUSTERS]:
            top_rows.append((uid, k))
            top_leaders.append(order)
    if threshold is None:
        median = float(np.median(records)) if len(records) else 0.0
        threshold, rule = scaled_threshold(median)
    else:
        rule = "over_merge_threshold as set"
    # The values the report names: the largest clusters' and those over the threshold.
    named = (records > threshold) | np.isin(leader, top_leaders)
    values = scratch.name("report_values")
    with arrays(con, node_order=orders[named], leader_order=leader[named]) as arr:
        con.execute(
            f"""CREATE TEMP TABLE {values} AS
                SELECT {uid_sql(spec, "l.kt", "l.id")} AS uid, s.kt, s.id AS v, s.records,
                       a.leader_order
                FROM {arr} a JOIN {state} s ON s.node_order = a.node_order
                JOIN {state} l ON l.node_order = a.leader_order"""
        )
    sizes = scratch.name("report_sizes")
    with arrays(con, leader_order=profiles, n=n) as arr:
        con.execute(
            f"""CREATE TEMP TABLE {sizes} AS
                SELECT DISTINCT v.uid, a.n FROM {values} v JOIN {arr} a USING (leader_order)"""
        )
    return ClusterReport(
        profiles=len(profiles),
        values=int(n.sum()) if len(n) else 0,
        ids_per_profile=_buckets(histogram),
        largest_clusters=_clusters(con, values, keys, top_rows),
        over_merge_threshold=threshold,
        over_merge_rule=rule,
        over_merge_warnings=_over_merge(con, values, keys, threshold, sizes),
    )


def _people(
    con: duckdb.DuckDBPyConnection, spec: UnifySpec, state: str, leaders: Ints, sizes: Ints
) -> list[tuple[str, int, int]]:
    """(id, values, leader's node order) of the given profiles, largest first, then by id."""
    with arrays(con, leader_order=leaders, n=sizes) as arr:
        rows = con.execute(
            f"""SELECT {uid_sql(spec, "s.kt", "s.id")} AS uid, a.n, a.leader_order
                FROM {arr} a JOIN {state} s ON s.node_order = a.leader_order
                ORDER BY a.n DESC, uid"""
        ).fetchall()
    return [(str(u), int(k), int(o)) for u, k, o in rows]
