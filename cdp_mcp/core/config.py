"""The pipeline YAML as pydantic models.

Every problem in a config is reported at once, each naming its field path and what is
allowed, so a person fixes a file in one pass. Names that later become SQL identifiers are
validated here; the SQL layer still quotes them.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cdp_mcp.core import connectors, redact, time_formats
from cdp_mcp.core.apikey import key_problem
from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.text_source import canonical_encoding
from cdp_mcp.core.unification_tables import ID_TABLE_SUFFIXES
from cdp_mcp.core.workspace import system_folder_problem
from cdp_mcp.core.yaml_bounded import MAX_BYTES, YamlInputError, load_bounded

IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
CLIENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# `${NAME}` is read from the environment; `$${` stands for a literal `${`.
ENV_REF_RE = re.compile(r"\$(\$)\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PHASE_DIRS = ("ingestion", "hist_union", "staging", "unification")
SOURCE_FORMATS = ("csv", "parquet", "jsonl")
# Names become databases, tables, workflows and file names (`{source}_{object}_load.yml`):
# 64 keeps every such file name far below the file systems' 255 bytes.
NAME_MAX = 64
COLUMN_MAX = 128  # columns only ever appear in SQL, quoted
PATH_PART_MAX = 255  # bytes per folder or file name (ext4, APFS, NTFS)
PATH_MAX = 4096
# What TD's time column and the generated SQL hold: unix seconds from 1970, four-digit years.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)
SHOWN_MAX = 60  # characters of a value quoted back in a message
MAX_PROBLEMS = 50


def shown(value: object) -> str:
    """A value quoted in a message: repr (control characters escaped), cut to SHOWN_MAX."""
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else f"{text[: SHOWN_MAX - 4]}...{text[-1]}"


# A TD load lands in `{table}_landing` first; the workflow copies the exact range from there.
LANDING_SUFFIX = "_landing"
# The tables of a source's object besides `{source}_{object}` itself: the backfill and the union.
_SOURCE_TABLE_SUFFIXES = ("", "_hist", "_hist_union")


# A value holding the key outside td_api_key (`td_endpoint: ${TD_API_KEY}`) is named, never shown.
KEY_ELSEWHERE = (
    "this value looks like the TD API key, so it is not shown: the key belongs only in "
    "global.td_api_key (td_api_key: ${TD_API_KEY}); check which variable this field names"
)
# A key written literally into the YAML, seen before td_api_key was read (e.g. a YAML error).
KEY_LIKE_RE = re.compile(r"(?<![0-9A-Za-z])[0-9]+/[0-9A-Fa-f]{16,}")


class Problem(BaseModel):
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(CdpError):
    """One or more problems in a pipeline config; str() lists them all."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        problems = _without_key(problems)
        self.problems = problems
        lines = [f"- {p}" for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"- ... and {len(problems) - MAX_PROBLEMS} more")
        if len(problems) == 1 and not problems[0].path:  # about the file as a whole
            super().__init__(f"{source}: {problems[0].message}")
            return
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}\n" + "\n".join(lines))


def _without_key(problems: list[Problem]) -> list[Problem]:
    """The problems with the key (in any spelling) out of their words."""
    out: list[Problem] = []
    for p in problems:
        path = KEY_LIKE_RE.sub(redact.MASK, redact.scrub(p.path))
        leaks = redact.contains_secret(p.message) or KEY_LIKE_RE.search(p.message)
        if leaks and path:
            message = KEY_ELSEWHERE
        else:
            message = KEY_LIKE_RE.sub(redact.MASK, redact.scrub(p.message))
        problem = Problem(path=path, message=message)
        if problem not in out:
            out.append(problem)
    return out


def _identifier(value: str, limit: int = NAME_MAX) -> str:
    lowered = value.lower()
    if not IDENT_RE.match(lowered):
        raise ValueError(
            f"{shown(value)} is not a valid name: use letters, digits and '_', starting with a "
            "letter or '_' (it becomes a SQL identifier)"
        )
    if len(lowered) > limit:
        raise ValueError(
            f"{shown(value)} is {len(lowered)} characters long; names are at most {limit} "
            "(they become database, table and file names)"
        )
    return lowered


def _column(value: str) -> str:
    return _identifier(value, COLUMN_MAX)


Ident = Annotated[str, AfterValidator(_identifier)]
ColumnName = Annotated[str, AfterValidator(_column)]


