"""`td>`: run a TD query (Presto or Hive) on the warehouse.

Like Digdag's td> operator: the SQL comes from a project file (templated with `${...}`) or
`query:`; `create_table` / `insert_into` paste Digdag's own command into the query text
(`DROP TABLE IF EXISTS t; CREATE TABLE t AS`, `INSERT INTO t`, Hive's `INSERT OVERWRITE
TABLE t` / `INSERT INTO TABLE t`; see td_text.py) and the result runs statement by
statement, so a file that would break on TD breaks here too. `store_last_results` keeps the
first row as `${td.last_results.col}`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import duckdb

from cdp_mcp.backends.local import tables, td_text, td_udfs
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


def _clipped(sql: str) -> str:
    if len(sql) <= _SQL_LOG_LIMIT:
        return sql
    return sql[:_SQL_LOG_LIMIT] + f"\n... ({len(sql) - _SQL_LOG_LIMIT} more characters)"


def where(origin: str, statement: Statement) -> str:
    """`file:N` for a statement from the query file, else the file (a line td> added)."""
    return f"{origin}:{statement.line}" if statement.line else origin


def _store_mode(value: Any) -> str | None:
    if value in (None, "", False):
        return None
    if isinstance(value, str) and value.strip().lower() in ("first", "all"):
        return value.strip().lower()
    return "first" if as_bool(value, "store_last_results") else None


@dataclass
class _Job:
    """A td> task's options, checked: where and how its statements run."""

    database: str
    engine: str
    create_table: Any
    insert_into: Any
    store_mode: str | None
    origin: str  # the SQL file, or `query`

    @property
    def writes(self) -> bool:
        return bool(self.create_table or self.insert_into)


class TdOperator:
    name: ClassVar[str] = "td"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        sql, origin = self._sql(ctx)
        job = self._job(ctx, origin)
        if job.writes:
            self._ensure_target(ctx, job)
        # Exactly the text Digdag's td> sends TD: the command pasted into the query.
        text = td_text.with_comment(
            {**ctx.config, **ctx.extra},
            td_text.job_statement(sql, job.engine, job.create_table, job.insert_into),
        )
        lines = td_text.file_lines(sql, text)
        statements = [Statement(st.text, lines.get(st.line, 0)) for st in split_statements(text)]
        if not statements:
            raise TaskFailure(f"td>: {origin} has no SQL statement")
        ctx.log.info(
            f"td>: {origin} on database {job.database} ({job.engine}, {len(statements)} "
            f"statement(s)); the job's query, as Digdag sends it to TD:\n{_clipped(text)}"
        )
        last = self._run_statements(ctx, job, text, statements)
        return OperatorResult(store=self._stored(ctx, job, last))

    def _job(self, ctx: OperatorContext, origin: str) -> _Job:
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
        return _Job(database, engine, create_table, insert_into, store_mode, origin)

    def _ensure_target(self, ctx: OperatorContext, job: _Job) -> None:
        """Digdag's ensureTableCreated: insert_into (and Hive's writes) need the table.
        (The cursor is opened either way: it checks that the database exists.)"""
        with ctx.services.cursor(job.database) as cur:
            if job.insert_into or job.engine == "hive":
                target = str(job.insert_into or job.create_table)
                db, table = tables.split_table(target, job.database)
                tables.create_schema(cur, db)
                tables.create_empty(cur, db, table)

    def _run_statements(
        self, ctx: OperatorContext, job: _Job, text: str, statements: list[Statement]
    ) -> _Outcome | None:
        last: _Outcome | None = None
        with ctx.services.cursor(job.database) as cur:
            # TD_SCHEDULED_TIME() is the session time: Digdag's td> sends it as the job's
            td_udfs.prepare(cur, text, int(ctx.session_time.timestamp()))
            for i, statement in enumerate(statements):
                is_last = i == len(statements) - 1
                started = time.monotonic()
                outcome = self._run_one(ctx, cur, job, statement, (i, len(statements)), is_last)
                elapsed = time.monotonic() - started
                if outcome.written is not None:
                    ctx.log.info(f"{outcome.written} rows written in {elapsed:.2f}s")
                else:
                    ctx.log.info(
                        f"statement {i + 1} done in {elapsed:.2f}s ({outcome.count} result rows)"
                    )
                last = outcome
        return last

    def _run_one(
        self,
        ctx: OperatorContext,
        cur: duckdb.DuckDBPyConnection,
        job: _Job,
        statement: Statement,
        position: tuple[int, int],
        is_last: bool,
    ) -> _Outcome:
        try:
            translated = translate(statement.text, job.engine)
            self._log_sql(ctx, statement, translated, *position, job.origin)
            return self._execute(cur, job.database, translated, job.store_mode if is_last else None)
        except (duckdb.Error, ValueError) as e:
            if ctx.services.cancel_requested():
                raise TaskFailure("td>: query interrupted by a kill request") from None
            message = td_udfs.readable_error(str(e).strip())
            if job.writes:
                message += (
                    " (with create_table/insert_into, td> pastes the write command into "
                    "the query text, as Digdag does: see the statement above)"
                )
            at = where(job.origin, statement)
            ctx.log.error(f"{at}: {message}")
            raise TaskFailure(f"td>: {at}: {message}") from None

    def _stored(self, ctx: OperatorContext, job: _Job, last: _Outcome | None) -> StoreUpdate:
        td_store: dict[str, Any] = {
            "last_job_id": str(ctx.task_id),
            "last_job": {"id": str(ctx.task_id), "num_records": last.count if last else 0},
        }
        resets: list[tuple[str, ...]] = [("td", "last_job")]
        if job.store_mode:
            rows = last.records() if last else []
            first = rows[0] if rows else {}
            td_store["last_results"] = first if job.store_mode == "first" else rows
            resets.append(("td", "last_results"))
            ctx.log.info(f"stored td.last_results: {str(td_store['last_results'])[:500]}")
        return StoreUpdate({"td": td_store}, resets)

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
        store_mode: str | None,
    ) -> _Outcome:
        if translated.target:
            return _Outcome.written_rows(tables.write_rows(cur, database, translated))
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
        ctx.log.info(
            f"statement {i + 1}/{n} ({where(origin, statement)}), as run on DuckDB:\n"
            f"{_clipped(translated.sql)}"
        )
        if translated.note:
            ctx.log.warn(f"ran as written: {translated.note}")
