"""The operators the local runner supports, by name (`td` for `td>:`)."""

from __future__ import annotations

from cdp_mcp.backends.local.operators.base import (
    Operator,
    OperatorContext,
    OperatorResult,
    Services,
    TaskFailure,
)
from cdp_mcp.backends.local.operators.call import CallOperator
from cdp_mcp.backends.local.operators.echo import EchoOperator
from cdp_mcp.backends.local.operators.fail import FailOperator
from cdp_mcp.backends.local.operators.for_each import ForEachOperator
from cdp_mcp.backends.local.operators.http import HttpOperator
from cdp_mcp.backends.local.operators.if_ import IfOperator
from cdp_mcp.backends.local.operators.loop import LoopOperator
from cdp_mcp.backends.local.operators.require import RequireOperator
from cdp_mcp.backends.local.operators.td import TdOperator
from cdp_mcp.backends.local.operators.td_ddl import TdDdlOperator
from cdp_mcp.backends.local.operators.td_load import TdLoadOperator

OPERATORS: dict[str, Operator] = {
    "td": TdOperator(),
    "td_ddl": TdDdlOperator(),
    "td_load": TdLoadOperator(),
    "call": CallOperator(),
    "require": RequireOperator(),
    "for_each": ForEachOperator(),
    "if": IfOperator(),
    "loop": LoopOperator(),
    "echo": EchoOperator(),
    "fail": FailOperator(),
    "http_call": HttpOperator(),
    "http": HttpOperator(),
}

__all__ = ["OPERATORS", "Operator", "OperatorContext", "OperatorResult", "Services", "TaskFailure"]
