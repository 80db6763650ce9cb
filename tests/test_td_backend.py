"""TreasureDataBackend over real HTTP against the loopback TD emulator (no mocks of httpx)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

from cdp_mcp.backends.base import (
    Backend,
    BackendError,
    ConflictError,
    NotFoundError,
    ProjectRejectedError,
    QueryError,
    TaskState,
)
from cdp_mcp.backends.local.hooks import UnificationCall
from cdp_mcp.backends.td import (
    AuthenticationError,
    PollPolicy,
    RetryPolicy,
    TransientError,
    mapping,
)
from cdp_mcp.backends.treasuredata import TreasureDataBackend
from cdp_mcp.core.config import load_config
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from tests.conftest import FIXTURES, SENTINEL_KEY, SENTINEL_SECRET

KEY = SENTINEL_KEY  # the emulator's key is the sentinel too, so every log line is checked
SESSION = datetime(2026, 1, 1, tzinfo=UTC)
FAST_POLL = PollPolicy(first=0.02, factor=1.5, longest=0.2)
FAST_RETRY = RetryPolicy(max_tries=3, base_delay=0.02, max_delay=0.1, max_total=3.0)
SLOW_SQL = (
    "SELECT count(*) AS n FROM range(10000000000) t(i) "
    "WHERE to_hex(md5(to_utf8(CAST(i AS VARCHAR)))) LIKE '%ABC%'"
)
ECHO = "+a:\n  echo>: hello ${session_date}\n"


class RequestLog:
    """ASGI wrapper recording "METHOD /path" of every request the emulator receives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RequestLog]]:
    app = RequestLog(create_app(tmp_path_factory.mktemp("td_site"), KEY))
    with BackgroundServer(app) as server:
        yield server.url, app


@pytest.fixture
def url(emulator: tuple[str, RequestLog]) -> str:
    return emulator[0]


def client(url: str, key: str = KEY, **options: Any) -> TreasureDataBackend:
    options.setdefault("poll", FAST_POLL)
    options.setdefault("retry", FAST_RETRY)
    return TreasureDataBackend(url, key, **options)


