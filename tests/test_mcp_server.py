"""The MCP surface through a real MCP client talking to `cdp-mcp serve` over stdio.

One server process serves the whole module (it is started like Claude Desktop starts it:
`python -m cdp_mcp.cli.main serve`, with TD_API_KEY in its environment). A blocking portal keeps
the client's event loop in a thread, so each test is plain synchronous code.
The whole listing (titles, descriptions, schemas, annotations) is held against the reviewed
snapshots by tests/test_tool_contract.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent

from tests.conftest import FIXTURES, SENTINEL_KEY

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

MAX_RESULT_BYTES = 20_000

# DESIGN.md, "MCP surface": the contract. (name -> argument names in order, required ones)
CONTRACT: dict[str, tuple[list[str], list[str]]] = {
    # new_run: only the person's say-so starts a finished pipeline over; retry_after_fix: only
    # the person's word re-opens a budget spent on a cause fixed outside the config
    "init_pipeline": (["config_path", "new_run", "retry_after_fix"], ["config_path"]),
    "generate_phase": (["config_path", "phase"], ["config_path", "phase"]),
    "push_project": (["config_path", "phase"], ["config_path", "phase"]),
    "start_workflow": (["config_path", "phase", "workflow"], ["config_path", "phase"]),
    "get_session": (["config_path", "session_id", "wait_seconds"], ["config_path"]),
    "validate_tables": (["config_path", "phase", "accept_warnings"], ["config_path", "phase"]),
    "get_logs": (["config_path", "attempt_id", "task", "offset"], ["config_path", "attempt_id"]),
    # offset: a result cut to stay small is read on from where it stopped
    "query": (["config_path", "sql", "limit", "offset"], ["config_path", "sql"]),
    "pipeline_status": (["config_path"], ["config_path"]),
    "skip_phase": (["config_path", "phase", "confirm"], ["config_path", "phase"]),
    "abort_pipeline": (["config_path"], ["config_path"]),
    "final_report": (["config_path"], ["config_path"]),
    # issue 6: secrets come from the server's environment, never from the conversation
    "set_secrets": (["config_path", "phase", "names"], ["config_path", "phase", "names"]),
    # issue 17: from the client's data to a config the person reviews
    "inspect_source": (["source", "sample_rows", "td_endpoint"], ["source"]),
    "draft_config": (
        ["output_path", "sources", "client", "config_path"],
        ["output_path", "sources"],
    ),
}
# What each tool does to the workspace and the backend (orchestrator.py): get_session records
# the outcome it reads and validate_tables records its verdict, so neither is read-only;
# start_workflow runs workflows that rebuild their tables over the old ones, and set_secrets
# replaces a secret's value.
READ_ONLY = {"pipeline_status", "query", "get_logs", "inspect_source"}
DESTRUCTIVE = {"push_project", "abort_pipeline", "start_workflow", "set_secrets"}
# Again with the same arguments changes nothing more; the others use an attempt, start a run
# or a new revision, or (init_pipeline new_run=true) a new run.
IDEMPOTENT = {
    "generate_phase",
    "get_session",
    "set_secrets",
    "get_logs",
    "query",
    "pipeline_status",
    "skip_phase",
    "abort_pipeline",
    "final_report",
    "inspect_source",
}
# Only these never reach the backend: they read or write the workspace's state and report
# (draft_config reads local folders and writes one new file).
CLOSED_WORLD = {"pipeline_status", "skip_phase", "final_report", "draft_config"}
DEFAULTS = {
    ("init_pipeline", "new_run"): False,
    ("init_pipeline", "retry_after_fix"): False,
    ("start_workflow", "workflow"): None,
    ("get_session", "session_id"): None,
    ("get_session", "wait_seconds"): 0,
    ("validate_tables", "accept_warnings"): False,
    ("get_logs", "task"): None,
    ("get_logs", "offset"): 0,
    ("query", "limit"): 100,
    ("query", "offset"): 0,
}


@dataclass
class Server:
    portal: BlockingPortal
    client: Client
    root: Path
    errlog: Path
    results: list[CallToolResult] = field(default_factory=list)

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        result: CallToolResult = self.portal.call(self.client.call_tool, tool, arguments)
        self.results.append(result)
        return result

    def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = self.call(tool, **arguments)
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None, f"{tool} returned no structured content"
        return result.structured_content

    def error(self, tool: str, **arguments: Any) -> str:
        result = self.call(tool, **arguments)
        assert result.is_error, f"{tool} should have failed: {result.structured_content}"
        text = text_of(result)
        assert "Traceback" not in text and 'File "' not in text, text
        return text

    def pipeline(self, name: str) -> Path:
        """A fresh copy of the seed's example pipeline in its own folder."""
        folder = self.root / name
        shutil.copytree(FIXTURES / "shopify", folder / "shopify")
        shutil.copy(FIXTURES / "acme.yml", folder / "acme.yml")
        return folder / "acme.yml"


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("mcp")
    errlog = root / "server.stderr"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cdp_mcp.cli.main", "serve"],
        env={"TD_API_KEY": SENTINEL_KEY, "PYTHONPATH": str(Path(__file__).parents[1])},
        cwd=str(root),
    )
    with errlog.open("w") as err, start_blocking_portal() as portal:
        client = Client(stdio_client(params, errlog=err), read_timeout_seconds=120)
        with portal.wrap_async_context_manager(client) as entered:
            srv = Server(portal, entered, root, errlog)
            yield srv
            # Nothing any tool returned during the module carries the API key.
            for result in srv.results:
                assert SENTINEL_KEY not in result.model_dump_json()


