"""What the source files held, and which of their rows ingestion leaves out and why.

Only for connector `file`: its sources are files on this machine, so the rows a load skips
can be counted with the loader's own reader and timestamp forms. A TD connector's skipped
rows stay in the source system, where nothing here can count them.

A load takes rows whose incremental field parses to a time at or after `start_date`; the
others are counted as `before_start_date` or `unparseable_time`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

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

    Reads each file once, or, when it appends to a version counted before (source_memory),
    only the appended rows, adding their counts to the kept ones (blocking: call it from a
    worker thread).
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
            encoding = cfg.ingestion.encoding_of(obj)
            try:
                path = find_object_file(cfg.source_dir, obj)
                version = source_memory.Version.of(path)
                columns = select_sql(path, encoding=encoding)[1]
            except SourceError:
                continue  # the load itself reports a missing or unreadable file
            by_name = {c.name: c for c in columns}
            if field not in by_name:
                continue
            parsed = parsed_timestamp_sql(
                quote_ident(field), by_name[field].type, cfg.ingestion.time_formats
            )
            how = _How(quote_ident(field), parsed, start)
            facet = _facet(cfg, parsed)
            # (a parquet file is rewritten, not appended; a staged copy is a version of its own)
            kept = FORMATS.get(path.suffix.lower()) != "parquet" and reads_directly(path, encoding)
            counts = _as_counts(source_memory.recall(path, facet, version)) if kept else None
            if counts is None and kept:
                counts = _appended_counts(con, path, facet, how)
            if counts is None:
                counts = _counts(con, select_sql(path, encoding=encoding)[0], how)
            if kept:
                source_memory.remember(path, facet, list(counts), version)
                # what an incremental load needs to know it can skip the rows counted here
                latest = {"max_us": counts[4]}
                source_memory.remember(
                    path, source_memory.latest_time_facet(parsed), latest, version
                )
            total, before, unparsed, samples, _ = counts
            out[obj] = SourceRows(
                file=path.name,
                source_rows=total,
                before_start_date=before,
                unparseable_time=unparsed,
                field=field,
                unparseable_samples=[str(v)[:40] for v in samples],
            )
    return out


# rows, before start_date, unparseable, samples of those, the latest time (epoch µs)
_Counts = tuple[int, int, int, list[str], int | None]


def _facet(cfg: PipelineConfig, parsed: str) -> str:
    """The kept counts' name: they hold for this field, start_date and time forms only."""
    what = f"{cfg.ingestion.start_date}\0{parsed}"
    return "source_rows:" + hashlib.sha256(what.encode()).hexdigest()[:16]


class _How(NamedTuple):
    field: str  # quoted
    parsed: str  # the field parsed to a timestamp, as the loads parse it
    start: str  # start_date as a SQL timestamp


def _counts(con: duckdb.DuckDBPyConnection, select: str, how: _How) -> _Counts:
    row = con.execute(
        f"SELECT count(*), count_if(ts < {how.start}), count_if(ts IS NULL), epoch_us(max(ts)) "
        f"FROM (SELECT {how.parsed} AS ts FROM ({select}))"
    ).fetchone()
    total, before, unparsed, latest = row or (0, 0, 0, None)
    if not unparsed:  # every row's time parsed: no sample to find, no second read of the file
        return int(total or 0), int(before or 0), 0, [], _us(latest)
    samples = con.execute(
        f"SELECT DISTINCT CAST(v AS VARCHAR) FROM (SELECT {how.field} AS v, "
        f"{how.parsed} AS ts FROM ({select})) WHERE ts IS NULL AND v IS NOT NULL "
        f"ORDER BY 1 LIMIT {SAMPLES}"
    ).fetchall()
    texts = [str(v) for (v,) in samples]
    return int(total or 0), int(before or 0), int(unparsed or 0), texts, _us(latest)


def _us(value: object) -> int | None:
    return None if value is None else int(str(value))


def _as_counts(kept: object) -> _Counts | None:
    if not isinstance(kept, list) or len(kept) != 5:
        return None
    total, before, unparsed, samples, latest = kept
    return int(total), int(before), int(unparsed), [str(v) for v in samples], _us(latest)


def _appended_counts(
    con: duckdb.DuckDBPyConnection, path: Path, facet: str, how: _How
) -> _Counts | None:
    """The kept counts of the version `path` appends to, plus those of its new rows. The
    samples are the first SAMPLES distinct texts of both, as one query over all would give."""
    tail = source_memory.appended(path)
    before = _as_counts(tail.facts.get(facet)) if tail else None
    if tail is None or before is None:
        return None
    part = _counts(con, select_sql(path, read_from=tail.readable())[0], how)
    samples = sorted(set(before[3]) | set(part[3]))[:SAMPLES]
    latest = max((t for t in (before[4], part[4]) if t is not None), default=None)
    return before[0] + part[0], before[1] + part[1], before[2] + part[2], samples, latest
