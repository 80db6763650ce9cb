"""The `in:` section of a catalog connector's td_load> config, for one object.

Values from the config are written so Digdag renders them literally (digdag/literal.py);
only `${secret:...}` references and the generator's own range expressions stay live.
"""

from __future__ import annotations

from typing import Any

import yaml

from cdp_mcp.core.connectors import Connector, is_secret_value
from cdp_mcp.core.literal import digdag_literal
from cdp_mcp.generate import connector_ranges as ranges


class Live(str):
    """Text Digdag evaluates: the generator's expressions, secret references."""


def in_section(
    conn: Connector,
    settings: dict[str, Any],
    object_settings: dict[str, Any],
    obj: str,
    incremental_field: str,
) -> dict[str, Any]:
    merged = {**settings, **object_settings}
    section: dict[str, Any] = {"type": conn.type}
    for key in conn.settable:
        if merged.get(key) is not None:
            section[key] = merged[key]
    if conn.object_field:
        section[conn.object_field] = obj
    section.update(conn.fixed)
    r = conn.range
    if r.style == "fields":
        assert r.from_field is not None
        section[r.from_field] = Live(ranges.lower(r.format))
        if r.to_field:
            section[r.to_field] = Live(ranges.upper(r.format))
        if r.column_field and not (r.column_field in merged and merged[r.column_field] is None):
            section[r.column_field] = merged.get(r.column_field) or incremental_field
    elif r.style == "where":
        assert r.field is not None and r.dialect is not None
        section[r.field] = Live(ranges.condition(incremental_field, r.format, r.dialect))
    elif r.style == "query":
        assert r.field is not None and r.query_from is not None
        table = r.query_from.format(**{**settings, "object": obj})
        source = f"`{table}`" if r.dialect == "bigquery" else table
        where = ranges.condition(incremental_field, r.format, "sql")
        section[r.field] = Live(f"SELECT * FROM {source} WHERE {where}")
    return section


def _written(value: Any) -> Any:
    if isinstance(value, Live) or is_secret_value(value):
        return str(value) if isinstance(value, str) else value
    if isinstance(value, str):
        return digdag_literal(value)
    if isinstance(value, list):
        return [_written(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _written(v) for k, v in value.items()}
    return value


def dump_in(section: dict[str, Any]) -> str:
    """`in:` and its fields as block YAML, two-space indented, ready for the template."""
    text = yaml.safe_dump(
        {"in": _written(section)},
        sort_keys=False,
        default_flow_style=False,
        width=10_000,
        allow_unicode=True,
    )
    return text
