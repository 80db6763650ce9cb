"""The attempt lifecycle of the local backend: start, run on a thread, retry, kill, wait,
and end the attempts whose runner process died.

An attempt runs on a background thread of this process; its state lives in the state store,
so another process (or a new LocalRuntime after a restart) sees every session, attempt, task
and log. The runs of this process are in `registry.RUNS`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdp_mcp.backends.base import Attempt, BackendError, ConflictError, TaskState
from cdp_mcp.backends.local.engine import AttemptInfo, AttemptRun
from cdp_mcp.backends.local.hooks import UnificationHandler
from cdp_mcp.backends.local.logs import LogStore
from cdp_mcp.backends.local.params import StoreUpdate, merged_store, session_builtins
from cdp_mcp.backends.local.projects import Projects
from cdp_mcp.backends.local.reads import Reads
from cdp_mcp.backends.local.registry import RUNNER_TOKEN, RUNS, RunKey
from cdp_mcp.backends.local.required import Required
from cdp_mcp.backends.local.store import StateRow, StateStore, stamp, ts
from cdp_mcp.backends.local.warehouse import Warehouse
from cdp_mcp.digdag.tasks import TaskNode

_STALE_MESSAGE = "the local runner stopped while this attempt was running (its process exited); retry the attempt"


@dataclass
class RunSettings:
    """What attempts started from now on run with (a LocalRuntime's settable attributes)."""

    unification_handler: UnificationHandler | None
    # A TD connector's td_load> dry-runs on the extracts here (ingestion.source_path)
    extracts_dir: Path | None = None


@dataclass
class _Started:
    run: AttemptRun
    tree: TaskNode


class Attempts:
    """Sessions' attempts of one workspace, run by this process."""

    def __init__(
        self,
        store: StateStore,
        logs: LogStore,
        warehouse: Warehouse,
        projects: Projects,
        reads: Reads,
        settings: RunSettings,
    ) -> None:
        self.store, self.logs, self.warehouse = store, logs, warehouse
        self.projects, self.reads, self.settings = projects, reads, settings
        self.required = Required(store, reads, self.start)

    def _key(self, attempt_id: int) -> RunKey:
        return (str(self.store.path), attempt_id)

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
        proj, rev = self.projects.current(project)
        workflow = workflow.removesuffix(".dig")
        root, tree = self.projects.workflow_tree(proj, rev, workflow)
        timezone = str(tree.config.get("timezone") or "UTC")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BackendError(f"workflow {workflow}: unknown timezone {timezone!r}") from None
        when = (session_time or datetime.now(UTC).replace(microsecond=0)).astimezone(UTC)
        with RUNS.lock:
            row, created = self.store.create_attempt(
                proj["id"],
                workflow,
                str(ts(when)),
                str(uuid.uuid4()),
                retry_attempt_name,
                rev["id"],
                params or {},
                (os.getpid(), RUNNER_TOKEN),
                resume_from,
            )
            if not created:
                return self.reads.attempt(str(row["id"])), False
            info = self._info(proj, row, workflow, when, timezone, root, params or {})
            started = _Started(self._prepared(info, tree, resume_from), tree)
            RUNS.add(self._key(row["id"]), started.run)
        thread = threading.Thread(
            target=self._execute,
            args=(started.run, started.tree),
            name=f"cdp-attempt-{row['id']}",
            daemon=True,
        )
        thread.start()
        return self.reads.attempt(str(row["id"])), True

    def _info(
        self,
        proj: StateRow,
        row: StateRow,
        workflow: str,
        when: datetime,
        timezone: str,
        root: Path,
        params: dict[str, Any],
    ) -> AttemptInfo:
        session = self.store.session(row["session_id"])
        assert session is not None
        builtins = session_builtins(
            when,
            timezone,
            session_id=row["session_id"],
            attempt_id=row["id"],
            session_uuid=session["uuid"],
            project_id=proj["id"],
            retry_attempt_name=row["retry_attempt_name"],
        )
        return AttemptInfo(
            attempt_id=row["id"],
            session_id=row["session_id"],
            project_id=proj["id"],
            project_name=proj["name"],
            workflow=workflow,
            session_time=when,
            retry_attempt_name=row["retry_attempt_name"],
            project_dir=root,
            params={**builtins, **params},
        )

    def _prepared(self, info: AttemptInfo, tree: TaskNode, resume_from: int | None) -> AttemptRun:
        run = AttemptRun(
            info,
            self.store,
            self.logs,
            self.warehouse,
            resume=self._resume_map(resume_from) if resume_from else None,
            require=self.required.run,
            unification_handler=self.settings.unification_handler,
            extracts_dir=self.settings.extracts_dir,
        )
        try:
            run.prepare(tree)
        except Exception as e:
            self._mark_root_error(info.attempt_id, f"the attempt could not start: {e}")
            self.store.finish_attempt(info.attempt_id, False)
            raise BackendError(f"attempt {info.attempt_id} could not start: {e}") from None
        return run

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
            RUNS.finish(self._key(attempt_id))

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
        children: dict[int, list[StateRow]] = {}
        for row in rows:
            children.setdefault(row["parent_id"], []).append(row)

        def subtree_store(row: StateRow) -> dict[str, Any]:
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
        prev = self.reads.attempt_row(attempt_id)
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
            stamp(session["session_time"]),
            json.loads(prev["params"]),
            retry_attempt_name=f"retry-{uuid.uuid4().hex[:12]}",
            resume_from=prev["id"] if resume_failed else None,
        )

    def kill(self, attempt_id: str) -> Attempt:
        self.reap_stale()  # an attempt whose runner died cannot be killed, only ended
        row = self.reads.attempt_row(attempt_id)
        if row["done"]:
            status = self.reads.attempt(attempt_id).status
            raise ConflictError(
                f"attempt {attempt_id} already finished ({status}); nothing to kill"
            )
        self.store.request_cancel(row["id"])
        run = RUNS.get(self._key(row["id"]))
        if run is not None:
            run.cancel()
        return self.reads.attempt(attempt_id)

    def wait(self, attempt_id: str, timeout: float) -> Attempt:
        # Run by this process: wake when it ends instead of polling.
        if attempt_id.isdigit() and RUNS.wait(self._key(int(attempt_id)), timeout):
            return self.reads.attempt(attempt_id)
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 0.02
        while True:
            current = self.reads.attempt(attempt_id)
            if current.done or time.monotonic() >= deadline:
                return current
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 0.5)
            if pause >= 0.5:
                self.reap_stale()

    def reap_stale(self) -> None:
        """Attempts whose runner process is gone end as error, with the reason on a task."""
        with RUNS.lock:
            for row in self.store.unfinished_attempts():
                if self._runner_alive(row):
                    continue
                self.store.fail_unfinished_tasks(row["id"], _STALE_MESSAGE)
                self._mark_root_error(row["id"], _STALE_MESSAGE)
                self.store.mark_interrupted(row["id"])
                self.store.finish_attempt(row["id"], False)

    def _runner_alive(self, row: StateRow) -> bool:
        if row["runner_token"] == RUNNER_TOKEN:
            return RUNS.running(self._key(row["id"]))
        if row["runner_pid"] == os.getpid():
            return False  # an earlier process that had our pid
        return _pid_alive(row["runner_pid"])


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
