"""Where a phase's input columns come from: the source files, or the backend's tables."""

from __future__ import annotations

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.file_source import SourceError, find_object_file, read_schema
from cdp_mcp.core.phases import derive_schemas
from cdp_mcp.core.schema import Column, SchemaMap


def source_columns(cfg: PipelineConfig) -> dict[str, list[Column]]:
    """Columns of each object as a `file` load produces them; raises SourceError."""
    source_dir = cfg.source_dir
    if cfg.ingestion.connector != "file" or source_dir is None:
        raise SourceError(
            f"connector {cfg.ingestion.connector!r} has no local files to read columns from; "
            "run ingestion first so the columns come from the loaded tables"
        )
    return {
        obj: read_schema(find_object_file(source_dir, obj), cfg.ingestion.encoding_of(obj))
        for obj in cfg.ingestion.objects
    }


def predicted_schemas(cfg: PipelineConfig) -> SchemaMap:
    """Every table of every phase, predicted from the source files (connector `file`)."""
    return derive_schemas(cfg, source_columns(cfg))
