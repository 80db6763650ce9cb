"""TD's unification API in full, as TD's own samples use it (treasure-boxes
tool-box/id-unification-samples ex1-ex5, the data of TD's docs' examples): several
canonical_ids over their source_tables, merge_by_canonical_ids, do_not_merge_key, master
tables, enrichment, debug tables and incremental runs, on real DuckDB."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import duckdb
import pytest

from cdp_mcp.backends.local.unification import UnificationError, parse_request
from cdp_mcp.backends.local.unification.engine import RunSummary, unify
from cdp_mcp.core.unification_tables import GRAPH_COLUMNS

DB = "cdp_unification_samples"
SITES = ("site_aaa", "site_xxx", "site_yyy", "site_zzz")
DAYS = [(m, d) for m in range(1, 7) for d in (5, 15, 25)]  # the samples' 18 dates

# (td_client_id, td_global_id) per date, per site: generate_samples_ex1.sql
EX1: dict[str, list[tuple[str | None, str | None]]] = {
    "site_aaa": [
        *[("aaa_001", f"3rd_00{i}") for i in (1, 2, 3, 4)],
        *[(None, None)] * 4,
        ("aaa_002", "3rd_009"),
        ("aaa_002", "3rd_010"),
        (None, None),
        (None, None),
        *[("aaa_003", f"3rd_0{i}") for i in (13, 14, 15, 16)],
        (None, None),
        (None, None),
    ],
    "site_xxx": [
        *[(None, None)] * 3,
        ("xxx_001", "3rd_004"),
        ("xxx_001", "3rd_005"),
        (None, None),
        (None, None),
        ("xxx_002", "3rd_008"),
        ("xxx_002", "3rd_009"),
        (None, None),
        (None, None),
        ("xxx_003", "3rd_012"),
        ("xxx_003", "3rd_013"),
        (None, None),
        (None, None),
        ("xxx_004", "3rd_016"),
        ("xxx_004", "3rd_017"),
        (None, None),
    ],
    "site_yyy": [
        ("yyy_001", "3rd_001"),
        *[(None, None)] * 3,
        ("yyy_002", "3rd_005"),
        ("yyy_002", "3rd_006"),
        *[(None, None)] * 3,
        ("yyy_003", "3rd_010"),
        ("yyy_003", "3rd_011"),
        *[(None, None)] * 3,
        ("yyy_004", "3rd_015"),
        (None, None),
        (None, None),
        ("yyy_005", "3rd_018"),
    ],
    "site_zzz": [
        (None, None),
        ("zzz_001", "3rd_002"),
        *[(None, None)] * 3,
        ("zzz_003", "3rd_006"),
        ("zzz_003", "3rd_007"),
        ("zzz_003", "3rd_008"),
        (None, None),
        (None, None),
        ("zzz_004", "3rd_011"),
        ("zzz_004", "3rd_012"),
        (None, None),
        (None, None),
        ("zzz_005", "3rd_015"),
        (None, None),
        ("zzz_005", "3rd_017"),
        ("zzz_005", "3rd_018"),
    ],
}


def epoch(month: int, day: int) -> int:
    return int(datetime(2023, month, day, tzinfo=UTC).timestamp())


def load_ex1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS samples")
    for site, rows in EX1.items():
        con.execute(
            f"CREATE TABLE samples.{site} (time BIGINT, site VARCHAR, td_client_id VARCHAR,"
            " td_global_id VARCHAR)"
        )
        con.executemany(
            f"INSERT INTO samples.{site} VALUES (?, ?, ?, ?)",
            [
                [epoch(m, d), site.removeprefix("site_") + ".jp", c, g]
                for (m, d), (c, g) in zip(DAYS, rows, strict=True)
            ],
        )


def tables(incremental: bool = False) -> list[dict[str, Any]]:
    out = []
    for site in SITES:
        t: dict[str, Any] = {"database": "samples", "table": site}
        if incremental:
            t["incremental_columns"] = ["time"]
        t["key_columns"] = [
            {"column": "td_client_id", "key": "td_client_id"},
            {"column": "td_global_id", "key": "td_global_id"},
        ]
        out.append(t)
    return out


COOKIE_KEYS = [
    {"name": "td_client_id", "invalid_texts": [""]},
    {"name": "td_global_id", "valid_regexp": "3rd_*", "invalid_texts": [""]},
]


def ex1(**flags: Any) -> dict[str, Any]:
    """test_id_unification_ex1.dig's body with unification_ex1.yml."""
    return {
        "run_canonical_ids": True,
        "run_enrichments": True,
        "run_master_tables": True,
        "full_refresh": True,
        "keep_debug_tables": True,
        **flags,
        "unification": {
            "name": "samples",
            "keys": copy.deepcopy(COOKIE_KEYS),
            "tables": tables(),
            "canonical_ids": [
                {
                    "name": "unified_cookie_id",
                    "merge_by_keys": ["td_client_id", "td_global_id"],
                    "merge_iterations": 5,
                }
            ],
            "master_tables": [
                {
                    "name": "master_table_ex1",
                    "canonical_id": "unified_cookie_id",
                    "attributes": [
                        {
                            "name": "td_client_id",
                            "invalid_texts": [""],
                            "array_elements": 5,
                            "source_columns": [
                                {
                                    "table": site,
                                    "order": "first",
                                    "order_by": "td_client_id",
                                    "priority": i,
                                }
                                for i, site in enumerate(SITES, start=1)
                            ],
                        },
                        {
                            "name": "td_global_id",
                            "valid_regexp": "3rd_*",
                            "invalid_texts": [""],
                            "source_columns": [
                                {"table": site, "order": "last", "order_by": "time", "priority": 1}
                                for site in SITES
                            ],
                        },
                    ],
                }
            ],
        },
    }


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def run(con: duckdb.DuckDBPyConnection, doc: dict[str, Any], **kw: Any) -> list[RunSummary]:
    return unify(con, parse_request(doc), run_time=1_700_000_000, **kw)


