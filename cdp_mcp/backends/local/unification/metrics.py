"""`unification_metrics`: what the validate step reports about a unification's results.

Profiles and ids per profile, the largest clusters with the values that joined them,
coverage (share of staging rows that got an id) per enriched table, over-merge warnings at
the pipeline's `over_merge_threshold`, clusters left split by merge_iterations, and the
last run. Read from the tables of `cdp_unification_{name}` as they are now.
"""

from __future__ import annotations

import duckdb
from pydantic import BaseModel

from cdp_mcp.backends.local.unification.outputs import RUN_COLUMNS
from cdp_mcp.backends.local.unification.report import (
    TOP_CLUSTERS,
    ClusterSummary,
    OverMergeWarning,
    SizeBucket,
    SplitCluster,
    compute_report,
    read_split_clusters,
)
from cdp_mcp.backends.local.unification.spec import UnificationError
from cdp_mcp.backends.local.unification.sql import columns, exists, scalar, table
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.sqltext import quote_ident

ENRICHED_PREFIX = "enriched_"
BUILD_SUFFIX = "_tmp"  # enrich_runner builds enriched_{t}_tmp, then renames it


class UnificationNames(BaseModel):
    """Where a unification's tables are, when no pipeline config is at hand."""

    database: str  # cdp_unification_{name}
    id_name: str = "unified_id"
    staging_database: str | None = None  # compare enriched row counts with staging's
    over_merge_threshold: int | None = None  # None: scaled with the data (report.py)


class TableCoverage(BaseModel):
    table: str  # enriched_{table}
    rows: int
    rows_with_id: int
    share: float  # rows_with_id / rows (1.0 for an empty table)
    staging_rows: int | None  # rows of the staging table it enriches, when known


class RunInfo(BaseModel):
    time: int
    mode: str
    method: str
    iterations_allowed: int
    iterations_used: int
    values_total: int
    profiles: int
    split_clusters: int
    records_read: int
    seconds: float


class UnificationMetrics(BaseModel):
    database: str
    id_name: str
    profiles: int
    values: int  # key values with an id (rows of the lookup)
    ids_per_profile: list[SizeBucket]
    largest_clusters: list[ClusterSummary]
    coverage: list[TableCoverage]
    over_merge_threshold: int
    over_merge_warnings: list[OverMergeWarning]
    split_clusters: list[SplitCluster]  # left split by merge_iterations (largest first)
    last_run: RunInfo | None
    warnings: list[str]  # one line per problem worth a person's attention


def unification_metrics(
    con: duckdb.DuckDBPyConnection,
    target: PipelineConfig | UnificationNames,
    top: int = TOP_CLUSTERS,
) -> UnificationMetrics:
    """Metrics of the unification `target` names; raises UnificationError if it never ran."""
    names = _names(target)
    db, idn = names.database, names.id_name
    for suffix in ("lookup", "graph", "keys"):
        if exists(con, db, f"{idn}_{suffix}") is None:
            raise UnificationError(
                f"{db}.{idn}_{suffix} does not exist: run the unification phase first"
            )
    report = compute_report(con, db, idn, names.over_merge_threshold, top)
    splits = read_split_clusters(con, db, idn) if exists(con, db, f"{idn}_cluster_report") else []
    coverage = _coverage(con, names)
    warnings = [w.message for w in report.over_merge_warnings]
    if splits:
        warnings.append(
            f"{len(splits)} clusters were left split because merge_iterations was reached "
            "(raise merge_iterations, or run again: an incremental run continues them)"
        )
    for c in coverage:
        if c.staging_rows is not None and c.staging_rows != c.rows:
            warnings.append(
                f"{c.table} has {c.rows} rows but its staging table has {c.staging_rows}"
            )
        if c.rows and not c.rows_with_id:
            warnings.append(f"no row of {c.table} got an id: check its key columns")
    return UnificationMetrics(
        database=db,
        id_name=idn,
        profiles=report.profiles,
        values=report.values,
        ids_per_profile=report.ids_per_profile,
        largest_clusters=report.largest_clusters,
        coverage=coverage,
        over_merge_threshold=report.over_merge_threshold,
        over_merge_warnings=report.over_merge_warnings,
        split_clusters=splits,
        last_run=_last_run(con, db, idn),
        warnings=warnings,
    )


def _names(target: PipelineConfig | UnificationNames) -> UnificationNames:
    if isinstance(target, UnificationNames):
        return target
    return UnificationNames(
        database=target.unif_db,
        id_name=target.unification.id_name,
        staging_database=target.stg_db,
        # As set, or scaled with the data when the config leaves it out.
        over_merge_threshold=target.unification.over_merge_threshold
        if "over_merge_threshold" in target.unification.model_fields_set
        else None,
    )


def _coverage(con: duckdb.DuckDBPyConnection, names: UnificationNames) -> list[TableCoverage]:
    found = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog ="
        " current_database() AND table_schema = ? ORDER BY table_name",
        [names.database],
    ).fetchall()
    out = []
    for (name,) in found:
        if not name.startswith(ENRICHED_PREFIX) or name.endswith(BUILD_SUFFIX):
            continue
        has_id = names.id_name in columns(con, names.database, name)
        with_id = f"count({quote_ident(names.id_name)})" if has_id else "0"
        rows, rows_with_id = (
            int(x)
            for x in con.execute(
                f"SELECT count(*), {with_id} FROM {table(names.database, name)}"
            ).fetchall()[0]
        )
        staging = name.removeprefix(ENRICHED_PREFIX)
        staging_rows = None
        if names.staging_database and exists(con, names.staging_database, staging):
            staging_rows = int(
                scalar(con, f"SELECT count(*) FROM {table(names.staging_database, staging)}")
            )
        out.append(
            TableCoverage(
                table=name,
                rows=rows,
                rows_with_id=rows_with_id,
                share=rows_with_id / rows if rows else 1.0,
                staging_rows=staging_rows,
            )
        )
    return out


def _last_run(con: duckdb.DuckDBPyConnection, database: str, id_name: str) -> RunInfo | None:
    if exists(con, database, f"{id_name}_runs") is None:
        return None
    fields = [c for c, _ in RUN_COLUMNS if c in RunInfo.model_fields]
    rows = con.execute(
        f"SELECT {', '.join(quote_ident(f) for f in fields)}"
        f" FROM {table(database, f'{id_name}_runs')} ORDER BY rowid DESC LIMIT 1"
    ).fetchall()
    return RunInfo(**dict(zip(fields, rows[0], strict=True))) if rows else None
