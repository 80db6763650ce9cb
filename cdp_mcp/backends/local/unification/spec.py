"""The body of TD's `unifications/workflow_call`, parsed into what the engine runs.

The generated `id_unification.dig` posts `{run_canonical_ids | run_persistent_ids,
run_enrichments, run_master_tables, full_refresh, keep_debug_tables, unification:
<config/unify.yml>}`, as TD's samples do (treasure-boxes tool-box/id-unification-samples).
TD's limits are checked with the function generation uses (`unify_plan.unify_config_problems`),
so a config the generator would refuse is refused here with the same messages.

A flag left out is true, except `full_refresh` and `keep_debug_tables`: TD's own projects
that omit the flags (treasure-data/se-starter-pack `wf05_unify.dig`) read `enriched_*` tables
afterwards, so TD enriches by default.

Key codes (`id_key_type`) are 1..n in the order of unify.yml's `keys`; merge priority is the
order of the id's `merge_by_keys`, then (for an id that merges other ids) the keys those ids
merge by, in their order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.td_unify import unify_config_problems

Method = Literal["canonical_id", "persistent_id"]
DEFAULT_MERGE_ITERATIONS = 3  # TD's defaults when unify.yml leaves them out
DEFAULT_INCREMENTAL_MERGE_ITERATIONS = 2
# values carried by more records than this are reported as over-merged (report.py)
DEFAULT_OVER_MERGE_THRESHOLD = 1000
TIME_KEY = "time"  # persistent_ids' special key: the earliest-seen order it names is built in
SECTIONS: dict[str, Method] = {"canonical_ids": "canonical_id", "persistent_ids": "persistent_id"}
MERGE_BY_IDS = {
    "canonical_id": "merge_by_canonical_ids",
    "persistent_id": "merge_by_persistent_ids",
}
SOURCE_ID = {"canonical_id": "source_canonical_id", "persistent_id": "source_persistent_id"}
ORDERS = ("first", "last")
DEFAULT_ORDER_BY = "time"


class UnificationError(CdpError):
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
    name: str  # `as`, else the table name: how ids and master tables name it
    key_columns: tuple[KeyColumnSpec, ...]
    # New rows are those whose columns, compared in this order, are at or after the largest
    # seen last run. None: every run reads every row (the previous graph is still continued).
    incremental_columns: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"

    @property
    def enriched(self) -> str:
        return f"enriched_{self.name}"


@dataclass(frozen=True)
class IdSpec:
    name: str
    method: Method
    merge_by_keys: tuple[str, ...]  # priority order, `time` removed
    merge_iterations: int
    incremental_merge_iterations: int
    source_tables: tuple[str, ...] | None
    merge_by_ids: tuple[str, ...] = ()  # ids of the same method whose clusters it merges
    do_not_merge_key: str | None = None  # values of this key never share a profile
    # merge_by_keys, then the keys of merged ids: the leader order of every key it holds
    rank_keys: tuple[str, ...] = ()

    @property
    def id_column(self) -> str:
        """The lookup's column holding the id: TD's fixed name, not the id's own."""
        return self.method


@dataclass(frozen=True)
class SourceColumnSpec:
    table: str  # a unify.yml table (its `as` name)
    column: str
    order: Literal["first", "last"]
    order_by: str
    priority: int  # 1 is preferred


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    array_elements: int | None  # None: one value; n: up to n distinct values, best first
    valid_regexp: str | None
    invalid_texts: tuple[str | None, ...]
    source_columns: tuple[SourceColumnSpec, ...]
    source_id: str | None  # another id of the same request, as its value(s) for the profile


@dataclass(frozen=True)
class MasterSpec:
    name: str
    id_name: str
    attributes: tuple[AttributeSpec, ...]


@dataclass(frozen=True)
class UnifySpec:
    name: str
    keys: tuple[KeySpec, ...]
    tables: tuple[TableSpec, ...]
    ids: tuple[IdSpec, ...]  # those the request runs, an id after the ids it merges
    masters: tuple[MasterSpec, ...] = ()

    @property
    def database(self) -> str:
        return f"cdp_unification_{self.name}"

    def key(self, name: str) -> KeySpec:
        return next(k for k in self.keys if k.name == name)

    def id(self, name: str) -> IdSpec:
        return next(i for i in self.ids if i.name == name)

    def table(self, name: str) -> TableSpec:
        return next(t for t in self.tables if t.name == name)

    def tables_for(self, id_spec: IdSpec) -> tuple[TableSpec, ...]:
        if id_spec.source_tables is None:
            return self.tables
        wanted = set(id_spec.source_tables)
        return tuple(t for t in self.tables if t.name in wanted)

    def ids_for(self, table: TableSpec) -> tuple[IdSpec, ...]:
        """The ids that enrich a table: those over it that merge by some key it has."""
        keys = {kc.key for kc in table.key_columns}
        return tuple(i for i in self.ids if table in self.tables_for(i) and keys & set(i.rank_keys))

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
            "do_not_merge_key": id_spec.do_not_merge_key,
            # A merged id that ran a full refresh may have re-derived its leaders.
            "merge_by_ids": [[c, self.fingerprint(self.id(c))] for c in id_spec.merge_by_ids],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UnifyRequest:
    spec: UnifySpec
    full_refresh: bool
    run_enrichments: bool = True
    run_master_tables: bool = True
    keep_debug_tables: bool = False


