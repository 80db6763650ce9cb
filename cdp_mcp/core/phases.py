"""The four phases: their order, project folders, workflows and the tables they produce.

Generation, `start_workflow` and `validate_tables` all read from here, so the workflow that
runs and the tables that are checked can never disagree with what was generated.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from cdp_mcp.core.config import PipelineConfig, TableRef
from cdp_mcp.core.schema import Column, SchemaMap
from cdp_mcp.core.staging_rules import staging_columns
from cdp_mcp.core.unification_tables import (
    ENRICHED_PREFIX,
    GRAPH_COLUMNS,
    KEYS_COLUMNS,
    RESULT_STATS_FIXED,
    SOURCE_STATS_FIXED,
    TABLES_COLUMNS,
    lookup_columns,
)
from cdp_mcp.core.unify_plan import plan_unification


class Phase(StrEnum):
    INGESTION = "ingestion"
    HIST_UNION = "hist_union"
    STAGING = "staging"
    UNIFICATION = "unification"


ORDER: tuple[Phase, ...] = (
    Phase.INGESTION,
    Phase.HIST_UNION,
    Phase.STAGING,
    Phase.UNIFICATION,
)


def parse_phase(name: str) -> Phase:
    try:
        return Phase(name)
    except ValueError:
        allowed = ", ".join(p.value for p in ORDER)
        raise ValueError(f"unknown phase {name!r}; phases are: {allowed}") from None


def previous(phase: Phase) -> Phase | None:
    i = ORDER.index(phase)
    return ORDER[i - 1] if i else None


# The phases each source goes through on its own (one project per source and phase);
# unification is one project over every source.
PER_SOURCE: tuple[Phase, ...] = (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING)


def per_source(phase: Phase) -> bool:
    return phase in PER_SOURCE


def stage_config(cfg: PipelineConfig, phase: Phase, source: str | None) -> PipelineConfig:
    """The config a stage is generated, run and validated with: a per-source phase's
    source view (`cfg.for_source`), or the whole config for unification."""
    if per_source(phase):
        if source is None:
            raise ValueError(f"{phase.value} is a phase of each source: name the source")
        return cfg.for_source(source)
    return cfg


def project_folder(cfg: PipelineConfig, phase: Phase) -> str:
    """The workspace folder a phase's project is written to: `{source}_{phase}` for a
    per-source phase (`cfg` is then a one-source view, `cfg.for_source`), `unification`."""
    return f"{cfg.source}_{phase.value}" if per_source(phase) else phase.value


def project_name(cfg: PipelineConfig, phase: Phase) -> str:
    """The Digdag project a phase is pushed as: `{client}_{source}_{phase}` for a per-source
    phase (`cfg` a one-source view), `{client}_unification`."""
    return f"{cfg.client}_{project_folder(cfg, phase)}"


# The workflows each phase starts. Every name is spelled here only: generation writes each
# as `{name}.dig` (dig_file), the orchestrator starts them, the reports and runbooks name them.
UNIFICATION_WORKFLOW = "unif_runner"


def ingestion_workflow(cfg: PipelineConfig, kind: Literal["hist", "inc"]) -> str:
    return f"{cfg.source}_ingest_{kind}"


def hist_union_workflow(cfg: PipelineConfig) -> str:
    return f"{cfg.source}_hist_union"


def staging_workflow(cfg: PipelineConfig) -> str:
    return f"transform_{cfg.source}"


def dig_file(workflow: str) -> str:
    """The file a workflow is written to (Digdag names a workflow after its file)."""
    return f"{workflow}.dig"


def workflows(cfg: PipelineConfig, phase: Phase) -> list[str]:
    """The workflows the pipeline starts for a phase, in run order."""
    if phase is Phase.INGESTION:
        names = []
        if cfg.ingestion.mode in ("historical", "both"):
            names.append(ingestion_workflow(cfg, "hist"))
        if cfg.ingestion.mode in ("incremental", "both"):
            names.append(ingestion_workflow(cfg, "inc"))
        return names
    if phase is Phase.HIST_UNION:
        return [hist_union_workflow(cfg)]
    if phase is Phase.STAGING:
        return [staging_workflow(cfg)]
    return [UNIFICATION_WORKFLOW]


class ExpectedTable(BaseModel):
    database: str
    table: str
    columns: list[str]

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"


# Fixed columns of tables whose shape does not depend on the source.
# The load log is this pipeline's own table: TD's consultant plugins keep another
# `ingestion_log` (log_id, workflow_name, start_time, records_processed, job_url, ...) in
# the same database, so this one has a name of its own.
INGESTION_LOG = "cdp_mcp_ingestion_log"
INGESTION_LOG_COLUMNS = [
    Column(name="source_name", type="string"),
    Column(name="object_name", type="string"),
    Column(name="table_name", type="string"),
    Column(name="mode", type="string"),
    Column(name="status", type="string"),
    Column(name="range_start", type="string"),
    Column(name="range_end", type="string"),
    Column(name="watermark", type="string"),
    Column(name="rows_loaded", type="long"),
    Column(name="session_time", type="string"),
    Column(name="attempt_id", type="string"),
    Column(name="message", type="string"),
    Column(name="time", type="long"),
]
# `{client}_config.inc_log` is shared with TD's consultant plugins (cdp-histunion,
# cdp-staging create it as (table_name varchar, project_name varchar, inc_value bigint)):
# the same columns in the same order, so either side's INSERTs work on a table the other
# created. This pipeline's rows carry `project_name` = its hist-union project
# (`inc_log_project`), which no plugin writes, and `table_name` = db.table.
INC_LOG = "inc_log"
# Staging's watermarks (a table of its own: a staging run leaves the hist-union phase's
# tables as validated).
STAGING_LOG = "staging_log"
INC_LOG_COLUMNS = [
    Column(name="table_name", type="string"),
    Column(name="project_name", type="string"),
    Column(name="inc_value", type="long"),  # the side's watermark: max `time` unioned
    Column(name="time", type="long"),
]


def inc_log_project(cfg: PipelineConfig) -> str:
    """`project_name` of this pipeline's inc_log rows: one name for every source (the rows
    are keyed by db.table too), the hist-union project's name from before projects were
    per source, so the watermarks of an existing pipeline stay valid."""
    return f"{cfg.client}_{Phase.HIST_UNION.value}"


# Staging's watermarks, one row per run and table (a table of this pipeline's own).
STAGING_LOG_COLUMNS = [
    Column(name="table_name", type="string"),
    Column(name="watermark", type="long"),
    Column(name="rows_added", type="long"),
    Column(name="session_time", type="string"),
    Column(name="time", type="long"),
    Column(name="cutoff_rows", type="long"),
]


def unification_output_columns(cfg: PipelineConfig) -> dict[str, list[str]]:
    """TD's per-id tables in `cdp_unification_{name}` with the columns TD writes (the key
    stats also get one column per merge key, not listed)."""
    u = cfg.unification
    out: dict[str, list[str]] = {}
    for name in (u.id_name, *(i.name for i in u.ids or [])):
        out[f"{name}_lookup"] = [*lookup_columns(u.id_method), "time"]
        # TD's key-name -> id_key_type table; enrichment joins the lookup through it.
        out[f"{name}_keys"] = KEYS_COLUMNS
        out[f"{name}_tables"] = TABLES_COLUMNS
        out[f"{name}_graph"] = GRAPH_COLUMNS
        out[f"{name}_result_key_stats"] = [*RESULT_STATS_FIXED, "time"]
        out[f"{name}_source_key_stats"] = [*SOURCE_STATS_FIXED, "time"]
    return out


def derive_schemas(cfg: PipelineConfig, sources: dict[str, list[Column]]) -> SchemaMap:
    """Every table each phase writes, with columns, from the source objects' columns.

    `sources` maps object -> the columns a load produces (see sources.select_sql); `cfg` is
    a one-source view (`cfg.for_source`): `derive_all_schemas` spans several sources.
    """
    time_col = Column(name="time", type="long")
    out: SchemaMap = {}
    for obj, cols in sources.items():
        base = f"{cfg.src_db}.{cfg.source}_{obj}"
        loaded = [*cols, time_col]
        out[f"{base}_hist"] = loaded
        out[base] = loaded
        out[f"{base}_hist_union"] = loaded
    for ref in cfg.hist_union_tables():
        union_cols = out.get(f"{ref.database}.{ref.table}_hist_union")
        if union_cols is not None:
            stg = staging_columns(union_cols, cfg.ingestion.incremental_field)
            out[f"{cfg.stg_db}.{ref.table}"] = stg
            out[f"{cfg.unif_db}.enriched_{ref.table}"] = [
                *stg,
                *(Column(name=n, type="string") for n in _ids_over(cfg, ref.table)),
            ]
    return out


def derive_all_schemas(
    cfg: PipelineConfig, columns_of: dict[str, dict[str, list[Column]]]
) -> SchemaMap:
    """derive_schemas over every source: `columns_of` maps source -> object -> columns."""
    out: SchemaMap = {}
    for name in cfg.source_names:
        out.update(derive_schemas(cfg.for_source(name), columns_of.get(name, {})))
    return out


def expected_tables(cfg: PipelineConfig, phase: Phase, schemas: SchemaMap) -> list[ExpectedTable]:
    """The tables a phase must leave behind, with the columns each must have (`cfg`: a
    one-source view for a per-source phase)."""

    def table(db: str, name: str, fallback: list[Column] | None = None) -> ExpectedTable:
        cols = schemas.get(f"{db}.{name}", fallback or [])
        return ExpectedTable(database=db, table=name, columns=[c.name for c in cols])

    if phase is Phase.INGESTION:
        src, objs = cfg.source, cfg.ingestion.objects
        tables = [table(cfg.src_db, INGESTION_LOG, INGESTION_LOG_COLUMNS)]
        for obj in objs:
            if cfg.ingestion.mode in ("historical", "both"):
                tables.append(table(cfg.src_db, f"{src}_{obj}_hist"))
            if cfg.ingestion.mode in ("incremental", "both"):
                tables.append(table(cfg.src_db, f"{src}_{obj}"))
        return tables
    if phase is Phase.HIST_UNION:
        tables = [
            table(r.database or cfg.src_db, f"{r.table}_hist_union")
            for r in cfg.hist_union_tables()
        ]
        return [*tables, table(cfg.config_db, INC_LOG, INC_LOG_COLUMNS)]
    if phase is Phase.STAGING:
        tables = [table(cfg.stg_db, r.table) for r in cfg.hist_union_tables()]
        return [*tables, table(cfg.config_db, STAGING_LOG, STAGING_LOG_COLUMNS)]

    plan = plan_unification(cfg, schemas)
    fixed = unification_output_columns(cfg)
    tables = [
        ExpectedTable(database=cfg.unif_db, table=name, columns=cols)
        for name, cols in fixed.items()
    ]
    for t in plan.tables:
        tables.append(table(cfg.unif_db, f"enriched_{t.table}"))
    # What TD's own enrichment (run_enrichments) writes: each table of unify.yml plus its ids.
    covering = [i.name for i in plan.ids if i.tables is None]
    tables.append(
        ExpectedTable(
            database=cfg.unif_db,
            table=f"{ENRICHED_PREFIX}{plan.unif_input}",
            columns=[*(c.name for c in plan.input_columns), "source_table", "time", *covering],
        )
    )
    for t in plan.tables:
        if t.listed:
            ids = [i.name for i in plan.ids if i.tables is None or t.table in i.tables]
            tables.append(
                ExpectedTable(
                    database=cfg.unif_db, table=f"{ENRICHED_PREFIX}{t.prep_table}", columns=ids
                )
            )
    for m in plan.masters:
        tables.append(
            ExpectedTable(
                database=cfg.unif_db, table=m.name, columns=[m.id, *(a.name for a in m.attributes)]
            )
        )
    return tables


def _ids_over(cfg: PipelineConfig, table: str) -> list[str]:
    """The ids whose column an enriched staging table gets (the main id, then the extra ids
    that unify it)."""
    u = cfg.unification
    extra = [
        i.name
        for i in u.ids or []
        if i.tables is None or table in {TableRef.parse(t).table for t in i.tables}
    ]
    return [u.id_name, *extra]


def unified_tables(cfg: PipelineConfig, schemas: SchemaMap) -> list[str]:
    """Staging tables that take part in unification (configured, or those with a key)."""

    return [t.table for t in plan_unification(cfg, schemas).tables]
