"""Reading a workflow's attempt back: which step a session belongs to, its failed tasks'
log tails, a page of its logs, and the session's result as the tools return it."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

from pydantic_core import to_json

from cdp_mcp.backends.base import DONE_TASK_STATES, Attempt, Backend, BackendError, Task
from cdp_mcp.pipeline.models import (
    FailedTask,
    LogsPage,
    NextAction,
    PipelineError,
    SessionProgress,
    SessionResult,
)
from cdp_mcp.pipeline.state import PhaseState, PipelineState, StepState, StepStatus

# A page's text as JSON (escapes counted): with the rest of the result, under ~20 KB.
LOG_PAGE_BYTES = 16_000
LOG_TAIL_LINES = 15
FAILED_TASKS_SHOWN = 5


def find_step(state: PipelineState, session_id: str | None) -> tuple[PhaseState, StepState]:
    """The stage and execute step of `session_id`; without one, the latest running (or
    started) one."""
    candidates = [
        (ps, s)
        for ps in state.ordered()
        for s in ps.steps.values()
        if s.name.startswith("execute:") and s.session_id
    ]
    if session_id is not None:
        for p, s in candidates:
            if s.session_id == session_id:
                return p, s
        raise PipelineError(
            f"session {session_id} is not one of this pipeline's; pipeline_status lists them"
        )
    running = [c for c in candidates if c[1].status is StepStatus.RUNNING]
    pool = running or candidates
    if not pool:
        raise PipelineError("no workflow was started yet; start_workflow first")
    return max(pool, key=lambda c: c[1].started_at or datetime.min.replace(tzinfo=UTC))


def task_label(name: str) -> str:
    """A task's name as a person reads it. Digdag's for_each> children carry their value
    URL-encoded (`+for-0=datasour=1=%7B%22name%22%3A`); the real name stays the id
    (get_logs takes it), so decode for display only. `+` separates tasks: kept as is."""
    return unquote(name, errors="replace") if "%" in name else name


def failed_tasks(tasks: list[Task]) -> list[Task]:
    return [t for t in tasks if t.state in ("error",) and not t.is_group]


def task_errors(tasks: list[Task]) -> str:
    return "; ".join(f"{task_label(t.full_name)}: {t.error}" for t in failed_tasks(tasks)[:3])


def progress_view(
    step: StepState, stage: PhaseState, attempt: Attempt, tasks: list[Task], elapsed: float
) -> SessionProgress:
    """The tasks running now, newest first, for a live display."""
    running = [t for t in tasks if t.state == "running" and not t.is_group]
    running.sort(key=lambda t: t.started_at.timestamp() if t.started_at else 0.0, reverse=True)
    return SessionProgress(
        session_id=str(step.session_id),
        attempt_id=attempt.id,
        phase=stage.phase.value,
        source=stage.source,
        workflow=attempt.workflow,
        elapsed_seconds=round(elapsed, 1),
        tasks_total=len(tasks),
        tasks_done=sum(1 for t in tasks if t.state in DONE_TASK_STATES),
        running_tasks=[task_label(t.full_name) for t in running],
    )


async def log_tail(backend: Backend, attempt_id: str, task: str) -> str:
    try:
        files = await backend.log_files(attempt_id, task)
        own = [f for f in files if f.task_name == task] or files
        if not own:
            return ""
        text = await backend.read_log(attempt_id, own[-1].file_name)
    except BackendError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])


def _page_end(full: str, offset: int, budget: int) -> int:
    """Where the page from `offset` ends: its JSON within `budget` bytes, at a line end
    when one is near."""
    end = min(len(full), offset + budget)
    while end > offset + 1:
        size = len(to_json(full[offset:end]))
        if size <= budget:
            break
        end = offset + max(1, int((end - offset) * budget / size * 0.98))
    if end < len(full):
        newline = full.rfind("\n", offset, end)
        if newline >= offset + (end - offset) * 4 // 5:
            end = newline + 1
    return end


async def logs_page(backend: Backend, attempt_id: str, task: str | None, offset: int) -> LogsPage:
    try:
        files = await backend.log_files(attempt_id, task)
        texts = [await backend.read_log(attempt_id, f.file_name) for f in files]
    except BackendError as e:
        raise PipelineError(f"reading logs of attempt {attempt_id} failed: {e}") from None
    full = "".join(texts)
    offset = min(max(0, offset), len(full))
    end = _page_end(full, offset, LOG_PAGE_BYTES)
    # Name only the files this page's text comes from: an attempt of a big phase has
    # hundreds of log files, and the page must stay small.
    on_page, start = [], 0
    for f, text in zip(files, texts, strict=True):
        if start < end and start + len(text) > offset:
            on_page.append(f.file_name)
        start += len(text)
    return LogsPage(
        attempt_id=attempt_id,
        task=task,
        files=on_page,
        offset=offset,
        next_offset=end if end < len(full) else None,
        text=full[offset:end],
    )


async def session_result(
    backend: Backend,
    stage: PhaseState,
    started: datetime,
    attempt: Attempt,
    tasks: list[Task],
    timed_out: bool,
    action: NextAction,
    now: datetime,
) -> SessionResult:
    failed_out = [
        FailedTask(
            name=t.full_name,
            label=task_label(t.full_name),
            error=t.error,
            log_tail=await log_tail(backend, attempt.id, t.full_name),
        )
        for t in failed_tasks(tasks)[:FAILED_TASKS_SHOWN]
    ]
    by_state: dict[str, int] = {}
    for t in tasks:
        by_state[t.state] = by_state.get(t.state, 0) + 1
    end = attempt.finished_at or now
    return SessionResult(
        session_id=attempt.session_id,
        attempt_id=attempt.id,
        phase=stage.phase.value,
        workflow=attempt.workflow,
        status=attempt.status,
        elapsed_seconds=round((end - started).total_seconds(), 1),
        tasks_total=len(tasks),
        tasks_done=sum(
            1 for t in tasks if t.state in ("success", "error", "group_error", "canceled")
        ),
        tasks_by_state=by_state,
        failed_tasks=failed_out,
        timed_out=timed_out,
        next_action=action,
    )
