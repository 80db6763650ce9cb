"""`loop>: N`: run `_do` N times as `+loop-0` ... `+loop-{N-1}`, with `${i}` the index."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from cdp_mcp.backends.local.operators.base import (
    OperatorContext,
    OperatorResult,
    TaskFailure,
    as_int,
)

MAX_GENERATED_TASKS = 1000


class LoopOperator:
    name: ClassVar[str] = "loop"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        body = ctx.config.get("_do")
        if not isinstance(body, dict):
            raise TaskFailure("loop>: needs _do with the tasks to repeat")
        count = as_int(ctx.config.get("count", ctx.command), "loop> count")
        if count < 0 or count > MAX_GENERATED_TASKS:
            raise TaskFailure(
                f"loop>: count must be between 0 and {MAX_GENERATED_TASKS}, got {count}"
            )
        generated: dict[str, Any] = {}
        for i in range(count):
            task = copy.deepcopy(body)
            task.setdefault("_export", {})["i"] = i
            generated[f"+loop-{i}"] = task
        if "_parallel" in ctx.config:
            generated["_parallel"] = ctx.config["_parallel"]
        ctx.log.info(f"loop>: {count} iterations")
        return OperatorResult(subtasks=generated)
