"""The local backend's control state (projects, revisions, sessions, attempts, tasks, logs).

A small SQLite file under `{workspace}/.cdp_local/`: every write is a transaction, so the
state survives a crash, and several processes (the MCP server and a CLI) can read it while
one of them runs a workflow.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdp_mcp.backends.base import TaskState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, revision_id INTEGER,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
  id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, name TEXT NOT NULL,
  archive_md5 TEXT NOT NULL, archive_path TEXT NOT NULL, created_at TEXT NOT NULL,
  UNIQUE (project_id, name));
CREATE TABLE IF NOT EXISTS sessions (
  id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, workflow TEXT NOT NULL,
  session_time TEXT NOT NULL, uuid TEXT NOT NULL, UNIQUE (project_id, workflow, session_time));
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, idx INTEGER NOT NULL,
  revision_id INTEGER NOT NULL, retry_attempt_name TEXT, params TEXT NOT NULL,
  done INTEGER NOT NULL DEFAULT 0, success INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, finished_at TEXT,
  runner_pid INTEGER, runner_token TEXT, resume_from INTEGER,
  interrupted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tasks (
  id INTEGER PRIMARY KEY, attempt_id INTEGER NOT NULL, full_name TEXT NOT NULL,
  parent_id INTEGER, upstreams TEXT NOT NULL, is_group INTEGER NOT NULL, state TEXT NOT NULL,
  started_at TEXT, updated_at TEXT, retry_at TEXT, error TEXT, config TEXT NOT NULL,
  store_params TEXT NOT NULL DEFAULT '{}', export_params TEXT NOT NULL DEFAULT '{}',
  UNIQUE (attempt_id, full_name));
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY, attempt_id INTEGER NOT NULL, task_name TEXT NOT NULL,
  file_name TEXT NOT NULL, file_size INTEGER NOT NULL, file_time TEXT NOT NULL,
  path TEXT NOT NULL, UNIQUE (attempt_id, file_name));
CREATE INDEX IF NOT EXISTS tasks_by_attempt ON tasks (attempt_id);
CREATE INDEX IF NOT EXISTS attempts_by_session ON attempts (session_id);
"""


def now() -> datetime:
    return datetime.now(UTC)


def ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="milliseconds") if value else None


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def stamp(value: str) -> datetime:
    """A timestamp column that is never NULL, as a datetime."""
    parsed = parse_ts(value)
    assert parsed is not None
    return parsed


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


StateRow = dict[str, Any]  # a row of the state store: column -> value


class _Keep:
    """Marker: leave a column as it is."""


KEEP = _Keep()
_LEFT_BY_A_DEAD_RUNNER = (
    TaskState.RUNNING,
    TaskState.PLANNED,
    TaskState.RETRY_WAITING,
    TaskState.GROUP_RETRY_WAITING,
    TaskState.READY,
)
_NOT_STARTED = (TaskState.BLOCKED, TaskState.READY)


