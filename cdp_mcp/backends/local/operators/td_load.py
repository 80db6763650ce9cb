"""`td_load>`: TD's data-connector load, run locally.

The config yml is templated with `${...}` like TD does. `in: {type: file}` reads the file
(in `in.encoding` when it is not UTF-8; core/text_source.py)
through `cdp_mcp.core.file_source.select_sql` (the reader the generator used to learn the schema),
keeps rows whose parsed `incremental_field` lies in [from, to), adds TD's `time` column (unix
seconds of the load) and appends to (or replaces) the table, creating database and table
and adding new columns as TD's schema-on-write does. See docs/internals.md.

A TD connector of the catalog (cdp_mcp/core/connectors.py) dry-runs: the object's extract in the
backend's extracts folder (ingestion.source_path), shaped as the connector delivers it,
stands in for the connector's answer. A connector with `from`/`to` fields gets only the
rows of its column between them, as it would on TD; one that filters inside a query or
condition (or reads whole files) gets every row, and the workflow's range SQL keeps the
range either way.
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
from cdp_mcp.core.connectors import Connector
from cdp_mcp.core.connectors import get as catalog_connector
from cdp_mcp.core.file_source import (
    SourceError,
    empty_select,
    find_object_file,
    none_in_range,
    rows_after_only,
    select_sql,
)
from cdp_mcp.core.schema import Column
from cdp_mcp.core.text_source import explain
from cdp_mcp.core.timeparse import range_where
from cdp_mcp.digdag import expr


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
        connector = catalog_connector(str(kind)) if kind != "file" else None
        if kind != "file" and (connector is None or ctx.services.extracts_dir is None):
            raise TaskFailure(
                f"td_load>: the {kind!r} connector only runs on Treasure Data; the local backend "
                "loads `in: {type: file}` configs"
                + (
                    " and dry-runs a catalog connector on the extracts in ingestion.source_path "
                    "(run it through the pipeline, e.g. `cdp-mcp run`)"
                    if connector is not None
                    else ""
                )
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
        path = (
            self._extract_path(ctx, connector, source)
            if connector is not None
            else self._source_path(ctx, source)
        )
        db, name = tables.split_table(str(table), str(database))
        started = time.monotonic()
        with ctx.services.cursor() as cur:
            try:
                tables.create_schema(cur, db)
                if connector is not None:
                    select, where = self._connector_select(ctx, path, connector, source)
                else:
                    select, where = self._select(ctx, cur, path, source)
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
                    f"td_load>: loading {path.name} into {db}.{name} failed: {explain(str(e))}"
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
        self,
        ctx: OperatorContext,
        cur: duckdb.DuckDBPyConnection,
        path: Path,
        source: dict[str, Any],
    ) -> tuple[str, str]:
        encoding = source.get("encoding")
        select, columns = select_sql(path, encoding=str(encoding) if encoding else None)
        inclusive = as_bool(source.get("from_inclusive", True), "in.from_inclusive")
        formats = source.get("time_formats") or []
        if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
            raise TaskFailure("td_load>: in.time_formats must be a list of texts")
        field, lower, upper = source.get("incremental_field"), source.get("from"), source.get("to")
        where = _range_where(path, columns, field, lower, upper, inclusive, formats)
        if where:
            # what the file's kept facts say of the range: no row of it can be there
            why = none_in_range(
                cur,
                path,
                columns,
                str(field),
                str(lower or ""),
                str(upper or ""),
                inclusive,
                formats,
            )
            if why is not None:
                ctx.log.info(f"td_load>: {path.name}: {why}; nothing to read")
                return empty_select(columns), ""
        if where and not encoding:
            # an appended file whose older rows are all before the range: read the new rows
            tail = rows_after_only(
                cur, path, columns, str(field), str(lower or ""), inclusive, formats
            )
            if tail is not None:
                select = select_sql(path, read_from=tail.readable())[0]
                bytes_read = tail.raw.stat().st_size
                ctx.log.info(
                    f"td_load>: {path.name}: its rows up to byte {tail.old_size} all precede "
                    f"the range; reading the {bytes_read} bytes appended after them"
                )
        return select, where

    def _extract_path(
        self, ctx: OperatorContext, connector: Connector, source: dict[str, Any]
    ) -> Path:
        """`{extracts}/{object}.<format>`: the object is the workflow's datasource, else the
        connector's object field."""
        folder = ctx.services.extracts_dir
        assert folder is not None
        obj = mapping(ctx.config.get("datasource")).get("name")
        if not obj and connector.object_field:
            obj = source.get(connector.object_field)
        if not obj:
            raise TaskFailure(
                f"td_load>: cannot tell which object this {connector.type} load is (no "
                "datasource.name in the workflow)"
            )
        try:
            return find_object_file(folder, str(obj), connector.extract_formats)
        except SourceError as e:
            raise TaskFailure(
                f"td_load>: dry run of TD's {connector.type} connector: {e} "
                f"({connector.shape(str(obj), source)})"
            ) from None

    def _connector_select(
        self, ctx: OperatorContext, path: Path, connector: Connector, source: dict[str, Any]
    ) -> tuple[str, str]:
        select, columns = select_sql(path, names_as="lower")
        r = connector.range
        if r.style != "fields":
            ctx.log.info(
                f"td_load>: dry run of {connector.type}: every row of {path.name} (on TD the "
                + ("range is in its query" if r.style != "none" else "connector reads it whole")
                + "; the workflow keeps the range)"
            )
            return select, ""
        table_field = mapping(ctx.config.get("datasource")).get("incremental_field")
        field = source.get(r.column_field or "") or table_field
        if field not in {c.name for c in columns}:  # the API's name for the table's column
            field = table_field
        lower = source.get(r.from_field or "")
        upper = source.get(r.to_field or "") if r.to_field else None
        ctx.log.info(
            f"td_load>: dry run of {connector.type} on {path.name}: {field} from {lower!r}"
            + (f" to {upper!r}" if r.to_field else "")
        )
        return select, _range_where(path, columns, field, lower, upper, True)


def _range_where(
    path: Path,
    columns: list[Column],
    field: Any,
    lower: Any,
    upper: Any,
    inclusive: bool,
    formats: list[str] | None = None,
) -> str:
    try:
        return range_where(path.name, columns, field, lower, upper, inclusive, formats or ())
    except ValueError as e:
        raise TaskFailure(f"td_load>: {e}") from None