def project_dir(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def run(url: str, scenario: Callable[[TreasureDataBackend], Awaitable[None]], **opts: Any) -> None:
    async def main() -> None:
        async with client(url, **opts) as backend:
            await scenario(backend)

    anyio.run(main)


# -- workflows ---------------------------------------------------------------------------------


def test_it_implements_the_backend_protocol(url: str) -> None:
    assert isinstance(client(url), Backend)


@pytest.mark.slow
def test_one_backend_serves_event_loops_in_turn(url: str) -> None:
    td = client(url)  # e.g. a CLI that calls anyio.run once per command
    for _ in range(2):
        assert isinstance(anyio.run(td.databases), list)


def test_push_start_wait_tasks_logs(url: str, tmp_path: Path) -> None:
    proj = project_dir(tmp_path / "p", {"hello.dig": ECHO + "+b:\n  echo>: bye\n"})

    async def scenario(td: TreasureDataBackend) -> None:
        pushed = await td.push("hello_proj", proj)
        assert pushed.name == "hello_proj" and pushed.id and pushed.revision
        attempt = await td.start("hello_proj", "hello", session_time=SESSION)
        assert attempt.project == "hello_proj" and attempt.workflow == "hello"
        assert attempt.session_time == SESSION
        done = await td.wait(attempt.id, timeout=20)
        assert done.status == "success" and done.finished_at is not None
        tasks = {t.full_name: t for t in await td.tasks(done.id)}
        assert tasks["+hello"].is_group
        assert tasks["+hello+a"].state == tasks["+hello+b"].state == "success"
        assert tasks["+hello+a"].parent_id == tasks["+hello"].id
        session = await td.session(done.session_id)
        assert session.last_attempt is not None and session.last_attempt.id == done.id
        assert session.workflow == "hello" and session.session_time == SESSION
        files = await td.log_files(done.id)
        assert {f.task_name for f in files} == {"+hello+a", "+hello+b"}
        assert all(f.file_name.endswith(".log.gz") and f.file_size > 0 for f in files)
        (a_log,) = await td.log_files(done.id, task="+hello+a")
        assert (await td.log_files(done.id, task="a")) == [a_log]  # bare name, like local
        text = await td.read_log(done.id, a_log.file_name)  # via the signed `direct` URL
        assert "hello 2026-01-01" in text
        with pytest.raises(NotFoundError):
            await td.read_log(done.id, "+hello+zzz@1.local.log.gz")

    run(url, scenario)


@pytest.mark.slow
def test_a_unification_call_to_the_emulator_runs_on_the_local_engine(tmp_path: Path) -> None:
    calls: list[UnificationCall] = []

    def engine(call: UnificationCall) -> dict[str, Any]:
        calls.append(call)
        return {"unified": "yes"}

    with BackgroundServer(create_app(tmp_path / "site", KEY, unification_handler=engine)) as srv:
        wf = (
            f"+unify:\n  http_call>: {srv.url}/unifications/workflow_call\n  method: POST\n"
            "  content_format: json\n  content:\n    run_persistent_ids: true\n"
            "+after:\n  echo>: ${unified}\n"
        )
        proj = project_dir(tmp_path / "p", {"id_unification.dig": wf})

        async def scenario(td: TreasureDataBackend) -> None:
            await td.push("unif_proj", proj)
            done = await td.wait((await td.start("unif_proj", "id_unification", SESSION)).id, 20)
            assert done.status == "success", await td.tasks(done.id)
            (log,) = await td.log_files(done.id, task="+id_unification+after")
            assert "yes" in await td.read_log(done.id, log.file_name)

        run(srv.url, scenario)
    (call,) = calls
    assert call.url == f"{srv.url}/unifications/workflow_call"
    assert call.content == {"run_persistent_ids": True}


@pytest.mark.slow
def test_logs_download_through_the_api_without_a_direct_url(tmp_path: Path) -> None:
    app = create_app(tmp_path / "site", KEY, direct_logs=False)
    proj = project_dir(tmp_path / "p", {"hello.dig": ECHO})

    async def scenario(td: TreasureDataBackend) -> None:
        await td.push("logs_proj", proj)
        done = await td.wait((await td.start("logs_proj", "hello", SESSION)).id, 20)
        (log,) = await td.log_files(done.id)
        assert "hello 2026-01-01" in await td.read_log(done.id, log.file_name)

    with BackgroundServer(app) as server:
        run(server.url, scenario)


@pytest.mark.slow
def test_an_unchanged_project_is_not_pushed_twice(
    emulator: tuple[str, RequestLog], tmp_path: Path
) -> None:
    url, requests = emulator
    proj = project_dir(tmp_path / "p", {"wf.dig": ECHO, ".env": "SECRET=1", "sql/q.sql": "x"})

    async def scenario(td: TreasureDataBackend) -> None:
        first = await td.push("push_proj", proj)
        uploads = requests.seen.count("PUT /api/projects")
        again = await td.push("push_proj", proj)
        assert again.revision == first.revision and again.id == first.id
        assert requests.seen.count("PUT /api/projects") == uploads  # looked up, not uploaded
        (proj / "wf.dig").write_text(ECHO + "+b:\n  echo>: more\n")
        changed = await td.push("push_proj", proj)
        assert changed.revision != first.revision and changed.id == first.id
        # back to the first content: its revision name is taken, so it goes up renamed
        (proj / "wf.dig").write_text(ECHO)
        reverted = await td.push("push_proj", proj)
        assert reverted.revision.startswith(first.revision + "-")
        assert (await td.push("push_proj", proj)).revision == reverted.revision

    run(url, scenario)


def test_a_project_that_does_not_compile_is_refused_with_its_file(url: str, tmp_path: Path) -> None:
    proj = project_dir(tmp_path / "p", {"bad.dig": "+a:\n  echo>: [unclosed\n"})

    async def scenario(td: TreasureDataBackend) -> None:
        with pytest.raises(ProjectRejectedError) as err:
            await td.push("bad_proj", proj)
        assert err.value.file == "bad.dig"
        with pytest.raises(NotFoundError, match="has not been pushed"):
            await td.start("bad_proj", "bad")

    run(url, scenario)


def test_starting_a_session_again_adopts_its_attempt(url: str, tmp_path: Path) -> None:
    proj = project_dir(tmp_path / "p", {"wf.dig": ECHO})

    async def scenario(td: TreasureDataBackend) -> None:
        await td.push("adopt_proj", proj)
        first = await td.start("adopt_proj", "wf", session_time=SESSION)
        again = await td.start("adopt_proj", "wf.dig", session_time=SESSION)
        assert again.id == first.id and again.session_id == first.session_id
        with pytest.raises(NotFoundError, match=r"workflow 'nope' not found .*workflows: wf"):
            await td.start("adopt_proj", "nope", session_time=SESSION)

    run(url, scenario)


@pytest.mark.slow
def test_retry_reruns_the_session_from_the_latest_revision(url: str, tmp_path: Path) -> None:
    proj = project_dir(tmp_path / "p", {"wf.dig": ECHO + "+b:\n  fail>: boom\n"})

    async def scenario(td: TreasureDataBackend) -> None:
        await td.push("retry_proj", proj)
        failed = await td.wait((await td.start("retry_proj", "wf", SESSION)).id, 20)
        assert failed.status == "error"
        errors = {t.full_name: t.error for t in await td.tasks(failed.id) if t.state == "error"}
        assert "boom" in (errors.get("+wf+b") or "")
        (proj / "wf.dig").write_text(ECHO + "+b:\n  echo>: fixed\n")
        await td.push("retry_proj", proj)
        retried = await td.retry(failed.id, resume_failed=True)
        assert retried.id != failed.id and retried.session_id == failed.session_id
        assert retried.session_time == SESSION and (retried.retry_attempt_name or "").startswith(
            "retry-"
        )
        done = await td.wait(retried.id, 20)
        assert done.status == "success"
        assert (await td.session(failed.session_id)).last_attempt.id == done.id  # type: ignore[union-attr]
        # a successful attempt is rerun whole (Digdag refuses to resume it)
        rerun = await td.wait((await td.retry(done.id)).id, 20)
        assert rerun.status == "success" and rerun.index == done.index + 1

    run(url, scenario)


@pytest.mark.slow
def test_kill_a_running_attempt(url: str, tmp_path: Path) -> None:
    wf = (
        "+init:\n  td_ddl>:\n  create_databases: [kill_db]\n"
        f"+slow:\n  td>:\n  query: {SLOW_SQL}\n  database: kill_db\n+after:\n  echo>: never\n"
    )
    proj = project_dir(tmp_path / "p", {"wf.dig": wf, "quick.dig": ECHO})

    async def scenario(td: TreasureDataBackend) -> None:
        await td.push("kill_proj", proj)
        attempt = await td.start("kill_proj", "wf", SESSION)
        deadline = time.monotonic() + 10
        while {t.full_name: t.state for t in await td.tasks(attempt.id)}.get("+wf+slow") != (
            "running"
        ):
            assert time.monotonic() < deadline
            await anyio.sleep(0.02)
        # let the query start: the local engine loses a kill that lands between the task
        # turning `running` and its query starting (its own issue, not the emulator's)
        await anyio.sleep(0.2)
        with pytest.raises(ConflictError, match="still running"):
            await td.retry(attempt.id)
        assert (await td.kill(attempt.id)).cancel_requested
        done = await td.wait(attempt.id, 10)
        assert done.status == "killed"
        tasks = {t.full_name: t.state for t in await td.tasks(done.id)}
        assert tasks["+wf+slow"] == tasks["+wf+after"] == "canceled"
        assert (await td.kill(done.id)).status == "killed"  # a repeated kill changes nothing
        quick = await td.wait((await td.start("kill_proj", "quick", SESSION)).id, 20)
        with pytest.raises(ConflictError, match=r"already finished \(success\)"):
            await td.kill(quick.id)

    run(url, scenario)


# -- warehouse ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_databases_tables_and_their_schemas(url: str) -> None:
    async def scenario(td: TreasureDataBackend) -> None:
        assert await td.ensure_database("wh_db") is True
        assert await td.ensure_database("wh_db") is False
        assert "wh_db" in await td.databases()
        await td.query(
            "CREATE TABLE people AS SELECT 1 AS id, 'ann' AS name, 2.5 AS score, true AS ok",
            "wh_db",
        )
        (people,) = await td.tables("wh_db")
        assert people.name == "people" and people.count == 1
        assert [(c.name, c.type) for c in people.columns] == [
            ("id", "long"),
            ("name", "string"),
            ("score", "double"),
            ("ok", "long"),  # TD's table schema has no boolean type
            ("time", "long"),  # implicit on TD, added back by the client
        ]
        with pytest.raises(NotFoundError, match="nope_db"):
            await td.tables("nope_db")

    run(url, scenario)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "msgpack.gz", "msgpack"])
