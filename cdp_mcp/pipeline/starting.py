"""Starting a workflow's attempt on the backend: resume a failed one (killing it first
after the monitor deadline), or start a session of its own; upload the files the attempt's
range reads first when cdp-mcp uploads them (connector `file` on Treasure Data)."""

from __future__ import annotations

from datetime import datetime, timedelta

from cdp_mcp.backends.base import Attempt, Backend, BackendError, ConflictError
from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import Phase, project_name
from cdp_mcp.generate.ingestion import load_mode
from cdp_mcp.pipeline.file_upload import ObjectUpload, upload_ranges
from cdp_mcp.pipeline.models import PipelineError

KILL_WAIT_SECONDS = 30.0
FREE_SESSION_TRIES = 30


def uploads_files(cfg: PipelineConfig, phase: Phase) -> bool:
    """Connector `file` on Treasure Data: cdp-mcp uploads each range before the run."""
    return phase is Phase.INGESTION and load_mode(cfg) == "upload"


async def start_attempt(
    cfg: PipelineConfig,
    backend: Backend,
    phase: Phase,
    wf: str,
    starting: dict[str, str | None],
) -> tuple[list[ObjectUpload], Attempt]:
    """`starting`: the start request the rules made (rules.steps.start_request); `cfg`:
    the stage's config (a source's view for a per-source phase)."""
    _point_extracts(cfg, backend, phase)
    uploads: list[ObjectUpload] = []
    resume_from = starting["resume_from"]
    if resume_from is not None:
        await end_timed_out(backend, resume_from)
        if uploads_files(cfg, phase):
            resumed = await backend.attempt(resume_from)
            uploads = await upload_ranges(cfg, backend, wf, resumed.session_time)
        return uploads, await backend.retry(resume_from, resume_failed=True)
    session_time = datetime.fromisoformat(str(starting["session_time"]))
    if uploads_files(cfg, phase):
        # The range the attempt will read, at the session time it will have (a start that
        # finds the second taken moves one second on; only a start at a month's last
        # second would see another default split point).
        uploads = await upload_ranges(cfg, backend, wf, session_time)
    attempt = await start_new_session(
        backend,
        project_name(cfg, phase),
        wf,
        session_time,
        datetime.fromisoformat(str(starting["asked_at"])),
    )
    return uploads, attempt


def _point_extracts(cfg: PipelineConfig, backend: Backend, phase: Phase) -> None:
    """The local dry run of a TD connector reads this source's extracts (the backend is
    one for the pipeline; each source has its own folder)."""
    if (
        phase is Phase.INGESTION
        and isinstance(backend, LocalBackend)
        and cfg.ingestion.connector != "file"
    ):
        backend.runtime.extracts_dir = cfg.source_dir


async def start_new_session(
    backend: Backend, project: str, workflow: str, when: datetime, asked: datetime
) -> Attempt:
    """Start a session of its own at `when` or just after: a session time already used
    (two starts within one second) hands back that session's old attempt, as Digdag's
    409 does; one created since `asked` is this start's own (or an interrupted earlier
    try of it), and is adopted."""
    for _ in range(FREE_SESSION_TRIES):
        attempt = await backend.start(project, workflow, session_time=when)
        if not (attempt.done and attempt.created_at < asked):
            return attempt
        when += timedelta(seconds=1)
    raise PipelineError(f"could not find a free session time for {workflow}")


async def end_timed_out(backend: Backend, attempt_id: str) -> None:
    """A retry after the monitor deadline first kills the attempt still running."""
    current = await backend.attempt(attempt_id)
    if current.done:
        return
    try:
        await backend.kill(attempt_id)
    except ConflictError:
        return  # it ended meanwhile
    current = await backend.wait(attempt_id, timeout=KILL_WAIT_SECONDS)
    if not current.done:
        raise BackendError(
            f"attempt {attempt_id} did not stop within {KILL_WAIT_SECONDS:.0f}s of the kill "
            "request; wait with get_session, then retry"
        )
