"""The TD input connectors cdp-mcp knows (catalog.yml) and the one validator of their settings.

`check_settings` is what the config calls: every problem names its field path
(`ingestion.connector_settings.store_name`) and what is allowed, so a missing Shopify
`store_name` is a config error, not a failed load hours later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

SECRET_REF = re.compile(r"^\$\{secret:([A-Za-z0-9_.\-]+)\}$")
# Names the generator writes into a query or condition unquoted (dataset, db, schema).
QUERY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AUTH_ID = "td_authentication_id"
RANGE_STYLES = ("fields", "where", "query", "none")


@dataclass(frozen=True)
class RangeSpec:
    style: str
    from_field: str | None = None  # style fields: the connector's lower-bound field
    to_field: str | None = None  # style fields: its upper-bound field (None: it has none)
    column_field: str | None = None  # style fields: the field naming the filtered column
    field: str | None = None  # style where/query: the field holding the condition/query
    query_from: str | None = None  # style query: the table, a template of settings
    dialect: str | None = None  # sql | soql | bigquery | snowflake
    format: str = "iso_millis_z"


@dataclass(frozen=True)
class Connector:
    type: str
    title: str
    sources: tuple[str, ...]
    object_field: str | None
    credentials: tuple[str, ...]
    optional_credentials: tuple[str, ...]
    required: tuple[str, ...]
    per_object: tuple[str, ...]
    optional: tuple[str, ...]
    fixed: dict[str, Any]
    range: RangeSpec
    extract_formats: tuple[str, ...]
    extract_shape: str

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return self.credentials + self.optional_credentials

    @property
    def reserved(self) -> tuple[str, ...]:
        """Fields the generator sets: the type, the object, the range, the fixed ones."""
        r = self.range
        names = ["type", *self.fixed]
        if self.object_field:
            names.append(self.object_field)
        names += [n for n in (r.from_field, r.to_field, r.field) if n]
        if r.column_field and r.column_field not in self.optional:
            names.append(r.column_field)
        return tuple(dict.fromkeys(names))

    @property
    def settable(self) -> tuple[str, ...]:
        """Every field a person may give, in the catalog's order."""
        return (AUTH_ID, *self.secret_fields, *self.required, *self.per_object, *self.optional)

    def shape(self, obj: str, settings: dict[str, Any]) -> str:
        return self.extract_shape.replace("{object}", obj).format_map(
            _Missing({k: str(v) for k, v in settings.items()})
        )


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in (value or []))


def _connector(name: str, raw: dict[str, Any]) -> Connector:
    rng = dict(raw.get("range") or {"style": "none"})
    if rng.get("style") not in RANGE_STYLES:
        raise ValueError(f"catalog.yml: {name}.range.style must be one of {RANGE_STYLES}")
    extract = raw.get("extract") or {}
    return Connector(
        type=name,
        title=str(raw.get("title") or name),
        sources=_tuple(raw.get("sources")),
        object_field=raw.get("object_field"),
        credentials=_tuple(raw.get("credentials")),
        optional_credentials=_tuple(raw.get("optional_credentials")),
        required=_tuple(raw.get("required")),
        per_object=_tuple(raw.get("per_object")),
        optional=_tuple(raw.get("optional")),
        fixed=dict(raw.get("fixed") or {}),
        range=RangeSpec(
            style=rng["style"],
            from_field=rng.get("from") if rng["style"] == "fields" else None,
            to_field=rng.get("to"),
            column_field=rng.get("column_field"),
            field=rng.get("field"),
            query_from=rng.get("from") if rng["style"] == "query" else None,
            dialect=rng.get("dialect"),
            format=str(rng.get("format") or "iso_millis_z"),
        ),
        extract_formats=_tuple(extract.get("formats")) or ("csv", "jsonl", "parquet"),
        extract_shape=str(extract.get("shape") or "the rows of {object}"),
    )


@cache
def catalog() -> dict[str, Connector]:
    text = resources.files("cdp_mcp.core").joinpath("connector_catalog.yml").read_text("utf-8")
    raw = yaml.safe_load(text)
    return {name: _connector(name, entry) for name, entry in raw.items()}


def connector_types() -> list[str]:
    return sorted(catalog())


def get(connector_type: str) -> Connector | None:
    return catalog().get(connector_type)


def unknown_type_message(connector_type: str) -> str:
    return (
        f"{connector_type!r} is not a Treasure Data input connector in cdp-mcp's catalog; use "
        f"`file` (local extracts) or one of: {', '.join(connector_types())}"
    )


