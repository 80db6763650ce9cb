"""What an agent reads back: every result small enough for its context, a short text beside
the structured data, a next_action on each, a prompt with the rules from the first call.

Driven like a new user drives it: the real MCP client over stdio against `cdp-mcp serve`, an
agent-like run through all four phases on the demo's sample data, following next_action.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp.types import CallToolResult

from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, write_sample, write_sample_config
from tests.conftest import FIXTURES
from tests.test_mcp_server import MAX_RESULT_BYTES, Server, server, text_of

pytestmark = pytest.mark.slow  # whole runs over the MCP client: the full suite, not the fast lane

__all__ = ["server"]  # the module's server fixture (one `cdp-mcp serve` for this module)

SUMMARY_LINES = 8  # "a few lines": the text is a summary, the data is structured


def size_of(result: CallToolResult) -> int:
    """What the result costs the agent's context: its text plus its structured content."""
    structured = json.dumps(result.structured_content) if result.structured_content else ""
    return len(text_of(result).encode()) + len(structured.encode())


def sample_pipeline(server: Server, name: str) -> str:
    folder = server.root / name
    write_sample(folder / SAMPLE_FOLDER, rows=300)
    return str(write_sample_config(folder))


def drive(server: Server, cp: str, sizes: dict[str, int]) -> dict[str, Any]:
    """Follow next_action from init_pipeline to final_report, as a literal agent would."""
    action = server.ok("init_pipeline", config_path=cp)["next_action"]
    for _ in range(60):
        tool, arguments = action["tool"], dict(action["arguments"])
        assert tool != "ask_person", action
        if tool == "get_session":
            arguments["wait_seconds"] = 60
        result = server.call(tool, **arguments)
        assert not result.is_error, text_of(result)
        sizes[tool] = max(sizes.get(tool, 0), size_of(result))
        data = result.structured_content or {}
        if tool == "final_report":
            return data
        action = data["next_action"]
    raise AssertionError("the run did not reach final_report")


@pytest.fixture(scope="module")
def sample_run(server: Server) -> tuple[str, dict[str, int], dict[str, Any]]:
    cp = sample_pipeline(server, "sample")
    sizes: dict[str, int] = {}
    report = drive(server, cp, sizes)
    return cp, sizes, report


def test_the_text_is_a_short_summary_not_the_data_again(server: Server, sample_run: Any) -> None:
    cp, _, _ = sample_run
    result = server.call("pipeline_status", config_path=cp)
    text = text_of(result)
    assert result.structured_content is not None
    assert not text.lstrip().startswith("{"), text[:200]  # not the structured result as JSON
    assert len(text.splitlines()) <= SUMMARY_LINES, text
    assert "unification" in text and "passed" in text
    # The next action in words: once the report is written, the person decides (done, a new
    # run, or the report again).
    action = result.structured_content["next_action"]
    assert action["tool"] == "ask_person", action
    assert "next: ask the person" in text and "new_run=true" in text, text


def test_every_result_of_an_agent_like_run_fits_in_a_context(
    server: Server, sample_run: Any
) -> None:
    cp, sizes, report = sample_run
    status = server.call("pipeline_status", config_path=cp)
    phases = (status.structured_content or {})["phases"]
    attempt = next(s["attempt_id"] for s in phases[2]["steps"] if s["attempt_id"])
    # what a person then asks about: a wide table, the logs, the report again
    lacking: list[str] = []
    for tool, arguments in {
        "query": {"sql": "SELECT * FROM acme_stg.shopify_customers"},
        "get_logs": {"attempt_id": attempt},
        "final_report": {},
        "pipeline_status": {},
    }.items():
        result = server.call(tool, config_path=cp, **arguments)
        assert not result.is_error, text_of(result)
        sizes[tool] = max(sizes.get(tool, 0), size_of(result))
        lacking += [] if "next_action" in (result.structured_content or {}) else [tool]
    print("result sizes (bytes):", json.dumps(sizes, sort_keys=True))
    assert not lacking, f"no next_action in {lacking}"
    too_big = {tool: n for tool, n in sizes.items() if n > MAX_RESULT_BYTES}
    assert not too_big, too_big
    # the report's result names its files and the headline figures, not the whole document
    assert Path(report["path"]).is_file() and report["path"].endswith(".md")
    assert "markdown" not in report
    verdicts = {p["phase"]: p["verdict"] for p in report["phases"]}
    stages = ("ingestion:shopify", "hist_union:shopify", "staging:shopify", "unification")
    assert verdicts == dict.fromkeys(stages, "PASS")
    assert report["profiles"] > 0
    assert all(p["rows"] > 0 for p in report["phases"])


