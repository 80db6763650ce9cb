"""What unification did across sources: the profiles found in more than one source, the
overlap between every pair of sources, and coverage per source table.

Read after enrichment, from the `enriched_{table}` tables (every staging row plus the id),
through the backend's Presto SQL, so it means the same locally and on Treasure Data. Counts
only: no key value reaches the metrics or the warnings.

A row "has a valid key" when some key column holds a value the prep passes to unification
(not empty, not one of the key's invalid_texts, matching its valid_regexp, and flagged
valid by staging's `{column}_valid`): the same rule as the prep's
(generate/templates/unification/_keys.j2), so every such row should have an id.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from cdp_mcp.backends.base import Backend
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.core.unify_plan import PlanKey, PlanKeyColumn, PlanTable, UnificationPlan, table_source


def valid_key_sql(kc: PlanKeyColumn, key: PlanKey) -> str:
    """TRUE when the row's value of `kc` is one the prep passes on for `key`, else FALSE."""
    v = f"NULLIF(CAST({quote_ident(kc.column)} AS varchar), '')"
    conditions = [f"{v} IS NOT NULL"]
    texts = [t for t in key.invalid_texts if t != ""]
    if texts:
        conditions.append(f"{v} NOT IN ({', '.join(sql_string(t) for t in texts)})")
    if key.valid_regexp is not None:
        conditions.append(f"regexp_like({v}, {sql_string(key.valid_regexp)})")
    if kc.valid_flag:
        conditions.append(f"COALESCE({quote_ident(kc.valid_flag)}, false)")
    return f"COALESCE({' AND '.join(conditions)}, false)"


def source_label(cfg: PipelineConfig, table: str) -> str:
    """The source a table's rows come from (a table of no source stands for itself)."""
    return table_source(cfg, table) or table


async def cross_source_metrics(
    cfg: PipelineConfig, backend: Backend, plan: UnificationPlan
) -> tuple[dict[str, Any], list[str], dict[str, list[str]]]:
    """(metrics, warnings, dead columns) of the unification across sources. The dead
    columns' warnings (a key column none of whose values passes) are by key: the caller
    keeps them for a key that links on other columns, and says it once, for the key, when
    no column of it passes."""
    idn = plan.id_name
    coverage, warnings, dead = await _coverage(cfg, backend, plan)
    sources = list(dict.fromkeys(source_label(cfg, t.table) for t in plan.tables))
    counts = await _profile_sets(
        cfg, backend, plan, [source_label(cfg, t.table) for t in plan.tables]
    )
    by_count = counts["by_count"]
    per_source = counts["source"]
    overlap = [
        {"source": a, "and_source": b, "profiles_in_both": counts["pair"].get((a, b), 0)}
        for a, b in combinations(sorted(sources), 2)
    ]
    multi = sum(n for k, n in by_count.items() if int(k) > 1)
    metrics: dict[str, Any] = {
        "profiles_in_several_sources": multi,
        "profiles_by_sources": {
            f"in {k} source{'s' if int(k) > 1 else ''}": n
            for k, n in sorted(by_count.items(), key=lambda kv: int(kv[0]))
        },
        "profiles_per_source": {s: per_source.get(s, 0) for s in sources},
        "source_overlap": overlap,
        "table_coverage": coverage,
    }
    if len(sources) > 1:
        for s in sources:
            linked = sum(
                c["profiles_in_both"] for c in overlap if s in (c["source"], c["and_source"])
            )
            if per_source.get(s, 0) and not linked:
                tables = [t for t in plan.tables if source_label(cfg, t.table) == s]
                warnings.append(_isolated_source(s, per_source[s], sources, tables, idn))
    return metrics, warnings, dead


def _isolated_source(
    source: str, profiles: int, sources: list[str], tables: list[PlanTable], idn: str
) -> str:
    others = ", ".join(o for o in sources if o != source)
    columns = "; ".join(
        f"{t.table}: " + ", ".join(f"{kc.column} as {kc.key}" for kc in t.key_columns)
        for t in tables
    )
    return (
        f"source {source}: none of its {profiles} profiles ({idn}) is found in another source "
        f"({others}), so unification links nobody across it. Its key columns ({columns}) share "
        "no valid value with theirs: check that unification.tables maps the column holding "
        "the same identity in each source onto the same key (e.g. {column: email_address, "
        "key: email}), and that the values are in the same form"
    )