def parse_request(content: Any) -> UnifyRequest:
    """The workflow_call body -> UnifyRequest; raises UnificationError naming every problem."""
    if not isinstance(content, dict) or not isinstance(content.get("unification"), dict):
        raise UnificationError(
            "the request body must be a mapping with `unification:` holding config/unify.yml"
        )
    doc = content["unification"]
    problems = [str(p) for p in unify_config_problems(doc)]
    problems += _flag_problems(content)
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
    entries = {
        entry["name"]: (section, entry) for section in SECTIONS for entry in doc.get(section) or []
    }
    running = [n for n, (section, _) in entries.items() if _runs(content, SECTIONS[section])]
    if not running:
        raise UnificationError(
            "nothing to run: unify.yml has no canonical_ids/persistent_ids entry whose "
            "run_canonical_ids / run_persistent_ids flag is true"
        )
    ids: dict[str, IdSpec] = {}
    for name in _dependency_order(running, entries):
        section, entry = entries[name]
        ids[name] = _id_spec(section, entry, ids)
    masters: tuple[MasterSpec, ...] = ()
    run_masters = _flag(content, "run_master_tables", True)
    if run_masters:
        masters = tuple(_master(i, m, ids) for i, m in enumerate(doc.get("master_tables") or []))
    spec = UnifySpec(
        name=doc["name"], keys=keys, tables=tables, ids=tuple(ids.values()), masters=masters
    )
    return UnifyRequest(
        spec=spec,
        full_refresh=_flag(content, "full_refresh", False),
        run_enrichments=_flag(content, "run_enrichments", True),
        run_master_tables=run_masters,
        keep_debug_tables=_flag(content, "keep_debug_tables", False),
    )


FLAGS = (
    "run_canonical_ids",
    "run_persistent_ids",
    "run_enrichments",
    "run_master_tables",
    "full_refresh",
    "keep_debug_tables",
)


def _flag_problems(content: dict[str, Any]) -> list[str]:
    return [
        f"{f}: must be true or false, not {content[f]!r}"
        for f in FLAGS
        if f in content and not isinstance(content[f], bool)
    ]


def _flag(content: dict[str, Any], name: str, default: bool) -> bool:
    return bool(content.get(name, default))


def _runs(content: dict[str, Any], method: Method) -> bool:
    return _flag(content, f"run_{method}s", True)


def _dependency_order(running: list[str], entries: dict[str, tuple[str, Any]]) -> list[str]:
    """`running` with every id after the ids it merges (which must run too)."""
    out: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in out:
            return
        section, entry = entries[name]
        for child in entry.get(MERGE_BY_IDS[SECTIONS[section]]) or []:
            if child in path:
                raise UnificationError(f"{section}: {' -> '.join((*path, child))} is a cycle")
            if child not in running:
                raise UnificationError(f"{name} merges {child}, which this request does not run")
            visit(child, (*path, child))
        out.append(name)

    for name in running:
        visit(name, (name,))
    return out


def _table(table_id: int, t: dict[str, Any]) -> TableSpec:
    return TableSpec(
        table_id=table_id,
        database=t["database"],
        table=t["table"],
        name=t.get("as") or t["table"],
        key_columns=tuple(
            KeyColumnSpec(column=c["column"], key=c["key"]) for c in t["key_columns"]
        ),
        incremental_columns=tuple(t.get("incremental_columns") or ()),
    )


def _id_spec(section: str, entry: dict[str, Any], done: dict[str, IdSpec]) -> IdSpec:
    method = SECTIONS[section]
    keys = tuple(k for k in entry.get("merge_by_keys") or [] if k != TIME_KEY)
    children = tuple(entry.get(MERGE_BY_IDS[method]) or ())
    rank = list(keys)
    for child in children:
        rank += [k for k in done[child].rank_keys if k not in rank]
    sources = entry.get("source_tables")
    return IdSpec(
        name=entry["name"],
        method=method,
        merge_by_keys=keys,
        merge_iterations=int(entry.get("merge_iterations") or DEFAULT_MERGE_ITERATIONS),
        incremental_merge_iterations=int(
            entry.get("incremental_merge_iterations") or DEFAULT_INCREMENTAL_MERGE_ITERATIONS
        ),
        source_tables=tuple(sources) if sources else None,
        merge_by_ids=children,
        do_not_merge_key=entry.get("do_not_merge_key"),
        rank_keys=tuple(rank),
    )


def _master(index: int, m: dict[str, Any], ids: dict[str, IdSpec]) -> MasterSpec:
    path = f"master_tables[{index}]"
    method: Method = "canonical_id" if m.get("canonical_id") else "persistent_id"
    id_name = m[method]
    if id_name not in ids:
        raise UnificationError(
            f"{path}.{method}: {id_name} is not run by this request "
            f"(run_{method}s is false); set it true or run_master_tables: false"
        )
    attributes = []
    for j, a in enumerate(m.get("attributes") or []):
        source_id = a.get(SOURCE_ID["canonical_id"]) or a.get(SOURCE_ID["persistent_id"])
        if source_id is not None and source_id not in ids:
            raise UnificationError(
                f"{path}.attributes[{j}]: {source_id} is not run by this request"
            )
        columns = tuple(
            SourceColumnSpec(
                table=c["table"],
                column=c.get("column") or a["name"],
                order="first" if c.get("order") == "first" else "last",
                order_by=c.get("order_by") or DEFAULT_ORDER_BY,
                priority=int(c.get("priority") or k + 1),
            )
            for k, c in enumerate(a.get("source_columns") or [])
        )
        attributes.append(
            AttributeSpec(
                name=a["name"],
                array_elements=a.get("array_elements"),
                valid_regexp=a.get("valid_regexp"),
                invalid_texts=tuple(a.get("invalid_texts") or ()),
                source_columns=columns,
                source_id=source_id,
            )
        )
    return MasterSpec(name=m["name"], id_name=id_name, attributes=tuple(attributes))
