"""Which staging rule applies to a column, and the columns staging adds.

The staging SQL templates and the validation of the staging phase both read these, so the
columns a transform writes are the columns validation expects.
"""

from __future__ import annotations

from typing import Literal

from cdp_mcp.schema import Column

Kind = Literal["email", "phone", "timestamp", "plain", "time"]
_TS_SUFFIXES = ("_at", "_date", "_time", "_ts", "_timestamp", "_datetime")
_TS_NAMES = ("date", "timestamp", "datetime", "created", "updated")
ADDED_COLUMNS = [Column(name="source_system", type="string"), Column(name="load_timestamp", type="long")]


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


def staging_columns(columns: list[Column], incremental_field: str) -> list[Column]:
    """The columns of a staging table built from a hist-union table with `columns`."""
    out: list[Column] = []
    for col in columns:
        kind = column_kind(col, incremental_field)
        out.append(col)
        if kind in ("email", "phone"):
            out.append(Column(name=f"{col.name}_valid", type="boolean"))
            out.append(Column(name=f"{col.name}_hash", type="string"))
        elif kind == "timestamp":
            out.append(Column(name=f"{col.name}_unixtime", type="long"))
    taken = {c.name for c in out}
    out.extend(c for c in ADDED_COLUMNS if c.name not in taken)
    return out
