"""The phase-order gate: a phase's steps wait until the phase before it is done."""

from __future__ import annotations

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import Phase, previous
from cdp_mcp.pipeline.rules.advice import next_action, next_call_words
from cdp_mcp.pipeline.rules.budget import require
from cdp_mcp.pipeline.rules.steps import not_runnable, phase_locked_by
from cdp_mcp.pipeline.state import PipelineState


def gate_refusal(
    cfg: PipelineConfig,
    state: PipelineState,
    phase: Phase,
    config_changed: bool,
    config_name: str,
) -> str | None:
    """Why work on `phase` is refused now (None: it may go on), with the next call."""
    refusal = not_runnable(state, config_changed, config_name)
    if refusal is not None:
        return refusal
    locked = phase_locked_by(state, phase, previous(phase))
    if locked is None:
        return None
    return f"{locked}. {next_call_words(next_action(cfg, state))}."


def gate(
    cfg: PipelineConfig,
    state: PipelineState,
    phase: Phase,
    config_changed: bool,
    config_name: str,
) -> None:
    require(gate_refusal(cfg, state, phase, config_changed, config_name))
