"""Facts every report format shares, read off the state: timings and where the run stands."""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import INC_LOG, STAGING_LOG, Phase
from cdp_mcp.pipeline.nextstep import DONE
from cdp_mcp.pipeline.reports.stages import source_metrics, stage_label, stage_metrics, stages
from cdp_mcp.pipeline.state import PhaseState, PipelineState

LOGS = (INC_LOG, STAGING_LOG)  # bookkeeping tables: validation accepts them empty


class Progress(BaseModel):
    complete: bool
    aborted: bool
    stopped_at: str | None  # the first phase not done, when the run is not complete
    headline: str  # one sentence, plain text


def fmt_time(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(value, "strftime") else "-"


def phase_seconds(ps: PhaseState) -> float | None:
    starts = [s.started_at for s in ps.steps.values() if s.started_at]
    ends = [s.finished_at for s in ps.steps.values() if s.finished_at]
    if not starts or not ends:
        return None
    return (max(ends) - min(starts)).total_seconds()


def phase_duration(ps: PhaseState) -> str:
    seconds = phase_seconds(ps)
    return "-" if seconds is None else f"{seconds:.1f} s"


def progress(state: PipelineState) -> Progress:
    every = stages(state)
    complete = not state.aborted and all(ps.status in DONE for ps in every)
    stopped = next((stage_label(ps) for ps in every if ps.status not in DONE), None)
    if state.aborted:
        where = stopped or "after the last phase"
        headline = f"Aborted ({state.abort_reason}); stopped at phase {where}."
    elif not complete:
        headline = f"Partial report: the pipeline is at phase {stopped}."
    else:
        headline = "Complete: every phase validated (or was skipped by decision)."
    return Progress(complete=complete, aborted=state.aborted, stopped_at=stopped, headline=headline)


ROW_FLOW_HEADERS = (
    "table",
    "in source",
    "before start_date",
    "unparseable time",
    "loaded",
    "hist-union",
    "staged",
    "dropped by dedup",
)


def phase_metrics(state: PipelineState, phase: Phase) -> dict[str, Any]:
    """The metrics unification's last validation kept ({} before it validated); for a
    phase of each source, every source's merged (their tables' names differ)."""
    if phase is Phase.UNIFICATION:
        return stage_metrics(state.phase(phase))
    merged: dict[str, Any] = {}
    for ps in stages(state):
        if ps.phase is phase:
            for key, value in stage_metrics(ps).items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged.setdefault(key, value)
    return merged


def _loaded(cfg: PipelineConfig, state: PipelineState, table: str) -> int | None:
    """Rows ingestion loaded for a hist-union table: its object's backfill + incremental
    rows, or, for a table no ingested object names, the sides hist-union read."""
    obj, source = cfg.object_of(table), cfg.source_of_table(table)
    loaded = source_metrics(state, Phase.INGESTION, source).get("rows_loaded") or {}
    counts = loaded.get(obj)
    if obj and counts is not None:
        return int(counts.get("historical", 0) + counts.get("incremental", 0))
    flow = (source_metrics(state, Phase.HIST_UNION, source).get("row_flow") or {}).get(table)
    return int(flow["hist"] + flow["incremental"]) if flow else None


def row_flow_rows(cfg: PipelineConfig, state: PipelineState) -> list[list[int | str | None]]:
    """Per hist-union table, its rows from the source file to staging, and where they went
    (the report's table and its row-flow chart).

    The source columns are known for connector `file` only; a phase not validated yet
    leaves its columns empty.
    """
    flows = phase_metrics(state, Phase.HIST_UNION).get("row_flow") or {}
    staged = phase_metrics(state, Phase.STAGING).get("tables") or {}
    rows: list[list[int | str | None]] = []
    for ref in cfg.hist_union_tables():
        obj, source = cfg.object_of(ref.table), cfg.source_of_table(ref.table)
        sources = source_metrics(state, Phase.INGESTION, source).get("source_rows") or {}
        src = (sources.get(obj) if obj else None) or {}
        stg = staged.get(ref.table) or {}
        rows.append(
            [
                ref.table,
                src.get("source_rows"),
                src.get("before_start_date"),
                src.get("unparseable_time"),
                _loaded(cfg, state, ref.table),
                (flows.get(ref.table) or {}).get("union"),
                stg.get("staged_rows"),
                stg.get("dropped_by_dedup"),
            ]
        )
    return rows


class Figure(NamedTuple):
    """One headline figure: what it is, its value as text, and how it was reached."""

    name: str
    value: str
    note: str = ""


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _unification_figures(state: PipelineState) -> list[Figure]:
    m = phase_metrics(state, Phase.UNIFICATION)
    pending = "unification has not validated yet"
    if "profiles" not in m:
        return [Figure("profiles", "-", pending), Figure("records per profile", "-", pending)]
    profiles = int(m["profiles"])
    hist = m.get("ids_per_profile") or {}
    ids = sum(int(n) * int(c) for n, c in hist.items())
    coverage = m.get("coverage") or {}
    rows = {
        t["table"]: t.get("row_count") or 0
        for t in (state.phase(Phase.UNIFICATION).validation or {}).get("tables") or []
    }
    with_id = sum(
        round(float(share) * rows.get(f"enriched_{t}", 0)) for t, share in coverage.items()
    )
    merged = sum(int(c) for n, c in hist.items() if int(n) > 1)
    figures = [
        Figure(
            "profiles",
            f"{profiles:,}",
            f"{merged:,} of them joined several ids" if profiles else "no profile was built",
        ),
        Figure(
            "records per profile",
            f"{with_id / profiles:.2f}" if profiles else "-",
            f"{with_id:,} records with a profile id; {ids / profiles:.2f} ids per profile"
            if profiles
            else "",
        ),
    ]
    total = sum(rows.get(f"enriched_{t}", 0) for t in coverage)
    if coverage and total:
        figures.append(
            Figure(
                "cross-table coverage",
                _pct(with_id / total),
                "rows of the unified tables that received a profile id: "
                + ", ".join(f"{t} {_pct(float(s))}" for t, s in coverage.items()),
            )
        )
    return figures


def _dq_figure(state: PipelineState) -> Figure:
    tables = phase_metrics(state, Phase.STAGING).get("tables") or {}
    scores = {t: s["dq_score"] for t, s in tables.items() if s.get("dq_score") is not None}
    if not scores:
        return Figure("data-quality score", "-", "staging has not validated yet")
    return Figure(
        "data-quality score (lowest)",
        f"{min(scores.values()):g}",
        "0-100 per staging table (keys present and unique, valid emails and phones, "
        "parseable times): " + ", ".join(f"{t} {s:g}" for t, s in scores.items()),
    )


def left_out(cfg: PipelineConfig, state: PipelineState) -> dict[str, int]:
    """Source rows that did not reach a profile, by why (zero counts left out)."""
    why: dict[str, int] = {}

    def add(reason: str, n: object) -> None:
        if isinstance(n, int) and n > 0:
            why[reason] = why.get(reason, 0) + n

    for source in cfg.sources:
        name = source.source_name
        start = str(source.start_date).removesuffix("T00:00:00.000000")
        ingested = source_metrics(state, Phase.INGESTION, name).get("source_rows") or {}
        for src in ingested.values():
            add(f"dated before start_date ({start})", src.get("before_start_date"))
            add("time not parseable", src.get("unparseable_time"))
            add("not loaded yet", src.get("eligible_not_loaded"))
    for stats in (phase_metrics(state, Phase.STAGING).get("tables") or {}).values():
        add("duplicates removed by staging", stats.get("dropped_by_dedup"))
        add("loaded after staging's last run", stats.get("rows_after_watermark"))
    unif = state.phase(Phase.UNIFICATION).validation or {}
    rows = {t["table"]: t.get("row_count") or 0 for t in unif.get("tables") or []}
    for table, share in (phase_metrics(state, Phase.UNIFICATION).get("coverage") or {}).items():
        total = rows.get(f"enriched_{table}", 0)
        add("no usable identity value (no profile id)", total - round(float(share) * total))
    return why


def headline(cfg: PipelineConfig, state: PipelineState) -> list[Figure]:
    """The figures a reader wants first: profiles, records per profile, coverage, data
    quality, and the rows left out on the way, with why."""
    why = left_out(cfg, state)
    total = sum(why.values())
    lost = Figure(
        "rows left out",
        f"{total:,}",
        "; ".join(f"{n:,} {reason}" for reason, n in why.items()) or "none",
    )
    return [*_unification_figures(state), *_cross_source_figure(state), _dq_figure(state), lost]


def table_note(phase: Phase, table: dict[str, Any]) -> str:
    """What a reader should know of a validated table. Validation does not warn about an
    empty ingestion table (the object's rows may all be in its other load mode's table) nor
    an empty log; every other empty table is one of the phase's warnings."""
    if not table.get("exists"):
        return "does not exist"
    if table.get("missing_columns"):
        return f"missing columns: {', '.join(table['missing_columns'])}"
    if table.get("row_count") != 0:
        return ""
    if table["table"] in LOGS:
        return "empty: a log with nothing to record yet"
    if phase is Phase.INGESTION:
        return "empty: no rows in this load mode; the object's rows are in its other table"
    return "empty (see the warnings)"


# The unification metrics the "Across sources" section shows (pipeline/cross_source.py);
# a phase's own metric tables leave them out.
CROSS_SOURCE_METRICS = (
    "profiles_in_several_sources",
    "profiles_by_sources",
    "profiles_per_source",
    "source_overlap",
    "table_coverage",
    "added_sources",
)
OVERLAP_HEADERS = ("source", "and source", "profiles in both")
COVERAGE_HEADERS = (
    "table",
    "source",
    "rows",
    "rows with a profile id",
    "rows with a valid key",
    "share with an id",
)


class AcrossSources(NamedTuple):
    summary: str  # one sentence
    overlap: list[list[int | str | None]]  # OVERLAP_HEADERS
    coverage: list[list[int | str | None]]  # COVERAGE_HEADERS
    added: str | None = None  # what sources added since the last unification brought


def added_sources_sentence(m: dict[str, Any]) -> str | None:
    """What the sources added to a unified pipeline brought, in words (counts only)."""
    a = m.get("added_sources") or {}
    if not a.get("sources") or "new_profiles" not in a:
        return None
    before, now = int(a["earlier_profiles_before"]), int(a["earlier_profiles_now"])
    if now < before:
        change = f"{before - now:,} fewer: profiles the added records joined into one"
    elif now > before:
        change = f"{now - before:,} more: new rows of the earlier sources"
    else:
        change = "none joined"
    return (
        f"Sources added after unification had run over "
        f"{', '.join(a.get('earlier_sources') or [])}: {', '.join(a['sources'])}. They brought "
        f"{int(a['new_profiles']):,} new profiles (found in no earlier source) and found "
        f"{int(a['earlier_profiles_found_again']):,} profiles of the earlier sources "
        "again; the earlier sources' profiles "
        f"went from {before:,} to {now:,} ({change})."
    )


def across_sources(state: PipelineState) -> AcrossSources | None:
    """Profiles found in more than one source, the overlap of every pair of sources and
    coverage per source table, from the unification's validation (None before it). Counts
    only: no value of any key."""
    m = phase_metrics(state, Phase.UNIFICATION)
    if "table_coverage" not in m:
        return None
    per_source = m.get("profiles_per_source") or {}
    profiles = int(m.get("profiles") or 0)
    multi = int(m.get("profiles_in_several_sources") or 0)
    counts = ", ".join(f"{s} {int(n):,}" for s, n in per_source.items())
    if len(per_source) > 1:
        by = "; ".join(f"{int(n):,} {k}" for k, n in (m.get("profiles_by_sources") or {}).items())
        summary = (
            f"{multi:,} of {profiles:,} profiles are found in more than one source ({by}). "
            f"Profiles per source: {counts}."
        )
    else:
        summary = f"One source ({counts or '-'} profiles): no profile can span sources."
    overlap: list[list[int | str | None]] = [
        [o["source"], o["and_source"], int(o["profiles_in_both"])]
        for o in m.get("source_overlap") or []
    ]
    coverage: list[list[int | str | None]] = [
        [
            table,
            c.get("source"),
            int(c.get("rows") or 0),
            int(c.get("rows_with_id") or 0),
            int(c.get("rows_with_valid_key") or 0),
            _pct(float(c.get("id_share") or 0.0)),
        ]
        for table, c in (m.get("table_coverage") or {}).items()
    ]
    return AcrossSources(summary, overlap, coverage, added_sources_sentence(m))


def _cross_source_figure(state: PipelineState) -> list[Figure]:
    m = phase_metrics(state, Phase.UNIFICATION)
    per_source = m.get("profiles_per_source") or {}
    if len(per_source) < 2:
        return []
    pairs = ", ".join(
        f"{o['source']} & {o['and_source']} {int(o['profiles_in_both']):,}"
        for o in m.get("source_overlap") or []
    )
    return [
        Figure(
            "profiles in several sources",
            f"{int(m.get('profiles_in_several_sources') or 0):,}",
            f"of {int(m.get('profiles') or 0):,} profiles; in both of a pair: {pairs}",
        )
    ]


def load_rule(cfg: PipelineConfig) -> str:
    """Which rows the loads take, per source, as one sentence."""
    rules = [
        f"`{s.incremental_field}` is a time at or after start_date {s.start_date}"
        + (f" ({s.source_name})" if len(cfg.sources) > 1 else "")
        for s in cfg.sources
    ]
    return f"Loads take rows whose {'; '.join(rules)}; staging keeps one row per key."
