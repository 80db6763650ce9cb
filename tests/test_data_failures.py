"""A failure caused by the data, not the config, and a finished run: nothing a person did
is discarded, and no answer sends a literal agent into a blind retry or a new run.

Real pipelines on the local runner (DuckDB), the state file as it is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest

from cdp_mcp.cli.run import EXIT_ACCEPTED_WARNINGS, EXIT_FAILED, EXIT_PASS, run_pipeline
from cdp_mcp.cli.shell import choices
from cdp_mcp.pipeline.models import PipelineError
from tests.test_budget_real_failures import pushed_ingestion
from tests.test_orchestrator_rules import HIST, P, run, state_doc, step_of, wait_done

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane


def test_a_missing_source_file_is_fixed_first_and_retried_on_the_persons_word(
    acme_config: Path,
) -> None:
    pushed_ingestion(acme_config)
    source = acme_config.parent / "shopify" / "customers.csv"
    aside = acme_config.parent / "customers.csv.bak"
    shutil.move(source, aside)  # removed after the push (a cleanup, a sync)

    started = run(P(acme_config).start_workflow, "ingestion", HIST)
    session = wait_done(acme_config, started.session_id)
    assert session.status == "error"
    action = P(acme_config).status().next_action
    # Not a blind retry: what to fix first, and the retry as the person's choice.
    assert action.tool == "ask_person", action
    assert "source data, not the config" in action.why and "customers.csv" in action.why
    assert any(c.startswith("once the file is fixed, retry") for c in action.choices)

    # An agent retrying anyway spends the budget; then only a person can reopen it.
    for _ in range(2):
        again = run(P(acme_config).start_workflow, "ingestion", HIST)
        wait_done(acme_config, again.session_id)
    assert step_of(acme_config, "ingestion", f"execute:{HIST}")["attempts"] == 3
    out = P(acme_config).status().next_action
    assert out.tool == "ask_person"
    retry = [c for c in out.choices if "retry_after_fix=true" in c]
    assert retry and retry[0].startswith("retry after a fix outside the config")

    shutil.move(aside, source)  # the person restores the file
    plain = run(P(acme_config).init)
    assert plain.reset_steps == [] and plain.next_action.tool == "ask_person"
    try:
        run(P(acme_config).start_workflow, "ingestion", HIST)
        raise AssertionError("a fourth attempt must be refused")
    except PipelineError as e:
        assert "retry_after_fix=true" in str(e)

    fixed = run(P(acme_config).init, retry_after_fix=True)
    assert fixed.reset_steps == [f"ingestion:shopify.execute:{HIST}"]
    record = state_doc(acme_config)["retries"]
    assert [r["steps"] for r in record] == [[f"ingestion:shopify.execute:{HIST}"]] and record[0][
        "at"
    ]
    assert fixed.next_action.tool == "start_workflow"
    resumed = run(P(acme_config).start_workflow, "ingestion", HIST)
    assert resumed.resumed_failed_tasks and resumed.attempt == 1
    assert wait_done(acme_config, resumed.session_id).status == "success"


def test_a_finished_run_is_kept_and_a_new_one_is_the_persons_decision(acme_config: Path) -> None:
    """What the current code already does (init keeps the run, new_run=true archives the
    reports), and what it did not: once the report is written, the next action is a
    person's decision, never another final_report or a new run."""
    run(P(acme_config).init)
    for phase in ("ingestion", "hist_union", "staging", "unification"):
        run(P(acme_config).skip_phase, phase, True)
    report = run(P(acme_config).final_report)
    assert report.complete
    again = run(P(acme_config).init)
    assert (again.finished, again.new_run, again.run) == (True, False, 1)
    assert [p.status for p in again.phases] == ["skipped"] * 4
    action = again.next_action
    assert action.tool == "ask_person", action
    assert any("new_run=true" in c for c in action.choices)
    assert Path(report.path).read_text().count("**Complete**") == 1
    fresh = run(P(acme_config).init, new_run=True)
    assert (fresh.new_run, fresh.run) == (True, 2)
    assert (Path(report.path).parent / "run-1" / Path(report.path).name).is_file()
    partial = run(P(acme_config).final_report)
    assert not partial.complete
    kept = (Path(report.path).parent / "run-1" / Path(report.path).name).read_text()
    assert "**Complete**" in kept


def test_the_headless_runner_goes_on_once_the_person_says_the_file_is_back(
    acme_config: Path,
) -> None:
    pushed_ingestion(acme_config)
    source = acme_config.parent / "shopify" / "customers.csv"
    aside = acme_config.parent / "customers.csv.bak"
    shutil.move(source, aside)
    started = run(P(acme_config).start_workflow, "ingestion", HIST)
    assert wait_done(acme_config, started.session_id).status == "error"
    shutil.move(aside, source)  # restored; `cdp-mcp run` alone must not retry on its own
    stopped = anyio.run(lambda: run_pipeline(acme_config, echo=lambda _line: None))
    assert stopped.exit_code == EXIT_FAILED and "source data, not the config" in stopped.message
    assert step_of(acme_config, "ingestion", f"execute:{HIST}")["attempts"] == 1
    action = P(acme_config).status().next_action
    menu = choices(action, str(acme_config))
    assert f"`cdp-mcp run {acme_config} --retry-after-fix`" in " ".join(menu)
    fixed = anyio.run(
        lambda: run_pipeline(acme_config, echo=lambda _line: None, retry_after_fix=True)
    )
    assert fixed.exit_code in (EXIT_PASS, EXIT_ACCEPTED_WARNINGS), fixed.message
    assert step_of(acme_config, "ingestion", f"execute:{HIST}")["status"] == "succeeded"
    assert state_doc(acme_config)["retries"][0]["steps"] == [f"ingestion:shopify.execute:{HIST}"]
