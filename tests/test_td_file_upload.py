"""Connector `file` with backend treasuredata: the local extracts reach TD through its bulk
import API (the emulator serves it), with the exactly-once ranges of the local backend."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from cdp_mcp.backends.base import Backend
from cdp_mcp.cli.demo_data import append_rows, write_sample
from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import Phase, project_name
from cdp_mcp.digdag.loader import load_dig
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.generate import generate
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.file_upload import upload_ranges
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import SENTINEL_KEY

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

OBJECTS = ["orders", "customers", "products"]
LATER = datetime(2030, 1, 15, tzinfo=UTC)  # a later incremental session


def write_config(root: Path, backend: str, url: str = "") -> Path:
    data = root / "shopify"
    if not data.exists():
        write_sample(data, rows=120)
    raw: dict[str, Any] = {
        "global": {"client": "acme", "backend": backend},
        "ingestion": {
            "source_name": "shopify",
            "connector": "file",
            "source_path": "./shopify",
            "objects": OBJECTS,
        },
    }
    if backend == "treasuredata":
        raw["global"].update(td_endpoint=url, td_api_key="${TD_API_KEY}")
    path = root / "acme.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_td_project_holds_no_path_of_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TD's servers cannot read local files: no td_load> of a path; the load appends from the
    landing table the pipeline uploads to."""
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    cfg = load_config(write_config(tmp_path, "treasuredata", "http://127.0.0.1:9"))
    project = generate(cfg, Phase.INGESTION, predicted_schemas(cfg))
    texts = {f: (project.directory / f).read_text() for f in project.files}
    assert cfg.source_dir is not None
    assert not [f for f, text in texts.items() if str(cfg.source_dir) in text]
    assert not [f for f, text in texts.items() if "td_load>:" in text or "type: file" in text]
    dig = load_dig(project.directory / "shopify_ingest_hist.dig", project.directory)
    steps = dig["+load_historical"]["_do"]
    assert steps["+load"] == {"td>": "queries/load_landing.sql"}
    entries = yaml.safe_load(texts["config/shopify_datasources.yml"])["hist_datasources"]
    assert [e["landing_table"] for e in entries] == [f"shopify_{o}_hist_landing" for o in OBJECTS]


def checksums(rows: list[list[Any]], columns: list[str]) -> tuple[int, str]:
    """(count, an order-independent checksum of the rows without TD's `time`)."""
    keep = [i for i, c in enumerate(columns) if c != "time"]
    lines = sorted(
        json.dumps({columns[i]: r[i] for i in keep}, sort_keys=True, default=str) for r in rows
    )
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


