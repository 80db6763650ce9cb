"""Reading the local backend's state: attempts, sessions, tasks and logs as the REST models."""

from __future__ import annotations

import json

from cdp_mcp.backends.base import Attempt, LogFile, NotFoundError, Session, Task
from cdp_mcp.backends.local.logs import LogStore
from cdp_mcp.backends.local.store import StateRow, StateStore, parse_ts, stamp


class Reads:
    """Answers from the state store (and log files) of one workspace."""

    def __init__(self, store: StateStore, logs: LogStore) -> None:
        self.store, self.logs = store, logs

    def attempt_row(self, attempt_id: str) -> StateRow:
        row = self.store.attempt(_int_id(attempt_id, "attempt"))
        if row is None:
            raise NotFoundError(f"attempt {attempt_id} not found in this workspace")
        return row

    def attempt(self, attempt_id: str) -> Attempt:
        row = self.attempt_row(attempt_id)
        session = self.store.session(row["session_id"])
        assert session is not None
        proj = self.store.project(session["project_id"])
        assert proj is not None
        return Attempt(
            id=str(row["id"]),
            index=row["idx"],
            project=proj["name"],
            project_id=str(proj["id"]),
            workflow=session["workflow"],
            session_id=str(session["id"]),
            session_time=stamp(session["session_time"]),
            retry_attempt_name=row["retry_attempt_name"],
            done=bool(row["done"]),
            success=bool(row["success"]),
            cancel_requested=bool(row["cancel_requested"]),
            created_at=stamp(row["created_at"]),
            finished_at=parse_ts(row["finished_at"]),
            params=json.loads(row["params"]),
            interrupted=bool(row["interrupted"]),
        )

    def session(self, session_id: str) -> Session:
        row = self.store.session(_int_id(session_id, "session"))
        if row is None:
            raise NotFoundError(f"session {session_id} not found in this workspace")
        proj = self.store.project(row["project_id"])
        assert proj is not None
        attempts = self.store.attempts_of_session(row["id"])
        return Session(
            id=str(row["id"]),
            project=proj["name"],
            project_id=str(proj["id"]),
            workflow=row["workflow"],
            session_time=stamp(row["session_time"]),
            session_uuid=row["uuid"],
            last_attempt=self.attempt(str(attempts[-1]["id"])) if attempts else None,
        )

    def tasks(self, attempt_id: str) -> list[Task]:
        row = self.attempt_row(attempt_id)
        return [
            Task(
                id=str(t["id"]),
                full_name=t["full_name"],
                parent_id=str(t["parent_id"]) if t["parent_id"] is not None else None,
                upstreams=[str(u) for u in t["upstreams"]],
                is_group=bool(t["is_group"]),
                state=t["state"],
                started_at=parse_ts(t["started_at"]),
                updated_at=parse_ts(t["updated_at"]),
                retry_at=parse_ts(t["retry_at"]),
                error=t["error"],
                config=t["config"],
                store_params=t["store_params"],
                export_params=t["export_params"],
            )
            for t in self.store.tasks(row["id"])
        ]

    def log_files(self, attempt_id: str, task: str | None = None) -> list[LogFile]:
        row = self.attempt_row(attempt_id)
        out = []
        for log in self.store.logs(row["id"]):
            name = log["task_name"]
            if task and not (name.startswith(task) if task.startswith("+") else f"+{task}" in name):
                continue
            out.append(
                LogFile(
                    file_name=log["file_name"],
                    file_size=log["file_size"],
                    task_name=name,
                    file_time=stamp(log["file_time"]),
                )
            )
        return out

    def read_log(self, attempt_id: str, file_name: str) -> str:
        row = self.attempt_row(attempt_id)
        for log in self.store.logs(row["id"]):
            if log["file_name"] == file_name:
                try:
                    return self.logs.read(log["path"])
                except OSError as e:
                    raise NotFoundError(f"log file {file_name} is missing on disk: {e}") from None
        raise NotFoundError(f"attempt {attempt_id} has no log file {file_name!r}")


def _int_id(value: str, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise NotFoundError(f"{what} id must be a number, got {value!r}") from None
