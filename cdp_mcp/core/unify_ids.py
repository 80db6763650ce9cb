"""The ids and master tables of a unification plan, from the config's `unification` section.

The main id (`id_name`) unifies every unified staging table (through `unif_input`); each of
`ids` may take a subset (`tables`), and an id may merge the clusters of other ids
(`merge_by_ids`, TD's `merge_by_canonical_ids`). TD's `source_tables` and master-table
attributes name tables of unify.yml, so a staging table an extra id or a master table needs
is also listed in unify.yml, as its prep table (see unify_plan.py). Every problem names its
config field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from cdp_mcp.core.config import PipelineConfig, Problem, TableRef


class PlanId(BaseModel):
    name: str
    merge_by_keys: list[str]
    merge_iterations: int
    incremental_merge_iterations: int
    merge_by_ids: list[str] = []
    do_not_merge_key: str | None = None
    tables: list[str] | None = None  # staging tables (None: every unified table)


class PlanSourceColumn(BaseModel):
    table: str  # the staging table
    column: str  # its staging column
    order: Literal["first", "last"]
    order_by: str  # a staging column
    priority: int
    prep_column: str = ""  # where the prep table holds `column` (set by the plan)
    prep_order_by: str = ""  # and `order_by`


class PlanAttribute(BaseModel):
    name: str
    array_elements: int | None = None
    valid_regexp: str | None = None
    invalid_texts: list[str] | None = None
    source_id: str | None = None
    source_columns: list[PlanSourceColumn] = []


class PlanMaster(BaseModel):
    name: str
    id: str
    attributes: list[PlanAttribute]


def plan_ids(
    cfg: PipelineConfig,
    key_names: list[str],
    merge_by_keys: list[str],
    table_names: list[str],
    problems: list[Problem],
) -> list[PlanId]:
    """The main id first, then `unification.ids`."""
    u = cfg.unification
    main = PlanId(
        name=u.id_name,
        merge_by_keys=merge_by_keys,
        merge_iterations=u.merge_iterations,
        incremental_merge_iterations=u.incremental_merge_iterations,
        merge_by_ids=list(u.merge_by_ids),
        do_not_merge_key=u.do_not_merge_key,
    )
    _check_dnm(main, "unification.do_not_merge_key", key_names, problems)
    out = [main]
    for i, e in enumerate(u.ids or []):
        path = f"unification.ids[{i}]"
        tables = None
        if e.tables is not None:
            tables = []
            for j, t in enumerate(e.tables):
                name = TableRef.parse(t).table
                if name not in table_names:
                    problems.append(
                        Problem(
                            path=f"{path}.tables[{j}]",
                            message=f"{t!r} is not a unified staging table "
                            f"(unified: {', '.join(table_names)})",
                        )
                    )
                elif name not in tables:
                    tables.append(name)
        by_keys = list(e.merge_by_keys) if e.merge_by_keys is not None else list(merge_by_keys)
        unknown = [k for k in by_keys if k not in key_names]
        if unknown:
            problems.append(
                Problem(
                    path=f"{path}.merge_by_keys",
                    message=f"names undefined keys: {', '.join(unknown)} "
                    f"(keys: {', '.join(key_names)})",
                )
            )
        entry = PlanId(
            name=e.name,
            merge_by_keys=[k for k in by_keys if k in key_names],
            merge_iterations=e.merge_iterations or u.merge_iterations,
            incremental_merge_iterations=e.incremental_merge_iterations
            or u.incremental_merge_iterations,
            merge_by_ids=list(e.merge_by_ids),
            do_not_merge_key=e.do_not_merge_key,
            tables=tables,
        )
        _check_dnm(entry, f"{path}.do_not_merge_key", key_names, problems)
        out.append(entry)
    return out


def _check_dnm(entry: PlanId, path: str, key_names: list[str], problems: list[Problem]) -> None:
    dnm = entry.do_not_merge_key
    if dnm is None:
        return
    if dnm not in key_names:
        problems.append(Problem(path=path, message=f"{dnm!r} is not a key"))
    elif not entry.merge_by_keys or entry.merge_by_keys[0] != dnm:
        first = entry.merge_by_keys[0] if entry.merge_by_keys else None
        problems.append(
            Problem(
                path=path,
                message=f"must be the first of merge_by_keys ({first!r}), not {dnm!r} "
                "(TD requires it)",
            )
        )


def covered(ids: list[PlanId], id_name: str, table: str) -> bool:
    found = next((i for i in ids if i.name == id_name), None)
    return found is not None and (found.tables is None or table in found.tables)


def plan_masters(
    cfg: PipelineConfig,
    ids: list[PlanId],
    staging: dict[str, list[str]],
    problems: list[Problem],
) -> list[PlanMaster]:
    """`unification.master_tables` against the unified staging tables' columns."""
    out = []
    for i, m in enumerate(cfg.unification.master_tables or []):
        id_name = m.id or cfg.unification.id_name
        attributes = []
        for j, a in enumerate(m.attributes):
            path = f"unification.master_tables[{i}].attributes[{j}]"
            columns = []
            for k, sc in enumerate(a.source_columns):
                spath = f"{path}.source_columns[{k}]"
                table = TableRef.parse(sc.table).table
                names = staging.get(table)
                if names is None:
                    problems.append(
                        Problem(
                            path=f"{spath}.table",
                            message=f"{sc.table!r} is not a unified staging table "
                            f"(unified: {', '.join(staging)})",
                        )
                    )
                    continue
                if not covered(ids, id_name, table):
                    problems.append(
                        Problem(
                            path=f"{spath}.table",
                            message=f"{table!r} is not among the tables of id {id_name!r}, so it "
                            "holds no such id",
                        )
                    )
                for field, col in (("column", sc.column), ("order_by", sc.order_by)):
                    if col not in names:
                        problems.append(
                            Problem(
                                path=f"{spath}.{field}",
                                message=f"{col!r} is not a column of {table} "
                                f"(columns: {', '.join(names)})",
                            )
                        )
                columns.append(
                    PlanSourceColumn(
                        table=table,
                        column=sc.column,
                        order=sc.order,
                        order_by=sc.order_by,
                        priority=sc.priority or k + 1,
                    )
                )
            attributes.append(
                PlanAttribute(
                    name=a.name,
                    array_elements=a.array_elements,
                    valid_regexp=a.valid_regexp,
                    invalid_texts=a.invalid_texts,
                    source_id=a.source_id,
                    source_columns=columns,
                )
            )
        out.append(PlanMaster(name=m.name, id=id_name, attributes=attributes))
    return out