def parse_timestamp(value: str) -> datetime:
    """Parse the ISO-8601 forms people write in configs; naive means UTC."""
    text = value.strip().replace("Z", "+00:00")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class TableRef(BaseModel):
    """`table` or `database.table`, as the seed allows."""

    model_config = ConfigDict(frozen=True)
    database: str | None = None
    table: str

    @classmethod
    def parse(cls, text: str) -> TableRef:
        parts = text.split(".")
        if len(parts) > 2 or not all(parts):
            raise ValueError(f"{shown(text)} must be `table` or `database.table`")
        names = [_identifier(p) for p in parts]
        return cls(database=names[0], table=names[1]) if len(names) == 2 else cls(table=names[0])

    def qualified(self, default_db: str) -> str:
        return f"{self.database or default_db}.{self.table}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GlobalConfig(_Strict):
    client: str
    backend: Literal["local", "treasuredata"] = "local"
    td_endpoint: str = "https://api.treasuredata.com"
    # TD Workflow's (Digdag REST) host when td_endpoint's site does not give it: a private or
    # proxied endpoint, or a Digdag server of one's own. Default: derived from td_endpoint.
    workflow_endpoint: str | None = None
    td_api_key: SecretStr | None = None
    workspace: Path | None = None
    # How long one workflow run may take before the person is asked (the seed waits 2 h).
    monitor_deadline_minutes: float = Field(default=120, gt=0, le=7 * 24 * 60)
    # The embedded warehouse: `fast` writes text uncompressed (about 2x faster writes, about
    # 2.3x the disk for text columns); `compact` keeps DuckDB's dictionary/FSST compression.
    local_storage: Literal["fast", "compact"] = "fast"

    @field_validator("client")
    @classmethod
    def _client(cls, v: str) -> str:
        v = v.lower()
        if not CLIENT_RE.match(v):
            raise ValueError(
                f"{shown(v)} is not a valid client name: lower-case letters, digits and '_', "
                "starting with a letter (it names the databases)"
            )
        if len(v) > NAME_MAX:
            raise ValueError(
                f"{shown(v)} is {len(v)} characters long; a client name is at most "
                f"{NAME_MAX} (it names the databases, the projects and the workspace folder)"
            )
        return v

    @field_validator("td_api_key", mode="before")
    @classmethod
    def _api_key(cls, v: Any) -> Any:
        if isinstance(v, str):
            redact.register(v)  # masked everywhere from now on, even if refused below
            problem = key_problem(v)
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("td_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return cls._endpoint_url(
            v, "https://api.treasuredata.com or https://api.eu01.treasuredata.com"
        )

    @field_validator("workflow_endpoint")
    @classmethod
    def _workflow_endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return None
        return cls._endpoint_url(
            v, "https://api-workflow.treasuredata.com or http://digdag.internal:65432"
        )

    @staticmethod
    def _endpoint_url(value: str, examples: str) -> str:
        """`scheme://host[:port]` without a trailing slash (pydantic names the field)."""
        v = value.strip().rstrip("/")
        m = re.match(r"^https?://[A-Za-z0-9.\-]{1,253}(?::(\d{1,5}))?$", v)
        if not m:
            raise ValueError(
                f"{shown(v)} is not an endpoint: give a scheme and host, e.g. {examples}"
            )
        if m.group(1) is not None and not 1 <= int(m.group(1)) <= 65535:
            raise ValueError(f"{shown(v)} has port {m.group(1)}; a port is 1 to 65535")
        return v

    @field_validator("workspace")
    @classmethod
    def _workspace(cls, v: Path | None) -> Path | None:
        return None if v is None else _checked_path(v)


def _checked_path(p: Path) -> Path:
    """A path the file system can hold (the folders themselves are checked where used)."""
    text = str(p)
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    if len(os.fsencode(text)) > PATH_MAX:
        raise ValueError(f"the path is longer than {PATH_MAX} bytes")
    for part in p.parts:
        if len(os.fsencode(part)) > PATH_PART_MAX:
            raise ValueError(
                f"the path has a folder or file name {shown(part)} longer than "
                f"{PATH_PART_MAX} bytes"
            )
    return p


