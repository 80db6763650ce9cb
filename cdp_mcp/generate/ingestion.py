"""Render the ingestion project: a backfill and/or an incremental workflow for one source.

Each load's bounds are computed in SQL from `{src}.cdp_mcp_ingestion_log` (docs/internals.md,
"Ingestion semantics"), so on either backend a rerun continues exactly where the log says:
every row with `incremental_field >= start_date` is loaded once across both workflows.

How a range's rows arrive (`load_mode`):
- `file`: local files on the local backend; `td_load>` reads the range from the file.
- `upload`: local files on Treasure Data, whose servers cannot read them: cdp-mcp uploads
  the range into a landing table with TD's bulk import before the attempt starts
  (pipeline/file_upload.py); the workflow appends the range from there.
- `connector`: a TD connector of the catalog fetches the range into the landing table
  (`td_load>`, the range in the connector's own fields); the workflow appends the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Literal

from cdp_mcp.core import connectors
from cdp_mcp.core.config import LANDING_SUFFIX, PipelineConfig, parse_timestamp
from cdp_mcp.core.file_source import SourceError, find_object_file
from cdp_mcp.core.phases import (
    INGESTION_LOG,
    INGESTION_LOG_COLUMNS,
    Phase,
    dig_file,
    ingestion_workflow,
    project_name,
)
from cdp_mcp.core.schema import SchemaMap, presto_type
from cdp_mcp.core.time_formats import parse_formats
from cdp_mcp.generate import referenced_secrets
from cdp_mcp.generate.connector_yaml import dump_in, in_section
from cdp_mcp.generate.templating import render as render_template
from cdp_mcp.generate.writer import GenerationError

# Bounds and watermarks are stored in this one text form (UTC, microseconds), so comparing
# them as strings orders them in time.
CANONICAL_TS_PY = "%Y-%m-%dT%H:%M:%S.%fZ"

# How much earlier than the last successful load's log row a retried load's rows may be
# stamped (`time` comes from the connector's clock, the log's from Presto's): one of TD's
# hourly partitions more to scan, never a row missed.
CLOCK_MARGIN_SEC = 3600


@dataclass(frozen=True)
class _Workflow:
    kind: Literal["hist", "inc"]  # file names and the datasources list
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


def load_mode(cfg: PipelineConfig) -> str:
    """`file`, `upload` or `connector` (see the module docstring)."""
    if cfg.ingestion.connector != "file":
        return "connector"
    return "upload" if cfg.global_.backend == "treasuredata" else "file"


def landing_table(cfg: PipelineConfig, table: str) -> str:
    return f"{table}{LANDING_SUFFIX}"


def render(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, str]:
    check_incremental_field(cfg, schemas)
    flows = workflows_for(cfg)
    ctx = _context(cfg)
    mode = ctx["load_mode"]
    files: dict[str, str] = {}
    for wf in flows:
        wf_ctx = {**ctx, "wf": wf, "for_each_value": "${" + wf.datasources_key + "}"}
        files[dig_file(ingestion_workflow(cfg, wf.kind))] = render_template(
            "ingestion/ingest.dig.j2", **wf_ctx
        )
        files[f"queries/{wf.kind}_bounds.sql"] = render_template(
            f"ingestion/{wf.kind}_bounds.sql.j2", **wf_ctx
        )
    files[f"config/{cfg.source}_datasources.yml"] = render_template(
        "ingestion/datasources.yml.j2", **ctx, flows=flows
    )
    if mode != "upload":
        for obj in cfg.ingestion.objects:
            files[f"config/{cfg.source}_{obj}_load.yml"] = _load_config(cfg, obj, ctx)
    queries = ["create_ingestion_log", "create_target_table", "clear_range"]
    queries += ["log_success", "log_error"] + (["load_landing"] if mode != "file" else [])
    for name in queries:
        files[f"queries/{name}.sql"] = render_template(f"ingestion/{name}.sql.j2", **ctx)
    return files


def _context(cfg: PipelineConfig) -> dict[str, object]:
    return {
        "source": cfg.source,
        "src_db": cfg.src_db,
        "objects": cfg.ingestion.objects,
        "mode": cfg.ingestion.mode,
        "field": cfg.ingestion.incremental_field,
        "time_formats": parse_formats(cfg.ingestion.time_formats),
        "start": canonical_ts(cfg.ingestion.start_date),
        "parallel_limit": cfg.ingestion.parallel_limit,
        "log_table": INGESTION_LOG,
        "log_columns": [(c.name, presto_type(c.type)) for c in INGESTION_LOG_COLUMNS],
        "clock_margin": CLOCK_MARGIN_SEC,
        "project": project_name(cfg, Phase.INGESTION),
        "load_mode": load_mode(cfg),
        "connector": cfg.ingestion.connector,
        "landing_suffix": LANDING_SUFFIX,
        "landing_note": {
            "upload": "cdp-mcp filled it from the local file with TD's bulk import.",
            "connector": f"TD's {cfg.ingestion.connector} connector filled it (td_load>).",
        }.get(load_mode(cfg), ""),
    }


def _load_config(cfg: PipelineConfig, obj: str, ctx: dict[str, object]) -> str:
    if cfg.ingestion.connector == "file":
        return render_template(
            "ingestion/load_file.yml.j2",
            **ctx,
            obj=obj,
            path=str(_source_file(cfg, obj)),
            encoding=cfg.ingestion.encoding_of(obj),
        )
    conn = connectors.get(cfg.ingestion.connector)
    if conn is None:  # the config refuses this; kept for type narrowing
        raise GenerationError(
            f"ingestion.connector: {connectors.unknown_type_message(cfg.ingestion.connector)}"
        )
    section = in_section(
        conn,
        cfg.ingestion.connector_settings,
        cfg.ingestion.object_settings.get(obj, {}),
        obj,
        cfg.ingestion.incremental_field,
    )
    text = dump_in(section)
    return render_template(
        "ingestion/load_connector.yml.j2",
        **ctx,
        obj=obj,
        conn=conn,
        in_section=text,
        secrets=referenced_secrets({"in": text}),
    )


def _source_file(cfg: PipelineConfig, obj: str) -> Path:
    if cfg.source_dir is None:  # the config refuses this; kept for type narrowing
        raise GenerationError("ingestion.source_path: connector `file` needs a source folder")
    try:
        return find_object_file(cfg.source_dir, obj)
    except SourceError as e:
        raise GenerationError(f"ingestion.source_path: {e}") from None


def check_incremental_field(cfg: PipelineConfig, schemas: SchemaMap) -> None:
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
