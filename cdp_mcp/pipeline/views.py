"""The state as the tools show it: the plan of init_pipeline, pipeline_status, and the
result of a validation."""

from __future__ import annotations

from cdp_mcp.core.config import ConfigError, PipelineConfig
from cdp_mcp.core.file_source import SourceError
from cdp_mcp.core.phases import ORDER, expected_tables, project_name, workflows
from cdp_mcp.generate import GenerationError
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.models import (
    NextAction,
    PhasePlan,
    PhaseView,
    StatusResult,
    StepView,
    ValidationResult,
)
from cdp_mcp.pipeline.state import PhaseState, PipelineState, StepState


def phase_plans(cfg: PipelineConfig, state: PipelineState) -> list[PhasePlan]:
    """Each phase's project, workflows and the tables it will write (reads source files)."""
    try:
        schemas = predicted_schemas(cfg)
    except SourceError:
        schemas = {}
    plans = []
    for p in ORDER:
        try:
            tables = [t.qualified for t in expected_tables(cfg, p, schemas)]
        except (ConfigError, GenerationError):
            tables = []  # unification tables are known once staging columns are
        plans.append(
            PhasePlan(
                phase=p.value,
                status=state.phase(p).status.value,
                project=project_name(cfg, p),
                workflows=workflows(cfg, p),
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
            phase=p.value,
            status=state.phase(p).status.value,
            verdict=state.phase(p).verdict,
            project_id=state.phase(p).project_id,
            revision=state.phase(p).revision,
            steps=[_step_view(s) for s in state.phase(p).steps.values()],
        )
        for p in ORDER
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
