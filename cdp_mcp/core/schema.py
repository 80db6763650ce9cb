"""Table schemas in Treasure Data's vocabulary, shared by generation, loading and validation.

TD stores columns as `long`, `double`, `string` (and a few others); timestamps arrive as
strings. Both backends describe tables with these types, so generated SQL is the same.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

TD_TYPES = ("long", "double", "string", "boolean")


class Column(BaseModel):
    name: str
    type: str = "string"
    # A text column whose values are JSON objects: their top-level keys with scalar values,
    # in order of first appearance (staging extracts each into a column).
    json_keys: tuple[str, ...] = ()
    # A text column's values by a sample (core/value_shapes.py): 'email', 'phone', 'other';
    # None when not sampled (a TD connector's columns) or too few values to say.
    shape: str | None = None


# database.table -> its columns in order
SchemaMap = dict[str, list[Column]]


def snake_case(name: str) -> str:
    """TD's column-name rule: lower snake case, [a-z0-9_] only, not starting with a digit."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").lower()
    if not s:
        s = "col"
    if s[0].isdigit():
        s = f"_{s}"
    return s


def unique_names(names: list[str]) -> list[str]:
    """Make normalized names unique by suffixing _2, _3, ... in order of appearance."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            candidate = f"{n}_{seen[n]}"
            while candidate in seen:
                seen[n] += 1
                candidate = f"{n}_{seen[n]}"
            n = candidate
        seen.setdefault(n, 1)
        out.append(n)
    return out


def td_type(duckdb_type: str) -> str:
    """Map a DuckDB type to the TD type the column would have after an import."""
    t = duckdb_type.upper()
    if t in {
        "BIGINT",
        "INTEGER",
        "SMALLINT",
        "TINYINT",
        "UBIGINT",
        "UINTEGER",
        "USMALLINT",
        "UTINYINT",
        "HUGEINT",
    }:
        return "long"
    if t in {"DOUBLE", "FLOAT", "REAL"} or t.startswith("DECIMAL"):
        return "double"
    if t == "BOOLEAN":
        return "boolean"
    return "string"


def duckdb_type(td: str) -> str:
    return {"long": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN"}.get(td, "VARCHAR")


def presto_type(td: str) -> str:
    """The Presto/Trino type a TD column type is declared as in DDL and CASTs."""
    return {"long": "bigint", "double": "double", "boolean": "boolean"}.get(td, "varchar")
