"""Ingestion -> Hist-Union -> Staging on the embedded backend, run the way a user runs them.

The expected counts come from reading the source files in Python with an independent
timestamp parser, not from the generated SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import duckdb
import pytest

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, append_rows, write_sample, write_sample_config
from cdp_mcp.core.config import PipelineConfig, load_config, parse_timestamp
from cdp_mcp.core.file_source import find_object_file, select_sql
from cdp_mcp.core.phases import INGESTION_LOG, Phase, project_name, workflows
from cdp_mcp.generate import generate
from cdp_mcp.generate.schemas import predicted_schemas

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

PHASES = (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING)


def source_rows(cfg: PipelineConfig, obj: str) -> list[dict[str, object]]:
    assert cfg.source_dir is not None
    with duckdb.connect() as con:
        sql, cols = select_sql(find_object_file(cfg.source_dir, obj))
        rows = con.execute(sql).fetchall()
    return [dict(zip([c.name for c in cols], r, strict=True)) for r in rows]


def parsed(value: object) -> datetime | None:
    try:
        ts = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def expected_counts(cfg: PipelineConfig, obj: str) -> tuple[int, int]:
    """(rows ingested, rows staged) for an object: rows from start_date on; one per id."""
    start = parse_timestamp(cfg.ingestion.start_date)
    field = cfg.ingestion.incremental_field
    kept = [r for r in source_rows(cfg, obj) if (ts := parsed(r[field])) and ts >= start]
    ids = {r["id"] for r in kept}
    return len(kept), len(ids)


async def run_phases(backend: LocalBackend, cfg: PipelineConfig, session: datetime) -> None:
    schemas = predicted_schemas(cfg)
    for phase in PHASES:
        project = generate(cfg, phase, schemas)
        await backend.push(project_name(cfg, phase), project.directory)
        for i, wf in enumerate(workflows(cfg, phase)):
            attempt = await backend.start(
                project_name(cfg, phase), wf, session_time=session + timedelta(seconds=i)
            )
            done = await backend.wait(attempt.id, timeout=120)
            if done.status != "success":
                failed = [t for t in await backend.tasks(done.id) if t.state == "error"]
                pytest.fail(f"{wf} ended {done.status}: {[(t.full_name, t.error) for t in failed]}")


async def counts(backend: LocalBackend, db: str) -> dict[str, int]:
    return {t.name: t.count for t in await backend.tables(db)}


@pytest.fixture
def sample_config(tmp_path: Path) -> PipelineConfig:
    write_sample(tmp_path / SAMPLE_FOLDER, rows=300)
    return load_config(write_sample_config(tmp_path))


def test_three_phases_twice_then_new_rows(sample_config: PipelineConfig) -> None:
    cfg = sample_config
    backend = LocalBackend(cfg.workspace)
    session = datetime.now(UTC).replace(microsecond=0)

    async def scenario() -> None:
        await run_phases(backend, cfg, session)
        first_src = await counts(backend, cfg.src_db)
        first_stg = await counts(backend, cfg.stg_db)
        for obj in cfg.ingestion.objects:
            ingested, staged = expected_counts(cfg, obj)
            table = f"{cfg.source}_{obj}"
            loaded = first_src[f"{table}_hist"] + first_src[table]
            assert loaded == ingested, obj
            assert first_src[f"{table}_hist_union"] == ingested, obj
            assert first_stg[table] == staged, obj
        # rows before start_date exist in the sample and were left out
        assert len(source_rows(cfg, "orders")) > expected_counts(cfg, "orders")[0]

        # A second run adds nothing anywhere.
        await run_phases(backend, cfg, session + timedelta(minutes=5))
        second_src = await counts(backend, cfg.src_db)
        assert {k: v for k, v in second_src.items() if k != INGESTION_LOG} == {
            k: v for k, v in first_src.items() if k != INGESTION_LOG
        }
        assert await counts(backend, cfg.stg_db) == first_stg

        # Rows appended to a source arrive on the next incremental run, once.
        assert cfg.source_dir is not None
        append_rows(cfg.source_dir, "orders", 25)
        append_rows(cfg.source_dir, "customers", 10)
        await run_phases(backend, cfg, session + timedelta(minutes=10))
        third_src = await counts(backend, cfg.src_db)
        third_stg = await counts(backend, cfg.stg_db)
        for obj in cfg.ingestion.objects:
            ingested, staged = expected_counts(cfg, obj)
            table = f"{cfg.source}_{obj}"
            assert third_src[f"{table}_hist"] + third_src[table] == ingested, obj
            assert third_src[f"{table}_hist_union"] == ingested, obj
            assert third_stg[table] == staged, obj
        assert third_src["shopify_orders"] == first_src["shopify_orders"] + 25
        assert third_src["shopify_orders_hist"] == first_src["shopify_orders_hist"]

    anyio.run(scenario)


def test_a_load_that_was_not_logged_is_not_loaded_twice(sample_config: PipelineConfig) -> None:
    """A failure between td_load> and the log: the retried range replaces, not appends."""
    cfg = sample_config
    backend = LocalBackend(cfg.workspace)
    session = datetime.now(UTC).replace(microsecond=0)
    project = project_name(cfg, Phase.INGESTION)

    async def backfill(at: datetime) -> None:
        attempt = await backend.start(project, f"{cfg.source}_ingest_hist", session_time=at)
        assert (await backend.wait(attempt.id, timeout=60)).status == "success"

    async def scenario() -> None:
        directory = generate(cfg, Phase.INGESTION, predicted_schemas(cfg)).directory
        await backend.push(project, directory)
        await backfill(session)
        loaded = (await counts(backend, cfg.src_db))["shopify_orders_hist"]
        assert loaded == expected_counts(cfg, "orders")[0]
        # Forget that the orders backfill happened, as if its log_success had failed.
        await backend.query(f"DELETE FROM {INGESTION_LOG} WHERE object_name = 'orders'", cfg.src_db)
        await backfill(session + timedelta(minutes=1))
        assert (await counts(backend, cfg.src_db))["shopify_orders_hist"] == loaded
        await run_phases(backend, cfg, session + timedelta(minutes=2))
        after = await counts(backend, cfg.src_db)
        assert after["shopify_orders_hist"] + after["shopify_orders"] == loaded
        assert after["shopify_orders_hist_union"] == loaded

    anyio.run(scenario)
