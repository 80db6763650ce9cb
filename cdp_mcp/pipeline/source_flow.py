"""What the source files held, and which of their rows ingestion leaves out and why.

Only for connector `file`: its sources are files on this machine, so the rows a load skips
can be counted with the loader's own reader and timestamp forms. A TD connector's skipped
rows stay in the source system, where nothing here can count them.

A load takes rows whose incremental field parses to a time at or after `start_date`; the
others are counted as `before_start_date` or `unparseable_time`.
"""

from __future__ import annotations

import duckdb
from pydantic import BaseModel

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.file_source import SourceError, find_object_file, select_sql
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.core.timeparse import parse_bound, parsed_timestamp_sql

SAMPLES = 3  # unparseable texts shown, so a person sees the form to fix


class SourceRows(BaseModel):
    file: str
    source_rows: int
    before_start_date: int
    unparseable_time: int  # the incremental field is empty or in no known timestamp form
    field: str = ""  # the incremental field
    unparseable_samples: list[str] = []  # a few distinct texts of it that did not parse

    @property
    def eligible(self) -> int:
        return self.source_rows - self.before_start_date - self.unparseable_time


def source_rows(cfg: PipelineConfig) -> dict[str, SourceRows]:
    """Per object, its file's rows as the loads see them; {} for a connector other than file.

    Reads each file once (blocking: call it from a worker thread).
    """
    if cfg.ingestion.connector != "file" or cfg.source_dir is None:
        return {}
    field = cfg.ingestion.incremental_field
    start = parse_bound(cfg.ingestion.start_date)
    out: dict[str, SourceRows] = {}
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        con.execute("SET TimeZone = 'UTC'")
        for obj in cfg.ingestion.objects:
            try:
                path = find_object_file(cfg.source_dir, obj)
                select, columns = select_sql(path, encoding=cfg.ingestion.encoding_of(obj))
            except SourceError:
                continue  # the load itself reports a missing or unreadable file
            by_name = {c.name: c for c in columns}
            if field not in by_name:
                continue
            parsed = parsed_timestamp_sql(
                quote_ident(field), by_name[field].type, cfg.ingestion.time_formats
            )
            row = con.execute(
                f"SELECT count(*), count_if(ts < {start}), count_if(ts IS NULL) "
                f"FROM (SELECT {parsed} AS ts FROM ({select}))"
            ).fetchone()
            total, before, unparsed = (int(v or 0) for v in row or (0, 0, 0))
            samples = con.execute(
                f"SELECT DISTINCT CAST(v AS VARCHAR) FROM (SELECT {quote_ident(field)} AS v, "
                f"{parsed} AS ts FROM ({select})) WHERE ts IS NULL AND v IS NOT NULL "
                f"ORDER BY 1 LIMIT {SAMPLES}"
            ).fetchall()
            out[obj] = SourceRows(
                file=path.name,
                source_rows=total,
                before_start_date=before,
                unparseable_time=unparsed,
                field=field,
                unparseable_samples=[str(v)[:40] for (v,) in samples],
            )
    return out
