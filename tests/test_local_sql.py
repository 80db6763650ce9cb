"""TD SQL as the local runner rewrites it for DuckDB: same results, cheaper forms."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from cdp_mcp.backends.local.sql import HiveSyntaxError, translate


@pytest.mark.parametrize("engine", ["presto", "hive"])
def test_sha256_hex_of_text_is_one_call_and_matches_python(engine: str) -> None:
    query = {
        "presto": "SELECT lower(to_hex(sha256(to_utf8(v)))) AS h FROM (VALUES ('Zoë@ex.com'), (NULL)) t(v)",
        "hive": "SELECT sha2(v, 256) AS h FROM (SELECT 'Zoë@ex.com' AS v UNION ALL SELECT NULL) t",
    }[engine]
    sql = translate(query, engine).sql
    assert sql.upper().count("SHA256(") == 1 and "UNHEX" not in sql.upper()
    rows = sorted(duckdb.sql(sql).fetchall(), key=lambda r: r[0] is None)
    assert rows == [(hashlib.sha256("Zoë@ex.com".encode()).hexdigest(),), (None,)]


def test_try_of_a_cast_or_date_parse_becomes_duckdbs_vectorised_try() -> None:
    sql = translate(
        "SELECT TRY(CAST(v AS bigint)) AS n, TRY(date_parse(v, '%Y/%m/%d')) AS d "
        "FROM (VALUES ('12'), ('2024/02/03'), ('x')) t(v)"
    ).sql
    assert "TRY_CAST" in sql and "TRY_STRPTIME" in sql
    rows = duckdb.sql(sql).fetchall()
    assert [r[0] for r in rows] == [12, None, None]
    assert [None if r[1] is None else r[1].isoformat() for r in rows] == [
        None,
        "2024-02-03T00:00:00",
        None,
    ]


def one_row(query: str, engine: str) -> tuple[object, ...]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row = con.execute(translate(query, engine).sql).fetchone()
    assert row is not None
    return row


# (Hive text, what TD's Hive 2.3 returns). Each failed before: an error where Hive answers
# NULL, or another value.
HIVE_VALUES = [
    # SimpleDateFormat in UTC: NULL for text it cannot read, the rest after the pattern ignored
    ("unix_timestamp('2024-01-05 10:00:00')", 1704448800),
    ("unix_timestamp('2024-01-05 10:00:00.123')", 1704448800),
    ("unix_timestamp('garbage')", None),
    ("unix_timestamp('2024-01-05T10:00:00Z', 'yyyy-MM-dd')", 1704412800),
    ("unix_timestamp('01/05/2024', 'MM/dd/yyyy')", 1704412800),
    ("unix_timestamp('20240105', 'yyyyMMdd')", 1704412800),
    ("unix_timestamp() > 1700000000", True),
    ("get_json_object('{\"a\": 1}', '$.a')", "1"),
    ("get_json_object('not json', '$.a')", None),
    ("get_json_object('{\"a\": {\"b\": 2}}', '$.a')", '{"b":2}'),  # Jackson's compact form
    ("regexp_replace('abc', '(b)', '$1$1')", "abbc"),
    ("regexp_replace('a.c', '\\\\.', '\\\\$')", "a$c"),
    ("round(CAST('2.675' AS DOUBLE), 2)", 2.68),
    ("round(CAST('-2.675' AS DOUBLE), 2)", -2.68),
    ("round(CAST('1e25' AS DOUBLE), 2)", 1e25),
    ("substr('abc', 0, 2)", "ab"),
    ("date_format('not a date', 'yyyy')", None),
    ("from_unixtime(1704448800, 'yyyy-MM-dd HH:mm:ss')", "2024-01-05 10:00:00"),
    ("nvl(NULL, 'b')", "b"),
    ("concat_ws('-', 'a', NULL, 'c')", "a-c"),
]


@pytest.mark.parametrize(("expression", "expected"), HIVE_VALUES)
def test_hive_functions_return_what_hive_returns(expression: str, expected: object) -> None:
    assert one_row(f"SELECT {expression}", "hive") == (expected,)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("json_extract_scalar('{\"a\": 1}', '$.a')", "1"),
        ("json_extract_scalar('not json', '$.a')", None),
        ("json_extract_scalar('{\"a\": {\"b\": 2}}', '$.a')", None),  # not a scalar
        ('json_extract_scalar(\'{"a b": "x"}\', \'$["a b"]\')', "x"),
    ],
)
def test_presto_json_extract_scalar_is_null_for_text_and_objects(
    expression: str, expected: object
) -> None:
    assert one_row(f"SELECT {expression}", "presto") == (expected,)


def test_presto_functions_in_hive_text_fail_as_they_do_on_td() -> None:
    with pytest.raises(HiveSyntaxError, match=r"Hive has no TRY_CAST .*for TRY_CAST use CAST"):
        translate("SELECT TRY_CAST(v AS double) FROM t", "hive")
    with pytest.raises(HiveSyntaxError, match="JSON_EXTRACT_SCALAR, TO_UNIXTIME"):
        translate("SELECT json_extract_scalar(j, '$.a'), to_unixtime(now()) FROM t", "hive")
    # the same names in strings, comments or as quoted identifiers are not calls
    assert translate("SELECT 'try_cast(x)' AS `now` -- regexp_like(x)\nFROM t", "hive").sql
    assert translate("SELECT TRY_CAST(v AS double) FROM t", "presto").sql


@pytest.mark.parametrize(
    ("engine", "expression"),
    [
        ("presto", "date_format(from_unixtime(u), '%Y-%m-%d %H:%i:%s')"),
        ("presto", "date_format(from_unixtime(u), '%Y-%m-%d')"),
        ("hive", "from_unixtime(u, 'yyyy-MM-dd HH:mm:ss')"),
        ("hive", "from_unixtime(u)"),
    ],
)
def test_formatting_unix_seconds_skips_the_time_zone_and_keeps_the_text(
    engine: str, expression: str
) -> None:
    rows = "SELECT 1704448800 AS u UNION ALL SELECT -1 UNION ALL SELECT NULL"
    sql = translate(f"SELECT {expression} AS s FROM ({rows}) t", engine).sql
    assert "MAKE_TIMESTAMP" in sql.upper() and "TO_TIMESTAMP" not in sql.upper()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    naive = "MAKE_TIMESTAMP(CAST(CAST(u AS DOUBLE) * 1000000 AS BIGINT))"
    zoned = sql.replace(naive, "TO_TIMESTAMP(u)")
    assert zoned != sql
    assert con.execute(sql).fetchall() == con.execute(zoned).fetchall()


def test_a_short_in_list_is_comparisons_with_the_same_answers() -> None:
    query = (
        "SELECT x, lower(trim(x)) IN ('', 'null', 'none', 'n/a', 'na') AS hit,"
        " x NOT IN ('a', 'b', 'c', 'd', NULL) AS miss"
        " FROM (VALUES (' NA '), ('z'), ('a'), (NULL)) t(x)"
    )
    sql = translate(query).sql
    assert " IN (" not in sql.upper()  # DuckDB would plan each as a join
    assert duckdb.sql(sql).fetchall() == duckdb.sql(query).fetchall()


@pytest.mark.parametrize("engine", ["presto", "hive"])
def test_the_null_text_check_skips_long_values_with_the_same_answers(engine: str) -> None:
    # staging's check of every text value: NULL stays NULL and a miss FALSE (not NULL), in a
    # projection as in a CASE; values as long as the longest text still match ('NONE')
    values = ["' NA '", "'NULL'", "'None'", "'nulls'", "'N/A'", "'n/a '", "''", "'İ'", "NULL"]
    values += [
        "chr(65326) || 'ULL'",
        "chr(8490) || 'elvin'",
        "'naïve'",
        "'x'",
    ]  # fullwidth N, Kelvin sign
    rows = " UNION ALL ".join(f"SELECT {v} AS x" for v in values)
    texts = "('', 'null', 'none', 'n/a', 'na')"
    query = (
        f"SELECT x, lower(trim(x)) IN {texts} AS hit, lower(x) NOT IN {texts} AS kept,"
        f" CASE WHEN lower(trim(x)) IN {texts} THEN NULL ELSE trim(x) END AS v FROM ({rows}) s"
    )
    sql = translate(query, engine).sql
    assert "LIST_CONTAINS" in sql.upper() and "LENGTH(" in sql.upper()
    key = lambda r: (r[0] is None, r[0] or "")  # noqa: E731
    got = sorted(duckdb.sql(sql).fetchall(), key=key)
    assert got == sorted(duckdb.sql(query).fetchall(), key=key)
    assert [r[1] for r in got if r[0] in (" NA ", "NULL", "None", "N/A", "")] == [True] * 5


@pytest.mark.parametrize("engine", ["presto", "hive"])
def test_trim_of_a_column_skips_unpadded_values_with_the_same_answers(engine: str) -> None:
    values = ["' a '", "'b '", "' c'", "'d'", "'   '", "''", "NULL", "chr(9) || ' e' || chr(10)"]
    rows = " UNION ALL ".join(f"SELECT {v} AS x" for v in values)
    query = f"SELECT x, trim(x) AS t, length(trim(x)) AS n FROM ({rows}) s"
    sql = translate(query, engine).sql
    assert "STARTS_WITH" in sql.upper()  # the unpadded values are not copied
    key = lambda r: (r[0] is None, r[0] or "")  # noqa: E731
    assert sorted(duckdb.sql(sql).fetchall(), key=key) == sorted(
        duckdb.sql(query).fetchall(), key=key
    )
    assert duckdb.sql(sql).types == duckdb.sql(query).types


def test_trim_of_a_number_fails_naming_trim_as_before() -> None:
    query = "SELECT trim(n) FROM (VALUES (1)) t(n)"
    with pytest.raises(duckdb.BinderException, match=r"trim\(INTEGER\)"):
        duckdb.sql(translate(query).sql).fetchall()
