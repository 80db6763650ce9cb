"""One emulated TD site: Digdag's and API v3's operations on a LocalBackend workspace.

Synchronous (the routes call it on worker threads); answers are TD's JSON shapes and
failures are the backend's errors, which the app turns into TD's status codes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tarfile
import tempfile
import threading
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdp_mcp.backends.base import Attempt, ConflictError, LogFile, NotFoundError
from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.backends.local.archive import extract_archive
from cdp_mcp.backends.local.hooks import UnificationHandler
from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.backends.local.store import Row, parse_ts
from cdp_mcp.digdag.loader import DigError, load_dig
from cdp_mcp.emulator import shapes
from cdp_mcp.emulator.bulk_import import BulkImports
from cdp_mcp.emulator.catalog import Catalog
from cdp_mcp.emulator.errors import RequestError
from cdp_mcp.emulator.jobs import JobStore
from cdp_mcp.emulator.state import STATE_DIR, EmulatorState

__all__ = ["RequestError", "Site"]

ARCHIVE_LIMIT = 2 * 1024 * 1024  # open-source Digdag's limit on a pushed archive
SECRET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _when(value: str | None) -> datetime:
    parsed = parse_ts(value) if value else None
    return parsed or datetime.now(UTC)


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

    def close(self) -> None:
        self._open.close()

    @property
    def runtime(self) -> LocalRuntime:
        return self.backend.runtime

    # projects

    def _project_row(self, project_id: str) -> Row:
        row = self.runtime.store.project(int(project_id)) if project_id.isdigit() else None
        if row is None or row["revision_id"] is None:
            raise NotFoundError(f"Project id={project_id} not found")
        return row

    def _project_json(self, row: Row) -> dict[str, Any]:
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
        root = self.runtime._revision_dir(row, rev)
        revision = self.state.revision(row["name"], rev["name"])["name"]
        out = []
        for path in sorted(root.glob("*.dig")):
            if name is not None and path.stem != name:
                continue
            try:
                tz = str(load_dig(path, root).get("timezone") or "UTC")
            except DigError:
                tz = "UTC"
            wf_id = self.state.workflow_id(project_id, path.stem)
            out.append(shapes.workflow(wf_id, path.stem, project_id, row["name"], revision, tz))
        return out

    # attempts and sessions

    def _attempt_json(self, attempt: Attempt) -> dict[str, Any]:
        session = self.runtime.store.session(int(attempt.session_id))
        assert session is not None
        wf_id = self.state.workflow_id(attempt.project_id, attempt.workflow)
        return shapes.attempt(attempt, wf_id, session["uuid"])

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
        if not isinstance(session_time, str) or parse_ts(session_time) is None:
            raise RequestError("sessionTime= must be an ISO-8601 instant")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise RequestError("params must be an object")
        attempt, created = self.runtime.start_attempt(
            row["name"],
            workflow,
            parse_ts(session_time),
            params,
            body.get("retryAttemptName"),
            resume_from,
        )
        return self._attempt_json(attempt), created

    def attempt(self, attempt_id: str) -> dict[str, Any]:
        return self._attempt_json(self.runtime.attempt(attempt_id))

    def session(self, session_id: str) -> dict[str, Any]:
        found = self.runtime.session(session_id)
        wf_id = self.state.workflow_id(found.project_id, found.workflow)
        return shapes.session(found, wf_id)

    def session_attempts(self, session_id: str) -> list[dict[str, Any]]:
        found = self.runtime.session(session_id)
        rows = self.runtime.store.attempts_of_session(int(found.id))
        return [self.attempt(str(r["id"])) for r in rows]

    def tasks(self, attempt_id: str) -> list[dict[str, Any]]:
        cancel = self.runtime.attempt(attempt_id).cancel_requested
        return [shapes.task(t, cancel) for t in self.runtime.tasks(attempt_id)]

    def kill(self, attempt_id: str) -> None:
        try:
            self.runtime.kill(attempt_id)
        except ConflictError:
            raise ConflictError("Session attempt already killed or finished") from None

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

    def set_secret(self, project_id: str, key: str, value: Any) -> None:
        self._project_row(project_id)
        if not SECRET_KEY.match(key) or not isinstance(value, str):
            raise RequestError("Invalid secret")
        self.state.set_secret(project_id, key, value)

    def delete_secret(self, project_id: str, key: str) -> None:
        self._project_row(project_id)
        if not SECRET_KEY.match(key):
            raise RequestError("Invalid secret")
        self.state.delete_secret(project_id, key)

    # requests no route serves

    def record_unserved(self, method: str, path: str, query: str) -> None:
        with self._unserved_lock:
            self.unserved.append({"method": method, "path": path, "query": query})
