"""What to do next, read off the state: the orchestration's single source of guidance.

`init_pipeline`, every tool result, the `cdp_implement` prompt and `cdp-mcp run` all ask
this module, so the agent and the headless runner follow the same path.
"""

from __future__ import annotations

from collections.abc import Mapping

from cdp_mcp.config import PipelineConfig
from cdp_mcp.phases import ORDER, Phase, workflows
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
DECISION_CHOICES = [
    "retry: call the suggested tool again (attempts left are counted per step)",
    "fix: change the config, call init_pipeline, then generate_phase again",
    "skip: skip_phase(config_path, phase, confirm=true) — later phases run without it",
    "abort: abort_pipeline(config_path) — stops here and writes a partial report",
]


def execute_step(workflow: str) -> str:
    return f"execute:{workflow}"


def out_of_attempts(step: StepState) -> bool:
    """The step failed and has used its whole budget (a running last attempt still counts)."""
    return (
        step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) and step.attempts >= MAX_ATTEMPTS
    )


def _decision(tool: str, args: Mapping[str, object], why: str) -> NextAction:
    return NextAction(tool=tool, arguments=dict(args), why=why, choices=DECISION_CHOICES)


def _exhausted(phase: Phase, step: StepState, cp: str) -> NextAction:
    return NextAction(
        tool="ask_person",
        arguments={"config_path": cp, "phase": phase.value},
        why=(
            f"{phase.value}: step {step.name} failed {step.attempts} times (the limit is "
            f"{MAX_ATTEMPTS}); last error: {step.last_error or 'unknown'}. A person decides."
        ),
        choices=DECISION_CHOICES[1:],
    )


def next_for_phase(cfg: PipelineConfig, state: PipelineState, ps: PhaseState) -> NextAction:
    cp, phase = state.config_path, ps.phase
    args = {"config_path": cp, "phase": phase.value}
    for step in ps.steps.values():
        if out_of_attempts(step):
            return _exhausted(phase, step, cp)
    gen = ps.steps.get("generate")
    if gen is None or gen.status is not StepStatus.SUCCEEDED:
        return NextAction(
            tool="generate_phase", arguments=args, why=f"render the {phase.value} project"
        )
    deploy = ps.steps.get("deploy")
    if deploy is None or deploy.status is not StepStatus.SUCCEEDED:
        why = f"deploy the {phase.value} project"
        if deploy is not None and deploy.status is StepStatus.FAILED:
            return _decision(
                "push_project", args, f"{why}; the last push failed: {deploy.last_error}"
            )
        return NextAction(tool="push_project", arguments=args, why=why)
    for wf in workflows(cfg, phase):
        ex = ps.steps.get(execute_step(wf))
        wf_args = {**args, "workflow": wf}
        if ex is None or ex.status is StepStatus.PENDING:
            return NextAction(tool="start_workflow", arguments=wf_args, why=f"run workflow {wf}")
        if ex.status is StepStatus.RUNNING:
            return NextAction(
                tool="get_session",
                arguments={"config_path": cp, "session_id": ex.session_id, "wait_seconds": 60},
                why=f"workflow {wf} is running (attempt {ex.attempt_id}); wait for it",
            )
        if ex.status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
            what = "timed out" if ex.status is StepStatus.TIMED_OUT else "failed"
            return _decision(
                "start_workflow",
                wf_args,
                f"workflow {wf} {what}: {ex.last_error or 'see get_logs'}. Calling "
                "start_workflow again retries only the failed tasks (Digdag resume).",
            )
    val = ps.steps.get("validate")
    if ps.status is PhaseStatus.WARNED:
        return _decision(
            "validate_tables",
            {**args, "accept_warnings": True},
            f"{phase.value} validated WARN: {', '.join(ps.validation_warnings()) or 'see validate_tables'}. "
            "A person decides whether to accept the warnings.",
        )
    if val is not None and val.status is StepStatus.FAILED:
        return _decision("validate_tables", args, f"{phase.value} validated FAIL: {val.last_error}")
    return NextAction(tool="validate_tables", arguments=args, why=f"check the {phase.value} tables")


def next_action(cfg: PipelineConfig, state: PipelineState) -> NextAction:
    cp = state.config_path
    if state.aborted:
        return NextAction(
            tool="final_report",
            arguments={"config_path": cp},
            why=f"the pipeline was aborted ({state.abort_reason or 'by request'}); the report says where it stopped",
        )
    for phase in ORDER:
        ps = state.phase(phase)
        if ps.status not in DONE:
            return next_for_phase(cfg, state, ps)
    return NextAction(
        tool="final_report",
        arguments={"config_path": cp},
        why="every phase is done; write the report",
    )
