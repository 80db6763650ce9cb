"""The generated ingestion phase, pushed and run through TreasureDataBackend on the emulator.

Connector `file` on TD: before each attempt the range of every object is uploaded from the
local files with TD's bulk import (pipeline/file_upload.py), as the pipeline does."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import yaml

from cdp_mcp.backends.td import PollPolicy
from cdp_mcp.backends.treasuredata import TreasureDataBackend
from cdp_mcp.core.config import load_config, parse_timestamp
from cdp_mcp.core.phases import INGESTION_LOG, Phase, expected_tables, project_name, workflows
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.generate import generate
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.file_upload import upload_ranges
from tests.conftest import SENTINEL_KEY

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

SESSION = datetime(2024, 1, 15, tzinfo=UTC)  # backfill before 2024-01-01, incremental after


def rows_to_ingest(source: Path, field: str, start: datetime) -> int:
    """Rows whose incremental field is on or after the start date, read without the SQL."""
    with source.open(newline="") as f:
        stamps = [row[field].strip() for row in csv.DictReader(f)]
    return sum(1 for s in stamps if parse_timestamp(s) >= start)


def test_ingestion_runs_on_td_and_its_tables_show_in_api_v3(acme_config: Path) -> None:
    raw = yaml.safe_load(acme_config.read_text())
    with BackgroundServer(create_app(acme_config.parent / "td_site", SENTINEL_KEY)) as server:
        raw["global"].update(backend="treasuredata", td_endpoint=server.url)
        acme_config.write_text(yaml.safe_dump(raw))
        cfg = load_config(acme_config)
        schemas = predicted_schemas(cfg)
        project = generate(cfg, Phase.INGESTION, schemas)
        name = project_name(cfg, Phase.INGESTION)

        async def scenario() -> None:
            poll = PollPolicy(first=0.02, factor=1.5, longest=0.2)
            async with TreasureDataBackend.from_config(cfg, poll=poll) as td:
                await td.check_auth()
                await td.push(name, project.directory)
                for wf in workflows(cfg, Phase.INGESTION):
                    uploads = await upload_ranges(cfg, td, wf, SESSION)
                    assert {u.object for u in uploads} == set(cfg.ingestion.objects)
                    done = await td.wait((await td.start(name, wf, SESSION)).id, timeout=60)
                    failed = [(t.full_name, t.error) for t in await td.tasks(done.id) if t.error]
                    assert done.status == "success", failed
                tables = {t.name: t for t in await td.tables(cfg.src_db)}
                for expected in expected_tables(cfg, Phase.INGESTION, schemas):
                    table = tables[expected.table]
                    assert set(expected.columns) <= {c.name for c in table.columns}, table.name
                assert cfg.source_dir is not None
                start = cfg.ingestion.start_datetime
                for obj in cfg.ingestion.objects:
                    base = f"{cfg.source}_{obj}"
                    want = rows_to_ingest(cfg.source_dir / f"{obj}.csv", "updated_at", start)
                    assert tables[f"{base}_hist"].count + tables[base].count == want, obj
                # the session splits the rows: both the backfill and the incremental load some
                assert tables["shopify_customers_hist"].count and tables["shopify_customers"].count
                logged = await td.query(
                    f"SELECT object_name, mode, rows_loaded FROM {INGESTION_LOG}"
                    " WHERE status = 'success' ORDER BY object_name, mode",
                    cfg.src_db,
                )
                assert logged.columns == ["object_name", "mode", "rows_loaded"]
                assert len(logged.rows) == 2 * len(cfg.ingestion.objects)

        anyio.run(scenario)
