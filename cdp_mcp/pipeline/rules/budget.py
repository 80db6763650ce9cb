"""The attempt budgets: what counts as an attempt, what is given back, and when a step is
out of attempts. Every function takes `now` from its caller (no clock reads here)."""

from __future__ import annotations

import re
from datetime import datetime

from cdp_mcp.backends.base import Attempt
from cdp_mcp.core.phases import ORDER
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.state import (
    MAX_ATTEMPTS,
    PhaseState,
    PhaseStatus,
    PipelineState,
    StepState,
    StepStatus,
)

NOT_COUNTED = "not counted against the step's attempts"
DONE = (PhaseStatus.PASSED, PhaseStatus.ACCEPTED, PhaseStatus.SKIPPED)
# What a failure caused by the source data says (core/file_source, core/text_source, the
# local td_load> and the TD upload): the file is missing or cannot be read as text.
_DATA_FAILURE = re.compile(
    r"source file \S.* not found|no file for object|source_path \S.* is not a folder"
    r"|is not UTF-8: line|is not (?:utf-16|latin-1|cp1252|shift_jis|cp932): line"
    r"|cannot read \S+\.(?:csv|parquet|jsonl|ndjson)\b",
)
RETRY_AFTER_FIX = "init_pipeline(config_path, retry_after_fix=true)"


def data_problem(error: str | None) -> bool:
    """The failure was caused by the data (a source file missing or unreadable), not by
    the config or the project: running it again before the file is fixed fails the same way."""
    return bool(error) and _DATA_FAILURE.search(error or "") is not None


class Refusal(PipelineError):
    """A rule refused the call; nothing was changed."""


def require(refusal: str | None) -> None:
    """Refuse with the precondition's message when it is not met."""
    if refusal is not None:
        raise Refusal(refusal)


def out_of_attempts(step: StepState) -> bool:
    """The step failed and has used its whole budget (a running last attempt still counts)."""
    return (
        step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) and step.attempts >= MAX_ATTEMPTS
    )


def stage_args(ps: PhaseState) -> str:
    """A stage's arguments as a call names them: `'staging', source='shop'`."""
    own = f", source={ps.source!r}" if ps.source is not None else ""
    return f"{ps.phase.value!r}{own}"


def exhausted_refusal(step: StepState, what: str, ps: PhaseState) -> str | None:
    """The refusal of the attempt past the budget, with the person's choices."""
    if not out_of_attempts(step):
        return None
    return (
        f"{what} already failed {step.attempts} times (the limit is {MAX_ATTEMPTS}); "
        f"last error: {step.last_error or 'unknown'}. A person chooses: fix the cause "
        "in the config and call init_pipeline(config_path) (then generate_phase "
        f"again); or, once the cause is fixed outside the config (a source file restored), "
        f"{RETRY_AFTER_FIX}; skip_phase(config_path, {stage_args(ps)}, confirm=true); or "
        "abort_pipeline(config_path)."
    )


def begin_attempt(step: StepState, what: str, ps: PhaseState, now: datetime) -> StepStatus:
    """Count an attempt, refusing the one past the budget; returns the status before."""
    require(exhausted_refusal(step, what, ps))
    prior = step.status
    step.attempts += 1
    step.status = StepStatus.RUNNING
    step.started_at, step.finished_at, step.last_error = now, None, None
    return prior


def finish(step: StepState, ok: bool, error: str | None, now: datetime) -> None:
    step.status = StepStatus.SUCCEEDED if ok else StepStatus.FAILED
    step.finished_at = now
    step.last_error = error
    if not ok and data_problem(error):
        step.details["data_problem"] = True  # advice: fix the data before a retry
    else:
        step.details.pop("data_problem", None)


def refund(step: StepState, prior: StepStatus, error: str, now: datetime) -> None:
    """The attempt never reached the backend (it did not answer, or was busy): give it
    back, as the README promises for transport errors, and say so."""
    step.attempts = max(0, step.attempts - 1)
    step.status = prior if prior is not StepStatus.RUNNING else StepStatus.PENDING
    step.finished_at, step.starting = now, None
    step.last_error = f"{error} ({NOT_COUNTED}: call again once the backend answers)"


