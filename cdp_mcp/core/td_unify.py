"""TD's rules on a unify.yml, each problem with its path in the file.

From treasure-boxes `tool-box/unification-validator` (models/*.py and validate.py's
cross-reference checks) and TD's ID-unification docs. Used on the unify.yml the plan renders
(before any push), by `generate.check` on a project's `config/unify.yml`, and by the local
engine on the body it is posted, so all three refuse the same things in the same words.
"""

from __future__ import annotations

import re
from typing import Any

from cdp_mcp.core.config import Problem
from cdp_mcp.core.unification_tables import ID_TABLE_SUFFIXES

SQL_SYMBOL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

MAX_ITERATIONS = 49
MAX_KEY_COLUMNS = 32
MAX_TABLES = 255
MAX_INVALID_TEXTS = 127
MAX_INCREMENTAL_COLUMNS = 127
MAX_REGEXP_CHARS = 512
MAX_MERGE_ENTRIES = 64  # merge_by_keys, merge_by_canonical_ids
MAX_ATTRIBUTES = 512
MAX_ARRAY_ELEMENTS = 10
ORDERS = ("first", "last")

_TOP_FIELDS = ("name", "keys", "tables", "canonical_ids", "persistent_ids", "master_tables")
_KEY_FIELDS = ("name", "valid_regexp", "invalid_texts")
_TABLE_FIELDS = ("database", "table", "as", "incremental_columns", "key_columns")
_MERGE_BY_IDS = {
    "canonical_ids": "merge_by_canonical_ids",
    "persistent_ids": "merge_by_persistent_ids",
}
_ID_FIELDS = {
    "canonical_ids": (
        "name",
        "merge_by_keys",
        "merge_by_canonical_ids",
        "do_not_merge_key",
        "source_tables",
        "merge_iterations",
        "incremental_merge_iterations",
    ),
    "persistent_ids": (
        "name",
        "merge_by_keys",
        "merge_by_persistent_ids",
        "source_tables",
        "merge_iterations",
        "incremental_merge_iterations",
    ),
}
_MASTER_FIELDS = ("name", "canonical_id", "persistent_id", "attributes")
_ATTRIBUTE_FIELDS = (
    "name",
    "array_elements",
    "source_canonical_id",
    "source_persistent_id",
    "valid_regexp",
    "invalid_texts",
    "source_columns",
)
_SOURCE_COLUMN_FIELDS = ("table", "column", "order", "order_by", "priority")
_SECTION_OF = {"canonical_id": "canonical_ids", "persistent_id": "persistent_ids"}


def _templated(value: Any) -> bool:
    """A `${...}` value is filled in by Digdag at run time; it cannot be checked here."""
    return isinstance(value, str) and "${" in value


class _Checker:
    """Collects problems with their unify.yml path (e.g. `keys[1].invalid_texts`)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path=path, message=message))

    def symbol(self, path: str, value: Any) -> None:
        if _templated(value):
            return
        if not isinstance(value, str) or not SQL_SYMBOL_RE.match(value):
            self.add(
                path,
                f"{value!r} is not a valid name: letters, digits and '_', not starting with a digit",
            )

    def fields(
        self, path: str, node: Any, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> bool:
        if not isinstance(node, dict):
            self.add(path, "must be a mapping")
            return False
        for f in node:
            if f not in allowed:
                self.add(
                    f"{path}.{f}" if path else str(f),
                    f"unknown field; allowed: {', '.join(allowed)}",
                )
        for f in required:
            if f not in node:
                self.add(f"{path}.{f}" if path else f, "required field is missing")
        return True

    def items(self, path: str, node: Any, low: int, high: int) -> list[Any]:
        if _templated(node):
            return []
        if not isinstance(node, list):
            self.add(path, "must be a list")
            return []
        if not low <= len(node) <= high:
            limit = f"at least {low}" if high >= 10**6 else f"{low} to {high}"
            self.add(path, f"has {len(node)} entries; TD allows {limit}")
        return node

    def integer(self, path: str, value: Any, low: int, high: int | None) -> None:
        if value is None or _templated(value):
            return
        bad = isinstance(value, bool) or not isinstance(value, int)
        if bad or value < low or (high is not None and value > high):
            allowed = f"{low} to {high}" if high is not None else f"{low} or more"
            self.add(path, f"{value!r} is out of range; TD allows {allowed}")

    def regexp(self, path: str, regexp: Any) -> None:
        if regexp is None or _templated(regexp):
            return
        if not isinstance(regexp, str) or not regexp:
            self.add(path, "must be a non-empty text")
        elif len(regexp) > MAX_REGEXP_CHARS:
            self.add(path, f"is {len(regexp)} characters long; TD allows {MAX_REGEXP_CHARS}")
        else:
            try:
                re.compile(regexp)
            except re.error as e:
                self.add(path, f"{regexp!r} is not a valid regular expression: {e}")


def unify_config_problems(doc: Any) -> list[Problem]:
    """Every way `doc` (a parsed unify.yml) breaks TD's rules, with its path in the file."""
    c = _Checker()
    if not c.fields("", doc, _TOP_FIELDS, ("name", "keys", "tables")):
        return c.problems
    c.symbol("name", doc.get("name"))
    key_names = _check_keys(c, doc.get("keys"))
    tables = _check_tables(c, doc.get("tables"), key_names)
    merged = _check_ids(c, doc, key_names, tables)
    used = {k for keys in tables.values() for k in keys}
    for i, key in enumerate(doc.get("keys") or []):
        name = key.get("name") if isinstance(key, dict) else None
        if not isinstance(name, str) or _templated(name):
            continue
        if name not in used:
            c.add(
                f"keys[{i}]", f"key {name!r} is not used by any table's key_columns (TD rejects it)"
            )
        elif merged is not None and name not in merged:
            c.add(f"keys[{i}]", f"key {name!r} is in no merge_by_keys: it would merge nothing")
    _check_masters(c, doc, tables)
    return c.problems


