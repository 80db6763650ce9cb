"""Render each phase's Digdag project from the config and the input tables' schemas."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from cdp_mcp.config import PipelineConfig
from cdp_mcp.generate.writer import GenerationError, write_project
from cdp_mcp.phases import Phase, workflows
from cdp_mcp.schema import SchemaMap

__all__ = ["GeneratedProject", "GenerationError", "generate", "render_phase"]


class GeneratedProject(BaseModel):
    phase: Phase
    directory: Path
    files: list[str]
    workflows: list[str]
    secrets: list[str] = []


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


def generate(cfg: PipelineConfig, phase: Phase, schemas: SchemaMap) -> GeneratedProject:
    files = render_phase(cfg, phase, schemas)
    directory = write_project(cfg.workspace, phase.value, files)
    return GeneratedProject(
        phase=phase,
        directory=directory,
        files=sorted(files),
        workflows=workflows(cfg, phase),
        secrets=referenced_secrets(files),
    )
