"""The pipeline's rules on states built by hand: no backend, no DuckDB, no clock.

tests/test_orchestrator_rules.py checks the same rules end to end through the embedded
backend; these pin each rule's decision and words on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdp_mcp.backends.base import Attempt
from cdp_mcp.core.config import PipelineConfig, load_config
from cdp_mcp.core.phases import ORDER, Phase, workflows
from cdp_mcp.pipeline.rules import budget, steps
from cdp_mcp.pipeline.rules.advice import format_call, next_action
from cdp_mcp.pipeline.rules.budget import Refusal
from cdp_mcp.pipeline.rules.gate import gate, gate_refusal
from cdp_mcp.pipeline.state import (
    PhaseState,
    PhaseStatus,
    PipelineState,
    StepState,
    StepStatus,
)

T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
ING, HU = Phase.INGESTION, Phase.HIST_UNION
HIST, INC = "shopify_ingest_hist", "shopify_ingest_inc"
ING_STAGE = PhaseState(phase=ING, source="shopify")


@pytest.fixture
def cfg(acme_config: Path) -> PipelineConfig:
    return load_config(acme_config)


def fresh(cfg: PipelineConfig) -> PipelineState:
    return PipelineState(
        config_path="/x/acme.yml",
        config_hash="h",
        client="acme",
        backend="local",
        sources=cfg.source_names,
    )


def step(
    ps: PhaseState, name: str, status: StepStatus, attempts: int = 1, **kw: object
) -> StepState:
    s = ps.step(name)
    s.status, s.attempts = status, attempts
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def pushed(state: PipelineState, phase: Phase = ING) -> PhaseState:
    ps = state.phase(phase)
    ps.status = PhaseStatus.IN_PROGRESS
    step(ps, "generate", StepStatus.SUCCEEDED)
    step(ps, "deploy", StepStatus.SUCCEEDED)
    return ps


def attempt(**kw: object) -> Attempt:
    doc: dict[str, object] = dict(
        id="a1",
        index=1,
        project="p",
        project_id="1",
        workflow=HIST,
        session_id="s1",
        session_time=T0,
        done=True,
        success=False,
        cancel_requested=False,
        created_at=T0,
    )
    doc.update(kw)
    return Attempt.model_validate(doc)


# -- the phase-order gate ----------------------------------------------------------------


def test_the_first_phase_is_open_and_the_next_is_locked_with_the_next_call(
    cfg: PipelineConfig,
) -> None:
    state = fresh(cfg)
    assert gate_refusal(cfg, state, state.phase(ING), False, "acme.yml") is None
    why = gate_refusal(cfg, state, state.phase(HU), False, "acme.yml")
    assert why is not None
    assert why.startswith(
        "hist_union:shopify is locked: ingestion:shopify has not validated PASS (status: pending)"
    )
    assert "finish ingestion:shopify: generate, push, run, then validate_tables" in why
    assert why.endswith(
        "Next call: generate_phase(config_path='/x/acme.yml', phase='ingestion', source='shopify')."
    )
    with pytest.raises(Refusal, match="hist_union:shopify is locked"):
        gate(cfg, state, state.phase(HU), False, "acme.yml")


@pytest.mark.parametrize(
    ("status", "opens", "hint"),
    [
        (PhaseStatus.PASSED, True, ""),
        (PhaseStatus.ACCEPTED, True, ""),
        (PhaseStatus.SKIPPED, True, ""),
        (PhaseStatus.WARNED, False, "a person accepts the warnings"),
        (
            PhaseStatus.FAILED,
            False,
            "skip_phase(config_path, 'ingestion', source='shopify', confirm=true)",
        ),
        (PhaseStatus.IN_PROGRESS, False, "finish ingestion"),
    ],
)
def test_the_gate_opens_on_pass_accepted_or_skipped_only(
    cfg: PipelineConfig, status: PhaseStatus, opens: bool, hint: str
) -> None:
    state = fresh(cfg)
    state.phase(ING).status = status
    why = gate_refusal(cfg, state, state.phase(HU), False, "acme.yml")
    assert (why is None) is opens
    if not opens:
        assert why is not None and hint in why


def test_an_aborted_pipeline_or_a_changed_config_refuses_every_phase(cfg: PipelineConfig) -> None:
    state = fresh(cfg)
    changed = gate_refusal(cfg, state, state.phase(ING), True, "acme.yml")
    assert changed is not None and changed.startswith("acme.yml changed since init_pipeline")
    state.aborted = True
    aborted = gate_refusal(cfg, state, state.phase(ING), False, "acme.yml")
    assert aborted is not None and "the pipeline was aborted" in aborted
    assert "init_pipeline(config_path, new_run=true)" in aborted


# -- budgets ------------------------------------------------------------------------------


def test_three_attempts_then_the_fourth_is_refused_with_the_choices() -> None:
    s = StepState(name="deploy")
    for n in (1, 2, 3):
        prior = budget.begin_attempt(s, "deploying ingestion", ING_STAGE, T0)
        assert s.attempts == n and s.status is StepStatus.RUNNING and s.started_at == T0
        budget.finish(s, False, f"boom {n}", T0 + timedelta(seconds=n))
        assert prior is (StepStatus.PENDING if n == 1 else StepStatus.FAILED)
    assert budget.out_of_attempts(s)
    with pytest.raises(Refusal) as err:
        budget.begin_attempt(s, "deploying ingestion", ING_STAGE, T0)
    text = str(err.value)
    assert "deploying ingestion already failed 3 times (the limit is 3); last error: boom 3" in text
    assert "skip_phase(config_path, 'ingestion', source='shopify', confirm=true)" in text
    assert "abort_pipeline(config_path)" in text
    assert s.attempts == 3  # the refused call counted nothing


def test_a_success_on_the_last_attempt_is_not_out_of_attempts() -> None:
    s = StepState(name="validate", attempts=3, status=StepStatus.SUCCEEDED)
    assert not budget.out_of_attempts(s)
    assert not budget.out_of_attempts(StepState(name="x", attempts=3, status=StepStatus.RUNNING))
    assert budget.out_of_attempts(StepState(name="x", attempts=3, status=StepStatus.TIMED_OUT))


def test_an_unavailable_backend_refunds_the_attempt_and_says_so() -> None:
    s = StepState(name="deploy", attempts=1, status=StepStatus.FAILED, last_error="old")
    prior = budget.begin_attempt(s, "deploying ingestion", ING_STAGE, T0)
    budget.refund(s, prior, "push failed: 503", T0)
    assert s.attempts == 1 and s.status is StepStatus.FAILED  # as before the call
    assert s.last_error == (
        "push failed: 503 (not counted against the step's attempts: call again once the "
        "backend answers)"
    )
    first = StepState(name="deploy")
    budget.refund(first, budget.begin_attempt(first, "d", ING_STAGE, T0), "e", T0)
    assert first.attempts == 0 and first.status is StepStatus.PENDING


def test_an_interrupted_run_is_given_back_and_counted_as_an_interruption() -> None:
    s = StepState(
        name=steps.execute_step(HIST), attempts=2, status=StepStatus.RUNNING, attempt_id="a1"
    )
    timed = budget.settle_attempt(s, attempt(interrupted=True), "", 3600, T0)
    assert not timed
    assert s.attempts == 1 and s.status is StepStatus.FAILED
    assert s.details == {"interruptions": 1, "interrupted": True}
    assert "the runner stopped while the workflow ran" in str(s.last_error)


def test_a_lost_attempt_is_given_back_and_only_for_its_own_attempt() -> None:
    s = StepState(name="execute:x", attempts=2, status=StepStatus.RUNNING, attempt_id="a1")
    budget.mark_lost(s, "other", "404", T0)
    assert s.status is StepStatus.RUNNING and s.attempts == 2
    budget.mark_lost(s, "a1", "404", T0)
    assert s.status is StepStatus.LOST and s.attempts == 1
    assert "the backend does not know attempt a1 (404): it was lost" in str(s.last_error)


def test_settling_records_success_failure_and_the_monitor_deadline() -> None:
    s = StepState(
        name="execute:x", attempts=1, status=StepStatus.RUNNING, attempt_id="a1", started_at=T0
    )
    running = attempt(done=False)
    assert not budget.settle_attempt(s, running, "", 60, T0 + timedelta(seconds=59))
    assert s.status is StepStatus.RUNNING
    assert budget.settle_attempt(s, running, "", 60, T0 + timedelta(seconds=61))
    assert s.status is StepStatus.TIMED_OUT and "still running after 1 min" in str(s.last_error)
    budget.settle_attempt(s, attempt(), "+load: bad", 60, T0)  # a timed-out attempt that ended
    assert s.status is StepStatus.FAILED and s.last_error == "+load: bad"
    ok = StepState(name="execute:x", status=StepStatus.RUNNING, attempt_id="a1")
    budget.settle_attempt(ok, attempt(success=True), "", 60, T0)
    assert ok.status is StepStatus.SUCCEEDED and ok.last_error is None
    starting = StepState(name="execute:x", status=StepStatus.RUNNING, attempt_id="a1", starting={})
    budget.settle_attempt(starting, attempt(), "x", 60, T0)  # its start records the outcome
    assert starting.status is StepStatus.RUNNING


def test_recovery_gives_back_what_a_crash_left_running(cfg: PipelineConfig) -> None:
    state = fresh(cfg)
    ps = pushed(state)
    deploy = step(ps, "deploy", StepStatus.RUNNING, 2)
    start = step(ps, steps.execute_step(HIST), StepStatus.RUNNING, 1, attempt_id="old")
    start.starting = {"session_time": "t", "asked_at": "a", "resume_from": "old"}
    live = step(ps, steps.execute_step(INC), StepStatus.RUNNING, 1, attempt_id="live")
    assert budget.recover_interrupted(state, T0)
    assert deploy.status is StepStatus.PENDING and deploy.attempts == 1
    assert "deploy was interrupted" in str(deploy.last_error)
    assert start.status is StepStatus.FAILED and start.attempts == 0 and start.starting is None
    assert start.details["interrupted_start"]["session_time"] == "t"
    assert live.status is StepStatus.RUNNING  # the backend runs it: get_session follows it
    assert not budget.recover_interrupted(state, T0)


def test_a_changed_config_reopens_spent_budgets_and_asks_for_a_new_render(
    cfg: PipelineConfig,
) -> None:
    state = fresh(cfg)
    ps = pushed(state)
    ps.status = PhaseStatus.FAILED
    step(ps, "validate", StepStatus.FAILED, 3)
    reset = budget.reopen_budgets(state)
    assert reset == ["ingestion:shopify.validate", "ingestion:shopify.generate"]
    assert ps.status is PhaseStatus.IN_PROGRESS and ps.step("validate").attempts == 0
    assert steps.not_generated(ps) == (
        "generate ingestion:shopify first (the config changed: generate the phase again): "
        "generate_phase(config_path, 'ingestion', source='shopify')"
    )


def test_a_fail_verdict_fails_the_phase_on_the_last_attempt_only() -> None:
    ps = PhaseState(phase=ING)
    for n in (1, 2, 3):
        budget.begin_attempt(ps.step("validate"), "validating ingestion", ING_STAGE, T0)
        budget.record_verdict(ps, "FAIL", ["no rows"], False, T0)
        assert ps.status is (PhaseStatus.FAILED if n == 3 else PhaseStatus.IN_PROGRESS)
    warn = PhaseState(phase=ING)
    budget.record_verdict(warn, "WARN", [], False, T0)
    assert warn.status is PhaseStatus.WARNED
    assert steps.accepts_warnings(warn, True) and not steps.accepts_warnings(warn, False)


# -- preconditions ------------------------------------------------------------------------


def test_push_needs_a_generated_project(cfg: PipelineConfig) -> None:
    ps = fresh(cfg).phase(ING)
    assert (
        steps.not_generated(ps)
        == "generate ingestion:shopify first: generate_phase(config_path, 'ingestion', source='shopify')"
    )
    step(ps, "generate", StepStatus.SUCCEEDED)
    assert steps.not_generated(ps) is None


def test_secrets_need_a_push_and_only_the_projects_own_names(cfg: PipelineConfig) -> None:
    ps = fresh(cfg).phase(ING)
    ps.secrets = ["shopify.apikey"]
    assert steps.not_pushed(ps, "push", " (secrets belong to the pushed project)") == (
        "push ingestion:shopify first (secrets belong to the pushed project): "
        "push_project(config_path, 'ingestion', source='shopify')"
    )
    assert steps.unknown_secrets(ps, ["shopify.apikey"]) is None
    assert steps.unknown_secrets(ps, ["x.y"]) == (
        "the ingestion:shopify project does not reference x.y; it uses: shopify.apikey"
    )


def test_start_needs_a_push_the_earlier_workflows_and_the_secrets(cfg: PipelineConfig) -> None:
    state = fresh(cfg)
    ps = state.phase(ING)
    step(ps, "generate", StepStatus.SUCCEEDED)
    assert (
        steps.not_pushed(ps)
        == "deploy ingestion:shopify first: push_project(config_path, 'ingestion', source='shopify')"
    )
    pushed(state)
    names = workflows(cfg, ING)
    assert names == [HIST, INC]
    assert steps.next_workflow(ps, names) == HIST
    assert steps.not_startable(ps, names, "nope") is not None
    assert steps.not_startable(ps, names, INC) == (
        f"run {HIST} before {INC} (workflows run in order: {HIST}, {INC})"
    )
    step(ps, steps.execute_step(HIST), StepStatus.RUNNING, attempt_id="a1", session_id="s1")
    assert "is already running (attempt a1); call get_session(config_path, 's1'" in str(
        steps.not_startable(ps, names, HIST)
    )
    step(ps, steps.execute_step(HIST), StepStatus.SUCCEEDED)
    assert "already succeeded in this run" in str(steps.not_startable(ps, names, HIST))
    assert steps.next_workflow(ps, names) == INC and steps.not_startable(ps, names, INC) is None
    assert steps.lacks_secrets(ps, INC, []) is None
    assert "set_secrets(config_path, 'ingestion', source='shopify', names=['a.b'])" in str(
        steps.lacks_secrets(ps, INC, ["a.b"])
    )
    step(ps, steps.execute_step(INC), StepStatus.SUCCEEDED)
    assert steps.next_workflow(ps, names) is None
    assert "validate_tables(config_path, 'ingestion', source='shopify')" in steps.all_workflows_ran(
        ps
    )


def test_validate_needs_every_workflow_to_succeed(cfg: PipelineConfig) -> None:
    ps = pushed(fresh(cfg))
    names = workflows(cfg, ING)
    assert steps.not_validatable(ps, names) == (
        f"ingestion:shopify cannot be validated before its workflows succeed; not yet: {HIST}, {INC}. "
        "Next: start_workflow(config_path, 'ingestion', source='shopify')"
    )
    for wf in names:
        step(ps, steps.execute_step(wf), StepStatus.SUCCEEDED)
    assert steps.not_validatable(ps, names) is None


def test_a_step_out_of_attempts_blocks_regenerating(cfg: PipelineConfig) -> None:
    ps = pushed(fresh(cfg))
    assert steps.not_regenerable(ps) is None
    step(ps, "deploy", StepStatus.FAILED, 3)
    assert "step deploy is out of attempts" in str(steps.not_regenerable(ps))


def test_a_retry_resumes_the_failed_attempt_and_a_crashed_start_asks_for_its_own_time() -> None:
    failed = StepState(name="execute:x", status=StepStatus.FAILED, attempt_id="a7")
    assert steps.start_request(failed, T0)["resume_from"] == "a7"
    new = StepState(name="execute:x")
    assert steps.start_request(new, T0) == {
        "session_time": "2030-01-01T12:00:00+00:00",
        "asked_at": T0.isoformat(),
        "resume_from": None,
    }
    new.details["interrupted_start"] = {
        "session_time": "2029-12-31T00:00:00+00:00",
        "asked_at": "x",
    }
    assert steps.start_request(new, T0) == {
        "session_time": "2029-12-31T00:00:00+00:00",
        "asked_at": "x",
        "resume_from": None,
    }


# -- next_action --------------------------------------------------------------------------


def call(cfg: PipelineConfig, state: PipelineState) -> str:
    return format_call(next_action(cfg, state))


def test_next_action_walks_a_phase_step_by_step(cfg: PipelineConfig) -> None:
    state = fresh(cfg)
    assert (
        call(cfg, state)
        == "generate_phase(config_path='/x/acme.yml', phase='ingestion', source='shopify')"
    )
    ps = state.phase(ING)
    step(ps, "generate", StepStatus.SUCCEEDED)
    assert next_action(cfg, state).tool == "push_project"
    step(ps, "deploy", StepStatus.SUCCEEDED, details={"missing_secrets": ["a.b"]})
    assert call(cfg, state).startswith("set_secrets(") and '"names": ' not in call(cfg, state)
    assert next_action(cfg, state).arguments["names"] == ["a.b"]
    ps.step("deploy").details["missing_secrets"] = []
    assert next_action(cfg, state).arguments == {
        "config_path": "/x/acme.yml",
        "phase": "ingestion",
        "source": "shopify",
        "workflow": HIST,
    }
    step(ps, steps.execute_step(HIST), StepStatus.RUNNING, attempt_id="a1", session_id="s1")
    action = next_action(cfg, state)
    assert action.tool == "get_session" and action.arguments["session_id"] == "s1"
    step(ps, steps.execute_step(HIST), StepStatus.SUCCEEDED)
    assert next_action(cfg, state).arguments["workflow"] == INC
    step(ps, steps.execute_step(INC), StepStatus.SUCCEEDED)
    assert next_action(cfg, state).tool == "validate_tables"
    ps.status = PhaseStatus.PASSED
    assert (
        call(cfg, state)
        == "generate_phase(config_path='/x/acme.yml', phase='hist_union', source='shopify')"
    )
    for p in ORDER:
        state.phase(p).status = PhaseStatus.PASSED
    assert next_action(cfg, state).tool == "final_report"


def test_next_action_hands_failures_to_a_person_with_the_calls(cfg: PipelineConfig) -> None:
    state = fresh(cfg)
    ps = pushed(state)
    step(ps, steps.execute_step(HIST), StepStatus.FAILED, 1, last_error="+load: bad")
    action = next_action(cfg, state)
    assert action.tool == "start_workflow" and "retries only the failed tasks" in action.why
    assert [c.split(":")[0] for c in action.choices] == ["retry", "fix", "skip", "abort"]
    ps.step(steps.execute_step(HIST)).status = StepStatus.TIMED_OUT
    assert next_action(cfg, state).choices[1].startswith("wait longer: get_session(")
    step(ps, steps.execute_step(HIST), StepStatus.FAILED, 3)
    out = next_action(cfg, state)
    assert out.tool == "ask_person" and "failed 3 times (the limit is 3)" in out.why
    step(ps, steps.execute_step(HIST), StepStatus.LOST, 0, last_error="lost")
    lost = next_action(cfg, state)
    assert lost.tool == "ask_person" and lost.choices[0].startswith("run it again from the start")


def test_interruptions_resume_until_the_third_then_a_person_decides(cfg: PipelineConfig) -> None:
    state = fresh(cfg)
    ps = pushed(state)
    ex = step(ps, steps.execute_step(HIST), StepStatus.FAILED, 0, last_error="stopped")
    ex.details = {"interrupted": True, "interruptions": 2}
    action = next_action(cfg, state)
    assert action.tool == "start_workflow" and action.why == f"workflow {HIST}: stopped"
    ex.details["interruptions"] = 3
    person = next_action(cfg, state)
    assert person.tool == "ask_person" and "interrupted 3 times" in person.why
    assert person.choices[0].startswith("resume it once more: start_workflow(")


def test_next_action_after_validation_and_abort(cfg: PipelineConfig) -> None:
    state = fresh(cfg)
    ps = pushed(state)
    for wf in workflows(cfg, ING):
        step(ps, steps.execute_step(wf), StepStatus.SUCCEEDED)
    ps.status = PhaseStatus.WARNED
    ps.validation = {"warnings": ["products: 0 rows"]}
    warn = next_action(cfg, state)
    assert warn.tool == "ask_person" and "products: 0 rows" in warn.why
    assert "accept_warnings" not in warn.arguments
    assert warn.choices[0].startswith("accept the warnings: validate_tables(")
    ps.status = PhaseStatus.IN_PROGRESS
    step(ps, "validate", StepStatus.FAILED, 1, last_error="no rows")
    assert next_action(cfg, state).why == "ingestion:shopify validated FAIL: no rows"
    state.aborted, state.abort_reason = True, "stop"
    assert next_action(cfg, state).tool == "final_report"


@pytest.mark.slow
def test_the_rules_import_no_backend_engine() -> None:
    """The rules run without DuckDB or an HTTP client: nothing they import loads one."""
    import subprocess
    import sys

    code = (
        "import sys, cdp_mcp.pipeline.rules.gate, cdp_mcp.pipeline.rules.budget\n"
        "print(sorted(m for m in ('duckdb', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
