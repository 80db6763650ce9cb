"""`cdp-mcp demo` end to end: three sources (shop, CRM, email tool) through every phase on
the local backend, the cross-source figures printed last, scored against the ground truth.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.core import phases
from cdp_mcp.core.config import load_config
from cdp_mcp.pipeline.state import StateStore
from tests.demo_truth import (
    PRIMARY_KEYS,
    cross_source_figures,
    ground_truth,
    linked_clusters,
    pair_score,
)

pytestmark = pytest.mark.slow
ROWS = 300


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("demo3") / "demo"
    ran = subprocess.run(
        [sys.executable, "-m", "cdp_mcp.cli.main", "demo", str(root), "--rows", str(ROWS)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return root, ran


def test_the_demo_runs_three_sources_to_pass_and_prints_the_truths_figures(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, ran = demo
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    cfg = load_config(root / "acme.yml")
    assert cfg.source_names == ["shopify", "crm", "mailer"]
    truth = ground_truth(root, ROWS)
    multi, pairs = cross_source_figures(truth)
    out = ran.stdout.splitlines()
    # the figures, then the reports' paths, last
    assert out[-1].startswith("report: ") and out[-2].startswith("html report: ")
    across = next(i for i, line in enumerate(out) if line.startswith("across sources: "))
    state = StateStore(cfg.workspace).load()
    profiles = state.phase(phases.Phase.UNIFICATION).validation["metrics"]["profiles"]
    assert f"{multi:,} of {profiles:,} profiles are found in more than one source" in out[across]
    for (a, b), n in pairs.items():
        assert f"  {a} & {b}: {n:,} profiles in both" in out
    for table in PRIMARY_KEYS:
        rows = sum(1 for r in truth if r.table == table)
        keyed = sum(1 for r in truth if r.table == table and r.evidence)
        source = table.split("_", 1)[0]
        assert any(
            line.startswith(f"  {table} ({source}): {keyed:,} of {rows:,} rows have a profile id")
            and line.endswith(f"{keyed:,} a valid key")
            for line in out
        ), (table, out[across:])

    # who is who: the enriched ids reproduce the truth's links
    backend = LocalBackend(cfg.workspace)
    enriched: dict[tuple[str, str], str | None] = {}
    with backend.runtime.warehouse.cursor() as cur:
        for table, pk in PRIMARY_KEYS.items():
            rows = cur.execute(
                f'SELECT CAST("{pk}" AS VARCHAR), unified_id FROM {cfg.unif_db}.enriched_{table}'
            ).fetchall()
            enriched.update({(table, str(k)): v for k, v in rows})
    score = pair_score(linked_clusters(truth), enriched)
    assert score.precision >= 0.999 and score.recall >= 0.999, score


def test_the_reports_show_the_sources_and_no_address(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, ran = demo
    assert ran.returncode == 0, ran.stderr[-3000:]
    reports = load_config(root / "acme.yml").workspace / "reports"
    markdown = (reports / "cdp_report.md").read_text(encoding="utf-8")
    html = (reports / "cdp_report.html").read_text(encoding="utf-8")
    assert "## Across sources" in markdown and 'id="across-sources"' in html
    for name in ("shopify", "crm", "mailer"):
        assert f"- source `{name}` via connector `file`" in markdown
    addresses = {
        m.lower()
        for folder in ("shopify", "crm", "mailer")
        for f in (root / folder).iterdir()
        if f.suffix in (".csv", ".jsonl")
        for m in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", f.read_text(encoding="utf-8"))
    }
    assert len(addresses) > 300
    for text in (markdown.lower(), html.lower()):
        assert not [a for a in addresses if a in text]
