"""The cluster report: profile sizes, the largest clusters and the values that joined them,
values that join too many people (over-merge), and clusters `merge_iterations` left split.

Over-merge is the classic failure of ID unification: one shared junk value ('test@test.com',
a call-centre phone, a shared device) joins thousands of unrelated people into one profile,
and TD neither refuses nor reports it. Here a value "joins" the distinct records (key-value
combinations of unify.yml's tables) that carry it; `records` is that count, kept per value
in the engine's `{id}_local_state.records`. A value carried by more records than the
threshold is reported with the profile it landed in: `over_merge_threshold` when one is
set, otherwise one that scales with the data (`scaled_threshold`): a value is suspect when
it joins more than max(OVER_MERGE_FLOOR, OVER_MERGE_MULTIPLE x the median records per
value), and always above DEFAULT_OVER_MERGE_THRESHOLD. A fixed 1,000 let 17 contacts
sharing noreply@ pass in a small account.

Values in the report are masked (core/pii.py): it names the junk, never the person.

Everything is computed from the output tables (`{id}_lookup`, `{id}_local_state`, `{id}_keys`), so
the engine (at run time, into `{id}_cluster_report`) and `unification_metrics` (at validation,
with the pipeline config's threshold) report the same way.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import duckdb
from pydantic import BaseModel

from cdp_mcp.backends.local.unification.prior import STATE_SUFFIX
from cdp_mcp.backends.local.unification.spec import (
    DEFAULT_OVER_MERGE_THRESHOLD,
    UnificationError,
)
from cdp_mcp.backends.local.unification.sql import columns, lit, table
from cdp_mcp.core.pii import mask_value
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.core.unification_tables import ID_COLUMNS

TOP_CLUSTERS = 10
TOP_VALUES = 5  # joining values listed per large cluster
MAX_WARNINGS = 100
# The scaled over-merge threshold: most values join one person's few records, so a value
# joining ten times the median (and at least ten records) is rarely one person.
OVER_MERGE_FLOOR = 10
OVER_MERGE_MULTIPLE = 10
# Bucket edges of the ids-per-profile histogram: 1..5 exactly, then decades.
BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 100), (101, 1000), (1001, None))


class ValueCount(BaseModel):
    key: str
    value: str
    records: int  # input records carrying the value


class ClusterSummary(BaseModel):
    unified_id: str
    values: int  # key values (ids) in the profile
    values_by_key: dict[str, int]
    joining_values: list[ValueCount]  # its values carried by the most records


class OverMergeWarning(BaseModel):
    key: str
    value: str
    records: int
    unified_id: str
    profile_values: int
    message: str


class SizeBucket(BaseModel):
    min_ids: int
    max_ids: int | None  # None: no upper bound
    profiles: int


class SplitCluster(BaseModel):
    """A connected group of values that merge_iterations left as several profiles."""

    values: int
    unified_ids: list[str]


class ClusterReport(BaseModel):
    profiles: int
    values: int
    ids_per_profile: list[SizeBucket]
    largest_clusters: list[ClusterSummary]
    over_merge_threshold: int  # the one applied: as set, or scaled with the data
    over_merge_rule: str = ""  # how it was chosen, in words
    over_merge_warnings: list[OverMergeWarning]
    split_clusters: list[SplitCluster] = []


def compute_report(
    con: duckdb.DuckDBPyConnection,
    database: str,
    id_name: str,
    threshold: int | None = None,
    top: int = TOP_CLUSTERS,
    sizes: str | None = None,
    id_column: str | None = None,
) -> ClusterReport:
    """The report of the unification tables `database.{id_name}_*` as they are now.

    `threshold` None: scaled with the data (`scaled_threshold`). `sizes` (uid, n: values
    per profile) saves a pass over the lookup when the caller has it.
    """
    lookup = table(database, f"{id_name}_lookup")
    keys = _key_names(con, database, id_name)
    uid = quote_ident(id_column or lookup_id_column(con, database, id_name))
    if sizes is None:
        sizes = f"(SELECT {uid} AS uid, count(*) AS n FROM {lookup} GROUP BY {uid})"
    values = _values(con, database, id_name, uid)
    histogram = con.execute(f"SELECT n, count(*) FROM {sizes} GROUP BY n").fetchall()
    top_rows = con.execute(
        f"SELECT uid, n FROM {sizes} ORDER BY n DESC, uid LIMIT {int(top)}"
    ).fetchall()
    clusters = _clusters(con, values, keys, top_rows)
    if threshold is None:
        median = con.execute(f"SELECT median(records) FROM {values}").fetchone()
        threshold, rule = scaled_threshold(float(median[0]) if median and median[0] else 0.0)
    else:
        rule = "over_merge_threshold as set"
    warnings = _over_merge(con, values, keys, threshold, sizes)
    return ClusterReport(
        profiles=sum(int(c) for _, c in histogram),
        values=sum(int(n) * int(c) for n, c in histogram),
        ids_per_profile=_buckets(histogram),
        largest_clusters=clusters,
        over_merge_threshold=threshold,
        over_merge_rule=rule,
        over_merge_warnings=warnings,
    )


def scaled_threshold(median_records: float) -> tuple[int, str]:
    """The threshold for values whose median carries `median_records` records, and why."""
    scaled = max(OVER_MERGE_FLOOR, int(OVER_MERGE_MULTIPLE * median_records))
    threshold = min(scaled, DEFAULT_OVER_MERGE_THRESHOLD)
    return threshold, (
        f"max({OVER_MERGE_FLOOR}, {OVER_MERGE_MULTIPLE} x the median records per value "
        f"({median_records:g})), at most {DEFAULT_OVER_MERGE_THRESHOLD}; set "
        "unification.over_merge_threshold to fix it"
    )


def lookup_id_column(con: duckdb.DuckDBPyConnection, database: str, id_name: str) -> str:
    """The lookup's id column: `canonical_id` or `persistent_id`, as TD names it."""
    cols = columns(con, database, f"{id_name}_lookup")
    for name in ID_COLUMNS:
        if name in cols:
            return name
    raise UnificationError(
        f"{database}.{id_name}_lookup has neither of TD's id columns ({', '.join(ID_COLUMNS)})"
    )


