"""The task engine: failures, _error, _retry, _parallel, kill, retry with resume, params."""

from __future__ import annotations

import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.backends.base import Attempt
from cdp_mcp.backends.local.runtime import LocalRuntime

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

SESSION = datetime(2026, 1, 1, tzinfo=UTC)
INIT = "+init:\n  td_ddl>:\n  create_databases: [db]\n"
# ~0.2 s of DuckDB work, to make overlapping (or not) measurable
SLOW_SQL = (
    "SELECT count(*) AS n FROM range(300000) t(i) "
    "WHERE to_hex(md5(to_utf8(CAST(i AS VARCHAR)))) LIKE '%ABC%'"
)
ENDLESS_SQL = SLOW_SQL.replace("300000", "10000000000")


@pytest.fixture
def rt(tmp_path: Path) -> LocalRuntime:
    return LocalRuntime(tmp_path / "ws")


def push(rt: LocalRuntime, files: dict[str, str]) -> None:
    root = rt.workspace.parent / "proj"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    rt.push("proj", root)


def run(rt: LocalRuntime, files: dict[str, str], params: dict[str, Any] | None = None) -> Attempt:
    push(rt, files)
    return rt.wait(rt.start("proj", "wf", SESSION, params).id, 30)


def by_name(rt: LocalRuntime, attempt: Attempt) -> dict[str, Any]:
    return {t.full_name: t for t in rt.tasks(attempt.id)}


def log(rt: LocalRuntime, attempt: Attempt, name: str) -> str:
    return "".join(
        rt.read_log(attempt.id, f.file_name)
        for f in rt.log_files(attempt.id, name)
        if f.task_name == name
    )


def dig(text: str) -> str:
    return textwrap.dedent(text)


@pytest.mark.slow
def test_a_failing_task_ends_the_attempt_in_error_with_its_error_and_log(rt: LocalRuntime) -> None:
    a = run(rt, {"wf.dig": "+a:\n  echo>: ok\n+b:\n  fail>: boom\n+c:\n  echo>: never\n"})
    assert a.status == "error" and a.done and not a.success
    tasks = by_name(rt, a)
    assert tasks["+wf+b"].state == "error" and tasks["+wf+b"].error == "boom"
    assert tasks["+wf"].state == "group_error"
    assert tasks["+wf+c"].state == "blocked"  # never started, as in Digdag
    assert "boom" in log(rt, a, "+wf+b")


@pytest.mark.slow
def test_error_tasks_run_with_the_error_and_the_attempt_stays_error(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + dig(
                """
                _error:
                  +record:
                    td>:
                    query: SELECT '${error.task_name}' AS task, '${error.message}' AS message
                    database: db
                    insert_into: failures
                +group:
                  _error:
                    +note:
                      echo>: group failed
                  +bad:
                    fail>: disk full
                """
            )
        },
    )
    assert a.status == "error"
    tasks = by_name(rt, a)
    assert tasks["+wf+group^error+note"].state == "success"
    assert tasks["+wf^error+record"].state == "success"
    rows = rt.query("SELECT task, message FROM failures", "db").rows
    assert rows == [["+wf+group+bad", "disk full"]]


