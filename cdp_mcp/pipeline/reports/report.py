"""The pipeline report: what ran, what each phase produced and validated, where it stopped.

Written from the state alone (no backend calls), so an aborted or half-done pipeline still
gets a truthful report. Never contains the API key: the config summary lists names only.
"""

from __future__ import annotations

import os
from pathlib import Path

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.manifest import write_owned
from cdp_mcp.core.phases import project_name
from cdp_mcp.pipeline.models import ReportResult
from cdp_mcp.pipeline.nextstep import DONE, format_call, next_action
from cdp_mcp.pipeline.reports.facts import (
    COVERAGE_HEADERS,
    CROSS_SOURCE_METRICS,
    OVERLAP_HEADERS,
    ROW_FLOW_HEADERS,
    across_sources,
    fmt_time,
    headline,
    load_rule,
    phase_duration,
    row_flow_rows,
    table_note,
)
from cdp_mcp.pipeline.reports.html import render_html
from cdp_mcp.pipeline.reports.metrics import Block, metric_blocks
from cdp_mcp.pipeline.reports.opsdocs import MONITORING, RUNBOOK, TROUBLESHOOTING, render_ops_docs
from cdp_mcp.pipeline.reports.privacy import known_values, mask_metrics, scrub
from cdp_mcp.pipeline.reports.stages import stage_config, stage_label, stage_metrics, stages
from cdp_mcp.pipeline.reports.timeline import EXPECTED_SOURCE, TIMELINE_HEADERS, timeline_rows
from cdp_mcp.pipeline.state import PhaseState, PipelineState

REPORT_NAME = "cdp_report.md"
HTML_REPORT_NAME = "cdp_report.html"
OPS_DOC_NAMES = (RUNBOOK, MONITORING, TROUBLESHOOTING)


def report_path(cfg: PipelineConfig) -> Path:
    return cfg.workspace / "reports" / REPORT_NAME


def _config_section(cfg: PipelineConfig) -> list[str]:
    u = cfg.unification
    dbs = [*dict.fromkeys(cfg.src_db_of(s) for s in cfg.sources), cfg.stg_db, cfg.config_db]
    return [
        "## Configuration",
        "",
        f"- client `{cfg.client}`, backend `{cfg.global_.backend}`, workspace `{cfg.workspace}`",
        *(
            f"- source `{s.source_name}` via connector `{s.connector}`: "
            f"{', '.join(s.objects)} (mode {s.mode}, incremental field "
            f"`{s.incremental_field}`, from {s.start_date})"
            for s in cfg.sources
        ),
        f"- databases: {', '.join(f'`{d}`' for d in [*dbs, cfg.unif_db])}",
        f"- staging engine {cfg.staging.engine}; unification `{u.name}` with {u.id_method} "
        f"`{u.id_name}`, {u.update_strategy}, merge_iterations {u.merge_iterations}",
        "",
    ]


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(_md(h) for h in headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(_md(c) for c in row) + " |" for row in rows),
        "",
    ]


def _metric_section(block: Block) -> list[str]:
    lines = [f"{block.title.capitalize()}:", ""]
    if block.note:
        return [*lines, block.note, ""]
    return lines + _md_table(block.headers, block.rows)


def _headline_section(cfg: PipelineConfig, state: PipelineState) -> list[str]:
    rows = [[f.name, f.value, f.note] for f in headline(cfg, state)]
    return ["## Headline figures", "", *_md_table(("figure", "value", "how"), rows)]


