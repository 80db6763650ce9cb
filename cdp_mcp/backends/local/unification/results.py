"""Turn the loop's leaders into the run's tables: profiles, stats, report, run log.

Per-profile figures (first/last seen, number of values) are aggregated in numpy over the
node arrays; SQL only attaches the strings (values, ids) and writes the tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from cdp_mcp.backends.local.unification import stats
from cdp_mcp.backends.local.unification.delta_report import report_from_arrays
from cdp_mcp.backends.local.unification.nodes import Nodes
from cdp_mcp.backends.local.unification.outputs import (
    RUN_COLUMNS,
    DebugGraphs,
    RowTable,
    RunRecord,
    Sources,
    assigned_relation,
    uid_sql,
    write_outputs,
)
from cdp_mcp.backends.local.unification.report import (
    REPORT_COLUMNS,
    ClusterReport,
    SplitCluster,
    report_rows,
)
from cdp_mcp.backends.local.unification.spec import IdSpec, UnifySpec
from cdp_mcp.backends.local.unification.sql import (
    Scratch,
    arrays,
    fetch_ints,
    scalar,
    sql_int_type,
)
from cdp_mcp.backends.local.unification.td_loop import NONE, LoopResult, id_dtype

Ints = npt.NDArray[np.int64]
MAX_SPLIT_REPORTED = 20


@dataclass
class RunInput:
    spec: UnifySpec
    id_spec: IdSpec
    nodes: Nodes
    loop: LoopResult
    previous_leader: Ints  # per node, -1 when it is new (for id_last_processed_at)
    initial_leader: Ints  # per node, its smallest leader before the loop (source stats)
    all_new: bool  # a full run: every node was read now
    record: RunRecord
    threshold: int | None  # None: scaled with the data
    started: float  # time.monotonic() at the start of the run
    debug: DebugGraphs | None = None  # keep_debug_tables: the graph per iteration


def write_run(
    con: duckdb.DuckDBPyConnection, scratch: Scratch, run: RunInput
) -> tuple[ClusterReport, str]:
    """Write every output table of the run in one transaction; returns the cluster report
    and the run's temp table of profiles (leader node, kt, v, uid; in the scratch)."""
    nodes, loop, record = run.nodes, run.loop, run.record
    n = nodes.count
    ids = id_dtype(n)
    touched = loop.leader != run.previous_leader
    if not run.all_new:
        seen = fetch_ints(con, f"SELECT seen_now::BIGINT AS s FROM {nodes.table}")["s"]
        touched |= seen == 1
        del seen
    else:
        touched[:] = True
    assign = scratch.name("assign")
    # Values of clusters not converged or held apart: their graph rows are the loop's.
    kept = np.zeros(int(loop.component.max(initial=-1)) + 1, dtype=bool)
    kept[loop.kept_components] = True
    unsettled = kept[loop.component]
    del kept
    # A profile is a leader some value chose (in a split cluster, not always its own leader).
    is_leader = np.zeros(n, dtype=bool)
    is_leader[loop.leader] = True
    # A table, not the arrays: the numpy copies are freed before the big writes run.
    with arrays(
        con,
        node=np.arange(n, dtype=ids),
        leader=loop.leader,
        touched=touched,
        unsettled=unsettled,
    ) as arr:
        con.execute(f"CREATE TEMP TABLE {assign} AS SELECT * FROM {arr}")
    del unsettled
    kf, kl = loop.kept_rows
    kept_rows: str | None = None
    if len(kf):
        kept_rows = scratch.name("kept_rows")
        with arrays(con, f=kf, l=kl, touched=touched[kf]) as arr:
            con.execute(f"CREATE TEMP TABLE {kept_rows} AS SELECT * FROM {arr}")
    del touched
    cols = fetch_ints(con, f"SELECT kt, tabs, fs, ls, recs FROM {nodes.table}")
    people = _create_people(con, scratch, run, is_leader, cols["fs"], cols["ls"])
    del is_leader
    record.profiles = int(scalar(con, f"SELECT count(*) FROM {people}") or 0)
    splits = _split_clusters(con, people, loop)
    src = Sources(nodes, assign, people, kept_rows, record.time, record.row_mark())
    per_node = stats.NodeArrays(cols["kt"], cols["tabs"], loop.leader, run.initial_leader)
    result_rows = stats.result_key_stats(run.spec, run.id_spec, per_node, record.time)
    source_rows = stats.source_key_stats(run.spec, run.id_spec, per_node, record.time)
    records = cols["recs"]
    del cols, per_node
    box: dict[str, ClusterReport] = {}

    def report() -> list[tuple[Any, ...]]:
        # From the arrays (as an incremental run reports), not a join of the new lookup and
        # state on their strings: node order is the node number in a full-graph run.
        rep = report_from_arrays(
            con,
            scratch,
            run.spec,
            run.id_spec.name,
            run.threshold,
            np.arange(n, dtype=ids),
            loop.leader,
            records,
        )
        rep.split_clusters = splits
        box["report"] = rep
        record.over_merge_warnings = len(rep.over_merge_warnings)
        return report_rows(rep, record.time)

    def run_row() -> list[tuple[Any, ...]]:
        record.seconds = round(time.monotonic() - run.started, 3)
        return [record.row()]

    assigned = assigned_relation(con, scratch, src)
    if run.debug is not None:  # the debug graphs join it once per iteration: a table
        materialized = scratch.name("assigned")
        con.execute(f"CREATE TEMP TABLE {materialized} AS SELECT * FROM {assigned}")
        assigned = materialized
    elif kept_rows is not None:  # the few nodes the kept rows name, read once
        src.kept_nodes = scratch.name("kept_nodes")
        con.execute(
            f"""CREATE TEMP TABLE {src.kept_nodes} AS SELECT * FROM {assigned}
                WHERE node IN (SELECT f FROM {kept_rows} UNION SELECT l FROM {kept_rows})"""
        )
    write_outputs(
        con,
        run.spec,
        run.id_spec,
        src,
        assigned,
        [
            RowTable("result_key_stats", stats.result_columns(run.id_spec), lambda: result_rows),
            RowTable("source_key_stats", stats.source_columns(run.id_spec), lambda: source_rows),
            RowTable("cluster_report", list(REPORT_COLUMNS), report, replace=True),
            RowTable("runs", RUN_COLUMNS, run_row),
        ],
        run.debug,
    )
    return box["report"], people


