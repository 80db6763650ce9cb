"""The 3-attempt budget counts only real failures of the work.

What is not a failure of a step, and must not spend its budget: the backend not answering
(transport retries exhausted), the process running the step being killed (a server restart
mid-step), a second server racing for the same pipeline, an attempt the backend no longer
knows. Each scenario is real: the TD emulator throttling on 127.0.0.1, child processes
SIGKILLed in the middle of a step, the real local runner and state file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.cli.run import EXIT_FAILED, run_pipeline
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.faults import FaultPlan
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.state import StateStore
from tests.conftest import SENTINEL_KEY
from tests.test_orchestrator_rules import (
    HIST,
    SLOW_TASK,
    P,
    by_phase,
    run,
    state_doc,
    step_of,
    stop,
)

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

REPO = Path(__file__).resolve().parents[1]


def child(script: str, config: Path) -> subprocess.Popen[str]:
    """A second cdp-mcp process working on the same pipeline (as a second server would)."""
    code = "import anyio, sys\nfrom cdp_mcp.pipeline.orchestrator import Pipeline\n"
    code += f"CONFIG = {str(config)!r}\n" + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "TD_API_KEY": SENTINEL_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def pushed_ingestion(config: Path, slow: bool = False) -> None:
    run(P(config).init)
    gen = run(P(config).generate_phase, "ingestion")
    if slow:
        dig = Path(gen.directory) / f"{HIST}.dig"
        dig.write_text(dig.read_text() + SLOW_TASK)
    run(P(config).push_project, "ingestion")


# -- transport ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_start_that_td_keeps_throttling_is_not_counted(acme_config: Path) -> None:
    """Six 429s in a row exhaust the transport retries: the start never reached TD."""
    plan = FaultPlan(
        rate=1.0,
        seed=3,
        kinds=("throttle",),
        only=("PUT /api/attempts",),
        limit=6,
        retry_after=0.01,
    )
    app = create_app(acme_config.parent / "td_site", SENTINEL_KEY, faults=plan)
    with BackgroundServer(app) as server:
        raw = yaml.safe_load(acme_config.read_text())
        raw["global"].update(
            backend="treasuredata", td_endpoint=server.url, td_api_key="${TD_API_KEY}"
        )
        acme_config.write_text(yaml.safe_dump(raw))

        async def scenario() -> None:
            await Pipeline(acme_config).init()
            await Pipeline(acme_config).generate_phase("ingestion")
            await Pipeline(acme_config).push_project("ingestion")
            with pytest.raises(PipelineError, match="not counted against the step's attempts"):
                await Pipeline(acme_config).start_workflow("ingestion")
            step = step_of(acme_config, "ingestion", f"execute:{HIST}")
            assert (step["attempts"], step["status"], step["starting"]) == (0, "pending", None)
            status = Pipeline(acme_config).status()
            assert status.next_action.tool == "start_workflow"
            started = await Pipeline(acme_config).start_workflow("ingestion")
            assert started.attempt == 1
            done = await Pipeline(acme_config).get_session(started.session_id, 60)
            assert done.status == "success"

        anyio.run(scenario)
    assert app.state.faults.injected["throttle"] == 6


# -- a process killed mid-step -------------------------------------------------------------


@pytest.mark.slow
def test_a_validation_killed_half_way_is_given_back(acme_config: Path) -> None:
    pushed_ingestion(acme_config)
    for wf in ("shopify_ingest_hist", "shopify_ingest_inc"):
        started = run(P(acme_config).start_workflow, "ingestion", wf)
        assert run(P(acme_config).get_session, started.session_id, 60).status == "success"
    marker = acme_config.parent / "validating"
    proc = child(
        f"""
        import cdp_mcp.pipeline.orchestrator as orch
        from pathlib import Path

        async def stuck(*args, **kwargs):
            Path({str(marker)!r}).touch()
            await anyio.sleep(600)

        orch.validate_phase = stuck
        anyio.run(Pipeline(CONFIG).validate_tables, "ingestion")
        """,
        acme_config,
    )
    try:
        wait_for(marker.exists, "the child to begin validating")
        assert step_of(acme_config, "ingestion", "validate")["status"] == "running"
    finally:
        kill(proc)
    result = run(P(acme_config).validate_tables, "ingestion")
    assert result.verdict == "PASS"
    assert result.attempt == 1, "the killed validation must not count"


@pytest.mark.slow
def test_server_kills_during_a_workflow_do_not_spend_its_budget(acme_config: Path) -> None:
    """Three servers killed while the local runner ran the workflow: each start is given back."""
    pushed_ingestion(acme_config, slow=True)
    backend = LocalBackend(acme_config.parent / "acme_cdp")
    attempt_ids: list[str] = []
    for kill_number in range(1, 4):
        proc = child(
            """
            import time
            started = anyio.run(Pipeline(CONFIG).start_workflow, "ingestion")
            print(started.attempt_id, flush=True)
            time.sleep(600)
            """,
            acme_config,
        )
        try:
            assert proc.stdout is not None
            attempt_id = proc.stdout.readline().strip()
            assert attempt_id, proc.stderr.read() if proc.stderr else ""
            attempt_ids.append(attempt_id)

            def slow_scan_running(attempt: str = attempt_id) -> bool:
                tasks = run(backend.tasks, attempt)
                return any(t.state == "running" and "slow_scan" in t.full_name for t in tasks)

            wait_for(slow_scan_running, "the slow task to run")
        finally:
            kill(proc)
        session = run(P(acme_config).get_session, None, 0)
        assert session.status == "error"
        step = step_of(acme_config, "ingestion", f"execute:{HIST}")
        assert step["attempts"] == 0, f"kill {kill_number} spent an attempt"
        assert step["status"] == "failed" and "the runner stopped" in step["last_error"]
        assert step["details"]["interruptions"] == kill_number
        action = session.next_action
        if kill_number < 3:
            assert (action.tool, action.choices) == ("start_workflow", []), action
    # Something keeps killing the runner: the person decides, but nothing is refused.
    assert action.tool == "ask_person" and "interrupted 3 times" in action.why
    assert action.choices[0].startswith("resume it once more: start_workflow(")
    assert len(set(attempt_ids)) == 3
    again = run(P(acme_config).start_workflow, "ingestion")
    assert again.resumed_failed_tasks is True and again.attempt == 1
    stop(acme_config, again.attempt_id)


@pytest.mark.slow
def test_a_start_killed_before_it_was_recorded_adopts_its_attempt(acme_config: Path) -> None:
    """The crash lands after the backend created the session but before the state knew."""
    pushed_ingestion(acme_config, slow=True)
    marker = acme_config.parent / "started"
    proc = child(
        f"""
        import time
        from pathlib import Path
        from cdp_mcp.backends.local import LocalBackend

        real_start = LocalBackend.start

        async def start_then_hang(self, *args, **kwargs):
            attempt = await real_start(self, *args, **kwargs)
            Path({str(marker)!r}).write_text(attempt.id)
            time.sleep(600)  # the process dies here, before the state records the attempt

        LocalBackend.start = start_then_hang
        anyio.run(Pipeline(CONFIG).start_workflow, "ingestion")
        """,
        acme_config,
    )
    try:
        wait_for(marker.exists, "the backend to create the attempt")
        orphan = marker.read_text()
    finally:
        kill(proc)
    step = step_of(acme_config, "ingestion", f"execute:{HIST}")
    assert step["status"] == "running" and step["attempt_id"] is None and step["starting"]
    started = run(P(acme_config).start_workflow, "ingestion")
    # The interrupted start's session is adopted (its attempt was reaped as interrupted),
    # not started a second time beside it, and only one attempt counts.
    assert started.attempt_id == orphan and started.attempt == 1
    session = run(P(acme_config).get_session, started.session_id, 0)
    assert session.next_action.tool == "start_workflow"  # interrupted: resume, not a failure
    assert step_of(acme_config, "ingestion", f"execute:{HIST}")["attempts"] == 0


# -- a second server -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_server_gets_a_busy_answer_and_spends_nothing(acme_config: Path) -> None:
    pushed_ingestion(acme_config)
    store = StateStore(acme_config.parent / "acme_cdp")
    held = store.acquire_operation("push_project")  # another server's step in progress
    try:
        proc = child(
            """
            from cdp_mcp.pipeline.models import PipelineError
            try:
                anyio.run(Pipeline(CONFIG).start_workflow, "ingestion")
            except PipelineError as e:
                print(e)
            """,
            acme_config,
        )
        out, err = proc.communicate(timeout=60)
    finally:
        store.release_operation(held)
    assert out.startswith("busy: push_project (pid "), (out, err)
    assert "nothing was changed" in out
    assert f"execute:{HIST}" not in by_phase(state_doc(acme_config))["ingestion"]["steps"]
    started = run(P(acme_config).start_workflow, "ingestion")
    assert started.attempt == 1
    run(P(acme_config).get_session, started.session_id, 60)


# -- an attempt the backend does not know -----------------------------------------------------


@pytest.mark.slow
def test_an_unknown_attempt_is_marked_lost_with_the_choices(acme_config: Path) -> None:
    pushed_ingestion(acme_config)
    started = run(P(acme_config).start_workflow, "ingestion")
    run(P(acme_config).get_session, started.session_id, 60)
    # The state names an attempt the backend never had (a reset .cdp_local, say).
    path = acme_config.parent / "acme_cdp" / ".cdp_state" / "state.json"
    doc = json.loads(path.read_text())
    step = by_phase(doc)["ingestion"]["steps"][f"execute:{HIST}"]
    step.update(status="running", attempt_id="999", finished_at=None)
    path.write_text(json.dumps(doc))

    outcome = anyio.run(lambda: run_pipeline(acme_config, echo=lambda _line: None))
    assert outcome.exit_code == EXIT_FAILED, "the headless run must stop, not wait forever"
    assert "does not know attempt 999" in outcome.message
    assert any(
        s.startswith("run it again from the start: start_workflow(") for s in outcome.next_steps
    )
    step = step_of(acme_config, "ingestion", f"execute:{HIST}")
    assert (step["status"], step["attempts"]) == ("lost", 0)
    action = P(acme_config).status().next_action
    assert action.tool == "ask_person" and "lost" in action.why
    again = run(P(acme_config).start_workflow, "ingestion", HIST)
    assert again.attempt == 1 and again.attempt_id != "999"
    assert run(P(acme_config).get_session, again.session_id, 60).status == "success"


# -- a finished run is never discarded on its own ---------------------------------------------


def test_init_on_a_finished_pipeline_keeps_the_run(acme_config: Path) -> None:
    run(P(acme_config).init)
    for phase in ("ingestion", "hist_union", "staging", "unification"):
        run(P(acme_config).skip_phase, phase, True)
    # The report's writer was killed half way (or never ran): init must not start over.
    again = run(P(acme_config).init)
    assert (again.finished, again.new_run, again.run) == (True, False, 1)
    assert again.next_action.tool == "final_report"
    assert [p.status for p in again.phases] == ["skipped"] * 4
    report = run(P(acme_config).final_report)
    assert report.complete
    fresh = run(P(acme_config).init, new_run=True)
    assert (fresh.new_run, fresh.run) == (True, 2)
    assert [p.status for p in fresh.phases] == ["pending"] * 4
    assert (Path(report.path).parent / "run-1" / Path(report.path).name).is_file()