def _phase_section(cfg: PipelineConfig, ps: PhaseState, known: dict[str, str]) -> list[str]:
    lines = [
        f"### {stage_label(ps)}",
        "",
        f"Status **{ps.status.value}**, verdict {ps.verdict or '-'}, project "
        f"`{project_name(stage_config(cfg, ps), ps.phase)}` (id {ps.project_id or '-'}, revision {ps.revision or '-'}), "
        f"time {phase_duration(ps)}.",
        "",
    ]
    if ps.steps:
        lines += [
            "| step | status | attempts | session | attempt | finished | error |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in ps.steps.values():
            err = _md(scrub(s.last_error or "", known))[:200]
            lines.append(
                f"| {s.name} | {s.status.value} | {s.attempts} | {s.session_id or ''} | "
                f"{s.attempt_id or ''} | {fmt_time(s.finished_at)} | {err} |"
            )
        lines.append("")
    v = ps.validation or {}
    tables = v.get("tables") or []
    if tables:
        lines += ["| table | rows | note |", "|---|---|---|"]
        for t in tables:
            rows = "-" if t.get("row_count") is None else f"{t['row_count']:,}"
            lines.append(f"| {t['database']}.{t['table']} | {rows} | {table_note(ps.phase, t)} |")
        lines.append("")
    for title, key in (("Failures", "failures"), ("Warnings", "warnings")):
        items = v.get(key) or []
        if items:
            lines += [f"{title}:", "", *[f"- {scrub(str(i), known)}" for i in items], ""]
    metrics = {k: m for k, m in (v.get("metrics") or {}).items() if k not in CROSS_SOURCE_METRICS}
    for block in metric_blocks(mask_metrics(metrics, known)):
        lines += _metric_section(block)
    return lines


def across_sources_markdown(state: PipelineState) -> list[str]:
    across = across_sources(state)
    lines = ["## Across sources", ""]
    if across is None:
        return [*lines, "Unification has not validated yet.", ""]
    lines += [across.summary, ""]
    if across.added:
        lines += [across.added, ""]
    if across.overlap:
        lines += ["Profiles found in both sources of each pair:", ""]
        lines += _md_table(OVERLAP_HEADERS, [[_cell(c) for c in r] for r in across.overlap])
    lines += [
        "Coverage per source table (a valid key: a value unification takes, in some key column):",
        "",
    ]
    return lines + _md_table(COVERAGE_HEADERS, [[_cell(c) for c in r] for r in across.coverage])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _timeline_section(state: PipelineState) -> list[str]:
    rows, total = timeline_rows(state)
    lines = [
        "## Timings against the expected timeline",
        "",
        f"Estimates from {EXPECTED_SOURCE}, for Treasure Data at production volumes. "
        "`took` runs from a phase's first step to its last; `workflows ran` sums its "
        "workflow runs as the pipeline recorded them.",
        "",
        "| " + " | ".join(TIMELINE_HEADERS) + " |",
        "|" + "---|" * len(TIMELINE_HEADERS),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in [*rows, total]]
    return [*lines, ""]


def _row_flow_section(cfg: PipelineConfig, state: PipelineState) -> list[str]:
    lines = [
        "## Row flow",
        "",
        f"Rows per table from the source to staging. {load_rule(cfg)}",
        "",
        "| " + " | ".join(ROW_FLOW_HEADERS) + " |",
        "|---|" + "---:|" * (len(ROW_FLOW_HEADERS) - 1),
    ]
    for row in row_flow_rows(cfg, state):
        cells = [f"{v:,}" if isinstance(v, int) else (v or "-") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown(cfg: PipelineConfig, state: PipelineState) -> tuple[str, bool]:
    every = stages(state)
    complete = not state.aborted and all(ps.status in DONE for ps in every)
    lines = [
        f"# CDP pipeline report: {cfg.client}",
        "",
        f"Config `{state.config_path}`, run {state.run}, started {fmt_time(state.created_at)}, "
        f"last change {fmt_time(state.updated_at)}.",
        "",
    ]
    if state.aborted:
        stopped = next(
            (stage_label(ps) for ps in every if ps.status not in DONE), "after the last phase"
        )
        lines += [f"**Aborted** ({state.abort_reason}); stopped at phase **{stopped}**.", ""]
    elif not complete:
        stopped = next(stage_label(ps) for ps in every if ps.status not in DONE)
        lines += [f"**Partial report**: the pipeline is at phase **{stopped}**.", ""]
    else:
        lines += ["**Complete**: every phase validated (or was skipped by decision).", ""]
    lines += _headline_section(cfg, state)
    lines += across_sources_markdown(state)
    lines += _config_section(cfg)
    lines += _timeline_section(state)
    lines += _row_flow_section(cfg, state)
    lines += ["## Phases", ""]
    known = known_values([stage_metrics(ps) for ps in every])
    for ps in every:
        lines += _phase_section(cfg, ps, known)
    action = next_action(cfg, state)
    lines += ["## Next step", "", f"`{format_call(action)}`: {scrub(action.why, known)}", ""]
    return "\n".join(lines), complete


def write_report(cfg: PipelineConfig, state: PipelineState) -> ReportResult:
    """The Markdown report, its HTML twin and the ops documents, all in `{workspace}/reports`."""
    text, complete = render_markdown(cfg, state)
    path = report_path(cfg)
    html_path = path.with_name(HTML_REPORT_NAME)
    documents = {path: text, html_path: render_html(cfg, state)}
    for doc_name, doc_text in render_ops_docs(cfg, state).items():
        documents[path.with_name(doc_name)] = doc_text
    # A person's file of the same name (or an edited report) is left alone: FileConflictError.
    write_owned(cfg.workspace, documents)
    return ReportResult(path=str(path), html_path=str(html_path), complete=complete, markdown=text)


def archive_reports(cfg: PipelineConfig, run: int) -> Path | None:
    """Keep run `run`'s documents in `reports/run-{run}/` before a new run writes its own.

    Only the files `write_report` writes are moved; anything else in `reports/` stays.
    """
    folder = report_path(cfg).parent
    names = [REPORT_NAME, HTML_REPORT_NAME, *OPS_DOC_NAMES]
    present = [folder / n for n in names if (folder / n).is_file()]
    if not present:
        return None
    target = folder / f"run-{run}"
    target.mkdir(parents=True, exist_ok=True)
    for path in present:
        os.replace(path, target / path.name)
    return target
