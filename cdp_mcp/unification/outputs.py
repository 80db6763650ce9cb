"""The tables TD's unification writes in `cdp_unification_{name}`, written in one transaction.

Replaced each run: `{id}_lookup` (one row per value: the id, `id`, `id_key_type`, first/last
seen), `{id}_graph` (TD's follower -> leader rows; a value of a cluster the loop did not
finish has one row per leader; also the per-value counts the next incremental run continues from),
`{id}_keys` (key_type -> key_name), `{id}_tables`, `{id}_cluster_report`.
Appended each run: `{id}_result_key_stats`, `{id}_source_key_stats`, `{id}_runs`.

Ids are derived from the leader value: the first 12 bytes of sha256('{key_name}:{value}'),
URL-safe base64 (16 characters). TD derives its ids from the leader too (with its own masks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import duckdb

from cdp_mcp.backends.local.tables import retry_on_conflict, transaction
from cdp_mcp.sources import quote_ident
from cdp_mcp.unification.nodes import Nodes, tables_text_sql
from cdp_mcp.unification.spec import IdSpec, UnifySpec
from cdp_mcp.unification.sql import Scratch, columns, lit, table

Columns = list[tuple[str, str]]

RUN_COLUMNS: Columns = [
    ("time", "BIGINT"),
    ("mode", "VARCHAR"),  # full | incremental
    ("method", "VARCHAR"),
    ("fingerprint", "VARCHAR"),  # of the unify.yml parts an incremental run depends on
    ("watermarks", "VARCHAR"),  # JSON: table -> last incremental value read
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
    watermarks: dict[str, int]
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
    assign: str  # positional to nodes: node, leader, touched, unsettled
    people: str
    open_rows: str  # (f, l) rows of clusters the loop did not finish
    run_time: int


def create_assigned(con: duckdb.DuckDBPyConnection, scratch: Scratch, src: Sources) -> str:
    """Temp table: every node with its profile, the one source of the lookup and the graph."""
    tabtext = scratch.name("tabtext")  # a handful of distinct table sets
    con.execute(
        f"CREATE TEMP TABLE {tabtext} AS SELECT tabs, {tables_text_sql('tabs')} AS ids"
        f" FROM (SELECT DISTINCT tabs FROM {src.nodes.table})"
    )
    assigned = scratch.name("assigned")
    run = src.run_time
    con.execute(
        f"""CREATE TEMP TABLE {assigned} AS
            SELECT a.node, n.kt, n.v, n.fs, n.ls, n.recs, n.settled, tt.ids, a.unsettled,
                   CASE WHEN a.touched THEN {run} ELSE coalesce(n.prev_processed, {run}) END
                       AS processed,
                   p.uid, p.kt AS lkt, p.v AS lv, p.fs AS pfs, p.ls AS pls
            FROM {src.nodes.table} n POSITIONAL JOIN {src.assign} a
            JOIN {src.people} p ON p.node = a.leader JOIN {tabtext} tt ON tt.tabs = n.tabs"""
    )
    return assigned


def write_outputs(
    con: duckdb.DuckDBPyConnection,
    spec: UnifySpec,
    id_spec: IdSpec,
    src: Sources,
    assigned: str,
    row_tables: list[RowTable],
) -> None:
    """Replace the lookup, graph, keys and tables, then write `row_tables` in order, all in
    one transaction (so a row function can read the new tables, e.g. the report)."""
    out = OutputNames(spec.database, id_spec.name)
    run = f"{src.run_time}::BIGINT"  # every output column is BIGINT or VARCHAR (TD's long/string)
    uid = quote_ident(id_spec.name)
    lookup = f"""
        SELECT uid AS {uid}, v AS id, kt AS id_key_type,
               pfs AS {quote_ident(id_spec.name + "_first_seen_at")},
               pls AS {quote_ident(id_spec.name + "_last_seen_at")},
               fs AS id_first_seen_at, ls AS id_last_seen_at, ids AS id_source_table_ids,
               processed AS id_last_processed_at, {run} AS time
        FROM {assigned}"""
    follower = f"""a.v AS follower_id, a.kt AS follower_ns, {{leader}},
               a.fs AS follower_first_seen_at, a.ls AS follower_last_seen_at,
               a.ids AS follower_source_table_ids, a.processed AS follower_last_processed_at,
               a.recs AS follower_records, a.settled AS follower_settled_records,
               a.node AS follower_order, {run} AS time"""
    graph = f"""
        SELECT {follower.format(leader="a.lv AS leader_id, a.lkt AS leader_ns")}
        FROM {assigned} a WHERE NOT a.unsettled
        UNION ALL
        SELECT {follower.format(leader="l.v AS leader_id, l.kt AS leader_ns")}
        FROM {src.open_rows} s JOIN {assigned} a ON a.node = s.f
        JOIN {assigned} l ON l.node = s.l"""
    keys = " UNION ALL ".join(
        f"SELECT {k.code}::BIGINT AS key_type, {lit(k.name)} AS key_name, {run} AS time"
        for k in spec.keys
    )
    tables = " UNION ALL ".join(
        f"SELECT {t.table_id}::BIGINT AS table_id, {lit(t.name)} AS table_name,"
        f" {lit(t.database)} AS database_name, {lit(t.table)} AS source_table, {run} AS time"
        for t in spec.tables
    )

    def write() -> None:
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TABLE {out('lookup')} AS {lookup}")
            con.execute(f"CREATE OR REPLACE TABLE {out('graph')} AS {graph}")
            con.execute(f"CREATE OR REPLACE TABLE {out('keys')} AS {keys}")
            con.execute(f"CREATE OR REPLACE TABLE {out('tables')} AS {tables}")
            for t in row_tables:
                if t.replace:
                    con.execute(f"DROP TABLE IF EXISTS {out(t.suffix)}")
                append_rows(con, spec.database, f"{id_spec.name}_{t.suffix}", t.columns, t.rows())

    retry_on_conflict(write)


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
