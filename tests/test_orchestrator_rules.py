"""The rules the orchestrator enforces, on the real embedded backend.

Every scenario runs the seed's example config (tests/fixtures/acme.yml, copied to tmp)
through `Pipeline` exactly as the MCP tools do: a fresh Pipeline per call, the real
LocalBackend (DuckDB warehouse, Digdag-compatible runner), the real state file. Failures are
real too: a source file that disappears, a project file that does not compile, a table
dropped behind the pipeline's back, a query too slow to finish.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from pydantic import BaseModel

from cdp_mcp.backends.base import ConflictError
from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.pipeline.models import PipelineError, SessionResult
from cdp_mcp.pipeline.orchestrator import LOG_PAGE_BYTES, Pipeline
from cdp_mcp.pipeline.reports.report import report_path
from cdp_mcp.pipeline.state import StateStore
from cdp_mcp.server.app import render_implement_prompt
from tests.conftest import FIXTURES, SENTINEL_KEY

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

T = TypeVar("T")

HIST, INC = "shopify_ingest_hist", "shopify_ingest_inc"
# A scan DuckDB needs hours for: a workflow task that is still running when we look.
SLOW_TASK = """
+slow_scan:
  td>:
  query: SELECT sum(range) AS s FROM range(1000000000000)
"""


def run(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    async def main() -> T:
        return await fn(*args, **kwargs)

    return anyio.run(main)


def P(config: Path, **kwargs: Any) -> Pipeline:
    """A pipeline object per call, like the MCP server makes one per tool call."""
    return Pipeline(config, **kwargs)


def state_doc(config: Path) -> dict[str, Any]:
    return json.loads((config.parent / "acme_cdp" / ".cdp_state" / "state.json").read_text())


def by_phase(doc: dict[str, Any]) -> dict[str, Any]:
    """A one-source state's stages by phase name."""
    return {ps["phase"]: ps for ps in doc["stages"].values()}


def step_of(config: Path, phase: str, step: str) -> dict[str, Any]:
    return by_phase(state_doc(config))[phase]["steps"][step]


def wait_done(config: Path, session_id: str, **kwargs: Any) -> SessionResult:
    return run(P(config, **kwargs).get_session, session_id, 60)


def run_workflow(config: Path, phase: str, workflow: str | None = None) -> SessionResult:
    started = run(P(config).start_workflow, phase, workflow)
    return wait_done(config, started.session_id)


def run_ingestion(config: Path, validate: bool = True) -> None:
    run(P(config).init)
    run(P(config).generate_phase, "ingestion")
    run(P(config).push_project, "ingestion")
    for wf in (HIST, INC):
        session = run_workflow(config, "ingestion", wf)
        assert session.status == "success", session.failed_tasks
    if validate:
        assert run(P(config).validate_tables, "ingestion").verdict == "PASS"


def warehouse_rows(config: Path, sql: str) -> list[list[Any]]:
    backend = LocalBackend(config.parent / "acme_cdp")
    return run(backend.query, sql, "acme_src").rows