def _check_keys(c: _Checker, keys: Any) -> set[str]:
    names: set[str] = set()
    for i, key in enumerate(c.items("keys", keys, 1, 10**6)):
        path = f"keys[{i}]"
        if not c.fields(path, key, _KEY_FIELDS, ("name",)):
            continue
        c.symbol(f"{path}.name", key.get("name"))
        if isinstance(key.get("name"), str):
            if key["name"] in names:
                c.add(f"{path}.name", f"key {key['name']!r} is defined twice")
            names.add(key["name"])
        c.regexp(f"{path}.valid_regexp", key.get("valid_regexp"))
        texts = key.get("invalid_texts")
        if texts is not None:
            c.items(f"{path}.invalid_texts", texts, 0, MAX_INVALID_TEXTS)
    return names


def _check_tables(c: _Checker, tables: Any, key_names: set[str]) -> dict[str, set[str]]:
    """Check `tables`; returns each table's name (`as`, else `table`) -> the keys it has."""
    found: dict[str, set[str]] = {}
    for i, table in enumerate(c.items("tables", tables, 1, MAX_TABLES)):
        path = f"tables[{i}]"
        if not c.fields(path, table, _TABLE_FIELDS, ("database", "table", "key_columns")):
            continue
        for f in ("database", "table", "as"):
            if f in table:
                c.symbol(f"{path}.{f}", table[f])
        name = table.get("as") or table.get("table")
        if isinstance(name, str) and name in found and not _templated(name):
            c.add(path, f"table name {name!r} is used twice; give one of them an `as` name")
        if "incremental_columns" in table:
            for j, col in enumerate(
                c.items(
                    f"{path}.incremental_columns",
                    table["incremental_columns"],
                    0,
                    MAX_INCREMENTAL_COLUMNS,
                )
            ):
                c.symbol(f"{path}.incremental_columns[{j}]", col)
        keys = _check_key_columns(c, path, table, key_names)
        if isinstance(name, str):
            found[name] = keys
    return found


def _check_key_columns(
    c: _Checker, path: str, table: dict[str, Any], key_names: set[str]
) -> set[str]:
    """Check one table's `key_columns`; returns the keys it has."""
    keys: set[str] = set()
    for j, kc in enumerate(
        c.items(f"{path}.key_columns", table.get("key_columns"), 1, MAX_KEY_COLUMNS)
    ):
        kpath = f"{path}.key_columns[{j}]"
        if not c.fields(kpath, kc, ("column", "key"), ("column", "key")):
            continue
        c.symbol(f"{kpath}.column", kc.get("column"))
        key = kc.get("key")
        if isinstance(key, str):
            keys.add(key)
            if key not in key_names and not _templated(key):
                c.add(
                    f"{kpath}.key",
                    f"undefined key {key!r} (keys: {', '.join(sorted(key_names))})",
                )
    return keys


