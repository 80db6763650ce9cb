"""Operations documents for this pipeline: runbook, monitoring and troubleshooting.

Written next to the report, in this pipeline's own names: the projects `{client}_{phase}`,
the workflows `phases.workflows` starts, and the databases and tables `phases.expected_tables`
checks. No backend calls: the schemas come from the source files (connector `file`) and the
numbers of the last validation from the state. Never contains a secret's value.
"""

from __future__ import annotations

import contextlib

from cdp_mcp.core.config import ConfigError, PipelineConfig
from cdp_mcp.core.file_source import SourceError
from cdp_mcp.core.phases import (
    INGESTION_LOG,
    STAGING_LOG,
    Phase,
    expected_tables,
    inc_log_project,
    project_name,
    workflows,
)
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.core.unify_plan import UnificationPlan, plan_unification
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.reports.stages import (
    config_stages,
    stage_folder,
    stage_label,
    stage_of,
    stages,
)
from cdp_mcp.pipeline.state import MAX_ATTEMPTS, PipelineState

RUNBOOK, MONITORING, TROUBLESHOOTING = "runbook.md", "monitoring.md", "troubleshooting.md"


def _schemas(cfg: PipelineConfig) -> SchemaMap:
    """Every source's tables, from its files (a TD connector's columns are known to the
    backend only)."""
    out: SchemaMap = {}
    for name in cfg.source_names:
        view = cfg.for_source(name)
        if view.ingestion.connector != "file":
            continue
        with contextlib.suppress(SourceError):  # a missing file: that source's tables unknown
            out.update(predicted_schemas(view))
    return out


def _plan(cfg: PipelineConfig, schemas: SchemaMap) -> UnificationPlan | None:
    try:
        return plan_unification(cfg, schemas)
    except ConfigError:
        return None


def _tables(cfg: PipelineConfig, phase: Phase, schemas: SchemaMap) -> list[str]:
    try:
        return [t.qualified for t in expected_tables(cfg, phase, schemas)]
    except ConfigError:
        return []


def _q(db: str, table: str) -> str:
    return f"{quote_ident(db)}.{quote_ident(table)}"


def _sql(*lines: str) -> list[str]:
    return ["```sql", *lines, "```", ""]


def _sh(*lines: str) -> list[str]:
    return ["```bash", *lines, "```", ""]


# -- runbook -------------------------------------------------------------------------------
def _order_table(cfg: PipelineConfig, schemas: SchemaMap) -> list[str]:
    lines = [
        "| # | phase | project (folder) | workflows, in run order | tables it leaves |",
        "|---|---|---|---|---|",
    ]
    for i, (p, view) in enumerate(config_stages(cfg), 1):
        tables = ", ".join(f"`{t}`" for t in _tables(view, p, schemas)) or "-"
        flows = ", ".join(f"`{w}`" for w in workflows(view, p))
        label = p.value if p is Phase.UNIFICATION else f"{p.value} ({view.source})"
        lines.append(
            f"| {i} | {label} | `{project_name(view, p)}` "
            f"(`{cfg.workspace / stage_folder(view, p)}`) | {flows} | {tables} |"
        )
    return [*lines, ""]


def _td_phase_commands(cfg: PipelineConfig, state: PipelineState, phase: Phase) -> list[str]:
    """`cfg`: the stage's config (a source's view, or the whole for unification)."""
    project = project_name(cfg, phase)
    lines = [f"cd {cfg.workspace / stage_folder(cfg, phase)}", f"td wf push {project}"]
    source = None if phase is Phase.UNIFICATION else cfg.source
    for secret in stage_of(state, phase, source).secrets:
        lines.append(f"td wf secrets --project {project} --set {secret}   # prompts for the value")
    for wf in workflows(cfg, phase):
        lines.append(f"td wf start {project} {wf} --session now")
    return lines


def _runbook_td(cfg: PipelineConfig, state: PipelineState) -> list[str]:
    lines = [
        "## By hand with `td wf`",
        "",
        "Each phase is one Digdag project; run them in order, each after the previous "
        "one's tables check out (see monitoring.md). `td wf start` prints the session and "
        "attempt ids; follow them with `td wf session ID`, `td wf attempt ID`, "
        "`td wf tasks ATTEMPT` and `td wf log ATTEMPT +task`.",
        "",
    ]
    for p, view in config_stages(cfg):
        label = p.value if p is Phase.UNIFICATION else f"{p.value} ({view.source})"
        lines += [f"### {label}", "", *_sh(*_td_phase_commands(view, state, p))]
    lines += [
        "On the embedded backend the same commands are `cdp-mcp wf push DIR --project NAME`, "
        "`cdp-mcp wf start PROJECT WORKFLOW --session now`, `cdp-mcp wf session|attempt|tasks|"
        f"log ...`, each with `--workspace {cfg.workspace}`.",
        "",
    ]
    return lines


