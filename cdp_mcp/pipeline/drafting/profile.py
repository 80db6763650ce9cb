"""Profile one object from a bounded sample held in a DuckDB table.

Every figure is computed the way the pipeline will treat the data: a value is missing when
staging would make it NULL (staging_rules.NULL_TEXTS), an email or phone is valid when
staging's `{col}_valid` would be true (the rule in generate/templates/staging/_rules.j2),
a column's kind is staging_rules.column_kind's, and a timestamp parses when the loads'
parsing (core/timeparse.py) reads it. So the evidence a draft quotes is what the run sees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime

import duckdb

from cdp_mcp.core import pii, time_formats
from cdp_mcp.core.json_keys import json_keys
from cdp_mcp.core.schema import Column, duckdb_type
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.core.staging_rules import NULL_TEXTS, column_kind, staging_inputs
from cdp_mcp.core.timeparse import parsed_timestamp_sql
from cdp_mcp.core.unify_plan import EMAIL_INVALID_TEXTS, PHONE_INVALID_TEXTS
from cdp_mcp.core.value_shapes import sample_shapes
from cdp_mcp.pipeline.drafting.models import Choice, ColumnInfo, Identifier, ObjectInfo

# staging's validity of an email (generate/templates/staging/_rules.j2, EMAIL_RE), applied
# to the trimmed, lower-cased value
EMAIL_RE = "^[a-z0-9._%+-]+@[a-z0-9-]+([.][a-z0-9-]+)*[.][a-z]{2,}$"
KNOWN_PLACEHOLDERS = {"email": EMAIL_INVALID_TEXTS, "phone": PHONE_INVALID_TEXTS}
MIN_KEY_SHARE = 0.05  # an email/phone column valid in fewer rows is reported, not keyed
MIN_TIME_SHARE = 0.9  # of the filled values, for an incremental field
MAX_SHAPES = 40  # timestamp value shapes examined per column
# A repeated value is a suspected placeholder when it is this many times the median count.
PLACEHOLDER_FACTOR = 10
PLACEHOLDER_MIN = 5

# Incremental-field names in order of preference: the time a record last changed.
_UPDATED = re.compile(r"(^|_)(updated|modified|changed|last_modified|last_updated)(_|$)")
_CREATED = re.compile(r"(^|_)(created|inserted|added)(_|$)")
# Columns that hold personal data by their name (beside emails and phones, by kind).
_PII_NAMES = {
    "name": ("first_name", "last_name", "full_name", "surname", "given_name", "family_name",
             "middle_name", "firstname", "lastname", "fullname", "contact_name",
             "customer_name", "name"),
    "address": ("address", "street", "address1", "address2", "address_line1",
                "address_line2", "zip", "zipcode", "zip_code", "postal_code", "postcode"),
    "birth date": ("birthday", "birth_date", "date_of_birth", "dob", "birthdate"),
    "national id": ("ssn", "social_security_number", "passport", "passport_number",
                    "national_id", "tax_id"),
    "ip address": ("ip", "ip_address", "ipaddress"),
}  # fmt: skip


def _text(column: str) -> str:
    """The value as staging cleans it: trimmed text, NULL for the texts meaning none."""
    raw = f"trim(CAST({quote_ident(column)} AS VARCHAR))"
    nulls = ", ".join(sql_string(t) for t in NULL_TEXTS)
    return f"CASE WHEN lower({raw}) IN ({nulls}) THEN NULL ELSE {raw} END"


def _valid_sql(column: Column, kind: str) -> str:
    v = _text(column.name)
    if kind == "email":
        return f"coalesce(regexp_matches(lower({v}), {sql_string(EMAIL_RE)}), false)"
    if column.type in ("long", "double"):
        v = f"CAST(TRY_CAST({quote_ident(column.name)} AS BIGINT) AS VARCHAR)"
    digits = f"regexp_replace({v}, '[^0-9]', '', 'g')"
    us = (
        f"CASE WHEN length({digits}) = 11 AND {digits}[1] = '1' THEN {digits}[2:] ELSE {digits} END"
    )
    return f"coalesce(length({us}) = 10, false)"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def rows_words(n: int) -> str:
    return f"{n:,} sampled row{'s' if n != 1 else ''}"


def pii_of(name: str, kind: str) -> str | None:
    if kind in ("email", "phone"):
        return kind
    for what, names in _PII_NAMES.items():
        if name in names or any(name.endswith(f"_{n}") for n in names if n != "name"):
            return what
    return None


def profile_object(
    con: duckdb.DuckDBPyConnection,
    table: str,
    name: str,
    columns: list[Column],
    rows: int,
    sampled: int,
    incremental_hint: str = "",
) -> ObjectInfo:
    """The object's profile from `table` (its sample, `sampled` of `rows` rows). Each key
    of a JSON column that staging extracts (`extra.work_email` -> `extra_work_email`) is
    profiled as the column it becomes; `columns` without json_keys get them from the
    sample."""
    table, columns = _with_json_keys(con, table, columns, incremental_hint)
    select = f"SELECT * FROM {quote_ident(table)}"
    shapes = sample_shapes(con, select, columns)
    shaped = [c.model_copy(update={"shape": shapes.get(c.name)}) for c in columns]
    kinds = {c.name: column_kind(c, incremental_hint) for c in shaped}
    infos = _column_stats(con, table, shaped, kinds, sampled)
    for info in infos:
        if info.kind == "timestamp" or _looks_like_time(con, table, info, sampled):
            _time_stats(con, table, info, shaped, sampled)
    incremental = _incremental_choice(infos, sampled)
    key = _primary_key(con, table, infos, name, incremental.column, sampled)
    identifiers = _identifiers(infos, key, sampled)
    formats = sorted({f for i in infos if i.name == incremental.column for f in _needed(i)})
    holders = [i for i in identifiers if i.key in ("email", "phone")]
    return ObjectInfo(
        name=name,
        rows=rows,
        sampled=sampled,
        columns=infos,
        primary_key=key,
        incremental_field=incremental,
        identifiers=identifiers,
        time_formats=formats,
        placeholders=_placeholders(con, table, holders),
    )


def _with_json_keys(
    con: duckdb.DuckDBPyConnection, table: str, columns: list[Column], hint: str
) -> tuple[str, list[Column]]:
    """`table` with a column per JSON key staging extracts, and the columns as staged."""
    if not any(c.json_keys for c in columns):
        found = json_keys(con, quote_ident(table), [(c.name, duckdb_type(c.type)) for c in columns])
        columns = [c.model_copy(update={"json_keys": found.get(c.name, ())}) for c in columns]
    inputs = staging_inputs(columns, hint)
    extracted = [i for i in inputs if i.json_of is not None and i.json_key is not None]
    if not extracted:
        return table, columns
    paths = [sql_string("$." + json.dumps(i.json_key)) for i in extracted]  # $."work_email"
    exprs = ", ".join(
        f"TRY(json_extract_string({quote_ident(str(i.json_of))}, {path})) "
        f"AS {quote_ident(i.column.name)}"
        for i, path in zip(extracted, paths, strict=True)
    )
    staged = f"{table}_staged"
    con.execute(
        f"CREATE TEMP TABLE {quote_ident(staged)} AS SELECT *, {exprs} FROM {quote_ident(table)}"
    )
    return staged, [i.column for i in inputs]


def _column_stats(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[Column],
    kinds: Mapping[str, str],
    sampled: int,
) -> list[ColumnInfo]:
    exprs = []
    for c in columns:
        v = _text(c.name)
        exprs.append(f"count({v}), count(DISTINCT {v})")
        kind = kinds[c.name]
        exprs.append(f"count_if({_valid_sql(c, kind)})" if kind in ("email", "phone") else "0")
    row = con.execute(f"SELECT {', '.join(exprs)} FROM {quote_ident(table)}").fetchone() or ()
    out = []
    for i, c in enumerate(columns):
        filled, distinct, valid = (int(x or 0) for x in row[3 * i : 3 * i + 3])
        kind = kinds[c.name]
        out.append(
            ColumnInfo(
                name=c.name,
                type=c.type,
                filled=round(filled / sampled, 4) if sampled else 0.0,
                distinct=distinct,
                kind=kind,
                valid=round(valid / sampled, 4) if sampled and kind in ("email", "phone") else None,
                pii=pii_of(c.name, kind),
            )
        )
    return out


def _looks_like_time(
    con: duckdb.DuckDBPyConnection, table: str, info: ColumnInfo, sampled: int
) -> bool:
    """A text column not named as a time whose filled values mostly parse as one."""
    if info.type != "string" or info.kind != "plain" or not sampled or not info.filled:
        return False
    # read by the built-in forms, or by one a time_formats entry would name (DD/MM/YYYY)
    parsed = parsed_timestamp_sql(quote_ident(info.name), info.type, time_formats.CANDIDATES)
    digits_only = f"regexp_matches(trim({quote_ident(info.name)}), '^[0-9]+$')"
    row = con.execute(
        f"SELECT count({parsed}) FILTER (WHERE NOT {digits_only}) FROM {quote_ident(table)}"
    ).fetchone()
    found = int(row[0] or 0) if row else 0
    return found >= MIN_TIME_SHARE * info.filled * sampled


def _time_stats(
    con: duckdb.DuckDBPyConnection,
    table: str,
    info: ColumnInfo,
    columns: list[Column],
    sampled: int,
) -> None:
    """Fill in `parsed` and `formats` of a timestamp column (and `time_formats` needs)."""
    col = quote_ident(info.name)
    parsed = parsed_timestamp_sql(col, info.type)
    v = _text(info.name)
    shapes = con.execute(
        f"SELECT regexp_replace({v}, '[0-9]', '9', 'g') AS shape, count(*), any_value({v}), "
        f"count({parsed}) FROM {quote_ident(table)} WHERE {v} IS NOT NULL "
        f"GROUP BY shape ORDER BY count(*) DESC LIMIT {MAX_SHAPES}"
    ).fetchall()
    total = con.execute(f"SELECT count({parsed}) FROM {quote_ident(table)}").fetchone()
    ok = int(total[0] or 0) if total else 0
    forms: dict[str, int] = {}
    for _shape, count, example, parsed_count in shapes:
        label = form_of(str(example), bool(parsed_count))
        forms[label] = forms.get(label, 0) + int(count)
    info.formats = [f for f, _ in sorted(forms.items(), key=lambda kv: -kv[1])]
    needed = _needed(info)
    if needed:  # what parses once the config names the forms it needs
        with_formats = parsed_timestamp_sql(col, info.type, needed)
        total = con.execute(f"SELECT count({with_formats}) FROM {quote_ident(table)}").fetchone()
        ok = int(total[0] or 0) if total else 0
    info.parsed = round(ok / sampled, 4) if sampled else 0.0
    if info.kind == "plain":
        info.kind = "timestamp"


_ISO = [
    (
        re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z$"),
        "ISO 8601 UTC (YYYY-MM-DDTHH:mm:ssZ)",
    ),
    (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?\.\d+Z$"), "ISO 8601 UTC with fraction"),
    (
        re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(\.\d+)?[+-]\d{2}:?\d{2}$"),
        "ISO 8601 with offset (YYYY-MM-DDTHH:mm:ss.SSS+hh:mm)",
    ),
    (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(\.\d+)?$"), "ISO 8601 without zone"),
    (re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?(\.\d+)?$"), "YYYY-MM-DD HH:mm:ss"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "YYYY-MM-DD"),
    (re.compile(r"^\d{9,10}$"), "unix seconds"),
    (re.compile(r"^\d{12,13}$"), "unix milliseconds"),
]
# timeparse's built-in non-ISO layouts, in the config's tokens
_BUILT_IN = {
    "%Y/%m/%d %H:%M:%S": "YYYY/MM/DD HH:mm:ss",
    "%Y/%m/%d": "YYYY/MM/DD",
    "%m/%d/%Y %H:%M:%S": "MM/DD/YYYY HH:mm:ss",
    "%m/%d/%Y": "MM/DD/YYYY",
    "%m/%d/%Y %I:%M %p": "MM/DD/YYYY h:mm AM/PM",
    "%m/%d/%Y %I:%M:%S %p": "MM/DD/YYYY h:mm:ss AM/PM",
    "%d.%m.%Y %H:%M:%S": "DD.MM.YYYY HH:mm:ss",
    "%d.%m.%Y %H:%M": "DD.MM.YYYY HH:mm",
    "%d.%m.%Y": "DD.MM.YYYY",
}
NEEDS_FORMAT = "needs time_formats: "  # a form only a configured time format reads
UNREAD = "unreadable"


def form_of(value: str, parsed: bool) -> str:
    """The form of one timestamp text, in words (or the time_formats form it needs)."""
    text = value.strip()
    for pattern, label in _ISO:
        if pattern.match(text):
            return label
    if parsed:
        for layout, label in _BUILT_IN.items():
            try:
                datetime.strptime(text, layout)
            except ValueError:
                continue
            return label
        return "other form the loads read"
    suggested = time_formats.suggest([text])
    return f"{NEEDS_FORMAT}{suggested}" if suggested else UNREAD


def _needed(info: ColumnInfo) -> list[str]:
    return [f.removeprefix(NEEDS_FORMAT) for f in info.formats if f.startswith(NEEDS_FORMAT)]


def _time_rank(name: str) -> int:
    if _UPDATED.search(name):
        return 0
    if _CREATED.search(name):
        return 2
    return 1


def time_candidates(infos: list[ColumnInfo]) -> list[ColumnInfo]:
    """Text timestamp columns that parse (or would, with time_formats) in nearly every
    filled row: the incremental field's candidates, best first."""
    out = []
    for i in infos:
        if i.type != "string" or i.kind != "timestamp" or not i.filled:
            continue
        read_with_formats = bool(_needed(i)) and UNREAD not in i.formats
        if read_with_formats or (i.parsed or 0) >= MIN_TIME_SHARE * i.filled:
            out.append(i)
    return sorted(out, key=lambda i: (_time_rank(i.name), -(i.parsed or 0), i.name))


