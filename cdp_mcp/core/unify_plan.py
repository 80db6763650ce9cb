"""Resolve the `unification` section into a concrete plan, and enforce TD's limits on it.

The plan is what every unification artefact is rendered from (the prep SQL, `unif_input`,
`config/unify.yml`, the enrichment) and what `phases.expected_tables` reads, so the tables
that are built and the tables that are validated come from one place.

Keys and tables are taken from the config when given, otherwise inferred from the staging
tables' columns (email and phone columns, as `staging_rules.column_kind` classifies them).
Every problem is collected and raised at once as a `ConfigError`, naming the config field.

TD's limits (reference/unification.md) are checked twice with the same code: on the
`unify.yml` this plan renders (`unify_config_problems`, before any push) and by
`generate.check` on whatever `config/unify.yml` a project holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel

from cdp_mcp.core.config import ConfigError, PipelineConfig, Problem, TableRef, UnificationTable
from cdp_mcp.core.literal import operator_reads
from cdp_mcp.core.schema import Column, SchemaMap
from cdp_mcp.core.staging_rules import column_kind
from cdp_mcp.core.td_unify import MAX_KEY_COLUMNS, unify_config_problems
from cdp_mcp.core.unify_ids import PlanId, PlanMaster, plan_ids, plan_masters

UNIF_INPUT = "unif_input"
# unif_input's non-key columns; a key or slot of the same name would collide with them.
SOURCE_TABLE_COLUMN = "source_table"
TIME_COLUMN = "time"
RESERVED_INPUT_COLUMNS = (SOURCE_TABLE_COLUMN, TIME_COLUMN)
# Names an id cannot take: it becomes a column beside these (TD's lookup keys, a prep's).
ID_RESERVED = ("id", "id_key_type")
# Staging adds these next to an email/phone/timestamp column; they are not identities.
DERIVED_SUFFIXES = ("_valid", "_hash", "_unixtime", "_std", "_date")


# Values that, left valid, join thousands of unrelated people into one profile.
EMAIL_INVALID_TEXTS = [
    "",
    "test@test.com",
    "test@example.com",
    "example@example.com",
    "user@example.com",
    "email@email.com",
    "noemail@noemail.com",
    "no@email.com",
    "none@none.com",
    "null@null.com",
    "na@na.com",
    "a@a.com",
    "abc@abc.com",
    "noreply@noreply.com",
]
EMAIL_VALID_REGEXP = ".+@.+"
PHONE_INVALID_TEXTS = ["", "0000000000", "1111111111", "1234567890", "9999999999"]
INFERRED_KINDS = ("email", "phone")  # inferred key name == column kind, in priority order


class PlanKey(BaseModel):
    name: str
    valid_regexp: str | None = None
    invalid_texts: list[str] = [""]


class PlanKeyColumn(BaseModel):
    column: str  # the staging column
    key: str
    input_column: str  # its column in the prep table and unif_input
    valid_flag: str | None = None  # staging's `{column}_valid`, when the table has it


class PlanTable(BaseModel):
    database: str
    table: str
    key_columns: list[PlanKeyColumn]
    has_time: bool  # the staging table has TD's `time` column
    # Its prep table is a table of unify.yml too (an extra id or a master table names it).
    listed: bool = False
    # A master table reads it: its prep keeps every row (a value's time is its row's), with
    # `attribute_columns` (staging column, prep column) besides the key columns.
    per_row: bool = False
    attribute_columns: list[tuple[str, str]] = []

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"

    @property
    def prep_table(self) -> str:
        return f"{self.table}_prep"


class InputColumn(BaseModel):
    """A key column of unif_input: `{key}` for a key's first column, `{key}_{n}` after."""

    name: str
    key: str


