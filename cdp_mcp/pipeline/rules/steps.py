"""Each step's preconditions, one function (and one message) each.

A function returns None when its precondition holds, else the refusal in words that say
what to call instead. The orchestrator refuses calls with them (`budget.require`); `advice`
reads the same functions to say what comes next.
"""

from __future__ import annotations

from datetime import datetime

from cdp_mcp.core.phases import Phase, per_source
from cdp_mcp.pipeline.rules.budget import DONE, out_of_attempts, stage_args
from cdp_mcp.pipeline.state import PhaseState, PhaseStatus, PipelineState, StepState, StepStatus


def execute_step(workflow: str) -> str:
    return f"execute:{workflow}"


def succeeded(ps: PhaseState, step_name: str) -> bool:
    step = ps.steps.get(step_name)
    return step is not None and step.status is StepStatus.SUCCEEDED


def not_runnable(state: PipelineState, config_changed: bool, config_name: str) -> str | None:
    """Every step: the pipeline is not aborted, and its config is the one init read."""
    if state.aborted:
        return (
            "the pipeline was aborted; call final_report for where it stopped, or "
            "init_pipeline(config_path, new_run=true) to start a new run (the person "
            "decides)"
        )
    if config_changed:
        return (
            f"{config_name} changed since init_pipeline read it; call "
            "init_pipeline again so the plan and budgets match the file"
        )
    return None


def exhausted_step(ps: PhaseState) -> StepState | None:
    """The first step of the phase that is out of attempts."""
    return next((s for s in ps.steps.values() if out_of_attempts(s)), None)


def not_regenerable(ps: PhaseState) -> str | None:
    """generate_phase: rendering the same config again cannot refill a spent budget."""
    step = exhausted_step(ps)
    if step is None:
        return None
    return (
        f"{ps.key}: step {step.name} is out of attempts; regenerating the "
        "same config would not change that. Fix the config and call "
        "init_pipeline; or, once the cause is fixed outside the config, "
        "init_pipeline(config_path, retry_after_fix=true); or skip_phase / abort_pipeline."
    )


def not_generated(ps: PhaseState, then: str = "") -> str | None:
    """push_project and start_workflow: a project generated from the config as it is now
    (a changed config sets generate back to pending, with the reason)."""
    if succeeded(ps, "generate"):
        return None
    gen = ps.steps.get("generate")
    reason = f" ({gen.last_error})" if gen is not None and gen.last_error else ""
    return f"generate {ps.key} first{reason}: generate_phase(config_path, {stage_args(ps)}){then}"


def not_pushed(ps: PhaseState, verb: str = "deploy", why: str = "") -> str | None:
    """set_secrets and start_workflow: the generated project was pushed."""
    if succeeded(ps, "deploy"):
        return None
    return f"{verb} {ps.key} first{why}: push_project(config_path, {stage_args(ps)})"


def recorded_missing_secrets(ps: PhaseState) -> list[str]:
    """The secrets the pushed project references and lacked when last asked."""
    deploy = ps.steps.get("deploy")
    return list((deploy.details.get("missing_secrets") if deploy else None) or [])


def unknown_secrets(ps: PhaseState, names: list[str]) -> str | None:
    """set_secrets: only the secrets the project references."""
    unknown = [n for n in names if n not in ps.secrets]
    if not unknown:
        return None
    return (
        f"the {ps.key} project does not reference {', '.join(unknown)}; it uses: "
        f"{', '.join(ps.secrets) or 'no secrets'}"
    )


def lacks_secrets(ps: PhaseState, workflow: str, missing: list[str]) -> str | None:
    """start_workflow: the project has every secret it references (`missing`: as the
    backend answered just now)."""
    if not missing:
        return None
    return (
        f"{workflow} would fail: the project lacks secrets {', '.join(missing)}. Set "
        "them from the server's environment with set_secrets(config_path, "
        f"{stage_args(ps)}, names={missing}) (see README: secrets)"
    )


def next_workflow(ps: PhaseState, names: list[str]) -> str | None:
    """The first workflow (in run order) that has not succeeded; None when all have."""
    return next((wf for wf in names if not succeeded(ps, execute_step(wf))), None)


