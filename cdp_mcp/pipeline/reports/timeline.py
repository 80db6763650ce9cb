"""How long each phase took, against the expected timeline of a CDP build on TD.

The estimates come from TD's cdp-orchestrator README (treasure-data/aps_claude_tools, plugin
cdp-orchestrator, "Estimated Timeline" and "Phase Details": execution ranges per phase on
TD). They are a yardstick a consultant already knows, not a target this tool sets: the
embedded backend on a sample finishes in seconds, TD with production volumes in hours.
"""

from __future__ import annotations

from pydantic import BaseModel

from cdp_mcp.core.phases import Phase
from cdp_mcp.pipeline.nextstep import execute_step
from cdp_mcp.pipeline.reports.facts import phase_seconds
from cdp_mcp.pipeline.reports.stages import stage_label, stage_source, stages
from cdp_mcp.pipeline.state import PhaseState, PipelineState

EXPECTED_SOURCE = "TD's cdp-orchestrator README (Estimated Timeline, Phase Details)"
EXPECTED_TOTAL = "3-4 hours"


class PhaseEstimate(BaseModel):
    estimate_minutes: int  # the phase as a whole
    execution_minutes: tuple[int, int]  # the workflow run alone, low to high


EXPECTED_TIMELINE: dict[Phase, PhaseEstimate] = {
    Phase.INGESTION: PhaseEstimate(estimate_minutes=60, execution_minutes=(15, 60)),
    Phase.HIST_UNION: PhaseEstimate(estimate_minutes=30, execution_minutes=(10, 30)),
    Phase.STAGING: PhaseEstimate(estimate_minutes=45, execution_minutes=(20, 45)),
    Phase.UNIFICATION: PhaseEstimate(estimate_minutes=90, execution_minutes=(30, 90)),
}


class PhaseTiming(BaseModel):
    phase: str
    seconds: float | None  # first step started to last step finished
    workflow_seconds: float | None  # the workflow runs alone, summed
    estimate_minutes: int
    execution_minutes: tuple[int, int]
    share_of_estimate: float | None  # seconds / the expected estimate for the phase
    against_range: str  # the workflow time against the expected execution range


def _workflow_seconds(ps: PhaseState) -> float | None:
    spans = [
        (s.finished_at - s.started_at).total_seconds()
        for w in ps.workflows
        if (s := ps.steps.get(execute_step(w))) and s.started_at and s.finished_at
    ]
    return sum(spans) if spans else None


def _against(seconds: float | None, low_high: tuple[int, int]) -> str:
    if seconds is None:
        return "not run"
    low, high = (m * 60 for m in low_high)
    if seconds < low:
        return "faster than the range"
    return "within the range" if seconds <= high else "slower than the range"


def phase_timing(ps: PhaseState) -> PhaseTiming:
    expected = EXPECTED_TIMELINE[ps.phase]
    seconds = phase_seconds(ps)
    workflows = _workflow_seconds(ps)
    return PhaseTiming(
        phase=stage_label(ps),
        seconds=seconds,
        workflow_seconds=workflows,
        estimate_minutes=expected.estimate_minutes,
        execution_minutes=expected.execution_minutes,
        share_of_estimate=None if seconds is None else seconds / (expected.estimate_minutes * 60),
        against_range=_against(workflows, expected.execution_minutes),
    )


def timeline(state: PipelineState) -> list[PhaseTiming]:
    return [phase_timing(ps) for ps in stages(state)]


def total_seconds(timings: list[PhaseTiming]) -> float | None:
    known = [t.seconds for t in timings if t.seconds is not None]
    return sum(known) if known else None


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"


def fmt_share(share: float | None) -> str:
    if share is None:
        return "-"
    return f"{share:.1%}" if share >= 0.001 else "<0.1%"


def timeline_rows(state: PipelineState) -> tuple[list[list[str]], list[str]]:
    """Rows for a table (Markdown or HTML), and the total row."""
    timings = timeline(state)
    # TD's total is for a pipeline of one source; the phases of several each take theirs
    one_source = len({stage_source(ps) for ps in stages(state)} - {None}) <= 1
    rows = [
        [
            t.phase,
            fmt_seconds(t.seconds),
            fmt_seconds(t.workflow_seconds),
            f"~{fmt_seconds(t.estimate_minutes * 60.0)}",
            f"{t.execution_minutes[0]}-{t.execution_minutes[1]} min",
            t.against_range,
            fmt_share(t.share_of_estimate),
        ]
        for t in timings
    ]
    total = total_seconds(timings)
    estimate = sum(t.estimate_minutes for t in timings) * 60.0
    total_row = [
        "total",
        fmt_seconds(total),
        fmt_seconds(sum(t.workflow_seconds or 0.0 for t in timings) or None),
        f"~{fmt_seconds(estimate)}" + (f" ({EXPECTED_TOTAL})" if one_source else ""),
        "",
        "",
        fmt_share(None if total is None else total / estimate),
    ]
    return rows, total_row


TIMELINE_HEADERS = (
    "phase",
    "took",
    "workflows ran",
    "expected estimate",
    "expected execution range",
    "workflows against the range",
    "share of estimate",
)