def _check_ids(
    c: _Checker, doc: dict[str, Any], key_names: set[str], tables: dict[str, set[str]]
) -> set[str] | None:
    """Check canonical_ids / persistent_ids; returns every key some id merges by."""
    if not doc.get("canonical_ids") and not doc.get("persistent_ids"):
        c.add("", "either canonical_ids or persistent_ids must have at least one entry")
        return None
    merged: set[str] = set()
    seen: set[str] = set()
    for section in ("canonical_ids", "persistent_ids"):
        entries = c.items(section, doc.get(section, []), 0, 10**6)
        names = {e.get("name") for e in entries if isinstance(e, dict)}
        for i, entry in enumerate(entries):
            path = f"{section}[{i}]"
            if not c.fields(path, entry, _ID_FIELDS[section], ("name",)):
                continue
            name = entry.get("name")
            c.symbol(f"{path}.name", name)
            if isinstance(name, str) and name in seen:
                c.add(f"{path}.name", f"{name!r} is defined twice")
            if isinstance(name, str):
                seen.add(name)
            by_keys = entry.get("merge_by_keys") or []
            merged.update(k for k in by_keys if isinstance(k, str))
            by_ids = _check_merge_by_ids(c, section, path, entry, names)
            _check_merge_by_keys(c, section, path, entry, by_keys, key_names, by_ids)
            _check_source_tables(c, path, entry.get("source_tables"), tables)
            for f in ("merge_iterations", "incremental_merge_iterations"):
                c.integer(f"{path}.{f}", entry.get(f), 1, MAX_ITERATIONS)
    return merged


def _check_merge_by_ids(
    c: _Checker, section: str, path: str, entry: dict[str, Any], names: set[Any]
) -> int:
    field = _MERGE_BY_IDS[section]
    ids = entry.get(field)
    if ids is None:
        return 0
    listed = c.items(f"{path}.{field}", ids, 0, MAX_MERGE_ENTRIES)
    for ref in listed:
        if _templated(ref):
            continue
        if ref == entry.get("name"):
            c.add(f"{path}.{field}", f"{ref!r} cannot merge itself")
        elif ref not in names:
            c.add(f"{path}.{field}", f"references unknown {section[:-1]} {ref!r}")
    return len(listed)


def _check_merge_by_keys(
    c: _Checker,
    section: str,
    path: str,
    entry: dict[str, Any],
    by_keys: Any,
    key_names: set[str],
    merged_ids: int,
) -> None:
    if not isinstance(by_keys, list):
        c.add(f"{path}.merge_by_keys", "must be a list of keys")
        return
    if not by_keys and merged_ids <= 1:
        c.add(
            f"{path}.merge_by_keys",
            f"must list at least one key (it may be empty only when "
            f"{_MERGE_BY_IDS[section]} lists two or more ids)",
        )
        return
    if len(by_keys) > MAX_MERGE_ENTRIES:
        c.add(f"{path}.merge_by_keys", f"has {len(by_keys)} keys; TD allows {MAX_MERGE_ENTRIES}")
    special = {"time"} if section == "persistent_ids" else set()
    for k in by_keys:
        if k not in key_names | special and not _templated(k):
            c.add(
                f"{path}.merge_by_keys",
                f"names undefined key {k!r} (keys: {', '.join(sorted(key_names))})",
            )
    if by_keys.count("time") > 1 and section == "persistent_ids":
        c.add(f"{path}.merge_by_keys", "lists the special key 'time' more than once")
    dnm = entry.get("do_not_merge_key")
    if dnm is not None and not _templated(dnm):
        if not by_keys:
            c.add(f"{path}.do_not_merge_key", "needs merge_by_keys, whose first key it must be")
        elif dnm != by_keys[0]:
            c.add(
                f"{path}.do_not_merge_key",
                f"must be the first of merge_by_keys ({by_keys[0]!r}), not {dnm!r}",
            )


def _check_source_tables(c: _Checker, path: str, sources: Any, tables: dict[str, set[str]]) -> None:
    if sources is None:
        return
    for j, name in enumerate(c.items(f"{path}.source_tables", sources, 1, MAX_TABLES)):
        if not _templated(name) and name not in tables:
            c.add(
                f"{path}.source_tables[{j}]",
                f"references unknown table {name!r} (tables: {', '.join(sorted(tables))})",
            )


def _id_tables(doc: dict[str, Any], section: str, name: Any) -> set[str] | None:
    """The tables an id of `section` covers (None: unknown), by name."""
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            sources = entry.get("source_tables")
            if isinstance(sources, list):
                return {s for s in sources if isinstance(s, str)}
            return None
    return None


def _id_exists(doc: dict[str, Any], section: str, name: Any) -> bool:
    return any(isinstance(e, dict) and e.get("name") == name for e in doc.get(section) or [])


