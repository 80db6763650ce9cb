"""API v3 routes: databases, tables and jobs, as TD's clients call them.

Paths, methods and parameters are those of td-client-python (`tdclient/*_api.py`), with
td-client-java's additions (`database/show`, `table/show`, `table/rename`). Parameters come
from the query string or the body (form, multipart, as td-client-python's urllib3 sends a
dict, or JSON). Errors are API v3's `{"error", "text", "severity"}` bodies.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cdp_mcp.emulator import results, shapes
from cdp_mcp.emulator.errors import RequestError
from cdp_mcp.emulator.jobs import QUERY_TYPES, STATUSES, DuplicateDomainKey
from cdp_mcp.emulator.routes_digdag import run
from cdp_mcp.emulator.site import Site

log = logging.getLogger("cdp_mcp.emulator")
PRIORITIES = {"VERY LOW": -2, "LOW": -1, "NORMAL": 0, "NORM": 0, "HIGH": 1, "VERY HIGH": 2}


async def fields(request: Request) -> dict[str, Any]:
    """Parameters from the query string and a form, multipart or JSON body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    found: dict[str, Any] = dict(request.query_params)
    if kind == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise RequestError("the request body is not JSON") from None
        if isinstance(body, dict):
            found.update(body)
    elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        found.update({k: v for k, v in form.items() if isinstance(v, str)})
    return found


def _int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise RequestError(f"{name}= must be an integer, got {value!r}") from None


def _priority(value: Any) -> int:
    text = str(value).strip().upper().replace("_", " ").replace("-", " ")
    if text in PRIORITIES:
        return PRIORITIES[text]
    try:
        number = int(text)
    except ValueError:
        number = 99
    if not -2 <= number <= 2:
        raise RequestError(f"priority= must be -2 to 2 or a name like HIGH, got {value!r}")
    return number


