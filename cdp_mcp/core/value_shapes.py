"""What a text column's values look like, from a sample: email addresses, phone numbers, or
neither. Staging's rules read it (staging_rules.column_kind) so an email column named
`login` is cleaned as one, and a `mail_opt_in` column of 'yes'/'no' is not.

A column is `email` when at least SHAPE_SHARE of its sampled non-empty values have an
address's shape, `phone` when that share are 7 to 15 digits in a phone's characters, and
`other` otherwise; a column with too few values to judge gets no shape.
"""

from __future__ import annotations

from typing import Literal

import duckdb

from cdp_mcp.core.schema import Column
from cdp_mcp.core.sqltext import quote_ident, sql_string

Shape = Literal["email", "phone", "other"]
SAMPLE_ROWS = 1000  # the first rows of the file: enough to judge a column's form
SHAPE_SHARE = 0.8
MIN_VALUES = 3  # fewer non-empty values than this say nothing
EMAIL_SHAPE = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
PHONE_CHARS = r"^\+?[0-9 ().\-]+$"


def _shape_exprs(name: str) -> str:
    v = f"trim(CAST({quote_ident(name)} AS VARCHAR))"
    digits = f"length(regexp_replace({v}, '[^0-9]', '', 'g'))"
    return (
        f"count(NULLIF({v}, '')), "
        f"count_if(regexp_matches({v}, {sql_string(EMAIL_SHAPE)})), "
        f"count_if(regexp_matches({v}, {sql_string(PHONE_CHARS)}) AND {digits} BETWEEN 7 AND 15)"
    )


def sample_shapes(
    con: duckdb.DuckDBPyConnection, select: str, columns: list[Column]
) -> dict[str, Shape]:
    """The shape of each text column of `select` (a SELECT giving `columns`) that has one."""
    return sampled_shapes(con, select, columns)[0]


def sampled_shapes(
    con: duckdb.DuckDBPyConnection, select: str, columns: list[Column]
) -> tuple[dict[str, Shape], int | None]:
    """`sample_shapes`, and how many rows the sample held (None: no text column, nothing
    read). A file of at least SAMPLE_ROWS rows has the shapes of its first rows: a file
    that appends to it has the same."""
    texts = [c.name for c in columns if c.type == "string"]
    if not texts:
        return {}, None
    exprs = ", ".join(_shape_exprs(n) for n in texts)
    query = f"SELECT count(*), {exprs} FROM ({select} LIMIT {SAMPLE_ROWS})"
    rows, *row = con.execute(query).fetchone() or (0,)
    out: dict[str, Shape] = {}
    for i, name in enumerate(texts):
        values, emails, phones = (int(v or 0) for v in row[3 * i : 3 * i + 3])
        if values < MIN_VALUES:
            continue
        if emails >= SHAPE_SHARE * values:
            out[name] = "email"
        elif phones >= SHAPE_SHARE * values:
            out[name] = "phone"
        else:
            out[name] = "other"
    return out, int(rows)