def _check_masters(c: _Checker, doc: dict[str, Any], tables: dict[str, set[str]]) -> None:
    masters = doc.get("master_tables")
    if masters is None:
        return
    id_names = {
        e.get("name")
        for section in _SECTION_OF.values()
        for e in doc.get(section) or []
        if isinstance(e, dict)
    }
    reserved = {f"{i}_{s}" for i in id_names if isinstance(i, str) for s in ID_TABLE_SUFFIXES}
    seen: set[str] = set()
    for i, m in enumerate(c.items("master_tables", masters, 0, 10**6)):
        path = f"master_tables[{i}]"
        if not c.fields(path, m, _MASTER_FIELDS, ("name",)):
            continue
        name = m.get("name")
        c.symbol(f"{path}.name", name)
        if isinstance(name, str) and not _templated(name):
            if name in seen:
                c.add(f"{path}.name", f"master table {name!r} is defined twice")
            if name in reserved or name.startswith("enriched_"):
                c.add(f"{path}.name", f"{name!r} is a table the unification itself writes")
            seen.add(name)
        ids = [f for f in _SECTION_OF if m.get(f)]
        if len(ids) != 1:
            c.add(path, "either canonical_id or persistent_id must be present (but not both)")
            continue
        kind = ids[0]
        section = _SECTION_OF[kind]
        id_name = m[kind]
        if not _templated(id_name) and not _id_exists(doc, section, id_name):
            c.add(f"{path}.{kind}", f"references unknown {kind} {id_name!r}")
            continue
        covered = _id_tables(doc, section, id_name)
        attrs = c.items(f"{path}.attributes", m.get("attributes") or [], 0, MAX_ATTRIBUTES)
        names: set[str] = set()
        for j, a in enumerate(attrs):
            _check_attribute(c, f"{path}.attributes[{j}]", a, doc, tables, covered, names)
            if isinstance(a, dict) and a.get("name") == id_name:
                c.add(
                    f"{path}.attributes[{j}].name",
                    f"{id_name!r} is the master table's id column; name the attribute otherwise",
                )


def _check_attribute(
    c: _Checker,
    path: str,
    a: Any,
    doc: dict[str, Any],
    tables: dict[str, set[str]],
    covered: set[str] | None,
    names: set[str],
) -> None:
    if not c.fields(path, a, _ATTRIBUTE_FIELDS, ("name",)):
        return
    name = a.get("name")
    c.symbol(f"{path}.name", name)
    if isinstance(name, str):
        if name in names:
            c.add(f"{path}.name", f"duplicate attribute name {name!r}")
        names.add(name)
    c.integer(f"{path}.array_elements", a.get("array_elements"), 1, MAX_ARRAY_ELEMENTS)
    c.regexp(f"{path}.valid_regexp", a.get("valid_regexp"))
    if a.get("invalid_texts") is not None:
        c.items(f"{path}.invalid_texts", a["invalid_texts"], 0, MAX_INVALID_TEXTS)
    sources = [f for f in ("source_canonical_id", "source_persistent_id") if a.get(f)]
    columns = a.get("source_columns") or []
    if len(sources) > 1 or (sources and columns):
        c.add(path, "set one of source_columns, source_canonical_id, source_persistent_id")
        return
    if sources:
        field = sources[0]
        section = _SECTION_OF[field.removeprefix("source_")]
        if not _templated(a[field]) and not _id_exists(doc, section, a[field]):
            c.add(f"{path}.{field}", f"references unknown {section[:-1]} {a[field]!r}")
        return
    if not columns:
        c.add(
            f"{path}.source_columns",
            "must be set when neither source_canonical_id nor source_persistent_id is",
        )
        return
    for k, sc in enumerate(c.items(f"{path}.source_columns", columns, 1, 10**6)):
        _check_source_column(c, f"{path}.source_columns[{k}]", sc, tables, covered)


def _check_source_column(
    c: _Checker, spath: str, sc: Any, tables: dict[str, set[str]], covered: set[str] | None
) -> None:
    if not c.fields(spath, sc, _SOURCE_COLUMN_FIELDS, ("table",)):
        return
    table = sc.get("table")
    if not _templated(table):
        if table not in tables:
            c.add(
                f"{spath}.table",
                f"references unknown table {table!r} (tables: {', '.join(sorted(tables))})",
            )
        elif covered is not None and table not in covered:
            c.add(
                f"{spath}.table",
                f"{table!r} is not among the source_tables of the master table's id, so "
                "it is not enriched with that id",
            )
    for f in ("column", "order_by"):
        if f in sc:
            c.symbol(f"{spath}.{f}", sc[f])
    order = sc.get("order")
    if order is not None and order not in ORDERS:
        c.add(f"{spath}.order", f"{order!r} is not allowed; one of: {', '.join(ORDERS)}")
    c.integer(f"{spath}.priority", sc.get("priority"), 1, None)
