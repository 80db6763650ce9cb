"""Hostile input over the real MCP client: refused in words, and never freezing the server.

The server is `cdp-mcp serve` over stdio, as in test_mcp_server.py (its fixture is reused).
"""

from __future__ import annotations

import fcntl
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from mcp.types import CallToolResult

from tests.test_input_limits import SHADOW, alias_bomb, with_base
from tests.test_mcp_server import Server, server, text_of

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

__all__ = ["server"]  # the module-scoped fixture, used here under its own name

# Generous: the point is that the call answers at all while another one waits.
ANSWER_SECONDS = 30.0


def test_a_file_that_is_not_a_config_is_not_echoed(server: Server) -> None:
    shadow = server.root / "shadow"
    shadow.write_text(SHADOW)
    text = server.error("init_pipeline", config_path=str(shadow))
    assert "not a cdp-mcp pipeline config" in text
    assert "SECRETHASH" not in text and "user1" not in text
    assert "internal error" not in text


def test_an_alias_bomb_is_refused_in_words(server: Server) -> None:
    folder = server.root / "bomb"
    folder.mkdir()
    (folder / "c.yml").write_text(with_base(alias_bomb()))
    text = server.error("init_pipeline", config_path=str(folder / "c.yml"))
    assert "aliases" in text and "internal error" not in text


def test_bad_paths_are_refused_in_words(server: Server) -> None:
    for path in ("a\0b", "x" * 5000, "~no_such_user_here/c.yml", str(server.root)):
        text = server.error("pipeline_status", config_path=path)
        assert "internal error" not in text, (path[:20], text)


def test_status_of_another_config_in_the_same_workspace_is_refused(server: Server) -> None:
    acme = server.pipeline("shared")
    server.ok("init_pipeline", config_path=str(acme))
    other = acme.with_name("other.yml")
    other.write_text(acme.read_text().replace("mode: both", "mode: historical"))
    text = server.error("pipeline_status", config_path=str(other))
    assert f"belongs to the pipeline of {acme}" in text


def test_a_call_waiting_for_a_lock_does_not_hold_up_other_pipelines(server: Server) -> None:
    """Another process holds pipeline A's state lock (a `cdp-mcp run` in a shell, say): the
    calls on A wait for it, and a call on pipeline B still answers meanwhile."""
    a, b = server.pipeline("locked_a"), server.pipeline("free_b")
    server.ok("init_pipeline", config_path=str(a))
    server.ok("init_pipeline", config_path=str(b))
    lock_path = a.parent / "acme_cdp" / ".cdp_state" / "state.lock"
    with lock_path.open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting: list[Future[CallToolResult]] = []
        try:
            for tool, args in (
                ("skip_phase", {"phase": "ingestion", "confirm": True}),
                ("pipeline_status", {}),
            ):
                waiting.append(
                    server.portal.start_task_soon(
                        server.client.call_tool, tool, {"config_path": str(a), **args}
                    )
                )
            time.sleep(1.0)  # both calls reach the server and wait for the lock
            answer: CallToolResult = server.portal.call(
                lambda: server.client.call_tool(
                    "pipeline_status",
                    {"config_path": str(b)},
                    read_timeout_seconds=ANSWER_SECONDS,
                )
            )
            assert not answer.is_error, text_of(answer)
            assert answer.structured_content is not None
            assert answer.structured_content["config_path"] == str(b)
            assert not any(f.done() for f in waiting), "the lock was not held"
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    skipped, status = (f.result(timeout=ANSWER_SECONDS) for f in waiting)
    assert not skipped.is_error, text_of(skipped)
    assert not status.is_error, text_of(status)


@pytest.mark.parametrize(
    "text",
    [
        "global: abc\ningestion: {source_name: s, objects: [o]}\n",
        "[" * 5000 + "]" * 5000,
        with_base(**{"global": {"client": "a" * 300}}),
        with_base(**{"global": {"workspace": "./c.yml"}}),
        with_base(**{"global": {"td_endpoint": "http://127.0.0.1:99999"}}),
        with_base(ingestion={"start_date": "0001-01-01"}),
    ],
    ids=["global-text", "deep", "long-client", "workspace-file", "bad-port", "year-one"],
)
def test_bad_configs_are_refused_in_words_over_mcp(
    server: Server, text: str, request: pytest.FixtureRequest
) -> None:
    folder = server.root / f"bad_{request.node.callspec.id}"
    folder.mkdir()
    config = folder / "c.yml"
    config.write_text(text)
    for tool in ("init_pipeline", "pipeline_status"):
        message = server.error(tool, config_path=str(config))
        assert "internal error" not in message, message
        assert str(Path(config)) in message