def _values(con: duckdb.DuckDBPyConnection, database: str, id_name: str, uid: str) -> str:
    """(uid, kt, v, records) per lookup row; records is NULL where the engine's state is
    absent (tables TD wrote)."""
    lookup = table(database, f"{id_name}_lookup")
    if "id" not in columns(con, database, f"{id_name}_{STATE_SUFFIX}"):  # absent, or older
        return f"(SELECT {uid} AS uid, id_key_type AS kt, id AS v, NULL::BIGINT AS records FROM {lookup})"
    state = table(database, f"{id_name}_{STATE_SUFFIX}")
    # Joined on the value: an incremental run rewrites only the rows it changed.
    return (
        f"(SELECT l.{uid} AS uid, l.id_key_type AS kt, l.id AS v, s.records"
        f" FROM {lookup} l LEFT JOIN {state} s ON s.kt = l.id_key_type AND s.id = l.id)"
    )


def _key_names(con: duckdb.DuckDBPyConnection, database: str, id_name: str) -> dict[int, str]:
    rows = con.execute(f"SELECT key_type, key_name FROM {table(database, f'{id_name}_keys')}")
    return {int(code): str(name) for code, name in rows.fetchall()}


def _buckets(histogram: list[tuple[Any, Any]]) -> list[SizeBucket]:
    out = []
    for low, high in BUCKETS:
        count = sum(int(c) for n, c in histogram if n >= low and (high is None or n <= high))
        if count:
            out.append(SizeBucket(min_ids=low, max_ids=high, profiles=count))
    return out