def _source_reruns(cfg: PipelineConfig) -> list[str]:
    """`cfg`: one source's view."""
    src = cfg.source
    return [
        f"- Ingestion: `{src}_ingest_inc` loads, per object, the rows after the last "
        f"watermark recorded in `{cfg.src_db}.{INGESTION_LOG}` (mode {cfg.ingestion.mode}, "
        f"field `{cfg.ingestion.incremental_field}`); a rerun first clears its range, so it "
        "does not load a row twice.",
        f"- Hist-union: `{src}_hist_union` appends only the rows above each side's watermark "
        f"in `{cfg.config_db}.inc_log`; running it again without new rows adds nothing.",
        f"- Staging: `transform_{src}` restages, per table in `{cfg.stg_db}`, only the keys "
        f"with rows loaded since its watermark in `{cfg.config_db}.staging_log` (delete + "
        "insert), so each table equals a full rebuild and a rerun adds nothing twice. The "
        "first run builds each table beside the old one and renames it over it; delete a "
        "table's rows from `staging_log` to rebuild it in full.",
    ]


def _runbook_reruns(cfg: PipelineConfig) -> list[str]:
    u = cfg.unification
    per_source = [
        line for name in cfg.source_names for line in _source_reruns(cfg.for_source(name))
    ]
    return [
        "## Reruns and incremental runs",
        "",
        "- A finished or aborted pipeline stays as it is until a person starts it over as "
        "a new run with `init_pipeline(config_path, new_run=true)` (or `cdp-mcp run CONFIG "
        "--new-run`); the earlier run is kept in the state's history and its reports in "
        "`reports/run-N/`.",
        "- Changing the config and calling `init_pipeline` again reopens the steps that failed "
        "or ran out of attempts; generation is deterministic, so unchanged phases produce "
        "byte-identical projects.",
        *per_source,
        f"- Unification: `unif_runner` runs prep, ID unification ({u.update_strategy}, "
        f"{u.id_method} `{u.id_name}`) and enrichment; its `.dig` carries a commented "
        "`schedule:` to enable for a daily incremental run.",
        "- A regular incremental run is each source's ingestion (incremental), hist_union "
        "and staging in order, then unification over every source.",
        "",
    ]


def _runbook_retry(cfg: PipelineConfig) -> list[str]:
    return [
        "## Retrying failed tasks",
        "",
        f"- With cdp-mcp: call `start_workflow(config_path, phase, workflow)` again. It "
        "retries only the failed tasks of the last attempt (Digdag resume), after killing an "
        f"attempt that overran `monitor_deadline_minutes` "
        f"({cfg.global_.monitor_deadline_minutes:g}). Deploy, each workflow run and validate "
        f"have {MAX_ATTEMPTS} attempts each; then a person chooses: fix the config and "
        "`init_pipeline`, `skip_phase(..., confirm=true)` or `abort_pipeline`.",
        "- With td: `td wf retry ATTEMPT_ID --resume --latest-revision` (only the failed "
        "tasks); `td wf kill ATTEMPT_ID` stops a run first.",
        "- Locally: `cdp-mcp wf retry ATTEMPT` and `cdp-mcp wf kill ATTEMPT`.",
        "",
    ]


def render_runbook(cfg: PipelineConfig, state: PipelineState, schemas: SchemaMap) -> str:
    lines = [
        f"# Runbook: {cfg.client} CDP ({', '.join(cfg.source_names)})",
        "",
        f"Backend `{cfg.global_.backend}`, workspace `{cfg.workspace}`, config "
        f"`{state.config_path}`.",
        "",
        "## Order",
        "",
        *_order_table(cfg, schemas),
        "## With cdp-mcp",
        "",
        *_sh(
            f"cdp-mcp run {state.config_path}                    # all four phases, headless",
            f"cdp-mcp run {state.config_path} --accept-warnings  # continue past WARN verdicts",
            f"cdp-mcp status {state.config_path}                 # phases, steps, next action",
        ),
        "From an MCP client, per phase: `init_pipeline` once, then `generate_phase`, "
        "`push_project`, `set_secrets` (when the push lists missing secrets), "
        "`start_workflow` for each workflow, `get_session` until it ends, `validate_tables`. "
        "Every result names the next call (`next_action`); `final_report` writes the report.",
        "",
        *_runbook_td(cfg, state),
        *_runbook_reruns(cfg),
        *_runbook_retry(cfg),
    ]
    return "\n".join(lines)


