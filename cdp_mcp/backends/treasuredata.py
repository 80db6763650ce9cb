"""TreasureDataBackend: the Backend protocol on TD Workflow (Digdag REST) and API v3.

The same generated projects the local backend runs are pushed to TD Workflow; tables and
queries go through API v3 jobs. Hosts follow the configured endpoint's site (see
`td/hosts.py`), the workflow host `workflow_endpoint` when configured; a non-TD endpoint
(the `cdp-mcp emulate` server) serves everything on one origin. HTTP details (timeouts, bounded retries, error messages without the key) live in
`td/transport.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import httpx
from pydantic import SecretStr

from cdp_mcp.backends.base import (
    Attempt,
    BackendError,
    LogFile,
    Project,
    QueryResult,
    Session,
    TableInfo,
    Task,
)
from cdp_mcp.backends.readonly import Show, read_statement
from cdp_mcp.backends.td.apiv3 import APIv3, PollPolicy
from cdp_mcp.backends.td.bulk_import import BulkImportClient, ImportResult
from cdp_mcp.backends.td.digdag import DigdagClient
from cdp_mcp.backends.td.errors import AUTH_HINT
from cdp_mcp.backends.td.hosts import TDHosts, resolve_hosts
from cdp_mcp.backends.td.transport import RetryPolicy, Transport
from cdp_mcp.core.config import PipelineConfig

_AUTH_PROBE_PROJECT = "cdp_mcp_auth_check"


class TreasureDataBackend:
    """Treasure Data through its REST APIs; use as `async with` or call `aclose()`."""

    def __init__(
        self,
        endpoint: str,
        api_key: SecretStr | str,
        *,
        workflow_endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        poll: PollPolicy | None = None,
        result_format: str = "msgpack.gz",
        query_timeout: float = 1800.0,
        seed: int | None = None,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not key.get_secret_value().strip():
            raise BackendError(f"no Treasure Data API key; {AUTH_HINT}")
        self.endpoint = endpoint
        self.hosts: TDHosts = resolve_hosts(endpoint, workflow_endpoint)
        self.poll = poll or PollPolicy()
        self.result_format = result_format
        self.query_timeout = query_timeout
        self._http = Transport(key, policy=retry, timeout=timeout, seed=seed)
        self.workflow = DigdagClient(self._http, self.hosts.workflow)
        self.api = APIv3(self._http, self.hosts.api, self.poll)
        self.bulk = BulkImportClient(self._http, self.api)

    @classmethod
    def from_config(cls, cfg: PipelineConfig, **options: Any) -> TreasureDataBackend:
        key = cfg.global_.td_api_key
        if key is None:
            raise BackendError(f"backend treasuredata needs global.td_api_key; {AUTH_HINT}")
        options.setdefault("workflow_endpoint", cfg.global_.workflow_endpoint)
        return cls(cfg.global_.td_endpoint, key, **options)

    def __repr__(self) -> str:
        return (
            f"TreasureDataBackend(endpoint={self.endpoint!r}, api={self.hosts.api!r}, "
            f"workflow={self.hosts.workflow!r})"
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def held(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # each call is its own HTTP request

    async def __aenter__(self) -> TreasureDataBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def check_auth(self) -> TDHosts:
        """Preflight: the key works on both the API v3 and the workflow host of the site."""
        await self.api.database_names()
        await self.workflow.find_project(_AUTH_PROBE_PROJECT)
        return self.hosts

    # workflows

    async def push(self, project: str, directory: Path) -> Project:
        return await self.workflow.push(project, directory)

    async def start(
        self,
        project: str,
        workflow: str,
        session_time: datetime | None = None,
        params: dict[str, Any] | None = None,
        retry_attempt_name: str | None = None,
    ) -> Attempt:
        return await self.workflow.start(
            project, workflow, session_time, params, retry_attempt_name
        )

    async def attempt(self, attempt_id: str) -> Attempt:
        return await self.workflow.attempt(attempt_id)

    async def session(self, session_id: str) -> Session:
        return await self.workflow.session(session_id)

    async def tasks(self, attempt_id: str) -> list[Task]:
        return await self.workflow.tasks(attempt_id)

    async def log_files(self, attempt_id: str, task: str | None = None) -> list[LogFile]:
        return await self.workflow.log_files(attempt_id, task)

    async def read_log(self, attempt_id: str, file_name: str) -> str:
        return await self.workflow.read_log(attempt_id, file_name)

    async def kill(self, attempt_id: str) -> Attempt:
        return await self.workflow.kill(attempt_id)

    async def retry(self, attempt_id: str, resume_failed: bool = True) -> Attempt:
        return await self.workflow.retry(attempt_id, resume_failed)

    async def wait(self, attempt_id: str, timeout: float) -> Attempt:
        """Poll until the attempt is done or `timeout` seconds passed; returns it either way."""
        deadline = anyio.current_time() + max(0.0, timeout)
        pause = self.poll.first
        while True:
            current = await self.attempt(attempt_id)
            if current.done or anyio.current_time() >= deadline:
                return current
            await anyio.sleep(min(pause, max(0.0, deadline - anyio.current_time())))
            pause = min(pause * self.poll.factor, self.poll.longest)

    async def pause(self, attempt_id: str, seconds: float) -> None:
        await anyio.sleep(seconds)  # only a poll of the API would tell: the caller's next

    # project secrets

    async def list_secrets(self, project: str) -> list[str]:
        return await self.workflow.list_secrets(project)

    async def set_secret(self, project: str, key: str, value: str) -> None:
        await self.workflow.set_secret(project, key, value)

    async def delete_secret(self, project: str, key: str) -> None:
        await self.workflow.delete_secret(project, key)

    # warehouse

    async def databases(self) -> list[str]:
        return sorted(await self.api.database_names())

    async def ensure_database(self, name: str) -> bool:
        """Create `name` unless it exists; True when it was created now."""
        if name in await self.api.database_names():
            return False
        return await self.api.create_database(name)

    async def tables(self, database: str) -> list[TableInfo]:
        return await self.api.tables(database)

    # bulk import (rows from this machine)

    async def drop_table(self, database: str, table: str) -> bool:
        """Delete `table`; False when there was none."""
        return await self.api.delete_table(database, table)

    async def bulk_import(
        self, session: str, database: str, table: str, parts: Iterable[bytes]
    ) -> ImportResult:
        """Append msgpack.gz `parts` to the table in one committed bulk import session."""
        return await self.bulk.run(session, database, table, parts, timeout=self.query_timeout)

    async def query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        return await self.api.query(
            sql, database, engine, limit, fmt=self.result_format, timeout=self.query_timeout
        )

    async def read_query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        """The same guard as the local backend's, before any job is issued; TD gets the
        checked statement (comments dropped, SHOW re-rendered from its parts)."""
        statement = read_statement(sql, engine)
        text = statement.presto() if isinstance(statement, Show) else statement.text
        return await self.query(text, database, engine, limit)
