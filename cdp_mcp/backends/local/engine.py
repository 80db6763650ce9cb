"""The task engine: runs one attempt's task tree with Digdag's semantics.

Children of a group run when their upstreams (previous sibling, or `_parallel` chunk, or
`_after`) succeeded; independent siblings run on their own threads. A failed task runs its
`_error` tasks and fails its ancestors (each of which runs its own `_error`); `_retry` runs
a task or a whole group again. Store params of finished tasks flow to the tasks after
them; `_export` flows to a task's children. Every state change is written to the state
store as it happens, so another process can watch the attempt.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from cdp_mcp.backends.base import BackendError, TaskState
from cdp_mcp.backends.local.hooks import UnificationHandler
from cdp_mcp.backends.local.logs import LogStore, TaskLog
from cdp_mcp.backends.local.operators import OPERATORS, OperatorContext, OperatorResult, TaskFailure
from cdp_mcp.backends.local.params import StoreUpdate, apply_all, deep_merge
from cdp_mcp.backends.local.store import StateStore, now
from cdp_mcp.backends.local.warehouse import Warehouse
from cdp_mcp.digdag import expr
from cdp_mcp.digdag.loader import DigError
from cdp_mcp.digdag.tasks import TaskNode, command_key, compile_subtasks

_CANCEL_POLL_SEC = 0.2
_MAX_PARALLEL_TASKS = 16  # per group: each holds a thread and a DuckDB connection
_LOCAL_ONLY_KEYS = ("_export", "_error", "_check")

# (workflow, session_time, params, rerun_on, log, run) -> (success, summary)
RequireFn = Callable[[str, datetime, dict[str, Any], str, TaskLog, "AttemptRun"], tuple[bool, str]]


@dataclass
class Outcome:
    """How a task (with its subtasks) ended, and what it stores for the tasks after it."""

    state: TaskState  # success | error | group_error | canceled
    updates: list[StoreUpdate] = field(default_factory=list)
    error: str | None = None
    failed_task: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == TaskState.SUCCESS


@dataclass
class _Retry:
    limit: int = 0
    interval: float = 0.0
    exponential: bool = False

    def delay(self, n: int) -> float:
        return self.interval * (2 ** (n - 1)) if self.exponential else self.interval


@dataclass
class AttemptInfo:
    attempt_id: int
    session_id: int
    project_id: int
    project_name: str
    workflow: str
    session_time: datetime
    retry_attempt_name: str | None
    project_dir: Path
    params: dict[str, Any]  # built-ins plus the attempt's params


class AttemptRun:
    """Executes one attempt. Also the `Services` its operators use."""

    def __init__(
        self,
        info: AttemptInfo,
        store: StateStore,
        logs: LogStore,
        warehouse: Warehouse,
        *,
        resume: dict[str, dict[str, Any]] | None = None,
        require: RequireFn | None = None,
        unification_handler: UnificationHandler | None = None,
        extracts_dir: Path | None = None,
    ) -> None:
        self.info = info
        self.store, self.logs, self.warehouse = store, logs, warehouse
        self.resume = resume or {}
        self._require = require
        self.unification_handler = unification_handler
        self.extracts_dir = extracts_dir
        self._cancel = threading.Event()
        self._ids: dict[str, int] = {}
        self._cursors: set[duckdb.DuckDBPyConnection] = set()
        self._lock = threading.Lock()

    # services for operators

    @contextmanager
    def cursor(self, database: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._cancel.is_set():
            raise TaskFailure("the attempt is being killed")
        try:
            with self.warehouse.cursor(database) as cur:
                with self._lock:
                    self._cursors.add(cur)
                try:
                    # A kill between the first check and the registration above found no
                    # cursor to interrupt; the flag it set first is seen here.
                    if self._cancel.is_set():
                        raise TaskFailure("the attempt is being killed")
                    yield cur
                finally:
                    with self._lock:
                        self._cursors.discard(cur)
        except BackendError as e:
            raise TaskFailure(str(e)) from None

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def current_project(self) -> tuple[int, str]:
        return self.info.project_id, self.info.project_name

    def require(
        self,
        workflow: str,
        session_time: datetime,
        params: dict[str, Any],
        rerun_on: str,
        log: TaskLog,
    ) -> tuple[bool, str]:
        if self._require is None:
            raise TaskFailure("require> is not available here")
        return self._require(workflow, session_time, params, rerun_on, log, self)

    def cancel(self) -> None:
        """Stop starting tasks and interrupt running queries."""
        self._cancel.set()
        self._interrupt_cursors()

    def _interrupt_cursors(self) -> None:
        with self._lock:
            cursors = list(self._cursors)
        for cur in cursors:
            with suppress(duckdb.Error):
                cur.interrupt()

    def wait_cancel(self, seconds: float) -> bool:
        return self._cancel.wait(seconds)

    # running

    def prepare(self, root: TaskNode) -> None:
        """Record the workflow's tasks (blocked), so they show before the first one runs."""
        self._register(root, None, [])

    def run(self, root: TaskNode) -> Outcome:
        if root.full_name not in self._ids:
            self.prepare(root)
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch_cancel, args=(stop,), daemon=True)
        watcher.start()
        try:
            outcome = self._run_node(root, self.info.params)
        finally:
            stop.set()
            watcher.join()
        if self._cancel.is_set():
            self.store.cancel_blocked_tasks(self.info.attempt_id)
        return outcome

    def _watch_cancel(self, stop: threading.Event) -> None:
        # A kill may come from another process through the state store.
        while not stop.wait(_CANCEL_POLL_SEC):
            if self._cancel.is_set():
                # An interrupt only stops a query already running; one that a task started
                # just after it (between its cursor check and its execute) is stopped here.
                self._interrupt_cursors()
            elif self.store.cancel_requested(self.info.attempt_id):
                self.cancel()

    def _register(self, node: TaskNode, parent_id: int | None, siblings: list[int]) -> int:
        upstreams = [siblings[i] for i in node.upstreams if i < len(siblings)]
        config = {k: v for k, v in node.config.items() if k != "_export"}
        task_id = self.store.add_task(
            self.info.attempt_id,
            node.full_name,
            parent_id,
            upstreams,
            node.is_group,
            config,
            node.export,
        )
        self._ids[node.full_name] = task_id
        child_ids: list[int] = []
        for child in node.children:
            child_ids.append(self._register(child, task_id, child_ids))
        return task_id

    def _run_node(self, node: TaskNode, params_in: dict[str, Any]) -> Outcome:
        try:
            return self._run_node_unsafe(node, params_in)
        except Exception as e:  # a bug must fail the task, not kill the runner thread
            message = f"internal error of the local runner: {type(e).__name__}: {e}"
            task_id = self._ids.get(node.full_name)
            if task_id is not None:
                self.store.update_task(task_id, TaskState.ERROR, error=message)
            log = TaskLog(node.full_name)
            log.error(message + "\n" + traceback.format_exc())
            if task_id is not None:
                self.logs.save(self.info.attempt_id, task_id, log)
            return Outcome(TaskState.ERROR, error=message, failed_task=node.full_name)

    def _run_node_unsafe(self, node: TaskNode, params_in: dict[str, Any]) -> Outcome:
        task_id = self._ids[node.full_name]
        if self._cancel.is_set():
            self.store.update_task(task_id, TaskState.CANCELED)
            return Outcome(TaskState.CANCELED)
        if not node.is_group and node.full_name in self.resume:
            stored = self.resume[node.full_name]
            self.store.update_task(task_id, TaskState.SUCCESS, store_params=stored)
            return Outcome(TaskState.SUCCESS, [StoreUpdate(stored)] if stored else [])
        params = deep_merge(params_in, node.export)
        try:
            retry = self._retry_spec(node, params)
        except TaskFailure as e:
            self.store.update_task(task_id, TaskState.ERROR, started=True, error=str(e))
            return Outcome(TaskState.ERROR, error=str(e), failed_task=node.full_name)
        runs = 0
        while True:
            if node.is_group:
                outcome = self._run_group(node, params, task_id)
            else:
                outcome = self._run_operator(node, params, task_id, runs)
            if outcome.state in (TaskState.SUCCESS, TaskState.CANCELED) or runs >= retry.limit:
                break
            runs += 1
            delay = retry.delay(runs)
            waiting = TaskState.GROUP_RETRY_WAITING if node.is_group else TaskState.RETRY_WAITING
            self.store.update_task(
                task_id, waiting, error=outcome.error, retry_at=now() + timedelta(seconds=delay)
            )
            if self._cancel.wait(delay):
                outcome = Outcome(TaskState.CANCELED)
                break
            if node.is_group:
                # A group retry runs the whole group again from fresh tasks.
                siblings: list[int] = []
                for child in node.children:
                    siblings.append(self._register(child, task_id, siblings))
        if (
            outcome.state in (TaskState.ERROR, TaskState.GROUP_ERROR)
            and node.error_config
            and not self._cancel.is_set()
        ):
            self._run_error_tasks(node, params, task_id, outcome)
        # Only an operator's own failure is its error; a group shows its children's.
        own_error = outcome.error if outcome.state == TaskState.ERROR else None
        self.store.update_task(task_id, outcome.state, error=own_error)
        return outcome

    def _retry_spec(self, node: TaskNode, params: dict[str, Any]) -> _Retry:
        raw = node.config.get("_retry")
        if raw is None:
            return _Retry()
        if isinstance(raw, str) and "${" in raw:
            try:
                raw = expr.render(raw, params)
            except expr.ExprError as e:
                raise TaskFailure(f"_retry: {e}") from None
        try:
            if isinstance(raw, dict):
                kind = str(raw.get("interval_type", "constant"))
                if kind not in ("constant", "exponential"):
                    raise ValueError
                return _Retry(
                    int(raw["limit"]), float(raw.get("interval", 0)), kind == "exponential"
                )
            if isinstance(raw, bool):
                raise ValueError
            return _Retry(int(str(raw)))
        except (KeyError, ValueError, TypeError):
            raise TaskFailure(
                f"_retry of {node.full_name} must be a number or {{limit: N, interval: S, "
                "interval_type: constant|exponential}"
            ) from None

    def _run_group(self, node: TaskNode, params: dict[str, Any], task_id: int) -> Outcome:
        self.store.update_task(task_id, TaskState.PLANNED, started=True)
        return self._run_children(node, params)

    def _run_children(self, node: TaskNode, params: dict[str, Any]) -> Outcome:
        children = node.children
        closure = _upstream_closure(children)
        outcomes: list[Outcome | None] = [None] * len(children)
        started: set[int] = set()
        futures: dict[Future[Outcome], int] = {}
        pool: ThreadPoolExecutor | None = None

        def params_for(i: int) -> dict[str, Any]:
            # Store params of every sibling before it (all succeeded, or it would not run).
            updates = [u for j in closure[i] if (o := outcomes[j]) is not None for u in o.updates]
            return apply_all(params, updates)

        def runnable(i: int) -> bool:
            return i not in started and all(
                (o := outcomes[j]) is not None and o.ok for j in children[i].upstreams
            )

        try:
            while True:
                ready = (
                    []
                    if self._cancel.is_set()
                    else [i for i in range(len(children)) if runnable(i)]
                )
                if not ready and not futures:
                    break
                if len(ready) == 1 and not futures:
                    i = ready[0]
                    started.add(i)
                    outcomes[i] = self._run_node(children[i], params_for(i))
                    continue
                if pool is None:
                    pool = ThreadPoolExecutor(
                        max_workers=max(1, min(len(children), _MAX_PARALLEL_TASKS)),
                        thread_name_prefix=f"cdp-{self.info.attempt_id}",
                    )
                for i in ready:
                    started.add(i)
                    futures[pool.submit(self._run_node, children[i], params_for(i))] = i
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    outcomes[futures.pop(fut)] = fut.result()
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        finished = [o for o in outcomes if o is not None]
        failed = [o for o in finished if o.state in (TaskState.ERROR, TaskState.GROUP_ERROR)]
        if failed:
            return Outcome(
                TaskState.GROUP_ERROR, error=failed[0].error, failed_task=failed[0].failed_task
            )
        if self._cancel.is_set() or any(o.state == TaskState.CANCELED for o in finished):
            return Outcome(TaskState.CANCELED)
        return Outcome(TaskState.SUCCESS, [u for o in finished for u in o.updates])

    def _run_operator(
        self, node: TaskNode, params: dict[str, Any], task_id: int, runs: int
    ) -> Outcome:
        self.store.update_task(task_id, TaskState.RUNNING, started=True)
        log = TaskLog(node.full_name)
        started = time.monotonic()
        op_name = node.operator or "?"
        if runs:
            log.info(f"retry {runs} of this task")
        result: OperatorResult | None = None
        error: str | None = None
        try:
            result = self._invoke(node, params, task_id, log)
        except TaskFailure as e:
            error = str(e)
        except expr.ExprError as e:
            error = f"{op_name}>: {e}"
        except Exception as e:
            error = f"{op_name}>: unexpected error: {type(e).__name__}: {e}"
            log.error(traceback.format_exc())
        elapsed = time.monotonic() - started
        if error is not None:
            if self._cancel.is_set():
                log.warn(f"canceled after {elapsed:.2f}s: {error}")
                self.logs.save(self.info.attempt_id, task_id, log)
                return Outcome(TaskState.CANCELED)
            log.error(f"task failed after {elapsed:.2f}s: {error}")
            self.logs.save(self.info.attempt_id, task_id, log)
            self.store.update_task(task_id, TaskState.ERROR, error=error)
            return Outcome(TaskState.ERROR, error=error, failed_task=node.full_name)
        assert result is not None
        log.info(f"{op_name}> finished in {elapsed:.2f}s")
        self.logs.save(self.info.attempt_id, task_id, log)
        updates = [result.store] if result.store else []
        stored = result.store.apply({}) if result.store else {}
        if not result.subtasks:
            self.store.update_task(task_id, TaskState.RUNNING, store_params=stored)
            return Outcome(TaskState.SUCCESS, updates)
        self.store.update_task(task_id, TaskState.PLANNED, store_params=stored)
        try:
            sub = compile_subtasks(
                node.full_name,
                "^sub",
                result.subtasks,
                result.subtask_source or node.source,
                node.workdir if result.subtask_workdir is None else result.subtask_workdir,
            )
        except DigError as e:
            message = f"{op_name}>: invalid subtasks: {e}"
            self.store.update_task(task_id, TaskState.ERROR, error=message)
            return Outcome(TaskState.ERROR, error=message, failed_task=node.full_name)
        self._register(sub, task_id, [])
        # Children see the operator's exports and store params, not its other keys.
        sub_outcome = self._run_node(sub, apply_all(params, updates))
        if sub_outcome.ok:
            return Outcome(TaskState.SUCCESS, updates + sub_outcome.updates)
        if sub_outcome.state == TaskState.CANCELED:
            return Outcome(TaskState.CANCELED)
        return Outcome(
            TaskState.GROUP_ERROR, error=sub_outcome.error, failed_task=sub_outcome.failed_task
        )

    def _invoke(
        self, node: TaskNode, params: dict[str, Any], task_id: int, log: TaskLog
    ) -> OperatorResult:
        op_name = node.operator
        operator = OPERATORS.get(op_name or "")
        if operator is None:
            supported = ", ".join(f"{n}>" for n in sorted(OPERATORS))
            raise TaskFailure(
                f"operator {op_name}> is not supported by the local backend (it runs on Treasure "
                f"Data only); supported here: {supported}"
            )
        local = {k: v for k, v in node.config.items() if k not in _LOCAL_ONLY_KEYS}
        merged = deep_merge(params, local)
        merged["task_name"] = node.full_name
        config = expr.evaluate_config(merged, merged)
        key = command_key(node.config)
        command = config.get(key) if key else config.get("_command")
        log.info(f"{op_name}>: {_preview(command)}")
        ctx = OperatorContext(
            task_name=node.full_name,
            task_id=task_id,
            command=command,
            config=config,
            project_dir=self.info.project_dir,
            workdir=node.workdir,
            source=node.source,
            session_time=self.info.session_time,
            log=log,
            services=self,
            extra={"project_name": self.info.project_name, "workflow_name": self.info.workflow},
        )
        return operator.run(ctx)

    def _run_error_tasks(
        self, node: TaskNode, params: dict[str, Any], task_id: int, failure: Outcome
    ) -> None:
        config = dict(node.error_config or {})
        export = dict(config.get("_export") or {})
        export["error"] = {"message": failure.error, "task_name": failure.failed_task}
        config["_export"] = export
        try:
            sub = compile_subtasks(node.full_name, "^error", config, node.source, node.workdir)
        except DigError:
            return  # checked at push; nothing more to do for a task already failing
        self.store.update_task(task_id, TaskState.PLANNED)
        self._register(sub, task_id, [])
        self._run_node(sub, params)


def _upstream_closure(children: list[TaskNode]) -> list[list[int]]:
    """For each child, every sibling that runs before it (transitively), in order."""
    out: list[list[int]] = []
    for child in children:
        seen: set[int] = set()
        stack = list(child.upstreams)
        while stack:
            j = stack.pop()
            if j not in seen:
                seen.add(j)
                stack.extend(children[j].upstreams)
        out.append(sorted(seen))
    return out


def _preview(command: Any) -> str:
    text = "" if command is None else str(command)
    return text if len(text) <= 200 else text[:200] + "..."
