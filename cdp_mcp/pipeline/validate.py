"""The validate step: do the phase's tables exist with the right columns, and do the numbers
add up. Every check runs through the backend (table list + Presto SQL), so it means the same
on the embedded backend and on Treasure Data.

Verdict: FAIL when a table is missing, lacks an expected column, or a number is impossible
(rows lost between phases, duplicate keys after dedup); WARN when something needs a person's
eye (an empty table, a value joining too many people); PASS otherwise.
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel, Field

from cdp_mcp.backends.base import Backend, BackendError, TableInfo
from cdp_mcp.backends.local.unification.report import scaled_threshold
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import (
    INC_LOG,
    INGESTION_LOG,
    STAGING_LOG,
    ExpectedTable,
    Phase,
    expected_tables,
)
from cdp_mcp.core.pii import mask_value
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.core.staging_rules import column_kind
from cdp_mcp.core.time_formats import suggest
from cdp_mcp.core.unify_plan import UnificationPlan, plan_unification
from cdp_mcp.pipeline.cross_source import added_source_metrics, cross_source_metrics
from cdp_mcp.pipeline.models import TableCheck, Verdict
from cdp_mcp.pipeline.source_flow import SourceRows, source_rows


class Findings(BaseModel):
    tables: list[TableCheck]
    metrics: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if self.failures:
            return "FAIL"
        return "WARN" if self.warnings else "PASS"


def _q(db: str, table: str) -> str:
    return f"{quote_ident(db)}.{quote_ident(table)}"


async def _scalar(backend: Backend, sql: str, db: str) -> Any:
    result = await backend.query(sql, db)
    return result.rows[0][0] if result.rows else None


class _Catalog:
    """Table lists per database, fetched once per validation."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._dbs: dict[str, dict[str, TableInfo]] = {}

    async def table(self, db: str, name: str) -> TableInfo | None:
        if db not in self._dbs:
            try:
                infos = await self.backend.tables(db)
            except BackendError:
                infos = []  # a missing database means missing tables
            self._dbs[db] = {t.name: t for t in infos}
        return self._dbs[db].get(name)


async def check_tables(catalog: _Catalog, expected: list[ExpectedTable]) -> list[TableCheck]:
    checks = []
    for exp_table in expected:
        info = await catalog.table(exp_table.database, exp_table.table)
        present = {c.name for c in info.columns} if info else set()
        missing = [c for c in exp_table.columns if c not in present] if info else []
        problems = []
        if info is None:
            problems.append("table does not exist")
        elif missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        elif info.count == 0:
            problems.append("table is empty")
        checks.append(
            TableCheck(
                database=exp_table.database,
                table=exp_table.table,
                exists=info is not None,
                row_count=info.count if info else None,
                expected_columns=exp_table.columns,
                missing_columns=missing,
                problems=problems,
            )
        )
    return checks


async def validate_phase(
    cfg: PipelineConfig,
    phase: Phase,
    backend: Backend,
    schemas: SchemaMap,
    before_added: dict[str, Any] | None = None,
) -> Findings:
    """`before_added`: what unification had found before sources were added
    (PhaseState.before_added), for its metrics to say what the added sources brought."""
    async with backend.held():
        findings = await _validate_phase(cfg, phase, backend, schemas)
        if phase is Phase.UNIFICATION and before_added and not findings.failures:
            plan = plan_unification(cfg, schemas)
            findings.metrics["added_sources"] = await added_source_metrics(
                cfg, backend, plan, before_added
            )
        return findings


async def _validate_phase(
    cfg: PipelineConfig, phase: Phase, backend: Backend, schemas: SchemaMap
) -> Findings:
    catalog = _Catalog(backend)
    checks = await check_tables(catalog, expected_tables(cfg, phase, schemas))
    findings = Findings(tables=checks)
    for c in checks:
        name = f"{c.database}.{c.table}"
        if not c.exists:
            findings.failures.append(f"{name} does not exist")
        elif c.missing_columns:
            findings.failures.append(f"{name} lacks columns: {', '.join(c.missing_columns)}")
        elif c.row_count == 0 and phase is not Phase.INGESTION and c.table not in LOGS:
            # (an ingestion table may be empty: the other mode may hold the object's rows)
            findings.warnings.append(f"{name} is empty")
    if findings.failures:
        return findings  # numbers over missing tables would only repeat the failures
    metric = {
        Phase.INGESTION: _ingestion_metrics,
        Phase.HIST_UNION: _hist_union_metrics,
        Phase.STAGING: _staging_metrics,
        Phase.UNIFICATION: _unification_metrics,
    }[phase]
    await metric(cfg, backend, catalog, schemas, findings)
    return findings


