"""The HTML report and the ops documents, after a real local run on the small fixture.

One full run (all four phases on the embedded backend) is shared by the module; the aborted
case runs ingestion only. Numbers in the report are checked against the warehouse itself.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.cli.run import run_pipeline
from cdp_mcp.core.config import PipelineConfig, load_config
from cdp_mcp.core.phases import ORDER, Phase, expected_tables, project_name, workflows
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.reports.facts import phase_seconds
from cdp_mcp.pipeline.reports.html import (
    COLORS,
    INGESTED,
    MIN_BAR_PX,
    STAGED,
    UNION,
    Group,
    Series,
    bar_chart,
)
from cdp_mcp.pipeline.reports.stages import config_stages, stage_label
from cdp_mcp.pipeline.reports.timeline import fmt_seconds
from cdp_mcp.pipeline.state import StateStore
from tests.conftest import FIXTURES, SENTINEL_KEY

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

CHART_TITLES = (
    "Rows per table: in source, ingested, hist-union, staged",
    "Profiles by number of ids (cluster size)",
    "Share of rows with a profile id, per table",
)
OPS_DOCS = ("runbook.md", "monitoring.md", "troubleshooting.md")


def _copy_fixture(root: Path) -> Path:
    shutil.copytree(FIXTURES / "shopify", root / "shopify")
    shutil.copy(FIXTURES / "acme.yml", root / "acme.yml")
    return root / "acme.yml"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineConfig]:
    config = _copy_fixture(tmp_path_factory.mktemp("full"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TD_API_KEY", SENTINEL_KEY)
        outcome = anyio.run(lambda: run_pipeline(config, echo=lambda _: None))
        assert outcome.exit_code == 0, outcome.message
        yield load_config(config)


def _reports(cfg: PipelineConfig) -> Path:
    return cfg.workspace / "reports"


def _html(cfg: PipelineConfig) -> str:
    return (_reports(cfg) / "cdp_report.html").read_text(encoding="utf-8")


def _counts(cfg: PipelineConfig, db: str) -> dict[str, int]:
    infos = anyio.run(LocalBackend(cfg.workspace).tables, db)
    return {t.name: t.count for t in infos}


def test_html_report_is_written_self_contained_with_three_charts(full_run: PipelineConfig) -> None:
    page = _html(full_run)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    svgs = re.findall(r"<svg\b.*?</svg>", page, re.S)
    titles = [m for s in svgs for m in re.findall(r"<svg[^>]*aria-label=\"([^\"]+)\"", s)]
    assert titles == list(CHART_TITLES)
    assert "Complete" in page
    state = StateStore(full_run.workspace).load()
    for p in ORDER:
        ps = state.phase(p)
        assert ps.project_id and f"id {ps.project_id}" in page
        for step in ps.steps.values():
            if step.attempt_id:
                assert f'<td class="num">{step.attempt_id}</td>' in page or (
                    f"<td>{step.attempt_id}</td>" in page
                )
        for f in ps.files:
            assert f"<code>{html.escape(f)}</code>" in page


def test_row_counts_in_report_match_the_warehouse(full_run: PipelineConfig) -> None:
    cfg, page = full_run, _html(full_run)
    state = StateStore(cfg.workspace).load()
    for p in ORDER:
        tables = (state.phase(p).validation or {})["tables"]
        assert tables, p
        for t in tables:
            actual = _counts(cfg, t["database"])[t["table"]]
            assert t["row_count"] == actual
            row = f'<tr><td>{t["database"]}.{t["table"]}</td><td class="num">{actual:,}</td>'
            assert row in page, row
    src, stg = _counts(cfg, cfg.src_db), _counts(cfg, cfg.stg_db)
    for ref in cfg.hist_union_tables():
        t = ref.table
        ingested = src[f"{t}_hist"] + src[t]
        assert f"<title>{t}: ingested {ingested:,}</title>" in page
        assert f"<title>{t}: union {src[f'{t}_hist_union']:,}</title>" in page
        assert f"<title>{t}: staged {stg[t]:,}</title>" in page
    hist = (state.phase(Phase.UNIFICATION).validation or {})["metrics"]["ids_per_profile"]
    for size, profiles in hist.items():
        noun = "id" if size == "1" else "ids"
        assert f"<title>{size} {noun}: profiles {profiles:,}</title>" in page


def test_no_report_file_contains_the_api_key(full_run: PipelineConfig) -> None:
    files = sorted(_reports(full_run).iterdir())
    assert {f.name for f in files} >= {"cdp_report.md", "cdp_report.html", *OPS_DOCS}
    for f in files:
        assert SENTINEL_KEY not in f.read_text(encoding="utf-8"), f.name
    # a local run never talks to Treasure Data: nothing about a TD key or endpoint
    assert full_run.global_.backend == "local"
    assert "TD API key" not in _html(full_run) and "TD endpoint" not in _html(full_run)


def test_ops_docs_name_the_real_workflows_and_tables(full_run: PipelineConfig) -> None:
    cfg = full_run
    docs = {name: (_reports(cfg) / name).read_text(encoding="utf-8") for name in OPS_DOCS}
    runbook, monitoring = docs["runbook.md"], docs["monitoring.md"]
    for p, view in config_stages(cfg):
        project = project_name(view, p)
        for wf in workflows(view, p):
            assert f"td wf start {project} {wf} --session now" in runbook
        for t in expected_tables(view, p, predicted_schemas(cfg)):
            assert f"`{t.qualified}`" in runbook
    assert "td wf retry" in runbook and "start_workflow" in runbook
    for ref in cfg.hist_union_tables():
        assert f'"{cfg.src_db}"."{ref.table}_hist_union"' in monitoring
        assert f'"{cfg.stg_db}"."{ref.table}"' in monitoring
    assert f'"{cfg.config_db}"."inc_log"' in monitoring
    assert f'"{cfg.unif_db}"."unified_id_lookup"' in monitoring
    trouble = docs["troubleshooting.md"]
    for symptom in ("source file missing", "secret", "SQL error", "is empty", "over-merge"):
        assert symptom in trouble
    assert "merge_iterations" in trouble and "out of attempts" in trouble


def test_monitoring_queries_run_on_the_warehouse(full_run: PipelineConfig) -> None:
    cfg = full_run
    text = (_reports(cfg) / "monitoring.md").read_text(encoding="utf-8")
    queries = re.findall(r"```sql\n(.*?)```", text, re.S)
    assert len(queries) >= 8
    backend = LocalBackend(cfg.workspace)
    for sql in queries:
        result = anyio.run(backend.query, sql, cfg.src_db)
        assert result.columns, sql
    flow = re.findall(r"AS duplicate_keys", text)
    assert len(flow) == len(cfg.hist_union_tables())


async def _ingestion_then_abort(cp: str, reason: str) -> None:
    await Pipeline(cp).init()
    await Pipeline(cp).generate_phase("ingestion")
    await Pipeline(cp).push_project("ingestion")
    for wf in workflows(load_config(cp), Phase.INGESTION):
        started = await Pipeline(cp).start_workflow("ingestion", wf)
        session = await Pipeline(cp).get_session(started.session_id, wait_seconds=30)
        assert session.status == "success", session
    assert (await Pipeline(cp).validate_tables("ingestion")).verdict == "PASS"
    await Pipeline(cp).abort(reason)


def test_aborted_pipeline_gets_partial_html_and_markdown(acme_config: Path) -> None:
    reason = "<b>stopped</b> by the test & co"
    anyio.run(_ingestion_then_abort, str(acme_config), reason)
    cfg = load_config(acme_config)
    reports = _reports(cfg)
    markdown = (reports / "cdp_report.md").read_text(encoding="utf-8")
    page = (reports / "cdp_report.html").read_text(encoding="utf-8")
    # a source's stage is named with its source once stages are per source
    stopped = stage_label(StateStore(cfg.workspace).load().phase(Phase.HIST_UNION))
    assert stopped.startswith("hist_union")
    assert f"stopped at phase **{stopped}**" in markdown
    assert f"Aborted ({html.escape(reason)}); stopped at phase {html.escape(stopped)}." in page
    assert reason not in page  # escaped, never raw
    assert page.count("<svg") == 1  # the row flow has ingested rows; unification has none
    assert page.count("no data yet") == 2
    for name in OPS_DOCS:
        assert (reports / name).is_file()
    for f in reports.iterdir():
        assert SENTINEL_KEY not in f.read_text(encoding="utf-8"), f.name


def test_reports_time_each_phase_against_the_expected_timeline(full_run: PipelineConfig) -> None:
    state = StateStore(full_run.workspace).load()
    markdown = (_reports(full_run) / "cdp_report.md").read_text(encoding="utf-8")
    page = _html(full_run)
    assert "## Timings against the expected timeline" in markdown
    assert "<h2>Timings against the expected timeline</h2>" in page
    assert "Estimates from TD's cdp-orchestrator README" in markdown
    assert "seed" not in markdown and "seed" not in page
    for p in ORDER:
        took = fmt_seconds(phase_seconds(state.phase(p)))
        assert took != "-", p  # every phase ran, so every phase has a time
        label = stage_label(state.phase(p))
        assert f"| {label} | {took} |" in markdown
        assert f"<tr><td>{html.escape(label)}</td><td>{took}</td>" in page
    # a sample run on the embedded backend is far faster than the expected hours on TD
    assert markdown.count("faster than the range") == len(ORDER)


def test_charts_stay_readable_at_production_volumes() -> None:
    long_name = "salesforce_opportunity_line_items_with_discounts_2024"
    groups = [
        Group(long_name, [12_345_678.0, 12_345_678.0, 3.0]),
        Group("shopify_orders", [987_654.0, 987_000.0, 986_999.0]),
    ]
    series = [Series(n, COLORS[n]) for n in (INGESTED, UNION, STAGED)]
    svg = bar_chart("Rows", groups, series)
    labels = re.findall(r'font-size="10">([^<]*)</text>', svg)
    assert labels == ["12.3M", "12.3M", "3", "988k", "987k", "987k"]
    assert all(len(label) <= 5 for label in labels)  # fits over a 34 px bar
    # exact numbers stay in the tooltips
    assert f"<title>{long_name}: staged 3</title>" in svg
    assert "<title>shopify_orders: union 987,000</title>" in svg
    # a long table name is cut to its group's width, and whole in its tooltip
    names = re.findall(r'font-size="11"><title>([^<]*)</title>([^<]*)</text>', svg)
    assert names[0][0] == long_name and names[0][1].endswith("\u2026")
    assert len(names[0][1]) < len(long_name)
    assert names[1] == ("shopify_orders", "shopify_orders")
    # 3 rows against 12 million still draws a bar a person can see, its number over it
    heights = [
        float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="30" height="([^"]+)"', svg)
    ]
    assert min(heights) >= MIN_BAR_PX >= 4


def test_row_flow_accounts_for_every_source_row(full_run: PipelineConfig) -> None:
    """From each source file to staging: rows before start_date or with no readable time are
    counted as left out, and with the loaded rows they add up to the file's own row count."""
    cfg = full_run
    state = StateStore(cfg.workspace).load()
    sources = (state.phase(Phase.INGESTION).validation or {})["metrics"]["source_rows"]
    src = _counts(cfg, cfg.src_db)
    markdown = (_reports(cfg) / "cdp_report.md").read_text(encoding="utf-8")
    page = _html(cfg)
    assert any(s["before_start_date"] for s in sources.values())  # the fixture has some
    for obj, s in sources.items():
        lines = (FIXTURES / "shopify" / s["file"]).read_text(encoding="utf-8").splitlines()
        assert s["source_rows"] == len(lines) - 1  # the CSV's data lines
        table = f"{cfg.source}_{obj}"
        loaded = src[f"{table}_hist"] + src[table]
        assert s["loaded"] == loaded
        assert s["before_start_date"] + s["unparseable_time"] + loaded == s["source_rows"]
        staged = _counts(cfg, cfg.stg_db)[table]
        union = src[f"{table}_hist_union"]
        cells = [s["source_rows"], s["before_start_date"], s["unparseable_time"], loaded]
        cells += [union, staged, union - staged]
        assert f"| {table} | " + " | ".join(f"{n:,}" for n in cells) + " |" in markdown
        html_cells = "".join(f'<td class="num">{n:,}</td>' for n in cells)
        assert f"<tr><td>{table}</td>{html_cells}</tr>" in page
