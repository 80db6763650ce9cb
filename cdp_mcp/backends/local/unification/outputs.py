"""The tables TD's unification writes in `cdp_unification_{name}`, written in one transaction.

TD's tables, with TD's columns (from TD's algorithm as aps_claude_tools ports it,
plugins/cdp-hybrid-idu/scripts/*/yaml_unification_to_*.py, and TD's docs "ID Unification
Output"; see docs/internals.md), plus `time` as every TD table has:
- `{id}_lookup`, one row per value: `canonical_id` (or `persistent_id`: TD's fixed name,
  not the id's), `id`, `id_key_type`, `{canonical_id|persistent_id}_first_seen_at`,
  `..._last_seen_at`, `id_first_seen_at`, `id_last_seen_at`, `id_source_table_ids`
  (array of `{id}_tables` ids), `id_last_processed_at`.
- `{id}_graph`: `follower_id`, `follower_ns`, `leader_id`, `leader_ns`,
  `follower_first_seen_at`, `follower_last_seen_at`, `follower_source_table_ids`,
  `follower_last_processed_at`; a value of a cluster the loop did not finish (or that
  do_not_merge_key holds apart) has one row per leader.
- `{id}_graph_unify_loop_{n}` (keep_debug_tables): the graph after iteration n (0: before).
- `{id}_keys` (`key_type`, `key_name`), `{id}_tables` (`table_id`, `table_name`).
- appended each run: `{id}_result_key_stats`, `{id}_source_key_stats` (stats.py).
The engine's own (TD has none of them): `{id}_local_state` (per lookup row, in its order:
records carrying the value, those settled, the node order; what an incremental run continues
from), `{id}_cluster_report` (replaced) and `{id}_runs` (appended).

Ids are derived from the leader value: the first 12 bytes of sha256('{key_name}:{value}'),
URL-safe base64 (16 characters). TD derives its ids from the leader too (a masked sha256,
base64), so neither can be predicted from the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np

from cdp_mcp.backends.local.tables import retry_on_conflict, transaction
from cdp_mcp.backends.local.unification.nodes import Nodes, tables_list_sql
from cdp_mcp.backends.local.unification.prior import STATE_SUFFIX
from cdp_mcp.backends.local.unification.spec import IdSpec, UnifySpec
from cdp_mcp.backends.local.unification.sql import Scratch, arrays, columns, lit, table
from cdp_mcp.backends.local.unification.td_loop import LoopResult, unique_ints
from cdp_mcp.core.sqltext import quote_ident

Columns = list[tuple[str, str]]
DEBUG_INFIX = "_graph_unify_loop_"

RUN_COLUMNS: Columns = [
    ("time", "BIGINT"),
    ("mode", "VARCHAR"),  # full | incremental
    ("method", "VARCHAR"),
    ("fingerprint", "VARCHAR"),  # of the unify.yml parts an incremental run depends on
    ("watermarks", "VARCHAR"),  # JSON: table -> last incremental values read
    ("iterations_allowed", "BIGINT"),
    ("iterations_used", "BIGINT"),
    ("values_total", "BIGINT"),
    ("profiles", "BIGINT"),
    ("split_clusters", "BIGINT"),
    ("records_read", "BIGINT"),
    ("over_merge_warnings", "BIGINT"),
    ("seconds", "DOUBLE"),
    ("at_mark", "VARCHAR"),  # JSON: table -> rows at its watermark (extract.py)
]


@dataclass
class RunRecord:
    time: int
    mode: str
    method: str
    fingerprint: str
    watermarks: dict[str, list[Any]]
    iterations_allowed: int
    iterations_used: int
    values_total: int
    profiles: int
    split_clusters: int
    records_read: int
    over_merge_warnings: int = 0
    seconds: float = 0.0
    at_mark: dict[str, int] = field(default_factory=dict)

    def row_mark(self) -> str:
        return json.dumps(self.watermarks, sort_keys=True)

    def row(self) -> tuple[Any, ...]:
        d = asdict(self)
        d["watermarks"] = self.row_mark()
        d["at_mark"] = json.dumps(self.at_mark, sort_keys=True)
        return tuple(d[name] for name, _ in RUN_COLUMNS)


def state_select(mark: str) -> str:
    """`{id}_local_state`'s columns from `assigned`: one row per lookup row, joined to it on
    (kt, id) = (id_key_type, id): records carrying the value, those settled (before the
    watermarks `mark`, the JSON of the run that wrote the row), its node order, its leader's
    node order and its tables (bit set): what an incremental run continues from."""
    return (
        "kt, v AS id, recs AS records, settled, node AS node_order, leader AS leader_order,"
        f" tabs, {lit(mark)} AS mark"
    )


class OutputNames:
    def __init__(self, database: str, id_name: str) -> None:
        self.database = database
        self.id_name = id_name

    def __call__(self, suffix: str) -> str:
        return table(self.database, f"{self.id_name}_{suffix}")


def uid_sql(spec: UnifySpec, kt: str, v: str) -> str:
    names = " ".join(f"WHEN {k.code} THEN {lit(k.name)}" for k in spec.keys)
    digest = f"sha256((CASE {kt} {names} END) || ':' || {v})"
    return f"replace(replace(to_base64(from_hex(left({digest}, 24))), '+', '-'), '/', '_')"


@dataclass
class RowTable:
    """A small table written from Python rows: appended to, or replaced (`replace`)."""

    suffix: str
    columns: Columns
    rows: Callable[[], list[tuple[Any, ...]]]  # called inside the transaction, in order
    replace: bool = False


@dataclass
class Sources:
    """The temp relations the output tables are built from."""

    nodes: Nodes
    assign: str  # positional to nodes: node, leader, touched, unsettled
    people: str
    # (f, l) rows of clusters whose values keep several leaders (None: there are none), and
    # the assigned rows of the nodes they name
    kept_rows: str | None
    run_time: int
    mark: str = "{}"  # JSON of the run's watermarks (RunRecord.row's), for the state
    kept_nodes: str | None = None


def assigned_relation(con: duckdb.DuckDBPyConnection, scratch: Scratch, src: Sources) -> str:
    """Every node with its profile (the lookup's and the graph's source), as a relation
    read by each write rather than a table: materializing it wrote every value and both of
    its ids once more (and spilled at 10M records under the warehouse's memory limit)."""
    tablists = scratch.name("tablists")  # a handful of distinct table sets
    con.execute(
        f"CREATE TEMP TABLE {tablists} AS SELECT tabs, {tables_list_sql('tabs')} AS ids"
        f" FROM (SELECT DISTINCT tabs FROM {src.nodes.table})"
    )
    run = src.run_time
    return f"""(
        SELECT a.node, n.kt, n.v, n.fs, n.ls, n.recs, n.settled, tl.ids, a.unsettled,
               a.leader, n.tabs,
               CASE WHEN a.touched THEN {run} ELSE coalesce(n.prev_processed, {run}) END
                   AS processed,
               p.uid, p.kt AS lkt, p.v AS lv, p.fs AS pfs, p.ls AS pls
        FROM {src.nodes.table} n POSITIONAL JOIN {src.assign} a
        JOIN {src.people} p ON p.node = a.leader JOIN {tablists} tl ON tl.tabs = n.tabs)"""


def state_relation(src: Sources) -> str:
    """The columns `state_select` reads, without the profile join the lookup needs."""
    return f"""(
        SELECT n.kt, n.v, n.recs, n.settled, a.node, a.leader, n.tabs
        FROM {src.nodes.table} n POSITIONAL JOIN {src.assign} a)"""


def _follower(leader: str, run: str) -> str:
    return f"""a.v AS follower_id, a.kt AS follower_ns, {leader},
               a.fs AS follower_first_seen_at, a.ls AS follower_last_seen_at,
               a.ids AS follower_source_table_ids, a.processed AS follower_last_processed_at,
               {run} AS time"""


def lookup_sql(id_spec: IdSpec, assigned: str, run: str) -> str:
    """`{id}_lookup`'s rows (TD's columns) of the nodes in `assigned` (create_assigned)."""
    method = id_spec.id_column
    return f"""
        SELECT uid AS {quote_ident(method)}, v AS id, kt AS id_key_type,
               pfs AS {quote_ident(method + "_first_seen_at")},
               pls AS {quote_ident(method + "_last_seen_at")},
               fs AS id_first_seen_at, ls AS id_last_seen_at, ids AS id_source_table_ids,
               processed AS id_last_processed_at, {run} AS time
        FROM {assigned}"""


def graph_sql(assigned: str, kept_rows: str | None, run: str, kept_nodes: str | None = None) -> str:
    """`{id}_graph`'s rows: each settled node to its leader, plus the rows the loop kept
    for clusters not converged or held apart (`kept_rows`: follower and leader nodes; None
    when there are none). `kept_nodes`: the rows of `assigned` those rows name, when
    `assigned` is a relation too large to read twice more."""
    settled = f"""
        SELECT {_follower("a.lv AS leader_id, a.lkt AS leader_ns", run)}
        FROM {assigned} a WHERE NOT a.unsettled"""
    if kept_rows is None:
        return settled
    named = kept_nodes or assigned
    return f"""{settled}
        UNION ALL
        SELECT {_follower("l.v AS leader_id, l.kt AS leader_ns", run)}
        FROM {kept_rows} s JOIN {named} a ON a.node = s.f
        JOIN {named} l ON l.node = s.l"""


def keys_sql(spec: UnifySpec, run: str) -> str:
    return " UNION ALL ".join(
        f"SELECT {k.code}::BIGINT AS key_type, {lit(k.name)} AS key_name, {run} AS time"
        for k in spec.keys
    )


def tables_sql(spec: UnifySpec, run: str) -> str:
    return " UNION ALL ".join(
        f"SELECT {t.table_id}::BIGINT AS table_id, {lit(t.name)} AS table_name, {run} AS time"
        for t in spec.tables
    )


@dataclass
class DebugGraphs:
    """`{id}_graph_unify_loop_{n}` for keep_debug_tables: the rows before the loop, and the
    loop's snapshot after each iteration."""

    initial: tuple[np.ndarray, np.ndarray]
    loop: LoopResult
    node_count: int


def write_outputs(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    id_spec: IdSpec,
    src: Sources,
    assigned: str,
    row_tables: list[RowTable],
    debug: DebugGraphs | None,
) -> None:
    """Replace the lookup, graph, keys and tables, then write `row_tables` in order, all in
    one transaction (so a row function can read the new tables, e.g. the report).
    `assigned`: assigned_relation's rows (each write reads them)."""
    out = OutputNames(spec.database, id_spec.name)
    run = f"{src.run_time}::BIGINT"  # every output column is BIGINT or VARCHAR (TD's long/string)
    lookup = lookup_sql(id_spec, assigned, run)
    state = f"SELECT {state_select(src.mark)} FROM {state_relation(src)}"
    graph = graph_sql(assigned, src.kept_rows, run, src.kept_nodes)
    keys, tables = keys_sql(spec, run), tables_sql(spec, run)
    stale = [
        name
        for name in _tables_like(con, spec.database, f"{id_spec.name}{DEBUG_INFIX}")
        if debug is None or _loop_number(name, id_spec.name) > debug.loop.iterations
    ]

    def write() -> None:
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TABLE {out('lookup')} AS {lookup}")
            con.execute(f"CREATE OR REPLACE TABLE {out(STATE_SUFFIX)} AS {state}")
            con.execute(f"CREATE OR REPLACE TABLE {out('graph')} AS {graph}")
            con.execute(f"CREATE OR REPLACE TABLE {out('keys')} AS {keys}")
            con.execute(f"CREATE OR REPLACE TABLE {out('tables')} AS {tables}")
            for name in stale:
                con.execute(f"DROP TABLE IF EXISTS {table(spec.database, name)}")
            if debug is not None:
                _write_debug(con, out, assigned, debug, run)
            for t in row_tables:
                if t.replace:
                    con.execute(f"DROP TABLE IF EXISTS {out(t.suffix)}")
                append_rows(con, spec.database, f"{id_spec.name}_{t.suffix}", t.columns, t.rows())

    retry_on_conflict(write)


def _write_debug(
    con: duckdb.DuckDBPyConnection,
    out: OutputNames,
    assigned: str,
    debug: DebugGraphs,
    run: str,
) -> None:
    history = debug.loop.history or []
    n = max(debug.node_count, 1)
    key = unique_ints(debug.initial[0] * n + debug.initial[1])
    snapshots = [(key // n, key % n)]
    for snap in history:
        f = np.concatenate([snap.rows[0], snap.settled])
        ldr = np.concatenate([snap.rows[1], debug.loop.leader[snap.settled]])
        key = unique_ints(f * n + ldr)
        snapshots.append((key // n, key % n))
    for i, (f, ldr) in enumerate(snapshots):
        with arrays(con, f=f, l=ldr) as rows:
            con.execute(
                f"""CREATE OR REPLACE TABLE {out(f"graph_unify_loop_{i}")} AS
                    SELECT {_follower("l.v AS leader_id, l.kt AS leader_ns", run)}
                    FROM {rows} s JOIN {assigned} a ON a.node = s.f
                    JOIN {assigned} l ON l.node = s.l"""
            )


def _tables_like(con: duckdb.DuckDBPyConnection, database: str, prefix: str) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog ="
        " current_database() AND table_schema = ? AND starts_with(table_name, ?)",
        [database, prefix],
    ).fetchall()
    return [str(r[0]) for r in rows if str(r[0])[len(prefix) :].isdigit()]


def _loop_number(name: str, id_name: str) -> int:
    return int(name[len(id_name) + len(DEBUG_INFIX) :])


def append_rows(
    con: duckdb.DuckDBPyConnection,
    database: str,
    name: str,
    cols: Columns,
    rows: list[tuple[Any, ...]],
) -> None:
    """Append by column name, creating the table or adding new columns first (TD's way)."""
    target = table(database, name)
    defs = ", ".join(f"{quote_ident(c)} {t}" for c, t in cols)
    con.execute(f"CREATE TABLE IF NOT EXISTS {target} ({defs})")
    existing = columns(con, database, name)
    for c, t in cols:
        if c not in existing:
            con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(c)} {t}")
    if rows:
        names = ", ".join(quote_ident(c) for c, _ in cols)
        marks = ", ".join("?" for _ in cols)
        con.executemany(f"INSERT INTO {target} ({names}) VALUES ({marks})", [list(r) for r in rows])
