"""`td>`: run a TD query (Presto or Hive) on the warehouse.

Like Digdag's td> operator: the SQL comes from a project file (templated with `${...}`) or
`query:`; `create_table` drops and recreates the target from the result, `insert_into`
appends (creating the table if missing), `store_last_results` keeps the first row as
`${td.last_results.col}`. A file may hold several `;`-separated statements (DDL before the
query); options that write the result apply to the last one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import duckdb

from cdp_mcp.backends.local import tables
from cdp_mcp.backends.local.operators.base import (
    OperatorContext,
    OperatorResult,
    TaskFailure,
    as_bool,
)
from cdp_mcp.backends.local.params import StoreUpdate
from cdp_mcp.backends.local.sql import ENGINES, Statement, Translated, split_statements, translate
from cdp_mcp.backends.local.warehouse import json_value

_SQL_LOG_LIMIT = 6000
_TD_ONLY_OPTIONS = ("result_url", "result_connection", "download_file")


@dataclass
class _Outcome:
    """What one statement returned: result rows kept, their count, or rows written."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    count: int = 0
    written: int | None = None

    @classmethod
    def written_rows(cls, n: int) -> _Outcome:
        # Presto answers CREATE TABLE AS / INSERT with one row: `rows`.
        return cls(["rows"], [(n,)], 1, n)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=False)) for r in self.rows]


def _store_mode(value: Any) -> str | None:
    if value in (None, "", False):
        return None
    if isinstance(value, str) and value.strip().lower() in ("first", "all"):
        return value.strip().lower()
    return "first" if as_bool(value, "store_last_results") else None


class TdOperator:
    name: ClassVar[str] = "td"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        sql, origin = self._sql(ctx)
        database = ctx.database()
        if not database:
            raise TaskFailure(
                "td>: no database; set `database:` on the task or `td.database` in _export"
            )
        engine = str(ctx.option("engine", "presto")).lower()
        if engine not in ENGINES:
            raise TaskFailure(f"td>: unknown engine {engine!r}; use presto or hive")
        for option in _TD_ONLY_OPTIONS:
            if ctx.option(option) is not None:
                raise TaskFailure(
                    f"td>: {option} sends results outside TD; it only runs on Treasure Data"
                )
        create_table, insert_into = ctx.option("create_table"), ctx.option("insert_into")
        if create_table and insert_into:
            raise TaskFailure("td>: use create_table or insert_into, not both")
        store_mode = _store_mode(ctx.config.get("store_last_results"))

        statements = split_statements(sql)
        if not statements:
            raise TaskFailure(f"td>: {origin} has no SQL statement")
        ctx.log.info(
            f"td>: {origin} on database {database} ({engine}, {len(statements)} statement(s))"
        )
        last: _Outcome | None = None
        with ctx.services.cursor(database) as cur:
            for i, statement in enumerate(statements):
                translated = translate(statement.text, engine)
                self._log_sql(ctx, statement, translated, i, len(statements), origin)
                is_last = i == len(statements) - 1
                target = (create_table or insert_into) if is_last else None
                if target and not translated.is_query:
                    raise TaskFailure(
                        f"td>: {origin}:{statement.line}: create_table/insert_into need a query "
                        "(SELECT or WITH) as the last statement"
                    )
                started = time.monotonic()
                try:
                    outcome = self._execute(
                        cur,
                        database,
                        translated,
                        target,
                        bool(create_table),
                        store_mode if is_last else None,
                    )
                except (duckdb.Error, ValueError) as e:
                    if ctx.services.cancel_requested():
                        raise TaskFailure("td>: query interrupted by a kill request") from None
                    message = str(e).strip()
                    ctx.log.error(f"{origin}:{statement.line}: {message}")
                    raise TaskFailure(f"td>: {origin}:{statement.line}: {message}") from None
                elapsed = time.monotonic() - started
                if outcome.written is not None:
                    ctx.log.info(f"{outcome.written} rows written in {elapsed:.2f}s")
                else:
                    ctx.log.info(
                        f"statement {i + 1} done in {elapsed:.2f}s ({outcome.count} result rows)"
                    )
                last = outcome
        td_store: dict[str, Any] = {
            "last_job_id": str(ctx.task_id),
            "last_job": {"id": str(ctx.task_id), "num_records": last.count if last else 0},
        }
        resets: list[tuple[str, ...]] = [("td", "last_job")]
        if store_mode:
            rows = last.records() if last else []
            td_store["last_results"] = (rows[0] if rows else {}) if store_mode == "first" else rows
            resets.append(("td", "last_results"))
            ctx.log.info(f"stored td.last_results: {str(td_store['last_results'])[:500]}")
        return OperatorResult(store=StoreUpdate({"td": td_store}, resets))

    def _sql(self, ctx: OperatorContext) -> tuple[str, str]:
        command, inline = ctx.command, ctx.option("query")
        if command not in (None, "") and inline:
            raise TaskFailure("td>: give a SQL file (td>: file.sql) or query:, not both")
        if command not in (None, ""):
            relpath = str(command)
            text = ctx.read_project_file(relpath, "td>")
            return ctx.render(text), relpath
        if inline:
            return str(inline), "query"
        raise TaskFailure("td>: needs a SQL file (td>: queries/x.sql) or query:")

    def _execute(
        self,
        cur: duckdb.DuckDBPyConnection,
        database: str,
        translated: Translated,
        target: str | None,
        create: bool,
        store_mode: str | None,
    ) -> _Outcome:
        if target:
            db, table = tables.split_table(str(target), database)
            write = tables.create_table_as if create else tables.append_by_name
            return _Outcome.written_rows(write(cur, db, table, translated.sql))
        if translated.overwrite_table:
            db, table = tables.split_table(translated.overwrite_table, database)
            return _Outcome.written_rows(
                tables.append_by_name(cur, db, table, translated.sql, replace=True)
            )
        cur.execute(translated.sql)
        if cur.description is None:
            return _Outcome()
        columns = [d[0] for d in cur.description]
        if store_mode == "all":
            rows = [tuple(json_value(v) for v in r) for r in cur.fetchall()]
            return _Outcome(columns, rows, len(rows))
        first = cur.fetchone()
        kept = [tuple(json_value(v) for v in first)] if first is not None else []
        count = len(kept)
        while batch := cur.fetchmany(10000):  # drain: a TD job reports every row it returned
            count += len(batch)
        return _Outcome(columns, kept, count)

    def _log_sql(
        self,
        ctx: OperatorContext,
        statement: Statement,
        translated: Translated,
        i: int,
        n: int,
        origin: str,
    ) -> None:
        sql = translated.sql
        if len(sql) > _SQL_LOG_LIMIT:
            sql = (
                sql[:_SQL_LOG_LIMIT]
                + f"\n... ({len(translated.sql) - _SQL_LOG_LIMIT} more characters)"
            )
        ctx.log.info(
            f"statement {i + 1}/{n} ({origin} line {statement.line}), as run on DuckDB:\n{sql}"
        )
        if translated.note:
            ctx.log.warn(f"ran as written: {translated.note}")
