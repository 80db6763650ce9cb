"""TD's UDFs on the local engine, held against input/output pairs from TD's own material.

Referees:
- treasure-data/treasure-academy-cdp, "SQL基礎編1/Lesson 03 ... Time, Date関数": TD's results
  for TD_TIME_FORMAT, TD_TIME_STRING, TD_TIME_ADD, TD_DATE_TRUNC and TD_INTERVAL (the
  min/max times a query over a sample table returned at a given TD_SCHEDULED_TIME).
- wvlet/airframe, airframe-metrics `TimeWindowTest` (the time-window grammar TD_INTERVAL
  takes, by TD's engineers), reference time 2016-06-26 01:23:45-0700.
- TD's TD_TIME_PARSE examples: TD_TIME_PARSE('2015-01-01', 'JST') = 1420038000.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cdp_mcp.backends.base import QueryError
from cdp_mcp.backends.local import td_time, td_udfs
from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.backends.local.sql import translate

JST = timezone(timedelta(hours=9))
PDT = timezone(timedelta(hours=-7))


def unix(*args: int, tz: timezone = JST) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp())  # type: ignore[misc]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    found = duckdb.connect()
    found.execute("SET TimeZone = 'UTC'")
    td_udfs.register(found)
    return found


def td(con: duckdb.DuckDBPyConnection, sql: str, scheduled: int | None = None) -> Any:
    """One value of `sql` in TD's dialect (Presto), as the local engine answers it."""
    cur = con.cursor()
    td_udfs.install(cur, scheduled)
    row = cur.execute(translate(sql, "presto").sql).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


# TD_TIME_PARSE


@pytest.mark.slow
def test_td_time_parse_reads_tds_time_strings_in_the_default_zone(con: Any) -> None:
    assert td(con, "SELECT TD_TIME_PARSE('2015-01-01', 'JST')") == 1420038000
    assert td(con, "SELECT TD_TIME_PARSE('2015-01-01 15:25:26', 'JST')") == 1420093526
    assert td(con, "SELECT TD_TIME_PARSE('2015-01-01 15:25:26', 'jst')") == 1420093526
    assert td(con, "SELECT TD_TIME_PARSE('1970-01-02')") == 86400  # UTC by default
    # a zone in the string wins over the default
    assert td(con, "SELECT TD_TIME_PARSE('2015-01-01 00:00:00 +0900', 'UTC')") == 1420038000
    assert td(con, "SELECT TD_TIME_PARSE('2015-01-01 JST')") == 1420038000
    assert td(con, "SELECT TD_TIME_PARSE('2024-01-02T03:04:05Z', 'JST')") == 1704164645
    assert td(con, "SELECT TD_TIME_PARSE('not a time')") is None
    assert td(con, "SELECT TD_TIME_PARSE('2015-02-30')") is None


def test_td_time_parse_of_a_column_agrees_between_its_fast_and_python_paths(con: Any) -> None:
    cur = con.cursor()
    td_udfs.install(cur)
    texts = [
        "2015-01-01",
        "2015-01-01 15:25:26",
        "2015-01-01T15:25:26",
        "2015-01-01 15:25:26.999",
        "2015-01-01T15:25:26+09:00",
        "2015-01-01T06:25:26Z",
        "2015-01-01T06:25:26.5Z",
        "2015-01-01 07:25:26+0100",
        "2015-01-01 15:25:26 JST",
        "2015-01-01 06:25:26 +00:00",
        "2015-13-01",
        "2015-02-30 00:00:00",
        "15:25:26",
    ]
    values = ", ".join(f"('{t}')" for t in texts)
    rows = cur.execute(f"SELECT s, td_time_parse(s, 'JST') FROM (VALUES {values}, (NULL)) v(s)")
    found = dict(rows.fetchall())
    assert found == {t: td_time.unixtime(t, "JST") for t in texts} | {None: None}
    assert found["2015-01-01T15:25:26+09:00"] == found["2015-01-01 15:25:26.999"] == 1420093526
    assert found["2015-13-01"] is None and found["15:25:26"] is None