def time_evidence(info: ColumnInfo, sampled: int) -> str:
    forms = ", ".join(info.formats[:4]) or "no values"
    what = "last change" if _time_rank(info.name) == 0 else "a time"
    return (
        f"{what}; parses in {_pct(info.parsed or 0)} of {rows_words(sampled)} "
        f"(filled in {_pct(info.filled)}); forms: {forms}"
    )


def _incremental_choice(infos: list[ColumnInfo], sampled: int) -> Choice:
    found = time_candidates(infos)
    if not found:
        return Choice(column=None, evidence="no text column holds timestamps in the sample")
    return Choice(column=found[0].name, evidence=time_evidence(found[0], sampled))


def _id_rank(name: str, obj: str) -> int | None:
    singular = obj[:-1] if obj.endswith("s") else obj
    if name in ("id", f"{obj}_id", f"{singular}_id", "uuid", f"{singular}_uuid"):
        return 0
    if name.endswith(("_id", "_uuid", "_key")) or name in ("key", "number"):
        return 1
    return None


def _primary_key(
    con: duckdb.DuckDBPyConnection,
    table: str,
    infos: list[ColumnInfo],
    obj: str,
    incremental: str | None,
    sampled: int,
) -> Choice:
    """A column filled in every sampled row whose repeats are versions of one record
    (each repeat has its own incremental-field value), preferring `id`-like names."""
    if not sampled:
        return Choice(column=None, evidence="the sample is empty")
    scored = []
    for info in infos:
        rank = _id_rank(info.name, obj)
        if rank is None or info.type not in ("long", "string") or info.filled < 1.0:
            continue
        if info.kind in ("email", "phone"):
            continue
        scored.append((rank, -info.distinct, info))
    for _rank, _, info in sorted(scored, key=lambda t: (t[0], t[1])):
        repeats = sampled - info.distinct
        if repeats == 0:
            why = f"unique and filled in all {rows_words(sampled)}"
            return Choice(column=info.name, evidence=f"{why}; named like an id")
        if incremental is None or info.distinct < 0.5 * sampled:
            continue
        pair = f"{quote_ident(info.name)}, {quote_ident(incremental)}"
        row = con.execute(f"SELECT count(DISTINCT ({pair})) FROM {quote_ident(table)}").fetchone()
        if row and int(row[0]) == sampled:
            return Choice(
                column=info.name,
                evidence=(
                    f"filled in all {rows_words(sampled)}, {info.distinct:,} distinct: the "
                    f"{repeats:,} {'repeat is a newer version' if repeats == 1 else 'repeats are newer versions'} "
                    f"(each has its own {incremental})"
                ),
            )
    return Choice(
        column=None,
        evidence=f"no id-like column is filled and unique (per {incremental or 'version'}) "
        f"in the {rows_words(sampled)}",
    )


