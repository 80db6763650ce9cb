"""Staging as the runners run it: the four phases with each engine, on the local backend and
on the TD emulator; incremental runs that stage what a full rebuild would; a rebuild that
never leaves readers without the table."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, append_rows, write_sample, write_sample_config
from cdp_mcp.cli.run import EXIT_PASS, run_pipeline
from cdp_mcp.core.config import PipelineConfig, load_config
from cdp_mcp.core.phases import Phase, project_name, workflows
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.generate import generate
from cdp_mcp.generate.schemas import predicted_schemas
from tests.conftest import SENTINEL_KEY
from tests.test_td_pipeline import on_td

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

TABLES = ("shopify_customers", "shopify_orders", "shopify_products")
# `time` and `load_timestamp` say when a run loaded a row: everything else must be equal.
STAGED = "SELECT * EXCLUDE (time, load_timestamp) FROM acme_stg.{t} ORDER BY ALL"


def staged(warehouse: Path, table: str) -> list[tuple[tuple[str, Any], ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cur = con.execute(STAGED.format(t=table))
        names = [d[0] for d in cur.description or []]
        # TD tables have no column order to speak of: compare by column name.
        rows = [tuple(sorted(zip(names, r, strict=True))) for r in cur.fetchall()]
    return sorted(rows, key=repr)


def pipeline_with_engine(acme_config: Path, engine: str, folder: str) -> Path:
    """A copy of the acme example whose staging runs on `engine`."""
    root = acme_config.parent / folder
    shutil.copytree(acme_config.parent / "shopify", root / "shopify")
    text = acme_config.read_text()
    assert "engine: presto" in text
    (root / "acme.yml").write_text(text.replace("engine: presto", f"engine: {engine}"))
    return root / "acme.yml"


def test_the_four_phases_pass_with_presto_and_with_hive_on_td(acme_config: Path) -> None:
    """Same staged rows from both engines' SQL, run through TD's APIs as Digdag's td> sends
    it (Hive's INSERT OVERWRITE pasted after its WITH clause). The local backend's twin of
    this test is tests/test_td_text.py::test_the_four_phases_pass_with_hive_staging."""
    warehouses = {}
    for engine in ("presto", "hive"):
        config = pipeline_with_engine(acme_config, engine, engine)
        site = config.parent / "td_site"
        with BackgroundServer(create_app(site, SENTINEL_KEY)) as server:
            on_td(config, server.url)
            outcome = anyio.run(lambda c=config: run_pipeline(c, echo=lambda _line: None))
        assert outcome.exit_code == EXIT_PASS, (engine, outcome.message)
        warehouses[engine] = site / ".cdp_local" / "warehouse.duckdb"
    for table in TABLES:
        presto, hive = staged(warehouses["presto"], table), staged(warehouses["hive"], table)
        assert presto == hive and presto, table


# -- incremental runs through the local runner ---------------------------------------------


async def run_phases(
    backend: LocalBackend, cfg: PipelineConfig, session: datetime, phases: tuple[Phase, ...]
) -> list[str]:
    """Run the phases' workflows; returns the full names of the staging tasks that ran."""
    schemas = predicted_schemas(cfg)
    ran: list[str] = []
    for phase in phases:
        project = generate(cfg, phase, schemas)
        await backend.push(project_name(cfg, phase), project.directory)
        for i, wf in enumerate(workflows(cfg, phase)):
            attempt = await backend.start(
                project_name(cfg, phase), wf, session_time=session + timedelta(seconds=i)
            )
            done = await backend.wait(attempt.id, timeout=120)
            tasks = await backend.tasks(done.id)
            if done.status != "success":
                failed = [(t.full_name, t.error) for t in tasks if t.state == "error"]
                raise AssertionError(f"{wf} ended {done.status}: {failed}")
            if phase is Phase.STAGING:
                ran += [t.full_name for t in tasks if t.state == "success"]
    return ran


ALL = (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING)


def staged_now(cfg: PipelineConfig, table: str) -> list[tuple[tuple[str, Any], ...]]:
    return staged(cfg.workspace / ".cdp_local" / "warehouse.duckdb", table)


@pytest.fixture
def sample(tmp_path: Path, request: pytest.FixtureRequest) -> PipelineConfig:
    write_sample(tmp_path / SAMPLE_FOLDER, rows=300)
    config = write_sample_config(tmp_path)
    engine = getattr(request, "param", "presto")
    config.write_text(config.read_text().replace("engine: presto", f"engine: {engine}"))
    return load_config(config)


@pytest.mark.parametrize("sample", ["presto", "hive"], indirect=True)
def test_incremental_staging_equals_a_full_rebuild_and_reruns_add_nothing(
    sample: PipelineConfig,
) -> None:
    cfg = sample
    backend = LocalBackend(cfg.workspace)
    session = datetime.now(UTC).replace(microsecond=0)
    build = "+transform_shopify+transform+shopify_orders+rebuild^sub+build_beside"
    changes = "+transform_shopify+transform+shopify_orders+restage_changes^sub+stage_changes"

    async def scenario() -> None:
        first = await run_phases(backend, cfg, session, ALL)
        assert build in first and changes not in first
        assert cfg.source_dir is not None
        append_rows(cfg.source_dir, "orders", 40)
        append_rows(cfg.source_dir, "customers", 15)
        second = await run_phases(backend, cfg, session + timedelta(minutes=5), ALL)
        assert changes in second and build not in second  # only the changed keys
        incremental = {t: staged_now(cfg, t) for t in TABLES}
        # the same workflow again, nothing new: the same rows, none twice
        await run_phases(backend, cfg, session + timedelta(minutes=10), (Phase.STAGING,))
        assert {t: staged_now(cfg, t) for t in TABLES} == incremental
        # a full rebuild (no watermark) stages exactly what the incremental runs did
        await backend.query("DELETE FROM staging_log", cfg.config_db)
        rebuilt = await run_phases(backend, cfg, session + timedelta(minutes=15), (Phase.STAGING,))
        assert build in rebuilt
        assert {t: staged_now(cfg, t) for t in TABLES} == incremental

    anyio.run(scenario)


def test_a_failed_rebuild_leaves_the_staging_table_as_it_was(sample: PipelineConfig) -> None:
    """Before, a rebuild dropped the table first (`DROP TABLE; CREATE TABLE AS`): a failing
    build left readers with no table at all."""
    cfg = sample
    backend = LocalBackend(cfg.workspace)
    session = datetime.now(UTC).replace(microsecond=0)

    async def scenario() -> None:
        await run_phases(backend, cfg, session, ALL)
        before = staged_now(cfg, "shopify_orders")
        # A rebuild is due (no watermark) and the build fails: a column it reads is gone.
        await backend.query("DELETE FROM staging_log", cfg.config_db)
        await backend.query(
            "ALTER TABLE shopify_orders_hist_union DROP COLUMN currency", cfg.src_db
        )
        with pytest.raises(AssertionError, match="currency"):
            await run_phases(backend, cfg, session + timedelta(minutes=5), (Phase.STAGING,))
        assert staged_now(cfg, "shopify_orders") == before

    anyio.run(scenario)
