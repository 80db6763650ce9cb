"""API v3 bulk import routes (`/v3/bulk_import/...`), as td-client-python's BulkImportAPI,
td-client-ruby and td-client-java call them: GETs and POSTs, the part upload a PUT of
msgpack.gz bytes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cdp_mcp.emulator.bulk_import import check_part_name
from cdp_mcp.emulator.routes_digdag import run
from cdp_mcp.emulator.routes_v3 import fields
from cdp_mcp.emulator.site import Site

PREFIX = "/v3/bulk_import"


def _named(name: str) -> dict[str, str]:
    return {"name": name, "bulk_import": name}


class BulkImportRoutes:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.bulk = site.bulk_imports

    def routes(self) -> list[Route]:
        p = PREFIX
        return [
            Route(f"{p}/create/{{name}}/{{db}}/{{table}}", self.create, methods=["POST"]),
            Route(f"{p}/show/{{name}}", self.show, methods=["GET"]),
            Route(f"{p}/list", self.list, methods=["GET"]),
            Route(f"{p}/list_parts/{{name}}", self.parts, methods=["GET"]),
            Route(f"{p}/upload_part/{{name}}/{{part}}", self.upload, methods=["PUT"]),
            Route(f"{p}/delete_part/{{name}}/{{part}}", self.delete_part, methods=["POST"]),
            Route(f"{p}/freeze/{{name}}", self.freeze, methods=["POST"]),
            Route(f"{p}/unfreeze/{{name}}", self.unfreeze, methods=["POST"]),
            Route(f"{p}/perform/{{name}}", self.perform, methods=["POST"]),
            Route(f"{p}/commit/{{name}}", self.commit, methods=["POST"]),
            Route(f"{p}/delete/{{name}}", self.delete, methods=["POST"]),
            Route(f"{p}/error_records/{{name}}", self.error_records, methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        p = request.path_params
        params = {k: str(v) for k, v in (await fields(request)).items()}
        await run(self.bulk.create, p["name"], p["db"], p["table"], params)
        return JSONResponse(_named(p["name"]))

    async def show(self, request: Request) -> Response:
        return JSONResponse(await run(self.bulk.show, request.path_params["name"]))

    async def list(self, request: Request) -> Response:
        return JSONResponse({"bulk_imports": await run(self.bulk.sessions)})

    async def parts(self, request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse({"parts": await run(self.bulk.parts, name), **_named(name)})

    async def upload(self, request: Request) -> Response:
        name, part = request.path_params["name"], request.path_params["part"]
        check_part_name(part)
        await run(self.bulk.check_uploadable, name)  # before reading a body to throw away
        tmp = await run(self.bulk.part_tempfile, name)
        try:
            with tmp.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        await run(self.bulk.add_part, name, part, tmp)
        return JSONResponse({**_named(name), "part_name": part})

    async def delete_part(self, request: Request) -> Response:
        name, part = request.path_params["name"], request.path_params["part"]
        await run(self.bulk.delete_part, name, part)
        return JSONResponse({**_named(name), "part_name": part})

    async def freeze(self, request: Request) -> Response:
        await run(self.bulk.freeze, request.path_params["name"], True)
        return JSONResponse(_named(request.path_params["name"]))

    async def unfreeze(self, request: Request) -> Response:
        await run(self.bulk.freeze, request.path_params["name"], False)
        return JSONResponse(_named(request.path_params["name"]))

    async def perform(self, request: Request) -> Response:
        name = request.path_params["name"]
        job_id = await run(self.bulk.perform, name)
        return JSONResponse({**_named(name), "job_id": int(job_id)})

    async def commit(self, request: Request) -> Response:
        await run(self.bulk.commit, request.path_params["name"])
        return JSONResponse(_named(request.path_params["name"]))

    async def delete(self, request: Request) -> Response:
        await run(self.bulk.delete, request.path_params["name"])
        return JSONResponse(_named(request.path_params["name"]))

    async def error_records(self, request: Request) -> Response:
        data = await run(self.bulk.error_records, request.path_params["name"])
        return Response(data, media_type="application/octet-stream")
