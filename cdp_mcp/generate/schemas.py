"""Where a phase's input columns come from: the source files, or the backend's tables."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import get_args

import duckdb

from cdp_mcp.core import source_memory
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.file_source import (
    FORMATS,
    SourceError,
    find_object_file,
    read_schema,
    reads_directly,
    select_sql,
)
from cdp_mcp.core.phases import derive_schemas
from cdp_mcp.core.schema import Column, SchemaMap
from cdp_mcp.core.source_counts import rule_of
from cdp_mcp.core.value_shapes import SAMPLE_ROWS, Shape, sampled_shapes


def source_columns(cfg: PipelineConfig) -> dict[str, list[Column]]:
    """Columns of each object as a `file` load produces them; raises SourceError."""
    source_dir = cfg.source_dir
    if cfg.ingestion.connector != "file" or source_dir is None:
        raise SourceError(
            f"connector {cfg.ingestion.connector!r} has no local files to read columns from; "
            "run ingestion first so the columns come from the loaded tables"
        )
    rule = rule_of(cfg)  # the read proving the types counts the rows for the validation
    paths: dict[str, Path] = {}
    missing: SourceError | None = None
    for obj in cfg.ingestion.objects:
        try:
            paths[obj] = find_object_file(source_dir, obj)
        except SourceError as e:
            missing = e  # raised unless an object before it fails to read
            break

    def learn(obj: str) -> list[Column]:
        path, encoding = paths[obj], cfg.ingestion.encoding_of(obj)
        with source_memory.lock(path):  # (two objects of one file: learned in turn)
            columns = read_schema(path, encoding, counting=rule)
            shapes = _shapes_of(path, encoding)
        return [
            c.model_copy(update={"shape": shapes[c.name]}) if c.name in shapes else c
            for c in columns
        ]

    # The files are learned side by side: a rerun's work is mostly hashing the bytes a
    # file had (hashlib lets go of the GIL) and DuckDB reading another, not one core's.
    with ThreadPoolExecutor(max_workers=max(1, min(len(paths), _WORKERS))) as pool:
        learned = {obj: pool.submit(learn, obj) for obj in paths}
    out = {obj: future.result() for obj, future in learned.items()}  # the first error, in order
    if missing is not None:
        raise missing
    return out


_WORKERS = 4  # files learned at once (DuckDB's reads use every core already)


def _shapes_of(path: Path, encoding: str | None) -> dict[str, Shape]:
    stat = path.stat()
    return _cached_shapes(path.resolve(), stat.st_size, stat.st_mtime_ns, encoding)


@lru_cache(maxsize=64)
def _cached_shapes(path: Path, size: int, mtime_ns: int, encoding: str | None) -> dict[str, Shape]:
    """The value shapes of the file's text columns, cached per file version and kept across
    runs (source_memory). The sample is the file's first rows: a file that appends to a
    version whose sample was full, read by the same SELECT, has that version's shapes."""
    select, columns = select_sql(path, encoding=encoding)
    version = source_memory.Version.of(path)
    keeps = (
        FORMATS.get(path.suffix.lower()) != "parquet"
        and reads_directly(path, encoding)  # (a staged copy is a version of its own)
        and (version.size, version.mtime_ns) == (size, mtime_ns)
    )
    facet = "value_shapes:" + hashlib.sha256(f"{SAMPLE_ROWS}\0{select}".encode()).hexdigest()[:16]
    kept = _kept_shapes(path, facet, version) if keeps else None
    if kept is not None:
        shapes, rows = kept
    else:
        with duckdb.connect() as con:
            con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
            shapes, rows = sampled_shapes(con, select, columns)
    if keeps:
        source_memory.remember(path, facet, {"shapes": shapes, "rows": rows}, version)
    return shapes


def _kept_shapes(
    path: Path, facet: str, version: source_memory.Version
) -> tuple[dict[str, Shape], int | None] | None:
    """The shapes kept for this version, or for the version it appends to when that one's
    sample held SAMPLE_ROWS rows (so they are still the file's first) or no text column."""
    kept = source_memory.recall(path, facet, version)
    if kept is None:
        kept = source_memory.carried_sample(path, facet, SAMPLE_ROWS)
    if not isinstance(kept, dict) or not isinstance(kept.get("shapes"), dict):
        return None
    shapes = {str(k): v for k, v in kept["shapes"].items() if v in get_args(Shape)}
    rows = kept.get("rows")
    return shapes, int(rows) if rows is not None else None


def predicted_schemas(cfg: PipelineConfig) -> SchemaMap:
    """Every table of every phase, predicted from the source files (connector `file`)."""
    return derive_schemas(cfg, source_columns(cfg))