LOGS = (INC_LOG, STAGING_LOG)  # bookkeeping tables: empty is no warning


async def _count(catalog: _Catalog, db: str, table: str) -> int:
    info = await catalog.table(db, table)
    return info.count if info else 0


async def _ingestion_metrics(
    cfg: PipelineConfig, backend: Backend, catalog: _Catalog, _: SchemaMap, f: Findings
) -> None:
    rows = {}
    for obj in cfg.ingestion.objects:
        t = f"{cfg.source}_{obj}"
        rows[obj] = {
            "historical": await _count(catalog, cfg.src_db, f"{t}_hist"),
            "incremental": await _count(catalog, cfg.src_db, t),
        }
    f.metrics["rows_loaded"] = rows
    for obj, counts in rows.items():
        if counts["historical"] + counts["incremental"] == 0:
            f.warnings.append(f"no rows of {obj} were loaded (check start_date and the source)")
    # The latest log row per object says whether its last load worked. `time` is in whole
    # seconds, and a failed load and its retry often share one: the attempt id (increasing
    # on Digdag) decides first.
    result = await backend.query(
        "SELECT object_name, mode, status, message FROM ("
        "SELECT object_name, mode, status, message, row_number() OVER "
        "(PARTITION BY object_name, mode "
        "ORDER BY TRY_CAST(attempt_id AS BIGINT) DESC NULLS LAST, time DESC) AS rn "
        f"FROM {_q(cfg.src_db, INGESTION_LOG)}) WHERE rn = 1",
        cfg.src_db,
    )
    for obj, mode, status, message in result.rows:
        if status != "success":
            f.failures.append(f"the last {mode} load of {obj} ended {status}: {message}")
    # Rows per load, in load order. Source rows before start_date are never loaded, so no
    # backend can count them: what was loaded, per mode and per load, is what is reported.
    loads = await backend.query(
        "SELECT object_name, mode, status, rows_loaded, range_start, range_end "
        f"FROM {_q(cfg.src_db, INGESTION_LOG)} "
        "ORDER BY time, TRY_CAST(attempt_id AS BIGINT) NULLS FIRST, mode",
        cfg.src_db,
    )
    per_load: dict[str, list[dict[str, Any]]] = {obj: [] for obj in cfg.ingestion.objects}
    for obj, mode, status, n, start, end in loads.rows:
        per_load.setdefault(str(obj), []).append(
            {
                "mode": mode,
                "status": status,
                "rows": int(n or 0),
                "range_start": start or "",
                "range_end": end or "",
            }
        )
    f.metrics["loads"] = per_load
    f.metrics["start_date"] = cfg.ingestion.start_date
    total = sum(v["historical"] + v["incremental"] for v in rows.values())
    f.metrics["rows_total"] = total
    await _source_metrics(cfg, rows, f)


async def _source_metrics(
    cfg: PipelineConfig, loaded: dict[str, dict[str, int]], f: Findings
) -> None:
    """Connector `file`: the source rows each load left out, and why (see source_flow)."""
    sources = await anyio.to_thread.run_sync(source_rows, cfg)
    if not sources:
        return
    out: dict[str, Any] = {}
    for obj, s in sources.items():
        n = loaded[obj]["historical"] + loaded[obj]["incremental"]
        missing = s.eligible - n
        out[obj] = {
            **s.model_dump(),
            "loaded": n,
            "eligible_not_loaded": max(missing, 0),
        }
        f.warnings.extend(left_out_warnings(obj, s))
        if missing > 0:
            f.warnings.append(
                f"{missing} rows of {s.file} from start_date on are not loaded: appended "
                "after the last load, or late rows at or before the watermark (incremental "
                "loads skip those)"
            )
        elif missing < 0:
            f.warnings.append(
                f"{-missing} more rows of {obj} are loaded than {s.file} holds from start_date "
                "on: a range loaded twice, or rows removed from the file"
            )
    f.metrics["source_rows"] = out


