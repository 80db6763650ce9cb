"""What TD's UDFs cost on the local engine (cdp_mcp/backends/local/td_udfs.py).

    python bench/bench_td_functions.py --rows 1000000

One in-memory DuckDB table of `rows` unix times (and their text); each line is the best of
three runs of one query over all of them, next to the plain DuckDB query it stands for.
"""

from __future__ import annotations

import argparse
import time

import duckdb

from cdp_mcp.backends.local import td_udfs

CASES = [
    (
        "baseline: time >= a AND time < b",
        "SELECT count(*) FROM t WHERE time >= 1650000000 AND time < 1660000000",
    ),
    (
        "TD_TIME_RANGE(time, int, int)",
        "SELECT count(*) FROM t WHERE td_time_range(time, 1650000000, 1660000000)",
    ),
    (
        "TD_TIME_RANGE(time, 'date', 'date', 'JST')",
        "SELECT count(*) FROM t WHERE td_time_range(time, '2022-04-15', '2022-08-09', 'JST')",
    ),
    (
        "TD_INTERVAL(time, '-30d', 'JST')",
        "SELECT count(*) FROM t WHERE td_interval(time, '-30d', 'JST')",
    ),
    (
        "baseline: strftime(to_timestamp(time)) UTC",
        "SELECT count(DISTINCT strftime(to_timestamp(time), '%Y-%m-%d')) FROM t",
    ),
    (
        "TD_TIME_FORMAT(time, 'yyyy-MM-dd', 'JST')",
        "SELECT count(DISTINCT td_time_format(time, 'yyyy-MM-dd', 'JST')) FROM t",
    ),
    (
        "TD_TIME_FORMAT(time, 'yyyy-MM-dd z', 'JST') [Python/row]",
        "SELECT count(DISTINCT td_time_format(time, 'yyyy-MM-dd z', 'JST')) FROM t",
    ),
    (
        "TD_TIME_STRING(time, 'd!', 'JST')",
        "SELECT count(DISTINCT td_time_string(time, 'd!', 'JST')) FROM t",
    ),
    (
        "TD_TIME_STRING(time, 'h', 'JST')",
        "SELECT count(DISTINCT td_time_string(time, 'h', 'JST')) FROM t",
    ),
    (
        "TD_DATE_TRUNC('day', time, 'JST')",
        "SELECT count(DISTINCT td_date_trunc('day', time, 'JST')) FROM t",
    ),
    ("TD_TIME_ADD(time, '1d')", "SELECT sum(td_time_add(time, '1d')) FROM t"),
    ("baseline: epoch(CAST(s AS TIMESTAMP))", "SELECT sum(epoch(CAST(s AS TIMESTAMP))) FROM t"),
    ("TD_TIME_PARSE(s) ('yyyy-MM-dd HH:mm:ss')", "SELECT sum(td_time_parse(s)) FROM t"),
    ("TD_TIME_PARSE(iso) ('...T...Z')", "SELECT sum(td_time_parse(iso)) FROM t"),
    ("TD_TIME_PARSE(named) ('... JST') [Python/row]", "SELECT sum(td_time_parse(named)) FROM t"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    td_udfs.register(con)
    cur = con.cursor()
    td_udfs.install(cur, 1_700_000_000)
    cur.execute(
        "CREATE TABLE t AS SELECT time, strftime(to_timestamp(time), '%Y-%m-%d %H:%M:%S') AS s,"
        " strftime(to_timestamp(time), '%Y-%m-%dT%H:%M:%SZ') AS iso,"
        " strftime(to_timestamp(time), '%Y-%m-%d %H:%M:%S') || ' JST' AS named"
        f" FROM (SELECT 1600000000 + i * 97 AS time FROM range({args.rows}) r(i))"
    )
    print(f"{args.rows:,} rows; best of {args.repeat}")
    for label, sql in CASES:
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            cur.execute(sql).fetchall()
            best = min(best, time.perf_counter() - started)
        print(f"| {label} | {best * 1000:,.0f} ms |")
    for label, sql in (
        ("creating every TD macro on a cursor", None),
        ("creating what a TD_TIME_RANGE needs", "DELETE FROM t WHERE TD_TIME_RANGE(time, 0, NULL)"),
    ):
        started = time.perf_counter()
        for _ in range(20):
            fresh = con.cursor()
            if sql is None:
                td_udfs.install(fresh)
            else:
                td_udfs.prepare(fresh, sql)
            fresh.close()
        print(f"| {label} | {(time.perf_counter() - started) / 20 * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
