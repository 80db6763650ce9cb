"""LocalBackend: the Backend protocol over the embedded runner (async facade).

Each call runs the synchronous LocalRuntime on a worker thread, so an MCP server's event
loop never blocks on SQLite or DuckDB.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

from cdp_mcp.backends.base import (
    Attempt,
    LogFile,
    Project,
    QueryResult,
    Session,
    TableInfo,
    Task,
)
from cdp_mcp.backends.local.hooks import UnificationHandler
from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.backends.local.warehouse import Storage

T = TypeVar("T")


class LocalBackend:
    """Digdag-compatible workflows over DuckDB, state under `{workspace}/.cdp_local/`."""

    def __init__(
        self, workspace: Path, storage: Storage = "fast", extracts_dir: Path | None = None
    ) -> None:
        """`extracts_dir`: where a TD connector's td_load> reads its dry-run extracts."""
        self.runtime = LocalRuntime(Path(workspace), storage)
        self.runtime.extracts_dir = extracts_dir

    @property
    def workspace(self) -> Path:
        return self.runtime.workspace

    @property
    def unification_handler(self) -> UnificationHandler | None:
        return self.runtime.unification_handler

    @unification_handler.setter
    def unification_handler(self, handler: UnificationHandler | None) -> None:
        self.runtime.unification_handler = handler

    def set_unification_handler(self, handler: UnificationHandler | None) -> None:
        """Run `http_call>` to TD's unification API with `handler` (attempts started later)."""
        self.runtime.unification_handler = handler

    async def check_auth(self) -> None:
        """Nothing to check: the local backend has no credentials."""

    async def aclose(self) -> None:
        """Nothing to release: the warehouse closes itself when idle, and the state store's
        connection is shared by the workspace's runtime (attempts may still be running)."""

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """The warehouse stays open across the calls inside (each would open and close it)."""
        session = self.runtime.warehouse.session()
        await self._call(session.__enter__)
        try:
            yield
        finally:
            await self._call(session.__exit__, None, None, None)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)

    async def push(self, project: str, directory: Path) -> Project:
        return await self._call(self.runtime.push, project, directory)

    async def start(
        self,
        project: str,
        workflow: str,
        session_time: datetime | None = None,
        params: dict[str, Any] | None = None,
        retry_attempt_name: str | None = None,
    ) -> Attempt:
        return await self._call(
            self.runtime.start, project, workflow, session_time, params, retry_attempt_name
        )

    async def attempt(self, attempt_id: str) -> Attempt:
        return await self._call(self.runtime.attempt, attempt_id)

    async def session(self, session_id: str) -> Session:
        return await self._call(self.runtime.session, session_id)

    async def tasks(self, attempt_id: str) -> list[Task]:
        return await self._call(self.runtime.tasks, attempt_id)

    async def log_files(self, attempt_id: str, task: str | None = None) -> list[LogFile]:
        return await self._call(self.runtime.log_files, attempt_id, task)

    async def read_log(self, attempt_id: str, file_name: str) -> str:
        return await self._call(self.runtime.read_log, attempt_id, file_name)

    async def kill(self, attempt_id: str) -> Attempt:
        return await self._call(self.runtime.kill, attempt_id)

    async def retry(self, attempt_id: str, resume_failed: bool = True) -> Attempt:
        return await self._call(self.runtime.retry, attempt_id, resume_failed)

    async def wait(self, attempt_id: str, timeout: float) -> Attempt:
        """Until the attempt is done or `timeout` seconds passed; returns it either way.

        Waits in slices so a cancelled caller is not stuck in a worker thread for long.
        """
        deadline = anyio.current_time() + max(0.0, timeout)
        while True:
            left = max(0.0, deadline - anyio.current_time())
            current = await self._call(self.runtime.wait, attempt_id, min(left, 1.0))
            if current.done or anyio.current_time() >= deadline:
                return current

    async def pause(self, attempt_id: str, seconds: float) -> None:
        await self.wait(attempt_id, seconds)  # the runner says when the attempt ends

    async def databases(self) -> list[str]:
        return await self._call(self.runtime.databases)

    async def tables(self, database: str) -> list[TableInfo]:
        return await self._call(self.runtime.tables, database)

    async def query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        return await self._call(self.runtime.query, sql, database, engine, limit)

    async def read_query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        return await self._call(self.runtime.read_query, sql, database, engine, limit)
