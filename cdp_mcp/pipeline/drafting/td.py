"""A database on Treasure Data: its tables, counts and columns from the table list, and a
bounded sample of each through one read-only Presto query, profiled like a file's sample
(the rows are held in an in-memory DuckDB table, never written anywhere)."""

from __future__ import annotations

import re

import duckdb

from cdp_mcp.backends.base import BackendError
from cdp_mcp.backends.treasuredata import TreasureDataBackend
from cdp_mcp.core.schema import Column, duckdb_type
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.pipeline.drafting.folder import MAX_OBJECTS
from cdp_mcp.pipeline.drafting.models import ObjectInfo
from cdp_mcp.pipeline.drafting.profile import profile_object

# TD's database and table names: lower case letters, digits and _, 3 to 255 characters.
TD_NAME = re.compile(r"^[a-z0-9_]{1,255}$")


class TDSourceError(BackendError):
    """A TD database that cannot be inspected; the message says why."""


def check_name(name: str, what: str) -> str:
    if not TD_NAME.match(name):
        raise TDSourceError(
            f"{what} {name[:80]!r} is no TD name: lower case letters, digits and _ only"
        )
    return name


async def inspect_database(
    backend: TreasureDataBackend, database: str, sample_rows: int, incremental_hint: str = ""
) -> tuple[list[ObjectInfo], list[str]]:
    check_name(database, "database")
    tables = sorted(await backend.tables(database), key=lambda t: t.name)
    objects: list[ObjectInfo] = []
    skipped: list[str] = []
    for info in tables:
        if not TD_NAME.match(info.name):
            skipped.append(f"{info.name[:80]}: not a plain TD table name")
            continue
        if len(objects) >= MAX_OBJECTS:
            skipped.append(f"{info.name}: more than {MAX_OBJECTS} tables")
            continue
        # TD's own load time is no column of the data
        columns = [c for c in info.columns if c.name != "time"]
        if not columns:
            skipped.append(f"{info.name}: no columns besides time")
            continue
        select = ", ".join(quote_ident(c.name) for c in columns)
        result = await backend.read_query(
            f"SELECT {select} FROM {quote_ident(info.name)} LIMIT {int(sample_rows)}",
            database,
            limit=sample_rows,
        )
        objects.append(_profile(info.name, columns, result.rows, info.count, incremental_hint))
    return objects, skipped


def _profile(
    name: str, columns: list[Column], rows: list[list[object]], count: int, hint: str
) -> ObjectInfo:
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        typed = ", ".join(f"{quote_ident(c.name)} {duckdb_type(c.type)}" for c in columns)
        con.execute(f"CREATE TEMP TABLE sample ({typed})")
        if rows:
            marks = ", ".join("?" for _ in columns)
            con.executemany(f"INSERT INTO sample VALUES ({marks})", [list(r) for r in rows])
        return profile_object(con, "sample", name, columns, max(count, len(rows)), len(rows), hint)
