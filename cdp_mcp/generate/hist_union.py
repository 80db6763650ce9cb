"""Render the hist-union project: `{table}_hist` UNION ALL `{table}` into `{table}_hist_union`.

The two sides are loaded at different times, so their `time` values are independent: each
side keeps its own watermark (max `time` already unioned) in `{client}_config.inc_log`, keyed
by the side's qualified table name and this pipeline's project_name. A run reads the
watermarks, fixes a cutoff per side (max `time` now, read above the watermark only), appends
the rows with watermark < time <= cutoff, then logs the cutoffs; a rerun therefore adds
nothing twice, and rows loaded later into either side arrive on the next run. Every scan is
bounded on `time` with TD_TIME_RANGE, so a run reads the partitions of its new rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp_mcp.core.config import PipelineConfig, TableRef
from cdp_mcp.core.phases import (
    INC_LOG,
    INC_LOG_COLUMNS,
    dig_file,
    hist_union_workflow,
    inc_log_project,
)
from cdp_mcp.core.schema import Column, SchemaMap, presto_type
from cdp_mcp.generate.templating import PARALLEL_LIMIT
from cdp_mcp.generate.templating import render as render_template
from cdp_mcp.generate.writer import GenerationError


@dataclass(frozen=True)
class SelectItem:
    """One output column as a side selects it: the column itself, a CAST of it, or NULL."""

    name: str
    sql_type: str
    how: str  # "same" | "cast" | "null"


@dataclass(frozen=True)
class Side:
    role: str  # "hist" | "inc": names the stored bounds (hist_from, inc_to, ...)
    database: str
    table: str
    items: list[SelectItem]

    @property
    def key(self) -> str:
        """The side's row in inc_log."""
        return f"{self.database}.{self.table}"


@dataclass(frozen=True)
class UnionTable:
    name: str
    database: str
    output: str
    columns: list[tuple[str, str]]  # (name, sql type) of the output table
    sides: list[Side]


def render(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, str]:
    tables = [_union_table(cfg, ref, schemas) for ref in cfg.hist_union_tables()]
    ctx = {
        "source": cfg.source,
        "src_db": cfg.src_db,
        "config_db": cfg.config_db,
        "databases": sorted({cfg.config_db, *(t.database for t in tables)}),
        "tables": tables,
        "parallel_limit": PARALLEL_LIMIT,
        "inc_log": INC_LOG,
        "inc_log_columns": [(c.name, presto_type(c.type)) for c in INC_LOG_COLUMNS],
        "inc_log_project": inc_log_project(cfg),
    }
    files = {
        dig_file(hist_union_workflow(cfg)): render_template("hist_union/hist_union.dig.j2", **ctx),
        "queries/create_inc_log.sql": render_template("hist_union/create_inc_log.sql.j2", **ctx),
    }
    for t in tables:
        for step in ("create", "watermarks", "bounds", "union", "log"):
            files[f"queries/{t.name}_{step}.sql"] = render_template(
                f"hist_union/{step}.sql.j2", **ctx, t=t
            )
    return files


def side_roles(cfg: PipelineConfig) -> list[str]:
    """The sides ingestion produces in this mode (a missing side is not read)."""
    mode = cfg.ingestion.mode
    return {"historical": ["hist"], "incremental": ["inc"], "both": ["hist", "inc"]}[mode]


def _union_table(cfg: PipelineConfig, ref: TableRef, schemas: SchemaMap) -> UnionTable:
    db = ref.database or cfg.src_db
    names = {"hist": f"{ref.table}_hist", "inc": ref.table}
    side_cols = {role: _side_columns(schemas, db, names[role]) for role in side_roles(cfg)}
    columns = union_columns(list(side_cols.values()))
    sides = [
        Side(role=role, database=db, table=names[role], items=_select_items(cols, columns))
        for role, cols in side_cols.items()
    ]
    return UnionTable(
        name=ref.table,
        database=db,
        output=f"{ref.table}_hist_union",
        columns=[(c.name, presto_type(c.type)) for c in columns],
        sides=sides,
    )


def _side_columns(schemas: SchemaMap, db: str, table: str) -> list[Column]:
    cols = schemas.get(f"{db}.{table}")
    if not cols:
        raise GenerationError(
            f"no columns known for {db}.{table}: run the ingestion phase first, so the "
            "hist-union is generated for the tables it loaded"
        )
    if "time" not in {c.name for c in cols}:
        raise GenerationError(f"{db}.{table} has no `time` column; TD tables always have one")
    return cols


def union_columns(sides: list[list[Column]]) -> list[Column]:
    """Columns of the union by name: the last side's order (incremental is the base), then
    columns only earlier sides have; `time` last. A type shared by all sides is kept."""
    order: list[str] = []
    for cols in reversed(sides):
        order.extend(c.name for c in cols if c.name not in order and c.name != "time")
    order.append("time")
    types: dict[str, set[str]] = {}
    for cols in sides:
        for c in cols:
            types.setdefault(c.name, set()).add(c.type)
    return [Column(name=n, type=common_type(types[n])) for n in order]


def common_type(types: set[str]) -> str:
    """The TD type both sides' values fit: the same type, long+double -> double, else string."""
    if len(types) == 1:
        return next(iter(types))
    if types == {"long", "double"}:
        return "double"
    return "string"


def _select_items(side: list[Column], columns: list[Column]) -> list[SelectItem]:
    have = {c.name: c.type for c in side}
    items = []
    for col in columns:
        if col.name not in have:
            how = "null"
        elif have[col.name] != col.type:
            how = "cast"
        else:
            how = "same"
        items.append(SelectItem(name=col.name, sql_type=presto_type(col.type), how=how))
    return items
