"""Start the real `cdp-mcp serve --transport streamable-http` process for the HTTP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cdp_mcp.server.http_security import TOKEN_ENV
from tests.conftest import SENTINEL_KEY

# what a client sends with its first message (the streamable HTTP transport spec)
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "cdp-mcp-tests", "version": "1"},
    },
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(host: str, port: int, *extra: str) -> list[str]:
    serve = [sys.executable, "-m", "cdp_mcp.cli.main", "serve", "--transport", "streamable-http"]
    return [*serve, "--host", host, "--port", str(port), *extra]


def serve_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["TD_API_KEY"] = SENTINEL_KEY
    if token is not None:
        env[TOKEN_ENV] = token
    return env


@dataclass
class Served:
    port: int
    log: Path  # the server's stdout and stderr

    @property
    def url(self) -> str:
        """Where a client on this machine reaches it (a 0.0.0.0 bind answers on loopback too)."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve_http(
    log: Path, host: str = "127.0.0.1", token: str | None = None, extra: Sequence[str] = ()
) -> Iterator[Served]:
    """The server on a free port, up and accepting connections; stopped on exit."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            serve_command(host, port, *extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=serve_env(token),
        )
    served = Served(port, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, f"the server exited:\n{served.output()}"
                assert time.monotonic() < deadline, (
                    f"the server did not come up:\n{served.output()}"
                )
                time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
