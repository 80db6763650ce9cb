"""The backend a pipeline config asks for."""

from __future__ import annotations

from cdp_mcp.backends.base import Backend
from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.backends.treasuredata import TreasureDataBackend
from cdp_mcp.core.config import PipelineConfig


def make_backend(cfg: PipelineConfig) -> Backend:
    """`local` keeps its warehouse in the workspace; `treasuredata` talks to td_endpoint."""
    if cfg.global_.backend == "treasuredata":
        return TreasureDataBackend.from_config(cfg)
    extracts = cfg.source_dir if cfg.ingestion.connector != "file" else None
    return LocalBackend(cfg.workspace, storage=cfg.global_.local_storage, extracts_dir=extracts)
