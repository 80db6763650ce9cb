"""A phase's validation metrics as small readable tables (both report formats draw them).

The metrics are nested dicts and lists (see pipeline/validate.py); each top-level metric
becomes one block: scalars gather in a "metric | value" table, a mapping of entities (tables,
objects) becomes one table with a row per entity, a list of records a table with a row each.
Numbers are written as numbers (1,234; 98.4%), never as Python reprs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

Cell = str | int | float | None


class Block(NamedTuple):
    title: str
    headers: tuple[str, ...]
    rows: list[list[str]]
    note: str = ""  # a long text metric, as a sentence under the title


_PERCENT_WORDS = ("share", "rate", "coverage", "valid", "not_null", "unique")
_WIDE = 6  # more columns than this: a row per metric, a column per entity


def label(key: str) -> str:
    return key.replace("_", " ")


def fmt(value: Any, key: str = "") -> str:
    """One metric value as a person reads it."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if 0.0 <= value <= 1.0 and any(w in key for w in _PERCENT_WORDS):
            return f"{100 * value:.1f}%"
        return f"{value:,.1f}" if value >= 100 else f"{value:g}"
    if isinstance(value, list):
        return "; ".join(fmt(v, key) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{label(k)} {fmt(v, k)}" for k, v in value.items()) or "-"
    return str(value)


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, dict) and v and all(not isinstance(x, dict | list) for x in v.values()):
            out.update(_flat(v, f"{prefix}{k} "))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _entity_table(name: str, entities: dict[str, dict[str, Any]]) -> Block:
    flat = {e: _flat(v) for e, v in entities.items()}
    columns = list(dict.fromkeys(k for rec in flat.values() for k in rec))
    if len(columns) > _WIDE:
        rows = [[label(c), *(fmt(flat[e].get(c), c) for e in flat)] for c in columns]
        return Block(label(name), ("metric", *flat), rows)
    rows = [[e, *(fmt(rec.get(c), c) for c in columns)] for e, rec in flat.items()]
    return Block(label(name), ("", *map(label, columns)), rows)


def _records(name: str, records: list[dict[str, Any]]) -> Block:
    columns = list(dict.fromkeys(k for rec in records for k in rec))
    rows = [[fmt(rec.get(c), c) for c in columns] for rec in records]
    return Block(label(name), tuple(map(label, columns)), rows)


def _grouped_records(name: str, groups: dict[str, list[dict[str, Any]]]) -> Block:
    columns = list(dict.fromkeys(k for recs in groups.values() for r in recs for k in r))
    rows = [[g, *(fmt(r.get(c), c) for c in columns)] for g, recs in groups.items() for r in recs]
    return Block(label(name), ("", *map(label, columns)), rows)


def metric_blocks(metrics: dict[str, Any]) -> list[Block]:
    scalars: list[list[str]] = []
    blocks: list[Block] = []
    for key, value in metrics.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            blocks.append(_entity_table(key, value))
        elif isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            blocks.append(_grouped_records(key, value))
        elif isinstance(value, dict) and value:
            rows = [[str(k), fmt(v, key)] for k, v in value.items()]
            blocks.append(Block(label(key), ("", "value"), rows))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            blocks.append(_records(key, value))
        elif isinstance(value, str) and len(value) > 80:
            blocks.append(Block(label(key), (), [], note=value))
        else:
            scalars.append([label(key), fmt(value, key)])
    if scalars:
        blocks.insert(0, Block("figures", ("metric", "value"), scalars))
    return blocks