class UnificationPlan(BaseModel):
    name: str
    id_method: Literal["persistent_id", "canonical_id"]
    update_strategy: Literal["incremental", "full"]
    id_name: str
    stg_db: str
    unif_db: str
    unif_input: str = UNIF_INPUT
    keys: list[PlanKey]
    tables: list[PlanTable]
    merge_by_keys: list[str]
    merge_iterations: int
    incremental_merge_iterations: int
    input_columns: list[InputColumn]
    ids: list[PlanId] = []  # the main id (id_name) first
    masters: list[PlanMaster] = []

    def key(self, name: str) -> PlanKey:
        return next(k for k in self.keys if k.name == name)

    def by_priority(self, table: PlanTable, id_name: str | None = None) -> list[PlanKeyColumn]:
        """A table's key columns an id merges by, highest merge priority first (then config
        order); the main id by default."""
        by_keys = self.id(id_name).merge_by_keys if id_name else self.merge_by_keys
        rank = {k: i for i, k in enumerate(by_keys)}
        return sorted(
            (kc for kc in table.key_columns if kc.key in rank), key=lambda kc: rank[kc.key]
        )

    def id(self, name: str) -> PlanId:
        return next(i for i in self.ids if i.name == name)

    def ids_for(self, table: PlanTable) -> list[PlanId]:
        """The ids that enrich a staging table: those over it that merge by a key it has."""
        keys = {kc.key for kc in table.key_columns}
        return [
            i
            for i in self.ids
            if (i.tables is None or table.table in i.tables) and keys & set(i.merge_by_keys)
        ]

    def td_tables(self) -> list[str]:
        """The tables of unify.yml: unif_input, then the listed prep tables."""
        return [self.unif_input, *(t.prep_table for t in self.tables if t.listed)]

    def unify_config(self) -> dict[str, Any]:
        """TD's unify.yml for this plan, as a mapping (rendered by config/unify.yml.j2).

        A text `http_call>` would read as a `${secret:...}` reference (`prep_only`) is left
        out: no escape survives that pass, and the prep query already applies it (no invalid
        text reaches unif_input, every value there matches valid_regexp), so TD's result is
        the same.
        """
        keys = []
        for k in self.keys:
            entry: dict[str, Any] = {"name": k.name}
            if k.valid_regexp is not None and not operator_reads(k.valid_regexp):
                entry["valid_regexp"] = k.valid_regexp
            entry["invalid_texts"] = [t for t in k.invalid_texts if not operator_reads(t)]
            keys.append(entry)
        tables = [
            {
                "database": self.stg_db,
                "table": self.unif_input,
                "incremental_columns": [TIME_COLUMN],
                "key_columns": [{"column": c.name, "key": c.key} for c in self.input_columns],
            }
        ]
        by_table = {t.table: t for t in self.tables}
        for t in self.tables:
            if t.listed:
                tables.append(
                    {
                        "database": self.stg_db,
                        "table": t.prep_table,
                        "incremental_columns": [TIME_COLUMN],
                        "key_columns": [
                            {"column": kc.input_column, "key": kc.key} for kc in t.key_columns
                        ],
                    }
                )
        merge_by_ids = f"merge_by_{self.id_method}s"
        ids = []
        for i in self.ids:
            item: dict[str, Any] = {"name": i.name, "merge_by_keys": list(i.merge_by_keys)}
            if i.merge_by_ids:
                item[merge_by_ids] = list(i.merge_by_ids)
            if i.do_not_merge_key:
                item["do_not_merge_key"] = i.do_not_merge_key
            if i.tables is not None:
                item["source_tables"] = [by_table[t].prep_table for t in i.tables]
            item["merge_iterations"] = i.merge_iterations
            item["incremental_merge_iterations"] = i.incremental_merge_iterations
            ids.append(item)
        doc: dict[str, Any] = {
            "name": self.name,
            "keys": keys,
            "tables": tables,
            f"{self.id_method}s": ids,
        }
        if self.masters:
            doc["master_tables"] = [self._master_entry(m, by_table) for m in self.masters]
        return doc

    def _master_entry(self, m: PlanMaster, by_table: dict[str, PlanTable]) -> dict[str, Any]:
        attributes = []
        for a in m.attributes:
            entry: dict[str, Any] = {"name": a.name}
            if a.array_elements is not None:
                entry["array_elements"] = a.array_elements
            if a.valid_regexp is not None and not operator_reads(a.valid_regexp):
                entry["valid_regexp"] = a.valid_regexp
            if a.invalid_texts is not None:
                entry["invalid_texts"] = [t for t in a.invalid_texts if not operator_reads(t)]
            if a.source_id is not None:
                entry[f"source_{self.id_method}"] = a.source_id
            else:
                entry["source_columns"] = [
                    {
                        "table": by_table[c.table].prep_table,
                        "column": c.prep_column,
                        "order": c.order,
                        "order_by": c.prep_order_by,
                        "priority": c.priority,
                    }
                    for c in a.source_columns
                ]
            attributes.append(entry)
        return {"name": m.name, self.id_method: m.id, "attributes": attributes}

    def prep_only(self) -> list[str]:
        """What unify_config leaves to the prep query, per key (no value is repeated)."""
        notes = []
        for k in self.keys:
            texts = sum(1 for t in k.invalid_texts if operator_reads(t))
            parts = [f"{texts} invalid_texts"] if texts else []
            if k.valid_regexp is not None and operator_reads(k.valid_regexp):
                parts.append("valid_regexp")
            if parts:
                notes.append(f"key {k.name}: {' and '.join(parts)}")
        return notes