class IngestionConfig(_Strict):
    source_name: Ident
    # `file` (local extracts) or a TD input connector of cdp_mcp/core/connector_catalog.yml
    connector: Ident = "file"
    # connector file: {object}.csv|.parquet|.jsonl; a TD connector: the extracts a local
    # dry-run reads, shaped as that connector delivers each object
    source_path: Path | None = None
    # a TD connector's `in:` fields (credentials as ${secret:...} or td_authentication_id)
    connector_settings: dict[str, Any] = Field(default_factory=dict)
    # fields that differ by object (S3's path_prefix), by object name; for connector `file`,
    # only `encoding` (of a source file that is not UTF-8, one of text_source.ENCODINGS)
    object_settings: dict[Ident, dict[str, Any]] = Field(default_factory=dict)
    objects: list[Ident] = Field(min_length=1, max_length=1000)
    mode: Literal["incremental", "historical", "both"] = "both"
    incremental_field: ColumnName = "updated_at"
    start_date: str = "2023-09-01T00:00:00.000000"
    primary_keys: dict[Ident, ColumnName] = Field(default_factory=dict)
    # Timestamp forms of the incremental field (and other time columns) the built-in ones
    # miss or misread, tried first: e.g. 'DD/MM/YYYY' (core/time_formats.py)
    time_formats: list[str] = Field(default_factory=list, max_length=time_formats.MAX_FORMATS)
    target_database: Ident | None = None
    parallel_limit: int = Field(default=3, ge=1, le=10)

    @field_validator("objects")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({o for o in v if v.count(o) > 1})
        if dupes:
            raise ValueError(f"objects are listed twice: {', '.join(dupes)}")
        return v

    @field_validator("time_formats")
    @classmethod
    def _time_formats(cls, v: list[str]) -> list[str]:
        for i, text in enumerate(v):
            try:
                time_formats.parse_format(text)
            except ValueError as e:
                raise ValueError(f"[{i}]: {e}") from None
        return v

    @field_validator("source_path")
    @classmethod
    def _source_path(cls, v: Path | None) -> Path | None:
        return None if v is None else _checked_path(v)

    @field_validator("start_date")
    @classmethod
    def _date(cls, v: str) -> str:
        try:
            when = parse_timestamp(v)
        except (ValueError, OverflowError):
            raise ValueError(
                f"{shown(v)} is not a date: use ISO 8601, e.g. 2023-09-01 or "
                "2023-09-01T00:00:00.000000"
            ) from None
        if not EARLIEST <= when <= LATEST:
            raise ValueError(
                f"{shown(v)} is outside the dates TD's time column holds: use a date from "
                f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}"
            )
        return v

    @model_validator(mode="after")
    def _cross(self) -> IngestionConfig:
        unknown = sorted(set(self.primary_keys) - set(self.objects))
        if unknown:
            raise ValueError(
                f"@primary_keys: names objects not in `objects`: {', '.join(unknown)} "
                f"(objects: {', '.join(self.objects)})"
            )
        if self.connector == "file" and self.source_path is None:
            raise ValueError(
                "@source_path: connector `file` needs `source_path`: the folder holding "
                "{object}.csv, .parquet or .jsonl"
            )
        problems = self._connector_problems()
        if problems:
            raise ValueError("\n".join(f"@{path}: {message}" for path, message in problems))
        return self

    def _connector_problems(self) -> list[tuple[str, str]]:
        if self.connector == "file":
            problems = self._file_object_problems()
            if self.connector_settings:
                no_settings = "only a TD connector has settings; connector `file` has none"
                problems.insert(0, ("connector_settings", no_settings))
            return problems
        problems = connectors.check_settings(
            self.connector,
            self.connector_settings,
            self.object_settings,
            list(self.objects),
            self.source_name,
        )
        tables = {f"{self.source_name}_{o}{s}" for o in self.objects for s in ("", "_hist")}
        for obj in self.objects:
            for suffix in ("", "_hist"):
                landing = f"{self.source_name}_{obj}{suffix}{LANDING_SUFFIX}"
                if landing in tables:
                    problems.append(
                        (
                            "objects",
                            f"table {landing} would be both an object's table and the landing "
                            f"table of object {obj!r}; rename one of the objects",
                        )
                    )
        return problems

    def _file_object_problems(self) -> list[tuple[str, str]]:
        """Connector `file`: object_settings.<object> holds only the file's `encoding`."""
        problems: list[tuple[str, str]] = []
        for obj, settings in self.object_settings.items():
            where = f"object_settings.{obj}"
            if obj not in self.objects:
                problems.append((where, f"is not in `objects` ({', '.join(self.objects)})"))
            for key, value in (settings or {}).items():
                if key != "encoding":
                    problems.append(
                        (f"{where}.{key}", "connector `file` takes only `encoding` per object")
                    )
                    continue
                try:
                    settings[key] = canonical_encoding(str(value))
                except ValueError as e:
                    problems.append((f"{where}.encoding", str(e)))
        return problems

    def encoding_of(self, obj: str) -> str | None:
        """The encoding of object `obj`'s source file, when the config names one."""
        value = (self.object_settings.get(obj) or {}).get("encoding")
        return str(value) if value is not None and self.connector == "file" else None

    @property
    def start_datetime(self) -> datetime:
        return parse_timestamp(self.start_date)


class SourceConfig(IngestionConfig):
    """One entry of `sources:`: the fields of the one-source `ingestion:` block, the source's
    name given as `name`."""

    source_name: Ident = Field(alias="name")


# A pipeline's sources: each gets three projects and its tables; a consultant's engagement
# has a handful, and far more would be several pipelines.
MAX_SOURCES = 50


class SourceAmbiguityError(CdpError):
    """A one-source name (`cfg.ingestion`, `cfg.source`) was asked of a config of several
    sources: a programming error, the caller must pick a source (`cfg.for_source`)."""


