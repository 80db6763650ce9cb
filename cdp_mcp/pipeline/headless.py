"""`cdp-mcp run`: the agent's loop without an agent.

It follows `next_action` exactly as the MCP tools return it, through the same Pipeline, so
a headless run obeys the same order and budgets. What needs a person in a conversation
(accepting warnings, what to do once a step is out of attempts) is decided by flags: retries
happen within the budget; warnings are accepted only with `accept_warnings`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from cdp_mcp.pipeline.models import NextAction, PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline

EXIT_PASS = 0
EXIT_FAILED = 1
EXIT_ACCEPTED_WARNINGS = 3


class RunOutcome(BaseModel):
    exit_code: int
    message: str
    report_path: str | None = None
    failed_phase: str | None = None
    failed_task: str | None = None
    log_tail: str | None = None


Echo = Callable[[str], None]


async def run_pipeline(
    config_path: str | Path, accept_warnings: bool = False, echo: Echo = print, max_steps: int = 200
) -> RunOutcome:
    cp = str(config_path)
    init = await Pipeline(cp).init()
    echo(f"pipeline {init.client} on {init.backend} (workspace {init.workspace})")
    for note in init.preflight:
        echo(f"  preflight: {note}")
    accepted: list[str] = []
    action = init.next_action
    for _ in range(max_steps):
        if action.tool == "final_report":
            report = await Pipeline(cp).final_report()
            if accepted:
                return RunOutcome(
                    exit_code=EXIT_ACCEPTED_WARNINGS,
                    message=f"done, with accepted warnings in: {', '.join(accepted)}",
                    report_path=report.path,
                )
            return RunOutcome(
                exit_code=EXIT_PASS, message="every phase validated PASS", report_path=report.path
            )
        if action.tool == "ask_person":
            return await _stopped(cp, action)
        if (
            action.tool == "validate_tables"
            and action.choices
            and not action.arguments.get("accept_warnings")
        ):
            return await _stopped(cp, action)  # a FAIL: validating the same tables again won't help
        try:
            action = await _step(cp, action, accept_warnings, accepted, echo)
        except PipelineError as e:
            return await _stopped(cp, action, str(e))
    return await _stopped(cp, action, f"stopped after {max_steps} steps without finishing")


async def _step(
    cp: str, action: NextAction, accept_warnings: bool, accepted: list[str], echo: Echo
) -> NextAction:
    args = action.arguments
    p = Pipeline(cp)
    phase = str(args.get("phase", ""))
    if action.tool == "generate_phase":
        gen = await p.generate_phase(phase)
        echo(f"{phase}: generated {len(gen.files)} files; workflows {', '.join(gen.workflows)}")
        return gen.next_action
    if action.tool == "push_project":
        push = await p.push_project(phase)
        echo(f"{phase}: pushed {push.project} revision {push.revision}")
        return push.next_action
    if action.tool == "set_secrets":
        names = list(args.get("names") or [])
        secrets = await p.set_secrets(phase, names)
        echo(f"{phase}: set secrets {', '.join(secrets.set) or '(none)'} from the environment")
        if secrets.still_missing:
            tried = "; ".join(f"{k}: {', '.join(v)}" for k, v in secrets.missing_env.items())
            raise PipelineError(
                f"{phase} needs secrets {', '.join(secrets.still_missing)}; export them "
                f"({tried}) and run again"
            )
        return secrets.next_action
    if action.tool == "start_workflow":
        start = await p.start_workflow(phase, args.get("workflow"))
        how = "retrying failed tasks of" if start.resumed_failed_tasks else "started"
        echo(
            f"{phase}: {how} {start.workflow} (session {start.session_id}, attempt {start.attempt_id})"
        )
        return start.next_action
    if action.tool == "get_session":
        session = await p.get_session(args.get("session_id"), wait_seconds=30)
        if session.status != "running":
            echo(
                f"{session.phase}: {session.workflow} {session.status} in "
                f"{session.elapsed_seconds:.1f}s ({session.tasks_done}/{session.tasks_total} tasks)"
            )
            for t in session.failed_tasks:
                echo(f"  failed task {t.name}: {t.error}")
        return session.next_action
    if action.tool == "validate_tables":
        wants_accept = bool(args.get("accept_warnings"))
        if wants_accept and not accept_warnings:
            raise PipelineError(
                f"{phase} validated WARN; rerun with --accept-warnings to continue past it"
            )
        result = await p.validate_tables(phase, accept_warnings=wants_accept or accept_warnings)
        echo(f"{phase}: validation {result.verdict}")
        for w in result.warnings:
            echo(f"  warning: {w}")
        for f in result.failures:
            echo(f"  failure: {f}")
        if result.verdict == "WARN" and result.accepted_warnings:
            accepted.append(phase)
        return result.next_action
    raise PipelineError(f"the headless run does not know how to do {action.tool}")


async def _stopped(cp: str, action: NextAction, error: str | None = None) -> RunOutcome:
    p = Pipeline(cp)
    status = p.status()
    phase = next(
        (ph for ph in status.phases if ph.status not in ("passed", "accepted", "skipped")), None
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
    return RunOutcome(
        exit_code=EXIT_FAILED,
        message=error or action.why,
        report_path=report.path,
        failed_phase=phase.phase if phase else None,
        failed_task=task,
        log_tail=tail,
    )
