"""Tables an account already has: what TD's consultant plugins made there, found by the
preflight before anything runs (on the TD emulator, tables made through its API v3 jobs).

The plugins' DDL (treasure-data/aps_claude_tools): cdp-histunion's hist_union_runner.dig
`CREATE TABLE IF NOT EXISTS ${lkup_db}.inc_log (table_name varchar, project_name varchar,
inc_value bigint)` with positional INSERTs `SELECT '<t>' table_name, 'hist_union'
project_name, MAX(time) inc_value`; cdp-ingestion's docs/patterns/logging-patterns.md
`CREATE TABLE IF NOT EXISTS ${databases.src}.ingestion_log (log_id, source_name,
workflow_name, table_name, status, start_time, end_time, records_processed, error_message,
job_id, job_url, time)`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import httpx
import pytest
import yaml

from cdp_mcp.cli.run import EXIT_PASS, run_pipeline
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import SENTINEL_KEY

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

PLUGIN_INC_LOG = (
    "CREATE TABLE IF NOT EXISTS acme_config.inc_log"
    " (table_name varchar, project_name varchar, inc_value bigint)"
)
PLUGIN_INC_ROW = (
    "INSERT INTO acme_config.inc_log"
    " SELECT 'shopify_orders_hist' table_name, 'hist_union' project_name, 1999999999 inc_value"
)
PLUGIN_INGESTION_LOG = (
    "CREATE TABLE IF NOT EXISTS acme_src.ingestion_log (log_id VARCHAR, source_name VARCHAR,"
    " workflow_name VARCHAR, table_name VARCHAR, status VARCHAR, start_time VARCHAR,"
    " end_time VARCHAR, records_processed BIGINT, error_message VARCHAR, job_id VARCHAR,"
    " job_url VARCHAR, time BIGINT)"
)


def on_td(config: Path, url: str) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["global"].update(backend="treasuredata", td_endpoint=url, td_api_key="${TD_API_KEY}")
    config.write_text(yaml.safe_dump(raw))


def td_jobs(url: str, *statements: tuple[str, str]) -> None:
    """Run (database, sql) jobs through API v3, as a plugin's workflow would have."""
    with httpx.Client(
        base_url=url, headers={"Authorization": f"TD1 {SENTINEL_KEY}"}, timeout=10
    ) as http:
        for db in sorted({db for db, _ in statements}):
            http.post(f"/v3/database/create/{db}")
        for db, sql in statements:
            job = http.post(f"/v3/job/issue/presto/{db}", data={"query": sql}).json()["job_id"]
            deadline = time.monotonic() + 20
            while (status := http.get(f"/v3/job/status/{job}").json()["status"]) not in (
                "success",
                "error",
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert status == "success", http.get(f"/v3/job/show/{job}").json()["debug"]


def td_tables(url: str, db: str) -> dict[str, list[list[str]]]:
    with httpx.Client(
        base_url=url, headers={"Authorization": f"TD1 {SENTINEL_KEY}"}, timeout=10
    ) as http:
        listed = http.get(f"/v3/table/list/{db}").json()["tables"]
        return {t["name"]: json.loads(t["schema"]) for t in listed}


def test_an_account_the_plugins_worked_on_still_works(acme_config: Path) -> None:
    """The plugins' inc_log and ingestion_log are there: the preflight reads both, the
    pipeline runs through on them, the plugins' rows are untouched and keep their meaning."""
    with BackgroundServer(create_app(acme_config.parent / "td_site", SENTINEL_KEY)) as server:
        on_td(acme_config, server.url)
        td_jobs(
            server.url,
            ("acme_config", PLUGIN_INC_LOG),
            ("acme_config", PLUGIN_INC_ROW),
            ("acme_src", PLUGIN_INGESTION_LOG),
        )
        lines: list[str] = []
        outcome = anyio.run(lambda: run_pipeline(acme_config, echo=lines.append))
        log = "\n".join(lines)
        assert outcome.exit_code == EXIT_PASS, (outcome.message, log)
        assert "tables that exist already and take what the pipeline writes" in log
        assert "acme_config.inc_log (1 rows)" in log

        async def check() -> None:
            p = Pipeline(acme_config)
            rows = (
                await p.query(
                    "SELECT table_name, project_name, inc_value FROM acme_config.inc_log"
                    " ORDER BY project_name, table_name"
                )
            ).rows
            await p.aclose()
            # the plugin's row as it was; this pipeline's rows under its own project_name
            assert rows[-1] == ["shopify_orders_hist", "hist_union", 1999999999]
            ours = rows[:-1]
            assert {r[1] for r in ours} == {"acme_hist_union"}
            assert {r[0] for r in ours} == {
                f"acme_src.shopify_{o}{s}"
                for o in ("orders", "customers", "products")
                for s in ("", "_hist")
            }
            # the plugin's watermark (far in the future) did not stop this pipeline's union:
            # the backfill sides were unioned up to their own load times
            hist = [r[2] for r in ours if r[0].endswith("_hist")]
            assert hist and all(0 < w < 1999999999 for w in hist), ours

        anyio.run(check)
        # the plugin's ingestion log kept its shape; the load log is this pipeline's own
        src = td_tables(server.url, "acme_src")
        assert [c[0] for c in src["ingestion_log"]][:3] == [
            "log_id",
            "source_name",
            "workflow_name",
        ]
        assert "cdp_mcp_ingestion_log" in src


@pytest.mark.parametrize(
    ("ddl", "expected"),
    [
        (
            # this pipeline's inc_log before it took the plugins' columns
            "CREATE TABLE acme_config.inc_log AS SELECT 'acme_src.shopify_orders' AS table_name,"
            " CAST(1700000000 AS bigint) AS watermark, CAST(3 AS bigint) AS rows_added,"
            " '2024-01-01T00:00:00Z' AS session_time",
            [
                "acme_config.inc_log exists with columns (table_name:string, watermark:long, "
                "rows_added:long, session_time:string), but hist_union inserts into it by name: "
                "it lacks project_name (string), inc_value (long).",
                "`td schema:add acme_config inc_log project_name:string inc_value:long`",
                "INSERT INTO acme_config.inc_log (table_name, project_name, inc_value) SELECT "
                "table_name, 'acme_hist_union', max(watermark) FROM acme_config.inc_log",
            ],
        ),
        (
            # an inc_log whose watermark column holds text
            "CREATE TABLE acme_config.inc_log (table_name varchar, project_name varchar,"
            " inc_value varchar)",
            [
                "inc_value is string there, the pipeline writes long",
                "`td table:rename acme_config inc_log inc_log_before_cdp_mcp`",
            ],
        ),
    ],
)
def test_a_table_that_does_not_take_the_pipelines_rows_stops_init_with_the_fix(
    acme_config: Path, ddl: str, expected: list[str]
) -> None:
    with BackgroundServer(create_app(acme_config.parent / "td_site", SENTINEL_KEY)) as server:
        on_td(acme_config, server.url)
        td_jobs(server.url, ("acme_config", ddl))
        before = {db: td_tables(server.url, db) for db in ("acme_config",)}
        with pytest.raises(PipelineError) as err:
            anyio.run(Pipeline(acme_config).init)
        message = str(err.value)
        assert "nothing was created or run" in message
        for part in expected:
            assert part in message, message
        # before anything runs: no state, no project, no database or table created
        workspace = acme_config.parent / "acme_cdp"
        assert not (workspace / ".cdp_state" / "state.json").exists()
        assert not any((workspace / phase).exists() for phase in ("ingestion", "hist_union"))
        assert {db: td_tables(server.url, db) for db in ("acme_config",)} == before
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"TD1 {SENTINEL_KEY}"}, timeout=10
        ) as http:
            names = [d["name"] for d in http.get("/v3/database/list").json()["databases"]]
        assert "acme_src" not in names and "acme_stg" not in names


def test_a_data_table_with_another_type_is_reported_before_the_first_load(
    acme_config: Path,
) -> None:
    """A table under an ingestion table's name whose incremental field is a number (the
    bounds parse it as text)."""
    with BackgroundServer(create_app(acme_config.parent / "td_site", SENTINEL_KEY)) as server:
        on_td(acme_config, server.url)
        td_jobs(
            server.url,
            (
                "acme_src",
                "CREATE TABLE acme_src.shopify_orders AS SELECT 1 AS id, 1700000000 AS updated_at",
            ),
        )
        with pytest.raises(PipelineError) as err:
            anyio.run(Pipeline(acme_config).init)
        message = str(err.value)
        assert "acme_src.shopify_orders exists with columns (id:long, updated_at:long)" in message
        assert (
            "ingestion appends rows to it: updated_at is long there, the pipeline writes string"
            in message
        )
        assert "`td table:rename acme_src shopify_orders shopify_orders_before_cdp_mcp`" in message
