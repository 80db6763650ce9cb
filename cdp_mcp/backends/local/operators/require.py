"""`require>`: make sure another workflow of the project ran for this session time.

Starts the workflow's session (same session time by default) and waits for it. A session
that already succeeded is not run again unless `rerun_on: all`; one that failed is run again
when `rerun_on: failed|all` or when this attempt is a retry (a new attempt name), as a
Digdag retry re-runs what its required workflows failed.
"""

from __future__ import annotations

from typing import ClassVar

from cdp_mcp.backends.local.operators.base import (
    OperatorContext,
    OperatorResult,
    TaskFailure,
    as_bool,
)
from cdp_mcp.core.config import parse_timestamp

RERUN_ON = ("none", "failed", "all")


class RequireOperator:
    name: ClassVar[str] = "require"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        workflow = str(ctx.command or "").removesuffix(".dig")
        if not workflow:
            raise TaskFailure("require>: needs a workflow name")
        project_id, project_name = ctx.services.current_project()
        other_id = ctx.option("project_id")
        other_name = ctx.option("project_name")
        if (other_id is not None and str(other_id) != str(project_id)) or (
            other_name is not None and str(other_name) != project_name
        ):
            raise TaskFailure("require>: workflows of other projects are not supported locally")
        raw_time = ctx.option("session_time")
        try:
            session_time = parse_timestamp(str(raw_time)) if raw_time else ctx.session_time
        except ValueError:
            raise TaskFailure(
                f"require>: session_time {raw_time!r} is not an ISO-8601 timestamp"
            ) from None
        rerun_on = str(ctx.option("rerun_on", "none")).lower()
        if rerun_on not in RERUN_ON:
            raise TaskFailure(f"require>: rerun_on must be one of {', '.join(RERUN_ON)}")
        params = ctx.config.get("params") or {}
        if not isinstance(params, dict):
            raise TaskFailure("require>: params must be a mapping")
        ignore_failure = as_bool(ctx.option("ignore_failure", False), "require> ignore_failure")
        ok, summary = ctx.services.require(workflow, session_time, params, rerun_on, ctx.log)
        ctx.log.info(f"require>: {summary}")
        if not ok and not ignore_failure:
            raise TaskFailure(f"require>: {summary}")
        return OperatorResult()