# Rows a load leaves out by rule, as a share of the file, above which the verdict WARNs: a
# handful of junk timestamps is normal in an extract, a percent is a form nobody parsed.
# Rows before start_date are left out on request, so only a majority of them (a start_date
# in the wrong year, say) needs a person's eye.
LEFT_OUT_WARN_SHARE = 0.01
BEFORE_START_WARN_SHARE = 0.5


def left_out_warnings(obj: str, s: SourceRows) -> list[str]:
    """WARNs for rows of `obj`'s file no load takes, with the count and the fix."""
    out = []
    total = s.source_rows
    if total and s.unparseable_time / total > LEFT_OUT_WARN_SHARE:
        samples = ", ".join(repr(v) for v in s.unparseable_samples)
        out.append(
            f"{s.unparseable_time} of {total} rows of {s.file} "
            f"({s.unparseable_time / total:.0%}) are never loaded: their {s.field} is empty "
            f"or in no known timestamp form (e.g. {samples or 'empty'}). The loads read ISO "
            "8601, yyyy/mm/dd, mm/dd/yyyy[ hh:mm:ss], mm/dd/yyyy h:mm[:ss] AM/PM, "
            "dd.mm.yyyy[ hh:mm[:ss]], yyyymmdd and the forms of ingestion.time_formats; "
            + (
                f"add {guess!r} to ingestion.time_formats, then run ingestion again"
                if (guess := suggest(s.unparseable_samples))
                else "name their form in ingestion.time_formats (e.g. 'DD/MM/YYYY HH:mm'), "
                "or fill the empty values"
            )
        )
    if total and s.before_start_date / total > BEFORE_START_WARN_SHARE:
        out.append(
            f"{s.before_start_date} of {total} rows of {s.file} "
            f"({s.before_start_date / total:.0%}) are never loaded: their {s.field} is "
            "before ingestion.start_date; set an earlier start_date if they are wanted"
        )
    return out


async def _hist_union_metrics(
    cfg: PipelineConfig, backend: Backend, catalog: _Catalog, _: SchemaMap, f: Findings
) -> None:
    flow = {}
    for ref in cfg.hist_union_tables():
        db = ref.database or cfg.src_db
        hist = await _count(catalog, db, f"{ref.table}_hist")
        inc = await _count(catalog, db, ref.table)
        union = await _count(catalog, db, f"{ref.table}_hist_union")
        flow[ref.table] = {"hist": hist, "incremental": inc, "union": union}
        if union < hist + inc:
            f.failures.append(
                f"{db}.{ref.table}_hist_union has {union} rows, fewer than _hist ({hist}) + "
                f"incremental ({inc}): rows were lost"
            )
        elif union > hist + inc:
            f.warnings.append(
                f"{db}.{ref.table}_hist_union has {union - hist - inc} more rows than its "
                "sources (a range was reloaded); staging's dedup removes the copies"
            )
    f.metrics["row_flow"] = flow


# Data-quality score weights (see `dq_score` and docs/internals.md, "Data-quality score").
DQ_WEIGHTS = {
    "key_not_null": 0.25,
    "key_unique": 0.15,
    "contact_valid": 0.45,
    "time_not_null": 0.15,
}
DQ_SCORE_FORMULA = (
    "dq_score = round(100 * sum(w_i * c_i) / sum(w_i), 1) over the components present: "
    "key_not_null = 1 - null_rate_{key} (w 0.25); key_unique = 1 - duplicate_share (w 0.15); "
    "{col}_valid = {col}_valid_share per email/phone column (w 0.45 split equally among them); "
    "time_not_null = 1 - null_rate_{incremental_field}_unixtime (w 0.15)"
)
DQ_WARN_BELOW = 60


