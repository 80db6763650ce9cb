"""What the pipeline's operations return: the structured output of the MCP tools."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from cdp_mcp.core.errors import CdpError

Verdict = Literal["PASS", "WARN", "FAIL"]


class PipelineError(CdpError):
    """An operation the pipeline refuses or could not do; the message says what to do next."""


class NextAction(BaseModel):
    """The call the agent should make next, and why."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    why: str
    choices: list[str] = Field(default_factory=list)  # when a person must decide


class PhasePlan(BaseModel):
    phase: str
    source: str | None = None  # the source of a per-source phase
    status: str
    project: str
    workflows: list[str]
    tables: list[str]


class InitResult(BaseModel):
    config_path: str
    client: str
    backend: str
    workspace: str
    run: int = 1  # which run of the pipeline this is (a new run only by new_run=true)
    resumed: bool
    new_run: bool = False
    finished: bool = False  # every phase is done (or the pipeline was aborted)
    reset_steps: list[str] = Field(default_factory=list)
    phases: list[PhasePlan]
    preflight: list[str] = Field(default_factory=list)
    next_action: NextAction


class GenerateResult(BaseModel):
    phase: str
    directory: str
    files: list[str]
    workflows: list[str]
    secrets: list[str]
    changed: bool
    reset_phases: list[str] = Field(default_factory=list)
    next_action: NextAction


class PushResult(BaseModel):
    phase: str
    project: str
    project_id: str
    revision: str
    attempt: int
    missing_secrets: list[str] = Field(default_factory=list)
    next_action: NextAction


class SecretsResult(BaseModel):
    phase: str
    project: str
    set: list[str]
    missing_env: dict[str, list[str]] = Field(default_factory=dict)  # secret -> env vars tried
    still_missing: list[str]
    next_action: NextAction


class StartResult(BaseModel):
    phase: str
    workflow: str
    session_id: str
    attempt_id: str
    resumed_failed_tasks: bool
    attempt: int
    next_action: NextAction


class FailedTask(BaseModel):
    name: str  # the task's id, as get_logs(task=...) takes it
    label: str = ""  # the name as a person reads it (for_each> values decoded)
    error: str | None
    log_tail: str


class SessionResult(BaseModel):
    session_id: str
    attempt_id: str
    phase: str | None
    workflow: str
    status: Literal["running", "success", "error", "killed"]
    elapsed_seconds: float
    tasks_total: int
    tasks_done: int
    tasks_by_state: dict[str, int]
    failed_tasks: list[FailedTask] = Field(default_factory=list)
    timed_out: bool = False
    next_action: NextAction


class SessionProgress(BaseModel):
    """One look at a running attempt while get_session waits (for live progress displays)."""

    session_id: str
    attempt_id: str
    phase: str
    source: str | None = None  # the source of a per-source phase
    workflow: str
    elapsed_seconds: float
    tasks_total: int
    tasks_done: int
    running_tasks: list[str] = Field(default_factory=list)  # non-group, most recent first


class TableCheck(BaseModel):
    database: str
    table: str
    exists: bool
    row_count: int | None
    expected_columns: list[str]
    missing_columns: list[str]
    problems: list[str] = Field(default_factory=list)


class ValidationResult(BaseModel):
    phase: str
    verdict: Verdict
    accepted_warnings: bool
    attempt: int
    tables: list[TableCheck]
    metrics: dict[str, Any]
    warnings: list[str]
    failures: list[str]
    next_action: NextAction


class LogsPage(BaseModel):
    attempt_id: str
    task: str | None
    files: list[str]
    offset: int
    next_offset: int | None  # None: the last page
    text: str


class LogsResult(LogsPage):
    next_action: NextAction  # the next page, or the pipeline's next step after the last


class QueryOutput(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int  # the rows kept in this result
    offset: int = 0  # rows of the result skipped before the first one kept
    truncated: bool  # more rows follow: next_action reads them
    next_action: NextAction


class StepView(BaseModel):
    name: str
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    session_id: str | None
    attempt_id: str | None
    last_error: str | None


class PhaseView(BaseModel):
    phase: str
    source: str | None = None  # the source of a per-source phase
    status: str
    verdict: str | None
    project_id: str | None
    revision: str | None
    steps: list[StepView]


class StatusResult(BaseModel):
    config_path: str
    client: str
    backend: str
    aborted: bool
    run: int
    phases: list[PhaseView]
    next_action: NextAction


class DecisionResult(BaseModel):
    phase: str | None
    status: str
    message: str
    report_path: str | None = None
    next_action: NextAction


class ReportResult(BaseModel):
    """What the report writer wrote (reports/report.py), the whole document included."""

    path: str
    html_path: str | None = None
    complete: bool
    markdown: str


class PhaseHeadline(BaseModel):
    phase: str
    status: str
    verdict: str | None
    tables: int | None  # tables the validation checked
    rows: int | None  # rows in them


class FinalReportResult(BaseModel):
    """final_report's answer: where the documents are and the headline figures; the
    documents themselves are files (and the pipeline_report resource)."""

    path: str
    html_path: str | None = None
    documents: list[str] = Field(default_factory=list)  # the ops documents beside the report
    complete: bool
    aborted: bool = False
    phases: list[PhaseHeadline]
    profiles: int | None = None  # unified profiles (unification's validation)
    next_action: NextAction
