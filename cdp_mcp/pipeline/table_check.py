"""Tables an account already has, held against what the pipeline will write into them.

`CREATE TABLE IF NOT EXISTS` keeps a table that is already there, so a table another tool
made under one of the pipeline's names (TD's consultant plugins make `inc_log` and
`ingestion_log`, and the ingestion and staging tables under the same names) decides whether
the generated INSERTs work. Before anything runs, the schema of every table the pipeline
writes is read (`Backend.tables`) and compared with the columns its SQL names:
- `insert`: a fixed column list (the load log, inc_log, the hist-union tables): every column
  must be there with the same type, or TD refuses the INSERT;
- `append`: rows added with schema on write (td_load>): a column the pipeline writes must
  not have another type there (a missing one is added);
- `replace`: rebuilt in full (staging's create_table): any schema, but its rows are replaced.
A mismatch is reported with the fix, in TD's toolbelt commands, before anything is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cdp_mcp.backends.base import Backend, NotFoundError, TableInfo
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import (
    INC_LOG,
    INC_LOG_COLUMNS,
    INGESTION_LOG,
    INGESTION_LOG_COLUMNS,
    inc_log_project,
)
from cdp_mcp.core.schema import Column, SchemaMap
from cdp_mcp.generate.hist_union import side_roles, union_columns

How = Literal["insert", "append", "replace"]
# The type a column of the pipeline's is stored as on TD, where it differs: TD's schemas
# name no boolean (td-client-java reads int, long, double, float, string, array only), and
# TD's loads write booleans as long (embulk-output-td's default_boolean_type_convert_to).
# The pipeline's own tables from an earlier run hold `long` there.
_STORED_AS = {"boolean": "long"}


def _stored(type_: str) -> str:
    return _STORED_AS.get(type_, type_)


@dataclass(frozen=True)
class Written:
    """A table the pipeline writes, the columns its SQL names (never `time`: every TD table
    has it) and how it writes them."""

    database: str
    table: str
    columns: tuple[Column, ...]
    how: How
    phase: str

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"


def _without_time(cols: list[Column]) -> tuple[Column, ...]:
    return tuple(c for c in cols if c.name != "time")


def written_tables(cfg: PipelineConfig, schemas: SchemaMap) -> list[Written]:
    """Every table ingestion, hist-union and staging write (unification writes its own
    database), with the columns known before any phase ran (`schemas`: the sources'
    predicted loads; empty for a connector whose columns arrive with the first load)."""
    src, field = cfg.src_db, cfg.ingestion.incremental_field
    out = [Written(src, INGESTION_LOG, _without_time(INGESTION_LOG_COLUMNS), "insert", "ingestion")]
    sides = {"hist": "_hist", "inc": ""}
    for obj in cfg.ingestion.objects:
        for role in side_roles(cfg):
            table = f"{cfg.source}_{obj}{sides[role]}"
            # create_target_table.sql declares the field as varchar: the bounds parse it
            known = schemas.get(f"{src}.{table}") or [Column(name=field, type="string")]
            out.append(Written(src, table, _without_time(known), "append", "ingestion"))
    for ref in cfg.hist_union_tables():
        db = ref.database or src
        names = {"hist": f"{ref.table}_hist", "inc": ref.table}
        side_cols = [schemas.get(f"{db}.{names[r]}") for r in side_roles(cfg)]
        known = union_columns([c for c in side_cols if c]) if all(side_cols) else []
        out.append(
            Written(db, f"{ref.table}_hist_union", _without_time(known), "insert", "hist_union")
        )
        out.append(Written(cfg.stg_db, ref.table, (), "replace", "staging"))
    out.append(
        Written(cfg.config_db, INC_LOG, _without_time(INC_LOG_COLUMNS), "insert", "hist_union")
    )
    return out


@dataclass
class TableCheck:
    problems: list[str]
    notes: list[str]


def check(
    cfg: PipelineConfig, written: list[Written], existing: dict[str, list[TableInfo]]
) -> TableCheck:
    """`existing`: database -> its tables (a database not there yet has none)."""
    result = TableCheck(problems=[], notes=[])
    compatible, rebuilt = [], []
    for w in written:
        found = next((t for t in existing.get(w.database, []) if t.name == w.table), None)
        if found is None:
            continue
        if w.how == "replace":
            rebuilt.append(f"{w.qualified} ({found.count:,} rows)")
            continue
        have = {c.name: _stored(c.type) for c in found.columns}
        missing = [c for c in w.columns if c.name not in have]
        differ = [c for c in w.columns if c.name in have and have[c.name] != _stored(c.type)]
        if w.how == "append":
            missing = []  # schema on write adds them
        if not missing and not differ:
            compatible.append(f"{w.qualified} ({found.count:,} rows)")
            continue
        result.problems.append(_mismatch(cfg, w, found, missing, differ))
    if compatible:
        result.notes.append(
            "tables that exist already and take what the pipeline writes: " + ", ".join(compatible)
        )
    if rebuilt:
        result.notes.append(
            "tables that exist already and that staging rebuilds in full (their rows are "
            "replaced; confirm with the person before the first run): " + ", ".join(rebuilt)
        )
    return result


def _mismatch(
    cfg: PipelineConfig,
    w: Written,
    found: TableInfo,
    missing: list[Column],
    differ: list[Column],
) -> str:
    have = {c.name: c.type for c in found.columns}
    shown = ", ".join(f"{c.name}:{c.type}" for c in found.columns if c.name != "time")
    parts = [f"{w.qualified} exists with columns ({shown or 'none but time'}), but {w.phase} "]
    if w.how == "insert":
        parts.append("inserts into it by name: ")
    else:
        parts.append("appends rows to it: ")
    reasons = []
    if missing:
        reasons.append("it lacks " + ", ".join(f"{c.name} ({c.type})" for c in missing))
    if differ:
        reasons.append(
            "; ".join(
                f"{c.name} is {have[c.name]} there, the pipeline writes {c.type}" for c in differ
            )
        )
    parts.append("; ".join(reasons) + ". ")
    kept = f"{w.table}_before_cdp_mcp"
    rename = f"`td table:rename {w.database} {w.table} {kept}`"
    if differ:
        parts.append(
            f"Fix: keep it under another name with {rename}, and the pipeline creates its own "
            "(TD cannot change a column's type in place)."
        )
    else:
        columns = " ".join(f"{c.name}:{c.type}" for c in missing)
        parts.append(
            f"Fix: add the columns with `td schema:add {w.database} {w.table} {columns}` "
            f"(its rows stay, the new columns are NULL in them), or move it aside with {rename}."
        )
        if w.table == INC_LOG and "watermark" in have:
            # the inc_log of an earlier cdp-mcp: carry its watermarks over, or the next
            # hist-union would append every row again
            parts.append(
                " It is this pipeline's earlier inc_log: after adding the columns, keep its "
                f"watermarks with `INSERT INTO {w.database}.{INC_LOG} (table_name, project_name, "
                f"inc_value) SELECT table_name, '{inc_log_project(cfg)}', max(watermark) FROM "
                f"{w.database}.{INC_LOG} WHERE watermark IS NOT NULL GROUP BY table_name`."
            )
    return "".join(parts)


async def existing_tables(backend: Backend, databases: set[str]) -> dict[str, list[TableInfo]]:
    out: dict[str, list[TableInfo]] = {}
    for db in sorted(databases):
        try:
            out[db] = await backend.tables(db)
        except NotFoundError:
            out[db] = []
    return out
