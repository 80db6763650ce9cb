"""Writing tables the way TD does: schema-on-write with TD's column types.

TD tables hold `long`, `double`, `string` and `boolean` columns; a query result with other
types (DuckDB's INTEGER, DECIMAL, TIMESTAMP, ...) is stored as the TD type it would get,
so later queries see what they would see on TD. Appends add missing columns first.

Parallel tasks may write the same new table at once (e.g. a log table from every branch of
a `for_each>`); TD accepts that, DuckDB reports a write-write conflict on the catalog, so
writes are retried when they lose such a race.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import duckdb

from cdp_mcp.backends.local.sql import Translated
from cdp_mcp.backends.local.warehouse import qualified, table_columns, table_exists
from cdp_mcp.core.schema import duckdb_type, td_type
from cdp_mcp.core.sqltext import quote_ident

T = TypeVar("T")
_CONFLICT_RETRIES = 8


def split_table(name: str, database: str) -> tuple[str, str]:
    """`table` or `db.table` -> (db, table)."""
    name = name.strip()
    if "." in name:
        db, table = name.split(".", 1)
        return db.strip('"'), table.strip('"')
    return database, name.strip('"')


def retry_on_conflict(action: Callable[[], T]) -> T:
    """Run `action`, again if a concurrent transaction won a write-write conflict."""
    for attempt in range(_CONFLICT_RETRIES):
        try:
            return action()
        except duckdb.TransactionException as e:
            if "conflict" not in str(e).lower() or attempt == _CONFLICT_RETRIES - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def transaction(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    cur.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        with suppress(duckdb.Error):  # a failed commit has already rolled back
            cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")


def td_select(cur: duckdb.DuckDBPyConnection, select_sql: str) -> tuple[str, list[tuple[str, str]]]:
    """`select_sql` with every column cast to its TD type; also (name, duckdb type) pairs."""
    described = cur.execute(f"DESCRIBE (\n{select_sql}\n)").fetchall()
    cols = [(str(r[0]), duckdb_type(td_type(str(r[1])))) for r in described]
    names = [c for c, _ in cols]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"the query returns duplicate column names: {', '.join(dupes)}")
    casts = ", ".join(f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in cols)
    # Newlines keep a trailing `--` comment of the query from swallowing the wrapper.
    return f"SELECT {casts} FROM (\n{select_sql}\n) AS __q", cols


def create_table_as(
    cur: duckdb.DuckDBPyConnection, database: str, table: str, select_sql: str
) -> int:
    """Drop and recreate `database.table` from the query (td> create_table); rows written."""
    target = qualified(database, table)
    typed, _ = td_select(cur, select_sql)

    def write() -> int:
        with transaction(cur):
            cur.execute(f"DROP TABLE IF EXISTS {target}")
            cur.execute(f"CREATE TABLE {target} AS {typed}")
        return _count(cur, target)

    return retry_on_conflict(write)


def append_by_name(
    cur: duckdb.DuckDBPyConnection,
    database: str,
    table: str,
    select_sql: str,
    replace: bool = False,
) -> int:
    """Append the query's rows by column name, creating the table or adding new columns first.

    `replace` deletes the existing rows in the same transaction (Hive's INSERT OVERWRITE).
    """
    target = qualified(database, table)
    typed, cols = td_select(cur, select_sql)

    def write() -> int:
        with transaction(cur):
            if not table_exists(cur, database, table):
                cur.execute(f"CREATE TABLE {target} AS {typed}")
                written = None
            else:
                if replace:
                    cur.execute(f"DELETE FROM {target}")
                existing = {c.name for c in table_columns(cur, database, table)}
                for name, dtype in cols:
                    if name not in existing:
                        cur.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(name)} {dtype}")
                row = cur.execute(f"INSERT INTO {target} BY NAME {typed}").fetchone()
                written = int(row[0]) if row else 0
        return _count(cur, target) if written is None else written

    return retry_on_conflict(write)


def create_schema(cur: duckdb.DuckDBPyConnection, database: str) -> None:
    retry_on_conflict(lambda: cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}"))


def create_empty(cur: duckdb.DuckDBPyConnection, database: str, table: str) -> None:
    """A new TD table has only its `time` column until data arrives."""
    retry_on_conflict(
        lambda: cur.execute(
            f"CREATE TABLE IF NOT EXISTS {qualified(database, table)} (time BIGINT)"
        )
    )


def _count(cur: duckdb.DuckDBPyConnection, target: str) -> int:
    row = cur.execute(f"SELECT count(*) FROM {target}").fetchone()
    return int(row[0]) if row else 0


def write_rows(cur: duckdb.DuckDBPyConnection, database: str, statement: Translated) -> int:
    """Write a statement's query rows the way it asked: `CREATE TABLE t AS` (replace the
    table), `INSERT INTO` (append, creating it) or Hive's `INSERT OVERWRITE` (replace the
    rows); the rows written."""
    if statement.create_table:
        db, table = split_table(statement.create_table, database)
        return create_table_as(cur, db, table, statement.sql)
    name = statement.insert_table or statement.overwrite_table
    if not name:
        raise ValueError("write_rows needs a statement that writes a table")
    db, table = split_table(name, database)
    replace = statement.overwrite_table is not None
    return append_by_name(cur, db, table, statement.sql, replace=replace)
