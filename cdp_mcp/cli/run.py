"""`cdp-mcp run`: the agent's loop without an agent.

It follows `next_action` exactly as the MCP tools return it, through the same Pipeline, so
a headless run obeys the same order and budgets. What needs a person in a conversation
(accepting warnings, what to do once a step is out of attempts) is decided by flags: retries
happen within the budget; warnings are accepted only with `accept_warnings`.

Progress goes out as structured events (`run_events`): the CLI renders them live or as lines
(`cdp_mcp.cli.progress`); without a sink they are written as plain lines to `echo`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdp_mcp.cli.events import (
    EventSink,
    FailedTaskInfo,
    Generated,
    PhaseSummary,
    Pushed,
    RunEvent,
    RunFinished,
    RunOutcome,
    RunStarted,
    SecretsSet,
    Step,
    StepFailed,
    StepStarted,
    TaskProgress,
    Validated,
    WorkflowFinished,
    WorkflowStarted,
)
from cdp_mcp.core.phases import INC_LOG, INGESTION_LOG, STAGING_LOG, Phase
from cdp_mcp.core.tools import ASK_PERSON, ToolName
from cdp_mcp.pipeline.models import NextAction, PipelineError, SessionProgress
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.reports.facts import phase_seconds
from cdp_mcp.pipeline.rules.advice import accepts_warnings_choice
from cdp_mcp.pipeline.state import PhaseState, stage_key
from cdp_mcp.pipeline.state import stage_label as _label

__all__ = [
    "EXIT_ACCEPTED_WARNINGS",
    "EXIT_FAILED",
    "EXIT_PASS",
    "Echo",
    "RunOutcome",
    "run_pipeline",
]

EXIT_PASS = 0
EXIT_FAILED = 1
EXIT_ACCEPTED_WARNINGS = 3

Echo = Callable[[str], None]

# the tool of a next_action -> the step of its phase a display shows
_STEP_OF: dict[str, Step] = {
    ToolName.GENERATE_PHASE: "generate",
    ToolName.PUSH_PROJECT: "push",
    ToolName.SET_SECRETS: "secrets",
    ToolName.START_WORKFLOW: "start",
    ToolName.VALIDATE_TABLES: "validate",
}


def lines_to(echo: Echo) -> EventSink:
    """A sink writing each event as its plain lines (no live display)."""

    def sink(event: RunEvent) -> None:
        for line in event.lines():
            if not isinstance(event, TaskProgress):  # one line a second is too chatty
                echo(line)

    return sink


async def run_pipeline(
    config_path: str | Path,
    accept_warnings: bool = False,
    echo: Echo = print,
    max_steps: int = 200,
    on_event: EventSink | None = None,
    new_run: bool = False,
    retry_after_fix: bool = False,
) -> RunOutcome:
    """Run every phase; report progress as events to `on_event` (else as lines to `echo`).

    A finished pipeline is not run again unless `new_run` (the person asked for it);
    `retry_after_fix`: the person fixed a failure's cause outside the config."""
    emit = on_event or lines_to(echo)
    outcome = await _run(
        str(config_path), accept_warnings, emit, max_steps, new_run, retry_after_fix
    )
    emit(RunFinished(outcome))
    return outcome


async def _run(
    cp: str,
    accept_warnings: bool,
    emit: EventSink,
    max_steps: int,
    new_run: bool,
    retry_after_fix: bool = False,
) -> RunOutcome:
    init = await Pipeline(cp).init(new_run=new_run, retry_after_fix=retry_after_fix)
    already_finished = init.finished and not init.new_run
    emit(
        RunStarted(
            client=init.client,
            backend=init.backend,
            workspace=init.workspace,
            phases={
                _label(Phase(ph.phase), ph.source, several(init.phases)): ph.status
                for ph in init.phases
            },
            preflight=tuple(init.preflight),
            resumed=init.resumed,
            config_path=init.config_path,
        )
    )
    accepted: list[str] = []
    action = init.next_action
    for _ in range(max_steps):
        if action.tool == ToolName.FINAL_REPORT or already_finished:
            p = Pipeline(cp)
            report = await p.final_report()
            done = RunOutcome(
                exit_code=EXIT_PASS,
                message="every phase validated PASS",
                report_path=report.path,
                html_report_path=report.html_path,
                phases=_summaries(p),
            )
            if accepted:
                done.exit_code = EXIT_ACCEPTED_WARNINGS
                done.message = f"done, with accepted warnings in: {', '.join(accepted)}"
            if already_finished:
                done.message = (
                    f"run {init.run} had already finished, so nothing ran again; "
                    f"`cdp-mcp run {cp} --new-run` starts run {init.run + 1}"
                )
            return done
        if accepts_warnings_choice(action):
            # a WARN: the person's decision, which --accept-warnings gave beforehand
            action = NextAction(
                tool=ToolName.VALIDATE_TABLES,
                arguments={**action.arguments, "accept_warnings": True},
                why=action.why,
            )
        elif action.tool == ASK_PERSON:
            return await _stopped(cp, action)
        if (
            action.tool == ToolName.VALIDATE_TABLES
            and action.choices
            and not action.arguments.get("accept_warnings")
        ):
            return await _stopped(cp, action)  # a FAIL: validating the same tables again won't help
        try:
            action = await _step(cp, action, accept_warnings, accepted, emit)
        except PipelineError as e:
            then = _other_stage_next(cp, action)
            if then is None:
                return await _stopped(cp, action, str(e))
            emit(StepFailed(_stage_of(cp, action), str(e)))
            action = then  # the failure holds up its own source; the others go on
    return await _stopped(cp, action, f"stopped after {max_steps} steps without finishing")