class HistUnionConfig(_Strict):
    tables: list[str] | None = None

    @field_validator("tables")
    @classmethod
    def _tables(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for t in v:
                TableRef.parse(t)
        return v


class StagingConfig(_Strict):
    engine: Literal["presto", "hive"] = "presto"
    target_database: Ident | None = None


class KeyConfig(_Strict):
    name: Ident
    invalid_texts: list[str] = Field(default_factory=lambda: [""], max_length=127)
    valid_regexp: str | None = Field(default=None, max_length=512)

    @field_validator("valid_regexp")
    @classmethod
    def _regexp(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"{shown(v)} is not a valid regular expression: {e}") from None
        return v


class KeyColumn(_Strict):
    column: ColumnName
    key: Ident


class UnificationTable(_Strict):
    table: str
    key_columns: list[KeyColumn] = Field(min_length=1, max_length=32)

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        TableRef.parse(v)
        return v


class ExtraId(_Strict):
    """Another id of the unification, of the same method (TD: a further canonical_ids /
    persistent_ids entry), e.g. one per brand; `merge_by_ids` merges the clusters of ids."""

    name: Ident
    tables: list[str] | None = None  # staging tables it unifies; default every unified table
    merge_by_keys: list[Ident] | None = None  # default unification.merge_by_keys
    merge_by_ids: list[Ident] = Field(default_factory=list, max_length=64)
    do_not_merge_key: Ident | None = None  # canonical_id only; the first of merge_by_keys
    merge_iterations: int | None = Field(default=None, ge=1, le=49)
    incremental_merge_iterations: int | None = Field(default=None, ge=1, le=49)

    @field_validator("tables")
    @classmethod
    def _tables(cls, v: list[str] | None) -> list[str] | None:
        for t in v or []:
            TableRef.parse(t)
        return v


class MasterSourceColumn(_Strict):
    table: str  # a unified staging table
    column: Ident
    order: Literal["first", "last"] = "last"
    order_by: Ident = "time"
    priority: int | None = Field(default=None, ge=1)  # 1 first; default: its place in the list

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        TableRef.parse(v)
        return v


class MasterAttribute(_Strict):
    name: Ident
    source_columns: list[MasterSourceColumn] = Field(default_factory=list)
    source_id: Ident | None = None  # another id of the unification, as the attribute
    array_elements: int | None = Field(default=None, ge=1, le=10)
    valid_regexp: str | None = Field(default=None, max_length=512)
    invalid_texts: list[str] | None = Field(default=None, max_length=127)

    @field_validator("valid_regexp")
    @classmethod
    def _regexp(cls, v: str | None) -> str | None:
        return KeyConfig._regexp(v)

    @model_validator(mode="after")
    def _one_source(self) -> MasterAttribute:
        if bool(self.source_columns) == (self.source_id is not None):
            raise ValueError("@source_columns: set either source_columns or source_id (one)")
        return self


class MasterTableConfig(_Strict):
    name: Ident
    id: Ident | None = None  # default unification.id_name
    attributes: list[MasterAttribute] = Field(min_length=1, max_length=512)


class UnificationConfig(_Strict):
    name: Ident = "customer_360"
    id_method: Literal["persistent_id", "canonical_id"] = "persistent_id"
    update_strategy: Literal["incremental", "full"] = "incremental"
    id_name: Ident = "unified_id"
    keys: list[KeyConfig] | None = None
    tables: list[UnificationTable] | None = Field(default=None, max_length=255)
    merge_by_keys: list[Ident] | None = None
    merge_iterations: int = Field(default=15, ge=1, le=49)
    incremental_merge_iterations: int = Field(default=2, ge=1, le=49)
    # TD's do_not_merge_key for the main id (canonical_id only): values of this key are
    # never merged into one profile; it must be the first of merge_by_keys.
    do_not_merge_key: Ident | None = None
    merge_by_ids: list[Ident] = Field(default_factory=list, max_length=64)
    ids: list[ExtraId] | None = None  # more ids besides id_name
    master_tables: list[MasterTableConfig] | None = None
    # Over-merge guard (TD has none): a value carried by more records than this is reported
    # with the profile it joined (see cdp_mcp/backends/local/unification/report.py).
    over_merge_threshold: int = Field(default=1000, ge=1, le=1_000_000_000)

    def id_names(self) -> list[str]:
        return [self.id_name, *(i.name for i in self.ids or [])]

    @model_validator(mode="after")
    def _cross(self) -> UnificationConfig:
        problems = self._key_problems() + self._id_problems() + self._master_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _key_problems(self) -> list[str]:
        if self.keys is None:
            return []
        names = [k.name for k in self.keys]
        problems = []
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"@keys: keys are defined twice: {', '.join(dupes)}")
        if self.merge_by_keys is not None:
            unknown = [k for k in self.merge_by_keys if k not in names]
            if unknown:
                problems.append(
                    f"@merge_by_keys: names undefined keys: {', '.join(unknown)} "
                    f"(keys: {', '.join(names)})"
                )
        for i, extra in enumerate(self.ids or []):
            unknown = [k for k in extra.merge_by_keys or [] if k not in names]
            if unknown:
                problems.append(
                    f"@ids[{i}].merge_by_keys: names undefined keys: {', '.join(unknown)} "
                    f"(keys: {', '.join(names)})"
                )
        if self.tables is not None:
            used = {kc.key for t in self.tables for kc in t.key_columns}
            for t in self.tables:
                for j, kc in enumerate(t.key_columns):
                    if kc.key not in names:
                        problems.append(
                            f"@tables[{self.tables.index(t)}].key_columns[{j}].key: "
                            f"undefined key {kc.key!r} "
                            f"(keys: {', '.join(names)})"
                        )
            unused = [n for n in names if n not in used]
            if unused:
                problems.append(
                    f"@keys: not used by any table (TD rejects them): {', '.join(unused)}"
                )
        return problems

    def _id_problems(self) -> list[str]:
        problems = []
        known = self.id_names()
        for i, name in enumerate(known[1:]):
            if known.count(name) > 1:
                problems.append(f"@ids[{i}].name: {name!r} is the name of another id")
        entries = [("", self.merge_by_ids, self.do_not_merge_key, self.merge_by_keys)]
        entries += [
            (f"ids[{i}].", e.merge_by_ids, e.do_not_merge_key, e.merge_by_keys)
            for i, e in enumerate(self.ids or [])
        ]
        merges = {name: set(e[1]) for name, e in zip(known, entries, strict=False)}
        for (prefix, merge_by_ids, dnm, by_keys), name in zip(entries, known, strict=False):
            for ref in merge_by_ids:
                if ref == name:
                    problems.append(f"@{prefix}merge_by_ids: {ref!r} cannot merge itself")
                elif ref not in known:
                    problems.append(
                        f"@{prefix}merge_by_ids: {ref!r} is not an id (ids: {', '.join(known)})"
                    )
                elif name in _reachable(ref, merges):
                    problems.append(f"@{prefix}merge_by_ids: {name} and {ref} merge each other")
            if dnm is not None:
                if self.id_method != "canonical_id":
                    problems.append(
                        f"@{prefix}do_not_merge_key: only a canonical_id supports it (TD); "
                        "set id_method: canonical_id or remove it"
                    )
                elif by_keys and by_keys[0] != dnm:
                    problems.append(
                        f"@{prefix}do_not_merge_key: must be the first of merge_by_keys "
                        f"({by_keys[0]!r}), not {dnm!r}"
                    )
        return problems

    def _master_problems(self) -> list[str]:
        problems = []
        known = self.id_names()
        taken = {f"{n}_{s}" for n in known for s in ID_TABLE_SUFFIXES}
        names: list[str] = []
        for i, m in enumerate(self.master_tables or []):
            path = f"master_tables[{i}]"
            if m.name in names:
                problems.append(f"@{path}.name: {m.name!r} is defined twice")
            if m.name in taken or m.name.startswith("enriched_"):
                problems.append(f"@{path}.name: {m.name!r} is a table the unification writes")
            names.append(m.name)
            if m.id is not None and m.id not in known:
                problems.append(f"@{path}.id: {m.id!r} is not an id (ids: {', '.join(known)})")
            attrs: list[str] = []
            for j, a in enumerate(m.attributes):
                if a.name in attrs:
                    problems.append(f"@{path}.attributes[{j}].name: {a.name!r} is defined twice")
                if a.name == (m.id or self.id_name):
                    problems.append(
                        f"@{path}.attributes[{j}].name: {a.name!r} is the table's id column"
                    )
                attrs.append(a.name)
                if a.source_id is not None and a.source_id not in known:
                    problems.append(
                        f"@{path}.attributes[{j}].source_id: {a.source_id!r} is not an id "
                        f"(ids: {', '.join(known)})"
                    )
        return problems