# -- monitoring ----------------------------------------------------------------------------
def _monitor_ingestion(cfg: PipelineConfig) -> list[str]:
    """`cfg`: one source's view."""
    log = _q(cfg.src_db, INGESTION_LOG)
    return [
        f"## Ingestion of {cfg.source}: status and rows per object",
        "",
        "The last load of every object and mode must be `success`:",
        "",
        *_sql(
            "SELECT object_name, mode, status, rows_loaded, watermark, message FROM (",
            "  SELECT *, row_number() OVER (PARTITION BY object_name, mode",
            "    ORDER BY TRY_CAST(attempt_id AS BIGINT) DESC NULLS LAST, time DESC) AS rn",
            f"  FROM {log}",
            f"  WHERE source_name = {sql_string(cfg.source)}",
            ") WHERE rn = 1 ORDER BY object_name, mode",
        ),
        "Rows loaded per object and mode over time (a sudden zero is worth a look):",
        "",
        *_sql(
            "SELECT object_name, mode, session_time, sum(rows_loaded) AS rows_loaded",
            f"FROM {log} WHERE status = 'success' AND source_name = {sql_string(cfg.source)}",
            "GROUP BY 1, 2, 3 ORDER BY 3 DESC, 1, 2",
        ),
    ]


def _monitor_watermarks(cfg: PipelineConfig) -> list[str]:
    return [
        "## Hist-union: watermarks",
        "",
        f"Each run records, per source table, its new watermark (max `time` unioned) in "
        f"`{cfg.config_db}.inc_log` under project_name `{inc_log_project(cfg)}`; a watermark "
        "that stops moving while the source grows means the union is stuck:",
        "",
        *_sql(
            "SELECT table_name, max(inc_value) AS watermark, count(*) AS runs,",
            "       max(time) AS last_run",
            f"FROM {_q(cfg.config_db, 'inc_log')}",
            f"WHERE project_name = '{inc_log_project(cfg)}' GROUP BY 1 ORDER BY 1",
        ),
        "",
        "## Staging: watermarks",
        "",
        f"Each run records, per staging table, its new watermark in `{cfg.config_db}."
        f"{STAGING_LOG}`; a watermark that stops moving while the union grows means staging "
        "is stuck:",
        "",
        *_sql(
            "SELECT table_name, max(watermark) AS watermark, sum(rows_added) AS rows_added,",
            "       max(session_time) AS last_session",
            f"FROM {_q(cfg.config_db, STAGING_LOG)} GROUP BY 1 ORDER BY 1",
        ),
    ]


def _row_flow_sql(cfg: PipelineConfig, db: str, table: str) -> list[str]:
    obj, source = cfg.object_of(table), cfg.source_of_table(table)
    keys = cfg.source_config(source).primary_keys if source else {}
    key = quote_ident(keys.get(obj, "id") if obj else "id")
    staged = _q(cfg.stg_db, table)
    return [
        f"### {table}",
        "",
        "`union_rows` must be at least `hist + incremental`; `staged` at most `union_rows`; "
        "`duplicate_keys` must be 0.",
        "",
        *_sql(
            "SELECT",
            f"  (SELECT count(*) FROM {_q(db, table + '_hist')}) AS hist,",
            f"  (SELECT count(*) FROM {_q(db, table)}) AS incremental,",
            f"  (SELECT count(*) FROM {_q(db, table + '_hist_union')}) AS union_rows,",
            f"  (SELECT count(*) FROM {staged}) AS staged,",
            f"  (SELECT count(*) FROM (SELECT {key} FROM {staged} WHERE {key} IS NOT NULL",
            "     GROUP BY 1 HAVING count(*) > 1)) AS duplicate_keys",
        ),
    ]


def _monitor_row_flow(cfg: PipelineConfig) -> list[str]:
    lines = ["## Row flow between phases", ""]
    for ref in cfg.hist_union_tables():
        lines += _row_flow_sql(cfg, ref.database or cfg.src_db, ref.table)
    return lines


