"""A folder of extracts (connector `file`): each `{object}.csv|.parquet|.jsonl` read as the
load reads it (file_source.select_sql: TD names and types), counted whole, sampled bounded."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from cdp_mcp.core.config import IDENT_RE
from cdp_mcp.core.file_source import FORMATS, SourceError, read_schema, select_sql
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.core.timeparse import parsed_timestamp_sql
from cdp_mcp.pipeline.drafting.models import ObjectInfo
from cdp_mcp.pipeline.drafting.profile import profile_object

MAX_OBJECTS = 100  # files of a folder profiled; more are listed as skipped


def object_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Each object's file, and the files left out with why."""
    if not folder.is_dir():
        raise SourceError(f"source {folder} is not a folder (or does not exist)")
    by_object: dict[str, list[Path]] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in FORMATS:
            skipped.append(f"{path.name}: not .csv, .parquet or .jsonl")
            continue
        by_object.setdefault(path.stem, []).append(path)
    found: dict[str, Path] = {}
    for obj, paths in by_object.items():
        if not IDENT_RE.match(obj):
            skipped.append(
                f"{paths[0].name}: {obj!r} is no object name (lower case letters, digits "
                "and _, not starting with a digit): rename the file"
            )
        elif len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            skipped.append(f"{names}: one object with several files; keep one")
        elif len(found) >= MAX_OBJECTS:
            skipped.append(f"{paths[0].name}: more than {MAX_OBJECTS} objects")
        else:
            found[obj] = paths[0]
    return found, skipped


def inspect_file(path: Path, obj: str, sample_rows: int, incremental_hint: str = "") -> ObjectInfo:
    select, _ = select_sql(path)
    columns = read_schema(path)  # with the JSON keys of every row, as staging extracts them
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        con.execute("SET TimeZone = 'UTC'")
        try:
            row = con.execute(f"SELECT count(*) FROM ({select})").fetchone()
            rows = int(row[0]) if row else 0
            con.execute(f"CREATE TEMP TABLE sample AS {select} LIMIT {int(sample_rows)}")
            sampled = min(rows, sample_rows)
            return profile_object(con, "sample", obj, columns, rows, sampled, incremental_hint)
        except duckdb.Error as e:
            raise SourceError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


def inspect_folder(
    folder: Path, sample_rows: int, incremental_hint: str = ""
) -> tuple[list[ObjectInfo], list[str]]:
    files, skipped = object_files(folder)
    objects = []
    for obj, path in files.items():
        try:
            objects.append(inspect_file(path, obj, sample_rows, incremental_hint))
        except SourceError as e:
            skipped.append(f"{path.name}: {e}")
    return objects, skipped


def earliest(path: Path, column: str, formats: list[str]) -> datetime | None:
    """The earliest time in `column` over the whole file, as the loads parse it (UTC)."""
    select, columns = select_sql(path)
    by_name = {c.name: c for c in columns}
    if column not in by_name:
        return None
    parsed = parsed_timestamp_sql(quote_ident(column), by_name[column].type, formats)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        try:
            row = con.execute(f"SELECT min({parsed}) FROM ({select})").fetchone()
        except duckdb.Error as e:
            raise SourceError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    value = row[0] if row else None
    return value if isinstance(value, datetime) else None
