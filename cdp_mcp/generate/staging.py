"""The staging project: per hist-union table, a transform in Presto or Hive SQL, kept up to
date incrementally.

Each transform reads `{src}.{table}_hist_union` and selects exactly the columns
`staging_rules.staging_plan` lists, so what validation expects is what is written.

Runs (transform_{source}.dig, per table):
- `bounds.sql` reads the span to stage: from the table's watermark W (the cutoff of the last
  run, in `{client}_config.staging_log`; W + 1 when the union still holds exactly the rows
  at W the last run saw, since a load gives all its rows one `time`) to this run's cutoff C
  (the largest `time` in the union now).
- First run, no watermark, or the staging table gone: `transform.sql` builds the table from
  the union's rows up to C beside the old one (`{table}_stg_build`), and td_ddl>'s
  `rename_tables` swaps it in, so a reader never finds the table missing or half-built.
- Later runs, when the span has rows: `changes.sql` stages the keys with a row in the span,
  from all their rows up to C (and the rows without a key in the span), into
  `{table}_stg_changes`; `delete.sql` removes those keys (and key-less rows from the span's
  start on) from the table and `insert.sql` adds the new versions, as the seed plugin's
  upsert does.
- `log.sql` records C as the new watermark. The watermark's name carries a digest of the
  transform, so a regenerated transform with other rules or columns rebuilds in full.

So a staging table is always exactly the transform of the union's rows up to its
watermark, whatever was loaded meanwhile (validation counts on that). Every step replaces a
set of rows instead of appending, so rerunning a failed or finished run neither duplicates
nor loses rows; rows that reach the union in W's second after a run read it change that
second's count, and the next run restages the second. Bookkeeping steps are Presto for both
engines (TD's Hive has no DELETE).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cdp_mcp.core.config import PipelineConfig, TableRef
from cdp_mcp.core.literal import digdag_literal
from cdp_mcp.core.phases import STAGING_LOG, STAGING_LOG_COLUMNS, dig_file, staging_workflow
from cdp_mcp.core.schema import Column, SchemaMap, presto_type
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.core.staging_rules import (
    NULL_TEXTS,
    StagingColumn,
    StagingInput,
    column_kind,
    staging_inputs,
    staging_plan,
)
from cdp_mcp.core.time_formats import parse_formats
from cdp_mcp.generate.templating import PARALLEL_LIMIT
from cdp_mcp.generate.templating import render as render_template
from cdp_mcp.generate.writer import GenerationError

BUILD_SUFFIX = "_stg_build"  # the full build, before it is swapped in
CHANGES_SUFFIX = "_stg_changes"  # an incremental run's new versions, before the upsert


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
    key_input: StagingInput | None = None
    # After the recency terms: the kept row's own values, so that versions of one instant
    # loaded together are picked by what they hold, not by the order a run reads them.
    tiebreak: tuple[str, ...] = ()


@dataclass(frozen=True)
class StagingTable:
    name: str
    source_db: str
    source_table: str
    columns: list[Column]  # the staging table's, in order
    watermark_key: str  # its rows in staging_log


def hive_ident(name: str) -> str:
    # Hive reads "x" as a string literal; identifiers take backticks.
    return "`" + name.replace("`", "``") + "`"


def hive_string(value: str) -> str:
    # Hive escapes with backslashes inside literals; '' is not an escaped quote there.
    return digdag_literal("'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'")


def presto_string(value: str) -> str:
    return digdag_literal(sql_string(value))


def render(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, str]:
    """`transform_{source}.dig`, `queries/create_staging_log.sql` and, per hist-union table,
    `queries/{table}_{step}.sql` for each step."""
    files: dict[str, str] = {
        "queries/create_staging_log.sql": render_template(
            "staging/create_log.sql.j2",
            config_db=cfg.config_db,
            log_table=STAGING_LOG,
            columns=[(c.name, presto_type(c.type)) for c in STAGING_LOG_COLUMNS],
        )
    }
    tables = []
    for ref in cfg.hist_union_tables():
        table, queries = _table_files(cfg, ref, schemas)
        tables.append(table)
        files.update(queries)
    files[dig_file(staging_workflow(cfg))] = render_template(
        "staging/transform.dig.j2",
        source=cfg.source,
        stg_db=cfg.stg_db,
        config_db=cfg.config_db,
        databases=sorted({cfg.stg_db, cfg.config_db}),
        engine=cfg.staging.engine,
        parallel_limit=PARALLEL_LIMIT,
        tables=[t.name for t in tables],
        build_suffix=BUILD_SUFFIX,
        changes_suffix=CHANGES_SUFFIX,
    )
    return dict(sorted(files.items()))


def _input_columns(ref: TableRef, schemas: SchemaMap) -> list[Column]:
    source = f"{ref.database}.{ref.table}_hist_union"
    columns = schemas.get(source)
    if not columns:
        raise GenerationError(
            f"no columns known for {source}: run the hist_union phase first (or, for "
            "connector `file`, check that the source files are readable)"
        )
    return columns


def _table_files(
    cfg: PipelineConfig, ref: TableRef, schemas: SchemaMap
) -> tuple[StagingTable, dict[str, str]]:
    columns = _input_columns(ref, schemas)
    source_db = ref.database or cfg.src_db
    inc = cfg.ingestion.incremental_field
    plan = staging_plan(columns, inc)
    inputs = staging_inputs(columns, inc)
    dedup = _dedup(cfg, ref.table, columns, inputs)
    engine = cfg.staging.engine
    hive = engine == "hive"
    common = {
        "engine": engine,
        "time_formats": parse_formats(cfg.ingestion.time_formats),
        "qi": hive_ident if hive else quote_ident,
        "sl": hive_string if hive else presto_string,
        "source_db": source_db,
        "source_table": f"{ref.table}_hist_union",
        "source_system": cfg.source,
        "inputs": inputs,
        "plan": plan,
        # computed once each, in this order: the seconds of timestamps with a derived column,
        # the validity of emails and phones with a *_valid or *_hash column
        "timed": _sources(plan, ("std", "unixtime", "date")),
        "checked": _sources(plan, ("valid", "hash")),
        "null_texts": NULL_TEXTS,
        "dedup_key": dedup.key,
        "key_input": dedup.key_input,
        "recency": dedup.recency,
        "recency_note": ", then ".join(r.column for r in dedup.recency),
        "tiebreak": dedup.tiebreak,
        "no_dedup_reason": dedup.reason,
        "target": f"{cfg.stg_db}.{ref.table}",
        "source": f"{source_db}.{ref.table}_hist_union",
    }
    transform = render_template("staging/transform.sql.j2", **common, scope="all")
    changes = render_template("staging/transform.sql.j2", **common, scope="changes")
    # The watermark belongs to this transform: other rules or columns start from scratch.
    digest = hashlib.sha256((transform + changes).encode()).hexdigest()[:12]
    table = StagingTable(
        name=ref.table,
        source_db=source_db,
        source_table=f"{ref.table}_hist_union",
        columns=[p.column for p in plan],
        watermark_key=f"{cfg.stg_db}.{ref.table}#{digest}",
    )
    book = {
        "t": table,
        "stg_db": cfg.stg_db,
        "config_db": cfg.config_db,
        "log_table": STAGING_LOG,
        "log_columns": [c.name for c in STAGING_LOG_COLUMNS],
        "dedup_key": dedup.key,
        "changes_table": ref.table + CHANGES_SUFFIX,
    }
    files = {
        f"queries/{ref.table}_transform.sql": transform,
        f"queries/{ref.table}_changes.sql": changes,
    }
    for step in ("bounds", "delete", "insert", "log"):
        files[f"queries/{ref.table}_{step}.sql"] = render_template(f"staging/{step}.sql.j2", **book)
    return table, files


def _sources(plan: list[StagingColumn], roles: tuple[str, ...]) -> list[str]:
    """The inputs some output column of `roles` is derived from, in plan order."""
    return list(dict.fromkeys(p.source.name for p in plan if p.source and p.role in roles))


def _dedup(
    cfg: PipelineConfig, table: str, columns: list[Column], inputs: list[StagingInput]
) -> Dedup:
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
    key_input = next(i for i in inputs if i.column.name == key and i.json_of is None)
    # ROW_NUMBER numbers peers in no defined order on Presto, Hive and DuckDB alike, and a
    # full and an incremental run read a key's rows in different orders. The remaining
    # values make the order total over what the row holds: rows equal in all of them
    # stage the same row. A JSON key's column is left out: its JSON text already orders it.
    ordered = {key} | {r.column for r in recency if not r.parse}
    tiebreak = tuple(
        i.column.name for i in inputs if i.json_of is None and i.column.name not in ordered
    )
    return Dedup(key=key, recency=recency, reason="", key_input=key_input, tiebreak=tiebreak)
