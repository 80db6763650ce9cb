"""The reports as a document a consultant hands to a client, after a real `cdp-mcp demo` run.

Headline figures first, the row flow from the source rows on, readable tables instead of
Python reprs, charts with axes, and no personal value: every email and phone of the sample's
source files is looked for in the written reports.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.core.config import PipelineConfig, load_config
from cdp_mcp.core.phases import Phase
from cdp_mcp.core.pii import mask_email, mask_phone, mask_value
from cdp_mcp.pipeline.reports.html import (
    COLORS,
    MIN_BAR_PX,
    SINGLE_COLOR,
    SOURCE,
    Group,
    Series,
    bar_chart,
    render_html,
)
from cdp_mcp.pipeline.reports.report import render_markdown
from cdp_mcp.pipeline.reports.stages import stage_of
from cdp_mcp.pipeline.state import PhaseState, PipelineState, StateStore

pytestmark = pytest.mark.slow  # one real demo run: the full suite, not the fast lane

INTERNAL_WORDS = re.compile(
    r"\b(seed|issue|todo|stub|emulator|internal|orchestrator|fixme|hack)\b", re.I
)


@dataclass
class Demo:
    root: Path
    cfg: PipelineConfig
    state: PipelineState
    markdown: str
    html: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("client")
    cli = Path(sys.executable).with_name("cdp-mcp")
    run = subprocess.run(
        [str(cli) if cli.is_file() else "cdp-mcp", "demo", str(root / "demo"), "--rows", "200"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    cfg = load_config(root / "demo" / "acme.yml")
    reports = cfg.workspace / "reports"
    return Demo(
        root / "demo",
        cfg,
        StateStore(cfg.workspace).load(),
        (reports / "cdp_report.md").read_text(encoding="utf-8"),
        (reports / "cdp_report.html").read_text(encoding="utf-8"),
    )


def _sample_contacts(root: Path) -> tuple[set[str], set[str]]:
    """Every email and phone value in the demo's sources: the shop's customers.csv and
    orders.jsonl, the CRM's contacts.csv (with its JSON work addresses), the mailer's
    subscribers.jsonl."""
    emails, phones = set(), set()
    with (root / "shopify" / "customers.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            emails.add(row["email"].strip())
            phones.add(row["phone"].strip())
    for line in (root / "shopify" / "orders.jsonl").read_text(encoding="utf-8").splitlines():
        emails.add(str(json.loads(line).get("customer_email") or "").strip())
    with (root / "crm" / "contacts.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            emails.add(row["email_address"].strip())
            emails.add(str(json.loads(row["Extra"]).get("work_email") or ""))
            phones.add(row["Mobile Phone"].strip())
    for line in (root / "mailer" / "subscribers.jsonl").read_text(encoding="utf-8").splitlines():
        emails.add(str(json.loads(line).get("Primary Contact E-mail") or "").strip())
    return {e for e in emails if "@" in e}, {p for p in phones if sum(c.isdigit() for c in p) >= 7}


def _stages(demo: Demo, phase: Phase) -> list[PhaseState]:
    """The stages of a phase of each source, in config order."""
    return [stage_of(demo.state, phase, name) for name in demo.cfg.source_names]


def test_no_email_or_phone_of_the_sample_appears_in_either_report(demo: Demo) -> None:
    emails, phones = _sample_contacts(demo.root)
    assert len(emails) > 300 and len(phones) > 150
    written = sorted((demo.cfg.workspace / "reports").iterdir())
    assert {f.name for f in written} >= {"cdp_report.md", "cdp_report.html", "runbook.md"}
    for name, text in ((f.name, f.read_text(encoding="utf-8")) for f in written):
        lowered = text.lower()
        leaked = [e for e in emails if e.lower() in lowered]
        # a phone as written, or as the digits unification keeps (5551234567)
        leaked += [p for p in phones if p in text or re.sub(r"\D", "", p) in text]
        assert not leaked, f"{name} holds {len(leaked)} sample values, e.g. {leaked[:3]}"
    # the largest clusters are still listed, with their values masked
    assert re.search(r"email=\w\*\*\*@[\w.]+ \(\d+ records\)", demo.markdown)
    assert re.search(r"phone=\*\*\*-\*\*\*-\d{4} \(\d+ records\)", demo.markdown)


def test_a_warning_quoting_an_over_merged_value_is_masked(demo: Demo) -> None:
    """Validation keeps the raw junk value (in the state, for the person fixing it); the
    report shows its mask, in the metrics and in the warning that quotes it."""
    state = demo.state.model_copy(deep=True)
    ps = state.phase(Phase.UNIFICATION)
    v: dict[str, Any] = dict(ps.validation or {})
    metrics = dict(v["metrics"])
    metrics["over_merge_suspects"] = [
        {"key": "email", "value": "callcentre.desk@example.com", "records": 17},
        {"key": "phone", "value": "555-010-9876", "records": 17},
    ]
    v["metrics"] = metrics
    v["warnings"] = [
        "email 'callcentre.desk@example.com' is carried by 17 records (over 10): it joins them",
        "phone '555-010-9876' is carried by 17 records (over 10): it joins them",
    ]
    ps.validation = v
    for text in (render_markdown(demo.cfg, state)[0], render_html(demo.cfg, state)):
        assert "callcentre" not in text and "010-9876" not in text
        assert "c***@example.com" in text and "***-***-9876" in text


def test_the_headline_figures_come_first_and_are_the_runs_numbers(demo: Demo) -> None:
    metrics = (demo.state.phase(Phase.UNIFICATION).validation or {})["metrics"]
    staging = {
        t: stats
        for ps in _stages(demo, Phase.STAGING)
        for t, stats in (ps.validation or {})["metrics"]["tables"].items()
    }
    profiles = metrics["profiles"]
    md = demo.markdown
    assert md.index("## Headline figures") < md.index("## Configuration")
    assert f"| profiles | {profiles:,} |" in md
    assert "| records per profile |" in md and "| cross-table coverage |" in md
    lowest = min(s["dq_score"] for s in staging.values())
    assert f"| data-quality score (lowest) | {lowest:g} |" in md
    before = sum(
        s["before_start_date"]
        for ps in _stages(demo, Phase.INGESTION)
        for s in (ps.validation or {})["metrics"]["source_rows"].values()
    )
    assert before > 0 and f"{before:,} dated before start_date" in md
    page = demo.html
    assert page.index('id="headline"') < page.index("<h2>Configuration</h2>")
    assert f'<div class="value">{profiles:,}</div><div class="name">profiles</div>' in page


def test_metrics_are_tables_not_python_reprs(demo: Demo) -> None:
    for text in (demo.markdown, demo.html):
        assert not re.search(r"\{'|\[\{|'\}|\}\]|\[\]|: \{", text), "a Python repr"
    assert "```" not in demo.markdown
    assert "| shopify_customers | " in demo.markdown  # coverage, a row per table
    assert re.search(r"\| shopify_customers \| \d+\.\d%", demo.markdown)


def test_no_internal_words_and_nothing_about_a_td_key_on_a_local_run(demo: Demo) -> None:
    assert demo.cfg.global_.backend == "local"
    for text in (demo.markdown, demo.html):
        assert "TD API key" not in text and "not set" not in text
        found = INTERNAL_WORDS.findall(text.replace("cdp-orchestrator", ""))
        assert not found, found


def test_an_empty_table_under_pass_is_explained(demo: Demo) -> None:
    stages = _stages(demo, Phase.INGESTION)
    assert [ps.verdict for ps in stages] == ["PASS"] * len(demo.cfg.source_names)
    empty = [t for ps in stages for t in (ps.validation or {})["tables"] if t["row_count"] == 0]
    assert empty  # the demo's incremental tables: every row came with the historical load
    for text in (demo.markdown, demo.html):
        assert "table is empty" not in text
    for t in empty:
        cell = f"{t['database']}.{t['table']}"
        line = next(ln for ln in demo.markdown.splitlines() if ln.startswith(f"| {cell} |"))
        assert "empty: " in line, line


def test_row_flow_chart_starts_at_the_source_rows_and_marks_the_losses(demo: Demo) -> None:
    svg = re.search(r'<svg[^>]*aria-label="Rows per table[^"]*".*?</svg>', demo.html, re.S)
    assert svg
    for name, ps in zip(demo.cfg.source_names, _stages(demo, Phase.INGESTION), strict=True):
        for obj, s in (ps.validation or {})["metrics"]["source_rows"].items():
            table = f"{name}_{obj}"
            assert f"<title>{table}: {SOURCE} {s['source_rows']:,}</title>" in svg[0]
            if s["before_start_date"]:
                assert f"-{s['before_start_date']:,} before start" in svg[0]
    assert f'fill="{COLORS[SOURCE]}"' in svg[0]


def test_charts_have_axes_a_legend_and_a_visible_bar_for_a_small_count() -> None:
    """The over-merge case: one profile of 17 records among 5,000 single profiles."""
    groups = [Group("1 id", [5000.0]), Group("17 ids", [1.0])]
    svg = bar_chart("Profiles", groups, [Series("profiles", SINGLE_COLOR)])
    heights = [
        float(h) for h in re.findall(r'<g><title>[^<]*</title><rect [^>]*height="([^"]+)"', svg)
    ]
    assert heights[1] >= MIN_BAR_PX >= 4
    assert "<title>17 ids: profiles 1</title>" in svg and 'font-size="10">1</text>' in svg
    assert 'class="y-axis"' in svg and 'class="x-axis"' in svg
    ticks = re.findall(r'class="tick-label"[^>]*>([^<]+)<', svg)
    assert ticks[0] == "0" and ticks[-1] == "5k" and len(ticks) >= 3
    assert 'class="legend"' in svg and ">profiles</text>" in svg  # one series has a legend too
    assert re.findall(r'class="axis-title"[^>]*>([^<]+)<', svg) == ["rows", "table"]


def test_masks_show_the_shape_of_a_value_only() -> None:
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email("  Jane@Example.com ") == "J***@Example.com"
    assert mask_phone("+1 (555) 010-1234") == "***-***-1234"
    assert mask_phone("5550101234") == "***-***-1234"
    assert mask_value("email", "bob@acme.org") == "b***@acme.org"
    assert mask_value("phone_number", "555.010.4321") == "***-***-4321"
    assert mask_value("td_client_id", "abc-123") == "a***"
    assert mask_value("device", "") == "***"
