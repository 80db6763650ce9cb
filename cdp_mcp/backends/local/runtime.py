"""LocalRuntime: the local backend's synchronous core, composed of one part per job.

- `projects.Projects`: pushes, revisions and their archives;
- `attempts.Attempts`: the attempt lifecycle (start, retry, kill, wait, stale reaping),
  with `required.Required` serving require>;
- `reads.Reads`: attempts, sessions, tasks and logs as the REST models;
- `queries.Queries`: the warehouse's catalog and SQL.

State lives under `{workspace}/.cdp_local/`: the state store (SQLite), the warehouse
(DuckDB), logs and project files. An attempt whose runner process died is marked error when
the workspace is opened. Process-wide state is in `registry.py`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cdp_mcp.backends.base import (
    Attempt,
    LogFile,
    Project,
    QueryResult,
    Session,
    TableInfo,
    Task,
)
from cdp_mcp.backends.local.attempts import Attempts, RunSettings
from cdp_mcp.backends.local.hooks import UnificationHandler
from cdp_mcp.backends.local.logs import LogStore
from cdp_mcp.backends.local.projects import Projects
from cdp_mcp.backends.local.queries import Queries
from cdp_mcp.backends.local.reads import Reads
from cdp_mcp.backends.local.resources import resources
from cdp_mcp.backends.local.store import StateStore
from cdp_mcp.backends.local.unification.handler import handle_unification_call
from cdp_mcp.backends.local.warehouse import QUERY_TIMEOUT_SEC, Storage, Warehouse

STATE_DIR = ".cdp_local"
# TD's unification API, served by cdp_mcp.backends.local.unification
default_unification_handler: UnificationHandler = handle_unification_call


class LocalRuntime:
    def __init__(self, workspace: Path, storage: Storage = "fast") -> None:
        resources()  # an unusable memory or threads override is refused before any work
        self.workspace = Path(workspace).resolve()
        self.home = self.workspace / STATE_DIR
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = StateStore(self.home / "state.sqlite")
        self.warehouse = Warehouse.at(self.home / "warehouse.duckdb", storage)
        self.logs = LogStore(self.home / "logs", self.store)
        self.settings = RunSettings(unification_handler=default_unification_handler)
        self.projects = Projects(self.home, self.store)
        self.reads = Reads(self.store, self.logs)
        self.queries = Queries(self.warehouse)
        self.attempts = Attempts(
            self.store, self.logs, self.warehouse, self.projects, self.reads, self.settings
        )
        self.reap_stale()

    @property
    def unification_handler(self) -> UnificationHandler | None:
        """What `http_call>` to TD's unification API runs (attempts started later)."""
        return self.settings.unification_handler

    @unification_handler.setter
    def unification_handler(self, handler: UnificationHandler | None) -> None:
        self.settings.unification_handler = handler

    @property
    def extracts_dir(self) -> Path | None:
        """Where a TD connector's td_load> reads its dry-run extracts."""
        return self.settings.extracts_dir

    @extracts_dir.setter
    def extracts_dir(self, folder: Path | None) -> None:
        self.settings.extracts_dir = folder

    # projects

    def push(self, project: str, directory: Path) -> Project:
        return self.projects.push(project, directory)

    # sessions and attempts

    def start(
        self,
        project: str,
        workflow: str,
        session_time: datetime | None = None,
        params: dict[str, Any] | None = None,
        retry_attempt_name: str | None = None,
        resume_from: int | None = None,
    ) -> Attempt:
        """Start a session attempt, or return the existing one (TD answers 409 with it)."""
        return self.attempts.start(
            project, workflow, session_time, params, retry_attempt_name, resume_from
        )

    def start_attempt(
        self,
        project: str,
        workflow: str,
        session_time: datetime | None = None,
        params: dict[str, Any] | None = None,
        retry_attempt_name: str | None = None,
        resume_from: int | None = None,
    ) -> tuple[Attempt, bool]:
        """(attempt, True) when started now; (the session's existing attempt, False)."""
        return self.attempts.start_attempt(
            project, workflow, session_time, params, retry_attempt_name, resume_from
        )

    def retry(self, attempt_id: str, resume_failed: bool = True) -> Attempt:
        return self.attempts.retry(attempt_id, resume_failed)

    def kill(self, attempt_id: str) -> Attempt:
        return self.attempts.kill(attempt_id)

    def wait(self, attempt_id: str, timeout: float) -> Attempt:
        return self.attempts.wait(attempt_id, timeout)

    def reap_stale(self) -> None:
        """Attempts whose runner process is gone end as error, with the reason on a task."""
        self.attempts.reap_stale()

    # reading state

    def attempt(self, attempt_id: str) -> Attempt:
        return self.reads.attempt(attempt_id)

    def session(self, session_id: str) -> Session:
        return self.reads.session(session_id)

    def tasks(self, attempt_id: str) -> list[Task]:
        return self.reads.tasks(attempt_id)

    def log_files(self, attempt_id: str, task: str | None = None) -> list[LogFile]:
        return self.reads.log_files(attempt_id, task)

    def read_log(self, attempt_id: str, file_name: str) -> str:
        return self.reads.read_log(attempt_id, file_name)

    # warehouse

    def databases(self) -> list[str]:
        return self.queries.databases()

    def tables(self, database: str) -> list[TableInfo]:
        return self.queries.tables(database)

    def read_query(
        self,
        sql: str,
        database: str,
        engine: str = "presto",
        limit: int | None = None,
        timeout: float = QUERY_TIMEOUT_SEC,
    ) -> QueryResult:
        """One read statement, for a person or an agent (see `Queries.read_query`)."""
        return self.queries.read_query(sql, database, engine, limit, timeout)

    def query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        """Any SQL, read-write, for this package's own callers (see `Queries.query`)."""
        return self.queries.query(sql, database, engine, limit)
