"""An incremental run that continues profile by profile (delta.py) rewrites only the rows of
the profiles its records touch, and leaves every table as the whole-graph incremental path
(outputs.write_outputs, which replaces the tables) and a full rebuild leave them.

Two updates, each on its own small warehouse: a record joining two profiles (a merge), and
a record adding a new value to one profile (no merge).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from cdp_mcp.backends.local.unification import engine
from tests.test_incremental_equivalence import (
    COMPARED,
    DB,
    T0,
    T1,
    last_run,
    load,
    lookup_ids,
    rows,
    run,
    run_report,
    state,
)

# Three profiles: (a@x, 5551), (b@x, 5552), (c@x).
FIRST = f"""
    SELECT * FROM (VALUES ('a@x.com', '5551', {T0}), ('a@x.com', NULL, {T0}),
                          ('b@x.com', '5552', {T0}), (NULL, '5552', {T0}),
                          ('c@x.com', NULL, {T0})) t(email, phone, time)"""
MERGE = f"SELECT 'a@x.com' AS email, '5552' AS phone, {T1} AS time"  # joins a's and b's
ADD = f"SELECT 'c@x.com' AS email, '5553' AS phone, {T1} AS time"  # a new value for c


def values(con: duckdb.DuckDBPyConnection, where: str) -> set[str]:
    got = con.execute(f"SELECT id FROM {DB}.unified_id_lookup WHERE {where}").fetchall()
    return {str(r[0]) for r in got}


def profiles(con: duckdb.DuckDBPyConnection, column: str) -> set[frozenset[str]]:
    by_id: dict[str, set[str]] = {}
    for (_, v), uid in lookup_ids(con, column).items():
        by_id.setdefault(uid, set()).add(v)
    return {frozenset(s) for s in by_id.values()}


def incremental(con: duckdb.DuckDBPyConnection, method: str, update: str) -> Any:
    load(con, FIRST)
    run(con, method, True, at=1000)
    load(con, FIRST, update)
    return run(con, method, False, at=2000)


@pytest.mark.parametrize("method", ["persistent_id", "canonical_id"])
@pytest.mark.parametrize(
    ("update", "rewritten", "after"),
    [
        (
            MERGE,
            {"a@x.com", "5551", "b@x.com", "5552"},
            {frozenset({"a@x.com", "5551", "b@x.com", "5552"}), frozenset({"c@x.com"})},
        ),
        (
            ADD,
            {"c@x.com", "5553"},
            {
                frozenset({"a@x.com", "5551"}),
                frozenset({"b@x.com", "5552"}),
                frozenset({"c@x.com", "5553"}),
            },
        ),
    ],
    ids=["merge", "add-value"],
)
def test_a_delta_run_writes_the_changed_profiles_as_a_whole_rewrite_would(
    method: str,
    update: str,
    rewritten: set[str],
    after: set[frozenset[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inc = duckdb.connect()
    summary = incremental(inc, method, update)
    assert summary.merged is not None, "the run did not continue profile by profile"
    assert bool(summary.merged) == (update is MERGE)
    assert profiles(inc, method) == after
    # Only the touched profiles' rows were written again; the others kept their rows.
    assert values(inc, "time = 2000") == rewritten
    assert values(inc, "time = 1000") == {v for p in after for v in p} - rewritten

    full = duckdb.connect()
    load(full, FIRST, update)
    run(full, method, True, at=2000)
    monkeypatch.setattr(engine, "delta_ready", lambda *a: False)
    whole = duckdb.connect()
    assert incremental(whole, method, update).merged is None  # write_outputs replaced them
    for name in COMPARED:
        assert rows(inc, f"unified_id_{name}") == rows(full, f"unified_id_{name}"), name
        kept = {"time"}  # when each value was last processed, too
        assert rows(inc, f"unified_id_{name}", kept) == rows(whole, f"unified_id_{name}", kept)
    assert state(inc, method) == state(full, method) == state(whole, method)
    for name in ("result_key_stats", "source_key_stats", "cluster_report"):
        assert last_run(inc, f"unified_id_{name}") == last_run(full, f"unified_id_{name}"), name
        assert last_run(inc, f"unified_id_{name}") == last_run(whole, f"unified_id_{name}"), name
    assert summary.report == run_report(full)
