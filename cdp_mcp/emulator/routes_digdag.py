"""Digdag REST (TD Workflow) routes: projects, workflows, attempts, sessions, logs, secrets."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cdp_mcp.backends.base import NotFoundError
from cdp_mcp.emulator import shapes
from cdp_mcp.emulator.site import SERVER_VERSION, RequestError, Site

T = TypeVar("T")
DIRECT_PREFIX = "/_emulator/logs/"  # signed log downloads, served without the TD1 header


async def run(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(fn, *args)


class LogSigner:
    """Signs `direct` log URLs the way a pre-signed storage URL works: no API key needed."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def signature(self, attempt_id: str, file_name: str) -> str:
        message = f"{attempt_id}/{file_name}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, base: str, attempt_id: str, file_name: str) -> str:
        sig = self.signature(attempt_id, file_name)
        path = f"{DIRECT_PREFIX}{quote(attempt_id, safe='')}/{quote(file_name, safe='')}"
        return f"{base.rstrip('/')}{path}?sig={sig}"

    def valid(self, attempt_id: str, file_name: str, sig: str) -> bool:
        return hmac.compare_digest(self.signature(attempt_id, file_name), sig)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise RequestError("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _gzip_response(text: str) -> Response:
    return Response(gzip.compress(text.encode("utf-8")), media_type="application/gzip")


class DigdagRoutes:
    def __init__(self, site: Site, direct_logs: bool) -> None:
        self.site = site
        self.direct_logs = direct_logs
        self.signer = LogSigner()

    def routes(self) -> list[Route]:
        return [
            Route("/api/version", self.version, methods=["GET"]),
            Route("/api/version/check", self.version_check, methods=["GET"]),
            Route("/api/projects", self.list_projects, methods=["GET"]),
            Route("/api/projects", self.push, methods=["PUT"]),
            Route("/api/projects/{id}", self.project, methods=["GET"]),
            Route("/api/projects/{id}/workflows", self.workflows, methods=["GET"]),
            Route("/api/projects/{id}/workflows/{name}", self.workflow, methods=["GET"]),
            Route("/api/projects/{id}/secrets", self.list_secrets, methods=["GET"]),
            Route("/api/projects/{id}/secrets/{key}", self.set_secret, methods=["PUT"]),
            Route("/api/projects/{id}/secrets/{key}", self.delete_secret, methods=["DELETE"]),
            Route("/api/workflows/{id}", self.workflow_by_id, methods=["GET"]),
            Route(
                "/api/workflows/{id}/truncated_session_time",
                self.truncated_session_time,
                methods=["GET"],
            ),
            Route("/api/attempts", self.list_attempts, methods=["GET"]),
            Route("/api/attempts", self.start, methods=["PUT"]),
            Route("/api/attempts/{id}", self.attempt, methods=["GET"]),
            Route("/api/attempts/{id}/tasks", self.tasks, methods=["GET"]),
            Route("/api/attempts/{id}/kill", self.kill, methods=["POST"]),
            Route("/api/sessions/{id}", self.session, methods=["GET"]),
            Route("/api/sessions/{id}/attempts", self.session_attempts, methods=["GET"]),
            Route("/api/logs/{id}/files", self.log_files, methods=["GET"]),
            Route("/api/logs/{id}/files/{name}", self.log_file, methods=["GET"]),
            Route(DIRECT_PREFIX + "{id}/{name}", self.direct_log, methods=["GET"]),
        ]

    # version: the digdag CLI checks it before every command

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": SERVER_VERSION})

    async def version_check(self, request: Request) -> Response:
        return JSONResponse(
            {"serverVersion": SERVER_VERSION, "upgradeRecommended": False, "apiCompatible": True}
        )

    # projects

    async def list_projects(self, request: Request) -> Response:
        found = await run(self.site.projects, request.query_params.get("name"))
        return JSONResponse({"projects": found})

    async def push(self, request: Request) -> Response:
        name = request.query_params.get("project", "")
        revision = request.query_params.get("revision", "")
        if not name or not revision:
            raise RequestError("project= and revision= are required")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/gzip":
            return JSONResponse(
                shapes.error(415, "the archive must be sent as application/gzip"), 415
            )
        body = await request.body()
        declared = request.headers.get("content-length")
        if declared is None or int(declared) != len(body):
            raise RequestError("Content-Length header doesn't match with uploaded data size")
        return JSONResponse(await run(self.site.push, name, revision, body))

    async def project(self, request: Request) -> Response:
        return JSONResponse(await run(self.site.project, request.path_params["id"]))

    async def workflows(self, request: Request) -> Response:
        found = await run(
            self.site.workflows, request.path_params["id"], request.query_params.get("name")
        )
        return JSONResponse({"workflows": found})

    async def workflow(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = await run(self.site.workflows, request.path_params["id"], name)
        if not found:
            raise NotFoundError(f"Workflow {name!r} not found")
        return JSONResponse(found[0])

    async def workflow_by_id(self, request: Request) -> Response:
        return JSONResponse(await run(self.site.workflow, request.path_params["id"]))

    async def truncated_session_time(self, request: Request) -> Response:
        q = request.query_params
        found = await run(
            self.site.truncated_session_time,
            request.path_params["id"],
            q.get("session_time"),
            q.get("mode"),
        )
        return JSONResponse(found)

    # secrets

    async def list_secrets(self, request: Request) -> Response:
        keys = await run(self.site.secrets, request.path_params["id"])
        return JSONResponse({"secrets": [{"key": k} for k in keys]})

    async def set_secret(self, request: Request) -> Response:
        body = await _json_body(request)
        p = request.path_params
        return JSONResponse(await run(self.site.set_secret, p["id"], p["key"], body.get("value")))

    async def delete_secret(self, request: Request) -> Response:
        p = request.path_params
        return JSONResponse(await run(self.site.delete_secret, p["id"], p["key"]))

    # attempts and sessions

    async def list_attempts(self, request: Request) -> Response:
        q = request.query_params
        found = await run(
            self.site.attempts,
            q.get("project"),
            q.get("workflow"),
            q.get("include_retried", "").lower() in ("true", "1"),
            q.get("last_id"),
            q.get("page_size"),
        )
        return JSONResponse({"attempts": found})

    async def start(self, request: Request) -> Response:
        attempt, created = await run(self.site.start, await _json_body(request))
        # An existing session attempt is a conflict whose body is that attempt.
        return JSONResponse(attempt, 200 if created else 409)

    async def attempt(self, request: Request) -> Response:
        return JSONResponse(await run(self.site.attempt, request.path_params["id"]))

    async def tasks(self, request: Request) -> Response:
        return JSONResponse({"tasks": await run(self.site.tasks, request.path_params["id"])})

    async def kill(self, request: Request) -> Response:
        return JSONResponse(await run(self.site.kill, request.path_params["id"]))

    async def session(self, request: Request) -> Response:
        return JSONResponse(await run(self.site.session, request.path_params["id"]))

    async def session_attempts(self, request: Request) -> Response:
        found = await run(self.site.session_attempts, request.path_params["id"])
        return JSONResponse({"attempts": found})

    # logs

    async def log_files(self, request: Request) -> Response:
        attempt_id = request.path_params["id"]
        files = await run(self.site.log_files, attempt_id, request.query_params.get("task"))
        base = str(request.base_url)
        return JSONResponse(
            {
                "files": [
                    shapes.log_file(
                        f,
                        self.signer.url(base, attempt_id, f.file_name)
                        if self.direct_logs
                        else None,
                    )
                    for f in files
                ]
            }
        )

    async def log_file(self, request: Request) -> Response:
        p = request.path_params
        return _gzip_response(await run(self.site.read_log, p["id"], p["name"]))

    async def direct_log(self, request: Request) -> Response:
        p = request.path_params
        if not self.signer.valid(p["id"], p["name"], request.query_params.get("sig", "")):
            return JSONResponse(shapes.error(403, "invalid or missing signature"), 403)
        return _gzip_response(await run(self.site.read_log, p["id"], p["name"]))
