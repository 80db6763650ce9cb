"""`echo>`: write a message to the task log."""

from __future__ import annotations

from typing import ClassVar

from cdp_mcp.backends.local.operators.base import OperatorContext, OperatorResult


class EchoOperator:
    name: ClassVar[str] = "echo"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        message = ctx.command
        ctx.log.info("" if message is None else str(message))
        return OperatorResult()
