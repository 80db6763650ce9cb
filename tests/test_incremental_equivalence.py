"""An incremental run ends where a full rebuild over the same data does, touching only what
changed.

Two levels:
- the engine (fast): records in DuckDB, a full run, new records that add people, add values
  to people and merge people, then an incremental run; against a full run over all the
  records in another database, and against the engine's whole-graph incremental path.
  The two databases hold the same records with the same `time`s, so every table must be
  equal (order-insensitive), persistent ids included, except the columns saying when a row
  was written (`time`) or last processed (`*_last_processed_at`: an incremental run keeps
  it for values it did not touch, as TD's name says).
- the pipeline (slow): `cdp-mcp run` over the sample, rows appended to every source, `cdp-mcp
  run --new-run`; against `cdp-mcp run` over the appended files in a fresh workspace. There
  every `time` is a load time and differs between the workspaces, and a persistent id's
  leader is the earliest-seen value, so the ids themselves may legitimately differ (the
  fresh workspace saw all values at once). What is compared there is what must not differ:
  the staged rows (without `time`), which values form one profile (lookup and graph), and
  the enriched rows with each id replaced by its profile's smallest value; and persistent
  ids: every profile of the first run keeps its id, unless the new rows merged it with
  another, and then the merged profile has one of their ids.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cdp_mcp.backends.local.unification import engine, parse_request
from cdp_mcp.backends.local.unification.engine import RunSummary, unify
from cdp_mcp.backends.local.unification.report import ClusterReport, compute_report
from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, append_rows, write_sample, write_sample_config

DB = "cdp_unification_eq"
STG = "eq_stg"
T0, T1 = 1_700_000_000, 1_700_100_000
PEOPLE = 600
WRITTEN_AT = {"time", "id_last_processed_at", "follower_last_processed_at"}


def body(method: str, full_refresh: bool) -> dict[str, Any]:
    return {
        f"run_{method}s": True,
        "run_enrichments": True,
        "full_refresh": full_refresh,
        "unification": {
            "name": "eq",
            "keys": [
                {"name": "email", "valid_regexp": ".+@.+", "invalid_texts": ["", "test@test.com"]},
                {"name": "phone", "invalid_texts": [""]},
            ],
            "tables": [
                {
                    "database": STG,
                    "table": "unif_input",
                    "incremental_columns": ["time"],
                    "key_columns": [
                        {"column": "email", "key": "email"},
                        {"column": "phone", "key": "phone"},
                    ],
                }
            ],
            f"{method}s": [
                {
                    "name": "unified_id",
                    "merge_by_keys": ["email", "phone"],
                    "merge_iterations": 15,
                    "incremental_merge_iterations": 3,
                }
            ],
        },
    }


FIRST = f"""
    SELECT CASE WHEN i % 10 < 8 THEN 'u' || (i % {PEOPLE}) || '@ex.com' END AS email,
           CASE WHEN i % 10 >= 5 THEN '555' || ((i * 7) % {PEOPLE * 2}) END AS phone,
           {T0} AS time
    FROM range(2000) t(i)"""
# New people, new values of existing people, records joining two existing people, junk.
NEW = f"""
    SELECT CASE i % 4 WHEN 0 THEN 'new' || i || '@ex.com'
                      WHEN 1 THEN 'u' || (hash(i) % {PEOPLE}) || '@ex.com'
                      WHEN 2 THEN 'u' || (hash(i * 3) % {PEOPLE}) || '@ex.com'
                      ELSE 'test@test.com' END AS email,
           CASE i % 4 WHEN 0 THEN '777' || i
                      WHEN 1 THEN '888' || i
                      WHEN 2 THEN '555' || ((hash(i * 5) % {PEOPLE}) * 7 % {PEOPLE * 2})
                      ELSE NULL END AS phone,
           {T1} AS time
    FROM range(120) t(i)"""


def frozen(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row that can be counted (lists, as TD's id arrays, become tuples)."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


def load(con: duckdb.DuckDBPyConnection, *parts: str) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {STG}")
    union = " UNION ALL ".join(f"SELECT * FROM ({p})" for p in parts)
    con.execute(f"CREATE OR REPLACE TABLE {STG}.unif_input AS {union}")


def rows(con: duckdb.DuckDBPyConnection, name: str, drop: set[str] = WRITTEN_AT) -> Counter[Any]:
    cols = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ?"
            " AND table_name = ? ORDER BY ordinal_position",
            [DB, name],
        ).fetchall()
        if r[0] not in drop
    ]
    listed = ", ".join(f'"{c}"' for c in cols)
    return Counter(map(frozen, con.execute(f'SELECT {listed} FROM {DB}."{name}"').fetchall()))


def last_run(con: duckdb.DuckDBPyConnection, name: str) -> Counter[Any]:
    """The rows the last run appended to a stats table, without `time`."""
    return rows_where(con, name, f'time = (SELECT max(time) FROM {DB}."{name}")')


def rows_where(con: duckdb.DuckDBPyConnection, name: str, where: str) -> Counter[Any]:
    got = con.execute(f'SELECT * EXCLUDE (time) FROM {DB}."{name}" WHERE {where}').fetchall()
    return Counter(map(frozen, got))


def lookup_ids(con: duckdb.DuckDBPyConnection, column: str) -> dict[tuple[int, str], str]:
    got = con.execute(f'SELECT id_key_type, id, "{column}" FROM {DB}.unified_id_lookup')
    return {(int(k), str(v)): str(u) for k, v, u in got.fetchall()}


COMPARED = ("lookup", "graph", "keys", "tables")


def state(con: duckdb.DuckDBPyConnection, method: str) -> Counter[Any]:
    """The engine's state as the next run reads it: the records it carries over per value
    (a row the run did not rewrite counts them against its own, older watermark), the
    leader's value, and for a persistent id the rank of the value's node order (the order
    later runs keep; a canonical id orders by value, its node numbers are only names)."""
    mark = f"(SELECT watermarks FROM {DB}.unified_id_runs ORDER BY rowid DESC LIMIT 1)"
    rank = "rank() OVER (ORDER BY s.node_order)" if method == "persistent_id" else "0"
    got = con.execute(
        f"""SELECT s.kt, s.id, s.records, {rank}, l.kt, l.id, s.tabs,
                   CASE WHEN s.mark = {mark} THEN s.settled ELSE s.records END
            FROM {DB}.unified_id_local_state s
            JOIN {DB}.unified_id_local_state l ON l.node_order = s.leader_order"""
    )
    return Counter(map(frozen, got.fetchall()))


def run(con: duckdb.DuckDBPyConnection, method: str, full: bool, at: int) -> RunSummary:
    (summary,) = unify(con, parse_request(body(method, full)), run_time=at)
    return summary


@pytest.mark.slow  # three databases, five runs
@pytest.mark.parametrize(
    ("method", "column"), [("persistent_id", "persistent_id"), ("canonical_id", "canonical_id")]
)
def test_an_incremental_run_writes_what_a_full_rebuild_does(
    method: str, column: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inc, full, whole = (duckdb.connect() for _ in range(3))
    load(inc, FIRST)
    first = run(inc, method, True, at=1000)
    before = lookup_ids(inc, column)
    load(inc, FIRST, NEW)
    second = run(inc, method, False, at=2000)
    assert second.record.mode == "incremental"
    assert second.merged is not None, "the run did not continue profile by profile"
    assert second.record.records_read == 120  # the first load was not read again

    load(full, FIRST, NEW)
    run(full, method, True, at=2000)
    for name in COMPARED:
        assert rows(inc, f"unified_id_{name}") == rows(full, f"unified_id_{name}"), name
    assert state(inc, method) == state(full, method)
    assert rows(inc, "enriched_unif_input") == rows(full, "enriched_unif_input")
    for name in ("result_key_stats", "source_key_stats", "cluster_report"):
        assert last_run(inc, f"unified_id_{name}") == last_run(full, f"unified_id_{name}"), name
    assert second.report == run_report(full)

    # The whole-graph incremental path (the one runs fall back to) ends in the same place,
    # down to when each value was last processed.
    monkeypatch.setattr(engine, "delta_ready", lambda *a: False)
    load(whole, FIRST)
    run(whole, method, True, at=1000)
    load(whole, FIRST, NEW)
    assert run(whole, method, False, at=2000).merged is None
    for name in COMPARED:
        kept = {"time"}
        assert rows(inc, f"unified_id_{name}", kept) == rows(whole, f"unified_id_{name}", kept)
    assert state(inc, method) == state(whole, method)
    # (Its enrichment gives new ids to the new rows only, as TD's docs describe, so merged
    # profiles' older rows keep their ids there until a full refresh.)

    # Only the profiles the new records touched were written again.
    rewritten = rows_where(inc, "unified_id_lookup", "time = 2000")
    assert 0 < sum(rewritten.values()) < len(before) / 2
    after = lookup_ids(inc, column)
    assert second.merged, "the new records merged no profiles: the test data lost its point"
    if method == "persistent_id":
        assert_persistent_ids_kept(before, after)
    assert first.record.profiles > 0


def test_rows_leaving_the_last_load_do_not_make_the_next_run_read_it_again() -> None:
    # Staging keeps an updated row's latest version, so the older version's combination
    # leaves unif_input: fewer rows at the watermark, none new there.
    inc, full = duckdb.connect(), duckdb.connect()
    repeated = f"SELECT * FROM ({FIRST}) LIMIT 50"
    load(inc, FIRST, repeated)
    run(inc, "persistent_id", True, at=1000)
    load(inc, FIRST, NEW)
    second = run(inc, "persistent_id", False, at=2000)
    assert second.record.records_read == 120
    load(full, FIRST, NEW)
    run(full, "persistent_id", True, at=2000)
    assert rows(inc, "unified_id_lookup") == rows(full, "unified_id_lookup")
    # A row arriving with the last load's time is read, with every row at that time.
    load(inc, FIRST, NEW, f"SELECT 'late@ex.com', NULL, {T1}")
    third = run(inc, "persistent_id", False, at=3000)
    assert third.record.records_read == 121
    assert "late@ex.com" in {v for _, v in lookup_ids(inc, "persistent_id")}


def run_report(con: duckdb.DuckDBPyConnection) -> ClusterReport:
    return compute_report(con, DB, "unified_id")


def assert_persistent_ids_kept(
    before: dict[tuple[int, str], str], after: dict[tuple[int, str], str]
) -> None:
    """A profile keeps its id unless it merged; a merged profile has one of the old ids."""
    old_ids_in: dict[str, set[str]] = defaultdict(set)  # new id -> old ids of its values
    for value, old in before.items():
        old_ids_in[after[value]].add(old)
    kept = 0
    for value, old in before.items():
        merged_from = old_ids_in[after[value]]
        if len(merged_from) == 1:
            assert after[value] == old, value
            kept += 1
        else:
            assert after[value] in merged_from, value
    assert kept > len(before) / 2


# -- the pipeline --------------------------------------------------------------------------

WAREHOUSE = Path("acme_cdp/.cdp_local/warehouse.duckdb")
SAMPLE_ROWS = 2000
STAGED = ("shopify_customers", "shopify_orders", "shopify_products")
LOADED_AT = {"time", "load_timestamp"}


def cdp_run(config: Path, *flags: str) -> None:
    script = Path(sys.executable).parent / "cdp-mcp"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "cdp_mcp.cli.main"]
    done = subprocess.run(
        [*cmd, "run", str(config), *flags], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def read(folder: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(folder / WAREHOUSE), read_only=True) as con:
        return con.execute(sql).fetchall()


def table_rows(folder: Path, qualified: str, drop: set[str]) -> Counter[Any]:
    schema, name = qualified.split(".")
    with duckdb.connect(str(folder / WAREHOUSE), read_only=True) as con:
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ?"
                " AND table_name = ? ORDER BY ordinal_position",
                [schema, name],
            ).fetchall()
            if r[0] not in drop
        ]
        listed = ", ".join(f'"{c}"' for c in cols)
        return Counter(map(frozen, con.execute(f"SELECT {listed} FROM {qualified}").fetchall()))


UNIF = "cdp_unification_customer_360"


def profiles(folder: Path) -> tuple[dict[tuple[int, str], str], dict[str, tuple[int, str]]]:
    """Per value its persistent id, and per id the profile's smallest value."""
    ids = {
        (int(k), str(v)): str(u)
        for k, v, u in read(
            folder, f"SELECT id_key_type, id, persistent_id FROM {UNIF}.unified_id_lookup"
        )
    }
    smallest: dict[str, tuple[int, str]] = {}
    for value, u in ids.items():
        smallest[u] = min(smallest.get(u, value), value)
    return ids, smallest


