"""`call>`: run another workflow file of the project as this task's subtasks.

The path is relative to the calling workflow's folder (`.dig` may be omitted); tasks of
the called file resolve their own relative paths against the called file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from cdp_mcp.backends.local.operators.base import OperatorContext, OperatorResult, TaskFailure
from cdp_mcp.digdag.loader import DigError, load_dig


class CallOperator:
    name: ClassVar[str] = "call"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        name = str(ctx.command or "")
        if not name:
            raise TaskFailure("call>: needs a workflow file (call>: other.dig)")
        if not name.endswith(".dig"):
            name += ".dig"
        target = ctx.path(name)
        if not target.is_file():
            where = f"{ctx.workdir}/{name}" if ctx.workdir else name
            raise TaskFailure(f"call>: workflow file {where!r} not found in the project")
        try:
            doc = load_dig(target, ctx.project_dir)
        except DigError as e:
            raise TaskFailure(f"call>: {e}") from None
        rel = target.relative_to(ctx.project_dir.resolve()).as_posix()
        workdir = Path(rel).parent.as_posix()
        ctx.log.info(f"call>: {rel}")
        return OperatorResult(
            subtasks=doc, subtask_source=rel, subtask_workdir="" if workdir == "." else workdir
        )