async def _coverage(
    cfg: PipelineConfig, backend: Backend, plan: UnificationPlan
) -> tuple[dict[str, Any], list[str], dict[str, list[str]]]:
    """Per table: rows, rows with an id, rows with a valid key; a key column with no valid
    value, and rows with a valid key but no id, are warnings."""
    idn = quote_ident(plan.id_name)
    out: dict[str, Any] = {}
    warnings: list[str] = []
    dead: dict[str, list[str]] = {}
    for t in plan.tables:
        # Each column's rule once per row, as flags of a subquery the counts read (its
        # names are ours: no column of the table can shadow them).
        n = len(t.key_columns)
        flags = [f"{idn} IS NOT NULL AS has_id"]
        for i, kc in enumerate(t.key_columns):
            flags.append(f"{quote_ident(kc.column)} IS NOT NULL AS n{i}")
            flags.append(f"{valid_key_sql(kc, plan.key(kc.key))} AS v{i}")
        any_valid = " OR ".join(f"v{i}" for i in range(n))
        exprs = ["count(*)", "count_if(has_id)", f"count_if({any_valid})"]
        exprs.append(f"count_if(({any_valid}) AND NOT has_id)")
        for i in range(n):
            exprs += [f"count_if(n{i})", f"count_if(v{i})"]
        enriched = f"{quote_ident(plan.unif_db)}.{quote_ident(f'enriched_{t.table}')}"
        sql = f"SELECT {', '.join(exprs)} FROM (SELECT {', '.join(flags)} FROM {enriched}) t"
        row = (await backend.query(sql, plan.unif_db)).rows[0]
        rows, with_id, with_key, key_no_id, *per_column = (int(v or 0) for v in row)
        out[t.table] = {
            "source": source_label(cfg, t.table),
            "rows": rows,
            "rows_with_id": with_id,
            "rows_with_valid_key": with_key,
            "id_share": round(with_id / rows, 4) if rows else 0.0,
            "valid_key_share": round(with_key / rows, 4) if rows else 0.0,
        }
        for i, kc in enumerate(t.key_columns):
            non_null, n_valid = per_column[2 * i], per_column[2 * i + 1]
            if rows and n_valid == 0:
                dead.setdefault(kc.key, []).append(
                    _dead_column(t, kc, plan.key(kc.key), rows, non_null)
                )
        if key_no_id:
            warnings.append(
                f"{plan.unif_db}.enriched_{t.table}: {key_no_id} of {rows} rows have a valid "
                f"key value but no {plan.id_name}: the enrichment did not find their values "
                "in the lookup; run the unification phase again (a full run if it persists)"
            )
    return out, warnings, dead


def _dead_column(t: PlanTable, kc: PlanKeyColumn, key: PlanKey, rows: int, non_null: int) -> str:
    where = f"{t.qualified}.{kc.column} (key {kc.key})"
    if non_null == 0:
        return (
            f"{where}: all {rows} rows are NULL, so the column links no row; map the "
            "column that holds the identity in unification.tables, or remove this one"
        )
    rules = ["invalid_texts"]
    if key.valid_regexp is not None:
        rules.append(f"valid_regexp {key.valid_regexp!r}")
    if kc.valid_flag:
        rules.append(f"staging's {kc.valid_flag}")
    return (
        f"{where}: none of its {non_null} non-NULL values (of {rows} rows) passes the key's "
        f"{' / '.join(rules)}, so the column links no row; check that it holds "
        f"{kc.key} values, or map another column onto key {kc.key} in unification.tables"
    )


