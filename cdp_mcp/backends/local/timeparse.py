"""Parsing source timestamps in DuckDB with the forms the generated SQL's `parse_ts` accepts.

Sources keep timestamps as strings in mixed ISO forms (TD does too). A value parses as an
ISO-8601 timestamp (`T` or space, optional fraction and offset; a bare date is midnight),
or one of a few common non-ISO layouts; numbers are unix seconds (or milliseconds).
Naive values are UTC.
"""

from __future__ import annotations

from cdp_mcp.config import parse_timestamp

_LAYOUTS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y%m%d")


def parsed_timestamp_sql(column: str, td_type: str) -> str:
    """A DuckDB TIMESTAMPTZ expression for `column` (NULL when it does not parse)."""
    if td_type in ("long", "double"):
        seconds = (
            f"CASE WHEN abs({column}) >= 100000000000 THEN {column} / 1000.0 ELSE {column} END"
        )
        return f"TRY(to_timestamp({seconds}))"
    text = f"trim(CAST({column} AS VARCHAR))"
    tries = [f"TRY_CAST({text} AS TIMESTAMPTZ)"]
    tries += [f"TRY(CAST(strptime({text}, '{layout}') AS TIMESTAMPTZ))" for layout in _LAYOUTS]
    return f"COALESCE({', '.join(tries)})"


def parse_bound(value: str) -> str:
    """A config bound (ISO timestamp or date) as a DuckDB TIMESTAMPTZ literal."""
    try:
        parsed = parse_timestamp(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp") from None
    return f"TIMESTAMPTZ '{parsed.isoformat()}'"
