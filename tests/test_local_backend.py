"""LocalBackend as the pipeline sees it: push, sessions, persistence, logs, warehouse."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from cdp_mcp.backends.archive import build_archive
from cdp_mcp.backends.base import (
    Backend,
    ConflictError,
    NotFoundError,
    ProjectRejectedError,
    QueryError,
    Task,
    TaskState,
)
from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.backends.local.warehouse import Storage

SESSION = datetime(2026, 1, 1, tzinfo=UTC)
WF = "+init:\n  td_ddl>:\n  create_databases: [db]\n+t:\n  td>: q.sql\n  database: db\n  create_table: t\n"
SQL = "SELECT 1 AS id, 'a' AS name UNION ALL SELECT 2, 'b'"


def project(root: Path, files: dict[str, str] | None = None) -> Path:
    files = files if files is not None else {"wf.dig": WF, "q.sql": SQL}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_push_stores_a_content_addressed_revision(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    src = project(
        tmp_path / "proj", {"wf.dig": WF, "q.sql": SQL, ".secret": "x", ".git/config": "x"}
    )
    first = rt.push("proj", src)
    again = rt.push("proj", src)
    assert (first.id, first.revision) == (again.id, again.revision)
    (src / "q.sql").write_text(SQL + " UNION ALL SELECT 3, 'c'")
    changed = rt.push("proj", src)
    assert changed.id == first.id and changed.revision != first.revision
    with tarfile.open(fileobj=io.BytesIO(build_archive(src))) as tar:
        assert sorted(tar.getnames()) == ["q.sql", "wf.dig"]  # relative, no dotfiles


@pytest.mark.slow
def test_workflows_run_from_the_pushed_revision_not_the_live_folder(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    src = project(tmp_path / "proj")
    rt.push("proj", src)
    (src / "q.sql").write_text("SELECT broken")
    attempt = rt.wait(rt.start("proj", "wf", SESSION).id, 30)
    assert attempt.status == "success"
    assert rt.query("SELECT count(*) FROM t", "db").rows == [[2]]


def test_a_broken_dig_is_refused_at_push_with_file_and_line(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    src = project(
        tmp_path / "proj", {"wf.dig": WF, "q.sql": SQL, "bad.dig": "+a:\n  echo>: 1\n  fail>: 2\n"}
    )
    with pytest.raises(ProjectRejectedError, match=r"bad\.dig:1: .*more than one operator") as info:
        rt.push("proj", src)
    assert (info.value.file, info.value.line) == ("bad.dig", 1)
    with pytest.raises(NotFoundError, match="has not been pushed"):
        rt.start("proj", "wf")


@pytest.mark.slow
def test_starting_a_session_again_returns_its_attempt(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    rt.push("proj", project(tmp_path / "proj"))
    first = rt.start("proj", "wf", SESSION)
    same = rt.start("proj", "wf", SESSION)
    assert same.id == first.id
    rt.wait(first.id, 30)
    named = rt.start("proj", "wf", SESSION, retry_attempt_name="rerun")
    assert named.id != first.id and named.session_id == first.session_id and named.index == 2
    rt.wait(named.id, 30)
    assert rt.session(first.session_id).last_attempt.id == named.id  # type: ignore[union-attr]
    with pytest.raises(NotFoundError, match="workflow 'nope' not found"):
        rt.start("proj", "nope")
    with pytest.raises(ConflictError, match="already finished"):
        rt.kill(first.id)


@pytest.mark.slow
def test_state_survives_reopening_the_workspace(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    rt.push("proj", project(tmp_path / "proj"))
    attempt = rt.wait(rt.start("proj", "wf", SESSION).id, 30)
    files = rt.log_files(attempt.id)

    reopened = LocalRuntime(tmp_path / "ws")
    assert reopened.attempt(attempt.id).status == "success"
    assert [t.state for t in reopened.tasks(attempt.id)] == ["success"] * 3
    assert reopened.log_files(attempt.id) == files
    assert "rows written" in reopened.read_log(attempt.id, files[-1].file_name)
    assert reopened.start("proj", "wf", SESSION).id == attempt.id


def test_task_states_are_stored_as_digdags_strings_and_read_back_as_the_enum(
    tmp_path: Path,
) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    rt.push(
        "proj", project(tmp_path / "proj", {"wf.dig": "+ok:\n  echo>: 1\n+bad:\n  fail>: no\n"})
    )
    attempt = rt.wait(rt.start("proj", "wf", SESSION).id, 30)
    with sqlite3.connect(tmp_path / "ws" / ".cdp_local" / "state.sqlite") as db:
        stored = dict(db.execute("SELECT full_name, state FROM tasks").fetchall())
    assert stored == {"+wf": "group_error", "+wf+ok": "success", "+wf+bad": "error"}
    states = {t.full_name: t.state for t in LocalRuntime(tmp_path / "ws").tasks(attempt.id)}
    assert states == {
        "+wf": TaskState.GROUP_ERROR,
        "+wf+ok": TaskState.SUCCESS,
        "+wf+bad": TaskState.ERROR,
    }
    assert all(isinstance(s, TaskState) for s in states.values())
    dumped = Task.model_validate(rt.tasks(attempt.id)[0].model_dump(mode="json"))
    assert dumped.state is TaskState.GROUP_ERROR  # a JSON round trip keeps the enum


@pytest.mark.slow
def test_log_files_are_named_like_tds(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    rt.push("proj", project(tmp_path / "proj"))
    attempt = rt.wait(rt.start("proj", "wf", SESSION).id, 30)
    (log,) = rt.log_files(attempt.id, "+wf+t")
    assert re.fullmatch(r"\+wf\+t@[0-9a-f]+\.local\.log\.gz", log.file_name)
    assert rt.log_files(attempt.id, "t") == [log]  # a bare task name also matches
    text = rt.read_log(attempt.id, log.file_name)
    assert "SELECT 1 AS id" in text and "2 rows written" in text
    with pytest.raises(NotFoundError):
        rt.read_log(attempt.id, "nope.log.gz")


@pytest.mark.slow
def test_an_attempt_whose_process_died_is_marked_error(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    endless = "SELECT count(*) FROM range(10000000000) t(i) WHERE md5(CAST(i AS VARCHAR)) = ''"
    slow = (
        "+init:\n  td_ddl>:\n  create_databases: [db]\n+slow:\n  td>:\n  query: "
        + endless
        + "\n  database: db\n"
    )
    rt = LocalRuntime(ws)
    rt.push("proj", project(tmp_path / "proj", {"slow.dig": slow}))
    # a CLI process runs the workflow and dies without a chance to clean up
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdp_mcp.cli.wf",
            "wf",
            "start",
            "proj",
            "slow",
            "--workspace",
            str(ws),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not any(
            t.full_name == "+slow+slow" and t.state == "running" for t in _tasks_or_empty(rt, "1")
        ):
            assert time.monotonic() < deadline, "the child never started the task"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert rt.attempt("1").status == "running"  # nothing noticed yet

    reopened = LocalRuntime(ws)
    assert reopened.attempt("1").status == "error"
    slow_task = next(t for t in reopened.tasks("1") if t.full_name == "+slow+slow")
    assert slow_task.state == "error" and "process exited" in (slow_task.error or "")


EXIT_MID_RUN = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from cdp_mcp.backends.local.runtime import LocalRuntime
rt = LocalRuntime(Path(sys.argv[1]))
attempt = rt.start("proj", "slow", datetime(2026, 1, 1, tzinfo=UTC))
deadline = time.monotonic() + 20
while not any(t.full_name == "+slow+slow" and t.state == "running" for t in rt.tasks(attempt.id)):
    assert time.monotonic() < deadline, "the task never started"
    time.sleep(0.05)
"""  # then the script ends, with the query still inside DuckDB


