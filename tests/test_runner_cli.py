"""`cdp-mcp wf ...` and `cdp-mcp query`: output like `td wf`, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.cli.wf import main

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

WF = "+init:\n  td_ddl>:\n  create_databases: [db]\n+t:\n  td>: q.sql\n  database: db\n  create_table: t\n"
SQL = "SELECT 1 AS id, 'a,b' AS name UNION ALL SELECT 2, NULL"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "wf.dig").write_text(WF)
    (proj / "broken.dig").write_text("+a:\n  echo>: start\n+b:\n  fail>: it broke\n")
    (proj / "q.sql").write_text(SQL)
    return workspace


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_push_start_session_tasks_log_and_query(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["--workspace", str(ws)]
    code, out, _ = cli(capsys, "wf", "push", str(ws.parent / "proj"), *w)
    assert code == 0 and "name: proj" in out and "workflows: broken, wf" in out

    code, out, _ = cli(capsys, "wf", "start", "proj", "wf", "--session", "2026-01-01", *w)
    assert code == 0
    assert re.search(r"^  session id: 1$", out, re.M) and re.search(r"^  attempt id: 1$", out, re.M)
    assert "success  +wf+t" in out and out.rstrip().endswith("status: success")

    code, out, _ = cli(capsys, "wf", "session", "1", *w)
    assert (
        code == 0 and "status: success" in out and "session time: 2026-01-01 00:00:00 +0000" in out
    )
    code, out, _ = cli(capsys, "wf", "attempt", "1", *w)
    assert code == 0 and "kill requested: false" in out

    code, out, _ = cli(capsys, "wf", "tasks", "1", *w)
    assert code == 0 and re.search(r"success .* \+wf\+t$", out, re.M)

    code, out, _ = cli(capsys, "wf", "log", "1", "t", *w)
    assert code == 0 and "2 rows written" in out and "+wf+init" not in out

    code, out, _ = cli(
        capsys, "query", "-d", "db", "SELECT * FROM t ORDER BY id", "--format", "csv", *w
    )
    assert code == 0 and out == 'id,name\n1,"a,b"\n2,\n'
    code, out, _ = cli(
        capsys, "query", "-d", "db", "SELECT * FROM t ORDER BY id", "--format", "json", *w
    )
    assert json.loads(out) == [{"id": 1, "name": "a,b"}, {"id": 2, "name": None}]
    code, out, _ = cli(
        capsys, "query", "-d", "db", "SELECT id FROM t ORDER BY id", "--limit", "1", *w
    )
    assert code == 0 and "1 rows (truncated)" in out


def test_failed_workflow_exits_1_naming_the_task(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["--workspace", str(ws)]
    cli(capsys, "wf", "push", str(ws.parent / "proj"), *w)
    code, out, err = cli(capsys, "wf", "start", "proj", "broken", *w)
    assert code == 1
    assert "status: error" in out
    assert "failed task: +broken+b" in err and "error: it broke" in err

    code, out, _ = cli(capsys, "wf", "retry", "1", *w)  # still broken: the failed task runs again
    assert code == 1 and "attempt id: 2" in out and "error    +broken+b" in out
    code, _, err = cli(capsys, "wf", "log", "2", "a", *w)  # +a succeeded before: resumed, not run
    assert code == 1 and "no logs for task a" in err


def test_errors_are_one_line_with_exit_codes(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = ["--workspace", str(ws)]
    cli(capsys, "wf", "push", str(ws.parent / "proj"), *w)
    cli(capsys, "wf", "start", "proj", "wf", *w)

    code, _, err = cli(capsys, "query", "-d", "db", "SELECT nope FROM t", *w)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "nope" in err
    code, _, err = cli(capsys, "wf", "attempt", "99", *w)
    assert code == 1 and err == "error: attempt 99 not found in this workspace\n"
    code, _, err = cli(capsys, "wf", "kill", "1", *w)
    assert code == 1 and "already finished" in err
    code, _, err = cli(capsys, "wf", "start", "proj", "wf", "--session", "yesterday-ish", *w)
    assert code == 2 and "--session must be" in err
    code, _, err = cli(capsys, "wf", "tasks", "1", "--workspace", str(ws / "missing"))
    assert code == 2 and "is not a folder" in err
    with pytest.raises(SystemExit) as usage:
        main(["wf", "start", "proj"])
    assert usage.value.code == 2


def test_detach_returns_while_the_run_goes_on(ws: Path) -> None:
    LocalRuntime(ws).push("proj", ws.parent / "proj")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cdp_mcp.cli.wf",
            "wf",
            "start",
            "proj",
            "wf",
            "--detach",
            "--workspace",
            str(ws),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "attempt id: 1" in done.stdout and "Running in the background" in done.stdout
    rt = LocalRuntime(ws)
    deadline = time.monotonic() + 20
    while not rt.attempt("1").done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rt.attempt("1").status == "success"
