"""The emulator's ASGI app: TD's Digdag REST and API v3 on one origin, over a LocalBackend.

    app = create_app(workspace, api_key, faults=FaultPlan(rate=0.3, seed=7))

Pushed projects really run (on the embedded runner); tables, query jobs and bulk imports
are the local warehouse's. Requests need `Authorization: TD1 <api_key>`; errors carry TD's
status codes in the body of the host that serves the path (Digdag's `{"message",
"status"}` under /api/, API v3's `{"error", "text", "severity"}` elsewhere). A request no
route serves is recorded in `app.state.site.unserved`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cdp_mcp.backends.base import BackendError
from cdp_mcp.backends.local import UnificationHandler
from cdp_mcp.core import redact
from cdp_mcp.emulator import shapes
from cdp_mcp.emulator.errors import status_of
from cdp_mcp.emulator.faults import FaultDraw, FaultInjector, FaultPlan, silence_drop_reports
from cdp_mcp.emulator.routes_bulk_import import BulkImportRoutes
from cdp_mcp.emulator.routes_digdag import DIRECT_PREFIX, DigdagRoutes
from cdp_mcp.emulator.routes_v3 import V3Routes
from cdp_mcp.emulator.site import Site
from cdp_mcp.emulator.unserved import MergeSlashes, unserved_route

log = logging.getLogger("cdp_mcp.emulator")


class TD1Auth:
    """Refuses any request without `Authorization: TD1 <key>` (signed log URLs aside)."""

    def __init__(self, app: ASGIApp, api_key: SecretStr) -> None:
        self.app = app
        self._expected = f"TD1 {api_key.get_secret_value()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(DIRECT_PREFIX):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self._expected):
            body = shapes.error_for(scope["path"], 401, "Authentication failed")
            response = JSONResponse(body, 401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _backend_error(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    return JSONResponse(shapes.error_for(request.url.path, status, str(exc)), status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:  # a served path, but not with this method: unserved too
        site: Site = request.app.state.site
        site.record_unserved(request.method, request.url.path, request.url.query)
    body = shapes.error_for(request.url.path, exc.status_code, str(exc.detail))
    return JSONResponse(body, exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("emulator error on %s %s", request.method, request.url.path)
    message = f"internal error: {type(exc).__name__}"
    return JSONResponse(shapes.error_for(request.url.path, 500, message), 500)


def create_app(
    workspace: Path,
    api_key: SecretStr | str,
    *,
    faults: FaultPlan | None = None,
    direct_logs: bool = True,
    unification_handler: UnificationHandler | None = None,
) -> Starlette:
    key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
    redact.register(key)  # its logs and error bodies never show it
    if not key.get_secret_value():
        raise ValueError("the emulator needs an API key to check requests against")
    site = Site(Path(workspace), unification_handler)
    middleware = [Middleware(TD1Auth, api_key=key)]
    draw = FaultDraw(faults) if faults is not None and faults.rate > 0 else None
    if draw is not None:
        silence_drop_reports()
        middleware.insert(0, Middleware(FaultInjector, draw=draw))
    middleware.insert(0, Middleware(MergeSlashes))  # first: faults and auth see the real path

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            site.close()

    app = Starlette(
        routes=[
            *DigdagRoutes(site, direct_logs).routes(),
            *V3Routes(site).routes(),
            *BulkImportRoutes(site).routes(),
            unserved_route(site),  # last: whatever no route above serves
        ],
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            BackendError: _backend_error,
            ValueError: _backend_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.site = site
    app.state.faults = draw  # counts of injected faults, for tests
    return app
