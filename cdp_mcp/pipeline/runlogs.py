"""`{workspace}/pipeline_logs/{date}/`: a deployment record per workflow run.

Each run (one backend attempt) gets one text file: phase, workflow, session and attempt
ids, start, end, status, then every task's log in task order. It is rewritten each time the
run is looked at, so it grows as the run goes and is complete once the run ends. The file
is written atomically: a reader sees the previous version or the new one.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

from cdp_mcp.backends.base import Attempt, Backend, BackendError, Task
from cdp_mcp.core.manifest import FileConflictError, write_owned

log = logging.getLogger(__name__)


def run_log_path(workspace: Path, phase: str, attempt: Attempt) -> Path:
    day = attempt.created_at.strftime("%Y-%m-%d")
    safe_wf = re.sub(r"[^A-Za-z0-9_.-]", "_", attempt.workflow)
    return workspace / "pipeline_logs" / day / f"{phase}_{safe_wf}_attempt{attempt.id}.log"


def _fmt(value: datetime | None) -> str:
    return value.isoformat() if value else "-"


async def write_run_log(
    workspace: Path, phase: str, attempt: Attempt, tasks: list[Task], backend: Backend
) -> Path:
    lines = [
        f"phase:        {phase}",
        f"project:      {attempt.project}",
        f"workflow:     {attempt.workflow}",
        f"session id:   {attempt.session_id}",
        f"attempt id:   {attempt.id}",
        f"session time: {_fmt(attempt.session_time)}",
        f"retry name:   {attempt.retry_attempt_name or '-'}",
        f"started:      {_fmt(attempt.created_at)}",
        f"finished:     {_fmt(attempt.finished_at)}",
        f"status:       {attempt.status}",
        "",
        "tasks:",
        *[
            f"  {t.state:<10} {t.full_name}" + (f"  ERROR: {t.error}" if t.error else "")
            for t in tasks
        ],
        "",
    ]
    try:
        files = await backend.log_files(attempt.id)
        for f in files:
            lines.append(f"==> {f.task_name} ({f.file_name})")
            lines.append((await backend.read_log(attempt.id, f.file_name)).rstrip())
            lines.append("")
    except BackendError as e:
        lines.append(f"(task logs unavailable: {e})")
    path = run_log_path(workspace, phase, attempt)
    try:
        write_owned(workspace, {path: "\n".join(lines) + "\n"})
    except FileConflictError as e:
        # A person's file of that name stays; the run is still in the backend's logs.
        log.warning("run log not written: %s", e)
    return path
