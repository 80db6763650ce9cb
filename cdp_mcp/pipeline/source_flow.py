"""What the source files held, and which of their rows ingestion leaves out and why.

Only for connector `file`: its sources are files on this machine, so the rows a load skips
can be counted with the loader's own reader and timestamp forms. A TD connector's skipped
rows stay in the source system, where nothing here can count them.

A load takes rows whose incremental field parses to a time at or after `start_date`; the
others are counted as `before_start_date` or `unparseable_time`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from pydantic import BaseModel

from cdp_mcp.core import source_memory
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.file_source import (
    FORMATS,
    SourceError,
    find_object_file,
    reads_directly,
    select_sql,
)
from cdp_mcp.core.source_counts import Counting, Counts, added, rule_of


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

    Reads each file once, or, when it appends to a version counted before (source_memory),
    only the appended rows, adding their counts to the kept ones; nothing when the counts
    of this version are kept (generation's proof of the types counts them on its way;
    core/source_counts.py). Blocking: call it from a worker thread.
    """
    if cfg.ingestion.connector != "file" or cfg.source_dir is None:
        return {}
    rule = rule_of(cfg)
    out: dict[str, SourceRows] = {}
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        con.execute("SET TimeZone = 'UTC'")
        for obj in cfg.ingestion.objects:
            encoding = cfg.ingestion.encoding_of(obj)
            try:
                path = find_object_file(cfg.source_dir, obj)
                version = source_memory.Version.of(path)
                columns = select_sql(path, encoding=encoding)[1]
            except SourceError:
                continue  # the load itself reports a missing or unreadable file
            counting = Counting.of(rule, columns)
            if counting is None:
                continue
            # (a parquet file is rewritten, not appended; a staged copy is a version of its own)
            kept = FORMATS.get(path.suffix.lower()) != "parquet" and reads_directly(path, encoding)
            counts = counting.recall(path, version) if kept else None
            if counts is None and kept:
                counts = _appended_counts(con, path, counting)
            if counts is None:
                counts = counting.count_rows(con, select_sql(path, encoding=encoding)[0])
            if kept:
                counting.remember(path, version, counts)
            out[obj] = SourceRows(
                file=path.name,
                source_rows=counts.rows,
                before_start_date=counts.before_start,
                unparseable_time=counts.unparsed,
                field=rule.field,
                unparseable_samples=[str(v)[:40] for v in counts.samples],
            )
    return out


def _appended_counts(
    con: duckdb.DuckDBPyConnection, path: Path, counting: Counting
) -> Counts | None:
    """The kept counts of the version `path` appends to, plus those of its new rows."""
    tail = source_memory.appended(path)
    if tail is None:
        return None
    before = counting.recall_before(tail)
    if before is None:
        return None
    return added(before, counting.count_rows(con, select_sql(path, read_from=tail.readable())[0]))