def is_secret_value(value: Any) -> bool:
    """`${secret:name}`, or TD's file form `{content: ${secret:name}}` (a key file)."""
    if isinstance(value, str):
        return bool(SECRET_REF.match(value))
    if isinstance(value, dict) and set(value) == {"content"}:
        return is_secret_value(value["content"])
    return False


def _auth_id_ok(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and (value.isdigit() or is_secret_value(value))


def check_settings(
    connector_type: str,
    settings: dict[str, Any],
    object_settings: dict[str, dict[str, Any]],
    objects: list[str],
    source: str,
) -> list[tuple[str, str]]:
    """(field path under `ingestion`, message) for every problem; [] when all is well."""
    conn = get(connector_type)
    if conn is None:
        return [("connector", unknown_type_message(connector_type))]
    problems: list[tuple[str, str]] = []
    problems += _fields("connector_settings", conn, settings, source, connector_level=True)
    problems += _object_problems(conn, object_settings, objects, source)
    problems += _credential_problems(conn, settings, source)
    problems += [
        (f"connector_settings.{name}", f"required field of TD's {conn.type} connector is missing")
        for name in conn.required
        if name not in settings
    ]
    problems += [
        (
            f"object_settings.{obj}.{name}",
            f"required for each object by TD's {conn.type} connector",
        )
        for name in conn.per_object
        for obj in objects
        if name not in (object_settings.get(obj) or {})
    ]
    problems += _query_name_problems(conn, settings)
    return problems


def _object_problems(
    conn: Connector, object_settings: dict[str, dict[str, Any]], objects: list[str], source: str
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for obj, extra in object_settings.items():
        if obj not in objects:
            problems.append(
                (f"object_settings.{obj}", f"is not in `objects` ({', '.join(objects)})")
            )
            continue
        problems += _fields(f"object_settings.{obj}", conn, extra, source, connector_level=False)
    return problems


def _credential_problems(
    conn: Connector, settings: dict[str, Any], source: str
) -> list[tuple[str, str]]:
    if AUTH_ID in settings:
        return []
    return [
        (
            f"connector_settings.{name}",
            f"required by TD's {conn.type} connector: give it as "
            f"${{secret:{source}.{name}}} (set the value with set_secrets or "
            f"`td wf secrets`), or give {AUTH_ID} (an authentication saved in "
            "TD's console)",
        )
        for name in conn.credentials
        if name not in settings
    ]


def _query_name_problems(conn: Connector, settings: dict[str, Any]) -> list[tuple[str, str]]:
    """Settings that name part of the table a `query`-style range reads must be names."""
    if conn.range.style != "query":
        return []
    problems = []
    for name in re.findall(r"\{(\w+)\}", conn.range.query_from or ""):
        value = settings.get(name)
        if name != "object" and value is not None and not QUERY_NAME.match(str(value)):
            problems.append(
                (
                    f"connector_settings.{name}",
                    f"{value!r} names part of the table cdp-mcp queries: use letters, "
                    "digits and '_'",
                )
            )
    return problems


def _fields(
    where: str, conn: Connector, values: dict[str, Any], source: str, *, connector_level: bool
) -> list[tuple[str, str]]:
    problems = []
    for key, value in values.items():
        path = f"{where}.{key}"
        if key in conn.reserved:
            problems.append(
                (
                    path,
                    f"set by cdp-mcp ({'the load range' if key not in conn.fixed else 'fixed'}"
                    f" for TD's {conn.type} connector); leave it out",
                )
            )
        elif key not in conn.settable:
            problems.append(
                (
                    path,
                    f"not a field of TD's {conn.type} connector that cdp-mcp sets; fields: "
                    f"{', '.join(conn.settable)}",
                )
            )
        elif key in conn.per_object and connector_level:
            problems.append((path, f"differs by object: give it in object_settings.<object>.{key}"))
        elif key == AUTH_ID:
            if not connector_level:
                problems.append((path, "belongs in connector_settings"))
            elif not _auth_id_ok(value):
                problems.append(
                    (path, "must be the numeric id of an authentication saved in TD's console")
                )
        elif key in conn.secret_fields:
            if not connector_level:
                problems.append((path, "credentials belong in connector_settings"))
            elif not is_secret_value(value):
                problems.append(
                    (
                        path,
                        f"a credential is never written in the config: give "
                        f"${{secret:{source}.{key}}} and set its value with set_secrets or "
                        f"`td wf secrets` (or use {AUTH_ID})",
                    )
                )
        elif value is None and key not in conn.optional:
            problems.append((path, "needs a value"))
    return problems
