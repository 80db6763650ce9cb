"""Which staging rule applies to a column, and the columns staging adds.

The staging SQL templates and the validation of the staging phase both read these, so the
columns a transform writes are the columns validation expects.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from cdp_mcp.schema import Column

Kind = Literal["email", "phone", "timestamp", "plain", "time"]
# How an output column is computed: the (cleaned) input value, a value derived from an
# input column, or one of the columns staging adds to every table.
Role = Literal["value", "valid", "hash", "unixtime", "source_system", "load_timestamp"]
_TS_SUFFIXES = ("_at", "_date", "_time", "_ts", "_timestamp", "_datetime")
_TS_NAMES = ("date", "timestamp", "datetime", "created", "updated")
ADDED_COLUMNS = [
    Column(name="source_system", type="string"),
    Column(name="load_timestamp", type="long"),
]
_ADDED_ROLES: tuple[Role, ...] = ("source_system", "load_timestamp")
_DERIVED: dict[Kind, list[tuple[Role, str]]] = {
    "email": [("valid", "boolean"), ("hash", "string")],
    "phone": [("valid", "boolean"), ("hash", "string")],
    "timestamp": [("unixtime", "long")],
}


class StagingColumn(NamedTuple):
    """One output column of a staging table and where it comes from."""

    column: Column
    role: Role
    source: Column | None = None  # the input column it is computed from (None: added)
    kind: Kind = "plain"  # the input column's kind


def column_kind(col: Column, incremental_field: str) -> Kind:
    """Classify by name (and type): the rules in DESIGN.md, decided once here."""
    name = col.name
    if name == "time":
        return "time"
    if col.type != "string":
        return "plain"
    if "email" in name:
        return "email"
    if "phone" in name:
        return "phone"
    if name == incremental_field or name.endswith(_TS_SUFFIXES) or name in _TS_NAMES:
        return "timestamp"
    return "plain"


def staging_plan(columns: list[Column], incremental_field: str) -> list[StagingColumn]:
    """The output columns of a staging table, in order, each with how it is computed.

    An input column always keeps its name; a derived or added column whose name an input
    column already has is left out (the input's own value wins), so names stay unique.
    """
    taken = {c.name for c in columns}
    out: list[StagingColumn] = []
    for col in columns:
        kind = column_kind(col, incremental_field)
        out.append(StagingColumn(col, "value", col, kind))
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
