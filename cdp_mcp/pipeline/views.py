"""The state as the tools show it: the plan of init_pipeline, pipeline_status, and the
result of a validation."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from cdp_mcp.core.config import ConfigError, PipelineConfig
from cdp_mcp.core.file_source import SourceError
from cdp_mcp.core.phases import Phase, expected_tables, project_name, workflows
from cdp_mcp.generate import GenerationError
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.models import (
    FinalReportResult,
    NextAction,
    PhaseHeadline,
    PhasePlan,
    PhaseView,
    ReportResult,
    StatusResult,
    StepView,
    ValidationResult,
)
from cdp_mcp.pipeline.reports.report import OPS_DOC_NAMES
from cdp_mcp.pipeline.stages import config_of
from cdp_mcp.pipeline.state import PhaseState, PipelineState, StepState


def phase_plans(cfg: PipelineConfig, state: PipelineState) -> list[PhasePlan]:
    """Each phase's project, workflows and the tables it will write (reads source files)."""
    schemas: dict[str, Any] = {}
    for name in cfg.source_names:
        with contextlib.suppress(SourceError):  # known once that source is ingested
            schemas.update(predicted_schemas(cfg.for_source(name)))
    plans = []
    for ps in state.ordered():
        view = config_of(cfg, state, ps)
        try:
            tables = [t.qualified for t in expected_tables(view, ps.phase, schemas)]
        except (ConfigError, GenerationError):
            tables = []  # unification tables are known once staging columns are
        plans.append(
            PhasePlan(
                phase=ps.phase.value,
                source=ps.source,
                status=ps.status.value,
                project=project_name(view, ps.phase),
                workflows=workflows(view, ps.phase),
                tables=tables,
            )
        )
    return plans


def _step_view(s: StepState) -> StepView:
    return StepView(
        name=s.name,
        status=s.status.value,
        attempts=s.attempts,
        started_at=s.started_at,
        finished_at=s.finished_at,
        session_id=s.session_id,
        attempt_id=s.attempt_id,
        last_error=s.last_error,
    )


def status_result(state: PipelineState, action: NextAction) -> StatusResult:
    phases = [
        PhaseView(
            phase=ps.phase.value,
            source=ps.source,
            status=ps.status.value,
            verdict=ps.verdict,
            project_id=ps.project_id,
            revision=ps.revision,
            steps=[_step_view(s) for s in ps.steps.values()],
        )
        for ps in state.ordered()
    ]
    return StatusResult(
        config_path=state.config_path,
        client=state.client,
        backend=state.backend,
        aborted=state.aborted,
        run=state.run,
        phases=phases,
        next_action=action,
    )


def validation_result(ps: PhaseState, accepted: bool, action: NextAction) -> ValidationResult:
    v = ps.validation or {}
    return ValidationResult(
        phase=ps.phase.value,
        verdict=ps.verdict or "FAIL",  # type: ignore[arg-type]
        accepted_warnings=accepted,
        attempt=ps.step("validate").attempts,
        tables=v.get("tables", []),
        metrics=v.get("metrics", {}),
        warnings=v.get("warnings", []),
        failures=v.get("failures", []),
        next_action=action,
    )


# A query result's rows as JSON: with the columns, the SQL and next_action, under ~20 KB.
QUERY_PAGE_BYTES = 16_000


def rows_within(rows: list[list[Any]], budget: int) -> list[list[Any]]:
    """The leading rows whose JSON fits in `budget` bytes (the first row always: one row
    is the least a query can answer with)."""
    kept: list[list[Any]] = []
    used = 2  # the list's brackets
    for row in rows:
        size = len(to_json(row, fallback=str)) + 1
        if kept and used + size > budget:
            break
        kept.append(row)
        used += size
    return kept


def _headline(ps: PhaseState) -> PhaseHeadline:
    tables = (ps.validation or {}).get("tables") or []
    counted = [t["row_count"] for t in tables if t.get("row_count") is not None]
    return PhaseHeadline(
        phase=ps.key,  # the stage: `ingestion:shop`, `unification`
        status=ps.status.value,
        verdict=ps.verdict,
        tables=len(tables) if tables else None,
        rows=sum(counted) if counted else None,
    )


def report_result(
    written: ReportResult, state: PipelineState, action: NextAction
) -> FinalReportResult:
    """The report as final_report answers: its files and the figures a person asks first."""
    folder = Path(written.path).parent
    documents = [str(folder / name) for name in OPS_DOC_NAMES if (folder / name).is_file()]
    profiles = (state.phase(Phase.UNIFICATION).validation or {}).get("metrics", {}).get("profiles")
    return FinalReportResult(
        path=written.path,
        html_path=written.html_path,
        documents=documents,
        complete=written.complete,
        aborted=state.aborted,
        phases=[_headline(ps) for ps in state.ordered()],
        profiles=profiles if isinstance(profiles, int) else None,
        next_action=action,
    )