def all_workflows_ran(ps: PhaseState) -> str:
    return (
        f"every workflow of {ps.key} already succeeded; next: "
        f"validate_tables(config_path, {stage_args(ps)})"
    )


def not_startable(ps: PhaseState, names: list[str], wf: str) -> str | None:
    """start_workflow of `wf`: a workflow of the phase, the ones before it succeeded, and
    not running or succeeded itself."""
    phase = ps.key
    if wf not in names:
        return f"{phase} has no workflow {wf!r}; its workflows, in run order: {', '.join(names)}"
    pending = [w for w in names[: names.index(wf)] if not succeeded(ps, execute_step(w))]
    if pending:
        return f"run {', '.join(pending)} before {wf} (workflows run in order: {', '.join(names)})"
    step = ps.steps.get(execute_step(wf))
    if step is not None and step.status is StepStatus.RUNNING:
        return (
            f"{wf} is already running (attempt {step.attempt_id}); call "
            f"get_session(config_path, '{step.session_id}', wait_seconds=60)"
        )
    if step is not None and step.status is StepStatus.SUCCEEDED:
        return (
            f"{wf} already succeeded in this run; to run the phase again, call "
            f"generate_phase(config_path, {stage_args(ps)}) after changing the config, or "
            "init_pipeline once the pipeline is finished to start a new run"
        )
    return None


def resume_from(step: StepState) -> str | None:
    """The attempt a start resumes (its failed tasks only), or None for a new session."""
    return step.attempt_id if step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) else None


def not_validatable(ps: PhaseState, names: list[str]) -> str | None:
    """validate_tables: every workflow of the phase succeeded."""
    not_run = [wf for wf in names if not succeeded(ps, execute_step(wf))]
    if not not_run:
        return None
    return (
        f"{ps.key} cannot be validated before its workflows succeed; not yet: "
        f"{', '.join(not_run)}. Next: start_workflow(config_path, {stage_args(ps)})"
    )


def accepts_warnings(ps: PhaseState, accept_warnings: bool) -> bool:
    """Accepting the warnings of the validation already done is a decision, not an attempt."""
    return accept_warnings and ps.status is PhaseStatus.WARNED


def phase_locked_by(state: PipelineState, stage: PhaseState, previous: Phase | None) -> str | None:
    """The phase-order gate's reason: the stage before is not done (PASS, accepted,
    skipped): the same source's previous phase, or, for unification, every source's staging."""
    if previous is None:
        return None
    if per_source(stage.phase):
        before = [state.phase(previous, stage.source)]
    else:
        before = state.of_phase(previous)
    waiting = [ps for ps in before if ps.status not in DONE]
    if not waiting:
        return None
    ps = waiting[0]
    hint = {
        PhaseStatus.WARNED: "a person accepts the warnings, or fixes the cause",
        PhaseStatus.FAILED: f"fix {ps.key}, or skip_phase(config_path, {stage_args(ps)}, "
        "confirm=true)",
    }.get(ps.status, f"finish {ps.key}: generate, push, run, then validate_tables")
    if len(waiting) == 1:
        return (
            f"{stage.key} is locked: {ps.key} has not validated PASS "
            f"(status: {ps.status.value}); {hint}"
        )
    listed = ", ".join(f"{w.key} (status: {w.status.value})" for w in waiting)
    return f"{stage.key} is locked: not every source's staging validated PASS: {listed}; {hint}"


def start_request(step: StepState, now: datetime) -> dict[str, str | None]:
    """What a start of `step` asks the backend for: the attempt it resumes, else a session
    at `now`; a start a crash interrupted asks for its own session time again, so the
    attempt it may have created is adopted instead of run twice."""
    resumed = resume_from(step)
    interrupted = step.details.get("interrupted_start") or {}
    session_time = (
        interrupted.get("session_time")
        if resumed is None and interrupted.get("session_time")
        else now.replace(microsecond=0).isoformat()
    )
    return {
        "session_time": session_time,
        "asked_at": interrupted.get("asked_at") or now.isoformat(),
        "resume_from": resumed,
    }