def test_retry_reruns_a_task_up_to_the_limit(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + dig(
                """
                +flaky:
                  _retry: 3
                  td>: flaky.sql
                  database: db
                """
            ),
            # fails until it has run three times
            "flaky.sql": "CREATE TABLE IF NOT EXISTS runs (x INT);\nINSERT INTO runs VALUES (1);\n"
            "SELECT CASE WHEN (SELECT count(*) FROM runs) < 3 THEN error('not yet') ELSE 1 END;\n",
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert rt.query("SELECT count(*) FROM runs", "db").rows == [[3]]
    assert by_name(rt, a)["+wf+flaky"].error is None  # the earlier failures are history
    assert len([f for f in rt.log_files(a.id, "+wf+flaky") if f.task_name == "+wf+flaky"]) == 3


def test_group_retry_reruns_the_whole_group(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + dig(
                """
                +g:
                  _retry: 1
                  +add:
                    td>:
                    query: SELECT 1 AS x
                    database: db
                    insert_into: runs
                  +check:
                    td>:
                    query: SELECT CASE WHEN count(*) < 2 THEN error('first time') ELSE 1 END FROM runs
                    database: db
                """
            )
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert rt.query("SELECT count(*) FROM runs", "db").rows == [[2]]


def _span(task: Any) -> tuple[datetime, datetime]:
    return task.started_at, task.updated_at


@pytest.mark.slow
def test_parallel_siblings_overlap_and_sequential_ones_do_not(rt: LocalRuntime) -> None:
    body = "".join(
        f"  +q{i}:\n    td>:\n    query: {SLOW_SQL}\n    database: db\n" for i in range(3)
    )
    a = run(rt, {"wf.dig": INIT + "+par:\n  _parallel: true\n" + body + "+seq:\n" + body})
    assert a.status == "success", rt.tasks(a.id)
    tasks = by_name(rt, a)
    par = [_span(tasks[f"+wf+par+q{i}"]) for i in range(3)]
    assert max(s for s, _ in par) < min(e for _, e in par), par  # all ran at the same time
    seq = [_span(tasks[f"+wf+seq+q{i}"]) for i in range(3)]
    assert seq[0][1] <= seq[1][0] and seq[1][1] <= seq[2][0], seq


@pytest.mark.slow
def test_parallel_limit_runs_in_chunks(rt: LocalRuntime) -> None:
    body = "".join(
        f"  +q{i}:\n    td>:\n    query: {SLOW_SQL}\n    database: db\n" for i in range(4)
    )
    a = run(rt, {"wf.dig": INIT + "+par:\n  _parallel: {limit: 2}\n" + body})
    assert a.status == "success", rt.tasks(a.id)
    tasks = by_name(rt, a)
    spans = [_span(tasks[f"+wf+par+q{i}"]) for i in range(4)]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # first chunk overlaps
    assert max(spans[0][1], spans[1][1]) <= min(spans[2][0], spans[3][0])  # second waits


def test_kill_interrupts_the_running_query_and_cancels_the_rest(rt: LocalRuntime) -> None:
    push(
        rt,
        {
            "wf.dig": INIT
            + f"+slow:\n  td>:\n  query: {ENDLESS_SQL}\n  database: db\n+after:\n  echo>: never\n"
        },
    )
    attempt = rt.start("proj", "wf", SESSION)
    deadline = time.monotonic() + 10
    while by_name(rt, attempt)["+wf+slow"].state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    rt.kill(attempt.id)
    done = rt.wait(attempt.id, 10)
    assert done.status == "killed" and done.cancel_requested
    tasks = by_name(rt, done)
    assert tasks["+wf+slow"].state == "canceled"
    assert tasks["+wf+after"].state == "canceled"
    assert done.finished_at is not None
    assert (done.finished_at - done.created_at).total_seconds() < 5


@pytest.mark.slow
def test_retry_resumes_only_the_failed_tasks(rt: LocalRuntime) -> None:
    files = {
        "wf.dig": INIT
        + dig(
            """
            +a:
              td>:
              query: SELECT 'a' AS step
              database: db
              insert_into: steps
            +stats:
              td>:
              query: SELECT 7 AS seven
              database: db
              store_last_results: true
            +b:
              td>:
              query: SELECT 'b' AS step, ${td.last_results.seven} AS seven FROM gate
              database: db
              insert_into: steps
            """
        )
    }
    first = run(rt, files)
    assert first.status == "error"
    assert "gate" in by_name(rt, first)["+wf+b"].error
    rt.query("CREATE TABLE gate AS SELECT 1 AS open", "db")

    second = rt.wait(rt.retry(first.id).id, 30)
    assert second.status == "success", rt.tasks(second.id)
    assert second.session_id == first.session_id and second.index == 2
    # +a ran once in all; +b saw td.last_results stored by the resumed +stats
    assert rt.query("SELECT step, seven FROM steps ORDER BY step", "db").rows == [
        ["a", None],
        ["b", 7],
    ]
    assert log(rt, second, "+wf+a") == ""  # skipped, not run again

    third = rt.wait(rt.retry(second.id, resume_failed=False).id, 30)
    assert third.status == "success"
    assert rt.query("SELECT count(*) FROM steps WHERE step = 'a'", "db").rows == [[2]]


def test_params_exports_store_params_and_builtins(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": dig(
                """
                _export:
                  level: root
                  table: t_${session_date_compact}
                +show:
                  echo>: ${session_time} ${session_date} ${session_local_time} ${session_tz_offset} ${session_unixtime} ${timezone} ${task_name} ${table} ${who}
                +g:
                  _export:
                    level: group
                  +inner:
                    echo>: level=${level}
                  +local:
                    level: task
                    echo>: level=${level}
                """
            )
        },
        params={"who": "me"},
    )
    assert a.status == "success", rt.tasks(a.id)
    assert (
        "2026-01-01T00:00:00+00:00 2026-01-01 2026-01-01 00:00:00 +0000 1767225600 UTC "
        "+wf+show t_20260101 me"
    ) in log(rt, a, "+wf+show")
    assert "level=group" in log(rt, a, "+wf+g+inner")
    assert "level=task" in log(rt, a, "+wf+g+local")


def test_undefined_variable_fails_the_task_naming_it(rt: LocalRuntime) -> None:
    a = run(rt, {"wf.dig": "+e:\n  echo>: ${not_defined}\n"})
    error = by_name(rt, a)["+wf+e"].error
    assert "${not_defined}" in error and "is not defined" in error


@pytest.mark.slow
def test_parallel_branches_may_create_the_same_table(rt: LocalRuntime) -> None:
    # TD accepts concurrent inserts that create a table; DuckDB's conflicts are retried
    a = run(
        rt,
        {
            "wf.dig": INIT
            + dig(
                """
                +each:
                  for_each>:
                    n: [1, 2, 3, 4, 5, 6]
                  _parallel: true
                  _do:
                    td>:
                    query: SELECT ${n} AS n, 'x${n}' AS extra_${n}
                    database: db
                    insert_into: shared_log
                """
            )
        },
    )
    assert a.status == "success", [t.error for t in rt.tasks(a.id) if t.error]
    assert rt.query("SELECT count(*), count(DISTINCT n) FROM shared_log", "db").rows == [[6, 6]]
    # insert_into first ensures the table exists (Digdag's ensureTableCreated), and a new TD
    # table starts with its `time` column: time, n, and each branch's new column.
    assert len(rt.tables("db")[0].columns) == 8
