"""The folders the MCP server may read configs and source files from and write workspaces to.

As MCP's filesystem server does it: the allowed roots come from the server's own command
line (`cdp-mcp serve --root DIR`, repeatable) or, without it, from the environment
(`CDP_MCP_ROOTS`, folders separated by os.pathsep). Without either, a client that declares
the roots capability is asked for its roots on every tool call (they can change; the SDK's
`ListRoots` resolver asks in whichever way the negotiated protocol allows), and without
those (or when it offers no `file://` root) the server's working directory is the one root. Unlike the filesystem
server, an explicit `--root` / `CDP_MCP_ROOTS` is not replaced by the client's roots: the
person who configured the server chose it, and a client must not widen it.

Every path is checked after resolving symlinks (a link inside a root pointing out of it is
outside), before anything is read or created. The CLI (`cdp-mcp run`, `generate`, ...) is
run by the person themselves and has no roots; the workspace rules of
cdp_mcp/core/workspace.py apply there as well.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from cdp_mcp.core.errors import CdpError

if TYPE_CHECKING:  # importing mcp costs ~0.5 s; the CLI's commands never need it
    from mcp import types

ROOTS_ENV = "CDP_MCP_ROOTS"
LIST_ROOTS_TIMEOUT_SECONDS = 10.0
log = logging.getLogger(__name__)

FROM_FLAG = "--root"
FROM_ENV = ROOTS_ENV
FROM_CLIENT = "the client's roots"
FROM_CWD = "the server's working directory"


class OutsideRootsError(CdpError):
    """A path the server may not use; the message names it, the roots and the fix."""


@dataclass(frozen=True)
class Roots:
    folders: tuple[Path, ...]  # resolved
    source: str  # FROM_FLAG, FROM_ENV, FROM_CLIENT or FROM_CWD

    @classmethod
    def of(cls, folders: Iterable[str | Path], source: str) -> Roots:
        resolved = dict.fromkeys(Path(f).expanduser().resolve() for f in folders)
        return cls(tuple(resolved), source)

    def contains(self, path: Path) -> bool:
        real = path.expanduser().resolve()
        return any(real.is_relative_to(folder) for folder in self.folders)

    def check(self, path: Path, what: str) -> None:
        """Refuse `path` (named as `what`, e.g. "the config file") unless it is inside a root."""
        if self.contains(path):
            return
        real = path.expanduser().resolve()
        shown = f"{path} (resolves to {real})" if real != Path(path).absolute() else str(real)
        if self.source in (FROM_FLAG, FROM_ENV):
            fix = (
                f"start the server with one more `--root {real.parent}` (or add it to {ROOTS_ENV})"
            )
        else:
            fix = (
                f"add {real.parent} to the client's roots (its workspace folders), or start the "
                f"server with `--root {real.parent}` (or {ROOTS_ENV})"
            )
        raise OutsideRootsError(
            f"{what} {shown} is outside the folders this server may use: "
            f"{', '.join(str(f) for f in self.folders)} (from {self.source}). To allow it, {fix}."
        )


def explicit_roots(flags: Iterable[str] = (), env: Mapping[str, str] | None = None) -> Roots | None:
    """The roots the person gave the server (`--root`, else CDP_MCP_ROOTS); None without."""
    flags = [f for f in flags if f]
    if flags:
        return Roots.of(flags, FROM_FLAG)
    value = (os.environ if env is None else env).get(ROOTS_ENV, "")
    folders = [f for f in value.split(os.pathsep) if f.strip()]
    return Roots.of(folders, FROM_ENV) if folders else None


def _file_paths(roots: Iterable[types.Root]) -> list[Path]:
    out = []
    for root in roots:
        uri = urlparse(str(root.uri))
        if uri.scheme == "file" and uri.netloc in ("", "localhost"):
            out.append(Path(unquote(uri.path)))
    return out


def wants_client_roots(explicit: Roots | None, capabilities: Any) -> bool:
    """Whether to ask the client: no explicit roots, and it declared the roots capability."""
    return explicit is None and capabilities is not None and capabilities.roots is not None


def roots_for(explicit: Roots | None, offered: types.ListRootsResult | None) -> Roots:
    """The roots of one call: explicit ones, else the client's `file://` roots, else the cwd."""
    if explicit is not None:
        return explicit
    client = _file_paths(offered.roots) if offered is not None else []
    if client:
        return Roots.of(client, FROM_CLIENT)
    return Roots.of([Path.cwd()], FROM_CWD)


async def ask_client(explicit: Roots | None, session: Any) -> Roots:
    """For a prompt or resource read (the SDK's resolvers serve tools only): a mid-call
    `roots/list` where the protocol allows one, else the same default as roots_for."""
    if not wants_client_roots(explicit, session.client_capabilities) or not getattr(
        session, "can_send_request", False
    ):
        return roots_for(explicit, None)
    from mcp import types

    try:
        offered = await session.send_request(
            types.ListRootsRequest(),
            types.ListRootsResult,
            request_read_timeout_seconds=LIST_ROOTS_TIMEOUT_SECONDS,
        )
    except Exception as e:  # a client error or a timeout: the default applies
        log.warning("roots/list failed (%s: %s); using the working directory", type(e).__name__, e)
        offered = None
    return roots_for(explicit, offered)
