"""TD's time UDFs, in plain Python: time zones, time strings, TD_INTERVAL's windows, formats.

The local warehouse exposes these through DuckDB (td_udfs.py); this module holds only the
semantics, so tests can hold them against the input/output pairs of TD's own material:
- TD_INTERVAL is airframe-metrics' `TimeWindow` (wvlet/airframe, by TD's engineers): the
  duration/offset grammar, the truncation rules and the nested offsets are ported from
  `TimeWindow.scala` / `TimeVector.scala` / `TimeWindowUnit.scala`; its reference time is
  TD_SCHEDULED_TIME (treasure-academy-cdp, "TD_INTERVAL").
- TD_TIME_STRING prints airframe's `TimeStampFormatter` (`2019-12-12 09:00:00+0900`) of the
  time truncated to the unit, or with `!` the truncated text alone (`2019-12-12 09`).
- TD_TIME_FORMAT takes Java `SimpleDateFormat` patterns (TD's table: G y M w D d E a H k K
  h m s S z Z u), Locale.US.
- Time zones: names as TD takes them (`JST`, `jst`, `PDT`, `Asia/Tokyo`, `+09:00`): Java's
  `ZoneId.SHORT_IDS` plus airframe's fixed PDT/EDT/CDT/MDT, IANA names, UTC offsets.
"""

from __future__ import annotations

import calendar
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache


class TdTimeError(ValueError):
    """A time, zone, interval or format TD would refuse, in words that name it."""


# -- time zones ------------------------------------------------------------------------

# java.time.ZoneId.SHORT_IDS (what Java's TD UDFs resolve a 3-letter id through)
_SHORT_IDS = {
    "ACT": "Australia/Darwin",
    "AET": "Australia/Sydney",
    "AGT": "America/Argentina/Buenos_Aires",
    "ART": "Africa/Cairo",
    "AST": "America/Anchorage",
    "BET": "America/Sao_Paulo",
    "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare",
    "CNT": "America/St_Johns",
    "CST": "America/Chicago",
    "CTT": "Asia/Shanghai",
    "EAT": "Africa/Addis_Ababa",
    "ECT": "Europe/Paris",
    "IET": "America/Indiana/Indianapolis",
    "IST": "Asia/Kolkata",
    "JST": "Asia/Tokyo",
    "MIT": "Pacific/Apia",
    "NET": "Asia/Yerevan",
    "NST": "Pacific/Auckland",
    "PLT": "Asia/Karachi",
    "PNT": "America/Phoenix",
    "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles",
    "SST": "Pacific/Guadalcanal",
    "VST": "Asia/Ho_Chi_Minh",
    "EST": "-05:00",
    "MST": "-07:00",
    "HST": "-10:00",
}
# airframe's TimeWindow.withTimeZone adds these daylight-saving abbreviations as fixed offsets
_FIXED_ABBREVIATIONS = {"PDT": "-07:00", "EDT": "-04:00", "CDT": "-05:00", "MDT": "-06:00"}
_UTC_NAMES = frozenset({"UTC", "GMT", "UT", "Z", "ZULU", "UCT", "GMT0", "ETC/UTC", "ETC/GMT"})
_OFFSET = re.compile(r"^(?:GMT|UTC)?([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Zone:
    """A resolved time zone: Python's tzinfo, the ICU id DuckDB takes, how TD names it."""

    tz: tzinfo
    icu: str  # an id DuckDB's ICU extension accepts
    abbreviation: bool  # given as a 3-letter id (SimpleDateFormat then prints GMT+hh:mm)

    def offset(self, when: datetime) -> timedelta:
        found = when.astimezone(self.tz).utcoffset()
        return found if found is not None else timedelta(0)


def _fixed(sign: str, hours: str, minutes: str | None) -> Zone:
    h, m = int(hours), int(minutes or 0)
    if h > 18 or m > 59:
        raise TdTimeError(f"time zone offset {sign}{hours}:{minutes or '00'} is out of range")
    delta = timedelta(hours=h, minutes=m) * (-1 if sign == "-" else 1)
    if not delta:
        return Zone(UTC, "UTC", False)
    return Zone(timezone(delta), f"GMT{sign}{h:02d}:{m:02d}", False)


@lru_cache(maxsize=1)
def _iana_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


@lru_cache(maxsize=256)
def zone(name: str | None) -> Zone:
    """The zone TD means by `name` (case-insensitive, as TD's queries spell `jst`)."""
    text = (name or "UTC").strip()
    upper = text.upper()
    if upper in _UTC_NAMES:
        return Zone(UTC, "UTC", False)
    abbreviation = upper in _SHORT_IDS or upper in _FIXED_ABBREVIATIONS
    target = _FIXED_ABBREVIATIONS.get(upper) or _SHORT_IDS.get(upper) or text
    offset = _OFFSET.match(target)
    if offset:
        found = _fixed(*offset.groups())
        return Zone(found.tz, found.icu, abbreviation)
    iana = _iana_names().get(target.lower())
    if iana is None:
        raise TdTimeError(
            f"unknown time zone {name!r}: use an IANA name (Asia/Tokyo, America/Los_Angeles), "
            "a 3-letter id TD takes (UTC, JST, PST, PDT, EST, ...) or an offset (+09:00)"
        )
    return Zone(zoneinfo.ZoneInfo(iana), iana, abbreviation)


def icu_zone(name: str | None) -> str:
    return zone(name).icu


# -- time strings ----------------------------------------------------------------------

_TIME_STRING = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[ T](?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d+)?)?"
    r"(?:\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)|\s+(?P<zone>[A-Za-z][A-Za-z0-9_/+\-]*))?$"
)