# -- planning ---------------------------------------------------------------------------


def plan_unification(cfg: PipelineConfig, schemas: SchemaMap) -> UnificationPlan:
    """The unification plan for `cfg` over the staging tables in `schemas`; raises ConfigError."""
    u = cfg.unification
    problems: list[Problem] = []
    staging = _staging_tables(cfg, schemas)
    if u.tables is not None:
        tables = _configured_tables(cfg, u.tables, staging, problems)
        keys = _configured_keys(cfg) or _keys_named(_used_keys(tables))
    else:
        keys = _configured_keys(cfg) or _inferred_keys(cfg, staging, problems)
        tables = _inferred_tables(cfg, staging, keys)
    _check_keys(cfg, keys, tables, problems)
    merge_by_keys = _merge_by_keys(cfg, keys, problems)
    input_columns = _assign_input_columns(keys, tables, problems)
    _check_id_name(cfg, tables, staging, problems)
    ids = plan_ids(cfg, [k.name for k in keys], merge_by_keys, [t.table for t in tables], problems)
    columns = {t.table: [c.name for c in staging.get(t.table) or []] for t in tables}
    masters = plan_masters(cfg, ids, columns, problems)
    if problems:
        raise ConfigError("pipeline config", problems)
    _list_tables(tables, ids, masters)
    plan = UnificationPlan(
        name=u.name,
        id_method=u.id_method,
        update_strategy=u.update_strategy,
        id_name=u.id_name,
        stg_db=cfg.stg_db,
        unif_db=cfg.unif_db,
        keys=keys,
        tables=tables,
        merge_by_keys=merge_by_keys,
        merge_iterations=u.merge_iterations,
        incremental_merge_iterations=u.incremental_merge_iterations,
        input_columns=input_columns,
        ids=ids,
        masters=masters,
    )
    # The same limits TD applies, on exactly what would be sent (a derived key or a wide
    # unif_input can break them even when every configured value is in range).
    td_problems = unify_config_problems(plan.unify_config())
    if td_problems:
        raise ConfigError(
            "pipeline config",
            [
                Problem(path="unification", message=f"generated config/unify.yml: {p}")
                for p in td_problems
            ],
        )
    return plan


def _list_tables(tables: list[PlanTable], ids: list[PlanId], masters: list[PlanMaster]) -> None:
    """Mark the tables unify.yml must list, and give each column a master table reads from
    one a place in the table's prep."""
    by_table = {t.table: t for t in tables}
    for i in ids:
        for name in i.tables or []:
            by_table[name].listed = True
    for m in masters:
        for a in m.attributes:
            for c in a.source_columns:
                t = by_table[c.table]
                t.listed = t.per_row = True
                c.prep_column = _prep_column(t, c.column)
                c.prep_order_by = _prep_column(t, c.order_by)


