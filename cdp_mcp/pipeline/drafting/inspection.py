"""inspect_source: a folder of extracts or a TD database (`td:<database>`), profiled.

A source has one incremental field for all its objects (ingestion.incremental_field), so
besides each object's own best time column this picks the one every object has.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cdp_mcp.core import redact
from cdp_mcp.core.apikey import key_problem
from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.tools import ASK_PERSON, ToolName
from cdp_mcp.pipeline.drafting.bounds import DEFAULT_SAMPLE_ROWS, MAX_SAMPLE_ROWS
from cdp_mcp.pipeline.drafting.models import Choice, InspectResult, ObjectInfo
from cdp_mcp.pipeline.drafting.profile import rows_words, time_candidates, time_evidence
from cdp_mcp.pipeline.models import NextAction

TD_PREFIX = "td:"
DEFAULT_ENDPOINT = "https://api.treasuredata.com"
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$")


class InspectError(CdpError):
    """A source that cannot be inspected; the message names it and the fix."""


@dataclass(frozen=True)
class Profiled:
    """A source's objects as inspected, and what was left out."""

    source: str  # as given: a folder, or td:<database>
    folder: Path | None
    objects: list[ObjectInfo]
    skipped: list[str]
    incremental_field: Choice


def sample_size(sample_rows: int | None) -> int:
    if sample_rows is None:
        return DEFAULT_SAMPLE_ROWS
    if not 1 <= sample_rows <= MAX_SAMPLE_ROWS:
        raise InspectError(f"sample_rows is {sample_rows}; give 1 to {MAX_SAMPLE_ROWS:,}")
    return sample_rows


def td_database(source: str) -> str | None:
    return source[len(TD_PREFIX) :].strip() if source.startswith(TD_PREFIX) else None


def folder_of(source: str, base: Path | None = None) -> Path:
    path = Path(source).expanduser()
    return (path if path.is_absolute() or base is None else base / path).resolve()


async def profile_source(
    source: str,
    sample_rows: int | None = None,
    td_endpoint: str | None = None,
    base: Path | None = None,
) -> Profiled:
    """Profile `source`: a folder (relative to `base`), or `td:<database>` on `td_endpoint`
    with the key in TD_API_KEY (read from this process's environment, never an argument)."""
    rows = sample_size(sample_rows)
    database = td_database(source)
    if database is not None:
        objects, skipped = await _td(database, rows, td_endpoint or DEFAULT_ENDPOINT)
        folder = None
    else:
        import anyio

        from cdp_mcp.pipeline.drafting.folder import inspect_folder

        folder = folder_of(source, base)
        # DuckDB reads the files: on a worker thread, so a server answers other calls
        objects, skipped = await anyio.to_thread.run_sync(inspect_folder, folder, rows)
    if not objects:
        why = "; ".join(skipped[:5]) or "it holds no .csv, .parquet or .jsonl file"
        raise InspectError(f"source {source}: no object to inspect ({why})")
    return Profiled(source, folder, objects, skipped, shared_incremental(objects))


async def _td(database: str, rows: int, endpoint: str) -> tuple[list[ObjectInfo], list[str]]:
    from cdp_mcp.backends.treasuredata import TreasureDataBackend
    from cdp_mcp.pipeline.drafting.td import inspect_database

    if not _ENDPOINT.match(endpoint.rstrip("/")):
        raise InspectError(
            f"td_endpoint {endpoint[:80]!r} is not an endpoint: give a scheme and host, "
            "e.g. https://api.treasuredata.com"
        )
    key = os.environ.get("TD_API_KEY", "")
    if not key:
        raise InspectError(
            "inspecting a TD database needs the key in the environment of cdp-mcp: set "
            "TD_API_KEY (for the MCP server: in the client's server settings)"
        )
    redact.register(key)
    problem = key_problem(key)
    if problem:
        raise InspectError(f"TD_API_KEY: {problem}")
    async with TreasureDataBackend(endpoint.rstrip("/"), key) as backend:
        return await inspect_database(backend, database, rows)


def shared_incremental(objects: list[ObjectInfo]) -> Choice:
    """The time column every object can be read incrementally by, best first by name."""
    per_object = {o.name: {c.name: c for c in time_candidates(o.columns)} for o in objects}
    common = set.intersection(*(set(found) for found in per_object.values()))
    if common:
        # the best-ranked of the first object's candidates that every object has
        first = objects[0]
        best = next(c for c in time_candidates(first.columns) if c.name in common)
        shares = [per_object[o.name][best.name].parsed or 0 for o in objects]
        evidence = time_evidence(best, first.sampled)
        if len(objects) > 1:
            low = min(shares)
            evidence += f"; in every object (lowest parse share {100 * low:.1f}%)"
        return Choice(column=best.name, evidence=evidence)
    lacking = [o.name for o, found in zip(objects, per_object.values(), strict=True) if not found]
    if lacking:
        return Choice(
            column=None,
            evidence=f"no timestamp text column in {', '.join(lacking)}: those objects can "
            "only be loaded whole (mode: historical)",
        )
    return Choice(
        column=None,
        evidence="the objects share no timestamp column: "
        + "; ".join(f"{o}: {', '.join(found)}" for o, found in per_object.items()),
    )


async def inspect_source(
    source: str,
    sample_rows: int | None = None,
    td_endpoint: str | None = None,
    base: Path | None = None,
    max_bytes: int | None = None,
) -> InspectResult:
    """The source's profile; with `max_bytes`, cut to fit (see `fitted`)."""
    found = await profile_source(source, sample_rows, td_endpoint, base)
    if found.folder is not None:
        nxt = NextAction(
            tool=ToolName.DRAFT_CONFIG,
            arguments={"sources": [source]},
            why="draft the pipeline's config from this source (add the other sources, a "
            "client name and the file to write); the person reviews that one file",
        )
    else:
        nxt = NextAction(
            tool=ASK_PERSON,
            why="a TD database is inspected only: no connector loads a TD table into a "
            "pipeline; ask the person for the extracts (a folder) or the connector it came by",
            choices=["inspect the folder of extracts", "write the source's block by hand"],
        )
    result = InspectResult(
        source=found.source,
        objects=found.objects,
        incremental_field=found.incremental_field,
        skipped=found.skipped,
        next_action=nxt,
    )
    return result if max_bytes is None else fitted(result, max_bytes)


def _size(result: InspectResult) -> int:
    return len(result.model_dump_json().encode())


def fitted(result: InspectResult, max_bytes: int) -> InspectResult:
    """`result` within `max_bytes` of JSON (an agent's result budget): first without the
    plain columns (no key, time, identifier or PII), then without any column list; the
    choices, identifiers and evidence stay. `skipped` says what was left out."""
    if _size(result) <= max_bytes:
        return result
    cut = result.model_copy(deep=True)
    chosen = {o.name: {o.primary_key.column, o.incremental_field.column} for o in cut.objects}
    for o in cut.objects:
        o.columns = [c for c in o.columns if c.kind != "plain" or c.pii or c.name in chosen[o.name]]
    how = "`cdp-mcp inspect SOURCE --json` lists every column"
    if _size(cut) <= max_bytes:
        cut.skipped.append(f"columns without a key, time or identity left out to fit: {how}")
        return cut
    for o in cut.objects:
        o.columns = []
    cut.skipped.append(f"column lists left out to fit (the choices and identifiers stay): {how}")
    return cut


def sampled_words(objects: list[ObjectInfo]) -> str:
    return ", ".join(f"{o.name}: {rows_words(o.sampled)} of {o.rows:,}" for o in objects)