def _reachable(start: str, merges: dict[str, set[str]]) -> set[str]:
    """Every id `start` merges, directly or through the ids it merges."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in merges.get(todo.pop(), set()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


class PipelineConfig(_Strict):
    global_: GlobalConfig = Field(alias="global")
    # The sources, in the one-source form (`ingestion:`) or as a list (`sources:`); read them
    # through `sources`, and a one-source view's through `ingestion`.
    ingestion_: IngestionConfig | None = Field(default=None, alias="ingestion")
    sources_: list[SourceConfig] | None = Field(
        default=None, alias="sources", min_length=1, max_length=MAX_SOURCES
    )
    hist_union: HistUnionConfig = Field(default_factory=HistUnionConfig)
    staging: StagingConfig = Field(default_factory=StagingConfig)
    unification: UnificationConfig = Field(default_factory=UnificationConfig)
    # Where the YAML lives; relative paths in it resolve against this.
    config_dir: Path = Field(default=Path("."), exclude=True)

    # -- derived names, the one place they are spelt out ------------------------------
    @property
    def client(self) -> str:
        return self.global_.client

    @property
    def sources(self) -> list[IngestionConfig]:
        """Every source, in config order (the one-source form is a list of one)."""
        if self.sources_ is not None:
            return list(self.sources_)
        return [self.ingestion_] if self.ingestion_ is not None else []

    @property
    def source_names(self) -> list[str]:
        return [s.source_name for s in self.sources]

    @property
    def ingestion(self) -> IngestionConfig:
        """The source of a one-source config or view (`for_source`)."""
        sources = self.sources
        if len(sources) != 1:
            raise SourceAmbiguityError(
                f"this pipeline has {len(sources)} sources ({', '.join(self.source_names)}): "
                "name the source"
            )
        return sources[0]

    def source_config(self, name: str) -> IngestionConfig:
        for s in self.sources:
            if s.source_name == name:
                return s
        raise KeyError(f"no source {name!r}; sources: {', '.join(self.source_names)}")

    def for_source(self, name: str) -> PipelineConfig:
        """A view of the pipeline holding only source `name` (and its hist-union tables):
        what a per-source phase is generated, run and validated with."""
        source = self.source_config(name)
        tables = self.hist_union.tables
        if tables is not None:
            own = set(self.src_names_of(name))
            tables = [t for t in tables if TableRef.parse(t).table in own]
        return self.model_copy(
            update={
                "ingestion_": source,
                "sources_": None,
                "hist_union": self.hist_union.model_copy(update={"tables": tables}),
            }
        )

    @property
    def source(self) -> str:
        return self.ingestion.source_name

    @property
    def src_db(self) -> str:
        return self.src_db_of(self.ingestion)

    def src_db_of(self, source: IngestionConfig) -> str:
        return source.target_database or f"{self.client}_src"

    def src_names_of(self, name: str) -> list[str]:
        """The `{source}_{object}` tables of source `name` (ingested and staged names)."""
        return [f"{name}_{o}" for o in self.source_config(name).objects]

    def source_of_table(self, table: str) -> str | None:
        """The source a `{source}_{object}` table (or its `_hist`/`_hist_union`) is from."""
        return self._table_sources().get(table)

    def _table_sources(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for s in self.sources:
            for o in s.objects:
                for suffix in _SOURCE_TABLE_SUFFIXES:
                    out.setdefault(f"{s.source_name}_{o}{suffix}", s.source_name)
        return out

    @property
    def stg_db(self) -> str:
        return self.staging.target_database or f"{self.client}_stg"

    @property
    def config_db(self) -> str:
        return f"{self.client}_config"

    @property
    def unif_db(self) -> str:
        return f"cdp_unification_{self.unification.name}"

    @property
    def workspace(self) -> Path:
        ws = self.global_.workspace or Path(f"{self.client}_cdp")
        return (ws if ws.is_absolute() else self.config_dir / ws).resolve()

    @property
    def source_dir(self) -> Path | None:
        return self.source_dir_of(self.ingestion)

    def source_dir_of(self, source: IngestionConfig) -> Path | None:
        p = source.source_path
        if p is None:
            return None
        return (p if p.is_absolute() else self.config_dir / p).resolve()

    def ingested_tables(self) -> list[str]:
        """Every source's `{source}_{object}` tables, in config order."""
        return [t for s in self.sources for t in self.src_names_of(s.source_name)]

    def hist_union_tables(self) -> list[TableRef]:
        """The tables hist-union builds (every source's), each with its source's database."""
        if self.hist_union.tables is None:
            return [
                TableRef(database=self.src_db_of(s), table=t)
                for s in self.sources
                for t in self.src_names_of(s.source_name)
            ]
        refs = [TableRef.parse(t) for t in self.hist_union.tables]
        return [
            TableRef(database=r.database or self._src_db_of_table(r.table), table=r.table)
            for r in refs
        ]

    def _src_db_of_table(self, table: str) -> str:
        name = self.source_of_table(table)
        source = self.source_config(name) if name is not None else self.sources[0]
        return self.src_db_of(source)

    def primary_key(self, obj: str) -> str:
        return self.ingestion.primary_keys.get(obj, "id")

    def object_of(self, table: str) -> str | None:
        """The ingestion object a `{source}_{object}` table came from."""
        name = self.source_of_table(table)
        if name is None:
            return None
        obj = table[len(name) + 1 :]
        return obj if obj in self.source_config(name).objects else None

    @model_validator(mode="after")
    def _key_only_in_its_field(self) -> PipelineConfig:
        # A key in a name, path or filter would reach generated files, SQL and paths.
        values = self.model_dump(mode="json", by_alias=True, exclude={"global_": {"td_api_key"}})
        found = [path for path, text in _strings(values, "") if redact.contains_secret(text)]
        if found:
            raise ValueError("\n".join(f"@{path}: {KEY_ELSEWHERE}" for path in found))
        return self

    @model_validator(mode="after")
    def _cross(self) -> PipelineConfig:
        problems = self._source_problems()
        if problems:
            raise ValueError("\n".join(problems))
        if self.hist_union.tables is not None:
            known = set(self.ingested_tables())
            for i, t in enumerate(self.hist_union.tables):
                ref = TableRef.parse(t)
                if ref.table not in known:
                    problems.append(
                        f"@hist_union.tables[{i}]: {shown(t)} is not an ingested table "
                        f"(ingested: {', '.join(sorted(known))})"
                    )
        if workspace_problem := system_folder_problem(self.workspace):
            problems.append(f"@global.workspace: {workspace_problem}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def source_path_of(self, index: int) -> str:
        """The field path of the source at `index` (for messages): `sources[1]` or `ingestion`."""
        return "ingestion" if self.sources_ is None else f"sources[{index}]"

    def _source_problems(self) -> list[str]:
        """One form of sources; names, and the tables they make, unique across sources."""
        if self.ingestion_ is not None and self.sources_ is not None:
            return [
                "@sources: give either `ingestion` (one source) or `sources` (a list of "
                "sources), not both: move the ingestion block into `sources` as its first "
                "entry, with `source_name` renamed `name`"
            ]
        if self.ingestion_ is None and self.sources_ is None:
            return [
                "@sources: required: the sources to ingest, as `sources:` (a list, each "
                "with `name`, `connector`, `objects`, ...) or, for one source, `ingestion:`"
            ]
        problems: list[str] = []
        first_of: dict[str, int] = {}
        owner: dict[str, tuple[str, str]] = {}  # table -> (source, object) making it
        for i, src in enumerate(self.sources):
            name = src.source_name
            if name in first_of:
                problems.append(
                    f"@{self.source_path_of(i)}.name: source {name!r} is also {self.source_path_of(first_of[name])}: "
                    "every source needs a name of its own (it names its tables and projects)"
                )
                continue
            first_of[name] = i
            for j, obj in enumerate(src.objects):
                for suffix in _SOURCE_TABLE_SUFFIXES:
                    table = f"{name}_{obj}{suffix}"
                    if table in owner and owner[table] != (name, obj):
                        other_source, other_obj = owner[table]
                        problems.append(
                            f"@{self.source_path_of(i)}.objects[{j}]: table {table} would be made by both "
                            f"source {name}'s object {obj} and source {other_source}'s object "
                            f"{other_obj}; rename the object or the source"
                        )
                        break
                    owner.setdefault(table, (name, obj))
        if problems or self.hist_union.tables is None or len(self.sources) == 1:
            return problems
        listed = {self.source_of_table(TableRef.parse(t).table) for t in self.hist_union.tables}
        for i, name in enumerate(self.source_names):
            if name not in listed:
                problems.append(
                    f"@hist_union.tables: lists no table of source {name} "
                    f"({self.source_path_of(i)}): add its tables ({', '.join(self.src_names_of(name))}) "
                    "or leave hist_union.tables out to union every ingested table"
                )
        return problems


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, text) of every string in a dumped config, keys included."""
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            yield sub, str(k)
            yield from _strings(v, sub)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _resolve_env(node: Any, path: str, problems: list[Problem], optional: set[str]) -> Any:
    """Replace ${VAR} in every string with the environment's value, and $${ with ${."""
    if isinstance(node, dict):
        return {
            k: _resolve_env(v, f"{path}.{_part(k)}" if path else _part(k), problems, optional)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_resolve_env(v, f"{path}[{i}]", problems, optional) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1):
                return "${"
            name = m.group(2)
            if name in os.environ:
                return os.environ[name]
            if path not in optional:
                problems.append(
                    Problem(path=path, message=f"environment variable {name} is not set")
                )
            return ""

        return ENV_REF_RE.sub(sub, node)
    return node


