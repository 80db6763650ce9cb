"""`query` with SHOW / DESCRIBE prints nothing but its answer: sqlglot's own warning
("contains unsupported syntax. Falling back to parsing as a 'Command'") is not the
person's business, on either backend (TD through the emulator, in process here)."""

from __future__ import annotations

import logging

import anyio
import pytest

from cdp_mcp.backends.local.sql import translate
from cdp_mcp.backends.readonly import read_statement
from cdp_mcp.backends.treasuredata import TreasureDataBackend
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from tests.conftest import SENTINEL_KEY

SHOWS = ["SHOW TABLES", "SHOW TABLES FROM q_quiet", "SHOW SCHEMAS", "DESCRIBE q_quiet.t"]


def sqlglot_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("sqlglot")]


@pytest.mark.parametrize("sql", SHOWS)
def test_the_statement_and_its_translation_parse_quietly(
    sql: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    read_statement(sql)  # the guard both backends run first
    translate(sql)  # the local engine's and the emulator's reading of TD's SQL
    assert sqlglot_said(caplog) == []


@pytest.mark.slow
def test_show_tables_on_treasure_data_logs_no_sqlglot_warning(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(tmp_path_factory.mktemp("td_site"), SENTINEL_KEY)

    async def scenario(url: str) -> list[list[object]]:
        async with TreasureDataBackend(url, SENTINEL_KEY) as td:
            await td.ensure_database("q_quiet")
            await td.query("CREATE TABLE t AS SELECT 1 AS n", "q_quiet")
            caplog.clear()
            shown = await td.read_query("SHOW TABLES", "q_quiet", limit=10)
            return [list(r) for r in shown.rows]

    with BackgroundServer(app) as server:
        rows = anyio.run(scenario, server.url)
    assert isinstance(rows, list)  # answered (the emulator's SHOW lists no tables yet)
    assert sqlglot_said(caplog) == []
