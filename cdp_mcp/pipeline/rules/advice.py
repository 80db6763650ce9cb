"""What to do next, read off the state: the orchestration's single source of guidance.

`init_pipeline`, every tool result, the `cdp_implement` prompt and `cdp-mcp run` all ask
this module, so the agent and the headless runner follow the same path. It reads the same
preconditions (`steps`) the orchestrator refuses calls with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import Phase, stage_config, workflows
from cdp_mcp.core.tools import ASK_PERSON, ToolName
from cdp_mcp.pipeline.models import NextAction
from cdp_mcp.pipeline.rules import steps
from cdp_mcp.pipeline.rules.budget import DONE, all_done
from cdp_mcp.pipeline.state import (
    MAX_ATTEMPTS,
    PhaseState,
    PhaseStatus,
    PipelineState,
    StepState,
    StepStatus,
)

Args = dict[str, object]
ACCEPT_WARNINGS = "accept the warnings"  # the label of the choice that accepts a WARN


def format_call(action: NextAction) -> str:
    """`tool(arg='value', flag=true, ...)`: the call as an agent would write it."""
    args = ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={json.dumps(v)}"
        for k, v in action.arguments.items()
    )
    return f"{action.tool}({args})"


def next_call_words(action: NextAction) -> str:
    """`Next call: tool(...)`, or the person's choices when a person decides."""
    if action.tool == ASK_PERSON:
        options = "; ".join(action.choices) or action.why
        return f"Next: ask the person, whose choices are: {options}"
    return f"Next call: {format_call(action)}"


def stage_arguments(cp: str, ps: PhaseState) -> Args:
    """A stage's tool arguments: the phase, and the source of a per-source phase."""
    args: Args = {"config_path": cp, "phase": ps.phase.value}
    if ps.source is not None:
        args["source"] = ps.source
    return args


def decision_choices(
    cp: str,
    phase: Phase,
    retry: NextAction | None = None,
    retry_label: str = "retry",
    source: str | None = None,
) -> list[str]:
    """The person's options at a failure, each with the exact call that carries it out."""
    choices = []
    if retry is not None:
        choices.append(f"{retry_label}: {format_call(retry)}")
    own = f", source={source!r}" if source is not None else ""
    later = (
        f"{source}'s later phases run on whatever this phase left behind (its staging "
        "skipped: unification leaves the source out)"
        if source is not None
        else "later phases run on whatever this phase left behind"
    )
    choices += [
        f"fix: change the config file, call init_pipeline(config_path={cp!r}), then "
        f"generate_phase(config_path={cp!r}, phase={phase.value!r}{own}) and go on from there",
        f"skip: skip_phase(config_path={cp!r}, phase={phase.value!r}{own}, confirm=true) - {later}",
        f"abort: abort_pipeline(config_path={cp!r}) - stops here and writes a partial report",
    ]
    return choices


def _decision(
    tool: str, args: Mapping[str, object], why: str, retry_label: str = "retry"
) -> NextAction:
    action = NextAction(tool=tool, arguments=dict(args), why=why)
    action.choices = decision_choices(*_stage_of(args), action, retry_label, _source_of(args))
    return action


def _stage_of(args: Mapping[str, object]) -> tuple[str, Phase]:
    return str(args["config_path"]), Phase(str(args["phase"]))


def _source_of(args: Mapping[str, object]) -> str | None:
    source = args.get("source")
    return None if source is None else str(source)


def _ask_person(args: Args, why: str, retry: NextAction | None, label: str) -> NextAction:
    return NextAction(
        tool=ASK_PERSON,
        arguments=dict(args),
        why=why,
        choices=decision_choices(*_stage_of(args), retry, label, _source_of(args)),
    )


def _exhausted(ps: PhaseState, step: StepState, cp: str) -> NextAction:
    action = _ask_person(
        stage_arguments(cp, ps),
        f"{ps.key}: step {step.name} failed {step.attempts} times (the limit is "
        f"{MAX_ATTEMPTS}); last error: {step.last_error or 'unknown'}. A person decides.",
        None,
        "",
    )
    reopen = NextAction(
        tool=ToolName.INIT_PIPELINE,
        arguments={"config_path": cp, "retry_after_fix": True},
        why="",
    )
    action.choices.insert(
        0,
        "retry after a fix outside the config (a source file restored or re-saved): "
        f"{format_call(reopen)} re-opens the failed steps' budgets (recorded in the state), "
        "then go on from its next_action",
    )
    return action