def _identifiers(infos: list[ColumnInfo], key: Choice, sampled: int) -> list[Identifier]:
    out = []
    for info in infos:
        if info.kind in ("email", "phone"):
            what = "emails" if info.kind == "email" else "phones (10 digits)"
            out.append(
                Identifier(
                    column=info.name,
                    key=info.kind,
                    valid=info.valid or 0.0,
                    evidence=f"{_pct(info.valid or 0)} valid {what} in {rows_words(sampled)}",
                )
            )
        elif info.name == key.column or (
            info.name.endswith("_id") and info.type in ("long", "string") and info.filled > 0
        ):
            out.append(
                Identifier(
                    column=info.name,
                    key="id",
                    valid=info.filled,
                    evidence=f"filled in {_pct(info.filled)} of {rows_words(sampled)}, "
                    f"{info.distinct:,} distinct",
                )
            )
    return out


def _staged(ident: Identifier) -> str:
    """The value as staging stores it: an email lower-cased, a phone its digits."""
    v = _text(ident.column)
    if ident.key == "email":
        return f"lower({v})"
    digits = f"regexp_replace({v}, '[^0-9]', '', 'g')"
    return (
        f"CASE WHEN length({digits}) = 11 AND {digits}[1] = '1' THEN {digits}[2:] ELSE {digits} END"
    )


