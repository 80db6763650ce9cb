"""Names and columns of the tables TD's ID unification writes (no heavy imports: the
generator, validation and the phase contract read these too).

From TD's algorithm as aps_claude_tools ports it (plugins/cdp-hybrid-idu/scripts/
{snowflake,databricks}/yaml_unification_to_*.py, the `+canonicalize` step), TD's docs
"ID Unification Output" and TD's own projects that read the tables (treasure-data/
se-starter-pack golden/queries/all_profile_identifiers.sql, treasure-data/poc_workflows
idu_dashboard queries); docs/internals.md lists the evidence and what is uncertain.
"""

from __future__ import annotations

ID_COLUMNS = ("canonical_id", "persistent_id")  # the lookup's id column, named by the method
ENRICHED_PREFIX = "enriched_"


def lookup_columns(method: str) -> list[str]:
    """`{id}_lookup`'s columns (besides `time`) for a canonical_id / persistent_id."""
    return [
        method,
        "id",
        "id_key_type",
        f"{method}_first_seen_at",
        f"{method}_last_seen_at",
        "id_first_seen_at",
        "id_last_seen_at",
        "id_source_table_ids",
        "id_last_processed_at",
    ]


GRAPH_COLUMNS = [
    "follower_id",
    "follower_ns",
    "leader_id",
    "leader_ns",
    "follower_first_seen_at",
    "follower_last_seen_at",
    "follower_source_table_ids",
    "follower_last_processed_at",
]
KEYS_COLUMNS = ["key_type", "key_name"]
TABLES_COLUMNS = ["table_id", "table_name"]
RESULT_STATS_FIXED = ["from_table", "total_distinct"]  # then distinct_with_{k}, histogram_{k}
SOURCE_STATS_FIXED = ["from_table", "total_distinct"]  # then distinct_{k}


def result_stats_columns(keys: list[str]) -> list[str]:
    return [
        *RESULT_STATS_FIXED,
        *(f"distinct_with_{k}" for k in keys),
        *(f"histogram_{k}" for k in keys),
        "time",
    ]


def source_stats_columns(keys: list[str]) -> list[str]:
    return [*SOURCE_STATS_FIXED, *(f"distinct_{k}" for k in keys), "time"]


# Tables the unification writes per id; a master table must not take one of these names.
ID_TABLE_SUFFIXES = (
    "lookup",
    "graph",
    "keys",
    "tables",
    "result_key_stats",
    "source_key_stats",
)