class StateStore:
    """Thread-safe access to the SQLite state file; rows come back as dicts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # Without an fsync per commit: a workflow commits a few times per task (about 300
        # commits for the prep's 30 tasks, ~3 ms each on this disk, most of its wall time).
        # In WAL mode a killed process loses nothing committed and the file stays sound;
        # only an OS crash or power loss can drop the last transitions, as if the attempt
        # had stopped a little earlier (its tasks then run again on retry).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.executescript(_SCHEMA)  # idempotent; executescript commits itself
            self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A state file written by an earlier cdp-mcp lacks columns added since."""
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(attempts)")}
        if "interrupted" not in have:
            self._db.execute(
                "ALTER TABLE attempts ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> StateRow | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return dict(row) if row else None

    def _all(self, sql: str, *args: Any) -> list[StateRow]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    # projects and revisions

    def project_by_name(self, name: str) -> StateRow | None:
        return self._one("SELECT * FROM projects WHERE name = ?", name)

    def project(self, project_id: int) -> StateRow | None:
        return self._one("SELECT * FROM projects WHERE id = ?", project_id)

    def save_revision(
        self, project: str, revision: str, md5: str, archive_path: str
    ) -> tuple[StateRow, StateRow]:
        """Make `revision` the project's current one (creating either if new)."""
        stamp = ts(now())
        with self._tx() as db:
            row = db.execute("SELECT id FROM projects WHERE name = ?", (project,)).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO projects (name, created_at, updated_at) VALUES (?, ?, ?)",
                    (project, stamp, stamp),
                )
                project_id = cur.lastrowid
            else:
                project_id = row["id"]
            rev = db.execute(
                "SELECT id FROM revisions WHERE project_id = ? AND name = ?", (project_id, revision)
            ).fetchone()
            if rev is None:
                cur = db.execute(
                    "INSERT INTO revisions (project_id, name, archive_md5, archive_path, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (project_id, revision, md5, archive_path, stamp),
                )
                rev_id = cur.lastrowid
            else:
                rev_id = rev["id"]
            db.execute(
                "UPDATE projects SET revision_id = ?, updated_at = ? WHERE id = ?",
                (rev_id, stamp, project_id),
            )
        proj = self.project(int(project_id or 0))
        revision_row = self.revision(int(rev_id or 0))
        assert proj and revision_row
        return proj, revision_row

    def revision(self, revision_id: int) -> StateRow | None:
        return self._one("SELECT * FROM revisions WHERE id = ?", revision_id)

    # sessions and attempts

    def session(self, session_id: int) -> StateRow | None:
        return self._one("SELECT * FROM sessions WHERE id = ?", session_id)

    def find_session(self, project_id: int, workflow: str, session_time: str) -> StateRow | None:
        return self._one(
            "SELECT * FROM sessions WHERE project_id = ? AND workflow = ? AND session_time = ?",
            project_id,
            workflow,
            session_time,
        )

    def create_attempt(
        self,
        project_id: int,
        workflow: str,
        session_time: str,
        session_uuid: str,
        retry_attempt_name: str | None,
        revision_id: int,
        params: dict[str, Any],
        runner: tuple[int, str],
        resume_from: int | None = None,
    ) -> tuple[StateRow, bool]:
        """A new attempt of the session, or (existing, False) when that attempt exists."""
        with self._tx() as db:
            sess = db.execute(
                "SELECT id FROM sessions WHERE project_id = ? AND workflow = ? AND session_time = ?",
                (project_id, workflow, session_time),
            ).fetchone()
            if sess is None:
                cur = db.execute(
                    "INSERT INTO sessions (project_id, workflow, session_time, uuid) VALUES (?, ?, ?, ?)",
                    (project_id, workflow, session_time, session_uuid),
                )
                session_id = cur.lastrowid
            else:
                session_id = sess["id"]
                existing = db.execute(
                    "SELECT id FROM attempts WHERE session_id = ? AND retry_attempt_name IS ?",
                    (session_id, retry_attempt_name),
                ).fetchone()
                if existing is not None:
                    found = dict(existing)
                    return self._attempt_in(db, found["id"]), False
            count = db.execute(
                "SELECT count(*) FROM attempts WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            cur = db.execute(
                "INSERT INTO attempts (session_id, idx, revision_id, retry_attempt_name, params,"
                " created_at, runner_pid, runner_token, resume_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    count + 1,
                    revision_id,
                    retry_attempt_name,
                    _json(params),
                    ts(now()),
                    runner[0],
                    runner[1],
                    resume_from,
                ),
            )
            return self._attempt_in(db, int(cur.lastrowid or 0)), True

    def _attempt_in(self, db: sqlite3.Connection, attempt_id: int) -> StateRow:
        row = db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        return dict(row)

    def attempt(self, attempt_id: int) -> StateRow | None:
        return self._one("SELECT * FROM attempts WHERE id = ?", attempt_id)

    def attempts_of_session(self, session_id: int) -> list[StateRow]:
        return self._all("SELECT * FROM attempts WHERE session_id = ? ORDER BY id", session_id)

    def attempts_newest_first(
        self,
        project_id: int | None,
        workflow: str | None,
        include_retried: bool,
        before_id: int | None,
        limit: int,
    ) -> list[StateRow]:
        """Attempts by id, newest first (of a project, a workflow); only each session's last
        unless `include_retried`; only those older than `before_id` when given."""
        return self._all(
            "SELECT a.* FROM attempts a JOIN sessions s ON s.id = a.session_id"
            " WHERE (? IS NULL OR s.project_id = ?) AND (? IS NULL OR s.workflow = ?)"
            " AND (? IS NULL OR a.id < ?) AND (? OR a.id ="
            " (SELECT max(b.id) FROM attempts b WHERE b.session_id = a.session_id))"
            " ORDER BY a.id DESC LIMIT ?",
            project_id,
            project_id,
            workflow,
            workflow,
            before_id,
            before_id,
            include_retried,
            limit,
        )

    def unfinished_attempts(self) -> list[StateRow]:
        return self._all("SELECT * FROM attempts WHERE done = 0 ORDER BY id")

    def request_cancel(self, attempt_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET cancel_requested = 1 WHERE id = ? AND done = 0", (attempt_id,)
            )

    def cancel_requested(self, attempt_id: int) -> bool:
        row = self._one("SELECT cancel_requested FROM attempts WHERE id = ?", attempt_id)
        return bool(row and row["cancel_requested"])

    def mark_interrupted(self, attempt_id: int) -> None:
        """The attempt's runner stopped under it (see Attempt.interrupted)."""
        with self._tx() as db:
            db.execute("UPDATE attempts SET interrupted = 1 WHERE id = ?", (attempt_id,))

    def finish_attempt(self, attempt_id: int, success: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET done = 1, success = ?, finished_at = ? WHERE id = ?",
                (int(success), ts(now()), attempt_id),
            )

    # tasks

    def add_task(
        self,
        attempt_id: int,
        full_name: str,
        parent_id: int | None,
        upstreams: list[int],
        is_group: bool,
        config: dict[str, Any],
        export_params: dict[str, Any],
    ) -> int:
        """Insert a task (blocked), or reset the one with that name (a group retry)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM tasks WHERE attempt_id = ? AND full_name = ?",
                (attempt_id, full_name),
            ).fetchone()
            values = (
                parent_id,
                _json(upstreams),
                int(is_group),
                _json(config),
                _json(export_params),
            )
            if row is not None:
                db.execute(
                    "UPDATE tasks SET parent_id = ?, upstreams = ?, is_group = ?, config = ?,"
                    " export_params = ?, state = ?, started_at = NULL, updated_at = ?,"
                    " retry_at = NULL, error = NULL, store_params = '{}' WHERE id = ?",
                    (*values, TaskState.BLOCKED.value, ts(now()), row["id"]),
                )
                return int(row["id"])
            cur = db.execute(
                "INSERT INTO tasks (attempt_id, full_name, parent_id, upstreams, is_group, config,"
                " export_params, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (attempt_id, full_name, *values, TaskState.BLOCKED.value, ts(now())),
            )
            return int(cur.lastrowid or 0)

    def update_task(
        self,
        task_id: int,
        state: TaskState,
        *,
        started: bool = False,
        error: str | _Keep | None = KEEP,
        store_params: dict[str, Any] | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Set a task's state; `error` is kept unless given (None clears it)."""
        sets, args = (
            ["state = ?", "updated_at = ?", "retry_at = ?"],
            [TaskState(state).value, ts(now()), ts(retry_at)],
        )
        if started:
            sets.append("started_at = ?")
            args.append(ts(now()))
        if not isinstance(error, _Keep):
            sets.append("error = ?")
            args.append(error)
        if store_params is not None:
            sets.append("store_params = ?")
            args.append(_json(store_params))
        with self._tx() as db:
            db.execute(f"UPDATE tasks SET {', '.join(sets)} WHERE id = ?", (*args, task_id))

    def fail_unfinished_tasks(self, attempt_id: int, message: str) -> None:
        """Mark tasks left running/planned by a dead runner as error."""
        self._move_tasks(attempt_id, _LEFT_BY_A_DEAD_RUNNER, TaskState.ERROR, message)

    def cancel_blocked_tasks(self, attempt_id: int) -> None:
        self._move_tasks(attempt_id, _NOT_STARTED, TaskState.CANCELED)

    def _move_tasks(
        self,
        attempt_id: int,
        states: tuple[TaskState, ...],
        to: TaskState,
        error: str | _Keep = KEEP,
    ) -> None:
        """Tasks of the attempt in one of `states` move to `to` (with `error` when given)."""
        marks = ", ".join("?" for _ in states)
        sets, args = ["state = ?", "updated_at = ?"], [to.value, ts(now())]
        if not isinstance(error, _Keep):
            sets.append("error = ?")
            args.append(error)
        with self._tx() as db:
            db.execute(
                f"UPDATE tasks SET {', '.join(sets)} WHERE attempt_id = ? AND state IN ({marks})",
                (*args, attempt_id, *(s.value for s in states)),
            )

    def tasks(self, attempt_id: int) -> list[StateRow]:
        rows = self._all("SELECT * FROM tasks WHERE attempt_id = ? ORDER BY id", attempt_id)
        for row in rows:
            for key in ("upstreams", "config", "store_params", "export_params"):
                row[key] = json.loads(row[key])
        return rows

    # logs

    def add_log(
        self, attempt_id: int, task_name: str, file_name: str, size: int, path: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO logs (attempt_id, task_name, file_name, file_size, file_time, path)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (attempt_id, task_name, file_name, size, ts(now()), path),
            )

    def logs(self, attempt_id: int) -> list[StateRow]:
        return self._all("SELECT * FROM logs WHERE attempt_id = ? ORDER BY id", attempt_id)
