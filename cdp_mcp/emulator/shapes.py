"""The JSON TD answers with, built from the backend models: camelCase, ids as strings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from typing import Any

from cdp_mcp.backends.base import Attempt, LogFile, Session, TableInfo, Task
from cdp_mcp.core import redact


def instant(value: datetime | None) -> str | None:
    """Digdag's Instant: UTC with `Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def offset_time(value: datetime, zone: tzinfo = UTC) -> str:
    """Digdag's OffsetDateTime for session times, in the workflow's time zone:
    `2026-01-01T00:00:00+09:00`."""
    return value.astimezone(zone).isoformat(timespec="seconds")


def v3_time(value: datetime | None) -> str | None:
    """API v3's time form: `2026-01-01 00:00:00 UTC`."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def error(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """Digdag's error body (the workflow host)."""
    return {"message": redact.scrub(message), "status": status, **extra}


def v3_error(message: str, **extra: Any) -> dict[str, Any]:
    """API v3's error body (the api host), as td-client-java's TDApiErrorMessage reads it;
    td-client-ruby reads `error` too, td-client-python shows the body as it is."""
    message = redact.scrub(message)
    return {"error": message, "text": message, "severity": "error", **extra}


def is_workflow_path(path: str) -> bool:
    return path.startswith(("/api/", "/_emulator/"))


def error_for(path: str, status: int, message: str, **extra: Any) -> dict[str, Any]:
    """The error body of the host that serves `path` (both are served on one origin)."""
    return error(status, message, **extra) if is_workflow_path(path) else v3_error(message, **extra)


def project(
    project_id: str, name: str, revision: str, md5: str, created: datetime, updated: datetime
) -> dict[str, Any]:
    return {
        "id": project_id,
        "name": name,
        "revision": revision,
        "createdAt": instant(created),
        "updatedAt": instant(updated),
        "deletedAt": None,
        "archiveType": "db",
        "archiveMd5": md5,
    }


def workflow(
    workflow_id: str,
    name: str,
    project_id: str,
    project_name: str,
    revision: str,
    zone: tzinfo,
    config: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "name": name,
        "project": {"id": project_id, "name": project_name},
        "revision": revision,
        "timezone": str(zone),
        "config": config,
    }


def attempt(a: Attempt, workflow_id: str, session_uuid: str, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": a.id,
        "index": a.index,
        "project": {"id": a.project_id, "name": a.project},
        "workflow": {"name": a.workflow, "id": workflow_id},
        "sessionId": a.session_id,
        "sessionUuid": session_uuid,
        "sessionTime": offset_time(a.session_time, zone),
        "retryAttemptName": a.retry_attempt_name,
        "done": a.done,
        "success": a.success,
        "cancelRequested": a.cancel_requested,
        "params": a.params,
        "createdAt": instant(a.created_at),
        "finishedAt": instant(a.finished_at),
        "status": a.status,
    }


def session(s: Session, workflow_id: str, zone: tzinfo) -> dict[str, Any]:
    last = s.last_attempt
    return {
        "id": s.id,
        "project": {"id": s.project_id, "name": s.project},
        "workflow": {"name": s.workflow, "id": workflow_id},
        "sessionUuid": s.session_uuid,
        "sessionTime": offset_time(s.session_time, zone),
        "lastAttempt": None
        if last is None
        else {
            "id": last.id,
            "retryAttemptName": last.retry_attempt_name,
            "done": last.done,
            "success": last.success,
            "cancelRequested": last.cancel_requested,
            "params": last.params,
            "createdAt": instant(last.created_at),
            "finishedAt": instant(last.finished_at),
        },
    }


def task(t: Task, cancel_requested: bool) -> dict[str, Any]:
    return {
        "id": t.id,
        "fullName": t.full_name,
        "parentId": t.parent_id,
        "config": t.config,
        "upstreams": t.upstreams,
        "isGroup": t.is_group,
        "state": t.state,
        "cancelRequested": cancel_requested,
        "exportParams": t.export_params,
        "storeParams": t.store_params,
        "stateParams": {},
        "updatedAt": instant(t.updated_at),
        "retryAt": instant(t.retry_at),
        "startedAt": instant(t.started_at),
        "error": {"message": t.error} if t.error else {},
    }


def log_file(f: LogFile, direct: str | None) -> dict[str, Any]:
    # Digdag 0.10 writes `direct` as the URL itself (RestDirectDownloadHandle's @JsonValue);
    # its client still reads the older `{"url": ...}` object.
    return {
        "fileName": f.file_name,
        "fileSize": f.file_size,
        "taskName": f.task_name,
        "fileTime": instant(f.file_time),
        "agentId": "local",
        "direct": direct,
    }


def database(name: str, count: int) -> dict[str, Any]:
    # Creation times are not kept by the warehouse; clients read a missing time as unknown.
    return {
        "name": name,
        "count": count,
        "created_at": None,
        "updated_at": None,
        "organization": None,
        "permission": "administrator",
    }


def secret(key: str, project_id: str, project_name: str) -> dict[str, Any]:
    """What setting or deleting a project secret answers (RestSecret): never the value."""
    return {"key": key, "project": {"id": project_id, "name": project_name}}


# A table schema names only TD's column types: td-client-java (which Digdag's td operators
# list tables with) reads nothing else, so one `boolean` would break every listing of the
# database. TD's own connector output writes booleans as `long` (embulk-output-td's
# default_boolean_type_convert_to), so the warehouse's boolean columns are reported so.
_SCHEMA_TYPES = {"boolean": "long"}


def table(t: TableInfo) -> dict[str, Any]:
    # TD leaves the implicit `time` column out of a table's schema, a JSON-encoded string.
    schema = [[c.name, _SCHEMA_TYPES.get(c.type, c.type)] for c in t.columns if c.name != "time"]
    return {
        "name": t.name,
        "type": "log",
        "count": t.count,
        "schema": json.dumps(schema),
        "estimated_storage_size": 0,
        "counter_updated_at": None,
        "last_log_timestamp": None,
        "created_at": None,
        "updated_at": None,
        "expire_days": None,
    }