# TD_TIME_FORMAT (Lesson 03: SELECT ... FROM (VALUES 1466409507) AS t(time), JST)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy-MM-dd", "2016-06-20"),
        ("yyyy/MM/dd", "2016/06/20"),
        ("yyyy/M/d", "2016/6/20"),
        ("yyyy-MM-dd HH:mm:ss", "2016-06-20 16:58:27"),
        ("yyyy-MM-dd hh:mm:ss a", "2016-06-20 04:58:27 PM"),
        ("yyyy-MM-dd HH:mm:ss:SSS", "2016-06-20 16:58:27:000"),
        ("yyyy-MM-dd HH:mm:ss:SSS z", "2016-06-20 16:58:27:000 GMT+09:00"),
        ("u", "1"),  # 2016-06-20 is a Monday
        ("MMMM d yyyy EEEE", "June 20 2016 Monday"),
        ("MMM E", "Jun Mon"),
        ("yyyy-MM-dd'T'HH:mm:ssZ", "2016-06-20T16:58:27+0900"),
        ("D ww k K G", "172 26 16 4 AD"),
    ],
)
def test_td_time_format_prints_javas_patterns(con: Any, pattern: str, expected: str) -> None:
    quoted = pattern.replace("'", "''")
    sql = f"SELECT TD_TIME_FORMAT(1466409507, '{quoted}', 'JST')"
    assert td(con, sql) == expected
    assert td_time.time_format(1466409507, pattern, "JST") == expected


def test_td_time_format_defaults_to_utc_and_refuses_bad_patterns(con: Any) -> None:
    assert td(con, "SELECT TD_TIME_FORMAT(1466409507, 'yyyy-MM-dd HH:mm:ss')") == (
        "2016-06-20 07:58:27"
    )
    assert td(con, "SELECT TD_TIME_FORMAT(1466409507, 'HH:mm z', 'UTC')") == "07:58 UTC"
    with pytest.raises(duckdb.Error, match="illegal pattern character 'T'"):
        td(con, "SELECT TD_TIME_FORMAT(1466409507, 'yyyy-MM-ddTHH')")


def test_td_time_format_strftime_path_agrees_with_the_python_formatter(con: Any) -> None:
    """Patterns DuckDB prints itself give what the SimpleDateFormat port gives, row by row."""
    cur = con.cursor()
    td_udfs.install(cur)
    for pattern in ("yyyy-MM-dd HH:mm:ss", "yy/M/d h:m:s a", "EEE, d MMM yyyy", "D H"):
        assert td_time.strftime_pattern(pattern) is not None
        got = cur.execute(
            f"SELECT list(td_time_format(t, '{pattern}', 'America/Los_Angeles') ORDER BY t)"
            " FROM range(1451606400, 1483228800, 86400 * 7 + 3607) r(t)"
        ).fetchone()
        expected = [
            td_time.time_format(t, pattern, "America/Los_Angeles")
            for t in range(1451606400, 1483228800, 86400 * 7 + 3607)
        ]
        assert got is not None and got[0] == expected, pattern


# TD_TIME_STRING (Lesson 03: 1576110613, JST)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("y", "2019-01-01 00:00:00+0900"),
        ("M", "2019-12-01 00:00:00+0900"),
        ("w", "2019-12-09 00:00:00+0900"),
        ("d", "2019-12-12 00:00:00+0900"),
        ("h", "2019-12-12 09:00:00+0900"),
        ("m", "2019-12-12 09:30:00+0900"),
        ("s", "2019-12-12 09:30:13+0900"),
        ("y!", "2019"),
        ("M!", "2019-12"),
        ("w!", "2019-12-09"),
        ("d!", "2019-12-12"),
        ("h!", "2019-12-12 09"),
        ("m!", "2019-12-12 09:30"),
        ("s!", "2019-12-12 09:30:13"),
    ],
)
def test_td_time_string(con: Any, code: str, expected: str) -> None:
    assert td(con, f"SELECT TD_TIME_STRING(1576110613, '{code}', 'JST')") == expected
    assert td_time.time_string(1576110613, code, "JST") == expected


@pytest.mark.slow
def test_td_time_string_in_utc_and_a_bad_code(con: Any) -> None:
    assert td(con, "SELECT TD_TIME_STRING(1576110613, 'd!')") == "2019-12-12"
    assert td(con, "SELECT TD_TIME_STRING(1576110613, 'q!')") == "2019-10"
    with pytest.raises(duckdb.Error, match="TD_TIME_STRING: unknown format 'x'"):
        td(con, "SELECT TD_TIME_STRING(1576110613, 'x')")