def interrupted_run(step: StepState, now: datetime) -> None:
    """The runner running the attempt stopped (its process exited): not the workflow's
    failure, so the attempt is given back and start_workflow resumes its failed tasks."""
    step.attempts = max(0, step.attempts - 1)
    step.status, step.finished_at = StepStatus.FAILED, now
    step.details["interruptions"] = step.details.get("interruptions", 0) + 1
    step.details["interrupted"] = True  # until the next attempt starts
    step.last_error = (
        "the runner stopped while the workflow ran (its process exited: a restart, a "
        f"kill or a crash); {NOT_COUNTED}: start_workflow resumes the tasks that did "
        "not finish"
    )


def mark_lost(step: StepState, attempt_id: str, error: str, now: datetime) -> None:
    """The backend does not know the step's attempt: neither success nor failure, given back."""
    if step.attempt_id != attempt_id or step.status not in (
        StepStatus.RUNNING,
        StepStatus.TIMED_OUT,
    ):
        return
    step.status, step.finished_at = StepStatus.LOST, now
    step.attempts = max(0, step.attempts - 1)
    step.last_error = (
        f"the backend does not know attempt {attempt_id} ({error}): it was lost, "
        "e.g. the workspace's .cdp_local folder was removed or the project was "
        f"deleted on the server; {NOT_COUNTED}"
    )


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"


def settle_attempt(
    step: StepState, attempt: Attempt, errors: str, deadline: float, now: datetime
) -> bool:
    """Record what the backend says of the step's attempt; returns whether it timed out.

    `errors`: the failed tasks' errors in words; `deadline`: the monitor deadline in seconds.
    """
    # A timed-out attempt that ended later still counts for what it did; while a start is
    # in flight (step.starting), its call records the outcome.
    recordable = step.starting is None and step.attempt_id == attempt.id
    if recordable and step.status in (StepStatus.RUNNING, StepStatus.TIMED_OUT):
        if attempt.done and attempt.interrupted:
            interrupted_run(step, now)
        elif attempt.done:
            ok = attempt.status == "success"
            finish(step, ok, None if attempt.success else (errors or attempt.status), now)
        elif (
            step.status is StepStatus.RUNNING
            and step.started_at
            and (now - step.started_at).total_seconds() > deadline
        ):
            step.status, step.finished_at = StepStatus.TIMED_OUT, now
            step.last_error = (
                f"still running after {duration(deadline)} (the monitor "
                "deadline); kill and retry it with start_workflow, or wait longer with "
                "get_session"
            )
    return step.status is StepStatus.TIMED_OUT


def recover_interrupted(state: PipelineState, now: datetime) -> bool:
    """Settle steps a crashed call left running; only the operation lock's holder may call it.

    Holding that lock means no other call is mid-step, so a step still marked running
    without a live backend attempt was interrupted by a crash of the process running it
    (a kill, an OOM, a power cut). Its attempt is given back; a workflow start that may
    have reached the backend is remembered so the next start adopts what it created.
    Returns whether anything changed.
    """
    changed = False
    for ps in state.ordered():
        for step in ps.steps.values():
            if step.status is StepStatus.RUNNING and (
                step.starting is not None
                or step.attempt_id is None
                or not step.name.startswith("execute:")
            ):
                _give_back_interrupted(step, now)
                changed = True
    return changed


def _give_back_interrupted(step: StepState, now: datetime) -> None:
    step.attempts = max(0, step.attempts - 1)
    step.finished_at = now
    what = "starting the workflow" if step.starting is not None else step.name
    step.last_error = (
        f"{what} was interrupted: the cdp-mcp process doing it stopped (killed or "
        f"crashed) before it finished; {NOT_COUNTED}. Call it again"
    )
    if step.starting is not None:
        step.details["interrupted_start"] = step.starting
        resumed = step.starting.get("resume_from")
        step.status = StepStatus.FAILED if resumed else StepStatus.PENDING
        step.starting = None
    else:
        step.status = StepStatus.PENDING


def reopen_budgets(state: PipelineState) -> list[str]:
    """A fixed config re-opens the budgets of the steps that ran out or failed; the project
    of an unfinished phase must be generated again. Returns the steps reset."""
    reset = []
    for ps in state.ordered():
        if ps.status is PhaseStatus.FAILED:
            ps.status = PhaseStatus.IN_PROGRESS
        for step in ps.steps.values():
            if step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) or out_of_attempts(step):
                step.attempts, step.status = 0, StepStatus.PENDING
                reset.append(f"{ps.key}.{step.name}")
        # The project was rendered from the old file (an unchanged render keeps the steps).
        gen = ps.steps.get("generate")
        running = any(s.status is StepStatus.RUNNING for s in ps.steps.values())
        if ps.status not in DONE and gen is not None and not running:
            gen.status = StepStatus.PENDING
            gen.last_error = "the config changed: generate the phase again"
            reset.append(f"{ps.key}.generate")
    return reset