def dq_score(stats: dict[str, Any], key: str, contacts: list[str], time_col: str | None) -> Any:
    """The 0-100 data-quality score of a staging table, from its metrics, and its components.

    score = round(100 * sum(w_i * c_i) / sum(w_i), 1), over the components present:
    - key_not_null = 1 - null_rate_{key}, weight 0.25 (rows staging cannot deduplicate or join);
    - key_unique = 1 - duplicate_share, weight 0.15 (duplicate_share = (non-NULL keys -
      distinct keys) / rows);
    - {col}_valid = {col}_valid_share for each email/phone column, weight 0.45 split equally
      among them (the identity keys unification joins on);
    - time_not_null = 1 - null_rate_{incremental_field}_unixtime, weight 0.15 (rows whose
      recency cannot be parsed; a numeric incremental field has no _unixtime and is used as is).
    A component whose column the table lacks is left out and the other weights renormalised.
    Returns (score or None when there is nothing to score, {component: value}).
    """
    parts: list[tuple[str, float, float]] = []
    if f"null_rate_{key}" in stats:
        parts.append(("key_not_null", DQ_WEIGHTS["key_not_null"], 1 - stats[f"null_rate_{key}"]))
    if "duplicate_share" in stats:
        parts.append(("key_unique", DQ_WEIGHTS["key_unique"], 1 - stats["duplicate_share"]))
    for col in contacts:
        weight = DQ_WEIGHTS["contact_valid"] / len(contacts)
        parts.append((f"{col}_valid", weight, stats[f"{col}_valid_share"]))
    if time_col and f"null_rate_{time_col}" in stats:
        parts.append(
            ("time_not_null", DQ_WEIGHTS["time_not_null"], 1 - stats[f"null_rate_{time_col}"])
        )
    if not parts:
        return None, {}
    total = sum(w for _, w, _ in parts)
    score = round(100 * sum(w * c for _, w, c in parts) / total, 1)
    return score, {name: round(c, 4) for name, _, c in parts}


async def _staging_metrics(
    cfg: PipelineConfig, backend: Backend, catalog: _Catalog, schemas: SchemaMap, f: Findings
) -> None:
    per_table: dict[str, Any] = {}
    flow: dict[str, Any] = {}
    inc_field = cfg.ingestion.incremental_field
    for ref in cfg.hist_union_tables():
        db = ref.database or cfg.src_db
        hist = await _count(catalog, db, f"{ref.table}_hist")
        inc = await _count(catalog, db, ref.table)
        union = await _count(catalog, db, f"{ref.table}_hist_union")
        staged = await _count(catalog, cfg.stg_db, ref.table)
        stats: dict[str, Any] = {"union_rows": union, "staged_rows": staged}
        # Staging holds the union up to its watermark: rows loaded since wait for its next
        # run, and were not dropped.
        waiting = await _rows_after_watermark(cfg, backend, db, ref.table)
        stats["rows_after_watermark"] = waiting
        stats["dropped_by_dedup"] = union - waiting - staged
        if waiting:
            f.warnings.append(
                f"{db}.{ref.table}_hist_union has {waiting} rows loaded after staging's last "
                f"run: run transform_{cfg.source} again to stage them"
            )
        obj = cfg.object_of(ref.table)
        key = cfg.primary_key(obj) if obj else "id"
        columns = [c for c in schemas.get(f"{cfg.stg_db}.{ref.table}", [])]
        names = {c.name for c in columns}
        target = _q(cfg.stg_db, ref.table)
        contacts = [
            c.name
            for c in columns
            if column_kind(c, inc_field) in ("email", "phone") and f"{c.name}_valid" in names
        ]
        time_col = next((c for c in (f"{inc_field}_unixtime", inc_field) if c in names), None)
        has_key = key in names
        if staged:
            # One scan: non-NULL counts of the key, contact and time columns, valid counts.
            wanted = [*([key] if has_key else []), *contacts, *([time_col] if time_col else [])]
            null_cols = list(dict.fromkeys(wanted))
            exprs = [f"count({quote_ident(c)})" for c in null_cols]
            exprs += [f"count_if({quote_ident(c + '_valid')})" for c in contacts]
            if has_key:
                exprs.append(f"count(DISTINCT {quote_ident(key)})")
            row = (
                await backend.query(f"SELECT {', '.join(exprs)} FROM {target}", cfg.stg_db)
            ).rows[0]
            values = [int(v or 0) for v in row]
            non_null = dict(zip(null_cols, values, strict=False))
            valid = dict(zip(contacts, values[len(null_cols) :], strict=False))
            if has_key:
                stats["null_key_rows"] = staged - non_null[key]
                dup_rows = non_null[key] - values[-1]
                stats["duplicate_share"] = round(dup_rows / staged, 4)
                # the values held more than once: counted only when some are (a second scan)
                dupes = (
                    await _duplicate_keys(backend, cfg.stg_db, ref.table, key) if dup_rows else 0
                )
                stats["duplicate_keys"] = dupes
                if dupes:
                    f.failures.append(
                        f"{cfg.stg_db}.{ref.table} has {dupes} duplicate {key} values after dedup"
                    )
            for c in null_cols:
                stats[f"null_rate_{c}"] = round((staged - non_null[c]) / staged, 4)
            for c in contacts:
                stats[f"{c}_valid_share"] = round(valid[c] / staged, 4)
            score, components = dq_score(stats, key, contacts, time_col)
            if score is not None:
                stats["dq_score"] = score
                stats["dq_components"] = components
                if score < DQ_WARN_BELOW:
                    weakest = min(components, key=lambda n: components[n])
                    f.warnings.append(
                        f"{cfg.stg_db}.{ref.table} has data-quality score {score} (below "
                        f"{DQ_WARN_BELOW}); weakest component: {weakest} = {components[weakest]}"
                    )
        per_table[ref.table] = stats
        flow[ref.table] = {
            "ingested": hist + inc,
            "hist": hist,
            "incremental": inc,
            "union": union,
            "staged": staged,
            "dropped": {"dedup": union - waiting - staged},
            "waiting_for_staging": waiting,
            "null_key_rows_kept": stats.get("null_key_rows", 0),
        }
    f.metrics["tables"] = per_table
    f.metrics["row_flow"] = flow
    f.metrics["dq_score_formula"] = DQ_SCORE_FORMULA