# -- phase order -----------------------------------------------------------------------
def test_phases_and_steps_are_refused_out_of_order_with_the_next_call(acme_config: Path) -> None:
    init = run(P(acme_config).init)
    assert init.next_action.tool == "generate_phase"
    assert init.next_action.arguments["phase"] == "ingestion"
    state_file = acme_config.parent / "acme_cdp" / ".cdp_state" / "state.json"
    before = state_file.read_bytes()

    for later in ("hist_union", "staging", "unification"):
        with pytest.raises(PipelineError) as err:
            run(P(acme_config).generate_phase, later)
        text = str(err.value)
        stage = later if later == "unification" else f"{later}:shopify"
        assert f"{stage} is locked" in text
        assert "has not validated PASS" in text
        # names the exact call that moves the pipeline on
        assert (
            f"generate_phase(config_path='{acme_config}', phase='ingestion', source='shopify')"
            in text
        )
    with pytest.raises(
        PipelineError, match=r"hist_union:shopify is locked: ingestion:shopify has not validated"
    ):
        run(P(acme_config).push_project, "hist_union")
    with pytest.raises(PipelineError, match=r"generate ingestion:shopify first: generate_phase"):
        run(P(acme_config).push_project, "ingestion")
    with pytest.raises(PipelineError, match=r"generate ingestion:shopify first"):
        run(P(acme_config).start_workflow, "ingestion")
    with pytest.raises(PipelineError, match=r"unknown phase 'ingest'; phases are: ingestion"):
        run(P(acme_config).generate_phase, "ingest")
    assert state_file.read_bytes() == before  # a refused call changes nothing

    run(P(acme_config).generate_phase, "ingestion")
    with pytest.raises(PipelineError, match=r"deploy ingestion:shopify first: push_project"):
        run(P(acme_config).start_workflow, "ingestion")
    run(P(acme_config).push_project, "ingestion")
    with pytest.raises(PipelineError, match=rf"run {HIST} before {INC}"):
        run(P(acme_config).start_workflow, "ingestion", INC)
    with pytest.raises(PipelineError, match=r"no workflow 'nope'"):
        run(P(acme_config).start_workflow, "ingestion", "nope")
    with pytest.raises(PipelineError, match=rf"cannot be validated before .* not yet: {HIST}"):
        run(P(acme_config).validate_tables, "ingestion")


def test_a_warning_blocks_the_next_phase_until_accepted(acme_config: Path) -> None:
    # Every product was last updated before start_date: nothing of it is loaded.
    products = acme_config.parent / "shopify" / "products.csv"
    products.write_text(
        "id,title,vendor,price,updated_at\n"
        "10,Mug,Acme,9.5,2022-01-01T00:00:00Z\n"
        "11,Tee,Acme,19.0,2023-08-31T23:59:59Z\n"
    )
    run_ingestion(acme_config, validate=False)
    result = run(P(acme_config).validate_tables, "ingestion")
    assert result.verdict == "WARN"
    assert result.accepted_warnings is False
    assert any("products" in w for w in result.warnings), result.warnings
    assert result.metrics["rows_loaded"]["products"] == {"historical": 0, "incremental": 0}
    # a person decides (not the accepting call itself): accept (the exact call), fix, skip
    # or abort
    assert result.next_action.tool == "ask_person"
    assert "accept_warnings" not in result.next_action.arguments
    assert result.next_action.choices[0] == (
        f"accept the warnings: validate_tables(config_path='{acme_config}', "
        "phase='ingestion', source='shopify', accept_warnings=true)"
    )
    prompt = render_implement_prompt(str(acme_config))
    assert "Phase ingestion of source shopify needs a decision" in prompt
    assert "1. accept the warnings: validate_tables(" in prompt
    assert "never skip, accept warnings or abort on your own" in prompt

    with pytest.raises(PipelineError) as err:
        run(P(acme_config).generate_phase, "hist_union")
    assert "status: warned" in str(err.value)
    assert "accept_warnings=true" in str(err.value)

    accepted = run(P(acme_config).validate_tables, "ingestion", accept_warnings=True)
    assert accepted.verdict == "WARN" and accepted.accepted_warnings is True
    assert accepted.attempt == 1  # accepting is a decision, not another validation
    assert accepted.next_action.tool == "generate_phase"
    assert accepted.next_action.arguments["phase"] == "hist_union"
    assert by_phase(state_doc(acme_config))["ingestion"]["status"] == "accepted"
    generated = run(P(acme_config).generate_phase, "hist_union")
    assert generated.workflows == ["shopify_hist_union"]


def test_skipping_a_phase_needs_confirm_and_then_unlocks_the_next(acme_config: Path) -> None:
    run(P(acme_config).init)
    with pytest.raises(PipelineError, match=r"skipping ingestion:shopify needs confirm=true"):
        run(P(acme_config).skip_phase, "ingestion", False)
    assert by_phase(state_doc(acme_config))["ingestion"]["status"] == "pending"
    with pytest.raises(PipelineError, match="hist_union:shopify is locked"):
        run(P(acme_config).generate_phase, "hist_union")

    decision = run(P(acme_config).skip_phase, "ingestion", True)
    assert decision.status == "skipped"
    assert decision.next_action.tool == "generate_phase"
    assert decision.next_action.arguments["phase"] == "hist_union"
    assert by_phase(state_doc(acme_config))["ingestion"]["status"] == "skipped"
    assert run(P(acme_config).generate_phase, "hist_union").phase == "hist_union"


