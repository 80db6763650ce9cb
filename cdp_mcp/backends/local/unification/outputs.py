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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np

from cdp_mcp.backends.local.tables import retry_on_conflict, transaction
from cdp_mcp.backends.local.unification.nodes import MAX_TABLES, Nodes, tables_list_sql
from cdp_mcp.backends.local.unification.prior import STATE_SUFFIX
from cdp_mcp.backends.local.unification.spec import IdSpec, UnifySpec
from cdp_mcp.backends.local.unification.sql import Scratch, arrays, columns, lit, scalar, table
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

    def row(self) -> tuple[Any, ...]:
        d = asdict(self)
        d["watermarks"] = json.dumps(self.watermarks, sort_keys=True)
        return tuple(d[name] for name, _ in RUN_COLUMNS)


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
    assign: str  # positional to nodes: node, profile (row of people), touched, unsettled
    people: str  # one row per profile, in node order: node, kt, v, uid, fs, ls, n_values
    kept_rows: str  # (f, l, touched of f) rows of clusters whose values keep several leaders
    run_time: int


def create_assigned(con: duckdb.DuckDBPyConnection, scratch: Scratch, src: Sources) -> str:
    """Temp table: every node with its profile (for the debug graphs, keep_debug_tables)."""
    tablists = scratch.name("debug_tablists")  # a handful of distinct table sets
    con.execute(
        f"CREATE TEMP TABLE {tablists} AS SELECT tabs, {tables_list_sql('tabs')} AS ids"
        f" FROM (SELECT DISTINCT tabs FROM {src.nodes.table})"
    )
    assigned = scratch.name("assigned")
    run = src.run_time
    con.execute(
        f"""CREATE TEMP TABLE {assigned} AS
            SELECT a.node, n.kt, n.v, n.fs, n.ls, n.recs, n.settled, tl.ids, a.unsettled,
                   CASE WHEN a.touched THEN {run} ELSE coalesce(n.prev_processed, {run}) END
                       AS processed,
                   p.uid, p.kt AS lkt, p.v AS lv, p.fs AS pfs, p.ls AS pls
            FROM {src.nodes.table} n POSITIONAL JOIN {src.assign} a
            JOIN (SELECT row_number() OVER (ORDER BY node) - 1 AS profile, * FROM {src.people}) p
              ON p.profile = a.profile
            JOIN {tablists} tl ON tl.tabs = n.tabs"""
    )
    return assigned


def _follower(leader: str, run: str) -> str:
    return f"""a.v AS follower_id, a.kt AS follower_ns, {leader},
               a.fs AS follower_first_seen_at, a.ls AS follower_last_seen_at,
               a.ids AS follower_source_table_ids, a.processed AS follower_last_processed_at,
               {run} AS time"""


@dataclass
class DebugGraphs:
    """`{id}_graph_unify_loop_{n}` for keep_debug_tables: the rows before the loop, and the
    loop's snapshot after each iteration."""

    initial: tuple[np.ndarray, np.ndarray]
    loop: LoopResult
    node_count: int


MAX_DISTINCT_TABLE_SETS = 256  # more than this: each node's list is computed from its bits
STATE_CHUNK = 2_000_000  # rows of `{id}_local_state` gathered in numpy at a time
_ORDER_COLUMN = "__node"  # the lookup's node per row while it is written (then dropped)


def _processed(run: int, touched: str, prev: str) -> str:
    return f"CASE WHEN {touched} THEN {run} ELSE coalesce({prev}, {run}) END"


