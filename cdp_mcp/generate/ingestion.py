"""Render the ingestion project: a backfill and/or an incremental workflow for one source.

Each load's bounds are computed in SQL from `{src}.cdp_mcp_ingestion_log` (docs/internals.md,
"Ingestion semantics"), so on either backend a rerun continues exactly where the log says:
every row with `incremental_field >= start_date` is loaded once across both workflows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from cdp_mcp.config import PipelineConfig, parse_timestamp
from cdp_mcp.generate.templating import render as render_template
from cdp_mcp.generate.writer import GenerationError
from cdp_mcp.phases import INGESTION_LOG, INGESTION_LOG_COLUMNS, Phase, project_name
from cdp_mcp.schema import SchemaMap, presto_type
from cdp_mcp.sources import SourceError, find_object_file

# Bounds and watermarks are stored in this one text form (UTC, microseconds), so comparing
# them as strings orders them in time.
CANONICAL_TS_PY = "%Y-%m-%dT%H:%M:%S.%fZ"

# How much earlier than the last successful load's log row a retried load's rows may be
# stamped (`time` comes from the connector's clock, the log's from Presto's): one of TD's
# hourly partitions more to scan, never a row missed.
CLOCK_MARGIN_SEC = 3600

# Credential fields of common TD connectors; any other connector gets `api_key`.
_CONNECTOR_SECRETS: dict[str, tuple[str, ...]] = {
    "s3": ("access_key_id", "secret_access_key"),
    "gcs": ("json_keyfile",),
    "bigquery": ("json_keyfile",),
    "salesforce": ("username", "password", "security_token", "client_id", "client_secret"),
    "shopify": ("apikey", "password"),
    "mysql": ("user", "password"),
    "postgresql": ("user", "password"),
    "redshift": ("user", "password"),
    "snowflake": ("user", "password"),
    "sftp": ("user", "password"),
}


@dataclass(frozen=True)
class _Workflow:
    kind: str  # "hist" | "inc": file names and the datasources list
    log_mode: str  # `mode` written to the ingestion log
    table_suffix: str

    @property
    def datasources_key(self) -> str:
        return f"{self.kind}_datasources"


HIST = _Workflow(kind="hist", log_mode="historical", table_suffix="_hist")
INC = _Workflow(kind="inc", log_mode="incremental", table_suffix="")


def canonical_ts(text: str) -> str:
    """A config timestamp in the canonical text form the log stores."""
    return parse_timestamp(text).astimezone(UTC).strftime(CANONICAL_TS_PY)


def workflows_for(cfg: PipelineConfig) -> list[_Workflow]:
    """The workflows the mode needs, in phases.workflows' run order."""
    mode = cfg.ingestion.mode
    return [
        wf
        for wf, modes in ((HIST, ("historical", "both")), (INC, ("incremental", "both")))
        if mode in modes
    ]


def render(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, str]:
    _check_incremental_field(cfg, schemas)
    flows = workflows_for(cfg)
    ctx = _context(cfg)
    files: dict[str, str] = {}
    for wf in flows:
        wf_ctx = {**ctx, "wf": wf, "for_each_value": "${" + wf.datasources_key + "}"}
        files[f"{cfg.source}_ingest_{wf.kind}.dig"] = render_template(
            "ingestion/ingest.dig.j2", **wf_ctx
        )
        files[f"queries/{wf.kind}_bounds.sql"] = render_template(
            f"ingestion/{wf.kind}_bounds.sql.j2", **wf_ctx
        )
    files[f"config/{cfg.source}_datasources.yml"] = render_template(
        "ingestion/datasources.yml.j2", **ctx, flows=flows
    )
    for obj in cfg.ingestion.objects:
        files[f"config/{cfg.source}_{obj}_load.yml"] = _load_config(cfg, obj, ctx)
    for name in (
        "create_ingestion_log",
        "create_target_table",
        "clear_range",
        "log_success",
        "log_error",
    ):
        files[f"queries/{name}.sql"] = render_template(f"ingestion/{name}.sql.j2", **ctx)
    return files


def _context(cfg: PipelineConfig) -> dict[str, object]:
    return {
        "source": cfg.source,
        "src_db": cfg.src_db,
        "objects": cfg.ingestion.objects,
        "mode": cfg.ingestion.mode,
        "field": cfg.ingestion.incremental_field,
        "start": canonical_ts(cfg.ingestion.start_date),
        "parallel_limit": cfg.ingestion.parallel_limit,
        "log_table": INGESTION_LOG,
        "log_columns": [(c.name, presto_type(c.type)) for c in INGESTION_LOG_COLUMNS],
        "clock_margin": CLOCK_MARGIN_SEC,
        "project": project_name(cfg, Phase.INGESTION),
    }


def _load_config(cfg: PipelineConfig, obj: str, ctx: dict[str, object]) -> str:
    if cfg.ingestion.connector == "file":
        return render_template(
            "ingestion/load_file.yml.j2", **ctx, obj=obj, path=str(_source_file(cfg, obj))
        )
    secrets = _CONNECTOR_SECRETS.get(cfg.ingestion.connector, ("api_key",))
    return render_template(
        "ingestion/load_connector.yml.j2",
        **ctx,
        obj=obj,
        connector=cfg.ingestion.connector,
        secrets=secrets,
    )


def _source_file(cfg: PipelineConfig, obj: str) -> Path:
    if cfg.source_dir is None:  # the config refuses this; kept for type narrowing
        raise GenerationError("ingestion.source_path: connector `file` needs a source folder")
    try:
        return find_object_file(cfg.source_dir, obj)
    except SourceError as e:
        raise GenerationError(f"ingestion.source_path: {e}") from None


def _check_incremental_field(cfg: PipelineConfig, schemas: SchemaMap) -> None:
    """Bounds parse the field as a timestamp text; refuse a schema where it cannot be."""
    field = cfg.ingestion.incremental_field
    for obj in cfg.ingestion.objects:
        cols = schemas.get(f"{cfg.src_db}.{cfg.source}_{obj}_hist") or schemas.get(
            f"{cfg.src_db}.{cfg.source}_{obj}"
        )
        if not cols:
            continue  # a TD connector's columns are unknown before its first load
        types = {c.name: c.type for c in cols}
        if field not in types:
            raise GenerationError(
                f"ingestion.incremental_field: object {obj!r} has no column {field!r} "
                f"(columns: {', '.join(sorted(types))})"
            )
        if types[field] != "string":
            raise GenerationError(
                f"ingestion.incremental_field: column {field!r} of object {obj!r} is "
                f"{types[field]}; it must hold timestamps as text (ISO 8601)"
            )
