"""A full run enriches its table from its own arrays (engine.run_id, enrich.enrich_records):
the table equals what the SQL enrichment (enrich_table) writes over the same lookup, in the
cases where a record's values end in different profiles."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from cdp_mcp.backends.local.unification import parse_request
from cdp_mcp.backends.local.unification.enrich import enrich_table
from tests.test_unification_engine import DB, body, con, load, run, uid

__all__ = ["con"]  # the fixture, shared with test_unification_engine


def rows(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return sorted(
        con.execute(f"SELECT * FROM {DB}.enriched_unif_input").fetchall(),
        key=lambda r: tuple("" if v is None else str(v) for v in r),
    )


def enriched_both_ways(
    con: duckdb.DuckDBPyConnection, doc: dict[str, Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, int]]:
    """(rows the run wrote, rows the SQL enrichment writes over the same tables, the tables
    the run enriched itself)."""
    summary = run(con, doc)
    written = rows(con)
    spec = parse_request(doc).spec
    (table,) = spec.tables
    enrich_table(con, spec, table, {"unified_id": "full"}, {})
    return written, rows(con), summary.enriched


RECORDS = [
    # a chain a - 1 - b - 2 - c - 3 - d: one merge iteration leaves it split
    ("a@x.com", "1", 10),
    ("b@x.com", "1", 11),
    ("b@x.com", "2", 12),
    ("c@x.com", "2", 13),
    ("c@x.com", "3", 14),
    ("d@x.com", "3", 15),
    ("test@test.com", "4", 16),  # junk email: the phone decides
    ("e@x.com", "", 17),  # invalid phone
    (None, None, 18),  # no valid value: NULL id
    ("test@test.com", "0000000000", 19),  # nothing valid either
]


@pytest.mark.parametrize("method", ["canonical_id", "persistent_id"])
@pytest.mark.parametrize("iterations", [1, 15])
def test_the_run_enriches_as_the_sql_enrichment_does(
    con: duckdb.DuckDBPyConnection, iterations: int, method: str
) -> None:
    load(con, RECORDS)
    doc = body(method, iterations=iterations, full_refresh=True, run_enrichments=True)
    written, by_sql, enriched = enriched_both_ways(con, doc)
    assert enriched == {"unif_input": len(RECORDS)}  # the run wrote it, not enrich_table
    assert written == by_sql
    by_time = {r[2]: r[3] for r in written}
    assert by_time[18] is None and by_time[19] is None
    assert by_time[16] == uid("phone", "4") and by_time[17] == uid("email", "e@x.com")
    if iterations == 15:  # one profile led by the first-seen (and smallest) email
        assert {by_time[t] for t in range(10, 16)} == {uid("email", "a@x.com")}
    else:  # left split: the chain's records do not all share an id
        assert len({by_time[t] for t in range(10, 16)}) > 1


def test_two_columns_of_one_key_enrich_by_the_first_column(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Left split by merge_iterations, a record's two emails can end in different profiles:
    its id is its first email column's, not the smaller value's (the run leaves it to SQL)."""
    chain = [(f"e{i + 1}@x.com", f"e{i}@x.com", 10 + i) for i in range(9)]
    load(con, chain, ("email", "email2", "time"))
    doc = body(
        merge_by=("email",),
        keys=[{"name": "email", "valid_regexp": ".+@.+", "invalid_texts": [""]}],
        columns=(("email", "email"), ("email2", "email")),
        iterations=1,
        full_refresh=True,
        run_enrichments=True,
    )
    written, by_sql, enriched = enriched_both_ways(con, doc)
    assert enriched == {}
    assert written == by_sql
    lookup = dict(con.execute(f"SELECT id, canonical_id FROM {DB}.unified_id_lookup").fetchall())
    first, second = chain[-1][0], chain[-1][1]
    assert lookup[first] != lookup[second]  # the case that tells the two apart
    assert {r[2]: r[3] for r in written}[chain[-1][2]] == lookup[first]


def test_an_incremental_run_leaves_the_enrichment_to_sql(con: duckdb.DuckDBPyConnection) -> None:
    load(con, RECORDS[:3])
    run(con, body(run_enrichments=True))
    load(con, RECORDS[3:6])
    summary = run(con, body(run_enrichments=True))
    assert summary.record.mode == "incremental" and summary.enriched == {}
    assert {r[3] for r in rows(con) if r[2] in range(10, 16)} == {uid("email", "a@x.com")}


def test_rows_deleted_before_the_run_keep_their_own_ids(con: duckdb.DuckDBPyConnection) -> None:
    """Rowids with gaps are not the rows' positions, and a checkpoint may renumber them
    during the run: such a table is left to the SQL enrichment."""
    load(con, RECORDS)
    con.execute("DELETE FROM stg.unif_input WHERE time IN (10, 13)")
    doc = body(full_refresh=True, run_enrichments=True)
    written, by_sql, enriched = enriched_both_ways(con, doc)
    assert enriched == {}
    assert written == by_sql
    assert {r[2]: r[3] for r in written}[17] == uid("email", "e@x.com")
