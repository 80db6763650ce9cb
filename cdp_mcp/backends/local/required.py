"""`require>`'s service: run (or adopt) another workflow's session and wait for it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cdp_mcp.backends.base import Attempt, TaskState
from cdp_mcp.backends.local.engine import AttemptRun
from cdp_mcp.backends.local.logs import TaskLog
from cdp_mcp.backends.local.reads import Reads
from cdp_mcp.backends.local.store import StateRow, StateStore, ts

# (project, workflow, session_time, params, retry_attempt_name=...) -> the attempt started
StartFn = Callable[..., Attempt]


class Required:
    """Digdag's require>: the required session's attempt succeeds, or the task fails."""

    def __init__(self, store: StateStore, reads: Reads, start: StartFn) -> None:
        self.store, self.reads, self.start = store, reads, start

    def run(
        self,
        workflow: str,
        session_time: datetime,
        params: dict[str, Any],
        rerun_on: str,
        log: TaskLog,
        parent: AttemptRun,
    ) -> tuple[bool, str]:
        """(succeeded, what happened) for the parent's log and error."""
        info = parent.info
        if workflow == info.workflow and session_time == info.session_time:
            return False, f"{workflow} requires itself for the same session"
        session = self.store.find_session(info.project_id, workflow, str(ts(session_time)))
        attempts = self.store.attempts_of_session(session["id"]) if session else []
        running = [a for a in attempts if not a["done"]]
        if running:
            child = self.reads.attempt(str(running[-1]["id"]))
            log.info(f"{workflow}: waiting for its running attempt {child.id}")
        else:
            decided = self._decide(workflow, session_time, rerun_on, parent, attempts)
            if isinstance(decided, tuple):
                return decided
            child = self._start_child(workflow, session_time, params, parent, decided)
            log.info(f"{workflow}: started session {child.session_id}, attempt {child.id}")
        return self._await(workflow, child, parent)

    def _decide(
        self,
        workflow: str,
        session_time: datetime,
        rerun_on: str,
        parent: AttemptRun,
        attempts: list[StateRow],
    ) -> tuple[bool, str] | str | None:
        """The session's outcome when it is not run again, else the new attempt's name."""
        info = parent.info
        latest = attempts[-1] if attempts else None
        if latest is not None and latest["success"] and rerun_on != "all":
            return (
                True,
                f"{workflow} already succeeded for session {ts(session_time)} (attempt {latest['id']}); not run again",
            )
        names = {a["retry_attempt_name"] for a in attempts}
        retried = info.retry_attempt_name is not None and info.retry_attempt_name not in names
        if latest is not None and not latest["success"] and rerun_on == "none" and not retried:
            return False, (
                f"required workflow {workflow} failed for session {ts(session_time)} "
                f"(attempt {latest['id']}); retry it or use rerun_on: failed"
            )
        if latest is None or retried:
            return info.retry_attempt_name
        return f"require-{uuid.uuid4().hex[:12]}"

    def _start_child(
        self,
        workflow: str,
        session_time: datetime,
        params: dict[str, Any],
        parent: AttemptRun,
        name: str | None,
    ) -> Attempt:
        proj = self.store.project(parent.info.project_id)
        assert proj is not None
        return self.start(proj["name"], workflow, session_time, params, retry_attempt_name=name)

    def _await(self, workflow: str, child: Attempt, parent: AttemptRun) -> tuple[bool, str]:
        while not child.done:
            if parent.wait_cancel(0.1):
                return False, f"canceled while waiting for {workflow} (attempt {child.id})"
            child = self.reads.attempt(child.id)
        if child.success:
            return True, f"{workflow} succeeded (attempt {child.id})"
        # Name the child's own failure, so the parent's error says what to fix.
        causes = [
            f"{t.full_name}: {t.error}"
            for t in self.reads.tasks(child.id)
            if t.state == TaskState.ERROR and t.error and not t.is_group
        ]
        cause = f": {causes[0]}" if causes else ""
        return False, (
            f"required workflow {workflow} ended in {child.status} (attempt {child.id}){cause}"
        )
