"""The local backend's synchronous core: projects, sessions, attempts and their threads.

Workflows run on background threads of this process; their state lives in the state store,
so another process (or a new LocalRuntime after a restart) sees every session, attempt, task
and log. An attempt whose runner process died is marked error when the workspace is opened.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb

from cdp_mcp.backends.archive import archive_md5, build_archive, content_revision, extract_archive
from cdp_mcp.backends.base import (
    Attempt,
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
    TaskState,
)
from cdp_mcp.backends.local import tables, td_udfs
from cdp_mcp.backends.local.engine import AttemptInfo, AttemptRun
from cdp_mcp.backends.local.hooks import UnificationCall, UnificationHandler
from cdp_mcp.backends.local.logs import LogStore, TaskLog
from cdp_mcp.backends.local.params import StoreUpdate, merged_store, session_builtins
from cdp_mcp.backends.local.readonly import (
    check_duckdb,
    clean_error,
    pipeline_tables,
    scope_information_schema,
    show_sql,
    show_table,
)
from cdp_mcp.backends.local.sql import ENGINES, split_statements, translate, translate_tree
from cdp_mcp.backends.local.store import Row, StateStore, parse_ts, ts
from cdp_mcp.backends.local.warehouse import (
    QUERY_TIMEOUT_SEC,
    Storage,
    Warehouse,
    json_value,
    list_databases,
    table_columns,
)
from cdp_mcp.backends.readonly import Show, read_statement
from cdp_mcp.digdag.loader import DigError
from cdp_mcp.digdag.tasks import TaskNode, check_project, load_workflow_file

STATE_DIR = ".cdp_local"
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_RUNNER_TOKEN = uuid.uuid4().hex  # identifies attempts run by this process
_ACTIVE: dict[tuple[str, int], AttemptRun] = {}  # (state file, attempt id) -> its run
_ACTIVE_LOCK = threading.Lock()
# Notified whenever an attempt run by this process ends (see `wait`).
_FINISHED = threading.Condition(_ACTIVE_LOCK)
_EXIT_GRACE_SECONDS = 10.0


def _stop_runs_at_exit() -> None:
    """Interrupt attempts still running when the process exits, and let them unwind.

    Interpreter teardown stops daemon threads wherever they are; one stopped inside a DuckDB
    query aborts the whole process ("FATAL: exception not rethrown", exit 134). An attempt
    ended here is recorded as failed, as a dead runner's attempt would be.
    """
    with _ACTIVE_LOCK:
        runs = list(_ACTIVE.items())
    for (state_file, attempt_id), run in runs:
        with contextlib.suppress(Exception):  # the store may be gone; the cancel matters
            StateStore(Path(state_file)).mark_interrupted(attempt_id)
        run.cancel()
    with _ACTIVE_LOCK:
        _FINISHED.wait_for(lambda: not _ACTIVE, timeout=_EXIT_GRACE_SECONDS)


atexit.register(_stop_runs_at_exit)
_STALE_MESSAGE = "the local runner stopped while this attempt was running (its process exited); retry the attempt"


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalRuntime:
    def __init__(self, workspace: Path, storage: Storage = "fast") -> None:
        self.workspace = Path(workspace).resolve()
        self.home = self.workspace / STATE_DIR
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = StateStore(self.home / "state.sqlite")
        self.warehouse = Warehouse.at(self.home / "warehouse.duckdb", storage)
        self.logs = LogStore(self.home / "logs", self.store)
        self.unification_handler: UnificationHandler | None = default_unification_handler
        # A TD connector's td_load> dry-runs on the extracts here (ingestion.source_path)
        self.extracts_dir: Path | None = None
        self.reap_stale()

    # projects

    def push(self, project: str, directory: Path) -> Project:
        if not _PROJECT_NAME.match(project or ""):
            raise BackendError(
                f"invalid project name {project!r}: use letters, digits, '_', '-' and '.'"
            )
        directory = Path(directory).resolve()
        archive = build_archive(directory)
        revision = content_revision(archive)
        folder = self._project_folder(project)
        archive_path = folder / "archives" / f"{revision}.tar.gz"
        tmp_root = self.home / "tmp"
        tmp_root.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
            staged = Path(tmp) / "archive.tar.gz"
            staged.write_bytes(archive)
            extracted = Path(tmp) / "project"
            extract_archive(staged, extracted)
            try:
                workflows = check_project(extracted)
            except DigError as e:
                raise ProjectRejectedError(f"push refused: {e}", e.file, e.line) from None
            if not workflows:
                raise ProjectRejectedError(
                    f"push refused: no workflow (*.dig) at the top of {directory}"
                )
            archive_path.parent.mkdir(parents=True, exist_ok=True)
            if not archive_path.exists():
                shutil.move(str(staged), archive_path)
            target = folder / "revisions" / revision
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(extracted), target)
        proj, rev = self.store.save_revision(
            project, revision, archive_md5(archive), str(archive_path)
        )
        return Project(
            id=str(proj["id"]),
            name=proj["name"],
            revision=rev["name"],
            archive_md5=rev["archive_md5"],
            created_at=_dt(proj["created_at"]),
            updated_at=parse_ts(proj["updated_at"]),
        )

    def _project_folder(self, project: str) -> Path:
        return self.home / "projects" / project

    def _revision_dir(self, project: Row, revision: Row) -> Path:
        """The extracted archive workflows run from (re-extracted if it went missing)."""
        target = self._project_folder(project["name"]) / "revisions" / revision["name"]
        if not target.is_dir():
            extract_archive(Path(revision["archive_path"]), target)
        return target

    def _current(self, project: str) -> tuple[Row, Row]:
        proj = self.store.project_by_name(project)
        if proj is None or proj["revision_id"] is None:
            raise NotFoundError(f"project {project!r} has not been pushed to this workspace")
        rev = self.store.revision(proj["revision_id"])
        assert rev is not None
        return proj, rev

    def _workflow_tree(self, project: Row, revision: Row, workflow: str) -> tuple[Path, TaskNode]:
        root = self._revision_dir(project, revision)
        path = root / f"{workflow}.dig"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in root.glob("*.dig"))) or "none"
            raise NotFoundError(
                f"workflow {workflow!r} not found in project {project['name']} (workflows: {names})"
            )
        try:
            return root, load_workflow_file(root, path)
        except DigError as e:
            raise BackendError(f"workflow {workflow} does not compile: {e}") from None

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
        return self.start_attempt(
            project, workflow, session_time, params, retry_attempt_name, resume_from
        )[0]

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
        proj, rev = self._current(project)
        workflow = workflow.removesuffix(".dig")
        root, tree = self._workflow_tree(proj, rev, workflow)
        timezone = str(tree.config.get("timezone") or "UTC")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BackendError(f"workflow {workflow}: unknown timezone {timezone!r}") from None
        when = (session_time or datetime.now(UTC).replace(microsecond=0)).astimezone(UTC)
        with _ACTIVE_LOCK:
            row, created = self.store.create_attempt(
                proj["id"],
                workflow,
                str(ts(when)),
                str(uuid.uuid4()),
                retry_attempt_name,
                rev["id"],
                params or {},
                (os.getpid(), _RUNNER_TOKEN),
                resume_from,
            )
            if not created:
                return self.attempt(str(row["id"])), False
            session = self.store.session(row["session_id"])
            assert session is not None
            builtins = session_builtins(
                when,
                timezone,
                session_id=row["session_id"],
                attempt_id=row["id"],
                session_uuid=session["uuid"],
                project_id=proj["id"],
                retry_attempt_name=retry_attempt_name,
            )
            info = AttemptInfo(
                attempt_id=row["id"],
                session_id=row["session_id"],
                project_id=proj["id"],
                project_name=proj["name"],
                workflow=workflow,
                session_time=when,
                retry_attempt_name=retry_attempt_name,
                project_dir=root,
                params={**builtins, **(params or {})},
            )
            run = AttemptRun(
                info,
                self.store,
                self.logs,
                self.warehouse,
                resume=self._resume_map(resume_from) if resume_from else None,
                require=self._require,
                unification_handler=self.unification_handler,
                extracts_dir=self.extracts_dir,
            )
            try:
                run.prepare(tree)
            except Exception as e:
                self._mark_root_error(row["id"], f"the attempt could not start: {e}")
                self.store.finish_attempt(row["id"], False)
                raise BackendError(f"attempt {row['id']} could not start: {e}") from None
            _ACTIVE[(str(self.store.path), row["id"])] = run
        thread = threading.Thread(
            target=self._execute, args=(run, tree), name=f"cdp-attempt-{row['id']}", daemon=True
        )
        thread.start()
        return self.attempt(str(row["id"])), True

    def _execute(self, run: AttemptRun, tree: TaskNode) -> None:
        attempt_id = run.info.attempt_id
        success = False
        try:
            with self.warehouse.session():
                outcome = run.run(tree)
            success = outcome.ok and not run.cancel_requested()
        except Exception as e:  # e.g. the warehouse is locked by another process
            self.store.fail_unfinished_tasks(attempt_id, f"the attempt could not run: {e}")
            self._mark_root_error(attempt_id, f"the attempt could not run: {e}")
        finally:
            self.store.finish_attempt(attempt_id, success)
            with _ACTIVE_LOCK:
                _ACTIVE.pop((str(self.store.path), attempt_id), None)
                _FINISHED.notify_all()

    def _mark_root_error(self, attempt_id: int, message: str) -> None:
        rows = self.store.tasks(attempt_id)
        if not rows:
            self.store.add_task(attempt_id, "+error", None, [], False, {}, {})
            rows = self.store.tasks(attempt_id)
        if not any(r["error"] for r in rows):
            self.store.update_task(rows[0]["id"], TaskState.ERROR, error=message)

    def _resume_map(self, attempt_id: int) -> dict[str, dict[str, Any]]:
        """Tasks that succeeded in `attempt_id` (not groups, not error handlers), with the
        params they and their subtasks stored, so a resumed attempt skips them."""
        rows = self.store.tasks(attempt_id)
        children: dict[int, list[Row]] = {}
        for row in rows:
            children.setdefault(row["parent_id"], []).append(row)

        def subtree_store(row: Row) -> dict[str, Any]:
            updates = [StoreUpdate(row["store_params"])]
            stack = list(children.get(row["id"], []))
            ordered = []
            while stack:
                item = stack.pop(0)
                ordered.append(item)
                stack = children.get(item["id"], []) + stack
            updates += [StoreUpdate(r["store_params"]) for r in ordered if r["store_params"]]
            return merged_store(updates)

        return {
            r["full_name"]: subtree_store(r)
            for r in rows
            if r["state"] == TaskState.SUCCESS
            and not r["is_group"]
            and "^error" not in r["full_name"]
        }

    def retry(self, attempt_id: str, resume_failed: bool = True) -> Attempt:
        prev = self._attempt_row(attempt_id)
        if not prev["done"]:
            raise ConflictError(
                f"attempt {attempt_id} is still running; kill it or wait for it first"
            )
        session = self.store.session(prev["session_id"])
        assert session is not None
        proj = self.store.project(session["project_id"])
        assert proj is not None
        return self.start(
            proj["name"],
            str(session["workflow"]),
            _dt(session["session_time"]),
            json.loads(prev["params"]),
            retry_attempt_name=f"retry-{uuid.uuid4().hex[:12]}",
            resume_from=prev["id"] if resume_failed else None,
        )

    def kill(self, attempt_id: str) -> Attempt:
        self.reap_stale()  # an attempt whose runner died cannot be killed, only ended
        row = self._attempt_row(attempt_id)
        if row["done"]:
            status = self.attempt(attempt_id).status
            raise ConflictError(
                f"attempt {attempt_id} already finished ({status}); nothing to kill"
            )
        self.store.request_cancel(row["id"])
        with _ACTIVE_LOCK:
            run = _ACTIVE.get((str(self.store.path), row["id"]))
        if run is not None:
            run.cancel()
        return self.attempt(attempt_id)

    def wait(self, attempt_id: str, timeout: float) -> Attempt:
        key = (str(self.store.path), int(attempt_id)) if attempt_id.isdigit() else None
        with _FINISHED:
            if key is not None and key in _ACTIVE:
                # Run by this process: wake when it ends instead of polling.
                _FINISHED.wait_for(lambda: key not in _ACTIVE, timeout=max(0.0, timeout))
                return self.attempt(attempt_id)
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 0.02
        while True:
            current = self.attempt(attempt_id)
            if current.done or time.monotonic() >= deadline:
                return current
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 0.5)
            if pause >= 0.5:
                self.reap_stale()

    def _require(
        self,
        workflow: str,
        session_time: datetime,
        params: dict[str, Any],
        rerun_on: str,
        log: TaskLog,
        parent: AttemptRun,
    ) -> tuple[bool, str]:
        info = parent.info
        if workflow == info.workflow and session_time == info.session_time:
            return False, f"{workflow} requires itself for the same session"
        proj = self.store.project(info.project_id)
        assert proj is not None
        session = self.store.find_session(info.project_id, workflow, str(ts(session_time)))
        attempts = self.store.attempts_of_session(session["id"]) if session else []
        running = [a for a in attempts if not a["done"]]
        latest = attempts[-1] if attempts else None
        names = {a["retry_attempt_name"] for a in attempts}
        child: Attempt
        if running:
            child = self.attempt(str(running[-1]["id"]))
            log.info(f"{workflow}: waiting for its running attempt {child.id}")
        elif latest is not None and latest["success"] and rerun_on != "all":
            return (
                True,
                f"{workflow} already succeeded for session {ts(session_time)} (attempt {latest['id']}); not run again",
            )
        else:
            retried = info.retry_attempt_name is not None and info.retry_attempt_name not in names
            if latest is not None and not latest["success"] and rerun_on == "none" and not retried:
                return False, (
                    f"required workflow {workflow} failed for session {ts(session_time)} "
                    f"(attempt {latest['id']}); retry it or use rerun_on: failed"
                )
            if latest is None or retried:
                name = info.retry_attempt_name
            else:
                name = f"require-{uuid.uuid4().hex[:12]}"
            child = self.start(
                proj["name"], workflow, session_time, params, retry_attempt_name=name
            )
            log.info(f"{workflow}: started session {child.session_id}, attempt {child.id}")
        while not child.done:
            if parent.wait_cancel(0.1):
                return False, f"canceled while waiting for {workflow} (attempt {child.id})"
            child = self.attempt(child.id)
        if child.success:
            return True, f"{workflow} succeeded (attempt {child.id})"
        # Name the child's own failure, so the parent's error says what to fix.
        causes = [
            f"{t.full_name}: {t.error}"
            for t in self.tasks(child.id)
            if t.state == TaskState.ERROR and t.error and not t.is_group
        ]
        cause = f": {causes[0]}" if causes else ""
        return False, (
            f"required workflow {workflow} ended in {child.status} (attempt {child.id}){cause}"
        )

    def reap_stale(self) -> None:
        """Attempts whose runner process is gone end as error, with the reason on a task."""
        with _ACTIVE_LOCK:
            for row in self.store.unfinished_attempts():
                if self._runner_alive(row):
                    continue
                self.store.fail_unfinished_tasks(row["id"], _STALE_MESSAGE)
                self._mark_root_error(row["id"], _STALE_MESSAGE)
                self.store.mark_interrupted(row["id"])
                self.store.finish_attempt(row["id"], False)

    def _runner_alive(self, row: Row) -> bool:
        if row["runner_token"] == _RUNNER_TOKEN:
            return (str(self.store.path), row["id"]) in _ACTIVE
        if row["runner_pid"] == os.getpid():
            return False  # an earlier process that had our pid
        return _pid_alive(row["runner_pid"])

    # reading state

    def _attempt_row(self, attempt_id: str) -> Row:
        row = self.store.attempt(_int_id(attempt_id, "attempt"))
        if row is None:
            raise NotFoundError(f"attempt {attempt_id} not found in this workspace")
        return row

    def attempt(self, attempt_id: str) -> Attempt:
        row = self._attempt_row(attempt_id)
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
            session_time=_dt(session["session_time"]),
            retry_attempt_name=row["retry_attempt_name"],
            done=bool(row["done"]),
            success=bool(row["success"]),
            cancel_requested=bool(row["cancel_requested"]),
            created_at=_dt(row["created_at"]),
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
            session_time=_dt(row["session_time"]),
            session_uuid=row["uuid"],
            last_attempt=self.attempt(str(attempts[-1]["id"])) if attempts else None,
        )

    def tasks(self, attempt_id: str) -> list[Task]:
        row = self._attempt_row(attempt_id)
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
        row = self._attempt_row(attempt_id)
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
                    file_time=_dt(log["file_time"]),
                )
            )
        return out

    def read_log(self, attempt_id: str, file_name: str) -> str:
        row = self._attempt_row(attempt_id)
        for log in self.store.logs(row["id"]):
            if log["file_name"] == file_name:
                try:
                    return self.logs.read(log["path"])
                except OSError as e:
                    raise NotFoundError(f"log file {file_name} is missing on disk: {e}") from None
        raise NotFoundError(f"attempt {attempt_id} has no log file {file_name!r}")

    # warehouse

    def databases(self) -> list[str]:
        return self.warehouse.databases()

    def tables(self, database: str) -> list[TableInfo]:
        return [
            TableInfo(name=n, count=c, columns=cols)
            for n, c, cols in self.warehouse.tables(database)
        ]

    def read_query(
        self,
        sql: str,
        database: str,
        engine: str = "presto",
        limit: int | None = None,
        timeout: float = QUERY_TIMEOUT_SEC,
    ) -> QueryResult:
        """One read statement, for a person or an agent (`query`, `cdp-mcp query`).

        Checked twice (on the TD-dialect text, then on the DuckDB text by DuckDB's own
        splitter, parse tree and plan) and run on a connection that cannot write or reach
        the host (`Warehouse.reader`), interrupted after `timeout` seconds.
        """
        statement = read_statement(sql, engine)
        with self.warehouse.reader(database) as cur:
            tables = pipeline_tables(cur, list_databases(cur))
            if isinstance(statement, Show):
                columns = None
                if statement.what == "columns":
                    columns = table_columns(cur, *show_table(statement, database, tables))
                duck = show_sql(statement, database, tables, columns)
            else:
                tree = scope_information_schema(statement.tree, list(tables))
                duck = translate_tree(tree, engine).sql
            td_udfs.prepare(cur, duck)  # TD's functions, TD_SCHEDULED_TIME() = now
            check_duckdb(cur, duck, database, tables)
            timer = threading.Timer(timeout, cur.interrupt)
            timer.start()
            try:
                cur.execute(duck)
                return _result(cur, limit)
            except duckdb.InterruptException:
                raise QueryError(
                    f"the query ran longer than {timeout:g} s and was stopped; narrow it (a "
                    "WHERE on time, fewer joins, an aggregate) and run it again"
                ) from None
            except (duckdb.Error, ValueError) as e:
                raise QueryError(clean_error(str(e), tables)) from None
            finally:
                timer.cancel()

    def query(
        self, sql: str, database: str, engine: str = "presto", limit: int | None = None
    ) -> QueryResult:
        """Any SQL, read-write, for this package's own callers (validation, the emulator's
        job API): never for text from a person or an agent (use `read_query`)."""
        engine = engine.lower()
        if engine not in ENGINES:
            raise QueryError(f"unknown engine {engine!r}; use presto or hive")
        statements = split_statements(sql)
        if not statements:
            raise QueryError("no SQL statement to run")
        with self.warehouse.cursor(database) as cur:
            td_udfs.prepare(cur, sql)
            for i, statement in enumerate(statements):
                try:
                    translated = translate(statement.text, engine)
                    if translated.target:
                        written = tables.write_rows(cur, database, translated)
                        cur.execute("SELECT ? AS rows", [written])
                    else:
                        cur.execute(translated.sql)
                except (duckdb.Error, ValueError) as e:
                    where = f"line {statement.line}: " if len(statements) > 1 else ""
                    raise QueryError(f"{where}{str(e).strip()}") from None
                if i < len(statements) - 1:
                    continue
                return _result(cur, limit)
        raise QueryError("no SQL statement to run")


def _result(cur: duckdb.DuckDBPyConnection, limit: int | None) -> QueryResult:
    if cur.description is None:
        return QueryResult(columns=[], rows=[], truncated=False)
    columns = [d[0] for d in cur.description]
    fetched = cur.fetchmany(limit + 1) if limit is not None else cur.fetchall()
    truncated = limit is not None and len(fetched) > limit
    rows = [[json_value(v) for v in r] for r in fetched[:limit]]
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


def default_unification_handler(call: UnificationCall) -> dict[str, Any] | None:
    """TD's unification API served by cdp_mcp.backends.local.unification (imported on first use)."""
    from cdp_mcp.backends.local.unification.handler import handle_unification_call

    return handle_unification_call(call)


def _int_id(value: str, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise NotFoundError(f"{what} id must be a number, got {value!r}") from None


def _dt(value: str) -> datetime:
    parsed = parse_ts(value)
    assert parsed is not None
    return parsed
