"""A load's range as Digdag expressions in the literal form each connector reads.

The workflow's `read_bounds` task stores the range in `td.last_results`: `range_start`
(canonical UTC text, `2024-01-01T00:00:00.000000Z`), `from_inclusive` and `range_end` (''
for no upper bound). A connector is asked for a superset of that range: its lower bound is
inclusive and rounded down, its upper bound rounded up, and an open range ends at the
session time (rows changed later have a later watermark, so the next run takes them). The
exact range is applied afterwards in SQL (queries/load_landing.sql), so nothing is loaded
twice. Plain JavaScript (no moment.js), which Digdag's engine and the local runner share.
"""

from __future__ import annotations

LOWER = "td.last_results.range_start"
UPPER = "(td.last_results.range_end || new Date(session_time).toISOString().replace('Z', '000Z'))"


def _ms_after(iso_z: str, ms: int) -> str:
    return f"new Date(Date.parse({iso_z}) + {ms}).toISOString()"


# format -> (lower, upper) JavaScript over LOWER / UPPER
_FORMATS: dict[str, tuple[str, str]] = {
    # 2024-01-01T00:00:00.000Z (Shopify's from_date / to_date)
    "iso_millis_z": (
        f"{LOWER}.slice(0, 23) + 'Z'",
        _ms_after(f"{UPPER}.slice(0, 23) + 'Z'", 1),
    ),
    # 2024-01-01T00:00:00.000000 (Klaviyo's start_time / end_time)
    "iso_micro_naive": (f"{LOWER}.slice(0, 26)", f"{UPPER}.slice(0, 26)"),
    # 2024-01-01 00:00:00.000000 (a SQL timestamp literal)
    "sql_micro": (
        f"{LOWER}.slice(0, 26).replace('T', ' ')",
        f"{UPPER}.slice(0, 26).replace('T', ' ')",
    ),
    # 2024-01-01T00:00:00Z (a SOQL dateTime literal, whole seconds)
    "soql_seconds": (
        f"{LOWER}.slice(0, 19) + 'Z'",
        _ms_after(f"{UPPER}.slice(0, 19) + 'Z'", 1000) + ".slice(0, 19) + 'Z'",
    ),
    # 2024-01-01 (a date: HubSpot's from_date)
    "date": (
        f"{LOWER}.slice(0, 10)",
        _ms_after(f"{UPPER}.slice(0, 10) + 'T00:00:00Z'", 86_400_000) + ".slice(0, 10)",
    ),
}
FORMATS = tuple(_FORMATS)


def lower(fmt: str) -> str:
    """`${...}` text of the range's lower bound in `fmt`."""
    return "${" + _FORMATS[fmt][0] + "}"


def upper(fmt: str) -> str:
    """`${...}` text of the range's upper bound (or the session time) in `fmt`."""
    return "${" + _FORMATS[fmt][1] + "}"


def condition(column: str, fmt: str, dialect: str) -> str:
    """`column >= lower AND column < upper`; SOQL's dateTime literals are not quoted."""
    q = "" if dialect == "soql" else "'"
    return f"{column} >= {q}{lower(fmt)}{q} AND {column} < {q}{upper(fmt)}{q}"
