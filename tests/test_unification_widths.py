"""The engine's data paths for large runs: int32 ids (and int64 beyond them), and the local
state written in the lookup's row order however the lookup's rows came out."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pytest

from cdp_mcp.backends.local.unification import parse_request, td_loop
from cdp_mcp.backends.local.unification.engine import unify
from cdp_mcp.backends.local.unification.td_loop import id_dtype, record_rows, run_loop

DB = "cdp_unification_w"


def test_a_chain_of_70000_values_converges_on_int32_ids() -> None:
    """Row keys (follower * m + leader) overflow int32 beyond ~46,000 active values: they
    must be computed in int64 while the ids stay int32."""
    n = 70_000
    rid = np.repeat(np.arange(n - 1), 2)  # record i links values i and i + 1
    node = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1).ravel()
    follower, leader = record_rows(rid.astype(np.int32), node.astype(np.int32), n - 1)
    got = run_loop(n, follower, leader, 30)
    assert got.leader.dtype == np.int32
    assert got.iterations == int(np.ceil(np.log2(n - 1)))
    assert not len(got.split_components)
    assert np.array_equal(got.leader, np.zeros(n, dtype=np.int32))


def _request() -> dict[str, Any]:
    keys = [{"name": "email", "invalid_texts": [""]}, {"name": "phone", "invalid_texts": [""]}]
    return {
        "run_canonical_ids": True,
        "full_refresh": False,
        "unification": {
            "name": "w",
            "keys": keys,
            "tables": [
                {
                    "database": "stg",
                    "table": t,
                    "incremental_columns": ["time"],
                    "key_columns": [{"column": c, "key": c} for c in ("email", "phone")],
                }
                for t in ("a", "b")
            ],
            "canonical_ids": [
                {
                    "name": "unified_id",
                    "merge_by_keys": ["email", "phone"],
                    "merge_iterations": 2,  # the 12-value chain is left split
                    "incremental_merge_iterations": 2,
                }
            ],
        },
    }


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    rels = {
        "lookup+state": f"{DB}.unified_id_lookup POSITIONAL JOIN {DB}.unified_id_local_state",
        "graph": f"{DB}.unified_id_graph",
        "result_key_stats": f"{DB}.unified_id_result_key_stats",
        "source_key_stats": f"{DB}.unified_id_source_key_stats",
        "cluster_report": f"{DB}.unified_id_cluster_report",
    }
    return {
        k: sorted(con.execute(f"SELECT * FROM {r}").fetchall(), key=repr) for k, r in rels.items()
    }


def _run_twice(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    con.execute("CREATE SCHEMA stg")
    for t in ("a", "b"):
        con.execute(f"CREATE TABLE stg.{t} (email VARCHAR, phone VARCHAR, time BIGINT)")
    # A chain of 12 values over two tables, a pair, a single; then new rows join them.
    chain = [(f"e{i}@x", f"p{i}", 100 + i) for i in range(6)]
    chain += [(f"e{i + 1}@x", f"p{i}", 110 + i) for i in range(5)]
    con.executemany("INSERT INTO stg.a VALUES (?, ?, ?)", chain[:6])
    con.executemany("INSERT INTO stg.b VALUES (?, ?, ?)", [*chain[6:], ("z@x", "pz", 120)])
    con.execute("INSERT INTO stg.a VALUES ('solo@x', NULL, 121)")
    first = unify(con, parse_request(_request()), run_time=1000)
    assert first[0].record.split_clusters == 1
    con.execute("INSERT INTO stg.b VALUES ('z@x', 'p0', 130), ('solo@x', '', 131)")
    (second,) = unify(con, parse_request(_request()), run_time=2000)
    assert second.record.mode == "incremental"
    return _tables(con)


@pytest.mark.slow
def test_int64_ids_give_the_same_tables_as_int32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids fall back to int64 when a run has 2^31 values or records or more: forced here,
    every table of a full and an incremental run with a split cluster is the same."""
    narrow = _run_twice(duckdb.connect())
    monkeypatch.setattr(td_loop, "INT32_MAX", 1)
    assert id_dtype(10) is np.int64
    wide = _run_twice(duckdb.connect())
    assert wide == narrow
