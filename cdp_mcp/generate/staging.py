"""The staging project: one transform per hist-union table, in Presto or Hive SQL.

Each `queries/{table}_transform.sql` reads `{src}.{table}_hist_union` and selects exactly the
columns `staging_rules.staging_plan` lists, so what validation expects is what is written.
The workflow rebuilds every staging table in full on each run (`create_table`): with the
deduplication, a full rebuild is the simplest semantics that stays right on reruns.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp_mcp.config import PipelineConfig, TableRef
from cdp_mcp.generate.templating import PARALLEL_LIMIT
from cdp_mcp.generate.templating import render as render_template
from cdp_mcp.generate.writer import GenerationError
from cdp_mcp.schema import Column, SchemaMap
from cdp_mcp.sources import quote_ident, sql_string
from cdp_mcp.staging_rules import Kind, column_kind, staging_plan


@dataclass(frozen=True)
class InputColumn:
    name: str
    type: str
    kind: Kind


@dataclass(frozen=True)
class Recency:
    """One ORDER BY term of the dedup: a column, parsed first when it is timestamp text."""

    column: str
    parse: bool


@dataclass(frozen=True)
class Dedup:
    key: str | None
    recency: list[Recency]
    reason: str  # why there is no dedup, when key is None


def hive_ident(name: str) -> str:
    # Hive reads "x" as a string literal; identifiers take backticks.
    return "`" + name.replace("`", "``") + "`"


def hive_string(value: str) -> str:
    # Hive escapes with backslashes inside literals; '' is not an escaped quote there.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, str]:
    """`transform_{source}.dig` and one `queries/{table}_transform.sql` per hist-union table."""
    refs = cfg.hist_union_tables()
    files = {
        f"queries/{ref.table}_transform.sql": _transform_sql(cfg, ref, schemas) for ref in refs
    }
    files[f"transform_{cfg.source}.dig"] = render_template(
        "staging/transform.dig.j2",
        source=cfg.source,
        stg_db=cfg.stg_db,
        engine=cfg.staging.engine,
        parallel_limit=PARALLEL_LIMIT,
        tables=[ref.table for ref in refs],
    )
    return files


def _input_columns(ref: TableRef, schemas: SchemaMap) -> tuple[str, list[Column]]:
    source = f"{ref.database}.{ref.table}_hist_union"
    columns = schemas.get(source)
    if not columns:
        raise GenerationError(
            f"no columns known for {source}: run the hist_union phase first (or, for "
            "connector `file`, check that the source files are readable)"
        )
    return source, columns


def _transform_sql(cfg: PipelineConfig, ref: TableRef, schemas: SchemaMap) -> str:
    source, columns = _input_columns(ref, schemas)
    inc = cfg.ingestion.incremental_field
    plan = staging_plan(columns, inc)
    dedup = _dedup(cfg, ref.table, columns)
    hive = cfg.staging.engine == "hive"
    return render_template(
        "staging/transform.sql.j2",
        engine=cfg.staging.engine,
        qi=hive_ident if hive else quote_ident,
        sl=hive_string if hive else sql_string,
        source=source,
        target=f"{cfg.stg_db}.{ref.table}",
        source_db=ref.database,
        source_table=f"{ref.table}_hist_union",
        source_system=cfg.source,
        inputs=[InputColumn(c.name, c.type, column_kind(c, inc)) for c in columns],
        plan=plan,
        dedup_key=dedup.key,
        recency=dedup.recency,
        recency_note=", then ".join(r.column for r in dedup.recency),
        no_dedup_reason=dedup.reason,
    )


def _dedup(cfg: PipelineConfig, table: str, columns: list[Column]) -> Dedup:
    """The primary key to deduplicate on and the recency order that picks the kept row."""
    obj = cfg.object_of(table)
    key = cfg.primary_key(obj) if obj else "id"
    names = {c.name for c in columns}
    if key not in names:
        reason = f"primary key column {key!r} is not in the table"
        return Dedup(key=None, recency=[], reason=reason)
    inc = cfg.ingestion.incremental_field
    inc_col = next((c for c in columns if c.name == inc), None)
    recency = [Recency(inc, parse=column_kind(inc_col, inc) == "timestamp")] if inc_col else []
    # Ties (and tables without the incremental field) go to the most recently loaded row.
    if "time" in names and inc != "time":
        recency.append(Recency("time", parse=False))
    if not recency:
        # Nothing says which row is newer: keep one per key (window functions need an order).
        recency.append(Recency(key, parse=False))
    return Dedup(key=key, recency=recency, reason="")
