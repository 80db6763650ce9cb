"""Connector `file` on Treasure Data: each object's range of the local file, uploaded into its
landing table with TD's bulk import before the ingestion attempt starts.

TD's servers cannot read this machine's files, so the generated workflow appends each
object's range from `{table}_landing` (queries/load_landing.sql) instead of running
`td_load>` on a path. The range uploaded is the one the workflow will read: the project's
own `queries/{hist,inc}_bounds.sql`, templated as Digdag templates it (the datasource entry
of `config/{source}_datasources.yml`, the session time the attempt will have) and run on TD
against the ingestion log (`cdp_mcp_ingestion_log`). The rows are read with the local loader's reader and timestamp
forms, so TD receives exactly the rows the local backend would load. The landing table is
emptied first, so it holds this upload only, whatever an interrupted earlier upload left;
the workflow's own range filter, `clear_range` and logging keep their exactly-once
semantics (docs/internals.md "Ingestion semantics" and "Connector file on Treasure Data").
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import duckdb
import yaml

from cdp_mcp.backends.base import Backend, BackendError, BulkImporter
from cdp_mcp.backends.local.params import session_builtins
from cdp_mcp.backends.td.bulk_import import PART_RECORDS, pack_part
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.file_source import SourceError, find_object_file, select_sql
from cdp_mcp.core.phases import Phase, project_folder
from cdp_mcp.core.schema import Column, presto_type
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.core.timeparse import range_where
from cdp_mcp.digdag import expr

log = logging.getLogger(__name__)
# TD's column names are at most 128 characters (treasure-boxes' rename filter cuts there).
MAX_COLUMN_NAME = 128


class UploadError(BackendError):
    """The upload could not be done; the message says what to fix."""


@dataclass(frozen=True)
class ObjectUpload:
    object: str
    landing_table: str
    range_start: str
    range_end: str
    from_inclusive: bool
    rows: int

    def describe(self) -> str:
        end = self.range_end or "no upper bound"
        start = ("from " if self.from_inclusive else "after ") + self.range_start
        return f"{self.object}: {self.rows} rows ({start}, to {end}) -> {self.landing_table}"


def workflow_kind(cfg: PipelineConfig, workflow: str) -> str:
    kind = workflow.removeprefix(f"{cfg.source}_ingest_")
    if kind not in ("hist", "inc"):
        raise UploadError(f"{workflow} is not an ingestion workflow of source {cfg.source}")
    return kind


async def upload_ranges(
    cfg: PipelineConfig, backend: Backend, workflow: str, session_time: datetime
) -> list[ObjectUpload]:
    """Upload every object's range for the attempt of `workflow` at `session_time`."""
    if not isinstance(backend, BulkImporter):
        raise UploadError(
            f"the {cfg.global_.backend} backend has no bulk import; connector `file` on it "
            "cannot reach the warehouse"
        )
    kind = workflow_kind(cfg, workflow)
    project = cfg.workspace / project_folder(cfg, Phase.INGESTION)
    entries = _datasources(project, cfg, kind)
    params = session_builtins(
        session_time,
        "UTC",  # the generated workflows' `timezone:`
        session_id=0,
        attempt_id=0,
        session_uuid="",
        project_id=0,
        retry_attempt_name=None,
    )
    await backend.ensure_database(cfg.src_db)
    # V8 (mini-racer) refuses a timed evaluation on an event loop's thread
    create_log = await anyio.to_thread.run_sync(_sql, project, "create_ingestion_log", params)
    await backend.query(create_log, cfg.src_db)
    done = []
    for entry in entries:
        task_params = {**params, "datasource": entry, "td": {"database": cfg.src_db}}
        sql = await anyio.to_thread.run_sync(_sql, project, f"{kind}_bounds", task_params)
        bounds = await backend.query(sql, cfg.src_db)
        if len(bounds.rows) != 1:
            raise UploadError(f"{kind}_bounds.sql gave {len(bounds.rows)} rows for {entry['name']}")
        found = dict(zip(bounds.columns, bounds.rows[0], strict=True))
        upload = await _upload_object(cfg, backend, entry, found)
        log.info("ingestion upload: %s", upload.describe())
        done.append(upload)
    return done


