"""The phase-order gate: a stage's steps wait until the stage before it is done (the same
source's previous phase; for unification, every source's staging)."""

from __future__ import annotations

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import previous
from cdp_mcp.pipeline.rules.advice import next_action, next_call_words
from cdp_mcp.pipeline.rules.budget import require
from cdp_mcp.pipeline.rules.steps import not_runnable, phase_locked_by
from cdp_mcp.pipeline.state import PhaseState, PipelineState


def gate_refusal(
    cfg: PipelineConfig,
    state: PipelineState,
    stage: PhaseState,
    config_changed: bool,
    config_name: str,
) -> str | None:
    """Why work on `stage` is refused now (None: it may go on), with the next call."""
    refusal = not_runnable(state, config_changed, config_name)
    if refusal is not None:
        return refusal
    locked = phase_locked_by(state, stage, previous(stage.phase))
    if locked is None:
        return None
    return f"{locked}. {next_call_words(next_action(cfg, state))}."


def gate(
    cfg: PipelineConfig,
    state: PipelineState,
    stage: PhaseState,
    config_changed: bool,
    config_name: str,
) -> None:
    require(gate_refusal(cfg, state, stage, config_changed, config_name))