def _held(plan: UnificationPlan, flags: list[list[int]]) -> str:
    """A SELECT of (pid, s0, s1, ...): each profile of the enriched tables, once, and per
    flag whether some row of a table flagged 1 for it holds the profile (`flags`: per
    table, one 0/1 per flag). One grouping of every table's ids: cheaper than a DISTINCT
    per table, their UNION and a grouping of that, and the same counts."""
    idn = quote_ident(plan.id_name)
    names = [f"s{i}" for i in range(len(flags[0]))]
    rows = " UNION ALL ".join(
        f"SELECT {idn} AS pid, "
        + ", ".join(f"{int(v)} AS {n}" for v, n in zip(table_flags, names, strict=True))
        + f" FROM {quote_ident(plan.unif_db)}.{quote_ident(f'enriched_{t.table}')} "
        f"WHERE {idn} IS NOT NULL"
        for t, table_flags in zip(plan.tables, flags, strict=True)
    )
    held = ", ".join(f"max({n}) AS {n}" for n in names)
    return f"SELECT pid, {held} FROM ({rows}) r GROUP BY pid"


async def _profile_sets(
    cfg: PipelineConfig, backend: Backend, plan: UnificationPlan, labels: list[str]
) -> dict[str, Any]:
    """Profiles by how many sources hold them, per source, and per pair of sources: count_ifs
    over a flag per source (`_held`), where a self-join of the profiles per source cost
    several times as much for the same counts."""
    out: dict[str, Any] = {"by_count": {}, "source": {}, "pair": {}}
    if not plan.tables:
        return out
    sources = sorted(set(labels))
    flag = [f"s{i}" for i in range(len(sources))]
    held_by = " + ".join(flag)
    pairs = list(combinations(range(len(sources)), 2))
    counts = [f"count_if({held_by} = {k})" for k in range(1, len(sources) + 1)]
    counts += [f"count_if({f} = 1)" for f in flag]
    counts += [f"count_if({flag[a]} = 1 AND {flag[b]} = 1)" for a, b in pairs]
    one_hot = [[int(s == label) for s in sources] for label in labels]
    sql = f"WITH p AS ({_held(plan, one_hot)}) SELECT {', '.join(counts)} FROM p"
    values = [int(v or 0) for v in (await backend.query(sql, plan.unif_db)).rows[0]]
    by_count, per_source, per_pair = (
        values[: len(sources)],
        values[len(sources) : 2 * len(sources)],
        values[2 * len(sources) :],
    )
    # Only the counts above zero, as a GROUP BY would have listed them.
    out["by_count"] = {str(k): n for k, n in enumerate(by_count, start=1) if n}
    out["source"] = {s: n for s, n in zip(sources, per_source, strict=True) if n}
    out["pair"] = {
        (sources[a], sources[b]): n for (a, b), n in zip(pairs, per_pair, strict=True) if n
    }
    return out


async def added_source_metrics(
    cfg: PipelineConfig, backend: Backend, plan: UnificationPlan, before: dict[str, Any]
) -> dict[str, Any]:
    """What the sources added since the last unification brought: profiles only they hold
    (new people), profiles they share with the earlier sources (people found again), and
    the earlier sources' profiles before and now (fewer now: the added records joined
    earlier profiles into one). Counts only."""
    earlier = [str(s) for s in before.get("sources") or []]
    labels = [source_label(cfg, t.table) for t in plan.tables]
    added = [s for s in dict.fromkeys(labels) if s not in earlier]
    out: dict[str, Any] = {
        "sources": added,
        "earlier_sources": earlier,
        "earlier_profiles_before": int(before.get("profiles") or 0),
    }
    if not added:
        return out
    # s0: held by an earlier source, s1: by an added one
    flags = [[int(label in earlier), int(label not in earlier)] for label in labels]
    sql = (
        f"WITH p AS ({_held(plan, flags)}) "
        "SELECT count_if(s1 = 1 AND s0 = 0), count_if(s1 = 1 AND s0 = 1), "
        "count_if(s0 = 1) FROM p"
    )
    row = (await backend.query(sql, plan.unif_db)).rows[0]
    new_only, shared, earlier_now = (int(v or 0) for v in row)
    out.update(
        new_profiles=new_only,
        earlier_profiles_found_again=shared,
        earlier_profiles_now=earlier_now,
    )
    return out