async def _duplicate_keys(backend: Backend, db: str, table: str, key: str) -> int:
    col = quote_ident(key)
    sql = (
        f"SELECT count(*) FROM (SELECT {col} FROM {_q(db, table)} "
        f"WHERE {col} IS NOT NULL GROUP BY 1 HAVING count(*) > 1)"
    )
    return int(await _scalar(backend, sql, db) or 0)


async def _rows_after_watermark(cfg: PipelineConfig, backend: Backend, db: str, table: str) -> int:
    """Rows of the hist-union table loaded after the staging watermark last recorded for
    `table` (its transform's row in staging_log, named `{stg}.{table}#<digest>`)."""
    prefix = f"{cfg.stg_db}.{table}#"
    watermark = (
        f"SELECT max_by({quote_ident('watermark')}, {quote_ident('time')}) "
        f"FROM {_q(cfg.config_db, STAGING_LOG)} "
        f"WHERE substr({quote_ident('table_name')}, 1, {len(prefix)}) = {sql_string(prefix)}"
    )
    sql = f"SELECT count(*) FROM {_q(db, table + '_hist_union')} WHERE {quote_ident('time')} > ({watermark})"
    try:
        return int(await _scalar(backend, sql, db) or 0)
    except BackendError:
        return 0  # no staging_log yet: nothing was staged