def _clusters(
    con: duckdb.DuckDBPyConnection,
    values: str,
    keys: dict[int, str],
    top_rows: list[tuple[Any, Any]],
) -> list[ClusterSummary]:
    if not top_rows:
        return []
    ids = ", ".join(lit(str(r[0])) for r in top_rows)
    members = con.execute(
        f"SELECT uid, kt, v, records FROM {values} WHERE uid IN ({ids})"
    ).fetchall()
    by_key: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    found: dict[str, list[ValueCount]] = defaultdict(list)
    for person, code, value, records in members:
        key = keys.get(int(code), str(code))
        by_key[person][key] += 1
        found[person].append(
            ValueCount(key=key, value=mask_value(key, str(value)), records=int(records or 0))
        )
    out = []
    for person, n in top_rows:
        joining = sorted(found[person], key=lambda v: (-v.records, v.key, v.value))[:TOP_VALUES]
        out.append(
            ClusterSummary(
                unified_id=str(person),
                values=int(n),
                values_by_key=dict(sorted(by_key[person].items())),
                joining_values=joining,
            )
        )
    return out


def _over_merge(
    con: duckdb.DuckDBPyConnection,
    values: str,
    keys: dict[int, str],
    threshold: int,
    sizes: str,
) -> list[OverMergeWarning]:
    rows = con.execute(
        f"""SELECT h.kt, h.v, h.records, h.uid, s.n
            FROM {values} h JOIN {sizes} s ON s.uid = h.uid
            WHERE h.records > {int(threshold)}
            ORDER BY h.records DESC, h.kt, h.v LIMIT {MAX_WARNINGS}"""
    ).fetchall()
    out = []
    for code, raw, records, person, n in rows:
        key = keys.get(int(code), str(code))
        value = mask_value(key, str(raw))
        out.append(
            OverMergeWarning(
                key=key,
                value=value,
                records=int(records),
                unified_id=str(person),
                profile_values=int(n),
                message=(
                    f"{key} {value} is carried by {records} records (over {threshold}): it "
                    f"joins them into profile {person} ({n} values); if it is not a real "
                    f"identifier, add it to the key's invalid_texts"
                ),
            )
        )
    return out


# -- the `{id}_cluster_report` table -------------------------------------------------------

REPORT_COLUMNS = (
    ("time", "BIGINT"),
    ("kind", "VARCHAR"),  # ids_per_profile | cluster | cluster_value | over_merge | split
    ("rank", "BIGINT"),
    ("unified_id", "VARCHAR"),
    ("key_name", "VARCHAR"),
    ("value", "VARCHAR"),
    ("records", "BIGINT"),
    ("cluster_values", "BIGINT"),
    ("detail", "VARCHAR"),
)


def report_rows(report: ClusterReport, run_time: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for b in report.ids_per_profile:
        label = f"{b.min_ids}+" if b.max_ids is None else f"{b.min_ids}-{b.max_ids}"
        rows.append(
            (run_time, "ids_per_profile", b.min_ids, None, None, None, b.profiles, b.max_ids, label)
        )
    for rank, c in enumerate(report.largest_clusters, start=1):
        detail = ",".join(f"{k}:{n}" for k, n in c.values_by_key.items())
        rows.append((run_time, "cluster", rank, c.unified_id, None, None, None, c.values, detail))
        for v in c.joining_values:
            rows.append(
                (
                    run_time,
                    "cluster_value",
                    rank,
                    c.unified_id,
                    v.key,
                    v.value,
                    v.records,
                    c.values,
                    None,
                )
            )
    for rank, w in enumerate(report.over_merge_warnings, start=1):
        rows.append(
            (
                run_time,
                "over_merge",
                rank,
                w.unified_id,
                w.key,
                w.value,
                w.records,
                w.profile_values,
                w.message,
            )
        )
    for rank, s in enumerate(report.split_clusters, start=1):
        detail = f"left as {len(s.unified_ids)} profiles: merge_iterations reached"
        for person in s.unified_ids:
            rows.append((run_time, "split", rank, person, None, None, None, s.values, detail))
    return rows


def read_split_clusters(
    con: duckdb.DuckDBPyConnection, database: str, id_name: str
) -> list[SplitCluster]:
    rows = con.execute(
        f"SELECT rank, cluster_values, unified_id FROM {table(database, f'{id_name}_cluster_report')}"
        " WHERE kind = 'split' ORDER BY rank, unified_id"
    ).fetchall()
    grouped: dict[int, SplitCluster] = {}
    for rank, values, person in rows:
        grouped.setdefault(int(rank), SplitCluster(values=int(values), unified_ids=[]))
        grouped[int(rank)].unified_ids.append(str(person))
    return list(grouped.values())
