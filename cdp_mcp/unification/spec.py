"""The body of TD's `unifications/workflow_call`, parsed into what the engine runs.

The generated `id_unification.dig` posts `{run_canonical_ids | run_persistent_ids,
full_refresh, ..., unification: <config/unify.yml>}`. TD's limits are checked with the same
function generation uses (`unify_plan.unify_config_problems`), so a config the generator
would refuse is refused here with the same messages.

Key codes (`id_key_type`) are 1..n in the order of unify.yml's `keys` (the contract in
`generate/unification.py`); merge priority is the order of the id's `merge_by_keys`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from cdp_mcp.generate.unify_plan import SQL_SYMBOL_RE, unify_config_problems

Method = Literal["canonical_id", "persistent_id"]
DEFAULT_MERGE_ITERATIONS = 3  # TD's defaults when unify.yml leaves them out
DEFAULT_INCREMENTAL_MERGE_ITERATIONS = 2
TIME_KEY = "time"  # persistent_ids' special key: the earliest-seen order it names is built in
SECTIONS: dict[str, Method] = {"canonical_ids": "canonical_id", "persistent_ids": "persistent_id"}


class UnificationError(Exception):
    """The request cannot be run; the message says what to change."""


@dataclass(frozen=True)
class KeySpec:
    name: str
    code: int  # id_key_type
    invalid_texts: tuple[str, ...]
    valid_regexp: str | None


@dataclass(frozen=True)
class KeyColumnSpec:
    column: str
    key: str


@dataclass(frozen=True)
class TableSpec:
    table_id: int  # 1..n in unify.yml order (TD's `{id}_tables`)
    database: str
    table: str
    name: str  # `as`, else the table name
    key_columns: tuple[KeyColumnSpec, ...]
    incremental_column: str  # new rows are those at or after its last value

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"


@dataclass(frozen=True)
class IdSpec:
    name: str
    method: Method
    merge_by_keys: tuple[str, ...]  # priority order, `time` removed
    merge_iterations: int
    incremental_merge_iterations: int
    source_tables: tuple[str, ...] | None


@dataclass(frozen=True)
class UnifySpec:
    name: str
    keys: tuple[KeySpec, ...]
    tables: tuple[TableSpec, ...]
    ids: tuple[IdSpec, ...]

    @property
    def database(self) -> str:
        return f"cdp_unification_{self.name}"

    def key(self, name: str) -> KeySpec:
        return next(k for k in self.keys if k.name == name)

    def tables_for(self, id_spec: IdSpec) -> tuple[TableSpec, ...]:
        if id_spec.source_tables is None:
            return self.tables
        wanted = set(id_spec.source_tables)
        return tuple(t for t in self.tables if t.name in wanted or t.table in wanted)

    def fingerprint(self, id_spec: IdSpec) -> str:
        """Changes whenever an incremental run could not continue the previous graph."""
        doc = {
            "keys": [[k.name, k.code, list(k.invalid_texts), k.valid_regexp] for k in self.keys],
            "tables": [
                [t.database, t.table, t.name, [[c.column, c.key] for c in t.key_columns]]
                for t in self.tables_for(id_spec)
            ],
            "method": id_spec.method,
            "merge_by_keys": list(id_spec.merge_by_keys),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UnifyRequest:
    spec: UnifySpec
    full_refresh: bool


def parse_request(content: Any) -> UnifyRequest:
    """The workflow_call body -> UnifyRequest; raises UnificationError naming every problem."""
    if not isinstance(content, dict) or not isinstance(content.get("unification"), dict):
        raise UnificationError(
            "the request body must be a mapping with `unification:` holding config/unify.yml"
        )
    doc = content["unification"]
    problems = [str(p) for p in unify_config_problems(doc)]
    problems += _unsupported(content, doc)
    if problems:
        raise UnificationError(
            "config/unify.yml is not valid:\n" + "\n".join(f"- {p}" for p in problems)
        )
    keys = tuple(
        KeySpec(
            name=k["name"],
            code=i,
            invalid_texts=tuple(str(t) for t in (k.get("invalid_texts") or []) if t is not None),
            valid_regexp=k.get("valid_regexp"),
        )
        for i, k in enumerate(doc["keys"], start=1)
    )
    tables = tuple(_table(i, t) for i, t in enumerate(doc["tables"], start=1))
    ids = tuple(
        _id_spec(section, entry)
        for section, method in SECTIONS.items()
        if _runs(content, method)
        for entry in doc.get(section) or []
    )
    if not ids:
        raise UnificationError(
            "nothing to run: unify.yml has no canonical_ids/persistent_ids entry whose "
            "run_canonical_ids / run_persistent_ids flag is true"
        )
    spec = UnifySpec(name=doc["name"], keys=keys, tables=tables, ids=ids)
    for id_spec in ids:
        if not spec.tables_for(id_spec):
            raise UnificationError(f"{id_spec.name}: source_tables names no table of unify.yml")
    return UnifyRequest(spec=spec, full_refresh=bool(content.get("full_refresh", False)))


def _runs(content: dict[str, Any], method: Method) -> bool:
    return bool(content.get(f"run_{method}s", True))


def _unsupported(content: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Features of TD's API the local engine does not implement: refuse, never ignore."""
    out = []
    for section in SECTIONS:
        for i, entry in enumerate(doc.get(section) or []):
            if not isinstance(entry, dict):
                continue
            for field in ("merge_by_canonical_ids", "merge_by_persistent_ids"):
                if entry.get(field):
                    out.append(f"{section}[{i}].{field}: not supported by the local engine")
            if entry.get("do_not_merge_key"):
                out.append(f"{section}[{i}].do_not_merge_key: not supported by the local engine")
    if content.get("run_master_tables") and doc.get("master_tables"):
        out.append(
            "master_tables: not supported by the local engine (set run_master_tables: false)"
        )
    for i, table in enumerate(doc.get("tables") or []):
        for col in (table or {}).get("incremental_columns") or []:
            if not isinstance(col, str) or not SQL_SYMBOL_RE.match(col):
                out.append(f"tables[{i}].incremental_columns: {col!r} is not a column name")
    return out


def _table(table_id: int, t: dict[str, Any]) -> TableSpec:
    inc = t.get("incremental_columns") or [TIME_KEY]
    return TableSpec(
        table_id=table_id,
        database=t["database"],
        table=t["table"],
        name=t.get("as") or t["table"],
        key_columns=tuple(
            KeyColumnSpec(column=c["column"], key=c["key"]) for c in t["key_columns"]
        ),
        incremental_column=inc[0],
    )


def _id_spec(section: str, entry: dict[str, Any]) -> IdSpec:
    keys = tuple(k for k in entry.get("merge_by_keys") or [] if k != TIME_KEY)
    sources = entry.get("source_tables")
    return IdSpec(
        name=entry["name"],
        method=SECTIONS[section],
        merge_by_keys=keys,
        merge_iterations=int(entry.get("merge_iterations") or DEFAULT_MERGE_ITERATIONS),
        incremental_merge_iterations=int(
            entry.get("incremental_merge_iterations") or DEFAULT_INCREMENTAL_MERGE_ITERATIONS
        ),
        source_tables=tuple(sources) if sources else None,
    )
