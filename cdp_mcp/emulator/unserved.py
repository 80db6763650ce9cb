"""What happens to a request before and after the routes: slashes merged, the unserved noted.

- td-client-python joins a path to an endpoint without a trailing slash into `//v3/...`
  (`tdclient.Client(endpoint="http://host:port")`, the form TD's docs give endpoints in);
  TD's front end merges the slashes, and so does `MergeSlashes`.
- A request no route serves gets the 404 of the host it was meant for (API v3's
  `{"error", "text", "severity"}`, or Digdag's `{"message", "status"}` under /api/) and is
  recorded in `Site.unserved` and logged, so a test can require that a client's whole
  session asked for nothing the emulator lacks.
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cdp_mcp.emulator import shapes
from cdp_mcp.emulator.site import Site

log = logging.getLogger("cdp_mcp.emulator")
_SLASHES = re.compile(r"/{2,}")
_RAW_SLASHES = re.compile(rb"/{2,}")
V3_NOT_FOUND = "Resource not found"
DIGDAG_NOT_FOUND = "HTTP 404 Not Found"
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class MergeSlashes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = dict(scope)
            scope["path"] = _SLASHES.sub("/", scope["path"])
            if scope.get("raw_path"):
                scope["raw_path"] = _RAW_SLASHES.sub(b"/", scope["raw_path"])
        await self.app(scope, receive, send)


def unserved_route(site: Site) -> Route:
    """The last route: matches every path and method the routes before it did not."""

    async def unserved(request: Request) -> Response:
        path, query = request.url.path, request.url.query
        site.record_unserved(request.method, path, query)
        log.warning("unserved request: %s %s%s", request.method, path, f"?{query}" if query else "")
        # A served path asked with another method: 405, as Digdag's JAX-RS answers it.
        routes = request.app.router.routes
        wrong_method = any(r.matches(request.scope)[0] == Match.PARTIAL for r in routes)
        status = 405 if wrong_method else 404
        if shapes.is_workflow_path(path):
            message = "HTTP 405 Method Not Allowed" if wrong_method else DIGDAG_NOT_FOUND
            return JSONResponse(shapes.error(status, message), status)
        return JSONResponse(
            shapes.v3_error("Method not allowed" if wrong_method else V3_NOT_FOUND), status
        )

    # Every method: a Route without `methods` takes only GET and HEAD, so a POST to a path
    # nothing serves would get Starlette's bare 405 and go unrecorded.
    return Route("/{path:path}", unserved, methods=list(ALL_METHODS))
