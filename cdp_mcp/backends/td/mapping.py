"""TD's JSON (Digdag REST, API v3) -> the backend models in `backends/base.py`.

Parsed defensively: Digdag answers lists bare (older servers) or wrapped in a collection
(`{"projects": [...]}`), ids may be numbers or strings, optional fields may be absent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cdp_mcp.backends.base import (
    Attempt,
    BackendError,
    LogFile,
    Project,
    Session,
    TableInfo,
    Task,
    TaskState,
)
from cdp_mcp.core.schema import Column

# Presto/Hive result types -> TD column types (the vocabulary of `cdp_mcp.core.schema`).
_TD_TYPES = {
    "bigint": "long",
    "integer": "long",
    "int": "long",
    "smallint": "long",
    "tinyint": "long",
    "long": "long",
    "double": "double",
    "real": "double",
    "float": "double",
    "decimal": "double",
    "boolean": "boolean",
}


def collection(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key, []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BackendError(f"unexpected answer from Treasure Data: no `{key}` list")
    return [i for i in items if isinstance(i, dict)]


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 (Digdag: `...Z` or `+09:00`) or API v3's `2024-01-01 00:00:00 UTC`."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _required_time(value: Any) -> datetime:
    return parse_time(value) or datetime.now(UTC)


def _id(value: Any) -> str:
    return "" if value is None else str(value)


def _ref(data: dict[str, Any], key: str) -> dict[str, Any]:
    ref = data.get(key)
    return ref if isinstance(ref, dict) else {}


def project(data: dict[str, Any]) -> Project:
    return Project(
        id=_id(data.get("id")),
        name=str(data.get("name", "")),
        revision=str(data.get("revision", "")),
        archive_md5=str(data.get("archiveMd5") or ""),
        created_at=_required_time(data.get("createdAt")),
        updated_at=parse_time(data.get("updatedAt")),
    )


def attempt(data: dict[str, Any]) -> Attempt:
    proj, wf = _ref(data, "project"), _ref(data, "workflow")
    params = data.get("params")
    return Attempt(
        id=_id(data.get("id")),
        index=int(data.get("index") or 1),
        project=str(proj.get("name", "")),
        project_id=_id(proj.get("id")),
        workflow=str(wf.get("name", "")),
        session_id=_id(data.get("sessionId")),
        session_time=_required_time(data.get("sessionTime")),
        retry_attempt_name=data.get("retryAttemptName"),
        done=bool(data.get("done")),
        success=bool(data.get("success")),
        cancel_requested=bool(data.get("cancelRequested")),
        created_at=_required_time(data.get("createdAt")),
        finished_at=parse_time(data.get("finishedAt")),
        params=params if isinstance(params, dict) else {},
    )


def session(data: dict[str, Any], last: Attempt | None) -> Session:
    proj, wf = _ref(data, "project"), _ref(data, "workflow")
    return Session(
        id=_id(data.get("id")),
        project=str(proj.get("name", "")),
        project_id=_id(proj.get("id")),
        workflow=str(wf.get("name", "")),
        session_time=_required_time(data.get("sessionTime")),
        session_uuid=str(data.get("sessionUuid", "")),
        last_attempt=last,
    )


def _task_error(value: Any) -> str | None:
    """Digdag's task `error` is a config object (`{}` when none, else `message`, ...)."""
    if isinstance(value, dict):
        message = value.get("message")
        return str(message) if message else (json.dumps(value) if value else None)
    return str(value) if value else None


def task_state(value: Any) -> TaskState:
    """Digdag's task state; one this client does not know reads as running."""
    try:
        return TaskState(str(value).lower())
    except ValueError:
        return TaskState.RUNNING


def task(data: dict[str, Any]) -> Task:

    def mapping(key: str) -> dict[str, Any]:
        value = data.get(key)
        return value if isinstance(value, dict) else {}

    return Task(
        id=_id(data.get("id")),
        full_name=str(data.get("fullName", "")),
        parent_id=_id(data["parentId"]) if data.get("parentId") is not None else None,
        upstreams=[_id(u) for u in data.get("upstreams") or []],
        is_group=bool(data.get("isGroup")),
        state=task_state(data.get("state", TaskState.RUNNING)),
        started_at=parse_time(data.get("startedAt")),
        updated_at=parse_time(data.get("updatedAt")),
        retry_at=parse_time(data.get("retryAt")),
        error=_task_error(data.get("error")),
        config=mapping("config"),
        store_params=mapping("storeParams"),
        export_params=mapping("exportParams"),
    )


def log_file(data: dict[str, Any]) -> LogFile:
    return LogFile(
        file_name=str(data.get("fileName", "")),
        file_size=int(data.get("fileSize") or 0),
        task_name=str(data.get("taskName", "")),
        file_time=_required_time(data.get("fileTime")),
    )


def direct_url(data: dict[str, Any]) -> str | None:
    """A log file's `direct` download URL, if any: Digdag 0.10 writes the URL as a string,
    older servers as `{"url": ...}` (Digdag's own client reads both)."""
    direct = data.get("direct")
    if isinstance(direct, dict):
        direct = direct.get("url")
    return str(direct) if direct else None


def td_type(sql_type: str) -> str:
    base = sql_type.strip().lower().split("(")[0]
    return _TD_TYPES.get(base, "string")


def schema_columns(schema: Any) -> list[Column]:
    """A table's `schema`: a JSON-encoded string of [name, type(, alias)] lists."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema or "[]")
        except ValueError:
            raise BackendError(
                "unexpected answer from Treasure Data: a table schema is not JSON"
            ) from None
    columns = []
    for entry in schema or []:
        if isinstance(entry, list | tuple) and len(entry) >= 2:
            columns.append(Column(name=str(entry[0]), type=td_type(str(entry[1]))))
    return columns


def table(data: dict[str, Any]) -> TableInfo:
    columns = schema_columns(data.get("schema"))
    # Every TD table has the `time` column; the API leaves it out of `schema`.
    if not any(c.name == "time" for c in columns):
        columns.append(Column(name="time", type="long"))
    return TableInfo(
        name=str(data.get("name", "")), count=int(data.get("count") or 0), columns=columns
    )
