"""SQL on the local warehouse: the catalog, this package's own queries, and read-only ones
from a person or an agent."""

from __future__ import annotations

import threading

import duckdb

from cdp_mcp.backends.base import QueryError, QueryResult, TableInfo
from cdp_mcp.backends.local import tables, td_udfs
from cdp_mcp.backends.local.readonly import (
    check_duckdb,
    clean_error,
    pipeline_tables,
    scope_information_schema,
    show_sql,
    show_table,
)
from cdp_mcp.backends.local.sql import ENGINES, split_statements, translate, translate_tree
from cdp_mcp.backends.local.warehouse import (
    QUERY_TIMEOUT_SEC,
    Warehouse,
    json_value,
    list_databases,
    table_columns,
)
from cdp_mcp.backends.readonly import Show, read_statement


class Queries:
    """The warehouse's databases, tables and SQL, in TD's dialects."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def databases(self) -> list[str]:
        return self.warehouse.databases()

    def tables(self, database: str) -> list[TableInfo]:
        return [
            TableInfo(name=n, count=c, columns=cols)
            for n, c, cols in self.warehouse.tables(database)
        ]

    def read_query(
        self,
        sql: str,
        database: str,
        engine: str = "presto",
        limit: int | None = None,
        timeout: float = QUERY_TIMEOUT_SEC,
    ) -> QueryResult:
        """One read statement, for a person or an agent (`query`, `cdp-mcp query`).

        Checked twice (on the TD-dialect text, then on the DuckDB text by DuckDB's own
        splitter, parse tree and plan) and run on a connection that cannot write or reach
        the host (`Warehouse.reader`), interrupted after `timeout` seconds.
        """
        statement = read_statement(sql, engine)
        with self.warehouse.reader(database) as cur:
            known = pipeline_tables(cur, list_databases(cur))
            if isinstance(statement, Show):
                columns = None
                if statement.what == "columns":
                    columns = table_columns(cur, *show_table(statement, database, known))
                duck = show_sql(statement, database, known, columns)
            else:
                tree = scope_information_schema(statement.tree, list(known))
                duck = translate_tree(tree, engine).sql
            td_udfs.prepare(cur, duck)  # TD's functions, TD_SCHEDULED_TIME() = now
            check_duckdb(cur, duck, database, known)
            timer = threading.Timer(timeout, cur.interrupt)
            timer.start()
            try:
                cur.execute(duck)
                return _result(cur, limit)
            except duckdb.InterruptException:
                raise QueryError(
                    f"the query ran longer than {timeout:g} s and was stopped; narrow it (a "
                    "WHERE on time, fewer joins, an aggregate) and run it again"
                ) from None
            except (duckdb.Error, ValueError) as e:
                raise QueryError(clean_error(str(e), known)) from None
            finally:
                timer.cancel()

    def query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        """Any SQL, read-write, for this package's own callers (validation, the emulator's
        job API): never for text from a person or an agent (use `read_query`)."""
        engine = engine.lower()
        if engine not in ENGINES:
            raise QueryError(f"unknown engine {engine!r}; use presto or hive")
        statements = split_statements(sql)
        if not statements:
            raise QueryError("no SQL statement to run")
        with self.warehouse.cursor(database) as cur:
            td_udfs.prepare(cur, sql)
            for i, statement in enumerate(statements):
                try:
                    translated = translate(statement.text, engine)
                    if translated.target:
                        written = tables.write_rows(cur, database, translated)
                        cur.execute("SELECT ? AS rows", [written])
                    else:
                        cur.execute(translated.sql)
                except (duckdb.Error, ValueError) as e:
                    where = f"line {statement.line}: " if len(statements) > 1 else ""
                    raise QueryError(f"{where}{str(e).strip()}") from None
                if i < len(statements) - 1:
                    continue
                return _result(cur, limit)
        raise QueryError("no SQL statement to run")


def _result(cur: duckdb.DuckDBPyConnection, limit: int | None) -> QueryResult:
    if cur.description is None:
        return QueryResult(columns=[], rows=[], truncated=False)
    columns = [d[0] for d in cur.description]
    fetched = cur.fetchmany(limit + 1) if limit is not None else cur.fetchall()
    truncated = limit is not None and len(fetched) > limit
    rows = [[json_value(v) for v in r] for r in fetched[:limit]]
    return QueryResult(columns=columns, rows=rows, truncated=truncated)