def _just_interrupted(step: StepState) -> bool:
    """The step's last attempt ended because its runner stopped, not by the workflow."""
    return step.details.get("interrupted") is True


def _project_action(ps: PhaseState, args: Args) -> NextAction | None:
    """Generate, push and secrets: what the project needs before any workflow runs."""
    phase = ps.key
    gen = ps.steps.get("generate")
    if gen is not None and gen.status is StepStatus.FAILED:
        again = NextAction(tool=ToolName.GENERATE_PHASE, arguments=args, why="")
        return _ask_person(
            args,
            f"generating {phase} failed: {gen.last_error}. Fix the cause; a person decides.",
            again,
            "once it is fixed, generate it again",
        )
    if steps.not_generated(ps):
        return NextAction(
            tool=ToolName.GENERATE_PHASE, arguments=args, why=f"render the {phase} project"
        )
    if steps.not_pushed(ps):
        deploy = ps.steps.get("deploy")
        why = f"deploy the {phase} project"
        if deploy is not None and deploy.status is StepStatus.FAILED:
            return _decision(
                ToolName.PUSH_PROJECT, args, f"{why}; the last push failed: {deploy.last_error}"
            )
        return NextAction(tool=ToolName.PUSH_PROJECT, arguments=args, why=why)
    missing = steps.recorded_missing_secrets(ps)
    if missing:
        return NextAction(
            tool=ToolName.SET_SECRETS,
            arguments={**args, "names": missing},
            why=(
                f"the project references secrets it does not have yet: {', '.join(missing)}; "
                "export them in the server's environment (see README), then set them"
            ),
        )
    return None


def _interrupted_action(wf: str, ex: StepState, args: Args, wf_args: Args) -> NextAction:
    start = NextAction(tool=ToolName.START_WORKFLOW, arguments=wf_args, why="")
    interruptions = int(ex.details.get("interruptions", 0))
    if interruptions >= MAX_ATTEMPTS:
        return _ask_person(
            args,
            f"workflow {wf} was interrupted {interruptions} times: something stops "
            "the runner's process while it runs (a kill, or memory running out). "
            "A person decides.",
            start,
            "resume it once more",
        )
    start.why = f"workflow {wf}: {ex.last_error}"
    return start


def _data_failure(wf: str, ex: StepState, args: Args, wf_args: Args) -> NextAction:
    """A failure of the source data: a retry before the file is fixed fails the same way."""
    retry = NextAction(tool=ToolName.START_WORKFLOW, arguments=wf_args, why="")
    return _ask_person(
        args,
        f"workflow {wf} failed on the source data, not the config: {ex.last_error}. "
        f"Fix that first (restore or re-save the file); a retry before then fails the "
        f"same way and spends an attempt ({ex.attempts} of {MAX_ATTEMPTS} used). A person "
        "decides.",
        retry,
        "once the file is fixed, retry the failed tasks",
    )


def _failed_action(wf: str, ex: StepState, cp: str, wf_args: Args) -> NextAction:
    if ex.status is StepStatus.FAILED and ex.details.get("data_problem"):
        args = {k: v for k, v in wf_args.items() if k != "workflow"}
        return _data_failure(wf, ex, args, wf_args)
    timed_out = ex.status is StepStatus.TIMED_OUT
    action = _decision(
        ToolName.START_WORKFLOW,
        wf_args,
        f"workflow {wf} {'timed out' if timed_out else 'failed'}: "
        f"{ex.last_error or 'see get_logs'}. Calling start_workflow again retries only "
        "the failed tasks (Digdag resume)"
        + (", after killing the attempt still running." if timed_out else "."),
    )
    if timed_out:
        wait = NextAction(
            tool=ToolName.GET_SESSION,
            arguments={"config_path": cp, "session_id": ex.session_id, "wait_seconds": 600},
            why="",
        )
        action.choices.insert(1, f"wait longer: {format_call(wait)}")
    return action


