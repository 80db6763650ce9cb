"""TD's UDFs on DuckDB: TD_TIME_RANGE, TD_INTERVAL, TD_TIME_PARSE, TD_TIME_FORMAT,
TD_TIME_STRING, TD_TIME_ADD, TD_DATE_TRUNC, TD_SCHEDULED_TIME (semantics in td_time.py).

Two layers:
- Python scalar functions (`td__*`), registered once per DuckDB connection (its cursors
  share them). They are deterministic, so DuckDB folds a call with constant arguments into
  a constant: a TD_TIME_RANGE or TD_INTERVAL bound costs one Python call per query, not one
  per row.
- Temporary macros named as TD names the functions, created on every cursor. They do the
  per-row work in DuckDB's own vectorized functions (comparisons, ICU time zones,
  date_trunc, strftime) and call Python per row only where DuckDB has no equivalent: a
  TD_TIME_FORMAT pattern strftime cannot print (z, w, k, ...) and TD_TIME_PARSE of a column.
TD_SCHEDULED_TIME() is a constant macro per cursor: the session time of the attempt (what
Digdag's td> sends TD as the job's scheduled time), else the time the cursor was opened.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import Any

import duckdb

from cdp_mcp.backends.local import td_time

_V, _B = duckdb.sqltype("VARCHAR"), duckdb.sqltype("BIGINT")
_SPECIAL: Any = "special"  # NULLs reach the function; DuckDB takes the name in 1.x and 2.x


def _time_parse(text: str, zone: str) -> int | None:
    return td_time.unixtime(text, zone)


def _bound(value: str, kind: str, zone: str, function: str) -> int:
    return td_time.bound(value, kind, zone, function)


_FOREVER = (-(2**63), 2**63 - 1)  # an open end of TD_TIME_RANGE


def _range(
    s: str | None, s_kind: str, e: str | None, e_kind: str, zone: str | None
) -> tuple[int, int]:
    # Both bounds are read on every call, so a bad one fails even where the other decides
    start = _FOREVER[0] if s is None else td_time.bound(s, s_kind, zone, "TD_TIME_RANGE")
    end = _FOREVER[1] if e is None else td_time.bound(e, e_kind, zone, "TD_TIME_RANGE")
    return start, end


def _range_start(s: str | None, s_kind: str, e: str | None, e_kind: str, zone: str | None) -> int:
    return _range(s, s_kind, e, e_kind, zone)[0]


def _range_end(s: str | None, s_kind: str, e: str | None, e_kind: str, zone: str | None) -> int:
    return _range(s, s_kind, e, e_kind, zone)[1]


def _interval_start(text: str, zone: str, reference: int) -> int:
    return td_time.interval_window(text, zone, reference)[0]


def _interval_end(text: str, zone: str, reference: int) -> int:
    return td_time.interval_window(text, zone, reference)[1]


def _trunc_unit(unit: str) -> str:
    found = unit.strip().lower()
    if found not in ("minute", "hour", "day", "week", "month", "quarter", "year"):
        raise td_time.TdTimeError(
            f"TD_DATE_TRUNC: unknown unit {unit!r}; use minute, hour, day, week, month, "
            "quarter or year"
        )
    return found


def _time_string_unit(code: str) -> str:
    return td_time.time_string_code(code)[0]


def _time_string_pattern(code: str) -> str:
    return td_time.time_string_code(code)[1]


def _time_string_offset(code: str) -> bool:
    return td_time.time_string_code(code)[2]


def _strftime_pattern(pattern: str) -> str | None:
    return td_time.strftime_pattern(pattern)


def _time_format(t: int, pattern: str, zone: str) -> str:
    return td_time.time_format(t, pattern, zone)


_FUNCTIONS: tuple[tuple[str, Callable[..., Any], list[Any], Any], ...] = (
    ("td__time_parse", _time_parse, [_V, _V], _B),
    ("td__range_start", _range_start, [_V, _V, _V, _V, _V], _B),
    ("td__range_end", _range_end, [_V, _V, _V, _V, _V], _B),
    ("td__bound", _bound, [_V, _V, _V, _V], _B),
    ("td__interval_start", _interval_start, [_V, _V, _B], _B),
    ("td__interval_end", _interval_end, [_V, _V, _B], _B),
    ("td__duration", td_time.duration_seconds, [_V], _B),
    ("td__icu_zone", td_time.icu_zone, [_V], _V),
    ("td__trunc_unit", _trunc_unit, [_V], _V),
    ("td__ts_unit", _time_string_unit, [_V], _V),
    ("td__ts_pattern", _time_string_pattern, [_V], _V),
    ("td__ts_offset", _time_string_offset, [_V], duckdb.sqltype("BOOLEAN")),
    ("td__strftime", _strftime_pattern, [_V], _V),
    ("td__format_py", _time_format, [_B, _V, _V], _V),
)


def _null_safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    # SQL NULL in, NULL out (DuckDB's "special" handling lets a function also return NULL)
    @functools.wraps(fn)  # DuckDB counts the parameters of the signature
    def call(*args: Any) -> Any:
        return None if any(a is None for a in args) else fn(*args)

    return call


def register(con: duckdb.DuckDBPyConnection) -> None:
    """The Python functions, on a connection (its cursors inherit them)."""
    for name, fn, params, returns in _FUNCTIONS:
        takes_null = name in ("td__range_start", "td__range_end")  # NULL = an open end
        call = fn if takes_null else _null_safe(fn)
        con.create_function(name, call, params, returns, null_handling=_SPECIAL)


_LOCAL = "timezone(td__icu_zone(tz), to_timestamp(t))"  # the wall-clock time in the zone
# strftime over a wall-clock TIMESTAMP wants a constant format; the same wall clock as a
# TIMESTAMPTZ in the session's zone (always UTC here) takes a computed one.
_AS_UTC = "timezone('UTC', {})"
_PUBLIC_MACROS = {
    "td_time_parse": "(s) AS td__parse(s, 'UTC'), (s, tz) AS td__parse(s, tz)",
    "td_time_range": "(t, s) AS td__time_range(t, s, NULL, 'UTC'),"
    " (t, s, e) AS td__time_range(t, s, e, 'UTC'), (t, s, e, tz) AS td__time_range(t, s, e, tz)",
    "td_interval": "(t, s) AS td__interval(t, s, 'UTC'), (t, s, tz) AS td__interval(t, s, tz)",
    "td_time_add": "(t, d) AS td__time_add(t, d, 'UTC'), (t, d, tz) AS td__time_add(t, d, tz)",
    "td_date_trunc": "(u, t) AS td__date_trunc(u, t, 'UTC'),"
    " (u, t, tz) AS td__date_trunc(u, t, tz)",
    "td_time_string": "(t, code) AS td__time_string(t, code, 'UTC'),"
    " (t, code, tz) AS td__time_string(t, code, tz)",
    "td_time_format": "(t, f) AS td__time_format(t, f, 'UTC'),"
    " (t, f, tz) AS td__time_format(t, f, tz)",
}
# The bodies (a macro cannot call its own name with other arguments, so each public one
# forwards to one of these).
_HELPER_MACROS = {
    # A time argument (unix seconds, or a time string read in the zone) as unix seconds;
    # the CASE on the argument's type folds away, so a BIGINT column stays a vectorized cast.
    "td__time_of": "(x, tz, fn) AS CASE"
    " WHEN typeof(x) = 'VARCHAR' THEN td__bound(CAST(x AS VARCHAR), 'VARCHAR', tz, fn)"
    " ELSE CAST(trunc(TRY_CAST(x AS DOUBLE)) AS BIGINT) END",
    # ISO forms in DuckDB (a local time in the zone; one with its offset as it says), any
    # other form TD reads (a zone name after it, ...) in Python
    "td__parse": "(s, tz) AS CASE"
    r" WHEN regexp_full_match(s, '\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}:\d{2}(\.\d+)?)?')"
    " THEN CAST(floor(epoch(timezone(td__icu_zone(tz), TRY_CAST(s AS TIMESTAMP)))) AS BIGINT)"
    r" WHEN regexp_full_match(s, '\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)')"
    " THEN CAST(floor(epoch(TRY_CAST(s AS TIMESTAMPTZ))) AS BIGINT)"
    " ELSE td__time_parse(s, tz) END",
    "td__time_range": "(t, s, e, tz) AS"
    " t >= td__range_start(CAST(s AS VARCHAR), typeof(s), CAST(e AS VARCHAR), typeof(e), tz)"
    " AND t < td__range_end(CAST(s AS VARCHAR), typeof(s), CAST(e AS VARCHAR), typeof(e), tz)",
    "td__interval": "(t, s, tz) AS t >= td__interval_start(s, tz, td_scheduled_time())"
    " AND t < td__interval_end(s, tz, td_scheduled_time())",
    "td__time_add": "(t, d, tz) AS td__time_of(t, tz, 'TD_TIME_ADD') + td__duration(d)",
    "td__date_trunc": "(u, t, tz) AS CAST(epoch(timezone(td__icu_zone(tz),"
    f" CAST(date_trunc(td__trunc_unit(u), {_LOCAL}) AS TIMESTAMP))) AS BIGINT)",
    # airframe's offset text: +HHMM, Z for UTC
    "td__offset_text": "(o) AS CASE WHEN o = 0 THEN 'Z' ELSE"
    " (CASE WHEN o < 0 THEN '-' ELSE '+' END)"
    " || lpad(CAST(abs(o) // 3600 AS VARCHAR), 2, '0')"
    " || lpad(CAST((abs(o) % 3600) // 60 AS VARCHAR), 2, '0') END",
    "td__ts_local": f"(t, code, tz) AS CAST(date_trunc(td__ts_unit(code), {_LOCAL}) AS TIMESTAMP)",
    "td__time_string": "(t, code, tz) AS"
    f" strftime({_AS_UTC.format('td__ts_local(t, code, tz)')}, td__ts_pattern(code))"
    " || CASE WHEN td__ts_offset(code) THEN td__offset_text(CAST(epoch(td__ts_local(t, code, tz))"
    " - epoch(timezone(td__icu_zone(tz), td__ts_local(t, code, tz))) AS BIGINT)) ELSE '' END",
    "td__time_format": "(t, f, tz) AS CASE"
    f" WHEN td__strftime(f) IS NOT NULL THEN strftime({_AS_UTC.format(_LOCAL)}, td__strftime(f))"
    " ELSE td__format_py(CAST(t AS BIGINT), f, tz) END",
}
_BODIES = {**_HELPER_MACROS, **_PUBLIC_MACROS}
_MACRO_NAME = re.compile(r"\btd_[a-z_]*[a-z]\b", re.IGNORECASE)
_CALL_IN_BODY = re.compile(r"\b(td_[a-z_]*[a-z])\(")  # bodies call in lower case


def _needed(names: set[str]) -> list[str]:
    """`names` and the macros their bodies call, each after what it calls."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or (name not in _BODIES and name != "td_scheduled_time"):
            return
        for used in _CALL_IN_BODY.findall(_BODIES.get(name, "")):
            if used != name:
                visit(used)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