def tool_listing(server: Server) -> dict[str, Any]:
    listed = server.portal.call(server.client.list_tools)
    return {t.name: t for t in listed.tools}


# -- the contract ----------------------------------------------------------------------
def test_the_tools_are_the_designed_ones(server: Server) -> None:
    tools = tool_listing(server)
    assert set(tools) == set(CONTRACT)
    for name, (args, required) in CONTRACT.items():
        tool = tools[name]
        schema = tool.input_schema
        assert list(schema["properties"]) == args, name
        assert sorted(schema.get("required", [])) == sorted(required), name
        for arg in args:
            if (name, arg) in DEFAULTS:
                assert schema["properties"][arg].get("default") == DEFAULTS[(name, arg)]
        assert tool.description and len(tool.description) > 40, name
        ann = tool.annotations
        assert ann is not None, name
        assert ann.read_only_hint is (name in READ_ONLY), name
        assert ann.destructive_hint is (name in DESTRUCTIVE), name
        assert ann.idempotent_hint is (name in IDEMPOTENT), name
        assert ann.open_world_hint is (name not in CLOSED_WORLD), name
        # structured output: an object schema that always carries next_action or the data
        assert tool.output_schema and tool.output_schema.get("type") == "object", name
        props = tool.output_schema.get("properties", {})
        assert props, name
    for name in ("init_pipeline", "generate_phase", "push_project", "start_workflow"):
        assert "next_action" in tools[name].output_schema["properties"]
    assert {"columns", "rows", "truncated"} <= set(tools["query"].output_schema["properties"])
    assert {"status", "tasks_total", "tasks_done", "failed_tasks", "elapsed_seconds"} <= set(
        tools["get_session"].output_schema["properties"]
    )
    assert "verdict" in tools["validate_tables"].output_schema["properties"]


def test_the_prompt_and_resources_are_listed(server: Server) -> None:
    prompts = server.portal.call(server.client.list_prompts).prompts
    assert [p.name for p in prompts] == ["cdp_implement"]
    assert [a.name for a in prompts[0].arguments or []] == ["config_path"]
    templates = server.portal.call(server.client.list_resource_templates).resource_templates
    assert {t.uri_template for t in templates} == {
        "cdp://pipeline/{config_path}/state",
        "cdp://pipeline/{config_path}/report",
    }