# -- the retry budget ------------------------------------------------------------------
def test_the_fourth_deploy_is_refused_with_the_choices(acme_config: Path) -> None:
    run(P(acme_config).init)
    gen = run(P(acme_config).generate_phase, "ingestion")
    dig = Path(gen.directory) / f"{HIST}.dig"
    dig.write_text(dig.read_text() + "\n+broken:\n  td>: [unclosed\n")

    for attempt in (1, 2, 3):
        with pytest.raises(PipelineError) as err:
            run(P(acme_config).push_project, "ingestion")
        assert "rejected" in str(err.value) and f"Attempt {attempt} of 3" in str(err.value)
    status = P(acme_config).status()
    assert status.next_action.tool == "ask_person"
    assert "deploy failed 3 times" in status.next_action.why
    with pytest.raises(PipelineError) as err:
        run(P(acme_config).push_project, "ingestion")
    text = str(err.value)
    assert "deploying ingestion:shopify already failed 3 times (the limit is 3)" in text
    assert "init_pipeline" in text
    assert "skip_phase(config_path, 'ingestion', source='shopify', confirm=true)" in text
    assert "abort_pipeline(config_path)" in text
    assert step_of(acme_config, "ingestion", "deploy")["attempts"] == 3
    # init_pipeline on the same file re-opens nothing (the budget is not a loophole)
    assert run(P(acme_config).init).reset_steps == []
    with pytest.raises(PipelineError, match="already failed 3 times"):
        run(P(acme_config).push_project, "ingestion")


def test_the_fourth_validation_is_refused_and_the_phase_fails(acme_config: Path) -> None:
    run_ingestion(acme_config, validate=False)
    # The table is gone by the time it is checked (someone dropped it).
    warehouse_rows(acme_config, "DROP TABLE acme_src.shopify_orders_hist")
    for attempt in (1, 2, 3):
        result = run(P(acme_config).validate_tables, "ingestion")
        assert result.verdict == "FAIL" and result.attempt == attempt
        assert "acme_src.shopify_orders_hist does not exist" in result.failures
    assert result.next_action.tool == "ask_person"
    assert by_phase(state_doc(acme_config))["ingestion"]["status"] == "failed"
    with pytest.raises(PipelineError, match=r"validating ingestion:shopify already failed 3 times"):
        run(P(acme_config).validate_tables, "ingestion")
    with pytest.raises(PipelineError) as err:
        run(P(acme_config).generate_phase, "hist_union")
    assert "status: failed" in str(err.value)
    assert "skip_phase(config_path, 'ingestion', source='shopify', confirm=true)" in str(err.value)