def partition(ids: dict[tuple[int, str], str]) -> set[frozenset[tuple[int, str]]]:
    groups: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for value, u in ids.items():
        groups[u].add(value)
    return {frozenset(g) for g in groups.values()}


def graph_partition(folder: Path) -> set[frozenset[tuple[int, str]]]:
    got = read(
        folder,
        f"SELECT follower_ns, follower_id, leader_ns, leader_id FROM {UNIF}.unified_id_graph",
    )
    groups: dict[tuple[int, str], set[tuple[int, str]]] = defaultdict(set)
    for fk, fv, lk, lv in got:
        groups[(int(lk), str(lv))].add((int(fk), str(fv)))
    assert len(got) == sum(len(g) for g in groups.values())  # one leader per value
    return {frozenset(g) for g in groups.values()}


def components(records: list[tuple[Any, ...]]) -> set[frozenset[tuple[int, str]]]:
    """The profiles records make: values carried by one record are one profile."""
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def root(v: tuple[int, str]) -> tuple[int, str]:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for email, phone in records:
        values = [(k, str(v)) for k, v in ((1, email), (2, phone)) if v is not None]
        for v in values:
            parent.setdefault(v, v)
        for v in values[1:]:
            parent[root(v)] = root(values[0])
    groups: dict[tuple[int, str], set[tuple[int, str]]] = defaultdict(set)
    for v in parent:
        groups[root(v)].add(v)
    return {frozenset(g) for g in groups.values()}


