"""`td_load>`: TD's data-connector load, run locally for the `file` connector only.

The config yml is templated with `${...}` like TD does. `in: {type: file}` reads the file
through `cdp_mcp.sources.select_sql` (the reader the generator used to learn the schema),
keeps rows whose parsed `incremental_field` lies in [from, to), adds TD's `time` column (unix
seconds of the load) and appends to (or replaces) the table, creating database and table
and adding new columns as TD's schema-on-write does. See docs/internals.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import yaml

from cdp_mcp.backends.local import tables
from cdp_mcp.backends.local.operators.base import (
    OperatorContext,
    OperatorResult,
    TaskFailure,
    as_bool,
    mapping,
)
from cdp_mcp.backends.local.timeparse import parse_bound, parsed_timestamp_sql
from cdp_mcp.digdag import expr
from cdp_mcp.sources import SourceError, quote_ident, select_sql


class TdLoadOperator:
    name: ClassVar[str] = "td_load"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        command = str(ctx.command or "")
        if not command:
            raise TaskFailure("td_load>: needs a load config file (td_load>: config/x_load.yml)")
        if not command.endswith((".yml", ".yaml")):
            raise TaskFailure(
                f"td_load>: {command!r} names a saved data connector; those run only on Treasure Data"
            )
        config = self._config(ctx, command)
        source = mapping(config.get("in"))
        kind = source.get("type")
        if kind != "file":
            raise TaskFailure(
                f"td_load>: the {kind!r} connector only runs on Treasure Data; the local backend "
                "loads `in: {type: file}` configs"
            )
        database = ctx.database()
        table = ctx.option("table")
        if not database or not table:
            raise TaskFailure("td_load>: needs `database:` and `table:`")
        out = mapping(config.get("out"))
        mode = str(out.get("mode") or "append")
        if mode not in ("append", "replace"):
            raise TaskFailure(
                f"td_load>: out.mode {mode!r} is not supported locally; use append or replace"
            )
        path = self._source_path(ctx, source)
        db, name = tables.split_table(str(table), str(database))
        started = time.monotonic()
        with ctx.services.cursor() as cur:
            try:
                tables.create_schema(cur, db)
                select, where = self._select(cur, path, source)
                loaded = f"SELECT src.*, CAST({int(time.time())} AS BIGINT) AS time FROM (\n{select}\n) AS src{where}"
                ctx.log.info(f"td_load>: {path} -> {db}.{name} ({mode}){where}")
                if mode == "replace":
                    rows = tables.create_table_as(cur, db, name, loaded)
                else:
                    rows = tables.append_by_name(cur, db, name, loaded)
            except SourceError as e:
                raise TaskFailure(f"td_load>: {e}") from None
            except (duckdb.Error, ValueError) as e:
                if ctx.services.cancel_requested():
                    raise TaskFailure("td_load>: load interrupted by a kill request") from None
                raise TaskFailure(
                    f"td_load>: loading {path.name} into {db}.{name} failed: {str(e).strip()}"
                ) from None
        ctx.log.info(f"{rows} rows loaded into {db}.{name} in {time.monotonic() - started:.2f}s")
        return OperatorResult()

    def _config(self, ctx: OperatorContext, command: str) -> dict[str, Any]:
        text = ctx.read_project_file(command, "td_load>")
        try:
            doc = yaml.safe_load(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark
            line = f":{mark.line + 1}" if mark else ""
            raise TaskFailure(f"td_load>: {command}{line}: invalid YAML: {e.problem}") from None
        if not isinstance(doc, dict):
            raise TaskFailure(f"td_load>: {command} must be a YAML mapping with `in:` and `out:`")
        try:
            return expr.evaluate_config(doc, ctx.config, skip=())
        except expr.ExprError as e:
            raise TaskFailure(f"td_load>: {command}: {e}") from None

    def _source_path(self, ctx: OperatorContext, source: dict[str, Any]) -> Path:
        raw = source.get("path")
        if not raw:
            raise TaskFailure("td_load>: in.path is required for the file connector")
        path = Path(str(raw)).expanduser()
        if not path.is_absolute():
            path = ctx.path(str(raw))
        if not path.is_file():
            raise TaskFailure(f"td_load>: source file {path} not found")
        return path

    def _select(
        self, cur: duckdb.DuckDBPyConnection, path: Path, source: dict[str, Any]
    ) -> tuple[str, str]:
        select, columns = select_sql(path)
        field = source.get("incremental_field")
        lower, upper = source.get("from"), source.get("to")
        if not field or (lower in (None, "") and upper in (None, "")):
            return select, ""
        by_name = {c.name: c for c in columns}
        if field not in by_name:
            raise TaskFailure(
                f"td_load>: incremental_field {field!r} is not a column of {path.name}"
            )
        parsed = parsed_timestamp_sql(quote_ident(str(field)), by_name[str(field)].type)
        conditions = []
        inclusive = as_bool(source.get("from_inclusive", True), "in.from_inclusive")
        try:
            if lower not in (None, ""):
                conditions.append(
                    f"{parsed} {'>=' if inclusive else '>'} {parse_bound(str(lower))}"
                )
            if upper not in (None, ""):
                conditions.append(f"{parsed} < {parse_bound(str(upper))}")
        except ValueError as e:
            raise TaskFailure(f"td_load>: {e}") from None
        return select, "\nWHERE " + " AND ".join(conditions)
