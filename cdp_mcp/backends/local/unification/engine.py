"""Run TD's ID unification for one request: read, number, loop, write, report.

    extract (SQL)  -> one row per valid key value of each record
    nodes (SQL)    -> distinct values numbered in leader order (+ the priors' values)
    td_loop (numpy/scipy) -> leader per value, bounded by merge_iterations
    results, outputs (numpy/SQL) -> lookup, graph, keys, tables, stats, report, run log
then, for the whole request: enrich (`enriched_{table}`) and master (master tables).

Incremental runs (`full_refresh: false` and a previous run of the same unify.yml) start
from the previous `{id}_graph` plus the records at or after the last watermark, and are
bounded by `incremental_merge_iterations`, as on TD. When the previous run can be continued
profile by profile (delta.py: the usual one unif_input table), only the profiles the new
records touch are read, looped and rewritten; otherwise the whole graph is (an id that
merges other ids starts from their graphs too, prior.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from cdp_mcp.backends.local.unification.delta import delta_ready, run_delta
from cdp_mcp.backends.local.unification.enrich import (
    IdChanges,
    enrich_records,
    enrich_table,
    first_keys,
    record_enrichable,
)
from cdp_mcp.backends.local.unification.extract import (
    Extracted,
    extract_values,
    load_watermarks,
)
from cdp_mcp.backends.local.unification.master import write_master_table
from cdp_mcp.backends.local.unification.nodes import build_nodes
from cdp_mcp.backends.local.unification.outputs import DebugGraphs, RunRecord
from cdp_mcp.backends.local.unification.prior import Prior, merged_prior, own_prior
from cdp_mcp.backends.local.unification.report import ClusterReport
from cdp_mcp.backends.local.unification.results import RunInput, write_run
from cdp_mcp.backends.local.unification.spec import (
    IdSpec,
    UnificationError,
    UnifyRequest,
    UnifySpec,
)
from cdp_mcp.backends.local.unification.sql import (
    Scratch,
    columns,
    exists,
    fetch_ints,
    sql_int_type,
)
from cdp_mcp.backends.local.unification.td_loop import (
    id_dtype,
    none_of,
    record_leads,
    run_loop,
)
from cdp_mcp.core.sqltext import quote_ident


class UnificationCancelled(Exception):
    pass


@dataclass
class RunSummary:
    database: str
    id_name: str
    record: RunRecord
    report: ClusterReport
    timings: dict[str, float]  # seconds per phase: read, number, graph, loop, write
    since: dict[str, list[Any]] = field(default_factory=dict)  # watermarks it read from
    # A run that continued only the profiles its records touched (delta.py): the ids that
    # changed ((before, after) pairs), so the enrichment rewrites only their rows and the
    # new ones; None otherwise.
    merged: list[tuple[str, str]] | None = None
    skipped_mark: bool = False  # the rows at the previous watermark were not read again
    enriched: dict[str, int] = field(default_factory=dict)  # tables it enriched -> rows

    def line(self) -> str:
        r = self.record
        split = f"{r.split_clusters} clusters left split" if r.split_clusters else "none left split"
        return (
            f"{self.database}.{self.id_name}: {r.mode} {r.method} run, {r.records_read} records "
            f"read, {r.values_total} values in {r.profiles} profiles, {r.iterations_used} of "
            f"{r.iterations_allowed} iterations ({split}), {r.over_merge_warnings} over-merge "
            f"warnings, {r.seconds:.1f}s"
        )


def unify(
    con: duckdb.DuckDBPyConnection,
    request: UnifyRequest,
    *,
    run_time: int | None = None,
    over_merge_threshold: int | None = None,  # None: scaled with the data
    log: Callable[[str], None] = lambda _: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[RunSummary]:
    """Run every id of the request (an id after those it merges), then the enrichments
    and master tables it asks for; returns one summary per id."""
    now = int(time.time()) if run_time is None else run_time
    summaries = [
        run_id(
            con,
            request.spec,
            id_spec,
            full_refresh=request.full_refresh,
            run_time=now,
            over_merge_threshold=over_merge_threshold,
            log=log,
            cancelled=cancelled,
            keep_debug_tables=request.keep_debug_tables,
            enrich=request.run_enrichments,
        )
        for id_spec in request.spec.ids
    ]
    enriched = {name: rows for s in summaries for name, rows in s.enriched.items()}
    modes = {s.id_name: s.record.mode for s in summaries}
    since = {s.id_name: s.since for s in summaries}
    changes = {s.id_name: IdChanges(s.merged, s.skipped_mark) for s in summaries}
    if request.run_enrichments:
        for t in request.spec.tables:
            if cancelled():
                raise UnificationCancelled("ID unification was cancelled")
            rows = enriched.get(t.name)
            if rows is None:
                rows = enrich_table(con, request.spec, t, modes, since, changes)
            if rows is not None:
                log(f"{request.spec.database}.{t.enriched}: {rows} rows")
    for m in request.spec.masters:
        if cancelled():
            raise UnificationCancelled("ID unification was cancelled")
        rows = write_master_table(con, request.spec, m)
        log(f"{request.spec.database}.{m.name}: {rows} profiles")
    return summaries


@dataclass
class _Previous:
    fingerprint: str
    watermarks: dict[str, list[Any]]
    prior: Prior
    at_mark: dict[str, int]


def run_id(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    id_spec: IdSpec,
    *,
    full_refresh: bool,
    run_time: int,
    over_merge_threshold: int | None = None,  # None: scaled with the data
    log: Callable[[str], None] = lambda _: None,
    cancelled: Callable[[], bool] = lambda: False,
    keep_debug_tables: bool = False,
    enrich: bool = False,  # run_enrichments: a full run may enrich its table itself
) -> RunSummary:
    clock = _Clock(id_spec.name, log, cancelled)
    # DuckDB draws progress bars on stdout, which would corrupt an MCP stdio stream.
    con.execute("SET enable_progress_bar = false")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(spec.database)}")
    fingerprint = spec.fingerprint(id_spec)
    previous = None if full_refresh else _previous_run(con, spec.database, id_spec)
    if previous is not None and previous.fingerprint != fingerprint:
        log(f"{id_spec.name}: unify.yml changed since the last run: running a full refresh")
        previous = None
    incremental = previous is not None
    limit = id_spec.incremental_merge_iterations if incremental else id_spec.merge_iterations
    scratch = Scratch(con)
    try:
        clock.start(f"{'incremental' if incremental else 'full'} run: reading records")
        ext = extract_values(
            con,
            scratch,
            spec,
            id_spec,
            previous.watermarks if previous else None,
            previous.at_mark if previous else None,
        )
        clock.lap("read", f"{ext.rows_read} records read; numbering values")
        if previous is not None and delta_ready(con, spec, id_spec, keep_debug_tables):
            summary = _run_delta(
                con,
                scratch,
                spec,
                id_spec,
                ext,
                previous,
                fingerprint,
                limit,
                run_time,
                over_merge_threshold,
                clock,
            )
            if summary is not None:
                return summary
            log(f"{id_spec.name}: the previous run's state is out of step: using the whole graph")
        priors: list[Prior] = []
        if previous is not None:
            carried = own_prior(
                con,
                spec.database,
                id_spec.name,
                id_spec.id_column,
                carry_all=ext.skipped_mark,
                mark=json.dumps(previous.watermarks, sort_keys=True),
            )
            priors.append(carried or previous.prior)
        priors += [merged_prior(spec.database, child) for child in id_spec.merge_by_ids]
        nodes = build_nodes(con, scratch, spec, id_spec, ext.values, priors, run_time)
        clock.lap("number", f"{nodes.count} values; building the graph")
        # Ids as int32 while they fit: half the memory, and fetched without a copy.
        ids = id_dtype(max(nodes.count, ext.n_records))
        cast = sql_int_type(ids)
        # Enriched from the arrays: a record's id is its first valid key's profile's.
        enrich_from = record_enrichable(con, spec, id_spec) if enrich and not priors else None
        by_key = enrich_from is not None and id_spec.method != "canonical_id"
        got = fetch_ints(
            con,
            f"SELECT v.rid::{cast} AS rid, n.rowid::{cast} AS node"
            + (f", n.p::{cast} AS p" if by_key else "")
            + f" FROM {ext.values} v JOIN {nodes.table} n USING (kt, v)",
            ids,
        )
        scratch.drop(ext.values)  # the largest temp table (a row per value of a record)
        lead = record_leads(got["rid"], got["node"], ext.n_records)  # per record
        follower, leader = got["node"], lead[got["rid"]]
        picked = None
        if by_key:  # persistent_id: nodes are not in key order
            picked = first_keys(got["rid"], got["node"], got["p"], ext.n_records, nodes.count)
        elif enrich_from is not None:  # canonical_id: key priority first, the smallest node
            picked = lead
        del got, lead
        prev_leader = np.full(nodes.count, -1, dtype=ids)
        for prior in priors:
            prev = _prior_rows(con, prior.graph, nodes.table, ids)
            if prior.own:
                _min_at(prev_leader, prev["f"], prev["l"])
            follower = np.concatenate([follower, prev["f"]])
            leader = np.concatenate([leader, prev["l"]])
        initial = np.full(nodes.count, none_of(leader), dtype=leader.dtype)
        np.minimum.at(initial, follower, leader)
        fixed = _fixed_nodes(con, spec, id_spec, nodes.table)
        clock.lap("graph", f"{len(follower)} rows; running the loop (at most {limit} iterations)")
        loop = run_loop(
            nodes.count, follower, leader, limit, fixed=fixed, keep_history=keep_debug_tables
        )
        debug = DebugGraphs((follower, leader), loop, nodes.count) if keep_debug_tables else None
        del follower, leader
        clock.lap(
            "loop",
            f"{loop.iterations} iterations, {len(loop.split_components)} clusters left split;"
            " writing the tables",
        )
        record = RunRecord(
            time=run_time,
            mode="incremental" if incremental else "full",
            method=id_spec.method,
            fingerprint=fingerprint,
            watermarks=ext.watermarks,
            iterations_allowed=limit,
            iterations_used=loop.iterations,
            values_total=nodes.count,
            profiles=0,
            split_clusters=len(loop.split_components),
            records_read=ext.rows_read,
            at_mark=ext.at_mark,
        )
        run = RunInput(
            spec=spec,
            id_spec=id_spec,
            nodes=nodes,
            loop=loop,
            previous_leader=prev_leader,
            initial_leader=initial,
            all_new=not incremental,
            record=record,
            threshold=over_merge_threshold,
            started=clock.started,
            debug=debug,
        )
        report, people = write_run(con, scratch, run)
        clock.lap("write", "written" + (f"; enriching {enrich_from.table}" if enrich_from else ""))
        enriched: dict[str, int] = {}
        if enrich_from is not None and picked is not None:
            has = picked != none_of(picked)
            record_leader = np.full(len(picked), -1, dtype=ids)  # per record (rowid)
            record_leader[has] = loop.leader[picked[has]]
            del picked, has
            wrote = enrich_records(con, spec, enrich_from, id_spec, record_leader, people)
            del record_leader
            if wrote is not None:  # else enrich_table, with the other tables
                enriched[enrich_from.name] = wrote
                clock.lap("enrich", f"{enrich_from.enriched}: {wrote} rows")
        return RunSummary(
            spec.database,
            id_spec.name,
            record,
            report,
            clock.timings,
            previous.watermarks if previous else {},
            skipped_mark=ext.skipped_mark,
            enriched=enriched,
        )
    finally:
        scratch.close()


def _run_delta(
    con: duckdb.DuckDBPyConnection,
    scratch: Scratch,
    spec: UnifySpec,
    id_spec: IdSpec,
    ext: Extracted,
    previous: _Previous,
    fingerprint: str,
    limit: int,
    run_time: int,
    threshold: int | None,
    clock: _Clock,
) -> RunSummary | None:
    record = RunRecord(
        time=run_time,
        mode="incremental",
        method=id_spec.method,
        fingerprint=fingerprint,
        watermarks=ext.watermarks,
        iterations_allowed=limit,
        iterations_used=0,
        values_total=0,
        profiles=0,
        split_clusters=0,
        records_read=ext.rows_read,
        at_mark=ext.at_mark,
    )
    done = run_delta(
        con,
        scratch,
        spec,
        id_spec,
        ext,
        record,
        previous.watermarks,
        threshold=threshold,
        started=clock.started,
        lap=clock.lap,
    )
    if done is None:
        return None
    return RunSummary(
        spec.database,
        id_spec.name,
        done.record,
        done.report,
        clock.timings,
        previous.watermarks,
        merged=done.merged,
        skipped_mark=ext.skipped_mark,
    )


class _Clock:
    """Times the phases of a run, logs each, and stops the run when it was cancelled."""

    def __init__(
        self, name: str, log: Callable[[str], None], cancelled: Callable[[], bool]
    ) -> None:
        self.name, self.log, self.cancelled = name, log, cancelled
        self.started = self.last = time.monotonic()
        self.timings: dict[str, float] = {}

    def start(self, message: str) -> None:
        self.lap("", message)

    def lap(self, phase: str, message: str) -> None:
        now = time.monotonic()
        if phase:
            self.timings[phase] = round(now - self.last, 3)
        self.last = now
        if self.cancelled():
            raise UnificationCancelled("ID unification was cancelled")
        self.log(f"{self.name}: {message} ({now - self.started:.1f}s)")


def _min_at(target: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """target[i] = min(values at i) where some value lands, else left as it is."""
    best = np.full(len(target), none_of(values), dtype=values.dtype)
    np.minimum.at(best, index, values)
    hit = best != none_of(best)
    target[hit] = best[hit]


def _previous_run(
    con: duckdb.DuckDBPyConnection, database: str, id_spec: IdSpec
) -> _Previous | None:
    runs = f"{id_spec.name}_runs"
    if exists(con, database, runs) is None:
        return None
    prior = own_prior(con, database, id_spec.name, id_spec.id_column)
    if prior is None:
        return None
    at_mark = "at_mark" if "at_mark" in columns(con, database, runs) else "NULL"
    rows = con.execute(
        f"SELECT fingerprint, watermarks, {at_mark} FROM"
        f" {quote_ident(database)}.{quote_ident(runs)} ORDER BY rowid DESC LIMIT 1"
    ).fetchall()
    if not rows:
        return None
    row = rows[0]
    return _Previous(
        fingerprint=str(row[0]),
        watermarks=load_watermarks(row[1]),
        prior=prior,
        at_mark=_at_mark(row[2]),
    )


def _at_mark(text: str | None) -> dict[str, int]:
    """Rows at each watermark, as the previous run stored them (absent before they were)."""
    marks = json.loads(text or "{}")
    return {str(k): int(v) for k, v in marks.items() if isinstance(v, int)}


def _prior_rows(
    con: duckdb.DuckDBPyConnection,
    graph: str,
    nodes: str,
    dtype: type[np.signedinteger[Any]] = np.int64,
) -> dict[str, np.ndarray]:
    numbered = f"(SELECT rowid::{sql_int_type(dtype)} AS node, kt, v FROM {nodes})"
    return fetch_ints(
        con,
        f"""SELECT f.node AS f, l.node AS l FROM {graph} g
            JOIN {numbered} f ON f.kt = g.follower_ns AND f.v = g.follower_id
            JOIN {numbered} l ON l.kt = g.leader_ns AND l.v = g.leader_id""",
        dtype,
    )


def _fixed_nodes(
    con: duckdb.DuckDBPyConnection, spec: UnifySpec, id_spec: IdSpec, nodes: str
) -> np.ndarray | None:
    """Per node: a value of the id's do_not_merge_key (None when it has none)."""
    if id_spec.do_not_merge_key is None:
        return None
    code = spec.key(id_spec.do_not_merge_key).code
    kt = fetch_ints(con, f"SELECT kt FROM {nodes}")["kt"]
    fixed: np.ndarray = kt == code
    return fixed


__all__ = ["RunSummary", "UnificationCancelled", "UnificationError", "run_id", "unify"]