def records(folder: Path) -> list[tuple[Any, ...]]:
    return read(folder, "SELECT email, phone FROM acme_stg.unif_input")


def enriched(folder: Path, name: str) -> dict[tuple[Any, ...], frozenset[tuple[int, str]]]:
    """Per enriched row (without load times and the id) the profile its id names."""
    ids, _ = profiles(folder)
    members: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for value, u in ids.items():
        members[u].add(value)
    with duckdb.connect(str(folder / WAREHOUSE), read_only=True) as con:
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ?"
                " AND table_name = ? ORDER BY ordinal_position",
                [UNIF, name],
            ).fetchall()
            if r[0] not in LOADED_AT
        ]
        got = con.execute(
            f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {UNIF}.{name}"
        )
        table = got.fetchall()
    at = cols.index("unified_id")
    out: dict[tuple[Any, ...], frozenset[tuple[int, str]]] = {}
    for row in table:
        content = frozen(row[:at] + row[at + 1 :])
        person = frozenset() if row[at] is None else frozenset(members[row[at]])
        assert row[at] is None or person, f"{name}: {row[at]} is no profile of the lookup"
        assert out.setdefault(content, person) == person  # equal rows, one profile
    return out


@pytest.mark.slow
def test_the_pipeline_rerun_over_appended_rows_equals_a_fresh_full_run(tmp_path: Path) -> None:
    inc, fresh = tmp_path / "incremental", tmp_path / "fresh"
    write_sample(inc / SAMPLE_FOLDER, rows=SAMPLE_ROWS)
    config = write_sample_config(inc)
    cdp_run(config)
    before, _ = profiles(inc)
    first_records = records(inc)
    first_rows = {
        frozen(r) for r in read(inc, "SELECT email, phone, source_table FROM acme_stg.unif_input")
    }
    for obj, n in (("customers", 60), ("orders", 60), ("products", 5)):
        append_rows(inc / SAMPLE_FOLDER, obj, n)
    cdp_run(config, "--new-run")
    runs = read(inc, f"SELECT mode, records_read, time FROM {UNIF}.unified_id_runs ORDER BY rowid")
    assert [r[0] for r in runs] == ["full", "incremental"]
    assert runs[1][1] < runs[0][1] / 10  # the new records, not the first load again
    written = read(inc, f"SELECT time = {runs[1][2]} FROM {UNIF}.unified_id_lookup")
    assert 0 < sum(bool(w) for (w,) in written) < len(written) / 10  # the changed profiles

    shutil.copytree(inc / SAMPLE_FOLDER, fresh / SAMPLE_FOLDER)
    cdp_run(write_sample_config(fresh))

    for t in (*STAGED, "unif_input"):  # without the load times
        assert table_rows(inc, f"acme_stg.{t}", LOADED_AT) == table_rows(
            fresh, f"acme_stg.{t}", LOADED_AT
        ), t
    # Profiles: the fresh run's are those of today's records. The incremental run continued
    # the first run's graph (TD: "the previous final graph" plus the new records), so a link
    # that only an older version of an updated row made (staging keeps the latest version)
    # still joins its values: its profiles are those of the first run's and today's records.
    after, _ = profiles(inc)
    fresh_ids, _ = profiles(fresh)
    assert partition(fresh_ids) == components(records(fresh))
    assert partition(after) == components(first_records + records(inc))
    assert graph_partition(inc) == partition(after)
    assert graph_partition(fresh) == partition(fresh_ids)
    # Enriched tables: the same rows; each row's id names the profile of its values (a
    # profile the first run's links widened holds the fresh run's profile).
    incremental_profiles = partition(after)
    for t in ("unif_input", *STAGED[:2]):
        name = f"enriched_{t}"
        got, want = enriched(inc, name), enriched(fresh, name)
        if t == "unif_input":
            # The delta enrichment replaces rows from the watermark on and gives merged
            # profiles' rows their new id; a row that left unif_input (an updated row's
            # older combination) stays, as TD's "only the delta records" leaves it.
            assert want.keys() <= got.keys()
            assert set(got.keys()) - set(want.keys()) <= first_rows
        else:  # enrich_runner enriches these from staging (in full, or its delta: test_enrich_delta.py)
            assert got.keys() == want.keys(), name
        for content, person in want.items():
            assert person <= got[content], (name, content)
            if person in incremental_profiles:
                assert got[content] == person, (name, content)
    assert_persistent_ids_kept(before, after)
    assert len(after) > len(before)