def _prep_column(t: PlanTable, column: str) -> str:
    """Where a table's prep keeps a staging column a master table reads."""
    if column == TIME_COLUMN:
        return TIME_COLUMN
    for kc in t.key_columns:
        if kc.column == column:
            return kc.input_column  # the key's value as unified (NULL when invalid)
    for staged, prep in t.attribute_columns:
        if staged == column:
            return prep
    taken = {kc.input_column for kc in t.key_columns} | {p for _, p in t.attribute_columns}
    taken |= {TIME_COLUMN, SOURCE_TABLE_COLUMN}
    name = column
    while name in taken:
        name += "_attr"
    t.attribute_columns.append((column, name))
    return name


def _staging_tables(cfg: PipelineConfig, schemas: SchemaMap) -> dict[str, list[Column] | None]:
    """Staging table name -> its columns (None when the schema is not known)."""
    return {ref.table: schemas.get(f"{cfg.stg_db}.{ref.table}") for ref in cfg.hist_union_tables()}


def _is_derived(name: str) -> bool:
    return name.endswith(DERIVED_SUFFIXES)


def _valid_flag(column: str, names: set[str]) -> str | None:
    flag = f"{column}_valid"
    return flag if flag in names else None


def _configured_tables(
    cfg: PipelineConfig,
    configured: list[UnificationTable],
    staging: dict[str, list[Column] | None],
    problems: list[Problem],
) -> list[PlanTable]:
    tables: list[PlanTable] = []
    for i, t in enumerate(configured):
        path = f"unification.tables[{i}]"
        columns = _configured_table_columns(cfg, t, path, staging, tables, problems)
        if columns is None:
            continue
        names = [c.name for c in columns]
        key_columns = []
        for j, kc in enumerate(t.key_columns):
            if kc.column in names:
                flag = _valid_flag(kc.column, set(names))
                key_columns.append(
                    PlanKeyColumn(
                        column=kc.column, key=kc.key, input_column=kc.key, valid_flag=flag
                    )
                )
            else:
                problems.append(
                    Problem(
                        path=f"{path}.key_columns[{j}].column",
                        message=f"{kc.column!r} is not a column of {cfg.stg_db}.{TableRef.parse(t.table).table} "
                        f"(columns: {', '.join(names)})",
                    )
                )
        if key_columns:
            table = TableRef.parse(t.table).table
            tables.append(
                PlanTable(
                    database=cfg.stg_db,
                    table=table,
                    key_columns=key_columns,
                    has_time=TIME_COLUMN in names,
                )
            )
    return tables


def _configured_table_columns(
    cfg: PipelineConfig,
    t: UnificationTable,
    path: str,
    staging: dict[str, list[Column] | None],
    planned: list[PlanTable],
    problems: list[Problem],
) -> list[Column] | None:
    """The columns of a configured table, or None (and a problem) when it cannot be used."""
    ref = TableRef.parse(t.table)
    qualified = ref.qualified(cfg.stg_db)
    if (ref.database or cfg.stg_db) != cfg.stg_db or ref.table not in staging:
        known = ", ".join(f"{cfg.stg_db}.{name}" for name in staging)
        message = f"{t.table!r} is not a staging table (staging tables: {known})"
    elif any(p.table == ref.table for p in planned):
        message = f"{qualified} is listed twice"
    elif staging[ref.table] is None:
        message = f"the columns of {qualified} are not known: run the staging phase first"
    else:
        return staging[ref.table]
    problems.append(Problem(path=f"{path}.table", message=message))
    return None


def _configured_keys(cfg: PipelineConfig) -> list[PlanKey]:
    keys = cfg.unification.keys or []
    return [
        PlanKey(name=k.name, valid_regexp=k.valid_regexp, invalid_texts=list(k.invalid_texts))
        for k in keys
    ]


