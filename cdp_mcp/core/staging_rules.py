"""Which staging rule applies to a column, and the columns staging writes.

The staging SQL templates, the validation of the staging phase and unification's key
inference all read these, so the columns a transform writes are the columns the others
expect. The rules follow the seed plugin (cdp-staging) where it is right:

- text is trimmed and '', 'null', 'none', 'n/a', 'na' (any case) become NULL;
- `*email*` (also `*e_mail*`, a word `mail`, or a column whose sampled values are
  addresses): lower-cased; `{col}_valid` by regex; `{col}_hash` = SHA-256 hex of the valid,
  trimmed, lower-cased address (the form ad platforms match), NULL otherwise;
- a name about an address rather than the address (`email_opt_in`, `phone_verified`,
  `last_email_sent_at`: an email/phone word with opt, verified, status, count, ... or a
  timestamp suffix) is none of these unless its sampled values are addresses or numbers;
- `*phone*` (also the words mobile, tel, telephone, cell, ...; a name variant whose
  sampled values are not phone-shaped is not one) (text or number): digits only, a US leading 1 on 11 digits dropped;
  `{col}_valid` = 10 digits; `{col}_hash` of valid numbers only;
- timestamps (by name, text): `{col}_std` ('yyyy-MM-dd HH:mm:ss', UTC), `{col}_unixtime`,
  `{col}_date` ('yyyy-MM-dd'); the value itself is kept as loaded;
- money (amount, price, cost, tax, ... as text or double): ROUND(x, 2) as a double;
- a text column holding JSON objects: each top-level key with scalar values becomes
  `{col}_{key}`, itself staged by these rules (so `attributes_email` is an email);
- `time` is untouched; `source_system` and `load_timestamp` are added.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from cdp_mcp.core.schema import Column, snake_case

Kind = Literal["email", "phone", "timestamp", "money", "plain", "time"]
# How an output column is computed: the (cleaned) input value, a value derived from an
# input column, or one of the columns staging adds to every table.
Role = Literal[
    "value", "valid", "hash", "std", "unixtime", "date", "source_system", "load_timestamp"
]
NULL_TEXTS = ("", "null", "none", "n/a", "na")  # compared trimmed and lower-cased
_TS_SUFFIXES = ("_at", "_date", "_time", "_ts", "_timestamp", "_datetime")
_TS_NAMES = ("date", "timestamp", "datetime", "created", "updated")
# A column is money when one of these is a word of its snake_case name (total_price, tax).
_MONEY_WORDS = frozenset(
    ("amount", "price", "cost", "tax", "discount", "revenue", "subtotal", "total", "fee")
)
# Words of a column name that mean a phone number besides `phone` itself.
_PHONE_WORDS = frozenset(
    ("mobile", "tel", "telephone", "cell", "cellphone", "msisdn", "handy", "telefon")
)
# Words that make a name about an address rather than the address (email_opt_in,
# phone_verified, email_bounce_count): no identity, unless its values are addresses.
_ABOUT_WORDS = frozenset(
    (
        "opt", "optin", "optout", "consent", "verified", "confirmed", "subscribed",
        "unsubscribed", "bounced", "bounce", "status", "flag", "count", "sent", "opened",
        "clicked", "type", "domain", "preference", "preferences", "frequency", "enabled",
        "allowed", "marketing", "country", "code", "ext", "extension",
    )
)  # fmt: skip
# JSON keys extracted as columns: the ones both engines' path syntax takes (Hive's
# get_json_object reads `$.key` for keys of these characters only).
_JSON_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ -]*$")
MAX_JSON_KEYS = 64  # per JSON column; more would make very wide tables
ADDED_COLUMNS = [
    Column(name="source_system", type="string"),
    Column(name="load_timestamp", type="long"),
]
_ADDED_ROLES: tuple[Role, ...] = ("source_system", "load_timestamp")
_DERIVED: dict[Kind, list[tuple[Role, str]]] = {
    "email": [("valid", "boolean"), ("hash", "string")],
    "phone": [("valid", "boolean"), ("hash", "string")],
    "timestamp": [("std", "string"), ("unixtime", "long"), ("date", "string")],
}


class StagingInput(NamedTuple):
    """A value staging cleans: a column of the hist-union table, or a key extracted from
    one of its JSON columns (`json_of` names that column)."""

    column: Column  # the name and TD type as read (an extracted key reads as a string)
    kind: Kind
    json_of: str | None = None
    json_key: str | None = None


class StagingColumn(NamedTuple):
    """One output column of a staging table and where it comes from."""

    column: Column
    role: Role
    source: Column | None = None  # the staging input it is computed from (None: added)
    kind: Kind = "plain"  # the input's kind


def column_kind(col: Column, incremental_field: str) -> Kind:
    """Classify by name (and type), and a text column's sampled values (`col.shape`): the
    rules in DESIGN.md, decided once here."""
    name = col.name
    if name == "time":
        return "time"
    if _is_about_contact(name) and not _values_are_contacts(col):
        return _other_kind(col, incremental_field)
    if col.type in ("long", "double") and _is_phone_name(name):
        return "phone"  # a number column of phones is cleaned like text ones
    if col.type == "double":
        return "money" if _is_money(name) else "plain"
    if col.type != "string":
        return "plain"
    if "email" in name or col.shape == "email":
        return "email"
    if "phone" in name:
        return "phone"
    # Other spellings (e_mail, mail, mobile, tel, ...) unless the values say otherwise:
    # `mail_opt_in` of 'yes'/'no' is no address.
    words = set(name.split("_"))
    if (("e_mail" in name or "mail" in words) and col.shape in (None, "email")) or (
        not _PHONE_WORDS.isdisjoint(words) and col.shape in (None, "phone")
    ):
        return "email" if "mail" in words else "phone"
    return _other_kind(col, incremental_field)


def _other_kind(col: Column, incremental_field: str) -> Kind:
    """A column that carries no identity: a timestamp, money, or plain."""
    name = col.name
    if col.type == "double":
        return "money" if _is_money(name) else "plain"
    if col.type != "string":
        return "plain"
    if name == incremental_field or name.endswith(_TS_SUFFIXES) or name in _TS_NAMES:
        return "timestamp"
    if _is_money(name):
        return "money"
    return "plain"


def _is_about_contact(name: str) -> bool:
    """An email/phone word with a word saying the column is about it (`email_opt_in`,
    `last_email_sent_at`, `phone_verified`), not the address or number itself."""
    words = set(name.split("_"))
    contact = "email" in name or "phone" in name or "mail" in words or "e_mail" in name
    contact = contact or not _PHONE_WORDS.isdisjoint(words)
    about = not _ABOUT_WORDS.isdisjoint(words) or name.endswith(_TS_SUFFIXES)
    return contact and about


def _values_are_contacts(col: Column) -> bool:
    """The sampled values are addresses or numbers (`verified_phone` of phone numbers); a
    date (`email_sent_date` of '2024-01-31') has a phone's characters but is none."""
    return col.shape == "email" or (col.shape == "phone" and not col.name.endswith(_TS_SUFFIXES))


