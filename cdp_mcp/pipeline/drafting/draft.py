"""draft_config: inspect the sources, render the commented config, write it as a new file.

A new pipeline gets a whole config. A source added to an existing pipeline gets a new file
too, never an edit of the config in place: the existing config's text, unchanged, with the
new source's item appended to `sources:` (an `ingestion:` block becomes the first item of
`sources:`, its lines as they were) and, when the config lists unification tables, the new
source's tables appended to them (keys the config lacks added to `keys:` and
`merge_by_keys`). So the person reviews one file, whose difference from their config is the
new source, and replaces their config with it when they agree.

The draft is validated as a config before it is written: a draft init_pipeline would
refuse is a bug, reported as one, not a file left for the person.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio

from cdp_mcp.core.config import (
    EARLIEST,
    IDENT_RE,
    ConfigError,
    PipelineConfig,
    load_config,
    parse_config,
    read_config_bytes,
)
from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.schema import snake_case
from cdp_mcp.core.tools import ASK_PERSON, ToolName
from cdp_mcp.core.yaml_bounded import load_bounded
from cdp_mcp.pipeline.drafting import render
from cdp_mcp.pipeline.drafting.inspection import (
    InspectError,
    Profiled,
    profile_source,
    sample_size,
    td_database,
)
from cdp_mcp.pipeline.drafting.models import DraftResult
from cdp_mcp.pipeline.drafting.profile import MIN_KEY_SHARE
from cdp_mcp.pipeline.models import NextAction

MAX_SOURCES = 16


class DraftError(CdpError):
    """A draft that cannot be written; the message names the file or argument and the fix."""


@dataclass(frozen=True)
class SourceSpec:
    name: str
    source: str  # the folder as given


def parse_spec(text: str) -> SourceSpec:
    """`name=folder` or `folder` (named after the folder, snake_case)."""
    name, eq, rest = text.partition("=")
    if eq and IDENT_RE.match(name.strip()):
        source = rest.strip()
        name = name.strip()
    else:
        source = text.strip()
        name = snake_case(Path(source.rstrip("/")).name or "source")
    if not source:
        raise DraftError(f"sources: {text!r} names no folder; e.g. `shop=./exports/shop`")
    if td_database(source) is not None:
        raise DraftError(
            f"sources: {source!r} is a TD database: inspect_source reads one, but no "
            "connector loads a TD table into a pipeline; draft from the folder of extracts"
        )
    if not IDENT_RE.match(name):
        raise DraftError(
            f"sources: {name!r} (from {text!r}) is no source name: give one as "
            "`name=folder`, e.g. `crm=./exports/crm`"
        )
    return SourceSpec(name, source)


def _draft_source(spec: SourceSpec, found: Profiled) -> render.DraftSource:
    from cdp_mcp.core.file_source import find_object_file
    from cdp_mcp.pipeline.drafting.folder import earliest

    assert found.folder is not None  # parse_spec refuses TD databases
    field = found.incremental_field.column
    start, where = None, ""
    if field is not None:
        formats = sorted({f for o in found.objects for f in o.time_formats})
        times = []
        for o in found.objects:
            when = earliest(find_object_file(found.folder, o.name), field, formats)
            if when is not None:
                times.append((when, o.name))
        if times:
            first, where = min(times)
            # a junk time (1900-01-01) is no start TD's time column holds
            start = f"{max(first, EARLIEST):%Y-%m-%d}"
    return render.DraftSource(
        name=spec.name,
        folder=found.folder,
        objects=found.objects,
        incremental=found.incremental_field,
        start_date=start,
        earliest_from=where,
    )


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise DraftError(
            f"{path} exists: draft_config writes a new file only and never replaces one; "
            f"give another output_path (e.g. {path.with_suffix('')}.draft.yml) or move "
            f"{path.name} away"
        )


def _write_new(path: Path, text: str) -> None:
    """Write `text` to `path`, which must not exist (nor appear meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            os.link(tmp, path)  # fails if the file appeared: never over one
        except FileExistsError:
            _refuse_existing(path)
            raise
    finally:
        os.unlink(tmp)


def _validated(text: str, path: Path) -> PipelineConfig:
    try:
        return parse_config(load_bounded(text.encode()), str(path), path.parent)
    except ConfigError as e:
        raise DraftError(f"the draft does not validate (a bug in draft_config): {e}") from None


async def draft_config(
    output_path: Path,
    sources: list[str],
    client: str | None = None,
    config_path: Path | None = None,
    sample_rows: int | None = None,
) -> DraftResult:
    """Inspect `sources` and write the draft to `output_path`, a file that must not exist:
    a new pipeline for `client`, or `config_path`'s pipeline with these sources added."""
    _refuse_existing(output_path)
    rows = sample_size(sample_rows)
    if not sources:
        raise DraftError("sources: name at least one folder of extracts, e.g. `./exports/shop`")
    if len(sources) > MAX_SOURCES:
        raise DraftError(f"sources: {len(sources)} given; at most {MAX_SOURCES} at once")
    specs = [parse_spec(s) for s in sources]
    existing = load_config(config_path) if config_path is not None else None
    if config_path is not None and output_path.resolve().parent != config_path.resolve().parent:
        raise DraftError(
            f"output_path {output_path} must be in the folder of {config_path} (the config's "
            f"relative paths resolve against its folder), e.g. "
            f"{config_path.resolve().parent / (config_path.stem + '.draft.yml')}"
        )
    taken = set(existing.source_names) if existing is not None else set()
    for spec in specs:
        if spec.name in taken:
            raise DraftError(
                f"sources: two sources would be named {spec.name!r}; name one as "
                f"`other_name={spec.source}`"
            )
        taken.add(spec.name)
    if existing is None and not client:
        raise DraftError("client: a new pipeline needs a client name, e.g. `acme`")
    base = Path.cwd()
    drafted = []
    for spec in specs:
        try:
            found = await profile_source(spec.source, rows, base=base)
        except InspectError as e:
            raise DraftError(str(e)) from None
        drafted.append(await anyio.to_thread.run_sync(_draft_source, spec, found))
    out_dir = output_path.resolve().parent
    if existing is None:
        assert client is not None
        text = render.new_config(client.lower(), drafted, out_dir, rows)
    else:
        assert config_path is not None
        text = added_sources(config_path, existing, drafted, out_dir, rows)
    cfg = _validated(text, output_path)
    _write_new(output_path, text)
    uses = render.key_uses(drafted)
    return DraftResult(
        path=str(output_path),
        sources=[s.name for s in drafted],
        keys=[k for k in render.KEY_ORDER if any(u.key == k for u in uses)],
        tables=[t.table for t in cfg.unification.tables or []],
        notes=_notes(drafted),
        next_action=NextAction(
            tool=ASK_PERSON,
            why=f"show the person {output_path}: every inferred choice carries its evidence "
            "as a comment; once they agree (or edited it), call "
            f"{ToolName.INIT_PIPELINE.value}(config_path={str(output_path)!r})",
            choices=[
                f"the draft is right: {ToolName.INIT_PIPELINE.value} with it",
                "edit the file first, then init_pipeline with it",
            ],
        ),
    )


def _notes(drafted: list[render.DraftSource]) -> list[str]:
    """What a person should look at before running: choices made on thin evidence."""
    notes = []
    for s in drafted:
        if s.incremental.column is None:
            notes.append(f"{s.name}: no incremental field ({s.incremental.evidence})")
        for o in s.objects:
            if o.primary_key.column is None:
                notes.append(f"{s.name}.{o.name}: no primary key found; `id` is assumed")
            for p in o.placeholders:
                if "known placeholder" not in p:
                    notes.append(f"{s.name}.{o.name}: repeated value {p}: a placeholder?")
            for i in o.identifiers:
                if i.key in render.KEY_ORDER and i.valid < MIN_KEY_SHARE:
                    notes.append(f"{s.name}.{o.name}.{i.column}: not keyed ({i.evidence})")
    return notes


# -- a source added to an existing config -------------------------------------------------

_TOP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(.*)$")


def _blocks(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Top-level section -> (first line, end line exclusive, before trailing blank lines
    and comments that precede the next section)."""
    starts = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _TOP.match(line))]
    out = {}
    for n, (i, name) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        while end > i + 1 and (
            not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
        ):
            end -= 1
        out[name] = (i, end)
    return out


def _refuse_flow(section: str, line: str, config_path: Path) -> None:
    top = _TOP.match(line)
    if top and top.group(2).split("#")[0].strip():
        raise DraftError(
            f"{config_path}: `{section}:` is written on one line; write it as a block (one "
            "item or field per line) so the new source can be added to it"
        )


def _as_sources(lines: list[str], start: int, end: int, config_path: Path) -> list[str]:
    """The `ingestion:` block as `sources:` with its one item, its lines unchanged but
    indented one level deeper (and `source_name:` as the item's `name:`)."""
    body = lines[start + 1 : end]
    indents = [
        len(x) - len(x.lstrip()) for x in body if x.strip() and not x.lstrip().startswith("#")
    ]
    base = min(indents) if indents else 2
    out = ["sources:"]
    name_line = None
    rest = []
    for line in body:
        stripped = line.strip()
        if (
            name_line is None
            and line.startswith(" " * base + "source_name:")
            and (len(line) - len(line.lstrip()) == base)
        ):
            name_line = stripped.split(":", 1)[1].strip()
            continue
        rest.append(line)
    if name_line is None:
        raise DraftError(f"{config_path}: the ingestion block has no `source_name:` line")
    out.append(f"  - name: {name_line}")
    out += [("  " + " " * (4 - base) + x[base:]) if x.strip() else x for x in rest]
    return out


def added_sources(
    config_path: Path,
    existing: PipelineConfig,
    drafted: list[render.DraftSource],
    out_dir: Path,
    sample_rows: int,
) -> str:
    text = read_config_bytes(config_path).decode("utf-8")
    lines = text.splitlines()
    blocks = _blocks(lines)
    names = ", ".join(s.name for s in drafted)
    header = render.header_lines(
        drafted,
        sample_rows,
        f"Below: {config_path.name} as it was, with {names} added (the lines marked "
        "`added by draft_config`). Replace that file with this one once it is right.",
    )
    new_items: list[str] = []
    for s in drafted:
        new_items += [f"  # -- added by draft_config: source {s.name}"]
        new_items += render.source_lines(s, out_dir)
    uses = render.key_uses(drafted)
    inserts: list[tuple[int, int, list[str]]] = []  # (start, end, replacement)
    if "sources" in blocks:
        start, end = blocks["sources"]
        _refuse_flow("sources", lines[start], config_path)
        inserts.append((end, end, new_items))
    elif "ingestion" in blocks:
        start, end = blocks["ingestion"]
        _refuse_flow("ingestion", lines[start], config_path)
        inserts.append((start, end, _as_sources(lines, start, end, config_path) + new_items))
    else:
        raise DraftError(f"{config_path}: found neither a `sources:` nor an `ingestion:` block")
    inserts += _hist_union_inserts(lines, blocks, existing, drafted)
    inserts += _unification_inserts(lines, blocks, existing, uses, config_path)
    for start, end, replacement in sorted(inserts, key=lambda t: t[0], reverse=True):
        lines[start:end] = replacement
    return "\n".join(header + lines) + "\n"


def _hist_union_inserts(
    lines: list[str],
    blocks: dict[str, tuple[int, int]],
    existing: PipelineConfig,
    drafted: list[render.DraftSource],
) -> list[tuple[int, int, list[str]]]:
    """The new sources' tables appended to `hist_union.tables` when the config lists them
    (a list naming some tables must name every source's)."""
    if existing.hist_union.tables is None or "hist_union" not in blocks:
        return []
    sub = _sub_blocks(lines, *blocks["hist_union"])
    if "tables" not in sub:
        return []
    start, end = sub["tables"]
    new = [s.table(o.name) for s in drafted for o in s.objects]
    value = lines[start].split(":", 1)[1].split("#")[0].strip()
    if value:  # a flow list on one line: the same list, the new tables after the old
        merged = list(existing.hist_union.tables) + new
        return [(start, start + 1, [f"  tables: {render._flow(merged)}  # added by draft_config"])]
    added = ["    # -- added by draft_config: the new sources' tables"]
    added += [f"    - {t}" for t in new]
    return [(end, end, _reindent(added, lines, start, end))]


def _unification_inserts(
    lines: list[str],
    blocks: dict[str, tuple[int, int]],
    existing: PipelineConfig,
    uses: list[render.KeyUse],
    config_path: Path,
) -> list[tuple[int, int, list[str]]]:
    """The new tables appended to the config's `unification.tables` (when it lists them:
    otherwise the keys are inferred over every source's tables, the new ones included)."""
    unif = existing.unification
    if unif.tables is None or not uses:
        return []
    if "unification" not in blocks:
        return []
    start, end = blocks["unification"]
    sub = _sub_blocks(lines, start, end)
    if "tables" not in sub:
        return []
    inserts = []
    t_start, t_end = sub["tables"]
    _refuse_flow_sub("unification.tables", lines[t_start], config_path)
    marker = ["    # -- added by draft_config: the new sources' tables"]
    added_tables = marker + render.table_lines(uses, header=False)
    inserts.append((t_end, t_end, _reindent(added_tables, lines, t_start, t_end)))
    known = {k.name for k in unif.keys or []}
    new_keys = [k for k in render.KEY_ORDER if k not in known and any(u.key == k for u in uses)]
    if new_keys and unif.keys is not None and "keys" in sub:
        k_start, k_end = sub["keys"]
        _refuse_flow_sub("unification.keys", lines[k_start], config_path)
        added = []
        for key in new_keys:
            added += render._key_lines(key, [u for u in uses if u.key == key])
        added = ["    # -- added by draft_config: a new key", *added]
        inserts.append((k_end, k_end, _reindent(added, lines, k_start, k_end)))
    if new_keys and unif.merge_by_keys is not None and "merge_by_keys" in sub:
        m_start, m_end = sub["merge_by_keys"]
        merged = list(unif.merge_by_keys) + new_keys
        inserts.append(
            (m_start, m_end, [f"  merge_by_keys: {render._flow(merged)}  # added by draft_config: "
                              f"{', '.join(new_keys)}"])
        )  # fmt: skip
    return inserts


def _sub_blocks(lines: list[str], start: int, end: int) -> dict[str, tuple[int, int]]:
    """The fields of a top-level section at its first indentation, as _blocks does."""
    body = [(i, lines[i]) for i in range(start + 1, end)]
    indents = [
        len(x) - len(x.lstrip()) for _, x in body if x.strip() and not x.lstrip().startswith("#")
    ]
    if not indents:
        return {}
    base = min(indents)
    field = re.compile(r"^" + " " * base + r"([A-Za-z_][A-Za-z0-9_]*)\s*:")
    starts = [(i, m.group(1)) for i, x in body if (m := field.match(x))]
    out = {}
    for n, (i, name) in enumerate(starts):
        stop = starts[n + 1][0] if n + 1 < len(starts) else end
        while stop > i + 1 and (
            not lines[stop - 1].strip() or lines[stop - 1].lstrip().startswith("#")
        ):
            stop -= 1
        out[name] = (i, stop)
    return out


def _reindent(new: list[str], lines: list[str], start: int, end: int) -> list[str]:
    """`new` (list items at 4 spaces) at the indentation of the items of lines[start:end]."""
    items = [x for x in lines[start + 1 : end] if x.lstrip().startswith("- ")]
    indent = len(items[0]) - len(items[0].lstrip()) if items else 4
    shift = indent - 4
    if shift >= 0:
        return [" " * shift + x if x.strip() else x for x in new]
    return [x[-shift:] if x.startswith(" " * -shift) else x for x in new]


def _refuse_flow_sub(what: str, line: str, config_path: Path) -> None:
    value = line.split(":", 1)[1].split("#")[0].strip() if ":" in line else ""
    if value:
        raise DraftError(
            f"{config_path}: `{what}` is written on one line; write it as a block list (one "
            "item per line) so the new source's entries can be added"
        )
