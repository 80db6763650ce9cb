"""One emulated TD site: Digdag's and API v3's operations on a LocalBackend workspace.

Synchronous (the routes call it on worker threads); answers are TD's JSON shapes and
failures are the backend's errors, which the app turns into TD's status codes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tarfile
import tempfile
import threading
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdp_mcp.backends.archive import extract_archive
from cdp_mcp.backends.base import Attempt, ConflictError, LogFile, NotFoundError
from cdp_mcp.backends.local import (
    LocalBackend,
    LocalRuntime,
    StateRow,
    UnificationHandler,
    parse_stored_time,
)
from cdp_mcp.digdag.loader import DigError, load_dig
from cdp_mcp.digdag.secrets import valid_secret_key, valid_secret_value
from cdp_mcp.emulator import shapes
from cdp_mcp.emulator.bulk_import import BulkImports
from cdp_mcp.emulator.catalog import Catalog
from cdp_mcp.emulator.errors import RequestError
from cdp_mcp.emulator.jobs import JobStore
from cdp_mcp.emulator.state import STATE_DIR, EmulatorState

__all__ = ["RequestError", "Site"]

ARCHIVE_LIMIT = 2 * 1024 * 1024  # open-source Digdag's limit on a pushed archive
PAGE_SIZE = 100  # Digdag's default and largest page of attempts (api.max_attempts_page_size)
SERVER_VERSION = "0.10.5.1"  # the Digdag TD Workflow runs
DATABASE_NAME = re.compile(r"^[a-z0-9_]{3,255}$")


def _int_param(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"{name}= must be a number: {value!r}") from None


def _when(value: str | None) -> datetime:
    parsed = parse_stored_time(value) if value else None
    return parsed or datetime.now(UTC)


def _definition(dig: Path, root: Path) -> tuple[ZoneInfo, dict[str, Any]]:
    """A workflow's time zone (UTC when unset) and its definition's config: the file
    without `timezone:`, as Digdag's WorkflowFile keeps it. ({} when it does not load.)"""
    try:
        doc = load_dig(dig, root)
    except (DigError, OSError):
        return ZoneInfo("UTC"), {}
    try:
        zone = ZoneInfo(str(doc.get("timezone") or "UTC"))
    except (ValueError, ZoneInfoNotFoundError):
        zone = ZoneInfo("UTC")
    config = {k: v for k, v in doc.items() if k != "timezone"}
    return zone, json.loads(json.dumps(config, default=str))


def _session_time_arg(value: str | None) -> datetime:
    """Digdag's LocalTimeOrInstant: an instant with an offset, or a local date-time (naive)."""
    if not value:
        raise RequestError("session_time= is required")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"Invalid timestamp format: {value}") from None


