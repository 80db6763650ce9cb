"""The local warehouse: one DuckDB file, one schema per TD database, UTC sessions.

DuckDB lets one process write a file at a time, so the file is opened while something uses
it (a running workflow, validation) and closed when idle; the MCP server and a CLI can then
take turns. Every task gets its own cursor, so parallel tasks run concurrently and a kill
can interrupt exactly the queries of one attempt.

The `query` tool and `cdp-mcp query` read through `reader()` instead: a second DuckDB
instance opened read-only with external access off and its configuration locked. DuckDB
opens a file in one mode at a time (per process and, by its file lock, across processes),
so readers and writers take turns: a reader waits a little for a writer to close and then
answers "busy"; a writer waits for open readers, which a time limit keeps short.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import duckdb

from cdp_mcp.backends.base import NotFoundError, UnavailableError
from cdp_mcp.backends.local import td_udfs
from cdp_mcp.backends.local.registry import WAREHOUSES
from cdp_mcp.backends.local.resources import resources
from cdp_mcp.core.schema import Column, td_type
from cdp_mcp.core.sqltext import quote_ident

SYSTEM_SCHEMAS = frozenset({"main", "information_schema", "pg_catalog", "temp"})
_OPEN_WAIT_SEC = 10.0
QUERY_TIMEOUT_SEC = 60.0  # a `query` running longer is interrupted
_READ_WAIT_SEC = 10.0  # how long a query waits for a writer to close the file
_WRITE_WAIT_SEC = QUERY_TIMEOUT_SEC + 15.0  # how long a writer waits for open queries
BUSY = (
    "busy: a workflow is writing the local warehouse; query again when it has ended "
    "(get_session, or `cdp-mcp wf session ID`, shows its status)"
)
# The read-only instance: no files, URLs or extensions; after setup nothing can change it.
_READER_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


def json_value(value: Any) -> Any:
    """A DuckDB value as JSON-friendly Python (for params, MCP output and CSV)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


Storage = Literal["fast", "compact"]
# DuckDB's analysis for dictionary+FSST text compression costs about half of a large write
# (measured in bench/README.md); `fast` skips it and stores text plainly.
_TEXT_COMPRESSION = {"fast": "dict_fsst", "compact": ""}
SPILL_DIR = "duckdb_spill"  # beside the warehouse file: what DuckDB's memory_limit pushes out


