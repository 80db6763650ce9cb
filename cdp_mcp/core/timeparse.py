"""Parsing source timestamps in DuckDB with the forms the generated SQL's `parse_ts` accepts.

Sources keep timestamps as strings in mixed ISO forms (TD does too). A value parses as an
ISO-8601 timestamp (`T` or space, optional fraction and offset; a bare date is midnight),
or one of a few common non-ISO layouts; numbers are unix seconds (or milliseconds).
Naive values are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdp_mcp.core.config import parse_timestamp
from cdp_mcp.core.schema import Column
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.core.time_formats import parse_formats

# The same forms, in the same order, as `parse_ts` in generate/templates/_macros.j2: US
# 12-hour times ('01/06/2023 6:05 PM', CRM exports) and the dotted day-first form
# ('06.01.2023 18:05') are unambiguous; 'dd/mm/yyyy' is not (it reads as mm/dd).
_LAYOUTS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%Y%m%d",
)


def parsed_timestamp_sql(column: str, td_type: str, formats: Sequence[str] = ()) -> str:
    """A DuckDB TIMESTAMPTZ expression for `column` (NULL when it does not parse); the
    config's `formats` (ingestion.time_formats) are tried first."""
    if td_type in ("long", "double"):
        seconds = (
            f"CASE WHEN abs({column}) >= 100000000000 THEN {column} / 1000.0 ELSE {column} END"
        )
        return f"TRY(to_timestamp({seconds}))"
    text = f"trim(CAST({column} AS VARCHAR))"
    layouts = [f.duckdb for f in parse_formats(list(formats))]
    tries = [
        f"TRY(CAST(strptime({text}, {sql_string(layout)}) AS TIMESTAMPTZ))" for layout in layouts
    ]
    tries.append(f"TRY_CAST({text} AS TIMESTAMPTZ)")
    tries += [f"TRY(CAST(strptime({text}, '{layout}') AS TIMESTAMPTZ))" for layout in _LAYOUTS]
    return f"COALESCE({', '.join(tries)})"


def parse_bound(value: str) -> str:
    """A config bound (ISO timestamp or date) as a DuckDB TIMESTAMPTZ literal."""
    try:
        parsed = parse_timestamp(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp") from None
    return f"TIMESTAMPTZ '{parsed.isoformat()}'"


def range_where(
    what: str,
    columns: list[Column],
    field: Any,
    lower: Any,
    upper: Any,
    inclusive: bool,
    formats: Sequence[str] = (),
) -> str:
    """`WHERE` over a source SELECT keeping rows whose parsed `field` is in the range
    (`lower` inclusive unless `inclusive` is false, `upper` exclusive, '' = no bound); ''
    when neither bound is set. Raises ValueError naming the problem."""
    if not field or (lower in (None, "") and upper in (None, "")):
        return ""
    by_name = {c.name: c for c in columns}
    if field not in by_name:
        raise ValueError(f"incremental_field {field!r} is not a column of {what}")
    parsed = parsed_timestamp_sql(quote_ident(str(field)), by_name[str(field)].type, formats)
    conditions = []
    if lower not in (None, ""):
        conditions.append(f"{parsed} {'>=' if inclusive else '>'} {parse_bound(str(lower))}")
    if upper not in (None, ""):
        conditions.append(f"{parsed} < {parse_bound(str(upper))}")
    return "\nWHERE " + " AND ".join(conditions)