def lookup(con: duckdb.DuckDBPyConnection, id_name: str) -> dict[str, str]:
    return dict(con.execute(f"SELECT id, canonical_id FROM {DB}.{id_name}_lookup").fetchall())


def names(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [DB]
    ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_ex1_is_one_person_with_its_master_table_and_enriched_sites(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load_ex1(con)
    (summary,) = run(con, ex1())
    assert summary.record.profiles == 1  # TD's docs: "only one canonical_id is expected"
    (person,) = set(lookup(con, "unified_cookie_id").values())
    master = con.execute(f"SELECT * FROM {DB}.master_table_ex1").fetchall()
    described = [r[0] for r in con.execute(f"DESCRIBE {DB}.master_table_ex1").fetchall()]
    assert described == ["unified_cookie_id", "td_client_id", "td_global_id"]
    # td_client_id: 5 distinct values, priority 1 (site_aaa) first, `first` by value; then
    # site_xxx. td_global_id: the last by time over all four sites (priority 1 each).
    assert master == [(person, ["aaa_001", "aaa_002", "aaa_003", "xxx_001", "xxx_002"], "3rd_018")]
    for site in SITES:
        rows = con.execute(
            f"SELECT td_client_id, unified_cookie_id FROM {DB}.enriched_{site}"
        ).fetchall()
        assert len(rows) == 18  # every row of the source table
        assert {i for c, i in rows if c is not None} == {person}
        assert all(i is None for c, i in rows if c is None)  # no valid key: no id
    graph = [r[0] for r in con.execute(f"DESCRIBE {DB}.unified_cookie_id_graph").fetchall()]
    assert graph == [*GRAPH_COLUMNS, "time"]


@pytest.mark.slow
def test_debug_tables_hold_the_graph_of_every_iteration_and_go_when_not_kept(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load_ex1(con)
    (summary,) = run(con, ex1())
    n = summary.record.iterations_used
    loops = sorted(t for t in names(con) if "_graph_unify_loop_" in t)
    assert loops == sorted(f"unified_cookie_id_graph_unify_loop_{i}" for i in range(n + 1))
    final = f"SELECT follower_id, follower_ns, leader_id, leader_ns FROM {DB}.unified_cookie_id"
    last = con.execute(f"{final}_graph_unify_loop_{n} EXCEPT {final}_graph").fetchall()
    assert last == [] and n >= 2
    # Before the loop every value follows its record's first value: many leaders.
    leaders0 = con.execute(
        f"SELECT count(DISTINCT leader_id) FROM {DB}.unified_cookie_id_graph_unify_loop_0"
    ).fetchall()
    assert leaders0[0][0] > 1
    run(con, ex1(keep_debug_tables=False))
    assert not [t for t in names(con) if "_graph_unify_loop_" in t]


@pytest.mark.slow
def test_flags_off_write_no_enriched_or_master_table(con: duckdb.DuckDBPyConnection) -> None:
    load_ex1(con)
    run(con, ex1(run_enrichments=False, run_master_tables=False, keep_debug_tables=False))
    assert not {t for t in names(con) if t.startswith("enriched_") or t.startswith("master")}
    # Flags left out: TD enriches and builds master tables (its projects rely on it).
    doc = ex1()
    for flag in ("run_enrichments", "run_master_tables", "keep_debug_tables"):
        doc.pop(flag)
    run(con, doc)
    assert {"enriched_site_aaa", "master_table_ex1"} <= names(con)


def ex3(merged: bool) -> dict[str, Any]:
    """unification_ex3.yml: two brand ids over two sites each, and (merged) a unified id
    merging them by canonical id with no keys of its own (TD's docs "Multiple Canonical
    IDs"), its master table taking each brand id as an attribute."""
    doc = ex1()
    u = doc["unification"]
    u["canonical_ids"] = [
        {
            "name": "brand_id_ax",
            "merge_by_keys": ["td_client_id", "td_global_id"],
            "source_tables": ["site_aaa", "site_xxx"],
            "merge_iterations": 5,
        },
        {
            "name": "brand_id_yz",
            "merge_by_keys": ["td_client_id", "td_global_id"],
            "source_tables": ["site_yyy", "site_zzz"],
            "merge_iterations": 5,
        },
    ]
    u.pop("master_tables")
    if merged:
        u["canonical_ids"].append(
            {
                "name": "unified_brand_id",
                "merge_by_keys": [],
                "merge_by_canonical_ids": ["brand_id_ax", "brand_id_yz"],
                "merge_iterations": 5,
            }
        )
        u["master_tables"] = [
            {
                "name": "master_table_ex3",
                "canonical_id": "unified_brand_id",
                "attributes": [
                    {"name": "brand_id_ax", "source_canonical_id": "brand_id_ax"},
                    {"name": "brand_id_yz", "source_canonical_id": "brand_id_yz"},
                    {
                        "name": "td_client_id",
                        "invalid_texts": [""],
                        "source_columns": [
                            {
                                "table": s,
                                "order": "first",
                                "order_by": "td_client_id",
                                "priority": 1,
                            }
                            for s in SITES
                        ],
                    },
                ],
            }
        ]
    return doc


@pytest.mark.slow
def test_ids_over_their_source_tables_are_independent(con: duckdb.DuckDBPyConnection) -> None:
    load_ex1(con)
    ax, yz = run(con, ex3(merged=False))
    ax_ids, yz_ids = lookup(con, "brand_id_ax"), lookup(con, "brand_id_yz")
    assert "yyy_001" not in ax_ids and "aaa_001" not in yz_ids
    assert {v for v in ax_ids if v.startswith(("aaa", "xxx"))} == {
        *(f"aaa_00{i}" for i in (1, 2, 3)),
        *(f"xxx_00{i}" for i in (1, 2, 3, 4)),
    }
    # Within two sites the person is several profiles; all four sites make one (ex1).
    assert ax.record.profiles == 3 and yz.record.profiles > 1
    # Each id enriches only its own tables.
    aaa = [r[0] for r in con.execute(f"DESCRIBE {DB}.enriched_site_aaa").fetchall()]
    yyy = [r[0] for r in con.execute(f"DESCRIBE {DB}.enriched_site_yyy").fetchall()]
    assert aaa[-1] == "brand_id_ax" and "brand_id_yz" not in aaa
    assert yyy[-1] == "brand_id_yz" and "brand_id_ax" not in yyy


@pytest.mark.slow
def test_merge_by_canonical_ids_joins_the_brand_profiles_into_one(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load_ex1(con)
    ax, yz, unified = run(con, ex3(merged=True))
    assert [s.id_name for s in (ax, yz, unified)] == [
        "brand_id_ax",
        "brand_id_yz",
        "unified_brand_id",
    ]
    assert unified.record.profiles == 1  # the same single person as ex1
    got = lookup(con, "unified_brand_id")
    assert set(got) == set(lookup(con, "brand_id_ax")) | set(lookup(con, "brand_id_yz"))
    stats = con.execute(
        f"SELECT from_table, total_distinct, distinct_with_td_client_id"
        f" FROM {DB}.unified_brand_id_result_key_stats ORDER BY 1"
    ).fetchall()
    assert stats[0] == ("*", 1, 1)
    ((person, ax_id, yz_id, client),) = con.execute(
        f"SELECT * FROM {DB}.master_table_ex3"
    ).fetchall()
    assert person == next(iter(got.values()))
    assert ax_id in set(lookup(con, "brand_id_ax").values())
    assert yz_id in set(lookup(con, "brand_id_yz").values())
    assert client == "aaa_001"  # first by value over all four sites
    enriched = [r[0] for r in con.execute(f"DESCRIBE {DB}.enriched_site_zzz").fetchall()]
    assert enriched[-2:] == ["brand_id_yz", "unified_brand_id"]


def ex4(do_not_merge: bool) -> dict[str, Any]:
    """unification_ex4.yml over generate_samples_ex4.sql's table (TD's docs "What is
    do_not_merge_key?")."""
    entry: dict[str, Any] = {
        "name": "person_id",
        "merge_by_keys": ["member_id", "email"],
        "merge_iterations": 3,
    }
    if do_not_merge:
        entry["do_not_merge_key"] = "member_id"
    return {
        "run_canonical_ids": True,
        "run_enrichments": True,
        "run_master_tables": True,
        "full_refresh": True,
        "unification": {
            "name": "samples",
            "keys": [{"name": "member_id"}, {"name": "email"}],
            "tables": [
                {
                    "database": "samples",
                    "table": "site_aaa",
                    "key_columns": [
                        {"column": "member_id", "key": "member_id"},
                        {"column": "email", "key": "email"},
                    ],
                }
            ],
            "canonical_ids": [entry],
            "master_tables": [
                {
                    "name": "master_table_ex4",
                    "canonical_id": "person_id",
                    "attributes": [
                        {
                            "name": "member_id",
                            "source_columns": [{"table": "site_aaa", "priority": 1}],
                        },
                        {"name": "email", "source_columns": [{"table": "site_aaa", "priority": 1}]},
                        {
                            "name": "tel",
                            "array_elements": 2,
                            "source_columns": [{"table": "site_aaa", "priority": 1}],
                        },
                        {
                            "name": "name",
                            "array_elements": 2,
                            "source_columns": [{"table": "site_aaa", "priority": 1}],
                        },
                    ],
                }
            ],
        },
    }


def load_ex4(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA samples")
    con.execute(
        "CREATE TABLE samples.site_aaa AS SELECT * FROM (VALUES"
        " ('1', 'a@ex.com', 1111, 'Taka'), ('2', 'a@ex.com', 2222, 'Tatsuo'),"
        " ('3', 'b@ex.com', 3333, 'Naruse'), ('3', 'b@ex.com', 4444, 'Yuichiro'),"
        " (NULL, 'c@ex.com', 5555, 'Minero'), (NULL, 'c@ex.com', 6666, 'Kaz'))"
        " t(member_id, email, tel, name)"
    )


@pytest.mark.slow
def test_do_not_merge_key_keeps_different_members_apart(con: duckdb.DuckDBPyConnection) -> None:
    load_ex4(con)
    run(con, ex4(do_not_merge=False))
    merged = lookup(con, "person_id")
    assert merged["1"] == merged["2"]  # without it, the shared email joins members 1 and 2

    (summary,) = run(con, ex4(do_not_merge=True))
    got = lookup(con, "person_id")
    # Rows 1 and 2 differ in member_id: never one profile. Rows 3 and 4 share member 3;
    # rows 5 and 6 have no member_id and are joined by email.
    assert len({got["1"], got["2"], got["3"], got["c@ex.com"]}) == 4
    assert got["b@ex.com"] == got["3"]
    assert got["a@ex.com"] == got["1"]  # the shared email goes to the smallest member
    assert summary.record.profiles == 4 and summary.record.split_clusters == 0
    assert summary.report.split_clusters == []  # held apart on purpose, not left split
    enriched = dict(con.execute(f"SELECT tel, person_id FROM {DB}.enriched_site_aaa").fetchall())
    assert enriched[1111] == got["1"] and enriched[2222] == got["2"]  # by member_id first
    assert enriched[3333] == enriched[4444] and enriched[5555] == enriched[6666]
    master = {
        r[0]: r[1:]
        for r in con.execute(
            f"SELECT member_id, email, tel, name FROM {DB}.master_table_ex4"
        ).fetchall()
    }
    assert master == {
        "1": ("a@ex.com", [1111], ["Taka"]),
        "2": ("a@ex.com", [2222], ["Tatsuo"]),
        "3": ("b@ex.com", [3333, 4444], ["Naruse", "Yuichiro"]),
        None: ("c@ex.com", [5555, 6666], ["Kaz", "Minero"]),
    }


# insert_samples_ex5.sql: the records added between the two runs of ex5
EX5_ADDED = {
    "site_aaa": [
        (6, 5, "aaa_003", "3rd_016"),
        (6, 15, None, None),
        (6, 25, None, None),
        (7, 5, "aaa_004", "3rd_017"),
        (7, 15, "aaa_004", "3rd_018"),
        (7, 25, None, None),
        (8, 5, "aaa_005", "3rd_018"),
        (8, 15, None, None),
        (8, 25, "aaa_005", "3rd_019"),
    ],
    "site_yyy": [
        (6, 25, "yyy_005", "3rd_018"),
        (7, 5, "yyy_006", "3rd_019"),
        (8, 15, "yyy_006", "3rd_019"),
        (8, 25, "yyy_007", "3rd_019"),
    ],
}


@pytest.mark.slow
def test_ex5_incremental_run_continues_the_graph_and_enriches_only_new_rows(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load_ex1(con)
    doc = ex1(full_refresh=False, keep_debug_tables=False)
    doc["unification"]["tables"] = tables(incremental=True)
    doc["unification"]["canonical_ids"][0]["incremental_merge_iterations"] = 3
    (first,) = run(con, doc)
    (person,) = set(lookup(con, "unified_cookie_id").values())
    # The new records come with a new column (TD appends by name and adds it).
    con.execute("ALTER TABLE samples.site_aaa ADD COLUMN campaign VARCHAR")
    for site, rows in EX5_ADDED.items():
        cols = "time, site, td_client_id, td_global_id" + (
            ", campaign" if site == "site_aaa" else ""
        )
        extra = ["summer"] if site == "site_aaa" else []
        con.executemany(
            f"INSERT INTO samples.{site} ({cols}) VALUES ({', '.join('?' * (4 + len(extra)))})",
            [[epoch(m, d), "x.jp", c, g, *extra] for m, d, c, g in rows],
        )
    (second,) = run(con, doc)
    assert (first.record.mode, second.record.mode) == ("full", "incremental")
    assert second.record.records_read == 9 + 1 + 4 + 1  # new rows, and those at the watermark
    got = lookup(con, "unified_cookie_id")
    assert {got["aaa_005"], got["yyy_007"], got["3rd_019"]} == {person}
    # Only rows at or after the last watermark (06-25) were enriched again: the one at it is
    # not doubled; the two added with older times (06-05, 06-15) wait for a full refresh,
    # as the records of the graph do.
    enriched = f"SELECT count(*) FROM {DB}.enriched_site_aaa"
    assert con.execute(enriched).fetchall() == [(18 + 7,)]
    new = con.execute(
        f"SELECT DISTINCT unified_cookie_id FROM {DB}.enriched_site_aaa WHERE td_client_id = 'aaa_005'"
    ).fetchall()
    assert new == [(person,)]
    campaigns = con.execute(
        f"SELECT campaign, count(*) FROM {DB}.enriched_site_aaa GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert campaigns == [("summer", 7), (None, 18)]
    # The same records from scratch: the same profiles.
    full = ex1(keep_debug_tables=False)
    full["unification"]["tables"] = tables(incremental=True)
    run(con, full)
    assert lookup(con, "unified_cookie_id") == got
    assert con.execute(enriched).fetchall() == [(18 + 9,)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda u: u["canonical_ids"][0].update(merge_by_keys=[]),
            "merge_by_keys: must list at least one key",
        ),
        (
            lambda u: u["master_tables"][0].update(canonical_id="nope"),
            r"master_tables\[0\]\.canonical_id: references unknown canonical_id 'nope'",
        ),
        (
            lambda u: u["master_tables"][0]["attributes"][0]["source_columns"][0].update(
                table="site_www"
            ),
            r"source_columns\[0\]\.table: references unknown table 'site_www'",
        ),
        (
            lambda u: u["master_tables"][0]["attributes"][0]["source_columns"][0].update(
                order="newest"
            ),
            r"source_columns\[0\]\.order: 'newest' is not allowed",
        ),
        (
            lambda u: u["master_tables"][0]["attributes"][0].update(array_elements=11),
            r"attributes\[0\]\.array_elements: 11 is out of range",
        ),
        (
            lambda u: u["canonical_ids"][0].update(merge_by_canonical_ids=["unified_cookie_id"]),
            "cannot merge itself",
        ),
        (
            lambda u: u["canonical_ids"][0].update(source_tables=["site_qqq"]),
            r"source_tables\[0\]: references unknown table 'site_qqq'",
        ),
    ],
)
def test_what_tds_api_refuses_is_refused_with_its_path(change: Any, message: str) -> None:
    doc = ex1()
    change(doc["unification"])
    with pytest.raises(UnificationError, match=message):
        parse_request(doc)


@pytest.mark.slow
def test_a_master_table_column_the_table_lacks_is_named(con: duckdb.DuckDBPyConnection) -> None:
    load_ex1(con)
    doc = ex1()
    doc["unification"]["master_tables"][0]["attributes"][1]["source_columns"][0]["column"] = "zip"
    with pytest.raises(UnificationError, match=r"td_global_id.*has no column 'zip'"):
        run(con, doc)