def _is_phone_name(name: str) -> bool:
    return "phone" in name or not _PHONE_WORDS.isdisjoint(name.split("_"))


def _is_money(name: str) -> bool:
    return not _MONEY_WORDS.isdisjoint(name.split("_"))


def output_type(col: Column, kind: Kind) -> str:
    """The TD type of a staged value: phones are text, money a double."""
    if kind == "phone":
        return "string"
    if kind == "money":
        return "double"
    return col.type


def json_key_columns(col: Column, taken: set[str]) -> list[tuple[str, str]]:
    """(key, output column name) for the keys of a JSON column that become columns; a name
    an earlier column has is skipped (that column wins), as are keys Hive cannot address."""
    out = []
    for key in col.json_keys[:MAX_JSON_KEYS]:
        name = f"{col.name}_{snake_case(key)}"
        if _JSON_KEY.match(key) and name not in taken:
            taken.add(name)
            out.append((key, name))
    return out


def staging_inputs(columns: list[Column], incremental_field: str) -> list[StagingInput]:
    """The values a staging table is computed from, in output order."""
    taken = {c.name for c in columns}
    out: list[StagingInput] = []
    for col in columns:
        out.append(StagingInput(col, column_kind(col, incremental_field)))
        if col.type == "string":
            for key, name in json_key_columns(col, taken):
                extracted = Column(name=name, type="string")
                kind = column_kind(extracted, incremental_field)
                out.append(StagingInput(extracted, kind, json_of=col.name, json_key=key))
    return out


def staging_plan(columns: list[Column], incremental_field: str) -> list[StagingColumn]:
    """The output columns of a staging table, in order, each with how it is computed.

    An input column always keeps its name; a derived or added column whose name an input
    column already has is left out (the input's own value wins), so names stay unique.
    """
    inputs = staging_inputs(columns, incremental_field)
    taken = {i.column.name for i in inputs}
    out: list[StagingColumn] = []
    for item in inputs:
        col, kind = item.column, item.kind
        value = Column(name=col.name, type=output_type(col, kind), shape=col.shape)
        out.append(StagingColumn(value, "value", col, kind))
        for role, td_type in _DERIVED.get(kind, []):
            name = f"{col.name}_{role}"
            if name not in taken:
                taken.add(name)
                out.append(StagingColumn(Column(name=name, type=td_type), role, col, kind))
    for added, added_role in zip(ADDED_COLUMNS, _ADDED_ROLES, strict=True):
        if added.name not in taken:
            out.append(StagingColumn(added, added_role))
    return out


def staging_columns(columns: list[Column], incremental_field: str) -> list[Column]:
    """The columns of a staging table built from a hist-union table with `columns`."""
    return [p.column for p in staging_plan(columns, incremental_field)]
