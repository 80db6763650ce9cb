"""Three sources (shop, CRM, email tool) through every stage on the `treasuredata` backend,
against the TD emulator on 127.0.0.1: each source's projects pushed to TD Workflow under its
own name, the cross-source figures read through TD's API, the same people linked as the
ground truth says, and the key in no file."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from cdp_mcp.cli.demo_sources import write_demo, write_demo_config
from cdp_mcp.cli.run import EXIT_FAILED, EXIT_PASS, run_pipeline
from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import Phase
from cdp_mcp.core.tools import ASK_PERSON
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.state import StateStore
from tests.conftest import SENTINEL_KEY
from tests.demo_truth import (
    PRIMARY_KEYS,
    cross_source_figures,
    ground_truth,
    linked_clusters,
    pair_score,
)
from tests.multi_source_data import write_pipeline
from tests.query_pages import all_rows
from tests.test_td_pipeline import on_td

pytestmark = pytest.mark.slow
ROWS = 150


def test_three_sources_run_on_td_and_link_the_same_people(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "demo"
    write_demo(root, rows=ROWS)
    config = write_demo_config(root)
    site = tmp_path / "td_site"
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    with BackgroundServer(create_app(site, SENTINEL_KEY)) as server:
        on_td(config, server.url)
        lines: list[str] = []
        outcome = anyio.run(lambda: run_pipeline(config, echo=lines.append))
        log = "\n".join(lines)
        assert outcome.exit_code == EXIT_PASS, (outcome.message, log[-4000:])
        cfg = load_config(config)
        state = StateStore(cfg.workspace).load()
        for source in cfg.source_names:
            for phase in (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING):
                assert f"{phase.value}:{source}: pushed acme_{source}_{phase.value} " in log
        assert "unification: pushed acme_unification " in log
        unif = state.phase(Phase.UNIFICATION)
        assert unif.verdict == "PASS", unif.validation

        # The cross-source figures TD's tables give are the truth's.
        truth = ground_truth(root, ROWS)
        multi, pairs = cross_source_figures(truth)
        metrics = unif.validation["metrics"]
        assert metrics["profiles_in_several_sources"] == multi
        overlap = {
            (o["source"], o["and_source"]): o["profiles_in_both"] for o in metrics["source_overlap"]
        }
        assert overlap == pairs

        enriched: dict[tuple[str, str], str | None] = {}
        for table, pk in PRIMARY_KEYS.items():
            sql = f'SELECT CAST("{pk}" AS varchar), unified_id FROM {cfg.unif_db}.enriched_{table}'
            enriched.update({(table, str(k)): v for k, v in all_rows(config, sql)})
        score = pair_score(linked_clusters(truth), enriched)
        assert score.precision >= 0.999 and score.recall >= 0.999, score
    for path in [*cfg.workspace.rglob("*"), *site.rglob("*")]:
        if path.is_file() and path.suffix not in (".duckdb", ".gz", ".sqlite", ".wal"):
            assert SENTINEL_KEY not in path.read_text(errors="replace"), path


def test_a_failing_source_holds_up_only_itself_on_td(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CRM's extract is not UTF-8: on TD the shop still goes through staging (its
    projects pushed and run on TD Workflow), and unification waits for the person's word
    on the CRM."""
    config = write_pipeline(tmp_path, ["crm", "shop"])  # the failing source first
    (tmp_path / "crm" / "contacts.csv").write_bytes(
        b"contact_id,email_address,updated_at\nc1,\xff\xfe bad,2024-01-01\n"
    )
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    with BackgroundServer(create_app(tmp_path / "td_site", SENTINEL_KEY)) as server:
        on_td(config, server.url)
        lines: list[str] = []
        outcome = anyio.run(lambda: run_pipeline(config, echo=lines.append))
        assert outcome.exit_code == EXIT_FAILED, outcome.message
        assert outcome.failed_phase == "ingestion:crm"
        assert any(line.startswith("staging:shop: validation PASS") for line in lines), lines
        assert any(line.startswith("staging:shop: pushed multi_shop_staging ") for line in lines)
        state = StateStore(load_config(config).workspace).load()
        assert state.phase(Phase.UNIFICATION).status.value == "pending"
        assert state.phase(Phase.HIST_UNION, "crm").status.value == "pending"
        now = Pipeline(config).status().next_action
        assert now.tool == ASK_PERSON and now.arguments["source"] == "crm"
        assert "contacts.csv is not UTF-8" in now.why