def _part(key: object) -> str:
    """A key as it appears in a field path: printable and short."""
    text = key if isinstance(key, str) and key.isprintable() and key.strip() else repr(key)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{_part(part)}" if out else _part(part)
    return out


_TOP_LEVEL = ("global", "sources", "ingestion", "hist_union", "staging", "unification")
MAX_UNKNOWN = 10  # unknown keys named one by one; the rest are counted
MESSAGE_MAX = 400


def _problems_from(err: ValidationError) -> list[Problem]:
    problems = []
    unknown = 0
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = _loc(loc)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            unknown += 1
            if unknown > MAX_UNKNOWN:
                continue
            parent = _loc(loc[:-1])
            msg = (
                f"unknown section; allowed: {', '.join(_TOP_LEVEL)}"
                if not parent
                else "unknown field (check the spelling against the config reference in README.md)"
            )
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] in ("model_type", "model_attributes_type", "dict_type"):
            msg = f"must be a mapping of fields (name: value), {_kind(e.get('input'))}"
        elif e["type"] == "path_type":
            msg = f"must be a file or folder path, {_kind(e.get('input'))}"
        elif e["type"] == "list_type":
            msg = f"must be a list, {_kind(e.get('input'))}"
        elif e["type"] == "literal_error":
            msg = f"{shown(e.get('input'))} is not allowed; {msg.lower()}"
        for line in msg.split("\n"):
            # Cross-field checks name their field as "@field: message".
            m = re.match(r"^@([\w.\[\]]+): (.*)$", line)
            if m:
                problems.append(Problem(path=_join(path, m.group(1)), message=_cut(m.group(2))))
            else:
                problems.append(Problem(path=path, message=_cut(line)))
    if unknown > MAX_UNKNOWN:
        problems.append(
            Problem(path="", message=f"{unknown - MAX_UNKNOWN} more unknown fields not listed")
        )
    return problems