def test_a_failing_workflow_runs_out_of_attempts_until_the_config_is_fixed(
    acme_config: Path,
) -> None:
    run(P(acme_config).init)
    run(P(acme_config).generate_phase, "ingestion")
    run(P(acme_config).push_project, "ingestion")
    # The extract moves after the project was generated: td_load> cannot read it.
    moved = acme_config.parent / "shopify_v2"
    (acme_config.parent / "shopify").rename(moved)

    sessions = set()
    for attempt in (1, 2, 3):
        started = run(P(acme_config).start_workflow, "ingestion")
        assert started.workflow == HIST and started.attempt == attempt
        assert started.resumed_failed_tasks is (attempt > 1)
        sessions.add(started.session_id)
        session = wait_done(acme_config, started.session_id)
        assert session.status == "error"
        assert session.failed_tasks, "a failed session names its failed tasks"
        failed = session.failed_tasks[0]
        assert "+load" in failed.name and failed.log_tail.strip()
        # The data is at fault (the folder moved), not the config: a person fixes it first,
        # so even before the budget is spent the answer is not a blind retry.
        assert session.next_action.tool == "ask_person"
        assert session.next_action.choices
    assert len(sessions) == 1  # every retry is a new attempt of the same session

    with pytest.raises(PipelineError) as err:
        run(P(acme_config).start_workflow, "ingestion")
    text = str(err.value)
    assert f"running {HIST} already failed 3 times (the limit is 3)" in text
    assert "skip_phase(config_path, 'ingestion', source='shopify', confirm=true)" in text
    assert "abort_pipeline" in text and "init_pipeline" in text
    # the resume prompt asks the person, with the exact call of each choice
    prompt = render_implement_prompt(str(acme_config))
    assert (
        "No tool call now: ingestion:shopify: step execute:shopify_ingest_hist failed 3" in prompt
    )
    assert (
        f"skip_phase(config_path='{acme_config}', phase='ingestion', source='shopify', confirm=true)"
        in prompt
    )
    assert f"abort_pipeline(config_path='{acme_config}')" in prompt
    assert "Call `ask_person`" not in prompt
    with pytest.raises(PipelineError, match=r"source_path .*shopify is not a folder"):
        run(P(acme_config).generate_phase, "ingestion")

    # init_pipeline with the unfixed file says what is wrong and re-opens nothing...
    with pytest.raises(PipelineError, match=r"ingestion\.source_path: .* is not a folder"):
        run(P(acme_config).init)
    with pytest.raises(PipelineError, match="already failed 3 times"):
        run(P(acme_config).start_workflow, "ingestion")
    # ...a fixed config does, and the phase must be generated again from it.
    acme_config.write_text(acme_config.read_text().replace("./shopify", "./shopify_v2"))
    with pytest.raises(PipelineError, match="changed since init_pipeline read it"):
        run(P(acme_config).start_workflow, "ingestion")
    init = run(P(acme_config).init)
    assert f"ingestion:shopify.execute:{HIST}" in init.reset_steps
    assert init.next_action.tool == "generate_phase"
    with pytest.raises(PipelineError, match=r"generate ingestion:shopify first .*config changed"):
        run(P(acme_config).start_workflow, "ingestion")
    regenerated = run(P(acme_config).generate_phase, "ingestion")
    assert regenerated.changed is True
    assert regenerated.next_action.tool == "push_project"
    run(P(acme_config).push_project, "ingestion")
    for wf in (HIST, INC):
        session = run_workflow(acme_config, "ingestion", wf)
        assert session.status == "success", session.failed_tasks
    assert step_of(acme_config, "ingestion", f"execute:{HIST}")["attempts"] == 1
    assert run(P(acme_config).validate_tables, "ingestion").verdict == "PASS"