# -- a phase through the protocol ------------------------------------------------------


def resource_uri(config: Path, what: str) -> str:
    return f"cdp://pipeline/{urllib.parse.quote(str(config), safe='')}/{what}"


def read_resource(server: Server, uri: str) -> str:
    result = server.portal.call(server.client.read_resource, uri)
    return "".join(getattr(c, "text", "") for c in result.contents)


Progress = tuple[float, float | None, str | None]


def wait_with_progress(
    server: Server, cp: str, session_id: str
) -> tuple[CallToolResult, list[Progress]]:
    events: list[Progress] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        events.append((done, total, message))

    async def call() -> CallToolResult:
        return await server.client.call_tool(
            "get_session",
            {"config_path": cp, "session_id": session_id, "wait_seconds": 60},
            progress_callback=on_progress,
        )

    result = server.portal.call(call)
    server.results.append(result)
    return result, events


def test_ingestion_through_the_protocol(server: Server) -> None:
    cfg = server.pipeline("happy")
    cp = str(cfg)

    # before init: the prompt says to call init_pipeline
    prompt = server.portal.call(server.client.get_prompt, "cdp_implement", {"config_path": cp})
    assert f"init_pipeline(config_path='{cp}')" in prompt.messages[0].content.text

    init = server.ok("init_pipeline", config_path=cp)
    assert init["client"] == "acme" and init["backend"] == "local" and init["resumed"] is False
    assert [p["phase"] for p in init["phases"]] == [
        "ingestion",
        "hist_union",
        "staging",
        "unification",
    ]
    assert init["next_action"]["tool"] == "generate_phase"

    gen = server.ok("generate_phase", config_path=cp, phase="ingestion")
    assert gen["workflows"] == ["shopify_ingest_hist", "shopify_ingest_inc"]
    assert "shopify_ingest_hist.dig" in gen["files"]
    push = server.ok("push_project", config_path=cp, phase="ingestion")
    assert push["project"] == "acme_ingestion" and push["revision"]

    for workflow in gen["workflows"]:
        start = server.ok("start_workflow", config_path=cp, phase="ingestion")
        assert start["workflow"] == workflow
        t0 = time.monotonic()
        result, events = wait_with_progress(server, cp, start["session_id"])
        assert time.monotonic() - t0 < 20, "get_session returns when the session ends"
        session = result.structured_content
        assert session is not None and session["status"] == "success", text_of(result)
        assert session["tasks_done"] == session["tasks_total"] > 5
        assert session["failed_tasks"] == []
        # progress: tasks done out of total, strictly increasing, ending at the total
        assert events, "no progress notification arrived"
        done = [e[0] for e in events]
        assert done == sorted(set(done))
        assert events[-1][0] == events[-1][1] == session["tasks_total"]
        assert all(workflow in (m or "") and "tasks" in (m or "") for _, _, m in events)

    validation = server.ok("validate_tables", config_path=cp, phase="ingestion")
    assert validation["verdict"] == "PASS"
    tables = {f"{t['database']}.{t['table']}": t for t in validation["tables"]}
    assert tables["acme_src.shopify_orders_hist"]["exists"] is True
    assert tables["acme_src.shopify_orders_hist"]["row_count"] > 0
    assert "id" in tables["acme_src.shopify_orders_hist"]["expected_columns"]
    assert validation["metrics"]["rows_total"] > 0
    assert validation["next_action"]["arguments"] == {"config_path": cp, "phase": "hist_union"}

    rows = server.ok(
        "query", config_path=cp, sql="SELECT id FROM acme_src.shopify_orders_hist", limit=2
    )
    assert rows["columns"] == ["id"] and len(rows["rows"]) == 2 and rows["truncated"] is True
    status = server.ok("pipeline_status", config_path=cp)
    ingestion = status["phases"][0]
    assert ingestion["status"] == "passed"
    assert {s["name"] for s in ingestion["steps"]} >= {"execute:shopify_ingest_hist", "validate"}
    attempt_id = ingestion["steps"][2]["attempt_id"]
    logs = server.ok("get_logs", config_path=cp, attempt_id=attempt_id)
    assert logs["next_offset"] is not None and logs["text"]
    more = server.ok("get_logs", config_path=cp, attempt_id=attempt_id, offset=logs["next_offset"])
    assert more["offset"] == logs["next_offset"] and more["text"] != logs["text"]

    # the prompt is also the resume prompt: it shows the state and names the next call
    prompt = server.portal.call(server.client.get_prompt, "cdp_implement", {"config_path": cp})
    text = prompt.messages[0].content.text
    assert "| ingestion | passed | PASS |" in text
    assert "Call `generate_phase`" in text and '"phase": "hist_union"' in text

    state = json.loads(read_resource(server, resource_uri(cfg, "state")))
    assert state["phases"]["ingestion"]["status"] == "passed"
    assert state["config_path"] == cp
    with pytest.raises(MCPError, match="no report yet: call final_report first"):
        read_resource(server, resource_uri(cfg, "report"))
    report = server.ok("final_report", config_path=cp)
    markdown = Path(report["path"]).read_text(encoding="utf-8")
    assert report["complete"] is False and "Partial report" in markdown
    assert read_resource(server, resource_uri(cfg, "report")) == markdown

    # small outputs: neither form of any result (text, structured) is over ~20 KB
    for result in server.results:
        size = max(len(text_of(result)), len(json.dumps(result.structured_content or {})))
        assert size < MAX_RESULT_BYTES, f"a tool result of {size} bytes: {text_of(result)[:200]}"


