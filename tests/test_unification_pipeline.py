"""The four phases of the seed's example (tests/fixtures/acme.yml) on the local backend:
the generated id_unification.dig's call to TD's API is served by cdp_mcp.backends.local.unification, and
the generated enrichment runs unchanged on its tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.backends.local.unification.metrics import unification_metrics
from cdp_mcp.core.config import PipelineConfig, load_config
from cdp_mcp.core.phases import ORDER, Phase, expected_tables, project_name, workflows
from cdp_mcp.core.unification_tables import GRAPH_COLUMNS, lookup_columns
from cdp_mcp.generate import generate
from cdp_mcp.generate.schemas import predicted_schemas

pytestmark = pytest.mark.slow


async def run_phases(backend: LocalBackend, cfg: PipelineConfig, session: datetime) -> None:
    schemas = predicted_schemas(cfg)
    for phase in ORDER:
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


def rows(backend: LocalBackend, sql: str) -> list[tuple[Any, ...]]:
    with backend.runtime.warehouse.cursor() as cur:
        return cur.execute(sql).fetchall()


def test_acme_unifies_and_enriches_every_staging_row(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    backend = LocalBackend(cfg.workspace)
    session = datetime(2026, 1, 1, tzinfo=UTC)
    anyio.run(run_phases, backend, cfg, session)

    db, stg, idn = cfg.unif_db, cfg.stg_db, cfg.unification.id_name
    schemas = predicted_schemas(cfg)
    with backend.runtime.warehouse.cursor() as cur:
        for table in expected_tables(cfg, Phase.UNIFICATION, schemas):
            got = [r[0] for r in cur.execute(f"DESCRIBE {table.qualified}").fetchall()]
            assert set(table.columns) <= set(got), table.qualified

    # TD's tables with exactly TD's columns; the id in TD's column, not under its own name.
    described = {
        t: [r[0] for r in rows(backend, f"DESCRIBE {db}.{idn}_{t}")] for t in ("lookup", "graph")
    }
    assert described["lookup"] == [*lookup_columns("persistent_id"), "time"]
    assert described["graph"] == [*GRAPH_COLUMNS, "time"]
    # run_enrichments: TD's own enriched table of unify.yml's table, with the id.
    input_ids = dict(rows(backend, f"SELECT email, {idn} FROM {db}.enriched_unif_input"))
    assert input_ids["bob@example.com"] is not None

    customers = dict(rows(backend, f"SELECT email, {idn} FROM {db}.enriched_shopify_customers"))
    orders = rows(backend, f"SELECT id, customer_email, {idn} FROM {db}.enriched_shopify_orders")
    by_order = {r[0]: (r[1], r[2]) for r in orders}
    bob = customers["bob@example.com"]
    assert bob is not None and by_order[101] == ("bob@example.com", bob)  # customer + order
    ann = by_order[100][1]  # Ann's customer row predates start_date: only her order is in
    assert ann is not None and ann != bob
    assert customers["test@test.com"] is None  # junk email: joins nobody, gets no id
    assert by_order[102][1] is None  # no email at all
    assert customers["dee@example.com"] not in (None, ann, bob)
    for table in ("shopify_customers", "shopify_orders"):
        staged = rows(backend, f"SELECT count(*) FROM {stg}.{table}")
        enriched = rows(backend, f"SELECT count(*) FROM {db}.enriched_{table}")
        assert staged == enriched, table  # every staging row survives enrichment
    lookup = rows(backend, f"SELECT id FROM {db}.{idn}_lookup ORDER BY 1")
    assert ("test@test.com",) not in lookup

    with backend.runtime.warehouse.cursor() as cur:
        metrics = unification_metrics(cur, cfg)
    coverage = {c.table: c for c in metrics.coverage}
    assert coverage["enriched_shopify_customers"].rows_with_id == 2  # Bob, Dee (not Cy)
    assert coverage["enriched_shopify_customers"].staging_rows == 3
    assert metrics.profiles == 3 and metrics.last_run is not None
    assert metrics.last_run.method == "persistent_id" and metrics.warnings == []

    # Run the unification phase again: incremental, and every id stays.
    before = rows(backend, f"SELECT id, persistent_id FROM {db}.{idn}_lookup ORDER BY 1")
    anyio.run(run_phases, backend, cfg, session + timedelta(days=1))
    after = rows(backend, f"SELECT id, persistent_id FROM {db}.{idn}_lookup ORDER BY 1")
    assert after == before
    modes = rows(backend, f"SELECT mode FROM {db}.{idn}_runs ORDER BY rowid")
    assert [m for (m,) in modes] == ["full", "incremental"]


def test_more_ids_and_a_master_table_pass_on_the_local_backend(acme_config: Path) -> None:
    """Through the orchestrator: every phase PASS, validation having checked TD's tables of
    both ids, the enriched tables TD writes and the master table."""
    from cdp_mcp.cli.run import EXIT_PASS, run_pipeline
    from cdp_mcp.pipeline.orchestrator import Pipeline
    from tests.conftest import with_extras

    with_extras(acme_config)
    lines: list[str] = []
    outcome = anyio.run(lambda: run_pipeline(acme_config, echo=lines.append))
    assert outcome.exit_code == EXIT_PASS, (outcome.message, "\n".join(lines))
    assert [p.verdict for p in Pipeline(acme_config).status().phases] == ["PASS"] * 4
    cfg = load_config(acme_config)
    backend = LocalBackend(cfg.workspace)
    db = cfg.unif_db
    master = rows(backend, f"SELECT first_name, emails, shop_email_id FROM {db}.customer_master")
    bob = next(r for r in master if r[0] == "Bob")
    shop = rows(backend, f"SELECT id, persistent_id FROM {db}.shop_email_id_lookup")
    assert bob[1] == ["bob@example.com"] and bob[2] == dict(shop)["bob@example.com"]
    enriched = [r[0] for r in rows(backend, f"DESCRIBE {db}.enriched_shopify_customers")]
    assert enriched[-2:] == ["unified_id", "shop_email_id"]
