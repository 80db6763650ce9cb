"""Who may talk to `cdp-mcp serve --transport streamable-http`, as the MCP transport spec asks
(validate Origin, bind to localhost, authenticate).

- Host and Origin are checked on every bind against an allowed list: the bound address,
  localhost, 127.0.0.1 and [::1] with the port, plus `--allow-host` / `--allow-origin`. The
  SDK's transport security does the check (421 for a Host, 403 for an Origin).
- A bind that is not loopback needs a bearer token from `CDP_MCP_HTTP_TOKEN` and refuses to
  start without one; when the variable is set, every bind asks for it. A missing or wrong
  token is answered 401 with `WWW-Authenticate: Bearer` (RFC 6750).

The token is never printed, logged or echoed. OAuth (the MCP authorization spec) is not
offered: the SDK brings a resource server's plumbing (TokenVerifier, protected-resource
metadata) but no verifier for an outside authorization server, and none is at hand here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from cdp_mcp.core.errors import CdpError

if TYPE_CHECKING:  # the SDK loads when serving, not for `cdp-mcp --help`
    from mcp.server.mcpserver import MCPServer

TOKEN_ENV = "CDP_MCP_HTTP_TOKEN"
# A token guessed over the network is the only lock on the pipeline (and its TD key).
MIN_TOKEN_LENGTH = 16
_TOKEN_HINT = "e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# a host name, IPv4 or bracketed IPv6, then an optional port or the SDK's `:*` (any port)
_HOST_VALUE = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:(\d{1,5}|\*))?$")


class HttpSecurityError(CdpError, ValueError):
    """The HTTP transport cannot start safely with these settings (one line, for the CLI)."""


@dataclass(frozen=True)
class HttpAccess:
    """The Host and Origin values served, and the bearer token asked for (None: none)."""

    hosts: tuple[str, ...]
    origins: tuple[str, ...]
    token: str | None = field(default=None, repr=False)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere


def _host_value(host: str) -> str:
    """`host` as a Host header spells it: IPv6 in brackets."""
    name = host.lower()
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def _extra_host(value: str, port: int) -> list[str]:
    host = value.strip().lower()
    if not _HOST_VALUE.match(host):
        raise HttpSecurityError(
            f"--allow-host {value!r}: give a Host header value, NAME or NAME:PORT "
            "(e.g. mcp.example.com or 10.0.0.5:8765), not a URL"
        )
    has_port = host.rsplit("]", 1)[-1].count(":") == 1
    # a bare name: as a reverse proxy on 80/443 sends it, and as clients send it to --port
    return [host] if has_port else [host, f"{host}:{port}"]


def _extra_origin(value: str) -> str:
    origin = value.strip().lower()
    parts = urlsplit(origin)
    netloc_ok = bool(parts.netloc) and "@" not in parts.netloc
    if (
        parts.scheme not in ("http", "https")
        or not netloc_ok
        or not _HOST_VALUE.match(parts.netloc)
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise HttpSecurityError(
            f"--allow-origin {value!r}: give an origin, SCHEME://HOST[:PORT] with no path "
            "(e.g. https://mcp.example.com)"
        )
    return origin


def _token(env: Mapping[str, str], host: str) -> str | None:
    token = env.get(TOKEN_ENV)
    if token is None:
        if is_loopback(host):
            return None
        raise HttpSecurityError(
            f"--host {host} is not loopback, so other machines may reach it: set {TOKEN_ENV} "
            f"to a bearer token of at least {MIN_TOKEN_LENGTH} characters ({_TOKEN_HINT}) for "
            "clients to send as 'Authorization: Bearer <token>', or serve on --host 127.0.0.1"
        )
    if not token:
        raise HttpSecurityError(f"{TOKEN_ENV} is set but empty: set the token, or unset it")
    if not all("!" <= c <= "~" for c in token):
        raise HttpSecurityError(
            f"{TOKEN_ENV} holds spaces or characters outside printable ASCII, which an "
            f"Authorization header cannot carry; {_TOKEN_HINT}"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise HttpSecurityError(
            f"{TOKEN_ENV} is shorter than {MIN_TOKEN_LENGTH} characters; {_TOKEN_HINT}"
        )
    return token


def http_access(
    host: str,
    port: int,
    env: Mapping[str, str],
    allow_hosts: Iterable[str] = (),
    allow_origins: Iterable[str] = (),
) -> HttpAccess:
    """What a server bound to host:port accepts; raises HttpSecurityError when it cannot
    start safely (a bind beyond loopback without a token, a malformed value)."""
    hosts = [f"{name}:{port}" for name in (_host_value(host), *_LOOPBACK_NAMES)]
    origins = [f"http://{h}" for h in hosts]
    for value in allow_hosts:
        hosts += _extra_host(value, port)
    origins += [_extra_origin(value) for value in allow_origins]
    return HttpAccess(
        hosts=tuple(dict.fromkeys(hosts)),
        origins=tuple(dict.fromkeys(origins)),
        token=_token(env, host),
    )


def describe(access: HttpAccess, host: str, port: int) -> str:
    """The startup line: where it serves and whom it lets in (never the token)."""
    auth = f"bearer token from {TOKEN_ENV} required" if access.token else "no token (loopback)"
    return (
        f"MCP over streamable HTTP on http://{_host_value(host)}:{port}/mcp; {auth}; "
        f"Host accepted: {', '.join(access.hosts)} (more with --allow-host)"
    )


class RequireBearerToken:
    """ASGI middleware: an HTTP request reaches the app only with `Authorization: Bearer
    <token>`; anything else is answered 401 with `WWW-Authenticate: Bearer`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        # Digests of equal length: compare_digest then leaks neither content nor length.
        self._digest = hashlib.sha256(token.encode("ascii")).digest()

    def _verdict(self, scope: Scope) -> str | None:
        """None when the token is right, else the RFC 6750 error ('' when none was sent)."""
        sent = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
        if len(sent) != 1:
            return "" if not sent else "invalid_request"
        scheme, _, credentials = sent[0].strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return ""
        digest = hashlib.sha256(credentials.strip()).digest()
        return None if hmac.compare_digest(digest, self._digest) else "invalid_token"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        error = self._verdict(scope)
        if error is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: nothing here speaks it
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = 'Bearer realm="cdp-mcp"'
        if error:
            challenge += f', error="{error}"'
        body = json.dumps(
            {
                "error": error or "unauthorized",
                "error_description": "send 'Authorization: Bearer <token>' with the token "
                f"the server was started with ({TOKEN_ENV})",
            }
        ).encode()
        status = 400 if error == "invalid_request" else 401
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def serve_streamable_http(server: MCPServer, host: str, port: int, access: HttpAccess) -> None:
    """Serve `server` on host:port until interrupted, letting in only what `access` allows."""
    import anyio
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(access.hosts),
        allowed_origins=list(access.origins),
    )
    app: ASGIApp = server.streamable_http_app(transport_security=security, host=host)
    if access.token is not None:
        app = RequireBearerToken(app, access.token)
    # as MCPServer.run("streamable-http") does, with the checks above around the app
    config = uvicorn.Config(app, host=host, port=port, log_level=server.settings.log_level.lower())
    anyio.run(uvicorn.Server(config).serve)
