"""The pipeline report as one self-contained HTML page, with inline SVG charts.

Read from the state alone, like the Markdown report: the configuration (names only, never
the API key), what each phase generated, deployed and ran, its timings and validation, and
three charts drawn here: row flow between phases, the unification cluster-size distribution
and the share of staging rows that received a profile id. No network: no external CSS, JS,
fonts or images. Every piece of text goes through `html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from html import escape
from typing import NamedTuple

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import Phase, project_name, workflows
from cdp_mcp.pipeline.nextstep import format_call, next_action
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
    phase_metrics,
    progress,
    row_flow_rows,
    table_note,
)
from cdp_mcp.pipeline.reports.metrics import metric_blocks
from cdp_mcp.pipeline.reports.privacy import known_values, mask_metrics, scrub
from cdp_mcp.pipeline.reports.stages import (
    stage_config,
    stage_label,
    stage_metrics,
    stage_source,
    stages,
)
from cdp_mcp.pipeline.reports.timeline import EXPECTED_SOURCE, TIMELINE_HEADERS, timeline_rows
from cdp_mcp.pipeline.state import PhaseState, PipelineState, StepState

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#1f2933;max-width:1100px}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #d9e2ec;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #d9e2ec;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.92em}th{background:#f0f4f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{padding:.6em 1em;border-radius:4px;font-weight:600}
.complete{background:#e3f9e5;color:#05400a}.partial{background:#fffbea;color:#8d2b0b}
.aborted{background:#ffe3e3;color:#610404}
.PASS{color:#05400a;font-weight:600}.WARN{color:#8d2b0b;font-weight:600}
.FAIL{color:#610404;font-weight:600}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}
.note{color:#52606d;font-style:italic}code{background:#f0f4f8;padding:0 .2em}
.figures{display:flex;flex-wrap:wrap;gap:.8em}.figure{border:1px solid #d9e2ec;border-radius:4px;
padding:.6em .9em;min-width:12em;max-width:22em}.figure .value{font-size:1.35em;font-weight:700}
.figure .name{font-weight:600}.figure .how{color:#52606d;font-size:.85em}
"""

SOURCE, INGESTED, UNION, STAGED = "in source", "ingested", "union", "staged"
COLORS = {SOURCE: "#9d755d", INGESTED: "#4c78a8", UNION: "#f58518", STAGED: "#54a24b"}
SINGLE_COLOR = "#4c78a8"
LEGEND_STEP = 110  # px per legend entry
MIN_BAR_PX = 4.0  # the least height of a bar above zero
AXIS_COLOR = "#52606d"

Cell = str | int | float | None


# -- small HTML helpers -------------------------------------------------------------------
def _cell(value: Cell) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = f"{value:,}" if isinstance(value, int) else f"{value:g}"
        return f'<td class="num">{escape(text)}</td>'
    return f"<td>{escape(str(value))}</td>"


def _table(headers: Iterable[str], rows: Iterable[Iterable[Cell]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _items(title: str, items: Iterable[object], css: str = "") -> str:
    listed = "".join(f"<li>{escape(str(i))}</li>" for i in items)
    if not listed:
        return ""
    return f'<p class="{escape(css)}">{escape(title)}:</p><ul>{listed}</ul>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


# -- SVG bar charts -----------------------------------------------------------------------
class Series(NamedTuple):
    name: str
    color: str


class Group(NamedTuple):
    label: str
    values: list[float | None]  # one per series; None draws no bar


def compact(value: float) -> str:
    """A bar label short enough to sit over a 34 px bar: 987, 12.3k, 4.56M."""
    if abs(value) < 1000:
        return f"{value:,.0f}"
    for bound, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "B")):
        scaled = value / bound
        if abs(float(f"{scaled:.3g}")) < 1000:
            return f"{scaled:.3g}{suffix}"
    return f"{value / 1e9:,.0f}B"


def _fit(text: str, width: float, char_px: float = 6.5) -> str:
    """`text` cut with an ellipsis to about `width` pixels at font size 11."""
    room = max(int(width / char_px), 4)
    return text if len(text) <= room else text[: room - 1] + "…"


class Axes(NamedTuple):
    """What the chart's axes say: the quantity up the side and the groups along the bottom."""

    y: str
    x: str


ROW_AXES = Axes("rows", "table")


def nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) for an axis up to `top`."""
    raw = max(top, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def bar_chart(
    title: str,
    groups: list[Group],
    series: list[Series],
    label: Callable[[float], str] = compact,
    exact: Callable[[float], str] = lambda v: f"{v:,.0f}",
    max_value: float | None = None,
    axes: Axes = ROW_AXES,
    notes: list[str] | None = None,
) -> str:
    """Grouped vertical bars over a y axis with round ticks: short value labels on top, exact
    values in each bar's tooltip, group names under the axis (cut to fit, whole in a tooltip),
    a legend, and per group an optional note under its name (the rows it lost). A value above
    zero keeps a bar of at least MIN_BAR_PX, so a single profile among thousands still shows.
    With `max_value` the axis ends there (100% on a share chart)."""
    bar_w, gap, left, right, plot_h = 34, 24, 64, 16, 180
    bottom = 58 if notes else 42
    top = 34
    longest = max((len(g.label) for g in groups), default=0)
    noted = max((len(n) for n in notes or []), default=0)
    group_w = min(max(len(series) * bar_w, 120, round(longest * 6.5), round(noted * 5.8)), 240)
    legend_w = LEGEND_STEP * len(series)
    width = max(left + right + len(groups) * (group_w + gap), left + right + legend_w)
    height = top + plot_h + bottom
    known = [v for g in groups for v in g.values if v is not None]
    step = nice_step(max_value or max(known, default=0) or 1)
    scale_max = max_value or step * math.ceil((max(known, default=0) or 1) / step)
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        *_y_axis(axes.y, left, top, plot_h, scale_max, step, label, width - right),
        f'<line class="x-axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
        f'y2="{top + plot_h}" stroke="{AXIS_COLOR}" shape-rendering="crispEdges"/>',
        f'<text class="axis-title" x="{left + (width - right - left) / 2:.0f}" y="{height - 4}" '
        f'text-anchor="middle" font-size="11" fill="#52606d">{escape(axes.x)}</text>',
        *_legend(series, left),
    ]
    for i, group in enumerate(groups):
        x0 = left + gap / 2 + i * (group_w + gap)
        bars_w = len(series) * bar_w
        offset = x0 + (group_w - bars_w) / 2
        for j, (s, value) in enumerate(zip(series, group.values, strict=True)):
            if value is not None:
                bar = Bar(offset + j * bar_w, bar_w, value / scale_max, label(value), exact(value))
                parts.append(_bar(bar, top, plot_h, s, group))
        parts.append(
            f'<text x="{x0 + group_w / 2:.1f}" y="{top + plot_h + 15}" text-anchor="middle" '
            f'font-size="11"><title>{escape(group.label)}</title>'
            f"{escape(_fit(group.label, group_w + gap))}</text>"
        )
        note = notes[i] if notes and i < len(notes) else ""
        if note:
            parts.append(
                f'<text class="loss" x="{x0 + group_w / 2:.1f}" y="{top + plot_h + 29}" '
                f'text-anchor="middle" font-size="10" fill="#ab091e"><title>{escape(note)}'
                f"</title>{escape(_fit(note, group_w + gap, 5.8))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _y_axis(
    name: str,
    left: int,
    top: int,
    plot_h: int,
    scale_max: float,
    step: float,
    label: Callable[[float], str],
    x_end: int,
) -> list[str]:
    """The y axis: its line, a tick, a label and a light grid line per step, and its title."""
    out = [
        f'<line class="y-axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" '
        f'stroke="{AXIS_COLOR}" shape-rendering="crispEdges"/>',
        f'<text class="axis-title" transform="translate(12 {top + plot_h / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle" font-size="11" fill="#52606d">{escape(name)}</text>',
    ]
    ticks = round(scale_max / step)
    for k in range(ticks + 1):
        value = k * step
        y = top + plot_h - plot_h * value / scale_max
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{x_end}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            if k
            else ""
        )
        out.append(
            f'<line class="tick" x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" '
            'stroke="#52606d"/>'
            f'<text class="tick-label" x="{left - 6}" y="{y + 3.5:.1f}" text-anchor="end" '
            f'font-size="10" fill="#52606d">{escape(label(value))}</text>'
        )
    return out


class Bar(NamedTuple):
    x: float
    w: int
    share: float  # of the chart's maximum
    text: str  # over the bar
    exact: str  # in its tooltip


def _legend(series: list[Series], left: int) -> list[str]:
    out = []
    for k, s in enumerate(series):
        x = left + k * LEGEND_STEP
        out.append(f'<rect class="legend" x="{x}" y="6" width="12" height="12" fill="{s.color}"/>')
        out.append(f'<text x="{x + 16}" y="16" font-size="12">{escape(s.name)}</text>')
    return out


def _bar(bar: Bar, top: int, plot_h: int, s: Series, g: Group) -> str:
    # A value above zero keeps MIN_BAR_PX, its number written over it, so a tiny count shows.
    h = max(bar.share * plot_h, MIN_BAR_PX) if bar.share > 0 else 0.0
    y = top + plot_h - h
    tip = f"{g.label}: {s.name} {bar.exact}"
    return (
        f"<g><title>{escape(tip)}</title>"
        f'<rect x="{bar.x + 2:.1f}" y="{y:.1f}" width="{bar.w - 4}" height="{h:.1f}" '
        f'fill="{s.color}"/>'
        f'<text x="{bar.x + bar.w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="10">'
        f"{escape(bar.text)}</text></g>"
    )


def _figure(caption: str, svg: str | None, empty: str) -> str:
    body = svg if svg is not None else _note(empty)
    return f"<figure><figcaption>{escape(caption)}</figcaption>{body}</figure>"


# -- chart data from the validation metrics -----------------------------------------------
def row_flow_groups(cfg: PipelineConfig, state: PipelineState) -> list[Group]:
    """Source, loaded, unioned and staged rows per table: the row-flow table, as bars."""
    groups = []
    for row in row_flow_rows(cfg, state):
        table, src, _before, _unparsed, loaded, union, staged, _dropped = row
        values = [None if v is None else float(v) for v in (src, loaded, union, staged)]
        groups.append(Group(str(table), values))
    return groups


def row_flow_losses(cfg: PipelineConfig, state: PipelineState) -> list[str]:
    """Per table, the rows it lost on the way and where: "-16 before start, -10 duplicates"."""
    notes = []
    for row in row_flow_rows(cfg, state):
        _table, _src, before, unparsed, _loaded, _union, _staged, dropped = row
        lost = [
            f"-{n:,} {why}"
            for n, why in (
                (before, "before start"),
                (unparsed, "bad time"),
                (dropped, "duplicates"),
            )
            if isinstance(n, int) and n > 0
        ]
        notes.append(", ".join(lost))
    return notes


def row_flow_chart(cfg: PipelineConfig, state: PipelineState) -> str | None:
    groups = row_flow_groups(cfg, state)
    if all(v is None for g in groups for v in g.values):
        return None
    series = [Series(name, COLORS[name]) for name in (SOURCE, INGESTED, UNION, STAGED)]
    return bar_chart(
        "Rows per table: in source, ingested, hist-union, staged",
        groups,
        series,
        axes=Axes("rows", "table (rows lost on the way in red)"),
        notes=row_flow_losses(cfg, state),
    )


def cluster_chart(state: PipelineState) -> str | None:
    hist = phase_metrics(state, Phase.UNIFICATION).get("ids_per_profile") or {}
    if not hist:
        return None
    groups = [
        Group(f"{n} id{'s' if int(n) != 1 else ''}", [float(hist[n])])
        for n in sorted(hist, key=int)
    ]
    series = [Series("profiles", SINGLE_COLOR)]
    return bar_chart(
        "Profiles by number of ids (cluster size)",
        groups,
        series,
        axes=Axes("profiles", "ids joined in one profile"),
    )


def coverage_chart(state: PipelineState) -> str | None:
    coverage = phase_metrics(state, Phase.UNIFICATION).get("coverage") or {}
    if not coverage:
        return None
    groups = [Group(table, [100.0 * float(share)]) for table, share in coverage.items()]
    series = [Series("rows with a profile id", SINGLE_COLOR)]
    return bar_chart(
        "Share of rows with a profile id, per table",
        groups,
        series,
        label=lambda v: f"{v:.1f}%",
        exact=lambda v: f"{v:.2f}%",
        max_value=100.0,
        axes=Axes("% of rows", "table"),
    )


def _charts(cfg: PipelineConfig, state: PipelineState) -> str:
    pending = "no data yet: the phase has not validated"
    return "".join(
        [
            "<h2>Charts</h2>",
            _figure("Row flow between phases", row_flow_chart(cfg, state), pending),
            _figure("Unification cluster-size distribution", cluster_chart(state), pending),
            _figure("Unification coverage per table", coverage_chart(state), pending),
        ]
    )


# -- sections ------------------------------------------------------------------------------
def _config(cfg: PipelineConfig) -> str:
    u = cfg.unification
    rows: list[tuple[str, Cell]] = [
        ("client", cfg.client),
        ("backend", cfg.global_.backend),
        ("workspace", str(cfg.workspace)),
    ]
    if cfg.global_.backend != "local":  # a local run never talks to Treasure Data
        key_state = "set (not shown)" if cfg.global_.td_api_key is not None else "not set"
        rows += [("TD endpoint", cfg.global_.td_endpoint), ("TD API key", key_state)]
    for ing in cfg.sources:
        rows += [
            ("source / connector", f"{ing.source_name} via {ing.connector}"),
            ("objects", ", ".join(ing.objects)),
            ("ingestion mode", f"{ing.mode}, incremental field {ing.incremental_field}"),
            ("start date", ing.start_date),
        ]
    src_dbs = list(dict.fromkeys(cfg.src_db_of(s) for s in cfg.sources))
    rows += [
        ("databases", ", ".join([*src_dbs, cfg.config_db, cfg.stg_db, cfg.unif_db])),
        (
            "hist-union tables",
            ", ".join(f"{r.database}.{r.table}" for r in cfg.hist_union_tables()),
        ),
        ("staging engine", cfg.staging.engine),
        (
            "unification",
            f"{u.name}: {u.id_method} {u.id_name}, {u.update_strategy}, "
            f"merge_iterations {u.merge_iterations}",
        ),
    ]
    return "<h2>Configuration</h2>" + _table(("setting", "value"), rows)


def _overview(cfg: PipelineConfig, state: PipelineState) -> str:
    rows = []
    for ps in stages(state):
        rows.append(
            (
                stage_label(ps),
                ps.status.value,
                ps.verdict,
                project_name(stage_config(cfg, ps), ps.phase),
                ps.project_id,
                ps.revision,
                phase_duration(ps),
                len(ps.files),
            )
        )
    headers = ("phase", "status", "verdict", "project", "project id", "revision", "time", "files")
    return "<h2>Phases</h2>" + _table(headers, rows)


def _timeline(state: PipelineState) -> str:
    rows, total = timeline_rows(state)
    return (
        "<h2>Timings against the expected timeline</h2>"
        + _note(
            f"Estimates from {EXPECTED_SOURCE}, for Treasure Data at production volumes. "
            "'took' runs from a phase's first step to its last; 'workflows ran' sums its "
            "workflow runs as the pipeline recorded them."
        )
        + _table(TIMELINE_HEADERS, [*rows, total])
    )


def _row_flow(cfg: PipelineConfig, state: PipelineState) -> str:
    return (
        "<h2>Row flow</h2>"
        + _note(load_rule(cfg).replace("`", ""))
        + _table(ROW_FLOW_HEADERS, row_flow_rows(cfg, state))
    )


def across_sources_html(state: PipelineState) -> str:
    across = across_sources(state)
    head = '<section id="across-sources"><h2>Across sources</h2>'
    if across is None:
        return head + _note("Unification has not validated yet.") + "</section>"
    out = [head, f"<p>{escape(across.summary)}</p>"]
    if across.added:
        out.append(f"<p>{escape(across.added)}</p>")
    if across.overlap:
        out.append("<p>Profiles found in both sources of each pair:</p>")
        out.append(_table(OVERLAP_HEADERS, across.overlap))
    out.append(
        "<p>Coverage per source table (a valid key: a value unification takes, in some key "
        "column):</p>"
    )
    out.append(_table(COVERAGE_HEADERS, across.coverage))
    return "".join([*out, "</section>"])


def _step_rows(steps: Iterable[StepState], known: dict[str, str]) -> list[list[Cell]]:
    return [
        [
            s.name,
            s.status.value,
            s.attempts,
            s.session_id,
            s.attempt_id,
            fmt_time(s.started_at),
            fmt_time(s.finished_at),
            scrub(s.last_error or "", known)[:300],
        ]
        for s in steps
    ]


def _metrics(ps: PhaseState, known: dict[str, str]) -> str:
    kept = {
        k: m
        for k, m in ((ps.validation or {}).get("metrics") or {}).items()
        if k not in CROSS_SOURCE_METRICS  # shown in their own section
    }
    metrics = mask_metrics(kept, known)
    out = []
    for block in metric_blocks(metrics):
        out.append(f"<p><b>{escape(block.title.capitalize())}</b></p>")
        out.append(_note(block.note) if block.note else _table(block.headers, block.rows))
    if not out:
        return ""
    return f"<details><summary>Metrics</summary>{''.join(out)}</details>"


def _validation(ps: PhaseState, known: dict[str, str]) -> str:
    v = ps.validation or {}
    verdict = ps.verdict or "-"
    out = [f'<p>Validation: <span class="{escape(verdict)}">{escape(verdict)}</span></p>']
    tables = v.get("tables") or []
    if tables:
        rows = [
            [
                f"{t['database']}.{t['table']}",
                t.get("row_count"),
                table_note(ps.phase, t),
            ]
            for t in tables
        ]
        out.append(_table(("table", "rows", "note"), rows))
    out.append(_items("Failures", [scrub(str(i), known) for i in v.get("failures") or []], "FAIL"))
    out.append(_items("Warnings", [scrub(str(i), known) for i in v.get("warnings") or []], "WARN"))
    out.append(_metrics(ps, known))
    return "".join(out)


def _phase(cfg: PipelineConfig, ps: PhaseState, known: dict[str, str]) -> str:
    view = stage_config(cfg, ps)
    flows = ", ".join(ps.workflows or workflows(view, ps.phase))
    anchor = ps.phase.value + "".join(f"-{s}" for s in [stage_source(ps)] if s)
    out = [
        f'<h3 id="phase-{escape(anchor)}">{escape(stage_label(ps))}</h3>',
        f"<p>Status <b>{escape(ps.status.value)}</b>; project "
        f"<code>{escape(project_name(view, ps.phase))}</code> (id {escape(ps.project_id or '-')}, "
        f"revision {escape(ps.revision or '-')}); workflows {escape(flows)}; "
        f"time {escape(phase_duration(ps))}.</p>",
    ]
    if ps.steps:
        headers = (
            "step",
            "status",
            "attempts",
            "session",
            "attempt",
            "started",
            "finished",
            "error",
        )
        out.append(_table(headers, _step_rows(ps.steps.values(), known)))
    if ps.files:
        listed = "".join(f"<li><code>{escape(f)}</code></li>" for f in ps.files)
        out.append(
            f"<details><summary>{len(ps.files)} files generated</summary><ul>{listed}</ul></details>"
        )
    if ps.secrets:
        out.append(f"<p>Secrets referenced: {escape(', '.join(ps.secrets))}</p>")
    out.append(_validation(ps, known))
    return "".join(out)


def _banner(state: PipelineState) -> str:
    prog = progress(state)
    css = "complete" if prog.complete else ("aborted" if prog.aborted else "partial")
    return f'<p class="banner {css}">{escape(prog.headline)}</p>'


def _headline(cfg: PipelineConfig, state: PipelineState) -> str:
    cards = "".join(
        f'<div class="figure"><div class="value">{escape(f.value)}</div>'
        f'<div class="name">{escape(f.name)}</div><div class="how">{escape(f.note)}</div></div>'
        for f in headline(cfg, state)
    )
    return f'<section id="headline"><h2>Headline figures</h2><div class="figures">{cards}</div></section>'


def render_html(cfg: PipelineConfig, state: PipelineState) -> str:
    action = next_action(cfg, state)
    every = stages(state)
    known = known_values([stage_metrics(ps) for ps in every])
    body = [
        f"<h1>CDP pipeline report: {escape(cfg.client)}</h1>",
        f"<p>Config <code>{escape(state.config_path)}</code>, run {state.run}, started "
        f"{escape(fmt_time(state.created_at))}, last change {escape(fmt_time(state.updated_at))}.</p>",
        _banner(state),
        _headline(cfg, state),
        across_sources_html(state),
        _config(cfg),
        _overview(cfg, state),
        _timeline(state),
        _row_flow(cfg, state),
        _charts(cfg, state),
        "<h2>Phase details</h2>",
        *(_phase(cfg, ps, known) for ps in every),
        "<h2>Next step</h2>",
        f"<p><code>{escape(format_call(action))}</code>: {escape(scrub(action.why, known))}</p>",
    ]
    title = escape(f"CDP pipeline report: {cfg.client}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
