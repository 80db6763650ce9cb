"""Local source files (connector `file`): where each object's file is and how it reads.

The generator (to learn the columns) and the local `td_load>` operator (to load rows) both
read a source through `select_sql`, so the schema a project is generated for is exactly the
schema the load produces.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import duckdb

from cdp_mcp.core import source_memory
from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.json_keys import SAMPLE_ROWS as JSON_SAMPLE_ROWS
from cdp_mcp.core.json_keys import candidates as json_candidates
from cdp_mcp.core.json_keys import keys_of as json_keys_of
from cdp_mcp.core.schema import Column, snake_case, td_type, unique_names
from cdp_mcp.core.source_counts import Counting, Counts, Rule, added, from_row
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.core.text_source import TextSourceError, explain, readable
from cdp_mcp.core.timeparse import parse_bound, parsed_timestamp_sql

FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_KEEP_TYPES = ("long", "double", "boolean")
# Dates stay text, as a TD import keeps them; only numbers and booleans are typed.
_CSV_CANDIDATES = "auto_type_candidates=['BOOLEAN','BIGINT','DOUBLE','VARCHAR']"


class SourceError(CdpError):
    """A source file is missing, unreadable or ambiguous."""


def find_object_file(source_dir: Path, obj: str, formats: tuple[str, ...] | None = None) -> Path:
    """The one `{obj}.csv|.parquet|.jsonl` file in `source_dir` (of `formats`, if given)."""
    if not source_dir.is_dir():
        raise SourceError(f"source_path {source_dir} is not a folder")
    exts = [ext for ext, fmt in FORMATS.items() if formats is None or fmt in formats]
    found = [source_dir / f"{obj}{ext}" for ext in exts if (source_dir / f"{obj}{ext}").is_file()]
    if not found:
        wanted = [f"{obj}{ext}" for ext in exts if ext != ".ndjson"]
        raise SourceError(
            f"no file for object {obj!r} in {source_dir}: expected "
            f"{', '.join(wanted[:-1])}{' or ' if len(wanted) > 1 else ''}{wanted[-1]}"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SourceError(f"object {obj!r} has more than one file in {source_dir}: {names}")
    return found[0]


Types = list[tuple[str, str]]  # (column, DuckDB type)


def _text(path: Path, encoding: str | None) -> Path:
    """What DuckDB reads for `path` (text_source.readable): the file, or its UTF-8 copy."""
    try:
        return readable(path, encoding, obj=path.stem)
    except TextSourceError as e:
        raise SourceError(str(e)) from None
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None


def reads_directly(path: Path, encoding: str | None = None) -> bool:
    """DuckDB reads `path` itself, not a staged UTF-8 copy of it (text_source.readable)."""
    return _text(path, encoding) == path


def _cannot_read(path: Path, e: duckdb.Error) -> SourceError:
    return SourceError(f"cannot read {path}: {explain(str(e))}")


def _reader(path: Path, types: Types | None = None, whole_file: bool = False) -> str:
    """The DuckDB table function reading `path`: with `types` fixed, or inferring them from
    the first rows (or, with `whole_file`, from every row)."""
    fmt = FORMATS.get(path.suffix.lower())
    lit = sql_string(str(path))
    fixed = ", ".join(f"{sql_string(n)}: {sql_string(t)}" for n, t in types or [])
    if fmt == "csv":
        if types is not None:
            return f"read_csv({lit}, header=true, types={{{fixed}}})"
        sample = ", sample_size=-1" if whole_file else ""
        return f"read_csv({lit}, header=true{sample}, {_CSV_CANDIDATES})"
    if fmt == "parquet":
        return f"read_parquet({lit})"
    if fmt == "jsonl":
        if types is not None:
            how = f"columns={{{fixed}}}"
        else:
            how = "dateformat='%%NONE', timestampformat='%%NONE'"
            how += ", sample_size=-1" if whole_file else ""
        return f"read_json({lit}, format='newline_delimited', {how})"
    raise SourceError(
        f"{path}: unsupported file type {path.suffix!r}; use .csv, .parquet or .jsonl"
    )


def _described(path: Path, encoding: str | None = None, counting: Rule | None = None) -> Types:
    """(column, DuckDB type) of a source file, true of every row, cached per file version.
    With `counting`, the read that proves the types also counts the file's rows for that
    rule (source_counts), when it reads the file at all."""
    stat = path.stat()
    aside = _Aside(counting)
    return list(
        _cached_description(path.resolve(), stat.st_size, stat.st_mtime_ns, encoding, aside)
    )


class _Aside:
    """What a call may do on its way, not part of what it answers: equal to every other, so
    lru_cache keys the answer by the file version alone."""

    def __init__(self, rule: Rule | None = None) -> None:
        self.rule = rule

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Aside)

    def __hash__(self) -> int:
        return 0


_NOTHING_ASIDE = _Aside()


@functools.lru_cache(maxsize=256)
def _cached_description(
    path: Path, size: int, mtime_ns: int, encoding: str | None, aside: _Aside = _NOTHING_ASIDE
) -> tuple[tuple[str, str], ...]:
    """Types a sample of the first rows proposes, proven by one typed read of the whole file.

    Only when a later value breaks them (a late 'N/A' in a number column) does the slower
    whole-file inference decide. Keyed by size and mtime: an appended or replaced file is
    described anew; kept across runs (source_memory), where an appended file's proven
    types need proving on its new rows only. The proving read counts the rows for
    `aside.rule` too (kept with the version: the validation and the loads use them).
    """
    version = source_memory.Version.of(path)
    src = _text(path, encoding)
    text = FORMATS.get(path.suffix.lower()) != "parquet"
    kept = source_memory.recall(path, _TYPES_FACET, version) if src == path else None
    if isinstance(kept, dict) and (version.size, version.mtime_ns) == (size, mtime_ns):
        return tuple((str(n), str(t)) for n, t in kept["types"])
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        con.execute("SET TimeZone = 'UTC'")  # (the counts are in UTC, as the validation's)
        try:
            sampled = _describe(con, _reader(src))
            types = sampled
            counting = _counting(aside.rule, sampled) if text and src == path else None
            proven = not text or _holds_since_kept(con, path, src, sampled, counting, version)
            if not proven:
                proof = _proof(con, src, types, counting)
                if proof.holds and proof.counts is not None and counting is not None:
                    samples_known = not proof.counts.unparsed
                    _keep_counts(path, version, counting, proof.counts, samples_known)
                if not proof.holds:
                    # A JSON field of mixed kinds is inferred as JSON: its values read as text.
                    types = [
                        (n, "VARCHAR" if t == "JSON" else t)
                        for n, t in _describe(con, _reader(src, whole_file=True))
                    ]
        except duckdb.Error as e:
            raise _cannot_read(path, e) from None
    if text and src == path:  # (a staged copy is a version of its own)
        kept = {"types": [list(t) for t in types], "sampled": types == sampled}
        source_memory.remember(path, _TYPES_FACET, kept, version)
    return tuple(types)


def _counting(rule: Rule | None, described: Types) -> Counting | None:
    if rule is None:
        return None
    return Counting.of(rule, [c for c, _ in _select_items(described, "snake")])


def _keep_counts(
    path: Path,
    version: source_memory.Version,
    counting: Counting,
    counts: Counts,
    samples_known: bool,
) -> None:
    """Keep counts a proving read made; when their unparseable samples are not known (the
    validation's read finds them), only the latest time, which the loads need."""
    if samples_known:
        counting.remember(path, version, counts)
    else:
        latest = {"max_us": counts.latest_us}
        source_memory.remember(
            path, source_memory.latest_time_facet(counting.parsed), latest, version
        )


_TYPES_FACET = "types"  # source_memory's fact: the described types, and whether sampled


def _holds_since_kept(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    src: Path,
    sampled: Types,
    counting: Counting | None = None,
    version: source_memory.Version | None = None,
) -> bool:
    """The file appends to a version whose sampled types were proven on every row, the
    sample still proposes them, and its new rows hold them too: so every row does. With
    `counting`, the counts kept for that version plus the new rows' are kept for this one."""
    if src != path:
        return False
    tail = source_memory.appended(path)
    kept = tail.facts.get(_TYPES_FACET) if tail else None
    if tail is None or not isinstance(kept, dict) or not kept.get("sampled"):
        return False
    if [tuple(t) for t in kept["types"]] != sampled:
        return False
    before = counting.recall_before(tail) if counting is not None else None
    proof = _proof(con, tail.readable(), sampled, counting if before is not None else None)
    if proof.holds and before is not None and proof.counts is not None and version is not None:
        assert counting is not None
        # the samples are known when the new rows have none to add
        _keep_counts(
            path, version, counting, added(before, proof.counts), not proof.counts.unparsed
        )
    return proof.holds


@functools.lru_cache(maxsize=256)
def _cached_json_keys(
    path: Path, size: int, mtime_ns: int, encoding: str | None
) -> dict[str, tuple[str, ...]]:
    """The JSON keys of the file's JSON columns (json_keys.py), cached per file version
    (and kept across runs: finding them reads every value of a JSON column). A file that
    appends to a version whose first rows held no JSON column, with the same types, has
    none either: its first rows are that version's (`_no_json_before`)."""
    # (with the aside passed, as every other caller does: the same lru_cache key)
    described = _cached_description(path, size, mtime_ns, encoding, _NOTHING_ASIDE)
    version = source_memory.Version.of(path)
    fixed = list(described) if FORMATS.get(path.suffix.lower()) != "parquet" else None
    src = _text(path, encoding)
    # (a staged copy is a version of its own; a file changed since `size` is read anew)
    keeps = (
        fixed is not None and src == path and (version.size, version.mtime_ns) == (size, mtime_ns)
    )
    kept = source_memory.recall(path, _JSON_KEYS_FACET, version) if keeps else None
    if isinstance(kept, dict):
        return {str(k): tuple(str(x) for x in v) for k, v in kept.items()}
    types = [list(t) for t in described]
    sample: dict[str, object] = {"types": types}
    if keeps and (before := _no_json_before(path, types)) is not None:
        found: dict[str, tuple[str, ...]] = {}
        sample = before
    else:
        with duckdb.connect() as con:
            con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
            reader = _reader(src, fixed)
            try:
                columns, rows = json_candidates(con, reader, list(described))
                found = json_keys_of(con, reader, columns)
            except duckdb.Error as e:
                raise _cannot_read(path, e) from None
        sample.update(candidates=[list(c) for c in columns], rows=rows)
    if keeps:
        keys = {k: list(v) for k, v in found.items()}
        source_memory.remember(path, _JSON_KEYS_FACET, keys, version)
        source_memory.remember(path, _JSON_SAMPLE_FACET, sample, version)
    return found


_JSON_KEYS_FACET = "json_keys"
_JSON_SAMPLE_FACET = "json_candidates"  # the types, the candidate columns, the rows sampled


def _no_json_before(path: Path, types: list[list[str]]) -> dict[str, object] | None:
    """The kept sample of the version `path` appends to, when it found no JSON column in
    rows that are still this file's first (a full sample, or no text column to check) for
    the same types; else None (the keys are found anew)."""
    sample = source_memory.carried_sample(path, _JSON_SAMPLE_FACET, JSON_SAMPLE_ROWS)
    if sample is None or sample.get("types") != types or sample.get("candidates") != []:
        return None
    return sample


def _json_keys_of(path: Path, encoding: str | None) -> dict[str, tuple[str, ...]]:
    stat = path.stat()
    return _cached_json_keys(path.resolve(), stat.st_size, stat.st_mtime_ns, encoding)


def _describe(con: duckdb.DuckDBPyConnection, reader: str) -> Types:
    return [
        (str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    ]


class _Proof(NamedTuple):
    holds: bool  # every row converts to the types
    counts: Counts | None  # the rows counted on the way (when asked and the types held)


def _proof(
    con: duckdb.DuckDBPyConnection, path: Path, types: Types, counting: Counting | None = None
) -> _Proof:
    """Whether every row of the file converts to `types` (text columns always do) and,
    for JSONL, no row has a field the sample did not see (an API adding a field
    mid-extract); with `counting`, the same read counts the rows (no samples)."""
    if FORMATS.get(path.suffix.lower()) == "jsonl":
        keys = con.execute(
            "SELECT DISTINCT unnest(json_keys(json)) FROM "
            f"read_json_objects({sql_string(str(path))}, format='newline_delimited')"
        ).fetchall()
        if {str(k[0]) for k in keys} - {n for n, _ in types}:
            return _Proof(False, None)
    items = _select_items(types, "snake")
    typed = [
        quote_ident(c.name) for (c, _), (_, t) in zip(items, types, strict=True) if t != "VARCHAR"
    ]
    if not typed and counting is None:
        return _Proof(True, None)
    checks = [f"count({c})" for c in typed]  # count(col) converts every value
    select = f"SELECT {', '.join(e for _, e in items)} FROM {_reader(path, types)}"
    if counting is not None:
        ts = _unused_name("ts", {c.name for c, _ in items})
        query = (
            f"SELECT {', '.join([*checks, counting.aggregates(ts)])} "
            f"FROM (SELECT *, {counting.parsed} AS {ts} FROM ({select}))"
        )
    else:
        query = f"SELECT {', '.join(checks)} FROM ({select})"
    try:
        row = con.execute(query).fetchone()
    except (duckdb.ConversionException, duckdb.InvalidInputException):
        return _Proof(False, None)
    if counting is None or row is None:
        return _Proof(True, None)
    return _Proof(True, from_row(tuple(row[len(checks) :])))


def _unused_name(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name += "_"
    return quote_ident(name)


def _nested(dtype: str) -> bool:
    """A DuckDB type holding more than one value: struct, map, list, array, union, JSON."""
    upper = dtype.upper()
    return upper == "JSON" or upper.endswith("]") or upper.startswith(("STRUCT", "MAP", "UNION"))


def lower_name(name: str) -> str:
    """A connector field's name as TD keeps it: lower case, [a-z0-9_] only."""
    s = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_") or "col"
    return f"_{s}" if s[0].isdigit() else s


def select_sql(
    path: Path,
    names_as: str = "snake",
    encoding: str | None = None,
    read_from: Path | None = None,
) -> tuple[str, list[Column]]:
    """A SELECT over the file with TD column names and types, and the resulting columns.

    `names_as`: `snake` (connector `file`: snake_case) or `lower` (a TD connector's output,
    whose field names TD keeps lower-cased); `encoding`: the file's, when not UTF-8
    (`ingestion.object_settings.<object>.encoding`); `read_from`: a file of the same form
    to read instead (the rows appended to `path`, source_memory.Tail.readable)."""
    described = _described(path, encoding)
    items = _select_items(described, names_as)
    if "time" in {c.name for c, _ in items}:
        raise SourceError(f"{path}: column `time` is reserved for TD's load time; rename it")
    fixed = described if FORMATS.get(path.suffix.lower()) != "parquet" else None
    src = read_from if read_from is not None else _text(path, encoding)
    exprs = ", ".join(e for _, e in items)
    return f"SELECT {exprs} FROM {_reader(src, fixed)}", [c for c, _ in items]


_TARGETS = {"long": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN"}  # else VARCHAR


def _select_items(described: Types, names_as: str) -> list[tuple[Column, str]]:
    """Each column as a load produces it (TD name and type), with its SELECT item."""
    rename = lower_name if names_as == "lower" else snake_case
    names = unique_names([rename(n) for n, _ in described])
    out = []
    for (orig, dtype), name in zip(described, names, strict=True):
        ttype = td_type(dtype)
        value = quote_ident(orig)
        if _nested(dtype):
            value = f"to_json({value})"  # TD keeps a nested value as its JSON text
        expr = f"CAST({value} AS {_TARGETS.get(ttype, 'VARCHAR')}) AS {quote_ident(name)}"
        out.append((Column(name=name, type=ttype), expr))
    return out


def empty_select(columns: list[Column]) -> str:
    """A SELECT of no rows with the columns (and types) a load of the file produces."""
    items = (
        f"CAST(NULL AS {_TARGETS.get(c.type, 'VARCHAR')}) AS {quote_ident(c.name)}" for c in columns
    )
    return f"SELECT {', '.join(items)} LIMIT 0"


def rows_after_only(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: list[Column],
    field: str,
    lower: str,
    inclusive: bool,
    formats: Sequence[str] = (),
) -> source_memory.Tail | None:
    """The appended rows of `path`, when they are the only rows whose `field` can be after
    `lower` (at it, if `inclusive`): the version they append to was read before and its
    latest time (source_memory.latest_time_facet) is older. None: read the whole file.
    `con` is in UTC, as the counts were."""
    by_name = {c.name: c for c in columns}
    if not lower or field not in by_name or not reads_directly(path):
        return None
    tail = source_memory.appended(path)
    if tail is None:
        return None
    parsed = parsed_timestamp_sql(quote_ident(field), by_name[field].type, formats)
    kept = tail.facts.get(source_memory.latest_time_facet(parsed))
    if not isinstance(kept, dict) or "max_us" not in kept:
        return None
    if kept["max_us"] is None:
        return tail  # no row before the append has a time at all: none is in the range
    bound = _epoch_us(con, lower)
    if bound is None:
        return None
    latest = int(kept["max_us"])
    return tail if (latest < bound if inclusive else latest <= bound) else None


def none_in_range(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: list[Column],
    field: str,
    lower: str,
    upper: str,
    inclusive: bool,
    formats: Sequence[str] = (),
) -> str | None:
    """Why no row of `path` can have its `field` in the range (from `lower`, inclusive if
    `inclusive`, to `upper`, exclusive; '' = no bound), or None when some row may: the range
    is empty, or the latest time kept for this version of the file (source_counts) is
    before it. `con` is in UTC, as the counts were."""
    by_name = {c.name: c for c in columns}
    if not lower or field not in by_name:
        return None
    lo = _epoch_us(con, lower)
    if lo is None:
        return None
    if upper and (hi := _epoch_us(con, upper)) is not None and lo >= hi:
        return f"the range from {lower} to {upper} is empty"
    parsed = parsed_timestamp_sql(quote_ident(field), by_name[field].type, formats)
    version = source_memory.Version.of(path)
    kept = source_memory.recall(path, source_memory.latest_time_facet(parsed), version)
    if not isinstance(kept, dict) or "max_us" not in kept:
        return None
    if kept["max_us"] is None:
        return f"no row's {field} is a time"
    latest = int(kept["max_us"])
    if latest < lo if inclusive else latest <= lo:
        when = con.execute(f"SELECT make_timestamp({latest})::VARCHAR").fetchone()
        return f"its latest {field} ({when[0] if when else latest}) precedes the range"
    return None


def _epoch_us(con: duckdb.DuckDBPyConnection, bound: str) -> int | None:
    row = con.execute(f"SELECT epoch_us({parse_bound(bound)})").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def read_schema(
    path: Path, encoding: str | None = None, counting: Rule | None = None
) -> list[Column]:
    """The columns a load of `path` produces, with the JSON keys of its JSON columns (what
    staging extracts; a load does not need them, so `select_sql` leaves them out). With
    `counting`, a read of the file to learn them counts its rows too (source_counts)."""
    _described(path, encoding, counting)
    columns = select_sql(path, encoding=encoding)[1]
    keys = _json_keys_of(path, encoding)
    originals = [name for name, _ in _described(path, encoding)]
    return [
        c.model_copy(update={"json_keys": keys[orig]}) if orig in keys else c
        for c, orig in zip(columns, originals, strict=True)
    ]