def test_query_results_stream_and_stop_past_the_limit(url: str, fmt: str) -> None:
    db = f"q_{fmt.replace('.', '_')}"

    async def scenario(td: TreasureDataBackend) -> None:
        await td.ensure_database(db)
        await td.query(
            "CREATE TABLE nums AS SELECT range AS n, 'v' || CAST(range AS VARCHAR) AS s,"
            " range / 2.0 AS half FROM range(1200)",
            db,
        )
        sql = "SELECT n, s, half FROM nums ORDER BY n"
        page = await td.query(sql, db, limit=1000)
        assert page.columns == ["n", "s", "half"] and page.truncated
        assert len(page.rows) == 1000 and page.rows[999] == [999, "v999", 499.5]
        whole = await td.query(sql, db)
        assert len(whole.rows) == 1200 and not whole.truncated
        exact = await td.query(sql, db, limit=1200)
        assert len(exact.rows) == 1200 and not exact.truncated
        empty = await td.query("SELECT n FROM nums WHERE n < 0", db, engine="hive", limit=5)
        assert empty.columns == ["n"] and empty.rows == [] and not empty.truncated
        with pytest.raises(QueryError, match="missing_table"):
            await td.query("SELECT * FROM missing_table", db)
        with pytest.raises(QueryError, match="unknown engine"):
            await td.query("SELECT 1", db, engine="spark")
        with pytest.raises(NotFoundError):
            await td.query("SELECT 1", "no_such_db")

    run(url, scenario, result_format=fmt)