def _default_key(name: str) -> PlanKey:
    if name == "email":
        return PlanKey(
            name=name, valid_regexp=EMAIL_VALID_REGEXP, invalid_texts=list(EMAIL_INVALID_TEXTS)
        )
    if name == "phone":
        return PlanKey(name=name, invalid_texts=list(PHONE_INVALID_TEXTS))
    return PlanKey(name=name, invalid_texts=[""])


def _keys_named(names: Iterable[str]) -> list[PlanKey]:
    return [_default_key(n) for n in names]


def _used_keys(tables: list[PlanTable]) -> list[str]:
    """Key names in order of first use."""
    return list(dict.fromkeys(kc.key for t in tables for kc in t.key_columns))


def table_source(cfg: PipelineConfig, table: str) -> str | None:
    """The source a staging table `{source}_{object}` belongs to (None: no source's)."""
    return cfg.source_of_table(table)


def incremental_field_of(cfg: PipelineConfig, table: str) -> str:
    """The incremental field of the source a staging table comes from (staging classified
    its columns with it); a table of no source is classified with the first source's."""
    source = cfg.source_of_table(table)
    return cfg.source_config(source or cfg.source_names[0]).incremental_field


def _key_candidates(
    cfg: PipelineConfig, table: str, columns: list[Column]
) -> list[tuple[Column, str]]:
    """(column, kind) for every column of `table` that could carry an identity."""
    inc_field = incremental_field_of(cfg, table)
    return [(c, column_kind(c, inc_field)) for c in columns if not _is_derived(c.name)]


def _inferred_keys(
    cfg: PipelineConfig, staging: dict[str, list[Column] | None], problems: list[Problem]
) -> list[PlanKey]:
    if staging and all(cols is None for cols in staging.values()):
        problems.append(
            Problem(
                path="unification.tables",
                message="the columns of the staging tables are not known: run the staging phase first",
            )
        )
        return []
    kinds = {
        kind
        for table, cols in staging.items()
        for _, kind in _key_candidates(cfg, table, cols or [])
    }
    keys = _keys_named(k for k in INFERRED_KINDS if k in kinds)
    if not keys:
        problems.append(
            Problem(
                path="unification.keys",
                message="no email or phone column in staging tables; set unification.keys and unification.tables",
            )
        )
    return keys


def _inferred_tables(
    cfg: PipelineConfig, staging: dict[str, list[Column] | None], keys: list[PlanKey]
) -> list[PlanTable]:
    """Every staging table with a column for some key: a column named like the key, or an
    email/phone column when the key is `email`/`phone`."""
    key_names = {k.name for k in keys}
    tables = []
    for table, columns in staging.items():
        names = {c.name for c in columns or []}
        key_columns = []
        for col, kind in _key_candidates(cfg, table, columns or []):
            key = col.name if col.name in key_names else kind if kind in key_names else None
            if key is not None:
                key_columns.append(
                    PlanKeyColumn(
                        column=col.name,
                        key=key,
                        input_column=key,
                        valid_flag=_valid_flag(col.name, names),
                    )
                )
        if key_columns:
            tables.append(
                PlanTable(
                    database=cfg.stg_db,
                    table=table,
                    key_columns=key_columns,
                    has_time=TIME_COLUMN in names,
                )
            )
    return tables


def _check_keys(
    cfg: PipelineConfig, keys: list[PlanKey], tables: list[PlanTable], problems: list[Problem]
) -> None:
    """Reserved names, and configured keys that no inferred table maps (with configured
    tables, the config itself already rejects unused keys)."""
    used = set(_used_keys(tables))
    check_unused = cfg.unification.keys is not None and cfg.unification.tables is None
    for i, k in enumerate(keys):
        if k.name in RESERVED_INPUT_COLUMNS:
            problems.append(
                Problem(
                    path=f"unification.keys[{i}].name",
                    message=f"{k.name!r} is reserved (a column of unif_input); name the key differently",
                )
            )
        if check_unused and k.name not in used:
            problems.append(
                Problem(
                    path=f"unification.keys[{i}]",
                    message=f"key {k.name!r} is not used by any table (TD rejects unused keys): "
                    f"no staging table has a column named {k.name!r}; map one in unification.tables "
                    "or remove the key",
                )
            )


