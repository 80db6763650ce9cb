"""The stages a report walks, and the config each ran with.

A stage is a phase of one source (ingestion, hist_union, staging) or the unification over
every source. The reports reach the state's stages only through these functions, which
read the per-source state (pipeline/state.py) and the stage configs (pipeline/stages.py).
"""

from __future__ import annotations

from typing import Any

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import PER_SOURCE, Phase, project_folder
from cdp_mcp.pipeline.stages import unification_config
from cdp_mcp.pipeline.state import PhaseState, PipelineState


def stages(state: PipelineState) -> list[PhaseState]:
    """Every stage in run order: each source's phases in config order, then unification."""
    return state.ordered()


def stage_source(ps: PhaseState) -> str | None:
    """The source of a per-source stage (None: unification's)."""
    return ps.source


def stage_config(cfg: PipelineConfig, ps: PhaseState) -> PipelineConfig:
    """The config the stage was generated and run with (a source's view, or the whole)."""
    return cfg.for_source(ps.source) if ps.source is not None else cfg


def stage_of(state: PipelineState, phase: Phase, source: str | None) -> PhaseState:
    """The stage of `phase` for `source` (ignored for unification)."""
    return state.phase(phase, source if phase in PER_SOURCE else None)


def stage_label(ps: PhaseState) -> str:
    """`ingestion (crm)` for a source's stage, `unification`."""
    source = stage_source(ps)
    return ps.phase.value if source is None else f"{ps.phase.value} ({source})"


def stage_metrics(ps: PhaseState) -> dict[str, Any]:
    """The metrics the stage's last validation kept ({} before it validated)."""
    return dict((ps.validation or {}).get("metrics") or {})


def source_metrics(state: PipelineState, phase: Phase, source: str | None) -> dict[str, Any]:
    """The metrics of `phase`'s stage of `source` ({} for a source the state lacks)."""
    if phase in PER_SOURCE and source not in state.sources:
        return {}
    return stage_metrics(stage_of(state, phase, source))


def config_stages(cfg: PipelineConfig) -> list[tuple[Phase, PipelineConfig]]:
    """Every stage the config makes, in run order, with the config it runs with: each
    source's phases (its view), then unification (the whole)."""
    out = [(p, cfg.for_source(name)) for name in cfg.source_names for p in PER_SOURCE]
    return [*out, (Phase.UNIFICATION, unification_config(cfg, []))]


def stage_folder(view: PipelineConfig, phase: Phase) -> str:
    """The workspace folder of a stage's project (`view`: its config_stages config)."""
    return project_folder(view, phase)