# -- secrets and auth --------------------------------------------------------------------------


@pytest.mark.slow
def test_project_secrets_are_listed_by_key_only(url: str, tmp_path: Path) -> None:
    proj = project_dir(tmp_path / "p", {"wf.dig": ECHO})

    async def scenario(td: TreasureDataBackend) -> None:
        await td.push("secret_proj", proj)
        assert await td.list_secrets("secret_proj") == []
        await td.set_secret("secret_proj", "shopify.api_key", "s3cr3t-value")
        await td.set_secret("secret_proj", "b_token", "other")
        assert await td.list_secrets("secret_proj") == ["b_token", "shopify.api_key"]
        await td.delete_secret("secret_proj", "b_token")
        assert await td.list_secrets("secret_proj") == ["shopify.api_key"]
        for bad in ("bad key", "_leading", "trailing_", "a..b"):  # Digdag's SecretValidation
            with pytest.raises(BackendError, match="invalid secret key"):
                await td.set_secret("secret_proj", bad, "x")
        with pytest.raises(NotFoundError):
            await td.list_secrets("no_such_project")

    run(url, scenario)
    listing = httpx.get(f"{url}/api/projects", headers={"Authorization": f"TD1 {KEY}"})
    secret_id = next(p["id"] for p in listing.json()["projects"] if p["name"] == "secret_proj")
    raw = httpx.get(
        f"{url}/api/projects/{secret_id}/secrets", headers={"Authorization": f"TD1 {KEY}"}
    )
    assert raw.json() == {"secrets": [{"key": "shopify.api_key"}]}
    assert "s3cr3t-value" not in raw.text