async def _unification_metrics(
    cfg: PipelineConfig, backend: Backend, catalog: _Catalog, schemas: SchemaMap, f: Findings
) -> None:

    plan = plan_unification(cfg, schemas)
    idn = cfg.unification.id_name
    lookup = _q(cfg.unif_db, f"{idn}_lookup")
    # TD's lookup holds the id in a column named by the method, not by the id.
    uid = quote_ident(cfg.unification.id_method)
    # One grouping of the lookup by profile gives the profiles (its non-NULL groups), how
    # many ids each has, and the largest five.
    sizes = await backend.query(
        f"WITH per AS (SELECT {uid} AS pid, count(*) AS n FROM {lookup} GROUP BY 1) "
        "SELECT 'n' AS part, n, count(*) AS c, NULL AS pid FROM per GROUP BY n "
        "UNION ALL SELECT 'profiles', NULL, count(pid), NULL FROM per "
        "UNION ALL SELECT 'top', n, NULL, pid FROM "
        "(SELECT pid, n FROM per ORDER BY n DESC, pid LIMIT 5) largest",
        cfg.unif_db,
    )
    per_size = sorted((int(n), int(c)) for part, n, c, _ in sizes.rows if part == "n")
    largest = sorted(
        ((int(n), pid) for part, n, _, pid in sizes.rows if part == "top"),
        key=lambda t: (-t[0], t[1]),
    )
    f.metrics["profiles"] = sum(int(c) for part, _, c, _ in sizes.rows if part == "profiles")
    f.metrics["ids_per_profile"] = {str(n): c for n, c in per_size}
    f.metrics["largest_clusters"] = [{"id": str(i), "values": n} for n, i in largest]
    across, warnings, dead_columns = await cross_source_metrics(cfg, backend, plan)
    coverage = {}
    for t in plan.tables:
        total = await _count(catalog, cfg.unif_db, f"enriched_{t.table}")
        staged = await _count(catalog, t.database, t.table)
        # The rows with an id: count(id) of enriched_{table}, which the cross-source
        # coverage has just counted in its own scan of that table.
        with_id = across["table_coverage"][t.table]["rows_with_id"]
        coverage[t.table] = round(with_id / total, 4) if total else 0.0
        if total != staged:
            f.failures.append(
                f"enriched_{t.table} has {total} rows but {t.database}.{t.table} has {staged}: "
                "enrichment must keep every staging row"
            )
    f.metrics["coverage"] = coverage
    f.metrics.update(across)
    f.warnings.extend(warnings)
    await _key_values(cfg, backend, catalog, plan, f)
    taken = f.metrics.get("key_values")
    for key, column_warnings in dead_columns.items():
        if taken is None or taken.get(key, 0) > 0:  # else the key's own warning says it
            f.warnings.extend(column_warnings)
    if await catalog.table(cfg.unif_db, f"{idn}_cluster_report") is not None:
        await _cluster_report(cfg, backend, f)  # the local engine's own report
    else:
        await _over_merge(cfg, backend, [(c.name, c.key) for c in plan.input_columns], f)


async def _key_values(
    cfg: PipelineConfig, backend: Backend, catalog: _Catalog, plan: UnificationPlan, f: Findings
) -> None:
    """Per key, the values unification took (rows of the lookup), against the non-NULL
    values its columns hold: a key none of whose values passed its valid_regexp or
    invalid_texts joins nobody. And per table, rows with no value in any key column."""
    idn = cfg.unification.id_name
    if await catalog.table(cfg.unif_db, f"{idn}_keys") is None:
        return
    taken = await backend.query(
        f"SELECT k.key_name, count(*) FROM {_q(cfg.unif_db, f'{idn}_lookup')} l "
        f"JOIN {_q(cfg.unif_db, f'{idn}_keys')} k ON l.id_key_type = k.key_type GROUP BY 1",
        cfg.unif_db,
    )
    per_key = {str(k): int(n) for k, n in taken.rows}
    present: dict[str, int] = {}
    for t in plan.tables:
        target = _q(t.database, t.table)
        cols = [quote_ident(c.column) for c in t.key_columns]
        counts = [f"count({c})" for c in cols]
        all_null = " AND ".join(f"{c} IS NULL" for c in cols)
        row = (
            await backend.query(
                f"SELECT count(*), count_if({all_null}), {', '.join(counts)} FROM {target}",
                t.database,
            )
        ).rows[0]
        rows, empty, *non_null = (int(v or 0) for v in row)
        for kc, n in zip(t.key_columns, non_null, strict=True):
            present[kc.key] = present.get(kc.key, 0) + n
        if rows and empty == rows:
            names = ", ".join(c.column for c in t.key_columns)
            f.warnings.append(
                f"{t.database}.{t.table}: all {rows} rows have NULL in every key column "
                f"({names}): the table joins no profile; check the columns in "
                "unification.tables"
            )
    f.metrics["key_values"] = {k.name: per_key.get(k.name, 0) for k in plan.keys}
    for key in plan.keys:
        if per_key.get(key.name, 0) == 0 and present.get(key.name, 0) > 0:
            rule = f"valid_regexp {key.valid_regexp!r}" if key.valid_regexp else "invalid_texts"
            f.warnings.append(
                f"key {key.name}: none of the {present[key.name]} non-NULL values of its "
                f"columns passed its {rule}, so no profile is joined on it; check the "
                "pattern (a backslash doubled in YAML's double quotes matches a literal "
                "backslash)"
            )


