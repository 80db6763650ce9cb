"""The Backend protocol both backends implement, and the models their answers use.

The models follow Digdag's REST shapes (ids are strings, times are timezone-aware) so the
pipeline code reads a local attempt and a Treasure Data attempt the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, computed_field

from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.schema import Column

# Derived, never stored; a Literal because the pipeline's result models carry it as one.
AttemptStatus = Literal["running", "success", "error", "killed"]


class TaskState(StrEnum):
    """A task's state: Digdag's REST strings, also the values the local store keeps."""

    BLOCKED = "blocked"
    READY = "ready"
    RETRY_WAITING = "retry_waiting"
    GROUP_RETRY_WAITING = "group_retry_waiting"
    RUNNING = "running"
    PLANNED = "planned"
    GROUP_ERROR = "group_error"
    SUCCESS = "success"
    ERROR = "error"
    CANCELED = "canceled"


DONE_TASK_STATES: frozenset[TaskState] = frozenset(
    {TaskState.SUCCESS, TaskState.ERROR, TaskState.GROUP_ERROR, TaskState.CANCELED}
)


class BackendError(CdpError):
    """A request the backend refused or could not carry out; the message says why."""


class UnavailableError(BackendError):
    """The backend did not answer, or was busy, so the request was not carried out there
    (transport retries exhausted, the local warehouse held by another process). Not a
    failure of the work itself: the pipeline does not count it against a step's budget."""


class NotFoundError(BackendError):
    """No project, session, attempt, log file or table with that name or id."""


class ConflictError(BackendError):
    """The request conflicts with the current state (e.g. killing a finished attempt)."""


class ProjectRejectedError(BackendError):
    """A push refused because a project file would not compile; names file and line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.file, self.line = file, line
        super().__init__(message)


class QueryError(BackendError):
    """A SQL query failed; the message is the engine's."""


class Project(BaseModel):
    id: str
    name: str
    revision: str
    archive_md5: str
    created_at: datetime
    updated_at: datetime | None = None


class Attempt(BaseModel):
    id: str
    index: int
    project: str  # project name
    project_id: str
    workflow: str
    session_id: str
    session_time: datetime
    retry_attempt_name: str | None = None
    done: bool
    success: bool
    cancel_requested: bool
    created_at: datetime
    finished_at: datetime | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    # Ended because its runner stopped (the local runner's process exited), not because
    # the workflow failed; a hosted Digdag never reports this.
    interrupted: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> AttemptStatus:
        """Derived like TD's console: success, killed (done after a kill), error, running."""
        if self.success:
            return "success"
        if self.done and self.cancel_requested:
            return "killed"
        if self.done:
            return "error"
        return "running"


class Session(BaseModel):
    id: str
    project: str
    project_id: str
    workflow: str
    session_time: datetime
    session_uuid: str
    last_attempt: Attempt | None = None


class Task(BaseModel):
    id: str
    full_name: str
    parent_id: str | None = None
    upstreams: list[str] = Field(default_factory=list)
    is_group: bool
    state: TaskState
    started_at: datetime | None = None
    updated_at: datetime | None = None
    retry_at: datetime | None = None
    error: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    store_params: dict[str, Any] = Field(default_factory=dict)
    export_params: dict[str, Any] = Field(default_factory=dict)


class LogFile(BaseModel):
    file_name: str
    file_size: int
    task_name: str
    file_time: datetime


class TableInfo(BaseModel):
    name: str
    count: int
    columns: list[Column]


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False


@runtime_checkable
class Backend(Protocol):
    """What the pipeline needs from a workflow engine plus its warehouse.

    Every method raises BackendError (or a subclass) with a message fit for a person.
    """

    async def check_auth(self) -> object:
        """Preflight: the backend accepts this client (raises BackendError if not); what it
        returns is the backend's own detail (TD: the hosts it checked)."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections; it is not used afterwards."""
        ...

    def held(self) -> AbstractAsyncContextManager[None]:
        """Keep open, across the calls made inside, what each call would otherwise open and
        close (the local warehouse's connection): a validation's dozen queries pay for it
        once. Nothing to keep on a backend of HTTP calls."""
        ...

    async def push(self, project: str, directory: Path) -> Project: ...

    async def start(
        self,
        project: str,
        workflow: str,
        session_time: datetime | None = None,
        params: dict[str, Any] | None = None,
        retry_attempt_name: str | None = None,
    ) -> Attempt: ...

    async def attempt(self, attempt_id: str) -> Attempt: ...

    async def session(self, session_id: str) -> Session: ...

    async def tasks(self, attempt_id: str) -> list[Task]: ...

    async def log_files(self, attempt_id: str, task: str | None = None) -> list[LogFile]: ...

    async def read_log(self, attempt_id: str, file_name: str) -> str: ...

    async def kill(self, attempt_id: str) -> Attempt: ...

    async def retry(self, attempt_id: str, resume_failed: bool = True) -> Attempt: ...

    async def wait(self, attempt_id: str, timeout: float) -> Attempt: ...

    async def pause(self, attempt_id: str, seconds: float) -> None:
        """Between two polls of an attempt: `seconds`, or less when the backend sees the
        attempt end without being asked (a poller then reads it at once)."""
        ...

    async def databases(self) -> list[str]: ...

    async def tables(self, database: str) -> list[TableInfo]: ...

    async def query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult: ...

    async def read_query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        """One read statement from a person or an agent, refused unless it only reads
        (`backends/readonly.py`); `query` is for this package's own SQL."""
        ...


@runtime_checkable
class SecretStore(Protocol):
    """Project secrets (Digdag's secrets API): a capability of the Treasure Data backend."""

    async def list_secrets(self, project: str) -> list[str]: ...

    async def set_secret(self, project: str, key: str, value: str) -> None: ...


@runtime_checkable
class BulkImporter(Protocol):
    """Rows from this machine into the warehouse (TD's bulk import API): a capability of the
    Treasure Data backend, whose servers cannot read this machine's files."""

    async def ensure_database(self, name: str) -> bool: ...

    async def drop_table(self, database: str, table: str) -> bool: ...

    async def query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult: ...

    async def bulk_import(
        self, session: str, database: str, table: str, parts: Iterable[bytes]
    ) -> Any: ...