def _datasources(project: Path, cfg: PipelineConfig, kind: str) -> list[dict[str, Any]]:
    path = project / "config" / f"{cfg.source}_datasources.yml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UploadError(f"cannot read {path}: {e}; generate the ingestion phase again") from None
    entries = doc.get(f"{kind}_datasources") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and e.get("landing_table") for e in entries
    ):
        raise UploadError(
            f"{path} lists no landing tables: the project was not generated for Treasure Data; "
            "generate the ingestion phase again"
        )
    return entries


def _sql(project: Path, name: str, params: dict[str, Any]) -> str:
    path = project / "queries" / f"{name}.sql"
    try:
        return expr.render(path.read_text(encoding="utf-8"), params)
    except (OSError, expr.ExprError) as e:
        raise UploadError(f"cannot template {path}: {e}") from None


async def _upload_object(
    cfg: PipelineConfig, backend: BulkImporter, entry: dict[str, Any], bounds: dict[str, Any]
) -> ObjectUpload:
    obj, landing = str(entry["name"]), str(entry["landing_table"])
    start, end = str(bounds.get("range_start") or ""), str(bounds.get("range_end") or "")
    inclusive = str(bounds.get("from_inclusive")) == "true"
    folder = Path(tempfile.mkdtemp(prefix="cdp-upload-"))
    try:
        parts, rows, columns = await anyio.to_thread.run_sync(
            _write_parts, cfg, obj, start, inclusive, end, folder
        )
        # Emptied by dropping it, then created with the file's columns, so even an empty
        # range gives the object's table every column (as a local td_load> does).
        await backend.drop_table(cfg.src_db, landing)
        await backend.query(_create_sql(cfg.src_db, landing, columns), cfg.src_db)
        if parts:
            session = f"cdp_{landing}_{uuid.uuid4().hex[:12]}"[:255]
            await backend.bulk_import(session, cfg.src_db, landing, _read(parts))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ObjectUpload(obj, landing, start, end, inclusive, rows)


def _read(parts: list[Path]) -> Iterator[bytes]:
    for part in parts:
        yield part.read_bytes()


def _create_sql(database: str, table: str, columns: list[Column]) -> str:
    cols = [f"{quote_ident(c.name)} {presto_type(c.type)}" for c in columns]
    return (
        f"CREATE TABLE {quote_ident(database)}.{quote_ident(table)} "
        f"({', '.join([*cols, 'time bigint'])})"
    )


def _write_parts(
    cfg: PipelineConfig, obj: str, start: str, inclusive: bool, end: str, folder: Path
) -> tuple[list[Path], int, list[Column]]:
    """The object's rows in the range as msgpack.gz parts in `folder`; (parts, rows, columns)."""
    assert cfg.source_dir is not None  # the config requires it for connector file
    try:
        path = find_object_file(cfg.source_dir, obj)
        select, columns = select_sql(path, encoding=cfg.ingestion.encoding_of(obj))
        where = range_where(
            path.name,
            columns,
            cfg.ingestion.incremental_field,
            start,
            end,
            inclusive,
            cfg.ingestion.time_formats,
        )
    except (SourceError, ValueError) as e:
        raise UploadError(f"ingestion.source_path: {e}") from None
    names = [c.name for c in columns]
    loaded_at = int(time.time())  # TD's `time`: the upload time, as the local td_load> does
    parts: list[Path] = []
    rows = 0
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        cur = con.execute(f"SELECT * FROM ({select}) AS src{where}")
        while batch := cur.fetchmany(PART_RECORDS):
            records = [{**dict(zip(names, r, strict=True)), "time": loaded_at} for r in batch]
            part = folder / f"part{len(parts):05d}.msgpack.gz"
            part.write_bytes(pack_part(records))
            parts.append(part)
            rows += len(records)
    return parts, rows, columns


def upload_problems(cfg: PipelineConfig) -> list[str]:
    """What init_pipeline refuses before anything runs (a person fixes the files)."""
    if cfg.source_dir is None:
        return []
    problems = []
    for obj in cfg.ingestion.objects:
        try:
            path = find_object_file(cfg.source_dir, obj)
            columns = select_sql(path, encoding=cfg.ingestion.encoding_of(obj))[1]
        except SourceError as e:
            problems.append(f"ingestion.source_path: {e}")
            continue
        long = [c.name for c in columns if len(c.name) > MAX_COLUMN_NAME]
        if long:
            problems.append(
                f"ingestion.source_path: {obj}: column names longer than {MAX_COLUMN_NAME} "
                f"characters cannot be uploaded to TD ({', '.join(n[:40] + '...' for n in long)}); "
                "shorten them in the file"
            )
    return problems