async def _step(
    cp: str, action: NextAction, accept_warnings: bool, accepted: list[str], emit: EventSink
) -> NextAction:
    args = action.arguments
    p = Pipeline(cp)
    phase = str(args.get("phase", ""))
    source = args.get("source")
    # The board's name of the stage: `ingestion:shop`, `unification`.
    stage = _label(Phase(phase), source, len(p.cfg.sources) > 1) if phase else ""
    step = _STEP_OF.get(action.tool)
    if step is not None and phase:
        emit(StepStarted(stage, step, args.get("workflow")))
    if action.tool == ToolName.GENERATE_PHASE:
        gen = await p.generate_phase(phase, source)
        emit(Generated(stage, len(gen.files), tuple(gen.workflows)))
        return gen.next_action
    if action.tool == ToolName.PUSH_PROJECT:
        push = await p.push_project(phase, source)
        emit(Pushed(stage, push.project, push.revision))
        return push.next_action
    if action.tool == ToolName.SET_SECRETS:
        names = list(args.get("names") or [])
        secrets = await p.set_secrets(phase, names, source)
        emit(SecretsSet(stage, tuple(secrets.set)))
        if secrets.still_missing:
            tried = "; ".join(f"{k}: {', '.join(v)}" for k, v in secrets.missing_env.items())
            raise PipelineError(
                f"{stage} needs secrets {', '.join(secrets.still_missing)}; export them "
                f"({tried}) and run again"
            )
        return secrets.next_action
    if action.tool == ToolName.START_WORKFLOW:
        start = await p.start_workflow(phase, args.get("workflow"), source)
        emit(
            WorkflowStarted(
                stage,
                start.workflow,
                start.session_id,
                start.attempt_id,
                retry=start.resumed_failed_tasks,
            )
        )
        return start.next_action
    if action.tool == ToolName.GET_SESSION:
        return await _monitor(p, args, emit)
    if action.tool == ToolName.VALIDATE_TABLES:
        return await _validate(p, phase, source, args, accept_warnings, accepted, emit)
    raise PipelineError(f"the headless run does not know how to do {action.tool}")


async def _monitor(p: Pipeline, args: dict[str, Any], emit: EventSink) -> NextAction:

    async def watch(sp: SessionProgress) -> None:
        emit(
            TaskProgress(
                phase=_label(Phase(sp.phase), sp.source, len(p.cfg.sources) > 1),
                workflow=sp.workflow,
                session_id=sp.session_id,
                done=sp.tasks_done,
                total=sp.tasks_total,
                running=tuple(sp.running_tasks),
                elapsed=sp.elapsed_seconds,
            )
        )

    session = await p.get_session(args.get("session_id"), wait_seconds=30, watch=watch)
    if session.status != "running" or session.timed_out:
        emit(
            WorkflowFinished(
                phase=_session_stage(p, session.session_id) or session.phase or "",
                workflow=session.workflow,
                session_id=session.session_id,
                status=session.status,
                elapsed=session.elapsed_seconds,
                done=session.tasks_done,
                total=session.tasks_total,
                failed=tuple(
                    FailedTaskInfo(t.label or t.name, t.error) for t in session.failed_tasks
                ),
                timed_out=session.timed_out,
            )
        )
    return session.next_action


def _stage_args(action: NextAction) -> tuple[object, object]:
    return action.arguments.get("phase"), action.arguments.get("source")


def _stage_of(cp: str, action: NextAction) -> str:
    p = Pipeline(cp)
    phase, source = _stage_args(action)
    if not phase:
        return ""
    return _label(
        Phase(str(phase)), None if source is None else str(source), len(p.cfg.sources) > 1
    )


def _other_stage_next(cp: str, failed: NextAction) -> NextAction | None:
    """After a step of one source failed (and was recorded), the next action when it is
    another stage's and needs no person: a source's failure holds up that source alone."""
    try:
        then = Pipeline(cp).status().next_action
    except PipelineError:
        return None
    phase, _ = _stage_args(then)
    if then.tool == ASK_PERSON or not phase or _stage_args(then) == _stage_args(failed):
        return None
    return then


def several(plans: list[Any]) -> bool:
    """The pipeline has several sources (its stages name theirs)."""
    return len({ph.source for ph in plans if ph.source is not None}) > 1


