"""What to do next, read off the state: the orchestration's single source of guidance.

`init_pipeline`, every tool result, the `cdp_implement` prompt and `cdp-mcp run` all ask
this module, so the agent and the headless runner follow the same path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.phases import ORDER, Phase, workflows
from cdp_mcp.core.tools import ASK_PERSON, ToolName
from cdp_mcp.pipeline.models import NextAction
from cdp_mcp.pipeline.state import (
    MAX_ATTEMPTS,
    PhaseState,
    PhaseStatus,
    PipelineState,
    StepState,
    StepStatus,
)

DONE = (PhaseStatus.PASSED, PhaseStatus.ACCEPTED, PhaseStatus.SKIPPED)


def format_call(action: NextAction) -> str:
    """`tool(arg='value', flag=true, ...)`: the call as an agent would write it."""
    args = ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={json.dumps(v)}"
        for k, v in action.arguments.items()
    )
    return f"{action.tool}({args})"


def execute_step(workflow: str) -> str:
    return f"execute:{workflow}"


def out_of_attempts(step: StepState) -> bool:
    """The step failed and has used its whole budget (a running last attempt still counts)."""
    return (
        step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) and step.attempts >= MAX_ATTEMPTS
    )


def decision_choices(
    cp: str, phase: Phase, retry: NextAction | None = None, retry_label: str = "retry"
) -> list[str]:
    """The person's options at a failure, each with the exact call that carries it out."""
    choices = []
    if retry is not None:
        choices.append(f"{retry_label}: {format_call(retry)}")
    choices += [
        f"fix: change the config file, call init_pipeline(config_path={cp!r}), then "
        f"generate_phase(config_path={cp!r}, phase={phase.value!r}) and go on from there",
        f"skip: skip_phase(config_path={cp!r}, phase={phase.value!r}, confirm=true) - later "
        "phases run on whatever this phase left behind",
        f"abort: abort_pipeline(config_path={cp!r}) - stops here and writes a partial report",
    ]
    return choices


def _decision(
    tool: str, args: Mapping[str, object], why: str, retry_label: str = "retry"
) -> NextAction:
    action = NextAction(tool=tool, arguments=dict(args), why=why)
    cp, phase = str(args["config_path"]), Phase(str(args["phase"]))
    action.choices = decision_choices(cp, phase, action, retry_label)
    return action


def _exhausted(phase: Phase, step: StepState, cp: str) -> NextAction:
    return NextAction(
        tool=ASK_PERSON,
        arguments={"config_path": cp, "phase": phase.value},
        why=(
            f"{phase.value}: step {step.name} failed {step.attempts} times (the limit is "
            f"{MAX_ATTEMPTS}); last error: {step.last_error or 'unknown'}. A person decides."
        ),
        choices=decision_choices(cp, phase),
    )


def _just_interrupted(step: StepState) -> bool:
    """The step's last attempt ended because its runner stopped, not by the workflow."""
    return step.details.get("interrupted") is True


def next_for_phase(cfg: PipelineConfig, state: PipelineState, ps: PhaseState) -> NextAction:
    cp, phase = state.config_path, ps.phase
    args = {"config_path": cp, "phase": phase.value}
    for step in ps.steps.values():
        if out_of_attempts(step):
            return _exhausted(phase, step, cp)
    gen = ps.steps.get("generate")
    if gen is None or gen.status is not StepStatus.SUCCEEDED:
        return NextAction(
            tool=ToolName.GENERATE_PHASE, arguments=args, why=f"render the {phase.value} project"
        )
    deploy = ps.steps.get("deploy")
    if deploy is None or deploy.status is not StepStatus.SUCCEEDED:
        why = f"deploy the {phase.value} project"
        if deploy is not None and deploy.status is StepStatus.FAILED:
            return _decision(
                ToolName.PUSH_PROJECT, args, f"{why}; the last push failed: {deploy.last_error}"
            )
        return NextAction(tool=ToolName.PUSH_PROJECT, arguments=args, why=why)
    missing = list(deploy.details.get("missing_secrets") or [])
    if missing:
        return NextAction(
            tool=ToolName.SET_SECRETS,
            arguments={**args, "names": missing},
            why=(
                f"the project references secrets it does not have yet: {', '.join(missing)}; "
                "export them in the server's environment (see README), then set them"
            ),
        )
    for wf in workflows(cfg, phase):
        ex = ps.steps.get(execute_step(wf))
        wf_args = {**args, "workflow": wf}
        if ex is None or ex.status is StepStatus.PENDING:
            return NextAction(
                tool=ToolName.START_WORKFLOW, arguments=wf_args, why=f"run workflow {wf}"
            )
        if ex.status is StepStatus.RUNNING:
            return NextAction(
                tool=ToolName.GET_SESSION,
                arguments={"config_path": cp, "session_id": ex.session_id, "wait_seconds": 60},
                why=f"workflow {wf} is running (attempt {ex.attempt_id}); wait for it",
            )
        if ex.status is StepStatus.LOST:
            run_again = NextAction(tool=ToolName.START_WORKFLOW, arguments=wf_args, why="")
            return NextAction(
                tool=ASK_PERSON,
                arguments=args,
                why=f"workflow {wf}: {ex.last_error}. A person decides.",
                choices=decision_choices(cp, phase, run_again, "run it again from the start"),
            )
        interruptions = int(ex.details.get("interruptions", 0))
        if ex.status is StepStatus.FAILED and _just_interrupted(ex):
            if interruptions >= MAX_ATTEMPTS:
                resume = NextAction(tool=ToolName.START_WORKFLOW, arguments=wf_args, why="")
                return NextAction(
                    tool=ASK_PERSON,
                    arguments=args,
                    why=(
                        f"workflow {wf} was interrupted {interruptions} times: something stops "
                        "the runner's process while it runs (a kill, or memory running out). "
                        "A person decides."
                    ),
                    choices=decision_choices(cp, phase, resume, "resume it once more"),
                )
            return NextAction(
                tool=ToolName.START_WORKFLOW,
                arguments=wf_args,
                why=f"workflow {wf}: {ex.last_error}",
            )
        if ex.status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
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
    val = ps.steps.get("validate")
    if ps.status is PhaseStatus.WARNED:
        return _decision(
            ToolName.VALIDATE_TABLES,
            {**args, "accept_warnings": True},
            f"{phase.value} validated WARN: {', '.join(ps.validation_warnings()) or 'see validate_tables'}. "
            "A person decides whether to accept the warnings.",
            retry_label="accept the warnings",
        )
    if val is not None and val.status is StepStatus.FAILED:
        return _decision(
            ToolName.VALIDATE_TABLES, args, f"{phase.value} validated FAIL: {val.last_error}"
        )
    return NextAction(
        tool=ToolName.VALIDATE_TABLES, arguments=args, why=f"check the {phase.value} tables"
    )


def next_action(cfg: PipelineConfig, state: PipelineState) -> NextAction:
    cp = state.config_path
    if state.aborted:
        return NextAction(
            tool=ToolName.FINAL_REPORT,
            arguments={"config_path": cp},
            why=f"the pipeline was aborted ({state.abort_reason or 'by request'}); the report says where it stopped",
        )
    for phase in ORDER:
        ps = state.phase(phase)
        if ps.status not in DONE:
            return next_for_phase(cfg, state, ps)
    return NextAction(
        tool=ToolName.FINAL_REPORT,
        arguments={"config_path": cp},
        why="every phase is done; write the report",
    )