class V3Routes:
    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        r = Route
        return [
            r("/v3/database/list", self.databases, methods=["GET"]),
            r("/v3/database/show/{db}", self.database, methods=["GET"]),
            r("/v3/database/create/{db}", self.create_database, methods=["POST"]),
            r("/v3/database/delete/{db}", self.delete_database, methods=["POST"]),
            r("/v3/table/list/{db}", self.tables, methods=["GET"]),
            r("/v3/table/show/{db}/{table}", self.table, methods=["GET"]),
            r("/v3/table/create/{db}/{table}/{type}", self.create_table, methods=["POST"]),
            r("/v3/table/delete/{db}/{table}", self.delete_table, methods=["POST"]),
            r("/v3/table/rename/{db}/{table}/{new}", self.rename_table, methods=["POST"]),
            r("/v3/table/swap/{db}/{table1}/{table2}", self.swap_tables, methods=["POST"]),
            r("/v3/job/issue/{type}/{db}", self.issue, methods=["POST"]),
            r("/v3/job/list", self.jobs, methods=["GET"]),
            r("/v3/job/status/{id}", self.status, methods=["GET"]),
            r("/v3/job/show/{id}", self.show, methods=["GET"]),
            r("/v3/job/result/{id}", self.result, methods=["GET"]),
            r("/v3/job/kill/{id}", self.kill, methods=["POST"]),
        ]

    # databases

    async def databases(self, request: Request) -> Response:
        return JSONResponse({"databases": await run(self.site.catalog.databases)})

    async def database(self, request: Request) -> Response:
        return JSONResponse(await run(self.site.catalog.database, request.path_params["db"]))

    async def create_database(self, request: Request) -> Response:
        db = request.path_params["db"]
        await run(self.site.catalog.create_database, db)
        return JSONResponse({"database": db})

    async def delete_database(self, request: Request) -> Response:
        db = request.path_params["db"]
        await run(self.site.catalog.delete_database, db)
        return JSONResponse({"database": db})

    # tables

    async def tables(self, request: Request) -> Response:
        db = request.path_params["db"]
        return JSONResponse({"database": db, "tables": await run(self.site.catalog.tables, db)})

    async def table(self, request: Request) -> Response:
        p = request.path_params
        return JSONResponse(await run(self.site.catalog.table, p["db"], p["table"]))

    async def create_table(self, request: Request) -> Response:
        p = request.path_params
        await run(self.site.catalog.create_table, p["db"], p["table"], p["type"])
        return JSONResponse({"database": p["db"], "table": p["table"], "type": p["type"]})

    async def delete_table(self, request: Request) -> Response:
        p = request.path_params
        await run(self.site.catalog.delete_table, p["db"], p["table"])
        return JSONResponse({"database": p["db"], "table": p["table"], "type": "log"})

    async def rename_table(self, request: Request) -> Response:
        p = request.path_params
        overwrite = results.flag((await fields(request)).get("overwrite"))
        await run(self.site.catalog.rename_table, p["db"], p["table"], p["new"], overwrite)
        return JSONResponse({"database": p["db"], "table": p["new"], "type": "log"})

    async def swap_tables(self, request: Request) -> Response:
        p = request.path_params
        await run(self.site.catalog.swap_tables, p["db"], p["table1"], p["table2"])
        return JSONResponse({"database": p["db"], "table1": p["table1"], "table2": p["table2"]})

    # jobs

    async def issue(self, request: Request) -> Response:
        engine, db = request.path_params["type"], request.path_params["db"]
        if engine == "bulkload":
            return self._bulkload_unserved(request)
        if engine not in QUERY_TYPES:
            raise RequestError(f"unknown job type {engine!r}; one of {', '.join(QUERY_TYPES)}")
        params = await fields(request)
        query = params.get("query")
        if not isinstance(query, str) or not query.strip():
            raise RequestError("query= is required")
        await run(self.site.catalog.require_database, db)
        options = {
            "priority": _priority(params.get("priority", 0)),
            "retry_limit": _int(params, "retry_limit", 0),
            "result_url": str(params.get("result") or ""),
            "scheduled_time": _int(params, "scheduled_time"),
        }
        try:
            job = self.site.jobs.issue(
                engine, db, query, str(params.get("domain_key") or "") or None, **options
            )
        except DuplicateDomainKey as e:
            body = shapes.v3_error(str(e), details={"conflicts_with": e.job_id})
            return JSONResponse(body, 409)
        return JSONResponse({"job": job.id, "job_id": job.id, "database": db})

    def _bulkload_unserved(self, request: Request) -> Response:
        """`td_load>: config.yml` issues its config as a `bulkload` job (TD's data connector,
        which runs the config's `in:` on TD's servers). The emulator runs no connector, so
        the request is recorded as unserved, like a path no route serves."""
        path, query = request.url.path, request.url.query
        self.site.record_unserved(request.method, path, query)
        log.warning("unserved request: %s %s (data connector jobs)", request.method, path)
        message = (
            "bulkload jobs (td_load>'s data connector) run only on Treasure Data; "
            "the emulator runs no data connector"
        )
        return JSONResponse(shapes.v3_error(message), 404)

    async def jobs(self, request: Request) -> Response:
        params = dict(request.query_params)
        first = _int(params, "from", 0) or 0
        last = _int(params, "to")
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise RequestError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        found = self.site.jobs.list(first, last, status)
        return JSONResponse(
            {
                "jobs": [j.summary_json() for j in found],
                "count": len(self.site.jobs),
                "from": first,
                "to": last,
            }
        )

    async def status(self, request: Request) -> Response:
        return JSONResponse(self.site.jobs.get(request.path_params["id"]).status_json())

    async def show(self, request: Request) -> Response:
        return JSONResponse(self.site.jobs.get(request.path_params["id"]).show_json())

    async def result(self, request: Request) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in results.FORMATS:
            raise RequestError(f"unknown format {fmt!r}; one of {', '.join(results.FORMATS)}")
        job = self.site.jobs.result(request.path_params["id"])
        if fmt == "msgpack.gz":
            assert job.packed is not None
            return _bytes(job.packed, request.headers.get("range"), results.MEDIA[fmt])
        header = results.flag(request.query_params.get("header"))
        o = job.outcome
        chunks = results.encode(o.rows, o.columns, fmt, header)
        return StreamingResponse(chunks, media_type=results.MEDIA[fmt])

    async def kill(self, request: Request) -> Response:
        job_id = request.path_params["id"]
        former = self.site.jobs.kill(job_id)
        return JSONResponse({"job_id": job_id, "former_status": former})


def _bytes(data: bytes, range_header: str | None, media_type: str) -> Response:
    """The whole body, or the one byte range asked for (206)."""
    size = len(data)
    if range_header:
        try:
            span = results.byte_range(range_header, size)
        except results.Unsatisfiable:
            return Response(
                status_code=416, headers={"Content-Range": f"bytes */{size}"}, media_type=media_type
            )
        if span is not None:
            first, last = span
            return Response(
                data[first : last + 1],
                status_code=206,
                media_type=media_type,
                headers={"Content-Range": f"bytes {first}-{last}/{size}", "Accept-Ranges": "bytes"},
            )
    return Response(data, media_type=media_type, headers={"Accept-Ranges": "bytes"})
