"""Transport retries against the emulator's fault mode: bounded, honest, and safe to repeat."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette

from cdp_mcp.backends.td import PollPolicy, RetryPolicy, TransientError
from cdp_mcp.backends.td.transport import retry_after_seconds
from cdp_mcp.backends.treasuredata import TreasureDataBackend
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.faults import FaultPlan
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.emulator.site import Site
from tests.test_td_backend import ECHO, SLOW_SQL, RequestLog, project_dir

KEY = "emulator-test-key"
SESSION = datetime(2026, 2, 1, tzinfo=UTC)
FAST_POLL = PollPolicy(first=0.02, factor=1.5, longest=0.2)


def backend(url: str, retry: RetryPolicy, **options: Any) -> TreasureDataBackend:
    return TreasureDataBackend(url, KEY, retry=retry, poll=FAST_POLL, seed=1, **options)


def faulty(tmp_path: Path, plan: FaultPlan) -> tuple[Starlette, RequestLog]:
    app = create_app(tmp_path / "site", KEY, faults=plan)
    return app, RequestLog(app)


def site_of(app: Starlette) -> Site:
    site: Site = app.state.site
    return site


@pytest.mark.slow
def test_a_full_cycle_completes_at_30_percent_faults(tmp_path: Path) -> None:
    plan = FaultPlan(rate=0.3, seed=11, retry_after=0.05, slow_seconds=0.05)
    app, served = faulty(tmp_path, plan)
    proj = project_dir(tmp_path / "p", {"wf.dig": ECHO + "+b:\n  echo>: two\n"})
    retry = RetryPolicy(max_tries=12, base_delay=0.01, max_delay=0.1, max_total=20)

    async def scenario(url: str) -> None:
        async with backend(url, retry) as td:
            await td.check_auth()
            pushed = await td.push("cycle_proj", proj)
            assert (await td.push("cycle_proj", proj)).revision == pushed.revision
            attempt = await td.start("cycle_proj", "wf", session_time=SESSION)
            done = await td.wait(attempt.id, timeout=30)
            assert done.status == "success"
            assert {t.state for t in await td.tasks(done.id)} == {"success"}
            logs = await td.log_files(done.id)
            assert "hello" in await td.read_log(done.id, logs[0].file_name)
            await td.ensure_database("cycle_db")
            await td.query("CREATE TABLE n AS SELECT range AS v FROM range(700)", "cycle_db")
            result = await td.query("SELECT v FROM n ORDER BY v", "cycle_db", limit=600)
            assert result.truncated and result.rows[599] == [599]
            assert [t.count for t in await td.tables("cycle_db")] == [700]

    started = time.monotonic()
    with BackgroundServer(served) as server:
        anyio.run(scenario, server.url)
    assert time.monotonic() - started < 20
    injected = app.state.faults.injected
    assert all(injected[kind] > 0 for kind in ("error", "throttle", "drop", "slow")), injected
    # retried deliveries created nothing twice: one session attempt, one job per query
    site = site_of(app)
    assert [r["id"] for r in site.runtime.store.attempts_of_session(1)] == [1]
    assert len(site.jobs) == 2


@pytest.mark.slow
def test_repeated_deliveries_of_non_idempotent_calls_are_adopted(tmp_path: Path) -> None:
    """Each call's first response is lost after the server acted on it."""
    only = ("PUT /api/projects", "PUT /api/attempts", "POST /v3/job/issue", "POST /api/attempts/")
    app, served = faulty(tmp_path, FaultPlan(rate=1.0, kinds=("drop",), only=only, limit=1))
    wf = (
        "+init:\n  td_ddl>:\n  create_databases: [drop_db]\n"
        f"+slow:\n  td>:\n  query: {SLOW_SQL}\n  database: drop_db\n"
    )
    proj = project_dir(tmp_path / "p", {"wf.dig": wf})
    retry = RetryPolicy(max_tries=3, base_delay=0.01, max_total=5)

    async def scenario(url: str) -> None:
        async with backend(url, retry) as td:
            pushed = await td.push("drop_proj", proj)  # 409 on the retry: adopted
            attempt = await td.start("drop_proj", "wf", session_time=SESSION)  # 409: adopted
            assert attempt.session_time == SESSION
            while not any(t.state == "running" for t in await td.tasks(attempt.id)):
                await anyio.sleep(0.02)
            await anyio.sleep(0.2)  # the query has started (see test_kill_a_running_attempt)
            killed = await td.kill(attempt.id)  # 409 on the retry, but it was our kill
            assert killed.cancel_requested
            assert (await td.wait(attempt.id, 10)).status == "killed"
            result = await td.query("SELECT 42 AS answer", "drop_db")  # 409 names the job
            assert result.rows == [[42]]
            assert pushed.revision and (await td.push("drop_proj", proj)).id == pushed.id

    with BackgroundServer(served) as server:
        anyio.run(scenario, server.url)
    assert app.state.faults.injected["drop"] == 4
    for call in only:
        assert sum(s.startswith(call) for s in served.seen) >= 2, call
    site = site_of(app)
    assert len(site.runtime.store.attempts_of_session(1)) == 1
    assert len(site.jobs) == 1


