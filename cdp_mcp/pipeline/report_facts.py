"""Facts every report format shares, read off the state: timings and where the run stands."""

from __future__ import annotations

from pydantic import BaseModel

from cdp_mcp.phases import ORDER
from cdp_mcp.pipeline.nextstep import DONE
from cdp_mcp.pipeline.state import PhaseState, PipelineState


class Progress(BaseModel):
    complete: bool
    aborted: bool
    stopped_at: str | None  # the first phase not done, when the run is not complete
    headline: str  # one sentence, plain text


def fmt_time(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(value, "strftime") else "-"


def phase_seconds(ps: PhaseState) -> float | None:
    starts = [s.started_at for s in ps.steps.values() if s.started_at]
    ends = [s.finished_at for s in ps.steps.values() if s.finished_at]
    if not starts or not ends:
        return None
    return (max(ends) - min(starts)).total_seconds()


def phase_duration(ps: PhaseState) -> str:
    seconds = phase_seconds(ps)
    return "-" if seconds is None else f"{seconds:.1f} s"


def progress(state: PipelineState) -> Progress:
    complete = not state.aborted and all(state.phase(p).status in DONE for p in ORDER)
    stopped = next((p.value for p in ORDER if state.phase(p).status not in DONE), None)
    if state.aborted:
        where = stopped or "after the last phase"
        headline = f"Aborted ({state.abort_reason}); stopped at phase {where}."
    elif not complete:
        headline = f"Partial report: the pipeline is at phase {stopped}."
    else:
        headline = "Complete: every phase validated (or was skipped by decision)."
    return Progress(complete=complete, aborted=state.aborted, stopped_at=stopped, headline=headline)