def test_a_retry_after_a_failure_resumes_only_the_failed_tasks(acme_config: Path) -> None:
    run(P(acme_config).init)
    run(P(acme_config).generate_phase, "ingestion")
    run(P(acme_config).push_project, "ingestion")
    customers = acme_config.parent / "shopify" / "customers.csv"
    hidden = customers.with_suffix(".away")
    customers.rename(hidden)

    first = run(P(acme_config).start_workflow, "ingestion")
    session = wait_done(acme_config, first.session_id)
    assert session.status == "error"
    assert [t.name for t in session.failed_tasks if t.name.endswith("+load")]
    assert "customers" in (session.failed_tasks[0].error or "") + session.failed_tasks[0].log_tail
    # A file missing is the data's fault: the person restores it, then the retry is theirs.
    assert session.next_action.tool == "ask_person"
    assert "source data, not the config" in session.next_action.why
    assert session.next_action.choices[0].startswith("once the file is fixed, retry the failed")

    hidden.rename(customers)  # the person fixed the cause
    retry = run(P(acme_config).start_workflow, "ingestion")
    assert retry.resumed_failed_tasks is True
    assert retry.session_id == first.session_id
    assert retry.attempt_id != first.attempt_id
    assert retry.attempt == 2
    assert wait_done(acme_config, retry.session_id).status == "success"

    # What the warehouse says: orders and products were loaded once, by the first attempt;
    # customers failed in the first and loaded in the retry.
    log = warehouse_rows(
        acme_config,
        "SELECT object_name, status, attempt_id FROM acme_src.cdp_mcp_ingestion_log "
        "WHERE mode = 'historical' ORDER BY object_name, time, status",
    )
    by_object: dict[str, list[tuple[str, str]]] = {}
    for obj, status, attempt_id in log:
        by_object.setdefault(obj, []).append((status, attempt_id))
    assert by_object["orders"] == [("success", first.attempt_id)]
    assert by_object["products"] == [("success", first.attempt_id)]
    assert ("error", first.attempt_id) in by_object["customers"]
    assert ("success", retry.attempt_id) in by_object["customers"]
    # no row loaded twice
    dupes = warehouse_rows(
        acme_config,
        "SELECT count(*) FROM (SELECT id, updated_at FROM acme_src.shopify_orders_hist "
        "GROUP BY 1, 2 HAVING count(*) > 1)",
    )
    assert dupes == [[0]]
    # the retry's log holds the customers load, not another orders load
    logs = run(P(acme_config).get_logs, retry.attempt_id)
    text = logs.text
    while logs.next_offset is not None:
        logs = run(P(acme_config).get_logs, retry.attempt_id, None, logs.next_offset)
        text += logs.text
    assert "customers" in text and "orders.csv" not in text

    # Validation reads the last load of each object: the retry's success, even when the
    # failed load was logged within the same second (the log's time is in seconds).
    assert run_workflow(acme_config, "ingestion", INC).status == "success"
    warehouse_rows(
        acme_config,
        "INSERT INTO acme_src.cdp_mcp_ingestion_log (object_name, mode, status, attempt_id, message, "
        "time) SELECT object_name, mode, 'error', '0', 'an older failure', time "
        "FROM acme_src.cdp_mcp_ingestion_log WHERE status = 'success'",
    )
    validation = run(P(acme_config).validate_tables, "ingestion")
    assert validation.verdict == "PASS", validation.failures


# -- config changes --------------------------------------------------------------------
def test_regenerating_after_a_config_change_resets_that_phase_and_the_later_ones(
    acme_config: Path,
) -> None:
    run_ingestion(acme_config)
    run(P(acme_config).generate_phase, "hist_union")
    run(P(acme_config).push_project, "hist_union")

    # Same config, regenerated: nothing changes, nothing is reset.
    same = run(P(acme_config).generate_phase, "ingestion")
    assert same.changed is False and same.reset_phases == []
    phases = by_phase(state_doc(acme_config))
    assert phases["ingestion"]["status"] == "passed"  # still validated
    assert phases["hist_union"]["steps"]["deploy"]["status"] == "succeeded"
    assert same.next_action.tool == "start_workflow"  # hist_union carries on
    assert same.next_action.arguments["phase"] == "hist_union"

    acme_config.write_text(
        acme_config.read_text().replace('"2023-09-01T00:00:00.000000"', '"2023-10-01T00:00:00"')
    )
    with pytest.raises(PipelineError, match="changed since init_pipeline"):
        run(P(acme_config).generate_phase, "ingestion")
    init = run(P(acme_config).init)
    assert init.resumed is True
    changed = run(P(acme_config).generate_phase, "ingestion")
    assert changed.changed is True
    assert changed.reset_phases == ["hist_union:shopify"]
    assert changed.next_action.tool == "push_project"
    phases = by_phase(state_doc(acme_config))
    assert phases["ingestion"]["status"] == "in_progress"
    assert set(phases["ingestion"]["steps"]) == {"generate"}
    assert phases["hist_union"]["status"] == "pending" and phases["hist_union"]["steps"] == {}
    with pytest.raises(PipelineError, match="hist_union:shopify is locked"):
        run(P(acme_config).push_project, "hist_union")


# -- monitor deadline and abort --------------------------------------------------------


