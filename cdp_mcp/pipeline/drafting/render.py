"""The draft as YAML text: every inferred choice with its evidence as a comment.

Written by hand, line by line (a YAML dumper drops comments); every value goes through
`_scalar`, which quotes what YAML would read as anything but that text.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cdp_mcp.core.unify_plan import (
    EMAIL_INVALID_TEXTS,
    EMAIL_VALID_REGEXP,
    PHONE_INVALID_TEXTS,
)
from cdp_mcp.pipeline.drafting.models import Choice, ObjectInfo
from cdp_mcp.pipeline.drafting.profile import MIN_KEY_SHARE

KEY_ORDER = ("email", "phone")  # merge order: an address is the surer key
_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./ -]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "~", "y", "n"}


def _scalar(value: str) -> str:
    """`value` as a YAML scalar that reads back as this exact text."""
    plain = (
        _PLAIN.match(value)
        and value.lower() not in _YAML_WORDS
        and not re.match(r"^[-+.]?[0-9]", value)
        and value == value.strip()
    )
    return value if plain else json.dumps(value, ensure_ascii=False)


def _flow(values: Iterable[str]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


WIDTH = 100  # of a comment line, as the project's own files are written


def _comment(text: str, indent: str) -> list[str]:
    """`text` as comment lines at `indent`, wrapped (a value is never cut in two)."""
    width = max(WIDTH - len(indent) - 2, 40)
    out = []
    for line in text.splitlines():
        if line.strip():
            wrapped = textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False)
            out += [f"{indent}# {part}" for part in wrapped]
    return out


@dataclass
class DraftSource:
    """A source as the draft writes it."""

    name: str
    folder: Path
    objects: list[ObjectInfo]
    incremental: Choice
    start_date: str | None  # the day of the earliest incremental value, when known
    earliest_from: str = ""  # which object holds it
    left_out: list[str] = field(default_factory=list)  # objects not drafted, with why

    def table(self, obj: str) -> str:
        return f"{self.name}_{obj}"


@dataclass
class KeyUse:
    source: str
    table: str
    column: str
    key: str
    evidence: str
    placeholders: list[str]


def key_uses(sources: list[DraftSource]) -> list[KeyUse]:
    """Every email and phone column valid in enough sampled rows, as a key column."""
    out = []
    for s in sources:
        for o in s.objects:
            for ident in o.identifiers:
                if ident.key in KEY_ORDER and ident.valid >= MIN_KEY_SHARE:
                    seen = [p for p in o.placeholders if p.startswith(f"{ident.column}: ")]
                    out.append(
                        KeyUse(s.name, s.table(o.name), ident.column, ident.key,
                               ident.evidence, seen)
                    )  # fmt: skip
    return out


def _relative(folder: Path, out_dir: Path) -> str:
    try:
        rel = os.path.relpath(folder, out_dir)
    except ValueError:  # another drive
        return str(folder)
    return rel if rel.startswith("..") else f"./{rel}"


def source_lines(s: DraftSource, out_dir: Path, indent: str = "  ") -> list[str]:
    """One item of `sources:` at `indent`."""
    inner = indent + "  "
    lines = [f"{indent}- name: {s.name}"]
    lines.append(f"{inner}connector: file")
    lines.append(
        f"{inner}source_path: {_scalar(_relative(s.folder, out_dir))}  # relative to this file"
    )
    counts = "; ".join(f"{o.name}: {o.rows:,} rows" for o in s.objects)
    lines += _comment(counts, inner)
    for why in s.left_out:
        lines += _comment(f"left out: {why}", inner)
    lines.append(f"{inner}objects: {_flow(o.name for o in s.objects)}")
    if s.incremental.column is None:
        lines += _comment(s.incremental.evidence, inner)
        lines.append(f"{inner}mode: historical  # each run loads the files whole")
    else:
        lines.append(f"{inner}mode: both")
        lines += _comment(f"{s.incremental.column}: {s.incremental.evidence}", inner)
        lines.append(f"{inner}incremental_field: {s.incremental.column}")
        formats = sorted({f for o in s.objects for f in o.time_formats})
        if formats:
            lines += _comment("forms the built-in parsing does not read, seen in the sample", inner)
            lines.append(f"{inner}time_formats: {_flow(formats)}")
    if s.start_date is not None:
        lines += _comment(
            f"the earliest {s.incremental.column} in the data ({s.earliest_from}): every row "
            "is loaded; a later date leaves older rows out",
            inner,
        )
        lines.append(f'{inner}start_date: "{s.start_date}"')
    keyed = [o for o in s.objects if o.primary_key.column is not None]
    unkeyed = [o for o in s.objects if o.primary_key.column is None]
    for o in unkeyed:
        lines += _comment(f"{o.name}: no primary key found ({o.primary_key.evidence}); "
                          "`id` is assumed: name its key column", inner)  # fmt: skip
    if keyed:
        lines.append(f"{inner}primary_keys:")
        for o in keyed:
            lines += _comment(
                f"{o.name}.{o.primary_key.column}: {o.primary_key.evidence}", inner + "  "
            )
            lines.append(f"{inner}  {o.name}: {o.primary_key.column}")
    return lines


def _key_lines(key: str, uses: list[KeyUse]) -> list[str]:
    where = ", ".join(f"{u.table}.{u.column}" for u in uses)
    seen = [f"{u.table}.{p}" for u in uses for p in u.placeholders]
    lines = _comment(f"{key}: in {where}", "    ")
    lines.append(f"    - name: {key}")
    if key == "email":
        lines.append(f"      valid_regexp: {_scalar(EMAIL_VALID_REGEXP)}")
        known = EMAIL_INVALID_TEXTS
    else:
        known = PHONE_INVALID_TEXTS
    note = "placeholders that would merge unrelated people"
    lines += _comment(f"{note}; in the samples: {'; '.join(seen)}" if seen else note, "      ")
    lines.append("      invalid_texts:")
    lines += [f"        - {_scalar(t)}" for t in known]
    return lines


def unification_lines(uses: list[KeyUse], name: str = "customer_360") -> list[str]:
    keys = [k for k in KEY_ORDER if any(u.key == k for u in uses)]
    lines = ["unification:", f"  name: {name}", "  id_method: persistent_id",
             "  update_strategy: incremental"]  # fmt: skip
    if not keys:
        lines += _comment(
            "no email or phone column is valid in enough sampled rows: name the key "
            "columns (keys, tables) before running unification",
            "  ",
        )
        return lines
    lines.append("  keys:")
    for key in keys:
        lines += _key_lines(key, [u for u in uses if u.key == key])
    lines += table_lines(uses)
    lines.append(f"  merge_by_keys: {_flow(keys)}")
    return lines


def table_lines(uses: list[KeyUse], header: bool = True) -> list[str]:
    lines = ["  tables:"] if header else []
    tables = list(dict.fromkeys(u.table for u in uses))
    for table in tables:
        lines.append(f"    - table: {table}")
        lines.append("      key_columns:")
        for u in uses:
            if u.table == table:
                lines.append(f"        - {{column: {u.column}, key: {u.key}}}  # {u.evidence}")
    return lines


def header_lines(sources: list[DraftSource], sample_rows: int, extra: str = "") -> list[str]:
    names = ", ".join(s.name for s in sources)
    text = (
        f"Drafted by cdp-mcp from the data of {names} (samples of up to "
        f"{sample_rows:,} rows per object: the first rows of each file; row counts "
        "and start dates are of the whole files).\n"
        "Every inferred choice carries its evidence as a comment: review them, then "
        "init_pipeline this file (cdp-mcp run FILE)."
    )
    if extra:
        text += "\n" + extra
    return _comment(text, "")


def new_config(client: str, sources: list[DraftSource], out_dir: Path, sample_rows: int) -> str:
    lines = header_lines(sources, sample_rows)
    lines += ["global:", f"  client: {client}", "  backend: local", "sources:"]
    for s in sources:
        lines += source_lines(s, out_dir)
    lines += ["staging:", "  engine: presto"]
    lines += unification_lines(key_uses(sources))
    return "\n".join(lines) + "\n"
