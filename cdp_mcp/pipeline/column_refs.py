"""Config fields that name a column or table, checked against the columns the source files
give, at init: a typo there (`dealid` for `deal_id`) would otherwise be taken quietly and
leave a table undeduplicated or a key unjoined.

Only where the columns are known before anything runs (connector `file`): a TD connector's
columns exist after its first load, and the unification plan checks its names again then.
"""

from __future__ import annotations

import difflib
import re

from cdp_mcp.core.config import ConfigError, PipelineConfig, Problem
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.core.unify_plan import plan_unification

_NOT_A = re.compile(
    r"^'(?P<name>[^']*)' is not a .*\((?:columns|staging tables): (?P<names>[^)]*)\)$",
    re.S,
)


def closest(name: str, names: list[str]) -> str | None:
    """The nearest of `names` to `name` (a typo, a missing underscore), or None."""
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not found:
        by_letters = {n.replace("_", "").lower(): n for n in names}
        hit = by_letters.get(name.replace("_", "").lower())
        found = [hit] if hit else []
    return found[0] if found else None


def _did_you_mean(name: str, names: list[str]) -> str:
    near = closest(name, names)
    return f" (did you mean {near!r}?)" if near else ""


def primary_key_problems(cfg: PipelineConfig, schemas: SchemaMap) -> list[Problem]:
    """Every source's primary keys the loaded (or predicted) tables lack."""
    problems = []
    for i, name in enumerate(cfg.source_names):
        where = cfg.source_path_of(i)
        problems += [
            Problem(path=p.path.replace("ingestion.", f"{where}.", 1), message=p.message)
            for p in _source_key_problems(cfg.for_source(name), schemas)
        ]
    return problems


def _source_key_problems(cfg: PipelineConfig, schemas: SchemaMap) -> list[Problem]:
    problems = []
    for obj, key in cfg.ingestion.primary_keys.items():
        cols = schemas.get(f"{cfg.src_db}.{cfg.source}_{obj}_hist") or schemas.get(
            f"{cfg.src_db}.{cfg.source}_{obj}"
        )
        if not cols:
            continue  # unknown before the first load
        names = [c.name for c in cols]
        if key not in names:
            problems.append(
                Problem(
                    path=f"ingestion.primary_keys.{obj}",
                    message=f"{key!r} is not a column of object {obj!r}{_did_you_mean(key, names)}"
                    f"; its columns: {', '.join(names)}",
                )
            )
    return problems


def column_ref_problems(cfg: PipelineConfig, schemas: SchemaMap) -> list[Problem]:
    """Every config field naming a column or table the predicted tables lack."""
    problems = primary_key_problems(cfg, schemas)
    try:
        plan_unification(cfg, schemas)
    except ConfigError as e:
        # Only the names that do not exist: the plan's other problems (no email column to
        # infer a key from, say) are the unification phase's to raise when it is generated.
        problems.extend(_with_close_matches([p for p in e.problems if _NOT_A.match(p.message)]))
    return problems


def _with_close_matches(problems: list[Problem]) -> list[Problem]:
    """The plan's "'x' is not a column of T (columns: a, b)", with the nearest name."""
    out = []
    for p in problems:
        m = _NOT_A.match(p.message)
        if m:
            names = [n.strip().rpartition(".")[2] for n in m["names"].split(",")]
            hint = _did_you_mean(m["name"].rpartition(".")[2], names)
            if hint:
                p = Problem(path=p.path, message=f"{p.message}{hint}")
        out.append(p)
    return out
