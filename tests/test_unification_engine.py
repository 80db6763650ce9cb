"""The unification engine on real DuckDB: hand-built records with known answers."""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cdp_mcp.backends.local.hooks import UnificationCall
from cdp_mcp.backends.local.runtime import LocalRuntime, default_unification_handler
from cdp_mcp.backends.local.unification import (
    UnificationError,
    handle_unification_call,
    parse_request,
)
from cdp_mcp.backends.local.unification.engine import RunSummary, UnificationCancelled, unify
from cdp_mcp.backends.local.unification.metrics import UnificationNames, unification_metrics
from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import unification_output_columns
from cdp_mcp.core.unification_tables import (
    GRAPH_COLUMNS,
    KEYS_COLUMNS,
    TABLES_COLUMNS,
    result_stats_columns,
    source_stats_columns,
)

DB = "cdp_unification_c360"
EMAIL = {"name": "email", "valid_regexp": ".+@.+", "invalid_texts": ["", "test@test.com"]}
PHONE = {"name": "phone", "invalid_texts": ["", "0000000000"]}


def uid(key: str, value: str) -> str:
    """The id the engine derives from a leader: 12 bytes of sha256, URL-safe base64."""
    digest = hashlib.sha256(f"{key}:{value}".encode()).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode()


def body(
    method: str = "canonical_id",
    *,
    merge_by: Sequence[str] = ("email", "phone"),
    iterations: int = 15,
    incremental_iterations: int = 2,
    full_refresh: bool = False,
    keys: Sequence[dict[str, Any]] = (EMAIL, PHONE),
    columns: Sequence[tuple[str, str]] = (("email", "email"), ("phone", "phone")),
    tables: Sequence[str] = ("unif_input",),
    **flags: bool,
) -> dict[str, Any]:
    return {
        f"run_{method}s": True,
        "full_refresh": full_refresh,
        **flags,
        "unification": {
            "name": "c360",
            "keys": copy.deepcopy(list(keys)),
            "tables": [
                {
                    "database": "stg",
                    "table": t,
                    "incremental_columns": ["time"],
                    "key_columns": [{"column": c, "key": k} for c, k in columns],
                }
                for t in tables
            ],
            f"{method}s": [
                {
                    "name": "unified_id",
                    "merge_by_keys": list(merge_by),
                    "merge_iterations": iterations,
                    "incremental_merge_iterations": incremental_iterations,
                }
            ],
        },
    }


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("CREATE SCHEMA stg")
    return c


def load(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[Any, ...]],
    columns: Sequence[str] = ("email", "phone", "time"),
    table: str = "unif_input",
) -> None:
    cols = ", ".join(f"{c} {'BIGINT' if c == 'time' else 'VARCHAR'}" for c in columns)
    con.execute(f"CREATE TABLE IF NOT EXISTS stg.{table} ({cols})")
    con.executemany(
        f"INSERT INTO stg.{table} VALUES ({', '.join('?' for _ in columns)})",
        [list(r) for r in rows],
    )


def run(con: duckdb.DuckDBPyConnection, doc: dict[str, Any], **kw: Any) -> RunSummary:
    (summary,) = unify(con, parse_request(doc), **kw)
    return summary


def id_column(con: duckdb.DuckDBPyConnection, name: str = "unified_id") -> str:
    """The lookup's id column: TD names it by the method, not by the id."""
    cols = {r[0] for r in con.execute(f"DESCRIBE {DB}.{name}_lookup").fetchall()}
    (found,) = cols & {"canonical_id", "persistent_id"}
    return found


def ids(con: duckdb.DuckDBPyConnection, name: str = "unified_id") -> dict[str, str]:
    col = id_column(con, name)
    rows = con.execute(f"SELECT id, {col} FROM {DB}.{name}_lookup").fetchall()
    return dict(rows)