@pytest.mark.slow
def test_a_persistent_500_gives_up_within_the_bound(tmp_path: Path) -> None:
    _, served = faulty(tmp_path, FaultPlan(rate=1.0, kinds=("error",)))

    async def scenario(url: str) -> None:
        by_count = RetryPolicy(max_tries=4, base_delay=0.05, max_delay=0.2, max_total=10)
        async with backend(url, by_count) as td:
            with pytest.raises(TransientError, match=r"after 4 tries .*HTTP 500") as err:
                await td.databases()
            assert "try again later" in str(err.value)
        assert served.seen == ["GET /v3/database/list"] * 4
        by_time = RetryPolicy(max_tries=1000, base_delay=0.1, max_delay=0.1, max_total=0.5)
        async with backend(url, by_time) as td:
            started = time.monotonic()
            with pytest.raises(TransientError):
                await td.start("p", "wf")
            assert time.monotonic() - started < 1.0
        assert 2 < len(served.seen) - 4 < 10

    with BackgroundServer(served) as server:
        anyio.run(scenario, server.url)


@pytest.mark.slow
def test_429_waits_what_retry_after_asks(tmp_path: Path) -> None:
    plan = FaultPlan(rate=1.0, kinds=("throttle",), retry_after=0.3)
    _, served = faulty(tmp_path, plan)

    async def scenario(url: str) -> None:
        async with backend(url, RetryPolicy(max_tries=3, base_delay=0.001, max_total=5)) as td:
            started = time.monotonic()
            with pytest.raises(TransientError, match="HTTP 429"):
                await td.databases()
            assert time.monotonic() - started >= 0.6  # two waits of Retry-After
        async with backend(url, RetryPolicy(max_tries=5, max_total=0.2)) as td:
            with pytest.raises(TransientError, match=r"after 1 try .*asked to wait"):
                await td.databases()

    with BackgroundServer(served) as server:
        anyio.run(scenario, server.url)


@pytest.mark.slow
def test_every_call_has_a_timeout(tmp_path: Path) -> None:
    # Each answer comes after 2 s; without a timeout the call would wait and succeed, so
    # the ReadTimeout itself shows the limit applied (no clock is asserted: a loaded
    # machine stretches every wait).
    _, served = faulty(tmp_path, FaultPlan(rate=1.0, kinds=("slow",), slow_seconds=2.0))

    async def scenario(url: str) -> None:
        retry = RetryPolicy(max_tries=2, base_delay=0.01, max_total=5)
        async with backend(url, retry, timeout=0.15) as td:
            with pytest.raises(TransientError, match="ReadTimeout"):
                await td.attempt("1")

    with BackgroundServer(served) as server:
        anyio.run(scenario, server.url)


def test_backoff_grows_with_jitter_and_retry_after_reads_both_forms() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(3)
    for retry, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = {policy.backoff(retry, rng) for _ in range(20)}
        assert all(cap / 2 <= d <= cap for d in delays) and len(delays) > 1
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_seconds(later) or 0) <= 30