async def _cluster_report(cfg: PipelineConfig, backend: Backend, f: Findings) -> None:
    """Largest clusters with the values that joined them, over-merges and split clusters,
    as the local unification engine recorded them in `{id}_cluster_report`."""
    idn = cfg.unification.id_name
    report = _q(cfg.unif_db, f"{idn}_cluster_report")
    rows = await backend.query(
        "SELECT kind, rank, unified_id, key_name, value, records, cluster_values, detail "
        f"FROM {report} WHERE kind IN ('cluster_value', 'over_merge', 'split') "
        "ORDER BY kind, rank",
        cfg.unif_db,
    )
    joined: dict[str, list[str]] = {}
    splits: set[int] = set()
    suspects = []
    for kind, rank, person, key, value, records, _values, detail in rows.rows:
        if kind == "cluster_value" and len(joined.get(str(person), [])) < 5:
            joined.setdefault(str(person), []).append(f"{key}={value} ({records} records)")
        elif kind == "over_merge":
            suspects.append({"key": key, "value": str(value), "records": int(records or 0)})
            f.warnings.append(str(detail))
        elif kind == "split":
            splits.add(int(rank))
    for cluster in f.metrics.get("largest_clusters", []):
        cluster["joined_by"] = joined.get(cluster["id"], [])
    f.metrics["over_merge_suspects"] = suspects
    f.metrics["split_clusters"] = len(splits)
    if splits:
        f.warnings.append(
            f"{len(splits)} clusters were left split because merge_iterations "
            f"({cfg.unification.merge_iterations}) was reached; raise it if they are one person"
        )


async def _over_merge(
    cfg: PipelineConfig, backend: Backend, columns: list[tuple[str, str]], f: Findings
) -> None:
    """Values shared by more records than the threshold: the classic junk that over-merges.
    The threshold is over_merge_threshold when set, else scaled with the data as the local
    engine's report scales it (report.scaled_threshold: by the median records per value)."""
    explicit = "over_merge_threshold" in cfg.unification.model_fields_set
    unif_input = _q(cfg.stg_db, "unif_input")
    suspects = []
    for column, key in columns:
        col = quote_ident(column)
        per_value = (
            f"SELECT {col}, count(*) AS n FROM {unif_input} WHERE {col} IS NOT NULL GROUP BY 1"
        )
        limit = cfg.unification.over_merge_threshold
        if not explicit:
            sizes = await backend.query(
                f"SELECT n, count(*) FROM ({per_value}) GROUP BY 1 ORDER BY 1", cfg.stg_db
            )
            limit = scaled_threshold(_median([(int(n), int(c)) for n, c in sizes.rows]))[0]
        rows = await backend.query(
            f"{per_value} HAVING count(*) > {int(limit)} ORDER BY n DESC LIMIT 5", cfg.stg_db
        )
        for value, n in rows.rows:
            masked = mask_value(key, str(value))
            suspects.append({"key": key, "value": masked, "records": int(n)})
            f.warnings.append(
                f"{key} value {masked} joins {n} records (over {limit}): likely junk; add it "
                "to the key's invalid_texts"
            )
    f.metrics["over_merge_suspects"] = suspects


def _median(histogram: list[tuple[int, int]]) -> float:
    """The median of values given as (value, how many), ascending."""
    total = sum(c for _, c in histogram)
    seen = 0
    for value, count in histogram:
        seen += count
        if 2 * seen >= total:
            return float(value)
    return 0.0