def _workflow_action(wf: str, ex: StepState | None, cp: str, args: Args) -> NextAction | None:
    """What workflow `wf` needs next; None when it is past (succeeded)."""
    wf_args = {**args, "workflow": wf}
    if ex is None or ex.status is StepStatus.PENDING:
        return NextAction(tool=ToolName.START_WORKFLOW, arguments=wf_args, why=f"run workflow {wf}")
    if ex.status is StepStatus.RUNNING:
        return NextAction(
            tool=ToolName.GET_SESSION,
            arguments={"config_path": cp, "session_id": ex.session_id, "wait_seconds": 60},
            why=f"workflow {wf} is running (attempt {ex.attempt_id}); wait for it",
        )
    if ex.status is StepStatus.LOST:
        run_again = NextAction(tool=ToolName.START_WORKFLOW, arguments=wf_args, why="")
        why = f"workflow {wf}: {ex.last_error}. A person decides."
        return _ask_person(args, why, run_again, "run it again from the start")
    if ex.status is StepStatus.FAILED and _just_interrupted(ex):
        return _interrupted_action(wf, ex, args, wf_args)
    if ex.status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
        return _failed_action(wf, ex, cp, wf_args)
    return None


def _validate_action(ps: PhaseState, args: Args) -> NextAction:
    phase = ps.key
    if ps.status is PhaseStatus.WARNED:
        # Not the accepting call itself: a literal agent must not accept on its own.
        accept = NextAction(
            tool=ToolName.VALIDATE_TABLES, arguments={**args, "accept_warnings": True}, why=""
        )
        warnings = ", ".join(ps.validation_warnings()) or "see validate_tables"
        return _ask_person(
            args,
            f"{phase} validated WARN: {warnings}. Ask the person whether to accept the "
            "warnings; never accept them on your own.",
            accept,
            ACCEPT_WARNINGS,
        )
    val = ps.steps.get("validate")
    if val is not None and val.status is StepStatus.FAILED:
        return _decision(
            ToolName.VALIDATE_TABLES, args, f"{phase} validated FAIL: {val.last_error}"
        )
    return NextAction(
        tool=ToolName.VALIDATE_TABLES, arguments=args, why=f"check the {phase} tables"
    )


def next_for_phase(cfg: PipelineConfig, state: PipelineState, ps: PhaseState) -> NextAction:
    """What one stage needs next (`cfg`: the whole config)."""
    cp = state.config_path
    args = stage_arguments(cp, ps)
    exhausted = steps.exhausted_step(ps)
    if exhausted is not None:
        return _exhausted(ps, exhausted, cp)
    action = _project_action(ps, args)
    for wf in workflows(stage_config(cfg, ps.phase, ps.source), ps.phase):
        if action is not None:
            break
        action = _workflow_action(wf, ps.steps.get(steps.execute_step(wf)), cp, args)
    return action or _validate_action(ps, args)


def _reported(state: PipelineState) -> NextAction:
    """A finished (or aborted) run whose report is written: a new run is a decision."""
    cp, run = state.config_path, state.run
    new_run = NextAction(
        tool=ToolName.INIT_PIPELINE, arguments={"config_path": cp, "new_run": True}, why=""
    )
    report = NextAction(tool=ToolName.FINAL_REPORT, arguments={"config_path": cp}, why="")
    ended = "was aborted" if state.aborted else "is finished"
    return NextAction(
        tool=ASK_PERSON,
        arguments={"config_path": cp},
        why=(
            f"run {run} {ended} and its report is written; nothing more runs on its own. "
            "A person decides whether to start a new run."
        ),
        choices=[
            "done: nothing more to do; the report stays as it is",
            f"new run: {format_call(new_run)} - starts every phase over as run {run + 1}; "
            f"run {run}'s reports move to reports/run-{run}/",
            f"write the report again: {format_call(report)}",
        ],
    )


def needs_person(action: NextAction) -> bool:
    """Only a person can move the stage on: a decision, or a validation that failed
    (validating the same tables again would fail the same way)."""
    if action.tool == ASK_PERSON:
        return True
    return (
        action.tool == ToolName.VALIDATE_TABLES
        and bool(action.choices)
        and not action.arguments.get("accept_warnings")
    )