async def table_facts(backend: Backend, db: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for obj in OBJECTS:
        for table in (f"shopify_{obj}_hist", f"shopify_{obj}"):
            result = await backend.query(f'SELECT * FROM "{db}"."{table}"', db)
            facts[table] = checksums(result.rows, result.columns)
    log = await backend.query(
        "SELECT object_name, mode, status, rows_loaded, watermark FROM cdp_mcp_ingestion_log", db
    )
    facts["ingestion_log"] = sorted(map(tuple, log.rows))
    facts["landing tables left"] = sorted(
        t.name for t in await backend.tables(db) if t.name.endswith("_landing")
    )
    return facts


async def run_ingestion(config: Path) -> tuple[Pipeline, dict[str, Any]]:
    """The ingestion phase through the orchestrator; returns it and the upload details."""
    p = Pipeline(config)
    await p.init()
    await p.generate_phase("ingestion")
    await p.push_project("ingestion")
    uploaded: dict[str, Any] = {}
    for _ in range(2):
        started = await p.start_workflow("ingestion")
        done = await p.backend.wait(started.attempt_id, 120)
        errors = [(t.full_name, t.error) for t in await p.backend.tasks(done.id) if t.error]
        assert done.status == "success", errors
        await p.get_session(started.session_id)
        step = p.store.load().phase(Phase.INGESTION).step(f"execute:{started.workflow}")
        uploaded[started.workflow] = step.details.get("uploaded")
    verdict = await p.validate_tables("ingestion")
    assert verdict.verdict == "PASS", verdict
    return p, uploaded


async def run_later_increment(p: Pipeline, uploads: bool) -> None:
    """Rows appended to the files arrive with the next incremental session, exactly once;
    a session after it finds nothing new."""
    assert p.cfg.source_dir is not None
    for obj in OBJECTS:
        append_rows(p.cfg.source_dir, obj, 7)
    project = project_name(p.cfg, Phase.INGESTION)
    for when in (LATER, LATER + timedelta(days=1)):
        if uploads:
            await upload_ranges(p.cfg, p.backend, "shopify_ingest_inc", when)
        attempt = await p.backend.start(project, "shopify_ingest_inc", when)
        assert (await p.backend.wait(attempt.id, 120)).status == "success"


def test_ingestion_on_td_loads_the_same_tables_as_the_local_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    local_root, td_root = tmp_path / "local", tmp_path / "td"
    local_root.mkdir()
    write_sample(local_root / "shopify", rows=120)
    shutil.copytree(local_root / "shopify", td_root / "shopify")

    async def local_run() -> dict[str, Any]:
        p, uploaded = await run_ingestion(write_config(local_root, "local"))
        assert uploaded == {"shopify_ingest_hist": None, "shopify_ingest_inc": None}
        first = await table_facts(p.backend, p.cfg.src_db)
        await run_later_increment(p, uploads=False)
        second = await table_facts(p.backend, p.cfg.src_db)
        await p.aclose()
        return {"first": first, "second": second}

    local = anyio.run(local_run)
    app = create_app(tmp_path / "td_site", SENTINEL_KEY)
    with BackgroundServer(app) as server:

        async def td_run() -> dict[str, Any]:
            p, uploaded = await run_ingestion(write_config(td_root, "treasuredata", server.url))
            # every object's range went up through bulk import before each attempt
            assert set(uploaded["shopify_ingest_hist"]) == set(OBJECTS)
            assert set(uploaded["shopify_ingest_inc"]) == set(OBJECTS)
            first = await table_facts(p.backend, p.cfg.src_db)
            hist_rows = {o: first[f"shopify_{o}_hist"][0] for o in OBJECTS}
            assert uploaded["shopify_ingest_hist"] == hist_rows
            await run_later_increment(p, uploads=True)
            second = await table_facts(p.backend, p.cfg.src_db)
            await p.aclose()
            return {"first": first, "second": second}

        td = anyio.run(td_run)
        assert app.state.site.unserved == []
    assert td == local
    # the later increment loaded the appended rows once, on both
    for obj in OBJECTS:
        assert local["second"][f"shopify_{obj}"][0] == local["first"][f"shopify_{obj}"][0] + 7
    assert local["first"]["landing tables left"] == []
    assert td["second"]["landing tables left"] == []


def test_an_upload_repeated_before_the_start_loads_the_range_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start interrupted after its upload uploads again: the landing table is replaced, so
    the attempt still appends each row of its range once."""
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    with BackgroundServer(create_app(tmp_path / "td_site", SENTINEL_KEY)) as server:
        config = write_config(tmp_path, "treasuredata", server.url)

        async def scenario() -> None:
            p = Pipeline(config)
            await p.init()
            await p.generate_phase("ingestion")
            await p.push_project("ingestion")
            first = await upload_ranges(p.cfg, p.backend, "shopify_ingest_hist", LATER)
            second = await upload_ranges(p.cfg, p.backend, "shopify_ingest_hist", LATER)
            assert [u.rows for u in first] == [u.rows for u in second]
            name = project_name(p.cfg, Phase.INGESTION)
            attempt = await p.backend.start(name, "shopify_ingest_hist", LATER)
            assert (await p.backend.wait(attempt.id, 120)).status == "success"
            for u in second:
                count = await p.backend.query(
                    f'SELECT count(*) FROM "shopify_{u.object}_hist"', p.cfg.src_db
                )
                assert count.rows == [[u.rows]]
            await p.aclose()

        anyio.run(scenario)


def test_an_unreadable_extract_is_refused_by_init_not_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    with BackgroundServer(create_app(tmp_path / "td_site", SENTINEL_KEY)) as server:
        config = write_config(tmp_path, "treasuredata", server.url)
        raw = yaml.safe_load(config.read_text())
        raw["ingestion"]["incremental_field"] = "id"  # a number, not a timestamp
        config.write_text(yaml.safe_dump(raw))
        with pytest.raises(PipelineError, match="must hold timestamps as text"):
            anyio.run(Pipeline(config).init)