def macros(scheduled_time: int | None = None, names: set[str] | None = None) -> list[str]:
    """The statements creating TD's functions on a cursor (`names`, default all) and what
    they use, TD_SCHEDULED_TIME() fixed to `scheduled_time` (unix seconds; default now)."""
    at = int(time.time()) if scheduled_time is None else int(scheduled_time)
    wanted = set(_PUBLIC_MACROS) | {"td_scheduled_time"} if names is None else names
    out = []
    for name in _needed(wanted):
        body = f"() AS CAST({at} AS BIGINT)" if name == "td_scheduled_time" else _BODIES[name]
        out.append(f"CREATE OR REPLACE TEMP MACRO {name}{body}")
    return out


_UDF_ERROR = re.compile(
    r"(?:Invalid Input Error: )?Python exception occurred while executing the UDF: "
    r"(?:TdTimeError|ValueError): "
)


def readable_error(message: str) -> str:
    """DuckDB's words for a TD function's refusal without its Python wrapping."""
    return _UDF_ERROR.sub("", message)


def _called(sql: str) -> set[str]:
    """TD's functions `sql` names (a word, so a column `td_id` costs one look-up only)."""
    found = {m.lower() for m in _MACRO_NAME.findall(sql)}
    return found & (set(_PUBLIC_MACROS) | {"td_scheduled_time"})


def uses_td_functions(sql: str) -> bool:
    return bool(_called(sql))


def install(
    cur: duckdb.DuckDBPyConnection, scheduled_time: int | None = None, names: set[str] | None = None
) -> None:
    """TD's functions on `cur` (`names`, default all; idempotent: macros are replaced)."""
    for statement in macros(scheduled_time, names):
        cur.execute(statement)


def prepare(cur: duckdb.DuckDBPyConnection, sql: str, scheduled_time: int | None = None) -> None:
    """The TD functions `sql` calls, on `cur` (creating a macro costs about a millisecond,
    so only what is called is created)."""
    names = _called(sql)
    if names:
        install(cur, scheduled_time, names)
