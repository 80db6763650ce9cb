"""TD Workflow (hosted Digdag) REST on the `api-workflow` host: projects, attempts, logs, secrets."""

from __future__ import annotations

import gzip
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cdp_mcp.backends.archive import build_archive, content_revision
from cdp_mcp.backends.base import (
    Attempt,
    BackendError,
    ConflictError,
    LogFile,
    NotFoundError,
    Project,
    ProjectRejectedError,
    Session,
    Task,
)
from cdp_mcp.backends.td import mapping
from cdp_mcp.backends.td.transport import Transport, server_message
from cdp_mcp.digdag.secrets import KEY_RULE, MAX_VALUE_BYTES, valid_secret_key, valid_secret_value

_WHERE = re.compile(r"([\w./\-]+\.(?:dig|yml|yaml|sql))(?::(\d+))?")


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _instant(value: datetime) -> str:
    """Digdag's `sessionTime` request form: an instant in UTC, `...Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rejected(project: str, message: str) -> ProjectRejectedError:
    """A 400 on push names the file (and line) that does not compile, when TD says which."""
    found = _WHERE.search(message)
    file = found.group(1) if found else None
    line = int(found.group(2)) if found and found.group(2) else None
    return ProjectRejectedError(f"push of {project} refused by TD Workflow: {message}", file, line)


class DigdagClient:
    def __init__(self, transport: Transport, origin: str) -> None:
        self.http = transport
        self.origin = origin

    def _url(self, path: str) -> str:
        return f"{self.origin}{path}"

    async def _get(self, path: str, what: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.http.request("GET", self._url(path), what=what, params=params)).json()

    # projects

    async def find_project(self, name: str) -> Project | None:
        data = await self._get("/api/projects", f"look up project {name}", {"name": name})
        found = [p for p in mapping.collection(data, "projects") if p.get("name") == name]
        return mapping.project(found[0]) if found else None

    async def project(self, name: str) -> Project:
        found = await self.find_project(name)
        if found is None:
            raise NotFoundError(f"project {name!r} has not been pushed to TD Workflow")
        return found

    async def push(self, name: str, directory: Path) -> Project:
        """Upload the project unless TD already has this content as its latest revision.

        The revision name is the content hash, so an unchanged project is not pushed again.
        Digdag refuses a revision name used before (409); that is either our own retried
        delivery (the latest revision is ours: adopt it) or older content pushed again
        (upload it under a fresh name).
        """
        archive = build_archive(Path(directory).resolve())
        revision = content_revision(archive)
        current = await self.find_project(name)
        if current is not None and current.revision.split("-")[0] == revision:
            return current
        project = await self._upload(name, revision, archive)
        if project is not None:
            return project
        current = await self.find_project(name)
        if current is not None and current.revision.split("-")[0] == revision:
            return current
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        project = await self._upload(name, f"{revision}-{stamp}", archive)
        if project is None:
            raise ConflictError(f"push of {name}: TD Workflow refused revision {revision}")
        return project

    async def _upload(self, name: str, revision: str, archive: bytes) -> Project | None:
        """PUT the archive; None on 409 (the revision name exists)."""
        reply = await self.http.request(
            "PUT",
            self._url("/api/projects"),
            what=f"push project {name}",
            params={"project": name, "revision": revision},
            content=archive,
            headers={"Content-Type": "application/gzip", "Content-Length": str(len(archive))},
            accept=(400, 409),
        )
        if reply.status == 400:
            raise _rejected(name, server_message(reply.body))
        if reply.status == 409:
            return None
        return mapping.project(reply.json())

    async def workflow_id(self, project: Project, workflow: str) -> str:
        """The id of `workflow` in the project's latest revision."""
        data = await self._get(
            f"/api/projects/{_seg(project.id)}/workflows",
            f"look up workflow {workflow}",
            {"name": workflow},
        )
        found = [w for w in mapping.collection(data, "workflows") if w.get("name") == workflow]
        if found:
            return str(found[0].get("id"))
        every = await self._get(
            f"/api/projects/{_seg(project.id)}/workflows", f"list workflows of {project.name}"
        )
        names = ", ".join(
            sorted(str(w.get("name")) for w in mapping.collection(every, "workflows"))
        )
        raise NotFoundError(
            f"workflow {workflow!r} not found in project {project.name} "
            f"(workflows: {names or 'none'})"
        )

    # attempts

    async def _put_attempt(self, body: dict[str, Any], what: str) -> Attempt:
        """PUT /api/attempts; a 409 carries the session's attempt of that name: adopt it."""
        reply = await self.http.request(
            "PUT", self._url("/api/attempts"), what=what, json_body=body, accept=(409,)
        )
        data = reply.json()
        if not isinstance(data, dict) or not data.get("id"):
            raise ConflictError(f"{what}: the session exists and TD did not return its attempt")
        return mapping.attempt(data)

    async def start(
        self,
        project: str,
        workflow: str,
        session_time: datetime | None,
        params: dict[str, Any] | None,
        retry_attempt_name: str | None,
    ) -> Attempt:
        proj = await self.project(project)
        workflow = workflow.removesuffix(".dig")
        wf_id = await self.workflow_id(proj, workflow)
        # Fixed before the first try, so a retried PUT names the same session.
        when = session_time or datetime.now(UTC).replace(microsecond=0)
        body = {
            "workflowId": wf_id,
            "sessionTime": _instant(when),
            "params": params or {},
            "retryAttemptName": retry_attempt_name,
        }
        return await self._put_attempt(body, f"start {project}/{workflow}")

    async def retry(self, attempt_id: str, resume_failed: bool) -> Attempt:
        """A new attempt of the same session (new retry name), from the latest revision;
        `resume_failed` skips the tasks that succeeded (Digdag's resume mode `failed`)."""
        prev = await self.attempt(attempt_id)
        if not prev.done:
            raise ConflictError(
                f"attempt {attempt_id} is still running; kill it or wait for it first"
            )
        proj = await self.project(prev.project)
        body: dict[str, Any] = {
            "workflowId": await self.workflow_id(proj, prev.workflow),
            "sessionTime": _instant(prev.session_time),
            "params": prev.params,
            "retryAttemptName": f"retry-{uuid.uuid4().hex[:12]}",
        }
        # Digdag refuses to resume a successful attempt; rerunning it whole is the retry.
        if resume_failed and not prev.success:
            body["resume"] = {"mode": "failed", "attemptId": prev.id}
        return await self._put_attempt(body, f"retry attempt {attempt_id}")

    async def attempt(self, attempt_id: str) -> Attempt:
        data = await self._get(f"/api/attempts/{_seg(attempt_id)}", f"read attempt {attempt_id}")
        return mapping.attempt(data)

    async def session(self, session_id: str) -> Session:
        data = await self._get(f"/api/sessions/{_seg(session_id)}", f"read session {session_id}")
        last = data.get("lastAttempt") if isinstance(data, dict) else None
        # The session's summary of its last attempt lacks fields; read the attempt itself.
        attempt = await self.attempt(str(last["id"])) if isinstance(last, dict) else None
        return mapping.session(data, attempt)

    async def tasks(self, attempt_id: str) -> list[Task]:
        data = await self._get(
            f"/api/attempts/{_seg(attempt_id)}/tasks", f"list tasks of attempt {attempt_id}"
        )
        return [mapping.task(t) for t in mapping.collection(data, "tasks")]

    async def kill(self, attempt_id: str) -> Attempt:
        try:
            await self.http.request(
                "POST",
                self._url(f"/api/attempts/{_seg(attempt_id)}/kill"),
                what=f"kill attempt {attempt_id}",
                json_body={},
            )
        except ConflictError:
            current = await self.attempt(attempt_id)
            if current.cancel_requested:  # our own earlier delivery of this kill
                return current
            raise ConflictError(
                f"attempt {attempt_id} already finished ({current.status}); nothing to kill"
            ) from None
        return await self.attempt(attempt_id)

    # logs

    async def _log_handles(self, attempt_id: str, task: str | None) -> list[dict[str, Any]]:
        # TD filters by task-name prefix; a bare name ("load") matches "+wf+load..." like local.
        params = {"task": task} if task and task.startswith("+") else None
        data = await self._get(
            f"/api/logs/{_seg(attempt_id)}/files", f"list logs of attempt {attempt_id}", params
        )
        handles = mapping.collection(data, "files")
        if task and not task.startswith("+"):
            handles = [h for h in handles if f"+{task}" in str(h.get("taskName", ""))]
        return handles

    async def log_files(self, attempt_id: str, task: str | None = None) -> list[LogFile]:
        return [mapping.log_file(h) for h in await self._log_handles(attempt_id, task)]

    async def read_log(self, attempt_id: str, file_name: str) -> str:
        handles = await self._log_handles(attempt_id, None)
        handle = next((h for h in handles if h.get("fileName") == file_name), None)
        if handle is None:
            raise NotFoundError(f"attempt {attempt_id} has no log file {file_name!r}")
        what = f"download log {file_name}"
        direct = mapping.direct_url(handle)
        if direct:  # a pre-signed URL: sending the TD1 header there would leak the key
            reply = await self.http.request("GET", direct, what=what, authenticated=False)
        else:
            reply = await self.http.request(
                "GET",
                self._url(f"/api/logs/{_seg(attempt_id)}/files/{_seg(file_name)}"),
                what=what,
            )
        body = reply.body
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        return body.decode("utf-8", errors="replace")

    # secrets

    async def list_secrets(self, project: str) -> list[str]:
        proj = await self.project(project)
        data = await self._get(
            f"/api/projects/{_seg(proj.id)}/secrets", f"list secrets of {project}"
        )
        return sorted(str(s.get("key")) for s in mapping.collection(data, "secrets"))

    async def set_secret(self, project: str, key: str, value: str) -> None:
        """Set a project secret; the value is sent once and never logged or returned."""
        if not valid_secret_key(key):
            raise BackendError(f"invalid secret key {key!r}: {KEY_RULE}")
        if not valid_secret_value(value):
            raise BackendError(
                f"the value of secret {key} is over Digdag's limit of {MAX_VALUE_BYTES} bytes"
            )
        proj = await self.project(project)
        await self.http.request(
            "PUT",
            self._url(f"/api/projects/{_seg(proj.id)}/secrets/{_seg(key)}"),
            what=f"set secret {key} of {project}",
            json_body={"value": value},
        )

    async def delete_secret(self, project: str, key: str) -> None:
        proj = await self.project(project)
        await self.http.request(
            "DELETE",
            self._url(f"/api/projects/{_seg(proj.id)}/secrets/{_seg(key)}"),
            what=f"delete secret {key} of {project}",
        )
