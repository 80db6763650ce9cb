"""The jinja2 environment every phase template renders in.

Identifiers reaching SQL were validated by the config; templates still quote them (`q`) and
render values as SQL string literals (`lit`) so nothing from a config is pasted raw. Both
`lit` and `yaml` write text so Digdag's `${...}` evaluation renders it literally
(cdp_mcp/core/literal.py): a `${` from a config never reaches Digdag as an expression.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jinja2
import yaml

from cdp_mcp.core.literal import digdag_literal, sql_literal
from cdp_mcp.core.sqltext import quote_ident

# Tasks of one phase that run side by side (`_parallel: {limit: N}`), as the seed's plugins do.
PARALLEL_LIMIT = 3


def _literal_strings(value: Any) -> Any:
    if isinstance(value, str):
        return digdag_literal(value)
    if isinstance(value, list):
        return [_literal_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _literal_strings(v) for k, v in value.items()}
    return value


def _yaml_value(value: Any) -> str:
    """A value as a YAML flow value (quoted when needed), its text literal to Digdag."""
    return (
        yaml.safe_dump(_literal_strings(value), default_flow_style=True, width=10_000)
        .removesuffix("\n...\n")
        .strip()
    )


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cdp_mcp.generate", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = quote_ident
    env.filters["lit"] = sql_literal
    env.filters["yaml"] = _yaml_value
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