def _kind(value: object) -> str:
    if value is None:
        return "and it is empty"
    kinds: dict[type, str] = {dict: "a mapping", list: "a list", str: "text"}
    return "not " + kinds.get(type(value), f"a {type(value).__name__}")


def _cut(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 3] + "..."


def _join(base: str, rel: str) -> str:
    if not base:
        return rel
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def _not_a_config(raw: Any) -> str | None:
    """Why `raw` is not a pipeline config at all, or None when it looks like one.

    Such a file may be anything (a password file, a key), so the words never quote it.
    """
    if isinstance(raw, dict):
        if any(isinstance(k, str) and k in _TOP_LEVEL for k in raw):
            return None
        held = "a mapping with none of the sections " + ", ".join(_TOP_LEVEL)
    elif raw is None:
        held = "no YAML value (it is empty)"
    elif isinstance(raw, list):
        held = "a YAML list"
    else:
        held = f"a single YAML value ({type(raw).__name__})"
    return (
        f"not a cdp-mcp pipeline config: it holds {held}; a config is a YAML mapping "
        "with a global section and a sources (or, for one source, an ingestion) section"
    )


def _workspace_problems(cfg: PipelineConfig) -> list[Problem]:
    """The workspace must be a folder, or a path a folder can be made at."""
    named = "global.workspace"
    try:
        workspace = cfg.workspace
        for existing in (workspace, *workspace.parents):
            if existing.exists():
                if not existing.is_dir():
                    what = "is a file" if existing == workspace else f"is inside {existing}, a file"
                    return [
                        Problem(
                            path=named,
                            message=f"the workspace {workspace} {what}, not a folder: point "
                            "global.workspace at a folder (it holds the generated projects "
                            "and the pipeline state)",
                        )
                    ]
                return []
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return [Problem(path=named, message=f"the workspace cannot be used: {reason}")]
    return []


