"""`fail>`: end the task with an error whose message is the command."""

from __future__ import annotations

from typing import ClassVar

from cdp_mcp.backends.local.operators.base import OperatorContext, OperatorResult, TaskFailure


class FailOperator:
    name: ClassVar[str] = "fail"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        message = "" if ctx.command is None else str(ctx.command)
        ctx.log.error(message)
        raise TaskFailure(message or "fail> without a message")
