"""What an operator receives and returns, and how it fails.

An operator runs one task: it gets the task's evaluated config and the services of the
attempt (warehouse cursors, cancel flag, the runtime for `require>`), and returns params to
store and/or subtasks to run under `^sub`. A failure is a TaskFailure whose message becomes
the task's error; anything else raised is reported as an unexpected error of the operator.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import duckdb

from cdp_mcp.backends.local.hooks import UnificationHandler
from cdp_mcp.backends.local.logs import TaskLog
from cdp_mcp.backends.local.params import StoreUpdate
from cdp_mcp.digdag import expr
from cdp_mcp.digdag.tasks import resolve_in_project


class TaskFailure(Exception):
    """The task failed for a reason its message explains."""


@dataclass
class OperatorResult:
    store: StoreUpdate | None = None
    subtasks: dict[str, Any] | None = None  # a group config run as `^sub`
    subtask_source: str | None = None  # the file it came from (call>), else the task's
    subtask_workdir: str | None = None


class Services(Protocol):
    """What the attempt offers its operators."""

    unification_handler: UnificationHandler | None
    # Where a TD connector's `td_load>` reads its dry-run extracts (ingestion.source_path)
    extracts_dir: Path | None

    def cursor(
        self, database: str | None = None
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A warehouse cursor that a kill interrupts."""
        ...

    def cancel_requested(self) -> bool: ...

    def current_project(self) -> tuple[int, str]:
        """(id, name) of the project the attempt belongs to."""
        ...

    def require(
        self,
        workflow: str,
        session_time: datetime,
        params: dict[str, Any],
        rerun_on: str,
        log: TaskLog,
    ) -> tuple[bool, str]:
        """Run (or reuse) another workflow's session and wait; (success, summary)."""
        ...


@dataclass
class OperatorContext:
    task_name: str
    task_id: int
    command: Any  # the value of `op>:`
    config: dict[str, Any]  # params plus the task's keys, `${...}` evaluated
    project_dir: Path
    workdir: str  # relative paths resolve here (the folder of the .dig file)
    source: str  # the .dig file that defined the task
    session_time: datetime
    log: TaskLog
    services: Services
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, relpath: str) -> Path:
        """A project file named by the task, relative to its workflow's folder."""
        try:
            return resolve_in_project(self.project_dir, self.workdir, relpath)
        except ValueError as e:
            raise TaskFailure(str(e)) from None

    def read_project_file(self, relpath: str, what: str) -> str:
        target = self.path(relpath)
        if not target.is_file():
            where = f"{self.workdir}/{relpath}" if self.workdir else relpath
            raise TaskFailure(f"{what}: file {where!r} not found in the project")
        try:
            return target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TaskFailure(f"{what}: cannot read {relpath!r}: {e}") from None

    def render(self, text: str) -> str:
        """Evaluate `${...}` in a file's text with the task's params, as Digdag does."""
        try:
            return expr.render(text, self.config)
        except expr.ExprError as e:
            raise TaskFailure(str(e)) from None

    def option(self, key: str, default: Any = None) -> Any:
        value = self.config.get(key)
        return default if value is None or value == "" else value

    def database(self) -> str | None:
        """`database:` of the task, else `td.database` (usually from `_export`)."""
        value = self.option("database") or mapping(self.config.get("td")).get("database")
        return str(value) if value else None


def mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty one (for optional nested options)."""
    return value if isinstance(value, dict) else {}


class Operator(Protocol):
    name: ClassVar[str]

    def run(self, ctx: OperatorContext) -> OperatorResult: ...


def as_bool(value: Any, what: str) -> bool:
    """Digdag's boolean coercion: true/false (any case) or a YAML boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TaskFailure(f"{what} must be true or false, got {value!r}")


def as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TaskFailure(f"{what} must be an integer, got {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise TaskFailure(f"{what} must be an integer, got {value!r}") from None