def _create_people(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    run: RunInput,
    is_leader: npt.NDArray[np.bool_],
    fs: Ints,
    ls: Ints,
) -> str:
    """Temp table, one row per profile in node order: its leader node, kt, v, uid, fs, ls,
    n_values."""
    n, leader = run.nodes.count, run.loop.leader
    first = np.full(n, NONE, dtype=np.int64)
    np.minimum.at(first, leader, fs)
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, leader, ls)
    size = np.bincount(leader, minlength=n)
    people = scratch.name("people")
    # Arrays aligned with the nodes table: a positional join, no hash join on 10M rows.
    with arrays(con, is_leader=is_leader, fs=first, ls=last, n_values=size) as arr:
        con.execute(
            f"""CREATE TEMP TABLE {people} AS
                SELECT n.rowid::{sql_int_type(id_dtype(n))} AS node, n.kt, n.v,
                       {uid_sql(run.spec, "n.kt", "n.v")} AS uid,
                       a.fs, a.ls, a.n_values
                FROM {run.nodes.table} n POSITIONAL JOIN {arr} a WHERE a.is_leader"""
        )
    return people


def _split_clusters(
    con: duckdb.DuckDBPyConnection, people: str, loop: LoopResult
) -> list[SplitCluster]:
    """The largest clusters left split, with the ids of their pieces."""
    if not len(loop.split_components):
        return []
    in_split = np.isin(loop.component, loop.split_components)
    sizes = np.bincount(
        np.searchsorted(loop.split_components, loop.component[in_split]),
        minlength=len(loop.split_components),
    )
    order = np.argsort(-sizes, kind="stable")[:MAX_SPLIT_REPORTED]
    out = []
    for i in order:
        members = loop.component == loop.split_components[i]
        pieces = np.unique(loop.leader[members])
        with arrays(con, node=pieces) as arr:
            rows = con.execute(
                f"SELECT p.uid FROM {people} p JOIN {arr} a USING (node) ORDER BY p.uid"
            ).fetchall()
        out.append(SplitCluster(values=int(sizes[i]), unified_ids=[str(r[0]) for r in rows]))
    return out