def write_outputs(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    id_spec: IdSpec,
    src: Sources,
    scratch: Scratch,
    row_tables: list[RowTable],
    debug: DebugGraphs | None,
) -> None:
    """Replace the lookup, graph, keys and tables, then write `row_tables` in order, all in
    one transaction (so a row function can read the new tables, e.g. the report).

    The lookup and the graph are each written straight from the nodes joined with their
    profiles (no table of every node with its profile's strings is held in between); the
    local state is then written in the lookup's row order, read back from the lookup."""
    out = OutputNames(spec.database, id_spec.name)
    run = f"{src.run_time}::BIGINT"  # every output column is BIGINT or VARCHAR (TD's long/string)
    method = id_spec.id_column
    # Per node (n) its assignment (a), and its profile's figures taken from the people's
    # lists by position (u): projections of one scan, so the nodes' order is kept and no
    # hash join builds a table of 10M strings.
    profiles = f"""(SELECT list(uid ORDER BY node) AS uid, list(v ORDER BY node) AS v,
        list(kt ORDER BY node) AS kt, list(fs ORDER BY node) AS fs, list(ls ORDER BY node) AS ls
        FROM {src.people})"""
    per_node = f"{src.nodes.table} n POSITIONAL JOIN {src.assign} a, {profiles} u"
    at = "[a.profile + 1]"
    ids = _table_ids_sql(con, src.nodes.table, "n.tabs")
    processed = _processed(src.run_time, "a.touched", "n.prev_processed")
    lookup = f"""
        SELECT u.uid{at} AS {quote_ident(method)}, n.v AS id, n.kt AS id_key_type,
               u.fs{at} AS {quote_ident(method + "_first_seen_at")},
               u.ls{at} AS {quote_ident(method + "_last_seen_at")},
               n.fs AS id_first_seen_at, n.ls AS id_last_seen_at, {ids} AS id_source_table_ids,
               {processed} AS id_last_processed_at, {run} AS time,
               a.node AS {_ORDER_COLUMN}
        FROM {per_node}"""
    graph = f"""
        SELECT n.v AS follower_id, n.kt AS follower_ns, u.v{at} AS leader_id,
               u.kt{at} AS leader_ns, n.fs AS follower_first_seen_at,
               n.ls AS follower_last_seen_at, {ids} AS follower_source_table_ids,
               {processed} AS follower_last_processed_at, {run} AS time
        FROM {per_node} WHERE NOT a.unsettled"""
    if scalar(con, f"SELECT count(*) FROM {src.kept_rows}"):
        graph += f"""
        UNION ALL
        SELECT n.v, n.kt, l.v, l.kt, n.fs, n.ls, {ids},
               {_processed(src.run_time, "s.touched", "n.prev_processed")}, {run}
        FROM {src.kept_rows} s JOIN {src.nodes.table} n ON n.rowid = s.f
        JOIN {src.nodes.table} l ON l.rowid = s.l"""
    keys = " UNION ALL ".join(
        f"SELECT {k.code}::BIGINT AS key_type, {lit(k.name)} AS key_name, {run} AS time"
        for k in spec.keys
    )
    tables = " UNION ALL ".join(
        f"SELECT {t.table_id}::BIGINT AS table_id, {lit(t.name)} AS table_name, {run} AS time"
        for t in spec.tables
    )
    stale = [
        name
        for name in _tables_like(con, spec.database, f"{id_spec.name}{DEBUG_INFIX}")
        if debug is None or _loop_number(name, id_spec.name) > debug.loop.iterations
    ]
    assigned = create_assigned(con, scratch, src) if debug is not None else None

    def write() -> None:
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TABLE {out('lookup')} AS {lookup}")
            write_state(con, out, src.nodes.table)
            con.execute(f"CREATE OR REPLACE TABLE {out('graph')} AS {graph}")
            con.execute(f"CREATE OR REPLACE TABLE {out('keys')} AS {keys}")
            con.execute(f"CREATE OR REPLACE TABLE {out('tables')} AS {tables}")
            for name in stale:
                con.execute(f"DROP TABLE IF EXISTS {table(spec.database, name)}")
            if debug is not None and assigned is not None:
                _write_debug(con, out, assigned, debug, run)
            for t in row_tables:
                if t.replace:
                    con.execute(f"DROP TABLE IF EXISTS {out(t.suffix)}")
                append_rows(con, spec.database, f"{id_spec.name}_{t.suffix}", t.columns, t.rows())

    retry_on_conflict(write)


def _table_ids_sql(con: duckdb.DuckDBPyConnection, nodes: str, tabs: str) -> str:
    """TD's array of source table ids for a node's table bit set `tabs`: a CASE over the
    handful of distinct sets (a join with them could reorder the rows)."""
    found = [int(r[0]) for r in con.execute(f"SELECT DISTINCT tabs FROM {nodes}").fetchall()]
    if not found or len(found) > MAX_DISTINCT_TABLE_SETS:
        return tables_list_sql(tabs)
    whens = " ".join(
        f"WHEN {mask} THEN {_int_list(i + 1 for i in range(MAX_TABLES) if mask >> i & 1)}"
        for mask in sorted(found)
    )
    return f"(CASE {tabs} {whens} END)"


def _int_list(values: Iterable[int]) -> str:
    return f"[{', '.join(str(v) for v in values)}]::BIGINT[]"


def write_state(con: duckdb.DuckDBPyConnection, out: OutputNames, nodes: str) -> None:
    """`{id}_local_state` row for row beside the lookup just written (which still has its
    node column): what an incremental run reads back with a POSITIONAL JOIN.

    A join need not keep the nodes' order, so the lookup's order is read back: when it is
    the nodes' own (usual), the state is a scan of the nodes; otherwise the nodes' figures
    are gathered into the lookup's order in numpy, a chunk at a time."""
    lookup, state = out("lookup"), out(STATE_SUFFIX)
    order = con.execute(f"SELECT {_ORDER_COLUMN} FROM {lookup}").fetchnumpy()[_ORDER_COLUMN]
    con.execute(f"ALTER TABLE {lookup} DROP COLUMN {_ORDER_COLUMN}")
    figures = "kt, recs AS records, settled"
    if np.array_equal(order, np.arange(len(order), dtype=order.dtype)):
        con.execute(
            f"CREATE OR REPLACE TABLE {state} AS SELECT {figures}, rowid AS node_order FROM {nodes}"
        )
        return
    per_node = con.execute(f"SELECT {figures} FROM {nodes}").fetchnumpy()
    con.execute(
        f"CREATE OR REPLACE TABLE {state} (kt BIGINT, records BIGINT, settled BIGINT,"
        " node_order BIGINT)"
    )
    for start in range(0, len(order), STATE_CHUNK):
        at = np.asarray(order[start : start + STATE_CHUNK], dtype=np.int64)
        chunk = {name: np.asarray(col)[at] for name, col in per_node.items()}
        with arrays(con, **chunk, node_order=at) as arr:
            con.execute(f"INSERT INTO {state} SELECT kt, records, settled, node_order FROM {arr}")


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
