"""The unification project: prep, TD's ID unification, enrichment (TD's plugin's layout).

Files (folder-relative):
- `unif_runner.dig`: runs the three workflows below in order with `require>`.
- `dynmic_prep_creation.dig`: `queries/prep_{table}.sql` -> `{stg}.{table}_prep` per table,
  then `queries/unif_input.sql` -> `{stg}.unif_input`.
- `id_unification.dig`: `http_call>` to `<api-cdp host>/unifications/workflow_call` with
  `config/unify.yml`; the local backend serves that call with its own engine.
- `enrich_runner.dig`: `queries/enrich_{table}.sql` -> `{unif_db}.enriched_{table}`.
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

from typing import Any
from urllib.parse import urlsplit

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import UNIFICATION_WORKFLOW, dig_file
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.core.unify_plan import UnificationPlan, plan_unification
from cdp_mcp.generate.templating import PARALLEL_LIMIT
from cdp_mcp.generate.templating import render as render_template

WORKFLOW_CALL_PATH = "/unifications/workflow_call"
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


def render(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, str]:
    """Every file of the unification project (relative path -> text); raises ConfigError."""
    plan = plan_unification(cfg, schemas)
    ctx: dict[str, Any] = {"plan": plan, "client": cfg.client, "parallel_limit": PARALLEL_LIMIT}
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
        "config/unify.yml": _unify_yml(plan),
        "queries/unif_input.sql": _render("queries/unif_input.sql", ctx),
    }
    for t in plan.tables:
        files[f"queries/prep_{t.table}.sql"] = _render("queries/prep.sql", {**ctx, "t": t})
        files[f"queries/enrich_{t.table}.sql"] = _render("queries/enrich.sql", {**ctx, "t": t})
    return dict(sorted(files.items()))


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