def _monitor_unification(cfg: PipelineConfig, plan: UnificationPlan | None) -> list[str]:
    idn = quote_ident(cfg.unification.id_name)
    uid = quote_ident(cfg.unification.id_method)  # TD's lookup column, named by the method
    lookup = _q(cfg.unif_db, f"{cfg.unification.id_name}_lookup")
    lines = [
        "## Unification: profiles, coverage, over-merge",
        "",
        "Profiles by number of ids (a long tail of very large clusters means over-merge):",
        "",
        *_sql(
            f"SELECT n AS ids, count(*) AS profiles FROM (SELECT {uid}, count(*) AS n",
            f"  FROM {lookup} GROUP BY 1) GROUP BY n ORDER BY n",
        ),
    ]
    tables = plan.tables if plan else []
    for t in tables:
        enriched = _q(cfg.unif_db, f"enriched_{t.table}")
        lines += [
            f"Coverage of `{t.qualified}` (share of rows with a `{cfg.unification.id_name}`; "
            "the row count must equal the staging table's):",
            "",
            *_sql(
                f"SELECT count(*) AS rows_total, count({idn}) AS with_id,",
                f"       CAST(count({idn}) AS double) / count(*) AS coverage FROM {enriched}",
            ),
        ]
    limit = cfg.unification.over_merge_threshold
    for col in plan.input_columns if plan else []:
        c = quote_ident(col.name)
        lines += [
            f"Values of key `{col.key}` (column `{col.name}`) shared by more than {limit} "
            "records: likely junk that merges strangers:",
            "",
            *_sql(
                f"SELECT {c}, count(*) AS n FROM {_q(cfg.stg_db, 'unif_input')}",
                f"WHERE {c} IS NOT NULL GROUP BY 1 HAVING count(*) > {limit}",
                "ORDER BY n DESC LIMIT 20",
            ),
        ]
    return lines


def _baseline(state: PipelineState) -> list[str]:
    lines = ["## Baseline from the last validation", "", "| phase | verdict | table | rows |"]
    lines.append("|---|---|---|---|")
    for ps in stages(state):
        for t in (ps.validation or {}).get("tables") or []:
            rows = "-" if t.get("row_count") is None else str(t["row_count"])
            lines.append(
                f"| {stage_label(ps)} | {ps.verdict or '-'} | {t['database']}.{t['table']} | {rows} |"
            )
    return [*lines, ""]


def render_monitoring(cfg: PipelineConfig, state: PipelineState, schemas: SchemaMap) -> str:
    lines = [
        f"# Monitoring: {cfg.client} CDP ({', '.join(cfg.source_names)})",
        "",
        'Run these with `td query -d DB -T presto "SQL"`, the `query` tool, or locally '
        f'`cdp-mcp query --workspace {cfg.workspace} -d DB "SQL"`. `validate_tables` runs '
        "the same checks after every phase.",
        "",
        *(line for name in cfg.source_names for line in _monitor_ingestion(cfg.for_source(name))),
        *_monitor_watermarks(cfg),
        *_monitor_row_flow(cfg),
        *_monitor_unification(cfg, _plan(cfg, schemas)),
        *_baseline(state),
    ]
    return "\n".join(lines)


# -- troubleshooting -----------------------------------------------------------------------
def _entry(symptom: str, cause: str, fix: str) -> list[str]:
    return [f"### {symptom}", "", f"- **Cause**: {cause}", f"- **Fix**: {fix}", ""]