def parse_config(raw: Any, source: str, config_dir: Path) -> PipelineConfig:
    why = _not_a_config(raw)
    if why is not None:
        raise ConfigError(source, [Problem(path="", message=why)])
    problems: list[Problem] = []
    glob = raw.get("global")
    backend = glob.get("backend", "local") if isinstance(glob, dict) else "local"
    # A local run needs no key, so an unset ${TD_API_KEY} is not an error there.
    optional = {"global.td_api_key"} if backend == "local" else set()
    resolved = _resolve_env(raw, "", problems, optional)
    glob = resolved.get("global")
    if isinstance(glob, dict) and glob.get("td_api_key") == "":
        glob.pop("td_api_key")
    try:
        cfg = PipelineConfig.model_validate({**resolved, "config_dir": config_dir})
    except ValidationError as err:
        problems.extend(_problems_from(err))
        raise ConfigError(source, problems) from None
    key_named = any(p.path == "global.td_api_key" for p in problems)
    if backend == "treasuredata" and cfg.global_.td_api_key is None and not key_named:
        problems.append(
            Problem(
                path="global.td_api_key",
                message="backend treasuredata needs an API key, e.g. td_api_key: ${TD_API_KEY}",
            )
        )
    problems.extend(_workspace_problems(cfg))
    if problems:
        raise ConfigError(source, problems)
    return cfg


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, at most MAX_BYTES; raises ConfigError naming the file."""
    source = str(path)

    def refuse(message: str) -> ConfigError:
        return ConfigError(source, [Problem(path="", message=message)])

    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise refuse(f"not a config file: it is {kind}")
        if info.st_size > MAX_BYTES:
            raise refuse(_too_big(info.st_size))
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise refuse("config file not found") from None
    except PermissionError:
        raise refuse("the config file cannot be read (permission denied)") from None
    except OSError as e:
        raise refuse(f"the config file cannot be read ({e.strerror or e})") from None
    except ValueError:  # a NUL in the path
        raise refuse("not a usable file path") from None
    if len(data) > MAX_BYTES:
        raise refuse(_too_big(len(data)))
    return data


def _too_big(size: int) -> str:
    return (
        f"the file has {size:,} bytes; a pipeline config is at most {MAX_BYTES // 1024} KiB "
        "(a real one is a few KB): is this the right file?"
    )


def load_config(path: str | Path) -> PipelineConfig:
    """Read, resolve and validate a pipeline YAML; raises ConfigError with every problem."""
    p = Path(path)
    data = read_config_bytes(p)
    try:
        raw = load_bounded(data)
    except YamlInputError as e:
        raise ConfigError(str(p), [Problem(path="", message=str(e))]) from None
    return parse_config(raw, str(p), p.resolve().parent)
