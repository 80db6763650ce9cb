"""Which stage a call is about, and the config each stage runs with.

A stage is a per-source phase of one source (`ingestion:shop`) or unification. A tool call
names the source of a per-source phase when the pipeline has several; unification runs
over every source whose staging was not skipped.
"""

from __future__ import annotations

from cdp_mcp.core.config import PipelineConfig, TableRef
from cdp_mcp.core.phases import Phase, per_source, stage_config
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.state import PhaseState, PhaseStatus, PipelineState


def resolve_source(cfg: PipelineConfig, phase: Phase, source: str | None) -> str | None:
    """The stage's source: required for a per-source phase of several sources, the only
    one's by default, refused for unification (one stage over every source)."""
    names = cfg.source_names
    if not per_source(phase):
        if source is not None:
            raise PipelineError(
                f"{phase.value} is one stage over every source: call it without `source` "
                f"(got {source!r})"
            )
        return None
    if source is None:
        if len(names) == 1:
            return names[0]
        raise PipelineError(
            f"{phase.value} runs once per source and this pipeline has {len(names)}: give "
            f"`source`, one of: {', '.join(names)}"
        )
    if source not in names:
        raise PipelineError(
            f"source {source!r} is not in the config; its sources: {', '.join(names)}"
        )
    return source


def left_out(state: PipelineState) -> list[str]:
    """The sources unification leaves out: their staging was skipped (by a person's
    decision). A pipeline never leaves out every source: skipping the only staging runs
    unification on whatever staging holds, as a phase skip does."""
    skipped = [
        ps.source
        for ps in state.of_phase(Phase.STAGING)
        if ps.status is PhaseStatus.SKIPPED and ps.source is not None
    ]
    return skipped if len(skipped) < len(state.sources) else []


def unification_config(cfg: PipelineConfig, leave_out: list[str]) -> PipelineConfig:
    """The config unification is generated and validated with: without the sources it
    leaves out (their tables named in hist_union / unification dropped too)."""
    if not leave_out or cfg.sources_ is None:
        return cfg
    kept = [s for s in cfg.sources_ if s.source_name not in leave_out]

    def kept_table(table: str) -> bool:
        return cfg.source_of_table(TableRef.parse(table).table) not in leave_out

    hist_tables = cfg.hist_union.tables
    unif_tables = cfg.unification.tables
    return cfg.model_copy(
        update={
            "sources_": kept,
            "hist_union": cfg.hist_union.model_copy(
                update={
                    "tables": None
                    if hist_tables is None
                    else [t for t in hist_tables if kept_table(t)]
                }
            ),
            "unification": cfg.unification.model_copy(
                update={
                    "tables": None
                    if unif_tables is None
                    else [t for t in unif_tables if kept_table(t.table)]
                }
            ),
        }
    )


def config_of(cfg: PipelineConfig, state: PipelineState, ps: PhaseState) -> PipelineConfig:
    """The config stage `ps` is generated, pushed, run and validated with."""
    if per_source(ps.phase):
        return stage_config(cfg, ps.phase, ps.source)
    return unification_config(cfg, left_out(state))
