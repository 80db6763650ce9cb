"""Which columns of a source file hold JSON objects, and their top-level keys.

Staging extracts each top-level key whose values are scalars into a column, as the seed
plugin does from sampled rows; here the keys are read from every row of the file, so the
columns do not depend on which rows a sample happened to hold. A text column counts as
JSON when each of its values (the texts staging nulls aside) is a JSON object; a nested
value (struct, map) always is one.
"""

from __future__ import annotations

import duckdb

from cdp_mcp.core.staging_rules import NULL_TEXTS

SAMPLE_ROWS = 1000  # rows a text column is first checked on, before a whole-file read
_NESTED_PREFIXES = ("STRUCT", "MAP")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_NULLS = ", ".join(_literal(t) for t in NULL_TEXTS)


def _text_of(name: str, dtype: str) -> str:
    """The column's value as JSON text (what TD stores for a nested value)."""
    col = _quote(name)
    return f"CAST(to_json({col}) AS VARCHAR)" if _nested(dtype) else col


def _nested(dtype: str) -> bool:
    upper = dtype.upper()
    return upper == "JSON" or upper.startswith(_NESTED_PREFIXES)


def _present(text: str) -> str:
    return f"{text} IS NOT NULL AND lower(trim({text})) NOT IN ({_NULLS})"


def candidates(
    con: duckdb.DuckDBPyConnection, reader: str, types: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], int | None]:
    """Columns whose first SAMPLE_ROWS rows hold JSON objects only (and at least one), and
    how many rows those were (None: no text column, nothing read). So a file of at least
    SAMPLE_ROWS rows has the candidates of any file it appends to."""
    texts = [(n, t) for n, t in types if t.upper() == "VARCHAR" or _nested(t)]
    if not texts:
        return [], None
    checks = ["count(*)"]
    for name, dtype in texts:
        text = _text_of(name, dtype)
        obj = f"starts_with(ltrim({text}), '{{')"
        checks.append(f"count(*) FILTER (WHERE {_present(text)} AND {obj})")
        checks.append(f"count(*) FILTER (WHERE {_present(text)} AND NOT {obj})")
    row = con.execute(
        f"SELECT {', '.join(checks)} FROM (SELECT * FROM {reader} LIMIT {SAMPLE_ROWS})"
    ).fetchone()
    assert row is not None
    rows, *counts = row
    found = [col for i, col in enumerate(texts) if counts[2 * i] > 0 and counts[2 * i + 1] == 0]
    return found, int(rows)


def _keys(con: duckdb.DuckDBPyConnection, reader: str, name: str, dtype: str) -> tuple[str, ...]:
    """Top-level keys with scalar values in every row, in order of first appearance; none
    unless every value of the column is a JSON object."""
    text = _text_of(name, dtype)
    docs = f"SELECT {text} AS t FROM {reader} WHERE {_present(text)}"
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT coalesce(json_valid(t) AND json_type(t) = 'OBJECT',"
        f" false)) FROM ({docs})"
    ).fetchone()
    if row is None or row[0]:
        return ()
    rows = con.execute(
        f"""SELECT e.key FROM (SELECT row_number() OVER () AS r, CAST(t AS JSON) AS j FROM ({docs})) d,
            json_each(d.j) e
            GROUP BY e.key
            HAVING bool_and(e.type NOT IN ('OBJECT', 'ARRAY'))
            ORDER BY min(d.r), min(e.id), e.key"""
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


def json_keys(
    con: duckdb.DuckDBPyConnection, reader: str, types: list[tuple[str, str]]
) -> dict[str, tuple[str, ...]]:
    """Column (as named in the file) -> its JSON keys, for the columns that hold JSON."""
    return keys_of(con, reader, candidates(con, reader, types)[0])


def keys_of(
    con: duckdb.DuckDBPyConnection, reader: str, columns: list[tuple[str, str]]
) -> dict[str, tuple[str, ...]]:
    """`json_keys` of the `candidates` found (each read in full)."""
    out = {}
    for name, dtype in columns:
        keys = _keys(con, reader, name, dtype)
        if keys:
            out[name] = keys
    return out
