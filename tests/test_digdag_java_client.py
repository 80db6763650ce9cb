"""Digdag's own REST client drives the emulator's TD Workflow API, as `digdag` commands do.

The referee is ci/java-referees/client/DigdagClientDriver.java on io.digdag:digdag-client
0.10.0 (the newest Maven Central serves here; see tests/java_referees.py for the set-up). It
sends TD's `Authorization: TD1 <key>` header the way `digdag -H` and TD's toolbelt do, and
runs what `digdag push`, `workflows`, `start` (and the same session again), `attempts`,
`session`, `task`, `log`, `retry --latest-revision --resume`, `kill` and `secrets` call. It
prints every answer as the client's own model read it, written back with the client's JSON
mapper: so a shape the client can't read fails its step, and a field it reads differently
shows here.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from tests.conftest import SENTINEL_KEY
from tests.java_referees import classpath, json_lines, run_java

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

SLOW_SQL = (
    "SELECT count(*) AS n FROM range(10000000000) t(i) "
    "WHERE to_hex(md5(to_utf8(CAST(i AS VARCHAR)))) LIKE '%ABC%'"
)
WF = """\
    timezone: Asia/Tokyo
    +a:
      echo>: hello ${greeting} ${session_date}
    +b:
      fail>: boom on ${session_date}
    """
SLOW = f"""\
    +init:
      td_ddl>:
      create_databases: [java_ref_db]
    +query:
      td>:
      query: {SLOW_SQL}
      database: java_ref_db
    +after:
      echo>: never
    """


def _project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


class Run:
    def __init__(self, lines: list[dict[str, Any]], unserved: list[str], output: str) -> None:
        self.steps = {line["step"]: line for line in lines}
        self.unserved, self.output = unserved, output

    def __call__(self, step: str) -> Any:
        """The step's value; the step must have succeeded."""
        line = self.steps[step]
        assert line["ok"], f"{step} failed: {line}"
        return line["value"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    cp = classpath("client", tmp_path_factory)
    tmp = tmp_path_factory.mktemp("java_client")
    v1 = _project(tmp / "v1", {"wf.dig": WF, "slow.dig": SLOW})
    v2 = _project(
        tmp / "v2", {"wf.dig": WF.replace("fail>: boom", "echo>: fixed"), "slow.dig": SLOW}
    )
    app = create_app(tmp / "site", SENTINEL_KEY)
    with BackgroundServer(app) as server:
        done = run_java(
            cp, "DigdagClientDriver", [server.url, str(v1), str(v2)], {"TD_API_KEY": SENTINEL_KEY}
        )
    assert done.returncode == 0, done.stderr[-3000:]
    yield Run(json_lines(done.stdout), list(app.state.site.unserved), done.stdout + done.stderr)


def test_the_client_calls_nothing_the_emulator_does_not_serve(run: Run) -> None:
    assert run.unserved == []
    assert [s for s, line in run.steps.items() if not line["ok"]] == [
        "push_same_revision",  # Digdag refuses a revision name used before: 409
        "kill_again",  # a finished attempt: 409
    ]
    assert run.steps["push_same_revision"]["status"] == 409
    assert run.steps["kill_again"]["status"] == 409


def test_the_api_key_never_shows(run: Run) -> None:
    assert SENTINEL_KEY not in run.output


def test_version_check_passes(run: Run) -> None:
    # Before every command the digdag CLI asks the server whether it takes this client.
    assert run("version")["version"]
    assert run("version_check")["apiCompatible"] is True


def test_push_and_list_projects_and_workflows(run: Run) -> None:
    project = run("push")
    assert (project["name"], project["revision"]) == ("java_ref", "v1")
    assert project["archiveMd5"]  # read by the client as the archive's md5 bytes
    assert run("project_by_name")["id"] == run("project_by_id")["id"] == project["id"]
    assert [p["name"] for p in run("projects")["projects"]] == ["java_ref"]
    workflows = {w["name"]: w for w in run("workflows")["workflows"]}
    assert set(workflows) == {"wf", "slow"}
    wf = run("workflow")
    assert wf == workflows["wf"] == run("workflow_by_id")
    assert wf["timezone"] == "Asia/Tokyo"
    assert wf["config"]["+b"] == {"fail>": "boom on ${session_date}"}  # the definition


def test_start_reads_the_session_time_in_the_workflows_time_zone(run: Run) -> None:
    # `digdag start java_ref wf --session 2026-01-01`: a local time in Asia/Tokyo
    assert run("session_time")["sessionTime"] == "2026-01-01T00:00:00+09:00"
    # `--session daily` at 2026-03-04T05:06:07Z (14:06 in Tokyo)
    assert run("session_time_daily")["sessionTime"] == "2026-03-04T00:00:00+09:00"
    started = run("start")
    assert started["sessionTime"] == "2026-01-01T00:00:00+09:00"
    assert started["params"] == {"greeting": "hi"}
    assert started["workflow"] == {"name": "wf", "id": run("workflow")["id"]}


def test_starting_the_same_session_again_answers_409_with_its_attempt(run: Run) -> None:
    again = run("start_again")
    assert again["status"] == 409 and again["attempt"]["id"] == run("start")["id"]


def test_a_failed_attempt_its_tasks_session_and_listings(run: Run) -> None:
    attempt = run("wait")
    assert (attempt["status"], attempt["done"], attempt["success"]) == ("error", True, False)
    tasks = {t["fullName"]: t for t in run("tasks")["tasks"]}
    assert {n: t["state"] for n, t in tasks.items()} == {
        "+wf": "group_error",
        "+wf+a": "success",
        "+wf+b": "error",
    }
    assert tasks["+wf+b"]["error"]["message"] == "boom on 2026-01-01"
    assert tasks["+wf+b"]["upstreams"] == [tasks["+wf+a"]["id"]]
    session = run("session")
    assert session["lastAttempt"]["id"] == attempt["id"]
    assert session["sessionTime"] == "2026-01-01T00:00:00+09:00"
    ids = [a["id"] for a in run("session_attempts")["attempts"]]
    assert ids == [attempt["id"]]
    assert attempt["id"] in [a["id"] for a in run("attempts_of_project")["attempts"]]
    assert [a["id"] for a in run("attempts_of_workflow")["attempts"]] == [attempt["id"]]


def test_logs_by_direct_url_and_by_api_read_the_same(run: Run) -> None:
    files = run("log_files")["files"]
    assert sorted(f["taskName"] for f in files) == ["+wf+a", "+wf+b"]
    assert all(f["direct"] for f in files)
    assert [f["taskName"] for f in run("log_files_of_task")["files"]] == ["+wf+a"]
    logs = {v["task"]: v for v in run("logs").values()}
    assert all(v["has_direct"] and v["via_handle"] == v["via_api"] for v in logs.values())
    assert "hello hi 2026-01-01" in logs["+wf+a"]["via_api"]
    assert "boom on 2026-01-01" in logs["+wf+b"]["via_api"]


def test_retry_of_the_fixed_revision_resumes_the_failed_task(run: Run) -> None:
    assert run("push_fix")["revision"] == "v2"
    first, retry = run("start"), run("retry")
    assert retry["sessionId"] == first["sessionId"] and retry["index"] == 2
    assert retry["retryAttemptName"]
    assert run("retry_wait")["status"] == "success"
    tasks = {t["fullName"]: t for t in run("retry_tasks")["tasks"]}
    assert {n: t["state"] for n, t in tasks.items()} == {
        "+wf": "success",
        "+wf+a": "success",
        "+wf+b": "success",
    }
    assert tasks["+wf+a"]["startedAt"] is None  # carried over, not run again
    assert run("retry_session")["lastAttempt"]["id"] == retry["id"]


def test_kill_a_running_attempt(run: Run) -> None:
    assert run("slow_running") == "running"
    assert run("kill") == "kill requested"
    killed = run("kill_wait")
    assert (killed["status"], killed["cancelRequested"]) == ("killed", True)
    tasks = {t["fullName"]: t["state"] for t in run("kill_tasks")["tasks"]}
    assert tasks["+slow+init"] == "success"
    assert tasks["+slow+query"] == tasks["+slow+after"] == "canceled"
    assert "already killed or finished" in run.steps["kill_again"]["body"]


def test_secrets_set_list_delete(run: Run) -> None:
    assert run("secret_set") == "set"
    assert run("secrets") == {"secrets": [{"key": "td.apikey"}]}
    assert run("secret_delete") == "deleted"
    assert run("secrets_after_delete") == {"secrets": []}
    assert "not-a-real-key" not in run.output  # a secret's value is never answered
