"""TD SQL as the local runner rewrites it for DuckDB: same results, cheaper forms."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from cdp_mcp.backends.local.sql import translate


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
