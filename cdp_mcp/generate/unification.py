"""The unification project: prep, TD's ID unification, enrichment (TD's plugin's layout).

Files (folder-relative):
- `unif_runner.dig`: runs the three workflows below in order with `require>`.
- `dynmic_prep_creation.dig`: `queries/prep_{table}.sql` -> `{stg}.{table}_prep` per table,
  then `queries/unif_input.sql` -> `{stg}.unif_input`. When the enrichment of every table
  is a delta (below), so is the prep: the first run writes `{stg}.{table}_prep_rows`
  (each staged row's key values and staging key) and the prep from it
  (`queries/prep_{table}_from_rows.sql`, the same rows); later runs compute again only the value
  combinations of the rows staged since and of the rows those replaced, in the prep and in
  unif_input, with the watermarks in `{client}_config.enrich_log`.
- `id_unification.dig`: `http_call>` to `<api-cdp host>/unifications/workflow_call` with
  `config/unify.yml`; the local backend serves that call with its own engine.
- `enrich_runner.dig`: `queries/enrich_{table}.sql` -> `{unif_db}.enriched_{table}`; with
  `update_strategy: incremental` on the local backend, a staged table of this pipeline is
  rebuilt in full only on the first run (or a changed unify.yml / enrichment, or a staging rebuild); later runs
  re-enrich only its rows staged since (staging's `load_timestamp`) and those holding a value
  whose lookup row this run wrote (`id_last_processed_at`), as a DELETE + INSERT pair, with
  the watermarks in `{client}_config.enrich_log` (see templates/unification/enrich_runner.dig.j2).
- `config/{environment,src_prep_params,stage_enrich,unify}.yml`.

Column contract (the local unification engine and validation rely on it):
- `{stg}.{table}_prep`: one varchar column per key column of the table, named by its
  unif_input column (`{key}`, or `{key}_{n}` for a table's n-th column of the same key);
  the value is NULL when invalid for its key (see templates/unification/_keys.j2); plus
  `time` bigint = the earliest staging `time` of rows with that combination. Distinct rows,
  at least one key value non-NULL.
- `{stg}.unif_input`: every key column of config/unify.yml's `unif_input` table (varchar,
  NULL where the source table has no such column), `source_table` varchar, `time` bigint.
- `{unif_db}.{id}_lookup` (written by TD or the local engine): the id in TD's column
  `canonical_id` / `persistent_id` (by the method, not named by the id), `id` varchar (a key
  value), `id_key_type` (the key's code), unique on (`id`, `id_key_type`); TD's other columns
  are listed in `cdp_mcp/core/unification_tables.py`.
  `{unif_db}.{id}_keys`: `key_type` (the code), `key_name` varchar (as TD writes it;
  TD's codes are integers, the local engine uses 1..n in the order of unify.yml's keys).
- `{unif_db}.enriched_{table}`: every column of the staging table, then one varchar column
  per id covering it (`id_name`, then `unification.ids` in order), named by the id.
- A staging table an extra id or a master table names is also a table of config/unify.yml,
  as its prep table; a master table's source keeps every row in its prep (the columns the
  master table reads besides the keys), and TD writes `enriched_{table}_prep` for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import UNIFICATION_WORKFLOW, dig_file
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.core.unify_plan import PlanTable, UnificationPlan, plan_unification
from cdp_mcp.generate.templating import PARALLEL_LIMIT
from cdp_mcp.generate.templating import render as render_template

WORKFLOW_CALL_PATH = "/unifications/workflow_call"
ENRICH_LOG = "enrich_log"  # in the config db: one row per watermark per enrichment run
ENRICH_LOG_COLUMNS = [
    ("table_name", "varchar"),
    ("watermark_name", "varchar"),
    ("watermark", "bigint"),
    ("session_time", "varchar"),
    ("time", "bigint"),
]
STAGED_AT = "load_timestamp"  # staging's own column: when its run wrote the row
TD_DOMAINS = (".treasuredata.com", ".treasuredata.co.jp")


def unification_api_url(td_endpoint: str) -> str:
    """TD's CDP API URL for the region of `td_endpoint` (its `api*` host becomes `api-cdp`).

    https://api.eu01.treasuredata.com -> https://api-cdp.eu01.treasuredata.com/unifications/...
    A host outside TD (an emulator, the local backend's stand-in) is kept as it is.
    """
    parts = urlsplit(td_endpoint)
    host = parts.hostname or ""
    labels = host.split(".")
    if host.endswith(TD_DOMAINS) and labels[0].startswith("api"):
        host = ".".join(["api-cdp", *labels[1:]])
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{WORKFLOW_CALL_PATH}"


@dataclass(frozen=True)
class EnrichDelta:
    """How a staged table's enrichment is kept up to date between full builds.

    Staging restages a changed row by deleting its older version (by `dedup_key`, or for
    rows without one, every row loaded from the restage's start on) and inserting the new
    one with a new `load_timestamp`, so the enrichment removes the same rows.
    """

    log_key: str  # its rows in enrich_log: the table and a digest of what builds it
    dedup_key: str | None  # staging's primary key, when the table is deduplicated on it


@dataclass(frozen=True)
class Restaged:
    """A staged table of this pipeline that staging keeps up to date by restaging rows."""

    dedup_key: str | None  # staging's primary key, when the table is deduplicated on it


def _restaged(
    cfg: PipelineConfig, schemas: SchemaMap, plan: UnificationPlan, t: PlanTable
) -> Restaged | None:
    """None unless staging of this pipeline writes the table with its own `load_timestamp`
    and TD's `time` (what tells which rows a restage replaced), and the project keeps
    derived tables up to date incrementally (update_strategy incremental, the local backend)."""
    if plan.update_strategy != "incremental" or t.database != cfg.stg_db or not t.has_time:
        return None
    # The enrichment's delta finds rows whose id changed by `{id}_lookup.id_last_processed_at`.
    # The local engine moves it for every value of a profile that merged or changed leader;
    # TD's documents do not say it does, so a project for Treasure Data keeps the full
    # rebuilds (the prep's delta with them: it is checked against the local runner only).
    if cfg.global_.backend != "local":
        return None
    ref = next((r for r in cfg.hist_union_tables() if r.table == t.table), None)
    if ref is None:
        return None
    union = schemas.get(f"{ref.database}.{t.table}_hist_union") or []
    staged = schemas.get(f"{cfg.stg_db}.{t.table}") or []
    if STAGED_AT in {c.name for c in union} or STAGED_AT not in {c.name for c in staged}:
        return None  # the source's own load_timestamp would win over staging's
    source = cfg.source_of_table(t.table)
    view = cfg.for_source(source) if source else cfg  # a config of several sources: its own
    obj = view.object_of(t.table)
    key = view.primary_key(obj) if obj else "id"
    return Restaged(dedup_key=key if key in {c.name for c in staged} else None)


def _enrich_delta(
    cfg: PipelineConfig, schemas: SchemaMap, plan: UnificationPlan, t: PlanTable, text: str
) -> EnrichDelta | None:
    """None (rebuilt every run) unless the table is restaged (see `_restaged`)."""
    restaged = _restaged(cfg, schemas, plan, t)
    if restaged is None:
        return None
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return EnrichDelta(
        log_key=f"{plan.unif_db}.enriched_{t.table}#{digest}", dedup_key=restaged.dedup_key
    )


@dataclass(frozen=True)
class PrepDelta:
    """How a prep table is kept up to date between full builds: `{table}_prep_rows` holds
    each staged row's key values (and its staging key), so the values a restage replaced
    are known after staging deleted their rows; the prep's and unif_input's rows of every
    value combination a restage touched are computed again from it."""

    log_key: str  # its rows in enrich_log: the prep and a digest of what builds it
    dedup_key: str | None
    rows_table: str
    changes_table: str
    affected_table: str


def _prep_deltas(
    cfg: PipelineConfig, schemas: SchemaMap, plan: UnificationPlan, texts: dict[str, str]
) -> dict[str, PrepDelta]:
    """Every table's prep delta, or none: unif_input is kept up to date only when each of
    its tables is (a table rebuilt every run would rebuild unif_input every run anyway)."""
    out: dict[str, PrepDelta] = {}
    for t in plan.tables:
        restaged = None if t.per_row else _restaged(cfg, schemas, plan, t)
        if restaged is None:
            return {}
        digest = hashlib.sha256(texts[t.table].encode()).hexdigest()[:12]
        out[t.table] = PrepDelta(
            log_key=f"{plan.stg_db}.{t.prep_table}#{digest}",
            dedup_key=restaged.dedup_key,
            rows_table=f"{t.prep_table}_rows",
            changes_table=f"{t.prep_table}_changes",
            affected_table=f"{t.prep_table}_affected",
        )
    return out


def render(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, str]:
    """Every file of the unification project (relative path -> text); raises ConfigError."""
    plan = plan_unification(cfg, schemas)
    ctx: dict[str, Any] = {
        "plan": plan,
        "client": cfg.client,
        "parallel_limit": PARALLEL_LIMIT,
        # TD runs each query on its own cluster; the local backend's share one DuckDB
        "enrich_side_by_side": cfg.global_.backend != "local",
        "config_db": cfg.config_db,
        "log_table": ENRICH_LOG,
        "log_columns": ENRICH_LOG_COLUMNS,
        "staged_at": STAGED_AT,
    }
    unify_yml = _unify_yml(plan)
    deltas: dict[str, EnrichDelta] = {}
    enrich_sql: dict[str, str] = {}
    for t in plan.tables:
        enrich_sql[t.table] = _render("queries/enrich.sql", {**ctx, "t": t, "scope": "all"})
        delta = _enrich_delta(cfg, schemas, plan, t, unify_yml + enrich_sql[t.table])
        if delta:
            deltas[t.table] = delta
    ctx["deltas"] = deltas
    prep_sql = {t.table: _render("queries/prep.sql", {**ctx, "t": t}) for t in plan.tables}
    preps = _prep_deltas(cfg, schemas, plan, {n: unify_yml + text for n, text in prep_sql.items()})
    ctx["preps"] = preps
    files = {
        dig_file(UNIFICATION_WORKFLOW): _render("unif_runner.dig", ctx),
        "dynmic_prep_creation.dig": _render("dynmic_prep_creation.dig", ctx),
        "id_unification.dig": _render(
            "id_unification.dig", {**ctx, "api_url": unification_api_url(cfg.global_.td_endpoint)}
        ),
        "enrich_runner.dig": _render("enrich_runner.dig", ctx),
        "config/environment.yml": _render("config/environment.yml", ctx),
        "config/src_prep_params.yml": _render("config/src_prep_params.yml", ctx),
        "config/stage_enrich.yml": _render("config/stage_enrich.yml", ctx),
        "config/unify.yml": unify_yml,
        "queries/unif_input.sql": _render("queries/unif_input.sql", ctx),
    }
    for t in plan.tables:
        files[f"queries/prep_{t.table}.sql"] = prep_sql[t.table]
        if t.table in preps:
            files.update(_prep_delta_files(ctx, t, preps[t.table]))
        files[f"queries/enrich_{t.table}.sql"] = enrich_sql[t.table]
        if t.table in deltas:
            tctx = {**ctx, "t": t, "d": deltas[t.table]}
            files[f"queries/enrich_{t.table}_changes.sql"] = _render(
                "queries/enrich.sql", {**tctx, "scope": "changes"}
            )
            for step in ("bounds", "delete", "insert", "log"):
                files[f"queries/enrich_{t.table}_{step}.sql"] = _render(
                    f"queries/enrich_{step}.sql", tctx
                )
    if preps:
        files["queries/unif_input_bounds.sql"] = _render("queries/unif_input_bounds.sql", ctx)
    if deltas or preps:
        files["queries/create_enrich_log.sql"] = _render("queries/create_enrich_log.sql", ctx)
    return dict(sorted(files.items()))


PREP_DELTA_STEPS = (
    "bounds",
    "rows",
    "from_rows",
    "changes",
    "affected",
    "delete",
    "insert",
    "unif_delete",
    "unif_insert",
    "rows_delete",
    "rows_insert",
    "log",
)


def _prep_delta_files(ctx: dict[str, Any], t: PlanTable, d: PrepDelta) -> dict[str, str]:
    """The steps that keep a table's prep up to date (dynmic_prep_creation.dig): a rebuild
    writes `{prep}_rows`, then the prep from it (the rows queries/prep_{table}.sql gives,
    without a second scan of staging), a delta run the rest."""
    tctx = {**ctx, "t": t, "d": d}
    return {
        f"queries/prep_{t.table}_{step}.sql": _render(f"queries/prep_{step}.sql", tctx)
        for step in PREP_DELTA_STEPS
    }


def _render(name: str, ctx: dict[str, Any]) -> str:
    return render_template(f"unification/{name}.j2", **ctx)


def _unify_yml(plan: UnificationPlan) -> str:
    doc = plan.unify_config()
    return _render(
        "config/unify.yml",
        {
            "doc": doc,
            "ids_section": f"{plan.id_method}s",
            "id_field": plan.id_method,
            "prep_only": plan.prep_only(),
        },
    )
