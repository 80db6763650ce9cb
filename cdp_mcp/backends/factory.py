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
    # A TD connector's dry-run extracts: the first such source's (a start points the
    # backend at its own source's: pipeline.starting)
    extracts = next((cfg.source_dir_of(s) for s in cfg.sources if s.connector != "file"), None)
    return LocalBackend(cfg.workspace, storage=cfg.global_.local_storage, extracts_dir=extracts)
