"""The input schemas a phase is generated (and validated) against.

Connector `file`: predicted from the source files, so every phase can be generated before
anything ran. Other connectors: the columns of the tables ingestion actually loaded, read
from the backend (TD's table list), then carried through the same derivation.
"""

from __future__ import annotations

import anyio

from cdp_mcp.backends.base import Backend, BackendError
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.file_source import SourceError
from cdp_mcp.core.phases import Phase, derive_schemas
from cdp_mcp.core.schema import Column, SchemaMap
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.models import PipelineError


async def phase_schemas(
    cfg: PipelineConfig, backend: Backend, phase: Phase, for_validation: bool = False
) -> SchemaMap:
    """`cfg`: a one-source view for a per-source phase; for unification, the schemas of
    every source's tables."""
    if len(cfg.sources) > 1:
        out: SchemaMap = {}
        for name in cfg.source_names:
            out.update(await phase_schemas(cfg.for_source(name), backend, phase, for_validation))
        return out
    if cfg.ingestion.connector == "file":
        try:  # reads the source files: off the event loop
            return await anyio.to_thread.run_sync(predicted_schemas, cfg)
        except SourceError as e:
            raise PipelineError(f"ingestion.source_path: {e}") from None
    if phase is Phase.INGESTION and not for_validation:
        return {}  # a TD connector's load needs no column list
    return derive_schemas(cfg, await _loaded_columns(cfg, backend))


async def _loaded_columns(cfg: PipelineConfig, backend: Backend) -> dict[str, list[Column]]:
    try:
        tables = {t.name: t for t in await backend.tables(cfg.src_db)}
    except BackendError as e:
        raise PipelineError(
            f"the columns of connector {cfg.ingestion.connector!r} come from the tables "
            f"ingestion loaded, and {cfg.src_db} has none yet ({e}): run and validate "
            "ingestion first"
        ) from None
    sources: dict[str, list[Column]] = {}
    for obj in cfg.ingestion.objects:
        base = f"{cfg.source}_{obj}"
        info = tables.get(base) or tables.get(f"{base}_hist")
        if info is None:
            raise PipelineError(
                f"{cfg.src_db}.{base} does not exist yet: run and validate ingestion first"
            )
        sources[obj] = [c for c in info.columns if c.name != "time"]
    return sources