# -- failures ---------------------------------------------------------------------------
def test_failures_are_tool_errors_that_say_what_to_do(server: Server) -> None:
    cfg = server.pipeline("errors")
    cp = str(cfg)

    text = server.error("generate_phase", config_path=cp, phase="staging")
    assert "call init_pipeline first" in text
    server.ok("init_pipeline", config_path=cp)
    text = server.error("generate_phase", config_path=cp, phase="staging")
    assert "staging is locked: hist_union has not validated PASS" in text
    assert f"generate_phase(config_path='{cp}', phase='ingestion')" in text
    text = server.error("generate_phase", config_path=cp, phase="stage")
    assert "unknown phase 'stage'" in text and "hist_union" in text
    text = server.error("skip_phase", config_path=cp, phase="ingestion", confirm=False)
    assert "needs confirm=true" in text and "Ask the person" in text
    text = server.error("query", config_path=cp, sql="DELETE FROM acme_src.cdp_mcp_ingestion_log")
    assert "read-only" in text
    text = server.error("get_session", config_path=cp)
    assert "no workflow was started yet; start_workflow first" in text

    missing = cfg.parent / "nope.yml"
    text = server.error("init_pipeline", config_path=str(missing))
    assert str(missing) in text and "config file not found" in text
    bad = cfg.parent / "bad.yml"
    bad.write_text(cfg.read_text().replace("mode: both", "mode: sometimes"))
    text = server.error("init_pipeline", config_path=str(bad))
    assert "ingestion.mode" in text and "'incremental'" in text
    assert "Fix the config file, then call init_pipeline again" in text
    # a config the YAML parser rejects says where
    broken = cfg.parent / "broken.yml"
    broken.write_text("global: [client: acme\n")
    text = server.error("pipeline_status", config_path=str(broken))
    assert "not valid YAML" in text and "line" in text

    # the server is still healthy after all that
    assert server.ok("pipeline_status", config_path=cp)["phases"][0]["status"] == "pending"
    assert "Traceback" not in server.errlog.read_text()


