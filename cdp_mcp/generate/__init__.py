"""Render each phase's Digdag project from the config and the input tables' schemas."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import Phase, project_folder, workflows
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.core.workspace import WorkspaceError, check_workspace
from cdp_mcp.generate.writer import GenerationError, kept_folder, write_project

__all__ = ["GeneratedProject", "GenerationError", "generate", "render_phase"]


class GeneratedProject(BaseModel):
    phase: Phase
    directory: Path
    files: list[str]
    workflows: list[str]
    secrets: list[str] = []
    kept_aside: str | None = None  # where files that were not cdp-mcp's were moved


Renderer = Callable[[PipelineConfig, SchemaMap], dict[str, str]]


def _renderer(phase: Phase) -> Renderer:
    # Imported lazily so one phase's template problem does not break the others.
    module = importlib.import_module(f"cdp_mcp.generate.{phase.value}")
    render: Renderer = module.render
    return render


def render_phase(cfg: PipelineConfig, phase: Phase, schemas: SchemaMap) -> dict[str, str]:
    """The project's files (relative path -> text); deterministic for the same inputs."""
    return _renderer(phase)(cfg, schemas)


def referenced_secrets(files: dict[str, str]) -> list[str]:
    found = set()
    for text in files.values():
        found.update(re.findall(r"\$\{secret:([A-Za-z0-9_.\-]+)\}", text))
    return sorted(found)


def generate(
    cfg: PipelineConfig, phase: Phase, schemas: SchemaMap, keep_aside: bool = False
) -> GeneratedProject:
    """Render and write the phase's project; with `keep_aside`, files in its folder that are
    not cdp-mcp's (or were edited) are moved under `.cdp_state/kept/` instead of refused."""
    files = render_phase(cfg, phase, schemas)
    try:
        check_workspace(cfg.workspace)
    except WorkspaceError as e:
        raise GenerationError(str(e)) from None
    folder = project_folder(cfg, phase)  # `{source}_{phase}`: cfg is a source's view
    keep = kept_folder(cfg.workspace, folder) if keep_aside else None
    directory = write_project(cfg.workspace, folder, files, keep_aside=keep)
    return GeneratedProject(
        phase=phase,
        directory=directory,
        files=sorted(files),
        workflows=workflows(cfg, phase),
        secrets=referenced_secrets(files),
        kept_aside=str(keep) if keep is not None and keep.exists() else None,
    )