def test_a_wide_query_is_cut_by_bytes_and_says_how_to_page(server: Server, sample_run: Any) -> None:
    cp, _, _ = sample_run
    sql = "SELECT * FROM acme_stg.shopify_customers ORDER BY id"
    result = server.call("query", config_path=cp, sql=sql, limit=1000)
    data = result.structured_content or {}
    assert size_of(result) <= MAX_RESULT_BYTES
    assert data["truncated"] is True and 0 < data["row_count"] == len(data["rows"]) < 1000
    assert data["next_action"]["tool"] == "query"
    offset = data["next_action"]["arguments"]["offset"]
    assert offset == data["row_count"]
    more = server.ok("query", config_path=cp, sql=sql, limit=1000, offset=offset)
    assert more["rows"] and more["rows"][0] != data["rows"][0]
    whole = server.ok("query", config_path=cp, sql=f"SELECT count(*) FROM ({sql})")
    assert whole["rows"][0][0] > data["row_count"]


def test_logs_page_by_bytes(server: Server, sample_run: Any) -> None:
    cp, _, _ = sample_run
    status = server.ok("pipeline_status", config_path=cp)
    attempt = next(s["attempt_id"] for s in status["phases"][0]["steps"] if s["attempt_id"])
    offset: int | None = 0
    pages = []
    while offset is not None and len(pages) < 50:
        result = server.call("get_logs", config_path=cp, attempt_id=attempt, offset=offset)
        assert size_of(result) <= MAX_RESULT_BYTES
        page = result.structured_content or {}
        pages.append(page["text"])
        offset = page["next_offset"]
        if offset is not None:
            assert page["next_action"]["tool"] == "get_logs"
            assert page["next_action"]["arguments"]["offset"] == offset
    assert len(pages) > 1 and offset is None


def test_the_prompt_has_the_rules_before_there_is_any_state(server: Server) -> None:
    cp = sample_pipeline(server, "fresh")
    prompt = server.portal.call(server.client.get_prompt, "cdp_implement", {"config_path": cp})
    text = prompt.messages[0].content.text
    assert f"init_pipeline(config_path='{cp}')" in text
    assert "accept_warnings=true" in text and "ask" in text.lower()
    assert "Never take a secret value in the conversation" in text
    assert "databases" in text and "show" in text
    assert "final_report" in text


def test_a_warning_asks_the_person_with_the_accepting_call_as_a_choice(server: Server) -> None:
    folder = server.root / "warn"
    shutil.copytree(FIXTURES / "shopify", folder / "shopify")
    shutil.copy(FIXTURES / "acme.yml", folder / "acme.yml")
    # every product was last updated before start_date: none is loaded, a WARN
    (folder / "shopify" / "products.csv").write_text(
        "id,title,vendor,price,updated_at\n10,Mug,Acme,9.5,2022-01-01T00:00:00Z\n"
    )
    cp = str(folder / "acme.yml")
    action = server.ok("init_pipeline", config_path=cp)["next_action"]
    while action["tool"] != "validate_tables":
        arguments = dict(action["arguments"])
        if action["tool"] == "get_session":
            arguments["wait_seconds"] = 60
        action = server.ok(action["tool"], **arguments)["next_action"]
    validation = server.call("validate_tables", **action["arguments"])
    data = validation.structured_content or {}
    assert data["verdict"] == "WARN"
    decision = data["next_action"]
    assert decision["tool"] == "ask_person", decision
    assert decision["arguments"] == {"config_path": cp, "phase": "ingestion", "source": "shopify"}
    labels = [c.split(":", 1)[0] for c in decision["choices"]]
    assert labels == ["accept the warnings", "fix", "skip", "abort"]
    assert decision["choices"][0] == (
        f"accept the warnings: validate_tables(config_path='{cp}', phase='ingestion', "
        "source='shopify', accept_warnings=true)"
    )
    assert "ask the person" in text_of(validation).lower()
    # nothing was accepted: the next phase is still locked
    status = server.ok("pipeline_status", config_path=cp)
    assert status["phases"][0]["status"] == "warned"
