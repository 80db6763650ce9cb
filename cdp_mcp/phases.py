"""The four phases: their order, project folders, workflows and the tables they produce.

Generation, `start_workflow` and `validate_tables` all read from here, so the workflow that
runs and the tables that are checked can never disagree with what was generated.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from cdp_mcp.config import PipelineConfig
from cdp_mcp.schema import Column, SchemaMap
from cdp_mcp.staging_rules import staging_columns


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


def project_name(cfg: PipelineConfig, phase: Phase) -> str:
    """The Digdag project a phase is pushed as (one project per phase and client)."""
    return f"{cfg.client}_{phase.value}"


def workflows(cfg: PipelineConfig, phase: Phase) -> list[str]:
    """The workflows the pipeline starts for a phase, in run order."""
    src = cfg.source
    if phase is Phase.INGESTION:
        names = []
        if cfg.ingestion.mode in ("historical", "both"):
            names.append(f"{src}_ingest_hist")
        if cfg.ingestion.mode in ("incremental", "both"):
            names.append(f"{src}_ingest_inc")
        return names
    if phase is Phase.HIST_UNION:
        return [f"{src}_hist_union"]
    if phase is Phase.STAGING:
        return [f"transform_{src}"]
    return ["unif_runner"]


class ExpectedTable(BaseModel):
    database: str
    table: str
    columns: list[str]

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"


# Fixed columns of tables whose shape does not depend on the source.
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
# Staging's watermarks, one row per run and table: inc_log's columns and `cutoff_rows` (a
# table of its own: a staging run leaves the hist-union phase's tables as validated).
STAGING_LOG = "staging_log"
INC_LOG_COLUMNS = [
    Column(name="table_name", type="string"),
    Column(name="watermark", type="long"),
    Column(name="rows_added", type="long"),
    Column(name="session_time", type="string"),
    Column(name="time", type="long"),
]


STAGING_LOG_COLUMNS = [*INC_LOG_COLUMNS, Column(name="cutoff_rows", type="long")]


def unification_output_columns(cfg: PipelineConfig) -> dict[str, list[str]]:
    idn = cfg.unification.id_name
    return {
        f"{idn}_lookup": [idn, "id", "id_key_type"],
        # TD's key-name -> id_key_type table; enrichment joins the lookup through it.
        f"{idn}_keys": ["key_type", "key_name"],
        f"{idn}_graph": ["follower_id", "follower_ns", "leader_id", "leader_ns"],
        f"{idn}_result_key_stats": ["from_table", "total_distinct", "time"],
        f"{idn}_source_key_stats": ["from_table", "total_distinct", "time"],
    }


def derive_schemas(cfg: PipelineConfig, sources: dict[str, list[Column]]) -> SchemaMap:
    """Every table each phase writes, with columns, from the source objects' columns.

    `sources` maps object -> the columns a load produces (see sources.select_sql).
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
                Column(name=cfg.unification.id_name, type="string"),
            ]
    return out


def expected_tables(cfg: PipelineConfig, phase: Phase, schemas: SchemaMap) -> list[ExpectedTable]:
    """The tables a phase must leave behind, with the columns each must have."""

    def table(db: str, name: str, fallback: list[Column] | None = None) -> ExpectedTable:
        cols = schemas.get(f"{db}.{name}", fallback or [])
        return ExpectedTable(database=db, table=name, columns=[c.name for c in cols])

    src, objs = cfg.source, cfg.ingestion.objects
    if phase is Phase.INGESTION:
        tables = [table(cfg.src_db, "ingestion_log", INGESTION_LOG_COLUMNS)]
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
        return [*tables, table(cfg.config_db, "inc_log", INC_LOG_COLUMNS)]
    if phase is Phase.STAGING:
        tables = [table(cfg.stg_db, r.table) for r in cfg.hist_union_tables()]
        return [*tables, table(cfg.config_db, STAGING_LOG, STAGING_LOG_COLUMNS)]
    fixed = unification_output_columns(cfg)
    tables = [
        ExpectedTable(database=cfg.unif_db, table=name, columns=cols)
        for name, cols in fixed.items()
    ]
    for ref in unified_tables(cfg, schemas):
        tables.append(table(cfg.unif_db, f"enriched_{ref}"))
    return tables


def unified_tables(cfg: PipelineConfig, schemas: SchemaMap) -> list[str]:
    """Staging tables that take part in unification (configured, or those with a key)."""
    from cdp_mcp.generate.unify_plan import plan_unification

    return [t.table for t in plan_unification(cfg, schemas).tables]