def start_slow_ingestion(config: Path) -> str:
    """Ingestion whose backfill ends in a scan that would run for hours; its attempt id."""
    run(P(config).init)
    gen = run(P(config).generate_phase, "ingestion")
    dig = Path(gen.directory) / f"{HIST}.dig"
    dig.write_text(dig.read_text() + SLOW_TASK)
    run(P(config).push_project, "ingestion")
    return run(P(config).start_workflow, "ingestion").attempt_id


def stop(config: Path, attempt_id: str) -> None:
    """Make sure the scan is not left burning CPU, whatever the test did."""
    backend = LocalBackend(config.parent / "acme_cdp")
    with contextlib.suppress(ConflictError):  # it ended meanwhile
        run(backend.kill, attempt_id)
    assert run(backend.wait, attempt_id, 30).done


def test_past_the_monitor_deadline_the_step_times_out_with_choices(acme_config: Path) -> None:
    attempt_id = start_slow_ingestion(acme_config)
    try:
        t0 = time.monotonic()
        session = run(P(acme_config, monitor_deadline=0.5).get_session, None, 30)
        waited = time.monotonic() - t0
        assert waited < 10, "the wait ends at the monitor deadline, not at wait_seconds"
        assert session.timed_out is True and session.status == "running"
        assert session.next_action.tool == "start_workflow"
        choices = session.next_action.choices
        assert choices[0].startswith("retry: start_workflow(")
        assert choices[1] == (
            f"wait longer: get_session(config_path='{acme_config}', "
            f"session_id='{session.session_id}', wait_seconds=600)"
        )
        assert [c.split(":")[0] for c in choices[2:]] == ["fix", "skip", "abort"]
        step = step_of(acme_config, "ingestion", f"execute:{HIST}")
        assert step["status"] == "timed_out"
        assert "monitor deadline" in step["last_error"]
        status = P(acme_config).status()
        assert "timed out" in status.next_action.why

        # The person chooses retry: the stuck attempt is killed, the session retried.
        retry = run(P(acme_config).start_workflow, "ingestion")
        assert retry.resumed_failed_tasks is True and retry.attempt_id != attempt_id
        backend = LocalBackend(acme_config.parent / "acme_cdp")
        assert run(backend.attempt, attempt_id).status == "killed"
        stop(acme_config, retry.attempt_id)
    finally:
        stop(acme_config, attempt_id)


def test_abort_kills_the_running_attempt_and_writes_a_partial_report(acme_config: Path) -> None:
    attempt_id = start_slow_ingestion(acme_config)
    try:
        decision = run(P(acme_config).abort)
    finally:
        stop(acme_config, attempt_id)
    backend = LocalBackend(acme_config.parent / "acme_cdp")
    assert run(backend.attempt, attempt_id).status == "killed"
    assert f"killed attempts {attempt_id}" in decision.message
    assert decision.status == "aborted"
    # The partial report is written: what comes next is the person's decision.
    assert decision.next_action.tool == "ask_person"
    assert any("new_run=true" in c for c in decision.next_action.choices)

    report = Path(decision.report_path or "")
    assert report == report_path(P(acme_config).cfg) and report.is_file()
    text = report.read_text()
    assert "**Aborted**" in text and "stopped at phase **ingestion (shopify)**" in text
    assert f"execute:{HIST} | failed" in text and "killed by abort_pipeline" in text
    status = P(acme_config).status()
    assert status.aborted is True
    with pytest.raises(PipelineError, match="the pipeline was aborted"):
        run(P(acme_config).generate_phase, "ingestion")
    with pytest.raises(PipelineError, match="the pipeline was aborted"):
        run(P(acme_config).start_workflow, "ingestion")
    # init_pipeline alone keeps the aborted run as it is; only new_run=true starts over,
    # keeping the history and the earlier run's report.
    again = run(P(acme_config).init)
    assert (again.resumed, again.new_run, again.finished, again.run) == (True, False, True, 1)
    assert again.next_action.tool == "ask_person"
    assert state_doc(acme_config)["aborted"] is True
    init = run(P(acme_config).init, new_run=True)
    assert init.new_run is True and init.run == 2
    assert init.next_action.tool == "generate_phase"
    assert state_doc(acme_config)["history"][0]["aborted"] is True
    kept = report.parent / "run-1" / report.name
    assert "**Aborted**" in kept.read_text() and not report.exists()