def retry_after_fix(state: PipelineState, now: datetime) -> list[str]:
    """The person fixed a failure's cause outside the config (a source file restored):
    the failed steps get their budget back, as they are (a failed workflow's next start
    resumes its failed tasks), and the decision is recorded with when and which steps."""
    reset = []
    for ps in state.ordered():
        failed = [
            s for s in ps.steps.values() if s.status in (StepStatus.FAILED, StepStatus.TIMED_OUT)
        ]
        for step in failed:
            step.attempts = 0
            step.details.pop("data_problem", None)
            step.details["retry_after_fix"] = now.isoformat()
            reset.append(f"{ps.key}.{step.name}")
        if failed and ps.status is PhaseStatus.FAILED:
            ps.status = PhaseStatus.IN_PROGRESS
    if reset:
        state.retries.append({"at": now.isoformat(), "run": state.run, "steps": reset})
    return reset


def reset_from(state: PipelineState, stage: PhaseState) -> list[str]:
    """Forget `stage` and every stage after it: its source's later phases, then
    unification (a new project invalidates what follows; other sources' stages stay)."""
    reset = []
    later = ORDER[ORDER.index(stage.phase) :]
    for ps in state.ordered():
        if ps.phase not in later or ps.source not in (stage.source, None):
            continue
        if ps.steps or ps.status is not PhaseStatus.PENDING:
            reset.append(ps.key)
        # What unification had found before sources were added stays until it validates
        # over them: a re-rendered project does not change what they brought.
        state.stages[ps.key] = PhaseState(
            phase=ps.phase, source=ps.source, before_added=ps.before_added
        )
    return reset


def finished(state: PipelineState) -> bool:
    return state.aborted or all_done(state)


def all_done(state: PipelineState) -> bool:
    return all(ps.status in DONE for ps in state.ordered())


def running_steps(state: PipelineState) -> list[str]:
    return [
        f"{ps.key}.{s.name}"
        for ps in state.ordered()
        for s in ps.steps.values()
        if s.status is StepStatus.RUNNING
    ]


def record_verdict(
    ps: PhaseState, verdict: str, failures: list[str], accept_warnings: bool, now: datetime
) -> None:
    """A validation's verdict: PASS and WARN succeed (WARN waits for a person unless
    accepted); FAIL is a failed attempt, and the phase fails once the budget is spent."""
    step = ps.step("validate")
    ps.verdict = verdict
    if verdict == "PASS":
        ps.status = PhaseStatus.PASSED
        finish(step, True, None, now)
    elif verdict == "WARN":
        ps.status = PhaseStatus.ACCEPTED if accept_warnings else PhaseStatus.WARNED
        finish(step, True, None, now)
        step.details["accepted_warnings"] = accept_warnings
    else:
        finish(step, False, "; ".join(failures[:3]), now)
        ps.status = PhaseStatus.FAILED if out_of_attempts(step) else PhaseStatus.IN_PROGRESS


def new_run(
    old: PipelineState, chash: str, client: str, backend: str, sources: list[str]
) -> PipelineState:
    """A finished run started over (the person agreed): fresh budgets, the old run summed up."""
    summary = {
        "run": old.run,
        "aborted": old.aborted,
        "finished_at": old.updated_at.isoformat(),
        "phases": {ps.key: ps.status.value for ps in old.ordered()},
    }
    return PipelineState(
        sources=sources,
        config_path=old.config_path,
        config_hash=chash,
        client=client,
        backend=backend,
        run=old.run + 1,
        history=[*old.history, summary],
        retries=old.retries,
    )


def running_attempts(state: PipelineState) -> list[str]:
    """The backend attempts of the steps running now (what an abort kills)."""
    return [
        s.attempt_id
        for ps in state.ordered()
        for s in ps.steps.values()
        if s.status is StepStatus.RUNNING and s.attempt_id
    ]


def record_killed(state: PipelineState, killed: list[str], why: str, now: datetime) -> None:
    for ps in state.ordered():
        for s in ps.steps.values():
            if s.status is StepStatus.RUNNING and s.attempt_id in killed:
                finish(s, False, why, now)