def _placeholders(
    con: duckdb.DuckDBPyConnection, table: str, identifiers: list[Identifier]
) -> list[str]:
    """Email or phone values that would merge unrelated people: the known placeholders
    unification leaves out anyway (named as they are: no one's data), and any other value
    repeated far more than the column's others (masked: it may be a person's)."""
    out = []
    for ident in identifiers:
        known = KNOWN_PLACEHOLDERS[ident.key]
        v = _staged(ident)
        rows = con.execute(
            f"WITH c AS (SELECT {v} AS v, count(*) AS n FROM {quote_ident(table)} "
            f"WHERE nullif({v}, '') IS NOT NULL GROUP BY 1) "
            "SELECT v, n, (SELECT median(n) FROM c) FROM c "
            f"WHERE v IN ({', '.join(sql_string(t) for t in known if t)}) "
            f"OR n >= greatest({PLACEHOLDER_MIN}, {PLACEHOLDER_FACTOR} * "
            "(SELECT median(n) FROM c)) ORDER BY n DESC, v LIMIT 5"
        ).fetchall()
        for value, count, _median in rows:
            if value in known:
                out.append(f"{ident.column}: {value} (a known placeholder) in {int(count):,} rows")
            else:
                masked = pii.mask_value(ident.key, str(value))
                out.append(f"{ident.column}: {masked} in {int(count):,} rows")
    return out
