"""API v3 routes: databases, tables and query jobs (results in JSON lines, msgpack, msgpack.gz)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cdp_mcp.emulator import shapes
from cdp_mcp.emulator.jobs import RESULT_FORMATS, DuplicateDomainKey
from cdp_mcp.emulator.routes_digdag import run
from cdp_mcp.emulator.site import RequestError, Site

ENGINES = ("presto", "hive", "trino")
_MEDIA = {
    "json": "application/json",
    "msgpack": "application/x-msgpack",
    "msgpack.gz": "application/octet-stream",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
}


async def _fields(request: Request) -> dict[str, Any]:
    """Job-issue parameters from a form, multipart or JSON body, or the query string."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    fields: dict[str, Any] = dict(request.query_params)
    if kind == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            fields.update(body)
    elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        fields.update({k: v for k, v in form.items() if isinstance(v, str)})
    return fields


class V3Routes:
    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        return [
            Route("/v3/database/list", self.databases, methods=["GET"]),
            Route("/v3/database/create/{db}", self.create_database, methods=["POST"]),
            Route("/v3/table/list/{db}", self.tables, methods=["GET"]),
            Route("/v3/job/issue/{engine}/{db}", self.issue, methods=["POST"]),
            Route("/v3/job/status/{id}", self.status, methods=["GET"]),
            Route("/v3/job/show/{id}", self.show, methods=["GET"]),
            Route("/v3/job/result/{id}", self.result, methods=["GET"]),
            Route("/v3/job/kill/{id}", self.kill, methods=["POST"]),
        ]

    async def databases(self, request: Request) -> Response:
        return JSONResponse({"databases": await run(self.site.databases)})

    async def create_database(self, request: Request) -> Response:
        db = request.path_params["db"]
        await run(self.site.create_database, db)
        return JSONResponse({"database": db})

    async def tables(self, request: Request) -> Response:
        db = request.path_params["db"]
        return JSONResponse({"database": db, "tables": await run(self.site.tables, db)})

    async def issue(self, request: Request) -> Response:
        engine, db = request.path_params["engine"], request.path_params["db"]
        if engine not in ENGINES:
            raise RequestError(f"unknown job type {engine!r}; one of {', '.join(ENGINES)}")
        fields = await _fields(request)
        query = fields.get("query")
        if not isinstance(query, str) or not query.strip():
            raise RequestError("query= is required")
        await run(self.site.require_database, db)
        domain_key = fields.get("domain_key") or None
        try:
            job = self.site.jobs.issue(engine, db, query, domain_key)
        except DuplicateDomainKey as e:
            body = shapes.error(409, str(e), details={"conflicts_with": e.job_id})
            return JSONResponse(body, 409)
        return JSONResponse({"job": job.id, "job_id": job.id, "database": db})

    async def status(self, request: Request) -> Response:
        return JSONResponse(self.site.jobs.get(request.path_params["id"]).status_json())

    async def show(self, request: Request) -> Response:
        return JSONResponse(self.site.jobs.get(request.path_params["id"]).show_json())

    async def result(self, request: Request) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in RESULT_FORMATS:
            raise RequestError(f"unknown format {fmt!r}; one of {', '.join(RESULT_FORMATS)}")
        chunks = self.site.jobs.result_chunks(request.path_params["id"], fmt)
        return StreamingResponse(chunks, media_type=_MEDIA[fmt])

    async def kill(self, request: Request) -> Response:
        job_id = request.path_params["id"]
        former = self.site.jobs.kill(job_id)
        return JSONResponse({"job_id": job_id, "former_status": former})