class Warehouse:
    """The DuckDB file at `path`, shared by all users of it in this process.

    `storage` (the config's `global.local_storage`) applies to what is written from then on;
    a later `at()` for the same file with another setting replaces it.
    """

    @classmethod
    def at(cls, path: Path, storage: Storage = "fast") -> Warehouse:
        """The process's one instance for the file (`registry.WAREHOUSES`)."""
        found = WAREHOUSES.at(path, cls)
        found.storage = storage
        return found

    def __init__(self, path: Path) -> None:
        self.path = path
        self.storage: Storage = "fast"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # users, readers or writers changed
        self._users = 0
        self._con: duckdb.DuckDBPyConnection | None = None
        self._readers = 0
        self._writers_waiting = 0
        self._reader_con: duckdb.DuckDBPyConnection | None = None

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Read at every open, so a changed override applies from the next workflow on.
        config = resources().duckdb_config(self.path.parent / SPILL_DIR)
        deadline = time.monotonic() + _OPEN_WAIT_SEC
        while True:
            try:
                con = duckdb.connect(str(self.path), config=config)
                td_udfs.register(con)  # TD's UDFs, for every cursor of this connection
                return con
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise UnavailableError(
                        f"the local warehouse {self.path} is in use by another process; "
                        f"wait for its workflow to finish ({str(e).splitlines()[0]})"
                    ) from None
                time.sleep(0.2)

    def _open_reader(self) -> duckdb.DuckDBPyConnection:
        if not self.path.is_file():
            raise NotFoundError(
                f"the local warehouse {self.path} has no tables yet; run a phase's workflow first"
            )
        spill = self.path.parent / SPILL_DIR
        config = {**_READER_CONFIG, **resources().duckdb_config(spill)}
        deadline = time.monotonic() + _READ_WAIT_SEC
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=True, config=config)
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise UnavailableError(f"{BUSY} (in another process)") from None
                time.sleep(0.2)
        try:
            # As a connect option TimeZone would autoload ICU, which external access forbids.
            con.execute("SET GLOBAL TimeZone = 'UTC'")
            td_udfs.register(con)  # scalar functions only; before the configuration locks
            con.execute("SET lock_configuration = true")
        except duckdb.Error:
            con.close()
            raise
        return con

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the file open for the duration (nested sessions share one connection)."""
        with self._changed:
            if self._con is None:
                self._writers_waiting += 1  # no new reader starts meanwhile
                try:
                    idle = self._changed.wait_for(lambda: self._readers == 0, _WRITE_WAIT_SEC)
                finally:
                    self._writers_waiting -= 1
                if not idle:
                    raise UnavailableError(
                        f"the local warehouse {self.path} is being read by a query that did not "
                        "end; try again"
                    )
                if self._con is None:
                    self._con = self._open()
            self._users += 1
        try:
            yield
        finally:
            with self._changed:
                self._users -= 1
                if self._users == 0 and self._con is not None:
                    self._con.close()
                    self._con = None
                self._changed.notify_all()

    @contextmanager
    def reader(self, database: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor that can only read, with `database` as default schema (the caller adds
        TD's functions with `td_udfs.prepare`).

        Its instance was opened read-only with external access off (no files, URLs,
        extensions, ATTACH) and its configuration locked, so no statement can undo that.
        """
        with self._changed:
            free = self._changed.wait_for(
                lambda: self._con is None and self._writers_waiting == 0, _READ_WAIT_SEC
            )
            if not free:
                raise UnavailableError(BUSY)
            if self._reader_con is None:
                self._reader_con = self._open_reader()
            self._readers += 1
            cur = self._reader_con.cursor()
        try:
            # A cursor starts with DuckDB's defaults: no progress bar on stdout (the MCP
            # stream), and the instance's UTC time zone.
            require_database(cur, database)
            cur.execute(f"SET schema = {_literal(database)}")
            yield cur
        finally:
            cur.close()
            with self._changed:
                self._readers -= 1
                if self._readers == 0 and self._reader_con is not None:
                    self._reader_con.close()
                    self._reader_con = None
                self._changed.notify_all()

    @contextmanager
    def cursor(self, database: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh connection to the warehouse in UTC, with `database` as default schema.

        TD's UDFs are there once `td_udfs.prepare` (or `install`) ran on it."""
        with self.session():
            with self._lock:
                assert self._con is not None
                cur = self._con.cursor()
            try:
                cur.execute("SET TimeZone = 'UTC'")
                # DuckDB draws a progress bar on stdout for long queries; in `cdp-mcp serve`
                # stdout is the MCP stdio stream.
                cur.execute("SET enable_progress_bar = false")
                disabled = _TEXT_COMPRESSION[self.storage]
                cur.execute(f"SET disabled_compression_methods = {_literal(disabled)}")
                if database:
                    require_database(cur, database)
                    cur.execute(f"SET schema = {_literal(database)}")
                yield cur
            finally:
                cur.close()

    # catalog

    def databases(self) -> list[str]:
        with self.cursor() as cur:
            return list_databases(cur)

    def tables(self, database: str) -> list[tuple[str, int, list[Column]]]:
        with self.cursor() as cur:
            require_database(cur, database)
            out = []
            for name in list_tables(cur, database):
                count = cur.execute(f"SELECT count(*) FROM {qualified(database, name)}").fetchone()
                out.append(
                    (name, int(count[0]) if count else 0, table_columns(cur, database, name))
                )
            return out


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def qualified(database: str, table: str) -> str:
    return f"{quote_ident(database)}.{quote_ident(table)}"


def list_databases(cur: duckdb.DuckDBPyConnection) -> list[str]:
    rows = cur.execute(
        "SELECT schema_name FROM information_schema.schemata"
        " WHERE catalog_name = current_database() ORDER BY schema_name"
    ).fetchall()
    return [r[0] for r in rows if r[0] not in SYSTEM_SCHEMAS]


def database_exists(cur: duckdb.DuckDBPyConnection, database: str) -> bool:
    return database in list_databases(cur)


def require_database(cur: duckdb.DuckDBPyConnection, database: str) -> None:
    if not database_exists(cur, database):
        raise NotFoundError(
            f"database {database!r} does not exist (create it first, e.g. with td_ddl>'s "
            "create_databases)"
        )


def list_tables(cur: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    rows = cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
        " AND table_schema = ? ORDER BY table_name",
        [database],
    ).fetchall()
    return [r[0] for r in rows]


def table_exists(cur: duckdb.DuckDBPyConnection, database: str, table: str) -> bool:
    return table in list_tables(cur, database)


def table_columns(cur: duckdb.DuckDBPyConnection, database: str, table: str) -> list[Column]:
    rows = cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog ="
        " current_database() AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [database, table],
    ).fetchall()
    return [Column(name=r[0], type=td_type(r[1])) for r in rows]