def render_troubleshooting(cfg: PipelineConfig, state: PipelineState) -> str:
    u = cfg.unification
    views = [cfg.for_source(name) for name in cfg.source_names]
    folders = "; ".join(
        f"`{v.source_dir}` ({', '.join(v.ingestion.objects)})" for v in views if v.source_dir
    )
    starts = ", ".join(
        f"{v.source}: {v.ingestion.start_date}" if len(views) > 1 else v.ingestion.start_date
        for v in views
    )
    reruns = ", ".join(f"`{v.source}_hist_union` / `transform_{v.source}`" for v in views)
    src_dbs = ", ".join(f"`{d}`" for d in dict.fromkeys(v.src_db for v in views))
    unif = project_name(cfg, Phase.UNIFICATION)
    keys = ", ".join(f"`{k.name}`" for k in u.keys or []) or "the key"
    lines = [
        f"# Troubleshooting: {cfg.client} CDP ({', '.join(cfg.source_names)})",
        "",
        "Symptom, cause, fix. Task errors and log tails come from `get_session` / "
        "`get_logs` (or `td wf log ATTEMPT +task`).",
        "",
        *_entry(
            "`generate_phase` fails: source file missing ('ingestion.source_path: ...')",
            f"connector `file` needs one `{{object}}.csv|.parquet|.jsonl` per object in "
            f"{folders or 'the source folder'}; a file is missing, "
            "unreadable, or there are two for one object.",
            "put exactly one file per object there (or fix `ingestion.source_path`), then "
            "`generate_phase` again.",
        ),
        *_entry(
            "`init_pipeline` or `push_project` fails with 401/403, or a task fails with "
            "'apikey' / authentication errors",
            "a wrong or expired `td_api_key`, or a project secret (e.g. `td.apikey` of "
            f"`{unif}`) is missing or wrong.",
            "export a valid `TD_API_KEY`, call `init_pipeline` again; for a missing secret "
            "export it (`td.apikey` is the config's key, from `TD_API_KEY`) and call "
            "`set_secrets`, or "
            "`td wf secrets --project PROJECT --set NAME`.",
        ),
        *_entry(
            "A workflow fails with a SQL error in a task",
            "a query does not fit the data (a column renamed at the source, a type that does "
            "not cast); the failed task and its log tail name the query file.",
            "read the log (`get_logs`), fix the config (or the source), `init_pipeline`, "
            "`generate_phase` and `push_project`; `start_workflow` then retries only the "
            "failed tasks.",
        ),
        *_entry(
            "Validation WARN: '... is empty'",
            f"a table after ingestion has no rows: nothing newer than `start_date` "
            f"({starts}), an empty source file, or hist-union / staging "
            "ran before rows arrived.",
            f"check `{INGESTION_LOG}` (monitoring.md); if it is expected, accept with "
            "`validate_tables(..., accept_warnings=true)` after the person agrees; otherwise "
            "fix the source or `start_date` and rerun from ingestion.",
        ),
        *_entry(
            "Validation WARN: a key value joins many records (over-merge)",
            f"a junk value of {keys} (e.g. a placeholder address, `N/A`, a shop's own phone) is "
            f"shared by more than {u.over_merge_threshold} records and merges strangers into "
            "one profile.",
            "add the value to the key's `invalid_texts` (or tighten `valid_regexp`) in the "
            "config, `init_pipeline`, regenerate and rerun unification.",
        ),
        *_entry(
            "Validation WARN: clusters left split because merge_iterations was reached",
            f"the id graph needed more than `merge_iterations` ({u.merge_iterations}) "
            "rounds to converge, so one person may still have several ids.",
            "raise `unification.merge_iterations` (up to 49), `init_pipeline`, regenerate "
            "and rerun unification.",
        ),
        *_entry(
            "Validation FAIL: rows lost between phases, or duplicate keys after dedup",
            f"`{{table}}_hist_union` (in {src_dbs}) has fewer rows than its sources, or a "
            f"staging table in `{cfg.stg_db}` repeats its primary key.",
            "check the row-flow queries in monitoring.md; fix `ingestion.primary_keys` if the "
            f"key is wrong; rerun {reruns}.",
        ),
        *_entry(
            f"`ask_person`: a step failed {MAX_ATTEMPTS} times (out of attempts)",
            f"deploy, each workflow run and validate have {MAX_ATTEMPTS} attempts; the "
            "budget is spent.",
            "fix the cause, change the config and call `init_pipeline` (it reopens the "
            "failed steps' budgets); or `skip_phase(..., confirm=true)`; or "
            "`abort_pipeline` for a partial report.",
        ),
        *_entry(
            "A workflow runs longer than the monitor deadline",
            f"the run exceeded `monitor_deadline_minutes` "
            f"({cfg.global_.monitor_deadline_minutes:g}).",
            "wait longer with `get_session(..., wait_seconds=600)`, or `start_workflow` to "
            "kill the attempt and retry its failed tasks.",
        ),
    ]
    return "\n".join(lines)


def render_ops_docs(cfg: PipelineConfig, state: PipelineState) -> dict[str, str]:
    """File name -> Markdown of each ops document."""
    schemas = _schemas(cfg)
    return {
        RUNBOOK: render_runbook(cfg, state, schemas),
        MONITORING: render_monitoring(cfg, state, schemas),
        TROUBLESHOOTING: render_troubleshooting(cfg, state),
    }