@pytest.mark.slow
def test_a_process_exiting_mid_query_interrupts_the_attempt_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    """Teardown used to stop the runner thread inside DuckDB now and then, aborting the
    process (exit 134); the runtime now interrupts what runs and lets it unwind first."""
    ws = tmp_path / "ws"
    endless = "SELECT count(*) FROM range(10000000000) t(i) WHERE md5(CAST(i AS VARCHAR)) = ''"
    slow = f"+init:\n  td_ddl>:\n  create_databases: [db]\n+slow:\n  td>:\n  query: {endless}\n"
    LocalRuntime(ws).push(
        "proj", project(tmp_path / "proj", {"slow.dig": slow + "  database: db\n"})
    )
    done = subprocess.run(
        [sys.executable, "-c", EXIT_MID_RUN, str(ws)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    after = LocalRuntime(ws)
    assert after.attempt("1").status == "error"
    slow_task = next(t for t in after.tasks("1") if t.full_name == "+slow+slow")
    assert slow_task.state == "canceled"  # interrupted by its own process, not found dead


def _tasks_or_empty(rt: LocalRuntime, attempt_id: str) -> list[Task]:
    try:
        return rt.tasks(attempt_id)
    except NotFoundError:
        return []


@pytest.mark.slow
def test_query_transpiles_limits_and_reports_errors(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "ws")
    rt.push("proj", project(tmp_path / "proj"))
    rt.wait(rt.start("proj", "wf", SESSION).id, 30)
    result = rt.query(
        "SELECT id, approx_distinct(name) AS n FROM db.t GROUP BY 1 ORDER BY 1", "db", limit=1
    )
    assert result.columns == ["id", "n"] and result.rows == [[1, 1]] and result.truncated
    hive = rt.query("SELECT nvl(NULL, name) FROM t ORDER BY 1", "db", engine="hive")
    assert hive.rows == [["a"], ["b"]] and not hive.truncated
    # the read-only path runs Hive text with Hive's semantics too (NULL, not an error)
    read = rt.read_query("SELECT unix_timestamp('garbage') AS u", "db", engine="hive")
    assert read.rows == [[None]]
    with pytest.raises(QueryError, match="nope"):
        rt.query("SELECT nope FROM t", "db")
    with pytest.raises(NotFoundError, match="database 'other' does not exist"):
        rt.query("SELECT 1", "other")
    (info,) = rt.tables("db")
    assert (info.name, info.count, [(c.name, c.type) for c in info.columns]) == (
        "t",
        2,
        [("id", "long"), ("name", "string")],
    )


@pytest.mark.slow
def test_async_backend_implements_the_protocol(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = LocalBackend(tmp_path / "ws")
        assert isinstance(backend, Backend)  # check_auth and aclose included
        assert await backend.check_auth() is None  # no credentials to check
        pushed = await backend.push("proj", project(tmp_path / "proj"))
        assert pushed.name == "proj"
        attempt = await backend.start("proj", "wf", SESSION, {"x": "1"})
        done = await backend.wait(attempt.id, 30)
        assert done.status == "success" and done.params == {"x": "1"}
        assert (await backend.session(done.session_id)).last_attempt.id == done.id  # type: ignore[union-attr]
        assert [t.full_name for t in await backend.tasks(done.id)] == ["+wf", "+wf+init", "+wf+t"]
        files = await backend.log_files(done.id, "+wf+t")
        assert "rows written" in await backend.read_log(done.id, files[0].file_name)
        assert await backend.databases() == ["db"]
        assert [t.name for t in await backend.tables("db")] == ["t"]
        assert (await backend.query("SELECT count(*) AS n FROM t", "db")).rows == [[2]]
        retried = await backend.wait((await backend.retry(done.id)).id, 30)
        assert retried.status == "success" and retried.index == 2
        await backend.aclose()

    asyncio.run(scenario())


@pytest.mark.slow
@pytest.mark.parametrize(("storage", "compressed"), [("fast", False), ("compact", True)])
def test_local_storage_decides_whether_text_is_compressed(
    tmp_path: Path, storage: Storage, compressed: bool
) -> None:
    # 200k rows of few distinct texts: DuckDB's dictionary/FSST compression takes them when allowed
    sql = "SELECT i AS id, 'customer-' || (i % 50) AS name FROM range(200000) r(i)"
    rt = LocalRuntime(tmp_path / "ws", storage)
    rt.push("proj", project(tmp_path / "proj", {"wf.dig": WF, "q.sql": sql}))
    assert rt.wait(rt.start("proj", "wf", SESSION).id, 60).status == "success"
    assert rt.query("SELECT count(DISTINCT name) FROM t", "db").rows == [[50]]
    with duckdb.connect(str(rt.home / "warehouse.duckdb"), read_only=True) as con:
        kinds = {
            row[0]
            for row in con.execute(
                "SELECT compression FROM pragma_storage_info('db.t') WHERE column_name = 'name'"
            ).fetchall()
        }
    assert ("DICT_FSST" in kinds) is compressed, kinds
