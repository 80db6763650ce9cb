"""`ingestion.time_formats`: timestamp forms a person names for their data, beyond the ones
every load reads (timeparse.py, `parse_ts` in generate/templates/_macros.j2).

A form is written in a few tokens a person knows from spreadsheets: `DD/MM/YYYY`,
`DD.MM.YYYY HH:mm`, `MM/DD/YYYY h:mm AM/PM`. Each token maps to the pattern letters of the
three engines that parse it: DuckDB's strptime (the local runner), Presto's date_parse
(MySQL letters, Joda underneath) and Hive's unix_timestamp (Java SimpleDateFormat), the last
guarded by a regexp of the form's exact shape because SimpleDateFormat reads prefixes. Only
these tokens and the separators / - . : and space are accepted, so a form is safe to put in
SQL (it is still quoted as a literal there).

Numbers take one or two digits in every form (`MM` reads '1' and '01'), as each engine's
parser does anyway; naive values are UTC.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import NamedTuple

MAX_FORMATS = 8
MAX_LENGTH = 40
# token -> (DuckDB strptime, Presto date_parse, Hive SimpleDateFormat, guard regexp)
_TOKENS: dict[str, tuple[str, str, str, str]] = {
    "YYYY": ("%Y", "%Y", "yyyy", "[0-9]{4}"),
    "MM": ("%m", "%m", "MM", "[0-9]{1,2}"),
    "M": ("%m", "%m", "MM", "[0-9]{1,2}"),
    "DD": ("%d", "%d", "dd", "[0-9]{1,2}"),
    "D": ("%d", "%d", "dd", "[0-9]{1,2}"),
    "HH": ("%H", "%H", "HH", "[0-9]{1,2}"),
    "H": ("%H", "%H", "HH", "[0-9]{1,2}"),
    "hh": ("%I", "%l", "h", "[0-9]{1,2}"),
    "h": ("%I", "%l", "h", "[0-9]{1,2}"),
    "mm": ("%M", "%i", "mm", "[0-9]{2}"),
    "ss": ("%S", "%s", "ss", "[0-9]{2}"),
    "AM/PM": ("%p", "%p", "a", "[AaPp][Mm]"),
}
_FIELD = {
    "YYYY": "year",
    "MM": "month",
    "M": "month",
    "DD": "day",
    "D": "day",
    "HH": "hour",
    "H": "hour",
    "hh": "hour12",
    "h": "hour12",
    "mm": "minute",
    "ss": "second",
    "AM/PM": "ampm",
}
_SEPARATORS = {"/": "/", "-": "-", ".": "[.]", ":": ":", " ": " "}
_LEXER = re.compile("|".join(re.escape(t) for t in sorted(_TOKENS, key=len, reverse=True)))
HELP = (
    "write it in the tokens YYYY, MM (or M), DD (or D), HH (or H: 24-hour), hh (or h: "
    "12-hour, with AM/PM), mm, ss, AM/PM and the separators / - . : and space, e.g. "
    "'DD/MM/YYYY', 'DD.MM.YYYY HH:mm', 'MM/DD/YYYY h:mm AM/PM'"
)


class TimeFormat(NamedTuple):
    text: str  # as the config writes it
    duckdb: str
    presto: str
    hive: str
    hive_guard: str  # the whole text must match this before Hive parses it


def parse_format(text: str) -> TimeFormat:
    """The engines' patterns for a form; raises ValueError saying what is wrong."""
    if not text or len(text) > MAX_LENGTH:
        raise ValueError(f"a time format has 1 to {MAX_LENGTH} characters; {HELP}")
    parts: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    i = 0
    while i < len(text):
        m = _LEXER.match(text, i)
        if m:
            parts.append(_TOKENS[m.group()])
            seen.add(_FIELD[m.group()])
            i = m.end()
        elif text[i] in _SEPARATORS:
            sep = text[i]
            parts.append((sep, sep, sep, _SEPARATORS[sep]))
            i += 1
        else:
            raise ValueError(f"{text!r} has {text[i]!r}, which is no token or separator; {HELP}")
    if not {"year", "month", "day"} <= seen:
        raise ValueError(f"{text!r} needs a year, a month and a day (YYYY, MM, DD); {HELP}")
    if ("hour12" in seen) != ("ampm" in seen) or {"hour12", "hour"} <= seen:
        raise ValueError(f"{text!r}: a 12-hour hour (h, hh) goes with AM/PM and only with it")
    duckdb, presto, hive, guard = ("".join(p[k] for p in parts) for k in range(4))
    return TimeFormat(text, duckdb, presto, hive, f"^{guard}$")


def parse_formats(texts: list[str]) -> list[TimeFormat]:
    return [parse_format(t) for t in texts]


# Forms a suggestion is looked for among, when values parse in no configured or built-in form.
CANDIDATES = (
    "DD/MM/YYYY HH:mm:ss",
    "DD/MM/YYYY HH:mm",
    "DD/MM/YYYY",
    "DD-MM-YYYY HH:mm:ss",
    "DD-MM-YYYY HH:mm",
    "DD-MM-YYYY",
    "MM-DD-YYYY HH:mm",
    "MM-DD-YYYY",
    "YYYY.MM.DD HH:mm",
    "YYYY.MM.DD",
    "DD.MM.YYYY h:mm AM/PM",
    "DD/MM/YYYY h:mm AM/PM",
)


def suggest(samples: list[str]) -> str | None:
    """A candidate form every one of `samples` parses in, or None."""
    for text in CANDIDATES:
        layout = parse_format(text).duckdb
        try:
            for v in samples:
                datetime.strptime(v.strip(), layout)
        except ValueError:
            continue
        return text if samples else None
    return None