def _merge_by_keys(cfg: PipelineConfig, keys: list[PlanKey], problems: list[Problem]) -> list[str]:
    names = [k.name for k in keys]
    configured = cfg.unification.merge_by_keys
    if configured is None:
        return names
    path = "unification.merge_by_keys"
    dupes = sorted({k for k in configured if configured.count(k) > 1})
    if dupes:
        problems.append(Problem(path=path, message=f"keys are listed twice: {', '.join(dupes)}"))
    unknown = [k for k in configured if k not in names]
    if unknown and names:
        problems.append(
            Problem(
                path=path,
                message=f"names undefined keys: {', '.join(unknown)} (keys: {', '.join(names)})",
            )
        )
    missing = [k for k in names if k not in configured]
    if missing:
        problems.append(
            Problem(
                path=path,
                message=f"does not list keys {', '.join(missing)}: list every key, in priority order "
                "(a key that merges nothing should be removed instead)",
            )
        )
    return list(dict.fromkeys(k for k in configured if k in names))


def _assign_input_columns(
    keys: list[PlanKey], tables: list[PlanTable], problems: list[Problem]
) -> list[InputColumn]:
    """Give each table's key columns a unif_input column; returns unif_input's key columns.

    A table's n-th column for key `k` lands in `k` (n = 1) or `k_n`, so a table with two
    email columns keeps both on the same row and TD links them.
    """
    width: dict[str, int] = {}
    for t in tables:
        seen: dict[str, int] = {}
        for kc in t.key_columns:
            seen[kc.key] = seen.get(kc.key, 0) + 1
            kc.input_column = kc.key if seen[kc.key] == 1 else f"{kc.key}_{seen[kc.key]}"
        for key, n in seen.items():
            width[key] = max(width.get(key, 0), n)
    columns = [
        InputColumn(name=k.name if n == 1 else f"{k.name}_{n}", key=k.name)
        for k in keys
        for n in range(1, width.get(k.name, 0) + 1)
    ]
    key_names = {k.name for k in keys}
    for c in columns:
        if c.name != c.key and c.name in key_names:
            problems.append(
                Problem(
                    path="unification.keys",
                    message=f"key {c.name!r} collides with the second column of key {c.key!r} in "
                    "unif_input; rename the key",
                )
            )
    if len(columns) > MAX_KEY_COLUMNS:
        problems.append(
            Problem(
                path="unification.tables",
                message=f"unif_input would need {len(columns)} key columns; TD allows {MAX_KEY_COLUMNS} "
                "per table: map fewer columns per key",
            )
        )
    return columns


def _check_id_name(
    cfg: PipelineConfig,
    tables: list[PlanTable],
    staging: dict[str, list[Column] | None],
    problems: list[Problem],
) -> None:
    """An id becomes a column of every table it enriches: it must not take a name they have."""
    u = cfg.unification
    entries: list[tuple[str, str, set[str] | None]] = [("unification.id_name", u.id_name, None)]
    entries += [
        (f"unification.ids[{i}].name", e.name, {TableRef.parse(t).table for t in e.tables})
        if e.tables is not None
        else (f"unification.ids[{i}].name", e.name, None)
        for i, e in enumerate(u.ids or [])
    ]
    for path, name, over in entries:
        if name in (*ID_RESERVED, TIME_COLUMN, SOURCE_TABLE_COLUMN):
            problems.append(
                Problem(
                    path=path,
                    message=f"{name!r} is a column of the tables an id enriches; choose another name",
                )
            )
            continue
        for t in tables:
            if over is not None and t.table not in over:
                continue
            if name in {c.name for c in staging.get(t.table) or []}:
                problems.append(
                    Problem(
                        path=path,
                        message=f"{t.qualified} already has a column {name!r}, and enrichment adds the id "
                        "under that name; choose another name",
                    )
                )
