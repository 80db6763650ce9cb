"""`if>`: run `_do` when the condition is true, `_else_do` otherwise."""

from __future__ import annotations

from typing import ClassVar

from cdp_mcp.backends.local.operators.base import (
    OperatorContext,
    OperatorResult,
    TaskFailure,
    as_bool,
)


class IfOperator:
    name: ClassVar[str] = "if"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        condition = as_bool(ctx.command, "if>")
        branch = "_do" if condition else "_else_do"
        subtasks = ctx.config.get(branch)
        if subtasks is not None and not isinstance(subtasks, dict):
            raise TaskFailure(f"if>: {branch} must be a task mapping")
        ctx.log.info(
            f"if>: condition is {str(condition).lower()}; running {branch if subtasks else 'nothing'}"
        )
        return OperatorResult(subtasks=subtasks or None)