# TD_TIME_ADD (Lesson 03: 1576110613 = 2019-12-12 09:30:13 JST)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        ("1d", "2019-12-13 09:30:13"),
        ("-1d", "2019-12-11 09:30:13"),
        ("1h", "2019-12-12 10:30:13"),
        ("-1h", "2019-12-12 08:30:13"),
        ("30m", "2019-12-12 10:00:13"),
        ("-30m", "2019-12-12 09:00:13"),
        ("10s", "2019-12-12 09:30:23"),
        ("-10s", "2019-12-12 09:30:03"),
        ("1d12h30m", "2019-12-13 22:00:13"),
    ],
)
def test_td_time_add(con: Any, duration: str, expected: str) -> None:
    sql = (
        f"SELECT TD_TIME_FORMAT(TD_TIME_ADD(1576110613, '{duration}', 'JST'),"
        " 'yyyy-MM-dd HH:mm:ss', 'JST')"
    )
    assert td(con, sql) == expected


def test_td_time_add_reads_a_time_string_and_refuses_months(con: Any) -> None:
    assert td(con, "SELECT TD_TIME_ADD('2013-01-01', '1d', 'JST')") == unix(2013, 1, 2)
    assert td(con, "SELECT TD_TIME_ADD('2013-01-01 JST', '-1w')") == unix(2012, 12, 25)
    with pytest.raises(duckdb.Error, match="months and years are not taken"):
        td(con, "SELECT TD_TIME_ADD(0, '1M')")


# TD_DATE_TRUNC (Lesson 03: a time on 2018-11-23 11:xx JST; weeks start on Monday)


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("minute", "2018-11-23 11:11:00"),
        ("hour", "2018-11-23 11:00:00"),
        ("day", "2018-11-23 00:00:00"),
        ("week", "2018-11-19 00:00:00"),
        ("month", "2018-11-01 00:00:00"),
        ("quarter", "2018-10-01 00:00:00"),
        ("year", "2018-01-01 00:00:00"),
    ],
)
def test_td_date_trunc(con: Any, unit: str, expected: str) -> None:
    t = unix(2018, 11, 23, 11, 11, 42)
    sql = (
        f"SELECT TD_TIME_FORMAT(TD_DATE_TRUNC('{unit}', {t}, 'JST'), 'yyyy-MM-dd HH:mm:ss', 'JST')"
    )
    assert td(con, sql) == expected


def test_td_date_trunc_is_in_the_zone_given(con: Any) -> None:
    t = unix(2018, 11, 23, 5, 0, 0)  # 2018-11-22 20:00 UTC
    assert td(con, f"SELECT TD_DATE_TRUNC('day', {t}, 'JST')") == unix(2018, 11, 23)
    assert td(con, f"SELECT TD_DATE_TRUNC('day', {t})") == unix(2018, 11, 22, tz=UTC)
    with pytest.raises(duckdb.Error, match="TD_DATE_TRUNC: unknown unit 'fortnight'"):
        td(con, f"SELECT TD_DATE_TRUNC('fortnight', {t})")


# TD_TIME_RANGE


@pytest.mark.slow
def test_td_time_range_is_start_inclusive_end_exclusive_in_the_zone(con: Any) -> None:
    day = unix(2018, 1, 1)
    checks = {
        f"TD_TIME_RANGE({day}, '2018-01-01', '2018-01-02', 'JST')": True,
        f"TD_TIME_RANGE({day} - 1, '2018-01-01', '2018-01-02', 'JST')": False,
        f"TD_TIME_RANGE({day} + 86399, '2018-01-01', '2018-01-02', 'JST')": True,
        f"TD_TIME_RANGE({day} + 86400, '2018-01-01', '2018-01-02', 'JST')": False,
        f"TD_TIME_RANGE({day}, '2018-01-01', '2018-01-02')": False,  # UTC by default
        f"TD_TIME_RANGE({day}, NULL, '2018-01-01 00:00:01', 'JST')": True,
        f"TD_TIME_RANGE({day}, '2018-01-01 JST')": True,
        f"TD_TIME_RANGE({day} - 1, '2018-01-01 JST')": False,
        f"TD_TIME_RANGE({day}, {day}, {day} + 1)": True,
        f"TD_TIME_RANGE({day}, {day} + 1, NULL)": False,
        f"TD_TIME_RANGE({day}, NULL, NULL)": True,
    }
    for expr, expected in checks.items():
        assert td(con, f"SELECT {expr}") is expected, expr


def test_td_time_range_refuses_a_bound_that_is_not_a_time(con: Any) -> None:
    # TD_TIME_RANGE(time, '2013-01-01', 'JST') is the documented mistake: 'JST' is the end
    with pytest.raises(duckdb.Error, match="TD_TIME_RANGE: 'JST' is not a time TD reads"):
        td(con, "SELECT TD_TIME_RANGE(0, '2013-01-01', 'JST')")


