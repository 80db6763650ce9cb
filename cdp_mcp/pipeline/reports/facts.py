"""Facts every report format shares, read off the state: timings and where the run stands."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import ORDER, Phase
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


ROW_FLOW_HEADERS = (
    "table",
    "in source",
    "before start_date",
    "unparseable time",
    "loaded",
    "hist-union",
    "staged",
    "dropped by dedup",
)


def phase_metrics(state: PipelineState, phase: Phase) -> dict[str, Any]:
    """The metrics the phase's last validation kept ({} before it validated)."""
    return dict((state.phase(phase).validation or {}).get("metrics") or {})


def _loaded(cfg: PipelineConfig, state: PipelineState, table: str) -> int | None:
    """Rows ingestion loaded for a hist-union table: its object's backfill + incremental
    rows, or, for a table no ingested object names, the sides hist-union read."""
    obj = cfg.object_of(table)
    counts = (phase_metrics(state, Phase.INGESTION).get("rows_loaded") or {}).get(obj)
    if obj and counts is not None:
        return int(counts.get("historical", 0) + counts.get("incremental", 0))
    flow = (phase_metrics(state, Phase.HIST_UNION).get("row_flow") or {}).get(table)
    return int(flow["hist"] + flow["incremental"]) if flow else None


def row_flow_rows(cfg: PipelineConfig, state: PipelineState) -> list[list[int | str | None]]:
    """Per hist-union table, its rows from the source file to staging, and where they went
    (the report's table and its row-flow chart).

    The source columns are known for connector `file` only; a phase not validated yet
    leaves its columns empty.
    """
    sources = phase_metrics(state, Phase.INGESTION).get("source_rows") or {}
    flows = phase_metrics(state, Phase.HIST_UNION).get("row_flow") or {}
    staged = phase_metrics(state, Phase.STAGING).get("tables") or {}
    rows: list[list[int | str | None]] = []
    for ref in cfg.hist_union_tables():
        obj = cfg.object_of(ref.table)
        src = (sources.get(obj) if obj else None) or {}
        stg = staged.get(ref.table) or {}
        rows.append(
            [
                ref.table,
                src.get("source_rows"),
                src.get("before_start_date"),
                src.get("unparseable_time"),
                _loaded(cfg, state, ref.table),
                (flows.get(ref.table) or {}).get("union"),
                stg.get("staged_rows"),
                stg.get("dropped_by_dedup"),
            ]
        )
    return rows
