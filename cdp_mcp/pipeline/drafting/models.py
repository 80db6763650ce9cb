"""What inspect_source and draft_config return (their tools' output schemas).

Kept free of DuckDB and the backends: the server imports it to list the tools. No field
holds a raw personal value: a repeated value is shown masked (core/pii.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, WithJsonSchema

from cdp_mcp.pipeline.models import NextAction

# The tools/list is read into every conversation and held to a byte budget: a nested
# model's fields are published as "objects" (the tool's description names what they hold);
# the server still builds and checks them as these models.
_OBJECTS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}


class Choice(BaseModel):
    """An inferred choice (a column, or None when nothing fits) and why."""

    column: str | None
    evidence: str


class ColumnInfo(BaseModel):
    name: str  # as loaded and staged (snake_case)
    type: str  # TD type: long, double, string, boolean
    filled: float  # share of sampled rows with a value ('', 'N/A', 'null' ... are none)
    distinct: int  # distinct values in the sample
    kind: str  # staging's rule: email, phone, timestamp, money, plain
    valid: float | None = None  # email, phone: share of sampled rows staging marks valid
    parsed: float | None = None  # timestamp: share of sampled rows whose value parses
    formats: list[str] = []  # timestamp: the forms seen, most frequent first
    pii: str | None = None  # what personal data it holds (email, phone, name, address...)


class Identifier(BaseModel):
    column: str
    key: str  # the unification key it maps to: email, phone, or an id
    valid: float  # share of sampled rows with a valid value
    evidence: str


class ObjectInfo(BaseModel):
    name: str  # the object (file stem or TD table)
    rows: int  # in the whole file or table
    sampled: int
    columns: list[ColumnInfo]
    primary_key: Choice
    incremental_field: Choice
    identifiers: list[Identifier]
    time_formats: list[str] = []  # forms the built-in parsing misses (ingestion.time_formats)
    placeholders: list[str] = []  # masked values repeated far more than others (junk?)


class InspectResult(BaseModel):
    source: str  # the folder, or td:<database>
    objects: Annotated[list[ObjectInfo], WithJsonSchema(_OBJECTS)]
    incremental_field: Annotated[Choice, WithJsonSchema({"type": "object"})]  # all objects
    skipped: list[str]  # files or tables left out, each with why
    next_action: NextAction


class DraftResult(BaseModel):
    path: str  # the file written
    sources: list[str]  # the source names the draft adds
    keys: list[str]  # unification keys, in merge order
    tables: list[str]  # the staging tables unification reads
    notes: list[str]  # what the person should check (choices made on thin evidence)
    next_action: NextAction