def test_td_time_range_bounds_are_computed_once_per_query(
    con: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = td_time.bound

    def counted(*args: Any) -> int:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(td_time, "bound", counted)
    cur = con.cursor()
    td_udfs.install(cur)
    found = cur.execute(
        "SELECT count(*) FROM range(0, 100000) r(t)"
        " WHERE td_time_range(t, '1970-01-01 01:00:00', '1970-01-02', 'UTC')"
    ).fetchone()
    assert found == (86400 - 3600,)
    assert len(calls) <= 4  # each bound folded to a constant, not one call per row


# TD_INTERVAL


def window(con: Any, interval: str, zone: str, scheduled: int) -> tuple[int, int]:
    """[start, end) of TD_INTERVAL, read back through the SQL function itself."""
    start, end = td_time.interval_window(interval, zone, scheduled)
    inside = td(
        con,
        f"SELECT TD_INTERVAL({start}, '{interval}', '{zone}'),"
        f" TD_INTERVAL({end} - 1, '{interval}', '{zone}'),"
        f" TD_INTERVAL({start} - 1, '{interval}', '{zone}'),"
        f" TD_INTERVAL({end}, '{interval}', '{zone}')",
        scheduled,
    )
    assert inside == (start < end, start < end, False, False), interval
    return start, end


ACADEMY_MAY = unix(2016, 5, 22, 1, 0, 0)  # TD_SCHEDULED_TIME() = '2016-05-22 01:00 AM' JST
ACADEMY_JULY = unix(2016, 7, 22, 1, 0, 0)
ACADEMY_NOV = unix(2018, 11, 23, 11, 11, 0)


@pytest.mark.parametrize(
    ("scheduled", "interval", "start", "end"),
    [
        (ACADEMY_MAY, "1d", (2016, 5, 22), (2016, 5, 23)),
        (ACADEMY_MAY, "-1d", (2016, 5, 21), (2016, 5, 22)),
        (ACADEMY_MAY, "1w", (2016, 5, 16), (2016, 5, 23)),
        (ACADEMY_MAY, "-1w", (2016, 5, 9), (2016, 5, 16)),
        (ACADEMY_MAY, "1M", (2016, 5, 1), (2016, 6, 1)),
        (ACADEMY_MAY, "-1M", (2016, 4, 1), (2016, 5, 1)),
        (ACADEMY_MAY, "-1d/-1d", (2016, 5, 20), (2016, 5, 21)),
        (ACADEMY_MAY, "-7d/-2d", (2016, 5, 13), (2016, 5, 20)),
        (ACADEMY_MAY, "-7d/-7d", (2016, 5, 8), (2016, 5, 15)),
        (ACADEMY_MAY, "-1w/-1w", (2016, 5, 2), (2016, 5, 9)),
        (ACADEMY_JULY, "-2M", (2016, 5, 1), (2016, 7, 1)),
        (ACADEMY_JULY, "-1M/-1M", (2016, 5, 1), (2016, 6, 1)),
        (ACADEMY_JULY, "-2M/-1M", (2016, 4, 1), (2016, 6, 1)),
        (ACADEMY_NOV, "-1d", (2018, 11, 22), (2018, 11, 23)),
        (ACADEMY_NOV, "-1w", (2018, 11, 12), (2018, 11, 19)),
        (ACADEMY_NOV, "-1M", (2018, 10, 1), (2018, 11, 1)),
    ],
)
def test_td_interval_as_tds_lesson_shows_it(
    con: Any, scheduled: int, interval: str, start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    assert window(con, interval, "JST", scheduled) == (unix(*start), unix(*end))


AIRFRAME_NOW = unix(2016, 6, 26, 1, 23, 45, tz=PDT)


@pytest.mark.parametrize(
    ("interval", "start", "end"),
    [
        ("-7d", (2016, 6, 19), (2016, 6, 26)),
        ("-7d/now", (2016, 6, 19), (2016, 6, 26, 1, 23, 45)),
        ("+7d/now", (2016, 6, 26, 1, 23, 45), (2016, 7, 3)),
        ("-1h/now", (2016, 6, 26), (2016, 6, 26, 1, 23, 45)),
        ("-1h/0m", (2016, 6, 26), (2016, 6, 26, 1, 23)),
        ("-12h/now", (2016, 6, 25, 13), (2016, 6, 26, 1, 23, 45)),
        ("-3d/2017-04-07", (2017, 4, 4), (2017, 4, 7)),
        ("-1M/1M", (2016, 6, 1), (2016, 7, 1)),
        ("-1M/2018-09-02 01:12:13", (2018, 8, 1), (2018, 9, 1)),
        ("-60m/2017-01-23 01:23:45", (2017, 1, 23, 0, 23), (2017, 1, 23, 1, 23)),
        ("-1M/2018-09-02 12:34:56)", (2018, 8, 1), (2018, 9, 2, 12, 34, 56)),
        ("-1M/0d", (2016, 5, 1), (2016, 6, 26)),
        ("-1q", (2016, 1, 1), (2016, 4, 1)),
        ("-1q/-1y/0y", (2014, 10, 1), (2015, 1, 1)),
        ("-20s/-10s/now", (2016, 6, 26, 1, 23, 15), (2016, 6, 26, 1, 23, 35)),
        ("+1M/-2M/-1y/2016-10-01", (2015, 8, 1), (2015, 9, 1)),
        ("+1d/+1h/+1d/2016-10-01 23:00:00", (2016, 10, 3), (2016, 10, 4)),
        ("thisWeek", (2016, 6, 20), (2016, 6, 27)),
        ("2016-06-26/now", (2016, 6, 26), (2016, 6, 26, 1, 23, 45)),
        ("2016-05-15 01:23:15/0M", (2016, 5, 15, 1, 23, 15), (2016, 6, 1)),
    ],
)
def test_td_interval_follows_airframes_time_windows(
    con: Any, interval: str, start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    found = window(con, interval, "PDT", AIRFRAME_NOW)
    assert found == (unix(*start, tz=PDT), unix(*end, tz=PDT))


@pytest.mark.slow
def test_td_interval_refuses_what_it_cannot_read(con: Any) -> None:
    with pytest.raises(duckdb.Error, match="TD_INTERVAL: invalid duration 'days7'"):
        td(con, "SELECT TD_INTERVAL(0, 'days7')")
    with pytest.raises(duckdb.Error, match="TD_INTERVAL: invalid offset 'then'"):
        td(con, "SELECT TD_INTERVAL(0, '-1d/then')")
    with pytest.raises(duckdb.Error, match="unknown time zone 'Mars/Olympus'"):
        td(con, "SELECT TD_INTERVAL(0, '-1d', 'Mars/Olympus')")


# TD_SCHEDULED_TIME: the session time in a workflow, now in `query`


@pytest.mark.slow
def test_td_scheduled_time_is_the_session_time_of_a_td_task(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "wf.dig").write_text(
        textwrap.dedent("""
        +init:
          td_ddl>:
          create_databases: [db]
        +q:
          td>:
          query: |
            SELECT TD_SCHEDULED_TIME() AS s,
                   TD_INTERVAL(1767139200, '-1d', 'UTC') AS yesterday,
                   TD_TIME_FORMAT(TD_SCHEDULED_TIME(), 'yyyy-MM-dd HH:mm', 'JST') AS jst
          database: db
          create_table: out
        """)
    )
    rt.push("proj", project)
    session = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    attempt = rt.wait(rt.start("proj", "wf", session, None).id, 30)
    assert attempt.status == "success", rt.tasks(attempt.id)
    assert rt.query("SELECT * FROM out", "db").rows == [
        [int(session.timestamp()), True, "2026-01-01 12:00"]
    ]


@pytest.mark.slow
def test_td_functions_run_in_the_read_only_query_path(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    with rt.warehouse.cursor() as cur:
        cur.execute("CREATE SCHEMA db")
        cur.execute("CREATE TABLE db.events AS FROM (VALUES (1576110613), (1420038000)) v(time)")
    found = rt.read_query(
        "SELECT TD_TIME_STRING(time, 'd!', 'JST') AS d, TD_INTERVAL(time, '-30d/now') AS recent,"
        " TD_SCHEDULED_TIME() > 1700000000 AS now_ish FROM events"
        " WHERE TD_TIME_RANGE(time, '2019-01-01', NULL, 'JST') ORDER BY 1",
        "db",
    )
    assert found.rows == [["2019-12-12", False, True]]
    with pytest.raises(QueryError, match=r"^TD_TIME_RANGE: 'JST' is not a time TD reads"):
        rt.read_query(
            "SELECT count(*) FROM events WHERE TD_TIME_RANGE(time, '2019-01-01', 'JST')", "db"
        )


def test_hive_sql_takes_the_same_functions(con: Any) -> None:
    cur = con.cursor()
    td_udfs.install(cur, ACADEMY_MAY)
    sql = translate(
        "SELECT TD_TIME_FORMAT(TD_DATE_TRUNC('month', TD_SCHEDULED_TIME(), 'JST'), 'yyyy-MM-dd', 'JST')",
        "hive",
    ).sql
    assert cur.execute(sql).fetchone() == ("2016-05-01",)