class Site:
    def __init__(self, workspace: Path, unification_handler: UnificationHandler | None) -> None:
        self.workspace = Path(workspace).resolve()
        self.backend = LocalBackend(self.workspace)
        if unification_handler is not None:  # else the local runner's own engine
            self.backend.set_unification_handler(unification_handler)
        self.state = EmulatorState(self.workspace)
        self.catalog = Catalog(self.runtime.warehouse)
        self.jobs = JobStore(self.runtime.warehouse)
        self.bulk_imports = BulkImports(
            self.workspace / STATE_DIR / "bulk_import",
            self.catalog,
            self.jobs,
            self.runtime.warehouse,
        )
        # Requests no route answered ({"method", "path", "query"}): a client asking for
        # something the emulator does not serve shows here, so tests can require none.
        self.unserved: list[dict[str, str]] = []
        self._unserved_lock = threading.Lock()
        # Keep the warehouse open while serving: reopening the DuckDB file per request
        # costs ~20 ms, several times per API call.
        self._open = ExitStack()
        self._open.enter_context(self.runtime.warehouse.session())
        self._zones: dict[tuple[int, str], ZoneInfo] = {}

    def close(self) -> None:
        self._open.close()

    @property
    def runtime(self) -> LocalRuntime:
        return self.backend.runtime

    def record_unserved(self, method: str, path: str, query: str) -> None:
        with self._unserved_lock:
            self.unserved.append({"method": method, "path": path, "query": query})

    # projects

    def _project_row(self, project_id: str) -> StateRow:
        row = self.runtime.store.project(int(project_id)) if project_id.isdigit() else None
        if row is None or row["revision_id"] is None:
            raise NotFoundError(f"Project id={project_id} not found")
        return row

    def _project_json(self, row: StateRow) -> dict[str, Any]:
        rev = self.runtime.store.revision(row["revision_id"])
        assert rev is not None
        named = self.state.revision(row["name"], rev["name"])
        return shapes.project(
            str(row["id"]),
            row["name"],
            named["name"],
            named["md5"] or rev["archive_md5"],
            _when(row["created_at"]),
            _when(rev["created_at"]),
        )

    def projects(self, name: str | None) -> list[dict[str, Any]]:
        if name is not None:
            names = [name]
        else:
            folder = self.runtime.home / "projects"
            names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        rows = [self.runtime.store.project_by_name(n) for n in names]
        return [self._project_json(r) for r in rows if r is not None and r["revision_id"]]

    def project(self, project_id: str) -> dict[str, Any]:
        return self._project_json(self._project_row(project_id))

    def push(self, name: str, revision: str, archive: bytes) -> dict[str, Any]:
        if len(archive) > ARCHIVE_LIMIT:
            raise RequestError(
                f"Size of the uploaded archive file exceeds limit ({ARCHIVE_LIMIT} bytes)"
            )
        if self.state.revision_name_used(name, revision):
            raise ConflictError(f"Revision {revision!r} of project {name!r} already exists")
        with tempfile.TemporaryDirectory(dir=self.runtime.home) as tmp:
            upload = Path(tmp) / "upload.tar.gz"
            upload.write_bytes(archive)
            try:
                extract_archive(upload, Path(tmp) / "project")
            except (OSError, EOFError, ValueError, tarfile.TarError) as e:
                raise RequestError(f"the body is not a tar.gz archive: {e}") from None
            pushed = self.runtime.push(name, Path(tmp) / "project")
        md5 = base64.b64encode(hashlib.md5(archive).digest()).decode()
        self.state.record_revision(name, pushed.revision, revision, md5)
        return self.project(pushed.id)

    def workflows(self, project_id: str, name: str | None) -> list[dict[str, Any]]:
        row = self._project_row(project_id)
        rev = self.runtime.store.revision(row["revision_id"])
        assert rev is not None
        root = self.runtime.projects.revision_dir(row, rev)
        revision = self.state.revision(row["name"], rev["name"])["name"]
        out = []
        for path in sorted(root.glob("*.dig")):
            if name is not None and path.stem != name:
                continue
            zone, config = _definition(path, root)
            self._zones[(rev["id"], path.stem)] = zone
            wf_id = self.state.workflow_id(project_id, path.stem)
            out.append(
                shapes.workflow(wf_id, path.stem, project_id, row["name"], revision, zone, config)
            )
        return out

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """GET /api/workflows/{id}: the workflow in its project's latest revision."""
        found = self.state.workflow_of(workflow_id)
        listed = self.workflows(found[0], found[1]) if found else []
        if not listed:
            raise NotFoundError(f"Workflow id={workflow_id} not found")
        return listed[0]

    def truncated_session_time(
        self, workflow_id: str, session_time: str | None, mode: str | None
    ) -> dict[str, Any]:
        """The session time `digdag start --session` asks for, in the workflow's time zone:
        a local date-time is read in that zone; `hour` and `day` truncate there."""
        wf = self.workflow(workflow_id)
        zone = ZoneInfo(wf["timezone"])
        when = _session_time_arg(session_time)
        local = when.astimezone(zone) if when.tzinfo else when.replace(tzinfo=zone)
        if mode in ("hour", "day"):
            local = local.replace(minute=0, second=0, microsecond=0)
            if mode == "day":
                local = local.replace(hour=0)
        elif mode in ("schedule", "next_schedule"):
            raise RequestError(f"session_time_truncate={mode}: the emulator runs no schedules")
        elif mode is not None:
            raise RequestError(f"Unknown session time truncate option: {mode}")
        return {
            "project": wf["project"],
            "revision": wf["revision"],
            "sessionTime": shapes.offset_time(local, zone),
            "timezone": str(zone),
        }

    # attempts and sessions

    def _zone(self, attempt_id: str) -> ZoneInfo:
        """The time zone of the workflow as the attempt's revision has it (Digdag shows
        session times in it)."""
        row = self.runtime.store.attempt(int(attempt_id))
        assert row is not None
        session = self.runtime.store.session(row["session_id"])
        assert session is not None
        key = (row["revision_id"], session["workflow"])
        if key not in self._zones:
            rev = self.runtime.store.revision(row["revision_id"])
            proj = self.runtime.store.project(session["project_id"])
            assert rev is not None and proj is not None
            root = self.runtime.projects.revision_dir(proj, rev)
            self._zones[key] = _definition(root / f"{session['workflow']}.dig", root)[0]
        return self._zones[key]

    def _attempt_json(self, attempt: Attempt) -> dict[str, Any]:
        session = self.runtime.store.session(int(attempt.session_id))
        assert session is not None
        wf_id = self.state.workflow_id(attempt.project_id, attempt.workflow)
        return shapes.attempt(attempt, wf_id, session["uuid"], self._zone(attempt.id))

    def start(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(attempt, created): an existing attempt of that session and name is not created."""
        found = self.state.workflow_of(str(body.get("workflowId", "")))
        if found is None:
            raise NotFoundError(f"Workflow id={body.get('workflowId')} not found")
        project_id, workflow = found
        row = self._project_row(project_id)
        resume = body.get("resume")
        resume_from = None
        if isinstance(resume, dict):
            if resume.get("mode") != "failed":
                raise RequestError(f"Unsupported resume mode: {resume.get('mode')!r}")
            resume_from = int(str(resume.get("attemptId")))
        session_time = body.get("sessionTime")
        if not isinstance(session_time, str) or parse_stored_time(session_time) is None:
            raise RequestError("sessionTime= must be an ISO-8601 instant")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise RequestError("params must be an object")
        attempt, created = self.runtime.start_attempt(
            row["name"],
            workflow,
            parse_stored_time(session_time),
            params,
            body.get("retryAttemptName"),
            resume_from,
        )
        return self._attempt_json(attempt), created

    def attempt(self, attempt_id: str) -> dict[str, Any]:
        return self._attempt_json(self.runtime.attempt(attempt_id))

    def attempts(
        self,
        project: str | None,
        workflow: str | None,
        include_retried: bool,
        last_id: str | None,
        page_size: str | None,
    ) -> list[dict[str, Any]]:
        """GET /api/attempts: newest first, the last attempt of each session unless
        `include_retried`; `last_id` pages on to older ones."""
        size = _int_param(page_size, "page_size") if page_size else PAGE_SIZE
        if size > PAGE_SIZE:
            raise RequestError(
                f"Your specified page_size is {size}, but it is larger than MAX_PAGE_SIZE: "
                f"{PAGE_SIZE}. You must specify page_size with a number which is smaller "
                f"than {PAGE_SIZE}."
            )
        project_id = None
        if project is not None:
            row = self.runtime.store.project_by_name(project)
            if row is None or row["revision_id"] is None:
                raise NotFoundError(f"Project name={project} not found")
            project_id = row["id"]
        rows = self.runtime.store.attempts_newest_first(
            project_id,
            workflow if project_id is not None else None,
            include_retried,
            _int_param(last_id, "last_id") if last_id else None,
            size,
        )
        return [self.attempt(str(r["id"])) for r in rows]

    def session(self, session_id: str) -> dict[str, Any]:
        found = self.runtime.session(session_id)
        wf_id = self.state.workflow_id(found.project_id, found.workflow)
        zone = self._zone(found.last_attempt.id) if found.last_attempt else ZoneInfo("UTC")
        return shapes.session(found, wf_id, zone)

    def session_attempts(self, session_id: str) -> list[dict[str, Any]]:
        found = self.runtime.session(session_id)
        rows = self.runtime.store.attempts_of_session(int(found.id))
        return [self.attempt(str(r["id"])) for r in rows]

    def tasks(self, attempt_id: str) -> list[dict[str, Any]]:
        cancel = self.runtime.attempt(attempt_id).cancel_requested
        return [shapes.task(t, cancel) for t in self.runtime.tasks(attempt_id)]

    def kill(self, attempt_id: str) -> dict[str, Any]:
        """Digdag answers a kill with the attempt as it was read before the kill."""
        before = self.attempt(attempt_id)
        try:
            self.runtime.kill(attempt_id)
        except ConflictError:
            raise ConflictError("Session attempt already killed or finished") from None
        return before

    # logs

    def log_files(self, attempt_id: str, task: str | None) -> list[LogFile]:
        files = self.runtime.log_files(attempt_id)
        return [f for f in files if not task or f.task_name.startswith(task)]

    def read_log(self, attempt_id: str, file_name: str) -> str:
        return self.runtime.read_log(attempt_id, file_name)

    # secrets

    def secrets(self, project_id: str) -> list[str]:
        self._project_row(project_id)
        return self.state.secrets(project_id)

    def set_secret(self, project_id: str, key: str, value: Any) -> dict[str, Any]:
        row = self._project_row(project_id)
        if not valid_secret_key(key) or not isinstance(value, str):
            raise RequestError("Invalid secret")
        if not valid_secret_value(value):
            raise RequestError("Invalid secret")
        self.state.set_secret(project_id, key, value)
        return shapes.secret(key, project_id, row["name"])

    def delete_secret(self, project_id: str, key: str) -> dict[str, Any]:
        row = self._project_row(project_id)
        if not valid_secret_key(key):
            raise RequestError("Invalid secret")
        self.state.delete_secret(project_id, key)
        return shapes.secret(key, project_id, row["name"])