def test_abort_while_a_session_is_being_waited_on(server: Server) -> None:
    """get_session long-polls without blocking the server: an abort gets through and
    ends the wait; the attempt is killed and the report says where the pipeline stopped."""
    cfg = server.pipeline("abort")
    cp = str(cfg)
    server.ok("init_pipeline", config_path=cp)
    gen = server.ok("generate_phase", config_path=cp, phase="ingestion")
    dig = Path(gen["directory"]) / "shopify_ingest_hist.dig"
    dig.write_text(
        dig.read_text()
        + "\n+slow_scan:\n  td>:\n  query: SELECT sum(range) FROM range(1000000000000)\n"
    )
    server.ok("push_project", config_path=cp, phase="ingestion")
    start = server.ok("start_workflow", config_path=cp, phase="ingestion")

    async def wait_and_abort() -> tuple[CallToolResult, CallToolResult, float]:
        waited: dict[str, Any] = {}

        async def wait() -> None:
            waited["result"] = await server.client.call_tool(
                "get_session", {"config_path": cp, "wait_seconds": 60}
            )
            waited["at"] = time.monotonic()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(1.5)
            aborted = await server.client.call_tool("abort_pipeline", {"config_path": cp})
            t_abort = time.monotonic()
        return waited["result"], aborted, waited["at"] - t_abort

    session, aborted, lag = server.portal.call(wait_and_abort)
    server.results += [session, aborted]
    assert not aborted.is_error, text_of(aborted)
    decision = aborted.structured_content or {}
    assert f"killed attempts {start['attempt_id']}" in decision["message"]
    assert not session.is_error, text_of(session)
    assert (session.structured_content or {})["status"] in ("killed", "error")
    assert lag < 10, "the wait ended soon after the kill"
    report = read_resource(server, resource_uri(cfg, "report"))
    assert "**Aborted**" in report and "stopped at phase **ingestion**" in report
    text = server.error("start_workflow", config_path=cp, phase="ingestion")
    assert "the pipeline was aborted" in text and "final_report" in text


def test_the_server_also_speaks_streamable_http(tmp_path: Path) -> None:
    """`cdp-mcp serve --transport streamable-http --port N`: the same tools over HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "cdp_mcp.cli.main", "serve", "--transport", "streamable-http"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "TD_API_KEY": SENTINEL_KEY,
            "PYTHONPATH": str(Path(__file__).parents[1]),
        },
        cwd=tmp_path,  # the server's working directory is its root
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the HTTP server did not come up"
                time.sleep(0.1)

        async def talk() -> tuple[set[str], CallToolResult]:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                missing = str(tmp_path / "nope.yml")
                return tools, await client.call_tool("init_pipeline", {"config_path": missing})

        tools, result = anyio.run(talk)
        assert tools == set(CONTRACT)
        assert result.is_error and "config file not found" in text_of(result)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- issue 17: from the client's data to a config ------------------------------------------
def test_inspect_then_draft_over_the_protocol(server: Server) -> None:
    from tests.test_drafting import write_crm

    folder = server.root / "draft" / "crm"
    write_crm(folder, "jsonl")
    found = server.ok("inspect_source", source=str(folder), sample_rows=100)
    (obj,) = found["objects"]
    assert (obj["name"], obj["rows"], obj["sampled"]) == ("contacts", 220, 100)
    assert obj["primary_key"]["column"] == "contact_id"
    assert found["incremental_field"]["column"] == "updated_at"
    assert found["next_action"]["tool"] == "draft_config"
    out = server.root / "draft" / "acme.yml"
    drafted = server.ok("draft_config", output_path=str(out), sources=[str(folder)], client="acme")
    assert drafted["path"] == str(out) and drafted["keys"] == ["email", "phone"]
    assert drafted["tables"] == ["crm_contacts"] and out.is_file()
    again = server.error("draft_config", output_path=str(out), sources=[str(folder)], client="acme")
    assert f"{out} exists: draft_config writes a new file only" in again
    outside = server.error("inspect_source", source="/etc")
    assert "outside the folders this server may use" in outside
