"""Small SQL helpers: quoting, scratch tables, numpy arrays in and out of DuckDB."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from cdp_mcp.core.sqltext import quote_ident

_names = itertools.count()


def lit(value: Any) -> str:
    """A SQL literal for a str / int / float / None (everything else is refused)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def table(database: str, name: str) -> str:
    return f"{quote_ident(database)}.{quote_ident(name)}"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    rows = con.execute(sql, params or []).fetchall()  # fetch all: the result is then done
    return rows[0][0] if rows else None


def exists(con: duckdb.DuckDBPyConnection, database: str, name: str) -> str | None:
    """'BASE TABLE' / 'VIEW' when `database.name` exists, else None."""
    kind: str | None = scalar(
        con,
        "SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database()"
        " AND table_schema = ? AND table_name = ?",
        [database, name],
    )
    return kind


def columns(con: duckdb.DuckDBPyConnection, database: str, name: str) -> dict[str, str]:
    """Column name -> DuckDB type, in table order."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog ="
        " current_database() AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [database, name],
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


class Scratch:
    """Temp tables of one run (temp objects belong to this cursor only); dropped on close."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.run = next(_names)
        self._tables: list[str] = []

    def name(self, purpose: str) -> str:
        name = f"__unif_{self.run}_{purpose}"
        self._tables.append(name)
        return quote_ident(name)

    def drop(self, quoted: str) -> None:
        """Drop one of the run's tables now (its memory is needed by what follows)."""
        self.con.execute(f"DROP TABLE IF EXISTS temp.{quoted}")

    def close(self) -> None:
        for name in reversed(self._tables):
            self.con.execute(f"DROP TABLE IF EXISTS temp.{quote_ident(name)}")
        self._tables.clear()


@contextmanager
def arrays(con: duckdb.DuckDBPyConnection, **cols: npt.NDArray[Any]) -> Iterator[str]:
    """numpy columns readable in SQL under the returned name (zero-copy where DuckDB can)."""
    name = f"__unif_np_{next(_names)}"
    con.register(name, dict(cols))
    try:
        yield quote_ident(name)
    finally:
        con.unregister(name)


def fetch_ints(
    con: duckdb.DuckDBPyConnection, sql: str, dtype: type[np.signedinteger[Any]] = np.int64
) -> dict[str, npt.NDArray[Any]]:
    """The query's columns as `dtype` arrays (NULLs are not expected); a column the query
    already returns in that type is not copied."""
    out = con.execute(sql).fetchnumpy()
    return {k: np.asarray(v, dtype=dtype) for k, v in out.items()}


def sql_int_type(dtype: type[np.signedinteger[Any]]) -> str:
    """DuckDB's name of a numpy id type (INTEGER for int32), for casts that fetch without
    a copy."""
    return "INTEGER" if np.dtype(dtype) == np.dtype(np.int32) else "BIGINT"