def _waiting_words(waiting: list[tuple[PhaseState, NextAction]]) -> str:
    return "; ".join(f"{ps.key} waits for a person's decision" for ps, _ in waiting)


def next_action(cfg: PipelineConfig, state: PipelineState) -> NextAction:
    """Each source in config order through its phases, then unification. A stage that
    waits for a person's decision holds up only its own source's later phases: the other
    sources go on, and the person is asked once nothing else can run."""
    cp = state.config_path
    if state.reported_at is not None and (state.aborted or all_done(state)):
        return _reported(state)
    if state.aborted:
        return NextAction(
            tool=ToolName.FINAL_REPORT,
            arguments={"config_path": cp},
            why=f"the pipeline was aborted ({state.abort_reason or 'by request'}); the report says where it stopped",
        )
    if state.sources != cfg.source_names:
        return NextAction(
            tool=ToolName.INIT_PIPELINE,
            arguments={"config_path": cp},
            why=(
                f"the config's sources ({', '.join(cfg.source_names)}) are not the state's "
                f"({', '.join(state.sources)}): init_pipeline plans the stages of the new "
                "config"
            ),
        )
    waiting: list[tuple[PhaseState, NextAction]] = []
    for source in state.sources:
        ps = next((s for s in state.ordered() if s.source == source and s.status not in DONE), None)
        if ps is None:
            continue
        action = next_for_phase(cfg, state, ps)
        if not needs_person(action):
            if waiting:
                action.why += f" (meanwhile {_waiting_words(waiting)})"
            return action
        waiting.append((ps, action))
    if waiting:
        ps, action = waiting[0]
        if len(waiting) > 1:
            action.why += f" (also: {_waiting_words(waiting[1:])})"
        if state.sources and len(state.sources) > 1:
            action.why += "; unification waits for every source's staging"
        return action
    unification = state.phase(Phase.UNIFICATION)
    if unification.status not in DONE:
        return next_for_phase(cfg, state, unification)
    return NextAction(
        tool=ToolName.FINAL_REPORT,
        arguments={"config_path": cp},
        why="every phase is done; write the report",
    )


def accepts_warnings_choice(action: NextAction) -> bool:
    """The person's decision at a WARN: its first choice accepts the warnings."""
    return action.tool == ASK_PERSON and any(
        c.startswith(f"{ACCEPT_WARNINGS}: ") for c in action.choices
    )


def next_query_page(
    cp: str, sql: str, limit: int, offset: int, kept: int, cut_by_size: bool
) -> NextAction:
    """The call that reads the rows after the `kept` ones of a query result."""
    why = f"{kept} rows shown (from row {offset})"
    if cut_by_size:
        why += ", cut to keep the result small; select fewer columns for more rows per call"
    return NextAction(
        tool=ToolName.QUERY,
        arguments={"config_path": cp, "sql": sql, "limit": limit, "offset": offset + kept},
        why=f"{why}; this call reads the next rows (an ORDER BY in the SQL keeps pages stable)",
    )


def next_logs_page(cp: str, attempt_id: str, task: str | None, next_offset: int) -> NextAction:
    args: Args = {"config_path": cp, "attempt_id": attempt_id}
    if task is not None:
        args["task"] = task
    return NextAction(
        tool=ToolName.GET_LOGS,
        arguments={**args, "offset": next_offset},
        why="more log text follows; this call reads the next page",
    )


def after_report(cp: str, state: PipelineState, pipeline_next: NextAction) -> NextAction:
    """After final_report: tell the person, or go on with a pipeline that is not done."""
    if state.aborted:
        why = "the pipeline was aborted; show the person the report's path and where it stopped"
    elif all_done(state):
        why = (
            "the pipeline is finished; give the person the report's path and the headline "
            f"figures. Only the person may start it over: init_pipeline(config_path={cp!r}, "
            "new_run=true)"
        )
    else:
        return pipeline_next  # a partial report: the pipeline goes on
    return NextAction(tool=ASK_PERSON, arguments={"config_path": cp}, why=why)
