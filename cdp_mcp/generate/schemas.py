"""Where a phase's input columns come from: the source files, or the backend's tables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import duckdb

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.file_source import SourceError, find_object_file, read_schema, select_sql
from cdp_mcp.core.phases import derive_schemas
from cdp_mcp.core.schema import Column, SchemaMap
from cdp_mcp.core.source_counts import rule_of
from cdp_mcp.core.value_shapes import Shape, sample_shapes


def source_columns(cfg: PipelineConfig) -> dict[str, list[Column]]:
    """Columns of each object as a `file` load produces them; raises SourceError."""
    source_dir = cfg.source_dir
    if cfg.ingestion.connector != "file" or source_dir is None:
        raise SourceError(
            f"connector {cfg.ingestion.connector!r} has no local files to read columns from; "
            "run ingestion first so the columns come from the loaded tables"
        )
    out = {}
    rule = rule_of(cfg)  # the read proving the types counts the rows for the validation
    for obj in cfg.ingestion.objects:
        path = find_object_file(source_dir, obj)
        encoding = cfg.ingestion.encoding_of(obj)
        columns = read_schema(path, encoding, counting=rule)
        shapes = _shapes_of(path, encoding)
        out[obj] = [
            c.model_copy(update={"shape": shapes[c.name]}) if c.name in shapes else c
            for c in columns
        ]
    return out


def _shapes_of(path: Path, encoding: str | None) -> dict[str, Shape]:
    stat = path.stat()
    return _cached_shapes(path.resolve(), stat.st_size, stat.st_mtime_ns, encoding)


@lru_cache(maxsize=64)
def _cached_shapes(path: Path, size: int, mtime_ns: int, encoding: str | None) -> dict[str, Shape]:
    """The value shapes of the file's text columns, cached per file version."""
    select, columns = select_sql(path, encoding=encoding)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        return sample_shapes(con, select, columns)


def predicted_schemas(cfg: PipelineConfig) -> SchemaMap:
    """Every table of every phase, predicted from the source files (connector `file`)."""
    return derive_schemas(cfg, source_columns(cfg))
