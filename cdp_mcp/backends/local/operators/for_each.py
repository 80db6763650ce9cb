"""`for_each>`: run `_do` once per combination of the given lists (a cartesian product).

Subtask names are Digdag's: `+for-{key index}={key}={value index}={value}` joined by `&`,
each key and value cut to 8 characters and URL-encoded; e.g. `+for-0=fruit=1=banana`.
Each combination is exported to its subtask as variables.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any, ClassVar
from urllib.parse import quote

from cdp_mcp.backends.local.operators.base import OperatorContext, OperatorResult, TaskFailure
from cdp_mcp.backends.local.operators.loop import MAX_GENERATED_TASKS


def name_tag(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    # Java's URLEncoder, with spaces as %20 because "+" starts a task name.
    return quote(text[:8], safe="-_.*").replace("~", "%7E")


def _parse(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise TaskFailure(
                f"for_each>: {what} must be a list (or JSON text of one), got {value!r}"
            ) from None
    return value


class ForEachOperator:
    name: ClassVar[str] = "for_each"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        body = ctx.config.get("_do")
        if not isinstance(body, dict):
            raise TaskFailure("for_each>: needs _do with the tasks to repeat")
        spec = _parse(ctx.command, "the for_each> value")
        if not isinstance(spec, dict):
            raise TaskFailure("for_each>: give a mapping of variable name to list of values")
        lists: list[tuple[str, list[Any]]] = []
        for key, raw in spec.items():
            values = _parse(raw, f"the values of {key!r}")
            if not isinstance(values, list):
                raise TaskFailure(f"for_each>: the values of {key!r} must be a list")
            lists.append((str(key), values))
        total = 1
        for _, values in lists:
            total *= len(values)
        if total > MAX_GENERATED_TASKS:
            raise TaskFailure(
                f"for_each>: {total} combinations; the limit is {MAX_GENERATED_TASKS}"
            )
        generated: dict[str, Any] = {}
        if lists:
            indexed = [list(enumerate(values)) for _, values in lists]
            for combo in itertools.product(*indexed):
                parts, exports = [], {}
                for k, (j, value) in enumerate(combo):
                    key = lists[k][0]
                    parts.append(f"{k}={name_tag(key)}={j}={name_tag(value)}")
                    exports[key] = value
                task = copy.deepcopy(body)
                task.setdefault("_export", {}).update(exports)
                generated["+for-" + "&".join(parts)] = task
        if "_parallel" in ctx.config:
            generated["_parallel"] = ctx.config["_parallel"]
        ctx.log.info(f"for_each>: {len(generated) - ('_parallel' in generated)} combinations")
        return OperatorResult(subtasks=generated)