@pytest.mark.slow
def test_records_link_their_valid_values_and_junk_links_nothing(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load(
        con,
        [
            ("ann@x.com", "111", 100),
            ("ann@x.com", None, 101),
            ("not-an-email", "222", 102),  # fails valid_regexp: only its phone counts
            ("test@test.com", "333", 103),  # invalid_texts: joins nobody
            ("test@test.com", "444", 104),
            ("", "0000000000", 105),  # both invalid: no value at all
            (None, None, 106),  # a NULL-only row
        ],
    )
    s = run(con, body())
    got = ids(con)
    assert set(got) == {"ann@x.com", "111", "222", "333", "444"}
    assert got["ann@x.com"] == got["111"] == uid("email", "ann@x.com")
    assert len({got["222"], got["333"], got["444"], got["111"]}) == 4
    assert s.record.profiles == 4 and s.record.records_read == 7
    dupes = con.execute(
        f"SELECT count(*) FROM (SELECT id, id_key_type FROM {DB}.unified_id_lookup"
        " GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall()
    assert dupes == [(0,)]
    keys = con.execute(f"SELECT key_type, key_name FROM {DB}.unified_id_keys ORDER BY 1").fetchall()
    assert keys == [(1, "email"), (2, "phone")]


@pytest.mark.slow
def test_canonical_leader_is_the_smallest_value_of_the_highest_priority_key(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load(
        con,
        [("bob@x.com", "555", 100), ("al@x.com", "555", 101), (None, "444", 102)],
    )
    load(con, [("zed@x.com", "444", 103), ("zed@x.com", "555", 104)])
    run(con, body())
    assert set(ids(con).values()) == {uid("email", "al@x.com")}
    run(con, body(merge_by=("phone", "email"), full_refresh=True))
    assert set(ids(con).values()) == {uid("phone", "444")}


@pytest.mark.slow
def test_two_columns_of_one_key_link_and_tie_on_priority(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load(
        con,
        [("b@x.com", "a@x.com", 100), ("c@x.com", None, 101), ("c@x.com", "d@x.com", 102)],
        columns=("email", "email_2", "time"),
    )
    run(
        con,
        body(
            keys=(EMAIL,), merge_by=("email",), columns=(("email", "email"), ("email_2", "email"))
        ),
    )
    got = ids(con)
    assert got["a@x.com"] == got["b@x.com"] == uid("email", "a@x.com")
    assert got["c@x.com"] == got["d@x.com"] == uid("email", "c@x.com")


@pytest.mark.slow
def test_persistent_leader_is_the_earliest_seen_value(con: duckdb.DuckDBPyConnection) -> None:
    load(con, [("zed@x.com", "111", 100), ("al@x.com", "111", 200)])
    run(con, body("persistent_id"))
    assert set(ids(con).values()) == {uid("email", "zed@x.com")}
    run(con, body("canonical_id", full_refresh=True))
    assert set(ids(con).values()) == {uid("email", "al@x.com")}


@pytest.mark.slow
def test_persistent_ids_survive_new_records_and_a_merge_keeps_the_older_id(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load(con, [("zed@x.com", "111", 100), ("bob@x.com", "222", 200)])
    first = run(con, body("persistent_id"))
    zed, bob = uid("email", "zed@x.com"), uid("email", "bob@x.com")
    assert ids(con) == {"zed@x.com": zed, "111": zed, "bob@x.com": bob, "222": bob}

    # New records: a new person, a new value for zed, and, at the watermark (200, read
    # again), a smaller value seen as early as bob: bob's person keeps bob's id.
    load(con, [("cy@x.com", "333", 300), ("zed@x.com", "444", 300), ("al@x.com", "222", 200)])
    second = run(con, body("persistent_id"))
    got = ids(con)
    assert got["zed@x.com"] == got["444"] == zed
    assert got["bob@x.com"] == got["al@x.com"] == bob
    assert got["cy@x.com"] == uid("email", "cy@x.com")
    assert (first.record.mode, second.record.mode) == ("full", "incremental")
    assert second.record.records_read == 4  # 3 new rows and bob's row at the watermark

    # bob's person (first seen at 200) merges into zed's (100): zed's id survives.
    load(con, [("bob@x.com", "111", 400)])
    run(con, body("persistent_id"))
    got = ids(con)
    assert {got[v] for v in ("zed@x.com", "bob@x.com", "al@x.com", "111", "222")} == {zed}
    assert got["cy@x.com"] == uid("email", "cy@x.com")
    # A full refresh re-derives leaders from first-seen times alone.
    run(con, body("persistent_id", full_refresh=True))
    assert ids(con)["al@x.com"] == zed


@pytest.mark.slow
def test_canonical_ids_change_when_a_smaller_value_joins(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load(con, [("zed@x.com", "111", 100)])
    run(con, body())
    assert set(ids(con).values()) == {uid("email", "zed@x.com")}
    load(con, [("amy@x.com", "111", 200)])
    s = run(con, body())
    assert s.record.mode == "incremental"
    assert set(ids(con).values()) == {uid("email", "amy@x.com")}


@pytest.mark.slow
def test_incremental_runs_end_where_a_full_refresh_does(con: duckdb.DuckDBPyConnection) -> None:
    batches = [
        [("a@x.com", "1", 10), ("b@x.com", "2", 10), ("a@x.com", "3", 11)],
        [("c@x.com", "2", 20), ("d@x.com", None, 20), ("a@x.com", "1", 21)],
        [("d@x.com", "3", 30), ("e@x.com", "9", 30), (None, "9", 31)],
    ]
    for batch in batches:
        load(con, batch)
        run(con, body("persistent_id"))
    graph_sql = (
        f"SELECT follower_id, leader_id, follower_first_seen_at, follower_last_seen_at,"
        f" follower_source_table_ids FROM {DB}.unified_id_graph ORDER BY 1"
    )
    records_sql = (
        f"SELECT l.id, s.records FROM {DB}.unified_id_lookup l"
        f" JOIN {DB}.unified_id_local_state s ON s.kt = l.id_key_type AND s.id = l.id ORDER BY 1"
    )
    incremental = con.execute(graph_sql).fetchall(), con.execute(records_sql).fetchall()
    lookup = sorted(ids(con).items())
    run(con, body("persistent_id", full_refresh=True))
    full = con.execute(graph_sql).fetchall(), con.execute(records_sql).fetchall()
    assert incremental == full
    assert sorted(ids(con).items()) == lookup
    modes = con.execute(f"SELECT mode FROM {DB}.unified_id_runs ORDER BY rowid").fetchall()
    assert [m for (m,) in modes] == ["full", "incremental", "incremental", "full"]


@pytest.mark.slow
def test_a_changed_unify_yml_runs_a_full_refresh(con: duckdb.DuckDBPyConnection) -> None:
    load(con, [("a@x.com", "1", 10), ("a@x.com", "2", 11)])
    run(con, body())
    s = run(con, body(keys=({**EMAIL, "invalid_texts": ["a@x.com"]}, PHONE)))
    assert s.record.mode == "full"
    assert "a@x.com" not in ids(con)


def chain(con: duckdb.DuckDBPyConnection, n: int) -> None:
    """c0 - c1 - ... - c(n-1): each record links two neighbours (one key, two columns)."""
    load(
        con,
        [(f"c{i:03d}", f"c{i + 1:03d}", 100) for i in range(n - 1)],
        columns=("cid", "cid_2", "time"),
    )


CID_BODY: dict[str, Any] = {
    "keys": ({"name": "cid", "invalid_texts": [""]},),
    "merge_by": ("cid",),
    "columns": (("cid", "cid"), ("cid_2", "cid")),
}


@pytest.mark.slow
def test_a_chain_longer_than_merge_iterations_is_left_split_and_reported(
    con: duckdb.DuckDBPyConnection,
) -> None:
    chain(con, 10)  # 9 hops: TD's loop needs ceil(log2(9)) = 4 iterations
    s = run(con, body(iterations=3, **CID_BODY))
    assert s.record.iterations_used == 3 and s.record.split_clusters == 1
    (split,) = s.report.split_clusters
    assert split.values == 10 and len(split.unified_ids) == s.record.profiles > 1
    assert uid("cid", "c000") in split.unified_ids
    lookup_rows, graph_rows = (
        con.execute(f"SELECT count(*) FROM {DB}.unified_id_{t}").fetchall()[0][0]
        for t in ("lookup", "graph")
    )
    assert lookup_rows == 10 and graph_rows > 10  # a split value keeps a row per leader
    metrics = unification_metrics(con, UnificationNames(database=DB))
    assert metrics.split_clusters == s.report.split_clusters
    assert any("merge_iterations" in w for w in metrics.warnings)

    # An incremental run continues the loop from the saved graph.
    s = run(con, body(iterations=3, incremental_iterations=2, **CID_BODY))
    assert s.record.mode == "incremental" and s.record.split_clusters == 0
    assert set(ids(con).values()) == {uid("cid", "c000")}


@pytest.mark.slow
def test_enough_merge_iterations_join_a_long_chain(con: duckdb.DuckDBPyConnection) -> None:
    chain(con, 10)
    s = run(con, body(iterations=4, **CID_BODY))
    assert s.record.iterations_used == 4 and s.record.split_clusters == 0
    assert set(ids(con).values()) == {uid("cid", "c000")}


@pytest.mark.slow
def test_a_star_is_one_profile_and_its_hub_an_over_merge_warning(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load(con, [(f"p{i}@x.com", "999", 100 + i) for i in range(30)])
    load(con, [("solo@x.com", "123", 500)])
    s = run(con, body(), over_merge_threshold=20)
    assert s.record.profiles == 2 and s.record.iterations_used <= 2
    (warning,) = s.report.over_merge_warnings
    # values are masked in the report: a phone by its last four digits (none here)
    assert (warning.key, warning.value, warning.records) == ("phone", "***", 30)
    assert warning.unified_id == uid("email", "p0@x.com") and warning.profile_values == 31
    (biggest, _) = s.report.largest_clusters
    assert biggest.values == 31 and biggest.values_by_key == {"email": 30, "phone": 1}
    assert biggest.joining_values[0].value == "***"
    stored = con.execute(
        f"SELECT key_name, value, records FROM {DB}.unified_id_cluster_report"
        " WHERE kind = 'over_merge'"
    ).fetchall()
    assert stored == [("phone", "***", 30)]
    loose = unification_metrics(con, UnificationNames(database=DB, over_merge_threshold=40))
    assert loose.over_merge_warnings == [] and loose.profiles == 2
    assert [(b.min_ids, b.profiles) for b in loose.ids_per_profile] == [(2, 1), (11, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["persistent_id", "canonical_id"])
def test_every_output_table_has_exactly_tds_columns(
    con: duckdb.DuckDBPyConnection, acme_config: Any, method: str
) -> None:
    load(con, [("a@x.com", "1", 10)])
    run(con, body(method))
    cfg = load_config(acme_config).model_copy(deep=True)
    cfg.unification.id_method = method  # type: ignore[assignment]
    for name, cols in unification_output_columns(cfg).items():
        got = [r[0] for r in con.execute(f"DESCRIBE {DB}.{name}").fetchall()]
        assert set(cols) <= set(got), name
    # Exactly TD's columns: the id under TD's fixed name, not under the id's own name.
    described = con.execute(f"DESCRIBE {DB}.unified_id_lookup").fetchall()
    assert [(r[0], r[1]) for r in described] == [
        (method, "VARCHAR"),
        ("id", "VARCHAR"),
        ("id_key_type", "BIGINT"),
        (f"{method}_first_seen_at", "BIGINT"),
        (f"{method}_last_seen_at", "BIGINT"),
        ("id_first_seen_at", "BIGINT"),
        ("id_last_seen_at", "BIGINT"),
        ("id_source_table_ids", "BIGINT[]"),
        ("id_last_processed_at", "BIGINT"),
        ("time", "BIGINT"),
    ]
    for name, cols in (
        ("graph", GRAPH_COLUMNS),
        ("keys", KEYS_COLUMNS),
        ("tables", TABLES_COLUMNS),
        ("result_key_stats", result_stats_columns(["email", "phone"])),
        ("source_key_stats", source_stats_columns(["email", "phone"])),
    ):
        got = [r[0] for r in con.execute(f"DESCRIBE {DB}.unified_id_{name}").fetchall()]
        assert got == (cols if name.endswith("stats") else [*cols, "time"]), name
    stats = con.execute(
        f"SELECT from_table, total_distinct, distinct_with_email, histogram_phone"
        f" FROM {DB}.unified_id_result_key_stats ORDER BY 1"
    ).fetchall()
    assert stats == [("*", 1, 1, "1:1"), ("unif_input", 1, 1, "1:1")]


@pytest.mark.slow
def test_several_source_tables_and_a_view(con: duckdb.DuckDBPyConnection) -> None:
    load(con, [("a@x.com", "1", 10)], table="customers")
    load(con, [("b@x.com", "1", 20), ("c@x.com", None, 21)], table="orders_raw")
    con.execute("CREATE VIEW stg.orders AS SELECT * FROM stg.orders_raw")
    s = run(con, body(tables=("customers", "orders")))
    got = ids(con)
    assert got["a@x.com"] == got["b@x.com"] == got["1"] and got["c@x.com"] != got["1"]
    assert s.record.records_read == 3
    tables = con.execute(
        f"SELECT id, id_source_table_ids FROM {DB}.unified_id_lookup ORDER BY 1"
    ).fetchall()
    assert dict(tables) == {"1": [1, 2], "a@x.com": [1], "b@x.com": [2], "c@x.com": [2]}
    stats = con.execute(
        f"SELECT from_table, total_distinct FROM {DB}.unified_id_result_key_stats ORDER BY 1"
    ).fetchall()
    assert stats == [("*", 2), ("customers", 1), ("orders", 2)]


@pytest.mark.slow
def test_metrics_report_coverage_of_enriched_tables(con: duckdb.DuckDBPyConnection) -> None:
    load(con, [("a@x.com", "1", 10)])
    run(con, body(run_enrichments=False))
    con.execute(
        f"CREATE TABLE {DB}.enriched_customers AS SELECT * FROM (VALUES"
        " ('a@x.com', 'x'), ('b@x.com', NULL), (NULL, NULL), ('c', 'y')) t(email, unified_id)"
    )
    con.execute("CREATE TABLE stg.customers AS SELECT range AS id FROM range(3)")
    con.execute(f"CREATE TABLE {DB}.enriched_customers_tmp AS SELECT 1 AS a")
    m = unification_metrics(con, UnificationNames(database=DB, staging_database="stg"))
    (cov,) = m.coverage
    assert (cov.table, cov.rows, cov.rows_with_id, cov.share, cov.staging_rows) == (
        "enriched_customers",
        4,
        2,
        0.5,
        3,
    )
    assert any("has 4 rows but its staging table has 3" in w for w in m.warnings)
    assert m.last_run is not None and m.last_run.mode == "full" and m.last_run.profiles == 1


def test_metrics_say_when_unification_never_ran(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(UnificationError, match="run the unification phase first"):
        unification_metrics(con, UnificationNames(database=DB))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["unification"]["canonical_ids"][0].update(do_not_merge_key="phone"),
            r"do_not_merge_key: must be the first of merge_by_keys \('email'\)",
        ),
        (
            lambda d: d.update(run_enrichments="yes"),
            "run_enrichments: must be true or false",
        ),
        (
            lambda d: d["unification"]["keys"][0].update(valid_regexp="(["),
            "not a valid regular expression",
        ),
        (
            lambda d: d["unification"]["canonical_ids"][0].update(merge_iterations=50),
            "out of range",
        ),
        (lambda d: d.update(unification="nope"), "mapping with `unification:`"),
        (lambda d: d.update(run_canonical_ids=False), "nothing to run"),
    ],
)
def test_requests_tds_api_would_refuse_are_refused(change: Any, message: str) -> None:
    doc = body()
    change(doc)
    with pytest.raises(UnificationError, match=message):
        parse_request(doc)


def test_missing_tables_and_columns_are_named(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(UnificationError, match=r"stg\.unif_input .*does not exist"):
        run(con, body())
    load(con, [("a@x.com", 10)], columns=("email", "time"))
    with pytest.raises(UnificationError, match="has no column phone"):
        run(con, body())


@pytest.mark.slow
def test_the_local_backend_handler_runs_the_call_and_logs_a_summary(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    load(con, [(f"p{i}@x.com", "999", 100) for i in range(5)])
    lines: list[str] = []

    def call(method: str = "POST", **params: Any) -> UnificationCall:
        return UnificationCall(
            url="https://api-cdp.treasuredata.com/unifications/workflow_call",
            method=method,
            content=body(),
            task_config=params,
            session_time=datetime(2026, 1, 1, tzinfo=UTC),
            cursor=con,
            log=lines.append,
            cancel_requested=lambda: False,
        )

    assert handle_unification_call(call(over_merge_threshold=3)) is None
    assert any("full canonical_id run" in line and "1 profiles" in line for line in lines)
    assert any(line.startswith("over-merge: phone *** is carried by 5 records") for line in lines)
    with pytest.raises(UnificationError, match="POST"):
        handle_unification_call(call("GET"))
    with pytest.raises(UnificationError, match="over_merge_threshold must be"):
        handle_unification_call(call(over_merge_threshold="many"))
    # The local runtime serves TD's unification API with this handler unless told otherwise.
    assert LocalRuntime(tmp_path / "ws").unification_handler is default_unification_handler


def test_a_cancelled_run_stops_and_writes_nothing(con: duckdb.DuckDBPyConnection) -> None:
    load(con, [("a@x.com", "1", 10)])
    with pytest.raises(UnificationCancelled):
        unify(con, parse_request(body()), cancelled=lambda: True)
    assert con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ?", [DB]
    ).fetchall() == [(0,)]


@pytest.mark.slow
def test_no_valid_value_at_all_still_writes_every_table(con: duckdb.DuckDBPyConnection) -> None:
    load(con, [(None, None, 10), ("test@test.com", "", 11)])
    s = run(con, body())
    assert (s.record.values_total, s.record.profiles, s.record.records_read) == (0, 0, 2)
    for name in ("lookup", "graph", "keys", "result_key_stats", "cluster_report", "runs"):
        assert con.execute(f"SELECT count(*) FROM {DB}.unified_id_{name}").fetchall()
    assert unification_metrics(con, UnificationNames(database=DB)).profiles == 0


@pytest.mark.slow
def test_numeric_key_columns_link_by_their_text(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE stg.unif_input (email VARCHAR, customer_id BIGINT, time BIGINT)")
    con.execute(
        "INSERT INTO stg.unif_input VALUES ('a@x.com', 42, 1), ('b@x.com', 42, 2), (NULL, 7, 3)"
    )
    run(
        con,
        body(
            keys=(EMAIL, {"name": "customer_id"}),
            merge_by=("email", "customer_id"),
            columns=(("email", "email"), ("customer_id", "customer_id")),
        ),
    )
    got = ids(con)
    assert got["42"] == got["a@x.com"] == got["b@x.com"] and got["7"] == uid("customer_id", "7")