def test_check_auth_reports_the_hosts(url: str) -> None:
    async def scenario(td: TreasureDataBackend) -> None:
        hosts = await td.check_auth()
        assert hosts.api == hosts.workflow == url

    run(url, scenario)


@pytest.mark.slow
def test_a_configured_workflow_endpoint_takes_the_pushes_and_api_v3_stays_on_td_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two servers on 127.0.0.1, as behind a proxy that serves TD Workflow on its own host.
    api_log = RequestLog(create_app(tmp_path / "api_site", KEY))
    workflow_log = RequestLog(create_app(tmp_path / "workflow_site", KEY))
    with BackgroundServer(api_log) as api, BackgroundServer(workflow_log) as workflow:
        raw = yaml.safe_load((FIXTURES / "acme.yml").read_text())
        raw["global"].update(
            backend="treasuredata", td_endpoint=api.url, workflow_endpoint=f"{workflow.url}/"
        )
        (tmp_path / "acme.yml").write_text(yaml.safe_dump(raw))
        monkeypatch.setenv("TD_API_KEY", KEY)
        cfg = load_config(tmp_path / "acme.yml")
        proj = project_dir(tmp_path / "proj", {"wf.dig": ECHO})

        async def scenario() -> None:
            async with TreasureDataBackend.from_config(cfg, poll=FAST_POLL) as td:
                hosts = await td.check_auth()
                assert (hosts.api, hosts.workflow) == (api.url, workflow.url)
                await td.push("routed_proj", proj)
                attempt = await td.start("routed_proj", "wf", SESSION)
                while not (attempt := await td.attempt(attempt.id)).done:
                    await anyio.sleep(0.05)
                assert attempt.success
                assert await td.ensure_database("routed_db") is True
                assert (await td.query("SELECT 1 AS one", "routed_db")).rows == [[1]]

        anyio.run(scenario)
        for url, kind in ((workflow.url, "workflow"), (api.url, "api")):
            listed = httpx.get(f"{url}/api/projects", headers={"Authorization": f"TD1 {KEY}"})
            names = [p["name"] for p in listed.json()["projects"]]
            assert names == (["routed_proj"] if kind == "workflow" else []), kind
    called_api = [r for r in api_log.seen if r != "GET /api/projects"]
    assert called_api and all(" /v3/" in r for r in called_api)
    assert workflow_log.seen and all(" /api/" in r for r in workflow_log.seen)
    assert "PUT /api/projects" in workflow_log.seen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_key_never_appears_in_errors_logs_or_reprs(
    emulator: tuple[str, RequestLog], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, requests = emulator
    caplog.set_level(logging.DEBUG)
    proj = project_dir(tmp_path / "p", {"wf.dig": ECHO})
    bad = project_dir(tmp_path / "bad", {"wf.dig": "+a:\n  echo>: [x\n"})
    wrong = "1234/WRONGKEYabcdef0123456789"
    seen: list[BaseException] = []

    async def expect(exc: type[BaseException], call: Awaitable[Any]) -> None:
        with pytest.raises(exc) as err:
            await call
        seen.append(err.value)

    async def scenario() -> None:
        async with client(url) as good:
            await good.push("sentinel_proj", proj)
            attempt = await good.wait((await good.start("sentinel_proj", "wf", SESSION)).id, 20)
            await expect(NotFoundError, good.attempt("424242"))
            await expect(NotFoundError, good.session("424242"))
            await expect(ProjectRejectedError, good.push("sentinel_proj", bad))
            await expect(BackendError, good.push("bad name!", proj))
            await expect(ConflictError, good.kill(attempt.id))
            await good.ensure_database("sentinel_db")
            await expect(QueryError, good.query("SELEKT", "sentinel_db"))
        # the client sends the sentinel; this emulator expects another key: 401 everywhere
        app = create_app(tmp_path / "other_site", wrong)
        with BackgroundServer(app) as other:
            async with client(other.url) as td:
                calls: list[Awaitable[Any]] = [
                    td.check_auth(),
                    td.push("p", proj),
                    td.start("p", "wf"),
                    td.attempt("1"),
                    td.session("1"),
                    td.tasks("1"),
                    td.log_files("1"),
                    td.read_log("1", "f"),
                    td.kill("1"),
                    td.retry("1"),
                    td.wait("1", 1),
                    td.databases(),
                    td.ensure_database("x_db"),
                    td.tables("x_db"),
                    td.query("SELECT 1", "x_db"),
                    td.list_secrets("p"),
                    td.set_secret("p", "k", "v"),
                    td.delete_secret("p", "k"),
                ]
                for call in calls:
                    await expect(AuthenticationError, call)
                    assert "check TD_API_KEY and td_endpoint" in str(seen[-1])
                    assert "HTTP 401" in str(seen[-1])
        async with client(f"http://127.0.0.1:{_free_port()}") as down:
            await expect(TransientError, down.databases())
            seen.append(BackendError(repr(down)))
            seen.append(BackendError(repr(down._http)))

    anyio.run(scenario)
    assert len(seen) == 27
    for err in seen:
        for text in (str(err), repr(err), repr(err.args)):
            assert SENTINEL_KEY not in text
            assert SENTINEL_SECRET not in text
    assert caplog.records, "the client and the emulator log"
    for record in caplog.records:
        assert SENTINEL_SECRET not in record.getMessage()
    assert SENTINEL_SECRET not in caplog.text
    assert requests.seen  # the emulator really was called


@pytest.mark.slow
def test_403_is_the_same_clear_message(url: str, tmp_path: Path) -> None:
    proj = project_dir(tmp_path / "p", {"wf.dig": ECHO})

    async def scenario(td: TreasureDataBackend) -> None:
        await td.push("forbidden_proj", proj)
        done = await td.wait((await td.start("forbidden_proj", "wf", SESSION)).id, 20)
        listing = await td.workflow.http.request(
            "GET", f"{url}/api/logs/{done.id}/files", what="list"
        )
        direct = listing.json()["files"][0]["direct"]
        forged = direct.split("?")[0] + "?sig=0"
        with pytest.raises(AuthenticationError, match=r"HTTP 403.*check TD_API_KEY"):
            await td.workflow.http.request("GET", forged, what="download", authenticated=False)

    run(url, scenario)


@pytest.mark.slow
def test_no_retry_on_4xx(emulator: tuple[str, RequestLog]) -> None:
    url, requests = emulator

    async def scenario(td: TreasureDataBackend) -> None:
        before = len(requests.seen)
        with pytest.raises(NotFoundError):
            await td.attempt("999999")
        assert requests.seen[before:] == ["GET /api/attempts/999999"]
        before = len(requests.seen)
        with pytest.raises(BackendError, match="HTTP 400"):
            await td.api.create_database("Bad-Name")
        assert requests.seen[before:] == ["POST /v3/database/create/Bad-Name"]

    run(url, scenario, retry=RetryPolicy(max_tries=5, base_delay=0.01, max_total=5))


def test_digdags_task_states_read_as_the_enum_and_unknown_ones_as_running() -> None:
    assert mapping.task({"id": 1, "state": "group_error"}).state is TaskState.GROUP_ERROR
    assert mapping.task({"id": 1, "state": "SUCCESS"}).state is TaskState.SUCCESS
    assert mapping.task({"id": 1, "state": "some_new_state"}).state is TaskState.RUNNING
    assert mapping.task({"id": 1}).state is TaskState.RUNNING