def _session_stage(p: Pipeline, session_id: str) -> str | None:
    """The stage a session ran in (`ingestion:shop`), as the state records it."""
    for ps in p.state().ordered():
        if any(s.session_id == session_id for s in ps.steps.values()):
            return _label(ps.phase, ps.source, len(p.cfg.sources) > 1)
    return None


async def _validate(
    p: Pipeline,
    phase: str,
    source: str | None,
    args: dict[str, Any],
    accept_warnings: bool,
    accepted: list[str],
    emit: EventSink,
) -> NextAction:
    wants_accept = bool(args.get("accept_warnings"))
    stage = _label(Phase(phase), source, len(p.cfg.sources) > 1)
    if wants_accept and not accept_warnings:
        raise PipelineError(
            f"{stage} validated WARN; rerun with --accept-warnings to continue past it"
        )
    result = await p.validate_tables(
        phase, accept_warnings=wants_accept or accept_warnings, source=source
    )
    ps = p.state().phase(Phase(phase), source)
    rows, profiles = _outputs(ps)
    emit(
        Validated(
            stage,
            result.verdict,
            accepted=result.accepted_warnings,
            warnings=tuple(result.warnings),
            failures=tuple(result.failures),
            tables=len(result.tables),
            rows=rows,
            profiles=profiles,
            seconds=_seconds(ps),
        )
    )
    if result.verdict == "WARN" and result.accepted_warnings:
        accepted.append(stage)
    return result.next_action


_LOG_TABLES = (INGESTION_LOG, INC_LOG, STAGING_LOG)  # bookkeeping, not the phase's output


def _outputs(ps: PhaseState) -> tuple[int | None, int | None]:
    """What a phase produced, as the board and the summary show it: the rows of its data
    tables (logs left out), or, for unification, whose tables hold unrelated things (ids,
    keys, enriched copies), the profiles it built."""
    validation = ps.validation or {}
    if ps.phase is Phase.UNIFICATION:
        profiles = (validation.get("metrics") or {}).get("profiles")
        return None, None if profiles is None else int(profiles)
    tables = validation.get("tables") or []
    counted = [
        t["row_count"]
        for t in tables
        if t.get("row_count") is not None and t["table"] not in _LOG_TABLES
    ]
    return (sum(counted) if counted else None), None


def _seconds(ps: PhaseState) -> float | None:
    """The phase's time from its steps in the state: the one clock the board and the
    summary both show."""
    took = phase_seconds(ps)
    return None if took is None else round(took, 1)


def _summaries(p: Pipeline) -> list[PhaseSummary]:
    """Each phase as the saved state has it: status, time taken, what it produced, sessions."""
    state = p.state()
    out = []
    for ps in state.ordered():
        tables = (ps.validation or {}).get("tables") or []
        rows, profiles = _outputs(ps)
        sessions = [
            s.session_id
            for s in ps.steps.values()
            if s.name.startswith("execute:") and s.session_id
        ]
        out.append(
            PhaseSummary(
                phase=_label(ps.phase, ps.source, len(state.sources) > 1),
                status=ps.status.value,
                verdict=ps.verdict,
                seconds=_seconds(ps),
                tables=len(tables) if tables else None,
                rows=rows,
                profiles=profiles,
                sessions=list(dict.fromkeys(sessions)),
            )
        )
    return out


async def _stopped(cp: str, action: NextAction, error: str | None = None) -> RunOutcome:
    p = Pipeline(cp)
    status = p.status()
    # The stage the run stopped at: the one the next action names (a stage waiting for a
    # person's decision), else the first not done.
    named = (
        stage_key(Phase(action.arguments["phase"]), action.arguments.get("source"))
        if (action.arguments.get("phase"))
        else None
    )
    pending = [ph for ph in status.phases if ph.status not in ("passed", "accepted", "skipped")]
    phase = next(
        (ph for ph in pending if stage_key(Phase(ph.phase), ph.source) == named),
        pending[0] if pending else None,
    )
    failed_step = None
    if phase is not None:
        failed_step = next((s for s in phase.steps if s.status in ("failed", "timed_out")), None)
    task = tail = None
    if failed_step is not None and failed_step.session_id:
        try:
            session = await p.get_session(failed_step.session_id)
            if session.failed_tasks:
                task, tail = session.failed_tasks[0].name, session.failed_tasks[0].log_tail
        except PipelineError:
            pass
    report = await p.final_report()
    now = p.status().next_action
    next_steps = list(now.choices)
    if error and now.why and now.why != error and not next_steps:
        next_steps = [now.why]
    return RunOutcome(
        exit_code=EXIT_FAILED,
        message=error or action.why,
        report_path=report.path,
        html_report_path=report.html_path,
        failed_phase=_label(Phase(phase.phase), phase.source, len(p.cfg.sources) > 1)
        if phase
        else None,
        failed_task=task,
        log_tail=tail,
        next_steps=next_steps,
        next_action=now,
        phases=_summaries(p),
    )
