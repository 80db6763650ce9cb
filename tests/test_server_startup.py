"""`cdp-mcp serve` lists its tools without importing what only a tool's work needs.

The tool list is built from the tool texts and the result models; DuckDB, sqlglot, numpy,
scipy, mini-racer, jinja2, httpx, the backends, the generators, the reports and the live
board load when a tool first runs, so a client waits only for the MCP SDK and the contract
(the time itself is measured in bench/bench_cold_start.py, never asserted here). The server
runs as a client starts it, over stdio, under `python -X importtime`, which names on stderr
every module the process imports in its whole life.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import FIXTURES, SENTINEL_KEY

pytestmark = pytest.mark.slow  # a server process per test: the full suite, not the fast lane

ROOT = Path(__file__).parents[1]

# What a tool needs only when it runs (each costs tens to hundreds of milliseconds).
TOOL_ONLY = (
    "duckdb",
    "numpy",
    "scipy",
    "sqlglot",
    "py_mini_racer",
    "jinja2",
    "httpx",
    "cdp_mcp.pipeline.orchestrator",
    "cdp_mcp.pipeline.validate",
    "cdp_mcp.pipeline.reports",
    "cdp_mcp.generate",
    "cdp_mcp.backends.local",
    "cdp_mcp.backends.td",
    "cdp_mcp.backends.treasuredata",
    "cdp_mcp.cli.commands",
    "cdp_mcp.cli.progress",
    "cdp_mcp.emulator.app",
)


def _serve(cwd: Path, calls: list[tuple[str, dict[str, Any]]]) -> tuple[set[str], list[Any]]:
    """The modules a `serve` process imported while it answered initialize, tools/list and
    `calls`, and the calls' results."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-X", "importtime", "-m", "cdp_mcp.cli.main", "serve"],
        env={"TD_API_KEY": SENTINEL_KEY, "PYTHONPATH": str(ROOT)},
        cwd=str(cwd),
    )
    log = cwd / "server.stderr"

    async def session() -> list[Any]:
        with log.open("w") as err:
            async with Client(stdio_client(params, errlog=err), read_timeout_seconds=120) as c:
                assert len((await c.list_tools()).tools) == 15
                return [await c.call_tool(name, arguments) for name, arguments in calls]

    results = anyio.run(session)
    imported = set(re.findall(r"^import time:.*\| +([\w.]+)$", log.read_text(), re.MULTILINE))
    assert "cdp_mcp.server.app" in imported, "no import log: was -X importtime honoured?"
    return imported, results


def _loaded(imported: set[str], name: str) -> bool:
    return name in imported or any(m.startswith(name + ".") for m in imported)


def test_listing_the_tools_imports_none_of_what_the_tools_need(tmp_path: Path) -> None:
    imported, _ = _serve(tmp_path, [])
    assert [m for m in TOOL_ONLY if _loaded(imported, m)] == []


def test_the_first_tool_call_imports_what_it_needs_and_answers(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    shutil.copy(FIXTURES / "acme.yml", tmp_path / "acme.yml")
    imported, (init,) = _serve(
        tmp_path, [("init_pipeline", {"config_path": str(tmp_path / "acme.yml")})]
    )
    assert not init.is_error, init.content
    assert init.structured_content["preflight"][0].startswith("source files readable")
    assert init.structured_content["next_action"]["tool"] == "generate_phase"
    # the check above would see these, had the listing imported them
    for name in ("cdp_mcp.pipeline.orchestrator", "cdp_mcp.backends.local", "duckdb"):
        assert _loaded(imported, name), name
