"""Backends the pipeline runs on: `local` (embedded) and `treasuredata`."""

from cdp_mcp.backends.base import (
    Attempt,
    Backend,
    BackendError,
    ConflictError,
    LogFile,
    NotFoundError,
    Project,
    ProjectRejectedError,
    QueryError,
    QueryResult,
    Session,
    TableInfo,
    Task,
)

__all__ = [
    "Attempt",
    "Backend",
    "BackendError",
    "ConflictError",
    "LogFile",
    "NotFoundError",
    "Project",
    "ProjectRejectedError",
    "QueryError",
    "QueryResult",
    "Session",
    "TableInfo",
    "Task",
]