# -- concurrency, restart --------------------------------------------------------------
def test_two_starts_at_once_start_one_attempt(acme_config: Path) -> None:
    run(P(acme_config).init)
    run(P(acme_config).generate_phase, "ingestion")
    run(P(acme_config).push_project, "ingestion")
    results: list[object] = []
    barrier = threading.Barrier(2)

    def call() -> None:
        barrier.wait()
        try:
            results.append(run(P(acme_config).start_workflow, "ingestion", HIST))
        except PipelineError as e:
            results.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [r for r in results if isinstance(r, BaseModel)]
    refused = [r for r in results if isinstance(r, PipelineError)]
    assert len(started) == 1 and len(refused) == 1
    assert "already running" in str(refused[0])
    step = step_of(acme_config, "ingestion", f"execute:{HIST}")
    assert step["attempts"] == 1
    assert wait_done(acme_config, step["session_id"]).status == "success"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pipeline whose ingestion validated PASS, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("ingested")
    shutil.copytree(FIXTURES / "shopify", root / "shopify")
    shutil.copy(FIXTURES / "acme.yml", root / "acme.yml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TD_API_KEY", SENTINEL_KEY)
        run_ingestion(root / "acme.yml")
    return root / "acme.yml"


def test_the_state_survives_a_restart(ingested: Path) -> None:
    expected = {"config_path": str(ingested), "phase": "hist_union", "source": "shopify"}
    # a new Pipeline object (a restarted server)...
    status = Pipeline(ingested).status()
    assert status.next_action.tool == "generate_phase"
    assert status.next_action.arguments == expected
    assert [p.status for p in status.phases] == ["passed", "pending", "pending", "pending"]
    init = run(Pipeline(ingested).init)
    assert init.resumed is True and init.next_action.arguments == expected
    # ...and a new process
    out = subprocess.run(
        [sys.executable, "-m", "cdp_mcp.cli.main", "status", str(ingested)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "ingestion    passed" in out.stdout
    assert f"execute:{HIST}" in out.stdout and "1/3" in out.stdout
    assert "next: render the hist_union:shopify project: `cdp-mcp run" in out.stdout


def test_query_refuses_writes_and_truncates(ingested: Path) -> None:
    p = Pipeline(ingested)
    for sql in (
        "DELETE FROM acme_src.shopify_orders_hist",
        "INSERT INTO acme_src.shopify_orders_hist SELECT * FROM acme_src.shopify_orders_hist",
        "DROP TABLE acme_src.shopify_orders_hist",
        "UPDATE acme_src.shopify_orders_hist SET id = 0",
        "CREATE TABLE acme_src.x AS SELECT 1 AS a",
        "WITH gone AS (DELETE FROM acme_src.shopify_orders_hist RETURNING *) SELECT * FROM gone",
        "SELECT 1; DELETE FROM acme_src.shopify_orders_hist",
        "SELECT 1; SELECT 2",
    ):
        with pytest.raises(PipelineError, match=r"read-only|one statement|does not parse"):
            run(p.query, sql)
    rows = run(p.query, "SELECT count(*) AS n FROM acme_src.shopify_orders_hist")
    assert rows.columns == ["n"] and rows.rows[0][0] > 0  # nothing was deleted

    many = run(p.query, "SELECT x FROM UNNEST(SEQUENCE(1, 50)) AS t(x) ORDER BY x", 10)
    assert many.row_count == 10 and many.truncated is True
    assert [r[0] for r in many.rows] == list(range(1, 11))
    few = run(p.query, "SELECT x FROM UNNEST(SEQUENCE(1, 5)) AS t(x)", 10)
    assert few.row_count == 5 and few.truncated is False
    shown = run(p.query, "SHOW TABLES FROM acme_src")
    assert any("shopify_orders_hist" in str(r) for r in shown.rows)
    cte = run(p.query, "WITH t AS (SELECT 1 AS a) SELECT a FROM t")
    assert cte.rows == [[1]]
    described = run(p.query, "DESCRIBE acme_src.shopify_orders_hist")
    assert described.row_count > 0


def test_logs_come_in_pages(ingested: Path) -> None:
    attempt_id = step_of(ingested, "ingestion", f"execute:{HIST}")["attempt_id"]
    p = Pipeline(ingested)
    page = run(p.get_logs, attempt_id)
    # pages by bytes of their JSON (escapes counted), ending at a line end
    assert LOG_PAGE_BYTES * 0.8 < len(json.dumps(page.text)) <= LOG_PAGE_BYTES
    assert page.text.endswith("\n") and page.next_offset == len(page.text)
    pages = [page]
    while page.next_offset is not None:
        assert page.next_action.tool == "get_logs"
        assert page.next_action.arguments["offset"] == page.next_offset
        page = run(p.get_logs, attempt_id, None, page.next_offset)
        assert 0 < len(json.dumps(page.text)) <= LOG_PAGE_BYTES
        pages.append(page)
    assert pages[-1].next_action == p.status().next_action  # after the last: the pipeline's
    assert len(pages) >= 2 and pages[-1].next_offset is None
    full = "".join(pg.text for pg in pages)
    # each page names the log files its text comes from; together, all of them
    all_files = [f.file_name for f in run(p.backend.log_files, attempt_id, None)]
    assert all(len(pg.files) < len(all_files) for pg in pages)
    assert {f for pg in pages for f in pg.files} == set(all_files)
    assert "+create_ingestion_log" in full and "+load" in full

    one = run(p.get_logs, attempt_id, f"+{HIST}+create_ingestion_log")
    assert one.files and all("create_ingestion_log" in f for f in one.files)
    assert one.next_offset is None and len(one.text) < len(full)
    with pytest.raises(PipelineError, match="reading logs of attempt 99999 failed"):
        run(p.get_logs, "99999")


def test_the_api_key_appears_nowhere(ingested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    p = Pipeline(ingested)
    outputs: list[BaseModel] = [
        run(p.init),
        p.status(),
        run(p.get_session, None, 0),
        run(p.get_logs, step_of(ingested, "ingestion", f"execute:{HIST}")["attempt_id"]),
        run(p.query, "SELECT * FROM acme_src.cdp_mcp_ingestion_log"),
        run(p.final_report),
    ]
    secret_bits = (SENTINEL_KEY, SENTINEL_KEY.split("/")[1])
    for out in outputs:
        dumped = out.model_dump_json()
        assert not any(s in dumped for s in secret_bits), type(out).__name__
    # nothing written in the workspace holds it: state, report, projects, logs, warehouse
    workspace = ingested.parent / "acme_cdp"
    files = [f for f in workspace.rglob("*") if f.is_file()]
    assert any(f.name == "state.json" for f in files)
    assert any(f.name == "cdp_report.md" for f in files)
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".gz":
            data = gzip.decompress(data)
        assert not any(s.encode() in data for s in secret_bits), f
    assert StateStore(workspace).load().client == "acme"


def test_two_starts_within_one_second_get_two_sessions(
    acme_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Digdag keys a session by its time: a second start in the same second must not be
    handed the first session's (finished) attempt."""
    from datetime import UTC, datetime

    import cdp_mcp.pipeline.orchestrator as orch
    from cdp_mcp.pipeline.starting import start_new_session

    frozen = datetime(2099, 1, 1, tzinfo=UTC)  # every start asks for the same second
    monkeypatch.setattr(orch, "now", lambda: frozen)

    async def scenario() -> None:
        p = orch.Pipeline(acme_config)
        await p.init()
        await p.generate_phase("ingestion")
        await p.push_project("ingestion")
        project = orch.project_name(p.cfg, orch.Phase.INGESTION)
        first = await start_new_session(p.backend, project, HIST, frozen, frozen)
        assert (await p.backend.wait(first.id, 60)).done
        second = await start_new_session(p.backend, project, HIST, frozen, orch.now())
        assert second.session_id != first.session_id
        assert second.session_time > first.session_time

    anyio.run(scenario)
