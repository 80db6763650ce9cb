"""A tool result in a few lines of words: what the MCP text content says beside the data.

The structured content carries the data; the text is what a person (or a model reading
text only) needs at a glance: the verdict or status, the key figures, the next action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from cdp_mcp.core.tools import ASK_PERSON
from cdp_mcp.pipeline.models import (
    DecisionResult,
    FinalReportResult,
    GenerateResult,
    InitResult,
    LogsResult,
    NextAction,
    PhasePlan,
    PhaseView,
    PushResult,
    QueryOutput,
    SecretsResult,
    SessionResult,
    StartResult,
    StatusResult,
    ValidationResult,
)
from cdp_mcp.pipeline.rules.advice import format_call

SHOWN = 3  # warnings, failures, tasks named in a summary before "and N more"


def _stage(p: PhasePlan | PhaseView) -> str:
    """`ingestion:shop`, or `unification`."""
    return f"{p.phase}:{p.source}" if p.source else p.phase


def _few(items: list[str], shown: int = SHOWN) -> str:
    more = len(items) - shown
    return "; ".join(items[:shown]) + (f"; and {more} more" if more > 0 else "")


def next_words(action: NextAction) -> list[str]:
    """The next action in words: the call, or the person's decision with its choices."""
    if action.tool == ASK_PERSON:
        lines = [f"next: ask the person - {action.why}"]
        lines += [f"  {i}. {c}" for i, c in enumerate(action.choices, 1)]
        return lines
    if action.choices:
        return [f"next (a person decides): {action.why}", f"  first choice: {format_call(action)}"]
    return [f"next: {format_call(action)} - {action.why}"]


def _init(r: InitResult) -> list[str]:
    how = "finished" if r.finished else "resumed" if r.resumed else "new"
    phases = ", ".join(f"{_stage(p)} {p.status}" for p in r.phases)
    lines = [f"pipeline {r.client} on {r.backend}, run {r.run} ({how}); workspace {r.workspace}"]
    lines.append(f"phases: {phases}")
    if r.preflight:
        lines.append(f"preflight: {_few(r.preflight)}")
    return lines


def _generate(r: GenerateResult) -> list[str]:
    changed = "changed" if r.changed else "unchanged"
    lines = [f"{r.phase}: {len(r.files)} files in {r.directory} ({changed})"]
    lines.append(f"workflows: {', '.join(r.workflows)}")
    if r.reset_phases:
        lines.append(f"reset: {', '.join(r.reset_phases)}")
    return lines


def _push(r: PushResult) -> list[str]:
    lines = [f"{r.phase}: pushed {r.project} revision {r.revision} (attempt {r.attempt})"]
    if r.missing_secrets:
        lines.append(f"missing secrets: {', '.join(r.missing_secrets)}")
    return lines


def _secrets(r: SecretsResult) -> list[str]:
    lines = [f"{r.phase}: set {', '.join(r.set) or 'no secret'} on {r.project}"]
    if r.still_missing:
        lines.append(f"still missing: {', '.join(r.still_missing)}")
    return lines


def _start(r: StartResult) -> list[str]:
    how = "resumed its failed tasks" if r.resumed_failed_tasks else "started"
    return [f"{r.phase}: {r.workflow} {how}: session {r.session_id}, attempt {r.attempt_id}"]


def _session(r: SessionResult) -> list[str]:
    waited = ", still running after the wait" if r.timed_out else ""
    lines = [
        f"{r.workflow} (session {r.session_id}): {r.status}{waited}, "
        f"{r.tasks_done}/{r.tasks_total} tasks in {r.elapsed_seconds:.1f}s"
    ]
    if r.failed_tasks:
        lines.append(f"failed: {_few([f'{t.label or t.name}: {t.error}' for t in r.failed_tasks])}")
    return lines


def _validation(r: ValidationResult) -> list[str]:
    counted = [t.row_count for t in r.tables if t.row_count is not None]
    accepted = " (warnings accepted)" if r.accepted_warnings else ""
    lines = [
        f"{r.phase}: {r.verdict}{accepted}, {len(r.tables)} tables, {sum(counted)} rows "
        f"(attempt {r.attempt})"
    ]
    if r.failures:
        lines.append(f"failures: {_few(r.failures)}")
    if r.warnings:
        lines.append(f"warnings: {_few(r.warnings)}")
    return lines


def _logs(r: LogsResult) -> list[str]:
    end = r.offset + len(r.text)
    more = f"more from offset {r.next_offset}" if r.next_offset is not None else "the last page"
    return [f"logs of attempt {r.attempt_id}: characters {r.offset}-{end} ({more})"]


def _query(r: QueryOutput) -> list[str]:
    more = "; more rows follow" if r.truncated else ""
    first = f" from row {r.offset}" if r.offset else ""
    return [f"{r.row_count} rows{first} x {len(r.columns)} columns{more}"]


def _status(r: StatusResult) -> list[str]:
    phases = ", ".join(
        f"{_stage(p)} {p.status}" + (f" {p.verdict}" if p.verdict else "") for p in r.phases
    )
    aborted = ", aborted" if r.aborted else ""
    return [f"pipeline {r.client} on {r.backend}, run {r.run}{aborted}", f"phases: {phases}"]


def _decision(r: DecisionResult) -> list[str]:
    lines = [f"{r.phase or 'pipeline'}: {r.status} - {r.message}"]
    if r.report_path:
        lines.append(f"report: {r.report_path}")
    return lines


def _report(r: FinalReportResult) -> list[str]:
    kind = "report" if r.complete else "partial report"
    phases = ", ".join(
        f"{p.phase} {p.verdict or p.status}" + (f" ({p.rows} rows)" if p.rows is not None else "")
        for p in r.phases
    )
    lines = [f"{kind}: {r.path}" + (f" (html: {r.html_path})" if r.html_path else "")]
    lines.append(f"phases: {phases}")
    if r.profiles is not None:
        lines.append(f"unified profiles: {r.profiles}")
    return lines


_SUMMARIES: dict[type[BaseModel], Callable[[Any], list[str]]] = {
    InitResult: _init,
    GenerateResult: _generate,
    PushResult: _push,
    SecretsResult: _secrets,
    StartResult: _start,
    SessionResult: _session,
    ValidationResult: _validation,
    LogsResult: _logs,
    QueryOutput: _query,
    StatusResult: _status,
    DecisionResult: _decision,
    FinalReportResult: _report,
}


def summary(result: BaseModel) -> str:
    """The result in a few lines, ending with its next action."""
    summarize = _SUMMARIES.get(type(result))
    lines = summarize(result) if summarize is not None else [type(result).__name__]
    action = getattr(result, "next_action", None)
    if isinstance(action, NextAction):
        lines += next_words(action)
    lines.append("(the data is in the structured content)")
    return "\n".join(lines)