@dataclass(frozen=True)
class ParsedTime:
    when: datetime  # aware
    has_time: bool  # a date-time (unit second), else a date (unit day)


def parse_time(text: str, default_zone: str | None = "UTC") -> ParsedTime | None:
    """A TD time string (`2015-01-01`, `2015-01-01 15:25:26`, `...T...Z`, `2013-01-01 JST`,
    `2013-01-01 00:00:00 +0900`) as an aware time; None if it is not one."""
    found = _TIME_STRING.match(text.strip())
    if not found:
        return None
    try:
        day = date.fromisoformat(found["date"])
        clock = found["time"]
        local = datetime.combine(
            day, datetime.strptime(clock, "%H:%M:%S").time() if clock else datetime.min.time()
        )
    except ValueError:
        return None
    if found["offset"]:
        offset = found["offset"]
        if offset == "Z":
            tz: tzinfo = UTC
        else:
            sign, digits = offset[0], offset[1:].replace(":", "")
            tz = _fixed(sign, digits[:2], digits[2:] or None).tz
    elif found["zone"]:
        try:
            tz = zone(found["zone"]).tz
        except TdTimeError:
            return None
    else:
        tz = zone(default_zone).tz
    return ParsedTime(local.replace(tzinfo=tz), clock is not None)


def unixtime(text: str, default_zone: str | None = "UTC") -> int | None:
    """TD_TIME_PARSE: unix seconds of a time string, None if it does not parse."""
    parsed = parse_time(text, default_zone)
    return None if parsed is None else int(parsed.when.timestamp() // 1)


def bound(value: str, kind: str, default_zone: str | None, function: str) -> int:
    """A time argument of TD_TIME_RANGE / TD_TIME_ADD: a number is unix seconds, a string a
    time in `default_zone` unless it names its own. Refused (not NULL) when it is neither."""
    if kind != "VARCHAR":
        try:
            return int(float(value) // 1)
        except ValueError:
            raise TdTimeError(f"{function}: {value!r} is not a unix time") from None
    found = unixtime(value, default_zone)
    if found is None:
        raise TdTimeError(
            f"{function}: {value!r} is not a time TD reads; use 'yyyy-MM-dd', "
            "'yyyy-MM-dd HH:mm:ss' (optionally with a zone, e.g. '2024-01-01 JST') or unix seconds"
        )
    return found


_DURATION = re.compile(r"^([+-]?)((?:\d+[wdhms])+)$")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def duration_seconds(text: str) -> int:
    """TD_TIME_ADD's duration (`1d`, `-1h`, `1d12h30m`, `-2w`): seconds. Months and years
    have no fixed length, so TD takes neither."""
    found = _DURATION.match(text.strip())
    if not found:
        raise TdTimeError(
            f"TD_TIME_ADD: {text!r} is not a duration; use a count and unit w, d, h, m or s, "
            "e.g. '1d', '-1h', '1d12h30m' (months and years are not taken)"
        )
    seconds = sum(int(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(found[2]))
    return -seconds if found[1] == "-" else seconds


# -- TD_INTERVAL: airframe-metrics' TimeWindow -----------------------------------------

_UNITS = ("s", "m", "h", "d", "w", "M", "q", "y")


def _truncate(t: datetime, unit: str) -> datetime:
    if unit == "s":
        return t.replace(microsecond=0)
    if unit == "m":
        return t.replace(second=0, microsecond=0)
    if unit == "h":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return day
    if unit == "w":  # Monday-origin weeks (ISO)
        return day - timedelta(days=day.weekday())
    if unit == "M":
        return day.replace(day=1)
    if unit == "q":
        return day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
    return day.replace(month=1, day=1)  # y


def _plus_months(t: datetime, months: int) -> datetime:
    index = t.year * 12 + (t.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return t.replace(year=year, month=month + 1, day=min(t.day, last))


def _increment(t: datetime, unit: str, n: int) -> datetime:
    if unit in ("s", "m", "h", "d", "w"):
        return t + timedelta(
            seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        )
    if unit == "M":
        return _plus_months(t, n)
    if unit == "q":  # to the first month of the target quarter, as airframe does
        quarter = (t.month - 1) // 3 + n
        return _plus_months(t, 3 * quarter + 1 - t.month)
    return _plus_months(t, 12 * n)  # y


@dataclass(frozen=True)
class _Vector:
    x: int
    offset: int
    unit: str

    def window_from(self, context: datetime) -> tuple[datetime, datetime]:
        grid = _truncate(context, self.unit)
        start_offset = _increment(grid, self.unit, self.offset)
        end = _increment(start_offset, self.unit, self.x)
        start = start_offset if grid == context else context
        return (start, end) if start <= end else (end, start)


_NAMED = {
    "thisHour": _Vector(-1, 1, "h"),
    "today": _Vector(-1, 1, "d"),
    "thisWeek": _Vector(-1, 1, "w"),
    "thisMonth": _Vector(-1, 1, "M"),
    "thisYear": _Vector(-1, 1, "y"),
    "lastHour": _Vector(-1, 0, "h"),
    "yesterday": _Vector(-1, 0, "d"),
    "lastWeek": _Vector(-1, 0, "w"),
    "lastMonth": _Vector(-1, 0, "M"),
    "lastYear": _Vector(-1, 0, "y"),
    "nextHour": _Vector(1, 1, "h"),
    "tomorrow": _Vector(1, 1, "d"),
    "nextWeek": _Vector(1, 1, "w"),
    "nextMonth": _Vector(1, 1, "M"),
    "nextYear": _Vector(1, 1, "y"),
}
_VECTOR = re.compile(r"^(?P<prefix>[+-]|last|next)?(?P<num>[0-9]+)(?P<unit>[smdhwMqy])")


def _vector(text: str) -> _Vector:
    named = _NAMED.get(text)
    if named is not None:
        return named
    found = _VECTOR.match(text)
    if not found:
        raise TdTimeError(f"invalid duration {text!r}")
    n = int(found["num"])
    return _Vector(-n if found["prefix"] in ("-", "last") else n, 0, found["unit"])


def _exact(text: str, tz: tzinfo) -> tuple[datetime, str] | None:
    """airframe's TimeParser: a local date(-time) in the window's zone, or a zoned one."""
    found = re.match(
        r"^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}:\d{2})(\.\d{3})?(?:\s?([A-Za-z][\w/+\-]*|[+-]\d{2}:?\d{2}|Z))?)?$",
        text,
    )
    if not found:
        return None
    day, clock, _millis, zone_text = found.groups()
    try:
        base = datetime.combine(
            date.fromisoformat(day),
            datetime.strptime(clock, "%H:%M:%S").time() if clock else datetime.min.time(),
        )
    except ValueError:
        return None
    if zone_text and clock:
        if zone_text == "Z":
            at: tzinfo = UTC
        elif zone_text[0] in "+-":
            digits = zone_text[1:].replace(":", "")
            at = _fixed(zone_text[0], digits[:2], digits[2:]).tz
        else:
            try:
                at = zone(zone_text).tz
            except TdTimeError:
                return None
        return base.replace(tzinfo=at).astimezone(tz), "s"
    if zone_text:
        return None
    return base.replace(tzinfo=tz), ("s" if clock else "d")


def _parse_offset(
    text: str, unit: str, now: datetime, tz: tzinfo, adjustments: list[_Vector]
) -> datetime:
    nested = re.match(r"^([^/]+)/(.+)$", text)
    if nested:
        return _parse_offset(nested[2], unit, now, tz, [_vector(nested[1]), *adjustments])

    def adjust(t: datetime) -> datetime:
        for step in adjustments:
            t = _increment(t, step.unit, step.x)
        return t

    if text == "now":
        return adjust(now)
    try:
        vector = _vector(text)
    except TdTimeError:
        vector = None
    if vector is not None:
        window = vector.window_from(adjust(now))
        return window[0] if vector.x <= 0 else window[1]
    truncate = not text.endswith(")")
    found = _exact(text[:-1] if not truncate else text, tz)
    if found is None:
        raise TdTimeError(f"invalid offset {text!r}")
    t = adjust(found[0])
    return _truncate(t, unit) if truncate else t


def interval_window(text: str, zone_name: str | None, reference: int) -> tuple[int, int]:
    """TD_INTERVAL's [start, end) in unix seconds for `text` (e.g. '-1d', '-7d/now', '1M',
    '-1M/-1M', '-3d/2017-04-07') seen at `reference` (TD_SCHEDULED_TIME) in the zone.

    Like airframe, the window is computed in the zone's offset at the reference time."""
    found_zone = zone(zone_name)
    instant = datetime.fromtimestamp(reference, UTC)
    tz = timezone(found_zone.offset(instant))
    now = instant.astimezone(tz)
    source = text.strip()
    found = re.match(r"^([^/]+)(?:/(.*))?$", source)
    if not found:
        raise TdTimeError(f"TD_INTERVAL: invalid interval {text!r}")
    head, offset_text = found[1], found[2]
    try:
        exact = _exact(head, tz)
        if exact is not None:
            start = exact[0]
            if offset_text is None:
                end = _Vector(-1, 1, exact[1]).window_from(start)[1]
            else:
                end = _parse_offset(offset_text, "s", now, tz, [])
            if start > end:
                raise TdTimeError(f"TD_INTERVAL: {text!r} ends before it starts")
            window = (start, end)
        else:
            vector = _vector(head)
            if offset_text is None:
                window = vector.window_from(_truncate(now, vector.unit))
            else:
                window = vector.window_from(_parse_offset(offset_text, vector.unit, now, tz, []))
    except TdTimeError as e:
        message = str(e)
        if not message.startswith("TD_INTERVAL"):
            message = (
                f"TD_INTERVAL: {message} in {text!r}; use a duration like '-1d', '-7d/now', "
                "'1M', '-1M/-1M' or '-3d/2017-04-07' (units s m h d w M q y)"
            )
        raise TdTimeError(message) from None
    return int(window[0].timestamp()), int(window[1].timestamp())


# -- TD_TIME_STRING --------------------------------------------------------------------

_TIME_STRING_UNITS = {
    "y": ("year", "%Y"),
    "q": ("quarter", "%Y-%m"),
    "M": ("month", "%Y-%m"),
    "w": ("week", "%Y-%m-%d"),
    "d": ("day", "%Y-%m-%d"),
    "h": ("hour", "%Y-%m-%d %H"),
    "m": ("minute", "%Y-%m-%d %H:%M"),
    "s": ("second", "%Y-%m-%d %H:%M:%S"),
}
FULL_TIMESTAMP = "%Y-%m-%d %H:%M:%S"


def time_string_code(code: str) -> tuple[str, str, bool]:
    """TD_TIME_STRING's code ('d', 'd!', ...): (DuckDB date_trunc unit, strftime pattern,
    whether the zone offset follows)."""
    text = code.strip()
    bang = text.endswith("!")
    unit = _TIME_STRING_UNITS.get(text[:-1] if bang else text)
    if unit is None:
        raise TdTimeError(
            f"TD_TIME_STRING: unknown format {code!r}; use y, q, M, w, d, h, m or s, with '!' "
            "for the truncated text alone (e.g. 'd!' -> 2019-12-12)"
        )
    return (unit[0], unit[1], False) if bang else (unit[0], FULL_TIMESTAMP, True)


def offset_text(seconds: int) -> str:
    """airframe's TimeStampFormatter offset: +HHMM, `Z` for UTC."""
    if seconds == 0:
        return "Z"
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def time_string(t: int, code: str, zone_name: str | None = "UTC") -> str:
    """TD_TIME_STRING in Python (the SQL macro computes the same; tests hold them together)."""
    unit, pattern, with_offset = time_string_code(code)
    found = zone(zone_name)
    local = datetime.fromtimestamp(t, UTC).astimezone(found.tz)
    short = {"year": "y", "quarter": "q", "month": "M", "week": "w", "day": "d"}
    short |= {"hour": "h", "minute": "m", "second": "s"}
    truncated = _truncate(local.replace(tzinfo=None), short[unit])
    aware = truncated.replace(tzinfo=found.tz)
    text = truncated.strftime(pattern)
    if with_offset:
        text += offset_text(int(found.offset(aware).total_seconds()))
    return text


# -- TD_TIME_FORMAT: java.text.SimpleDateFormat ------------------------------------------

_PATTERN_LETTERS = frozenset("GyYMLwWDdFEuaHkKhmsSzZX")
_MONTHS = list(calendar.month_name)
_MONTHS_SHORT = list(calendar.month_abbr)
_DAYS = list(calendar.day_name)  # Monday first
_DAYS_SHORT = list(calendar.day_abbr)


@lru_cache(maxsize=256)
def _tokens(pattern: str) -> tuple[tuple[str, int | str], ...]:
    """(letter, count) for a pattern field, ('', text) for literal text."""
    out: list[tuple[str, int | str]] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                out.append(("", "'"))
                i += 2
                continue
            end = i + 1
            text = []
            while end < n:
                if pattern[end] == "'":
                    if end + 1 < n and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            if end >= n:
                raise TdTimeError(f"TD_TIME_FORMAT: unterminated quote in format {pattern!r}")
            out.append(("", "".join(text)))
            i = end + 1
        elif c.isascii() and c.isalpha():
            if c not in _PATTERN_LETTERS:
                raise TdTimeError(
                    f"TD_TIME_FORMAT: illegal pattern character {c!r} in {pattern!r}; quote "
                    "literal text ('T')"
                )
            j = i
            while j < n and pattern[j] == c:
                j += 1
            out.append((c, j - i))
            i = j
        else:
            out.append(("", c))
            i += 1
    return tuple(out)


def _us_week_start(year: int) -> date:
    """Sunday on or before Jan 1: the first day of week 1 (Locale.US: Sunday-first, 1 day)."""
    jan1 = date(year, 1, 1)
    return jan1 - timedelta(days=(jan1.weekday() + 1) % 7)


def _us_week(day: date) -> tuple[int, int]:
    year = day.year
    if day >= _us_week_start(year + 1):
        year += 1
    elif day < _us_week_start(year):
        year -= 1
    return year, (day - _us_week_start(year)).days // 7 + 1


def _zone_text(when: datetime, found: Zone, long: bool) -> str:
    offset = int(found.offset(when).total_seconds())
    if found.tz is UTC:
        return "Coordinated Universal Time" if long else "UTC"
    if found.abbreviation or isinstance(found.tz, timezone):
        sign = "-" if offset < 0 else "+"
        minutes = abs(offset) // 60
        return f"GMT{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return when.tzname() or ""


def _number(value: int, count: int) -> str:
    return str(value).zfill(count)


def time_format(t: int, pattern: str, zone_name: str | None = "UTC") -> str:
    """TD_TIME_FORMAT: unix seconds in `pattern` (SimpleDateFormat letters) in the zone."""
    found = zone(zone_name)
    when = datetime.fromtimestamp(t, UTC).astimezone(found.tz)
    out = []
    for letter, count in _tokens(pattern):
        if letter == "":
            out.append(str(count))
            continue
        assert isinstance(count, int)
        out.append(_field(when, letter, count, found))
    return "".join(out)


def _week_of_month(when: datetime) -> int:
    first = when.replace(day=1)
    return (when.day - 1 + (first.weekday() + 1) % 7) // 7 + 1


# SimpleDateFormat's numeric fields, zero-padded to the letter's count
_NUMERIC_FIELDS: dict[str, Callable[[datetime], int]] = {
    "w": lambda when: _us_week(when.date())[1],
    "W": _week_of_month,
    "D": lambda when: when.timetuple().tm_yday,
    "d": lambda when: when.day,
    "F": lambda when: (when.day - 1) // 7 + 1,
    "u": lambda when: when.isoweekday(),
    "H": lambda when: when.hour,
    "k": lambda when: when.hour or 24,
    "K": lambda when: when.hour % 12,
    "h": lambda when: when.hour % 12 or 12,
    "m": lambda when: when.minute,
    "s": lambda when: when.second,
    "S": lambda when: 0,  # TD's times are whole seconds
}


def _field(when: datetime, letter: str, count: int, found: Zone) -> str:
    numeric = _NUMERIC_FIELDS.get(letter)
    if numeric is not None:
        return _number(numeric(when), count)
    if letter == "G":
        return "AD" if when.year > 0 else "BC"
    if letter in ("y", "Y"):
        year = when.year if letter == "y" else _us_week(when.date())[0]
        return _number(year % 100, 2) if count == 2 else _number(year, count)
    if letter in ("M", "L"):
        return _month(when.month, count)
    if letter == "E":
        return _DAYS[when.weekday()] if count >= 4 else _DAYS_SHORT[when.weekday()]
    if letter == "a":
        return "AM" if when.hour < 12 else "PM"
    if letter == "z":
        return _zone_text(when, found, count >= 4)
    return _offset_text(when, letter, count, found)


def _month(month: int, count: int) -> str:
    if count >= 4:
        return _MONTHS[month]
    if count == 3:
        return _MONTHS_SHORT[month]
    return _number(month, count)


def _offset_text(when: datetime, letter: str, count: int, found: Zone) -> str:
    """`Z` (+0900) and `X` (Z, +09, +0900, +09:00 by count)."""
    offset = int(found.offset(when).total_seconds())
    sign = "-" if offset < 0 else "+"
    minutes = abs(offset) // 60
    hh, mm = f"{minutes // 60:02d}", f"{minutes % 60:02d}"
    if letter == "Z":
        return f"{sign}{hh}{mm}"
    if offset == 0:  # X
        return "Z"
    return {1: f"{sign}{hh}", 2: f"{sign}{hh}{mm}"}.get(count, f"{sign}{hh}:{mm}")


# strftime equivalents of the fields DuckDB prints exactly (vectorized, no Python per row)
_STRFTIME = {
    ("M", 1): "%-m",
    ("M", 2): "%m",
    ("M", 3): "%b",
    ("d", 1): "%-d",
    ("d", 2): "%d",
    ("H", 1): "%-H",
    ("H", 2): "%H",
    ("h", 1): "%-I",
    ("h", 2): "%I",
    ("m", 1): "%-M",
    ("m", 2): "%M",
    ("s", 1): "%-S",
    ("s", 2): "%S",
    ("D", 3): "%j",
    ("D", 1): "%-j",
    ("u", 1): "%u",
    ("y", 2): "%y",
}


def strftime_pattern(pattern: str) -> str | None:
    """The DuckDB strftime pattern printing exactly what `pattern` prints for years
    1000-9999, or None when some field needs the Python formatter."""
    out = []
    for letter, count in _tokens(pattern):
        if letter == "":
            out.append(str(count).replace("%", "%%"))
            continue
        assert isinstance(count, int)
        if letter == "y" and count != 2:
            if count > 4:
                return None
            out.append("%Y")
        elif letter == "M" and count >= 4:
            out.append("%B")
        elif letter == "E":
            out.append("%A" if count >= 4 else "%a")
        elif letter == "a":
            out.append("%p")
        elif letter == "S":
            out.append("0" * count)
        elif letter == "G":
            out.append("AD")
        elif (letter, count) in _STRFTIME:
            out.append(_STRFTIME[(letter, count)])
        else:
            return None
    return "".join(out)
