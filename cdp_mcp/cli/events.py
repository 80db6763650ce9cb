"""What a headless run (`cdp-mcp run`, `demo`) reports as it goes: structured events.

`run_pipeline` emits them in order to one sink. A display (`cdp_mcp.cli.progress`) renders
them live or as lines; `lines()` is each event as plain log text (what a pipe or CI log shows).
The run ends with `RunFinished`, carrying the outcome and a per-phase summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from cdp_mcp.pipeline.models import NextAction

Step = Literal["generate", "push", "secrets", "start", "monitor", "validate"]
STEPS: tuple[Step, ...] = ("generate", "push", "secrets", "start", "monitor", "validate")


class PhaseSummary(BaseModel):
    """One phase at the end of a run, as the pipeline state has it."""

    phase: str
    # PhaseStatus: pending | in_progress | passed | warned | accepted | failed | skipped
    status: str
    verdict: str | None = None
    seconds: float | None = None  # first step's start to last step's end
    tables: int | None = None  # tables validated
    rows: int | None = None  # rows of its data tables (logs left out); None for unification
    profiles: int | None = None  # unification: the profiles it built
    sessions: list[str] = Field(default_factory=list)  # session ids of its workflows


class RunOutcome(BaseModel):
    exit_code: int
    message: str
    report_path: str | None = None
    html_report_path: str | None = None
    failed_phase: str | None = None
    failed_task: str | None = None
    log_tail: str | None = None
    next_steps: list[str] = Field(default_factory=list)  # a person's choices at a failure
    next_action: NextAction | None = None  # where it stopped: the CLI words it for a shell
    phases: list[PhaseSummary] = Field(default_factory=list)


@dataclass(frozen=True)
class RunStarted:
    client: str
    backend: str
    workspace: str
    phases: dict[str, str]  # phase -> its status in the saved state (resumed runs)
    preflight: tuple[str, ...] = ()
    resumed: bool = False
    config_path: str = ""

    def lines(self) -> list[str]:
        head = f"pipeline {self.client} on {self.backend} (workspace {self.workspace})"
        return [head, *(f"  preflight: {note}" for note in self.preflight)]


@dataclass(frozen=True)
class StepStarted:
    """A step of a phase begins (it may take a while: generation reads sources, ...)."""

    phase: str
    step: Step
    workflow: str | None = None

    def lines(self) -> list[str]:
        return []


@dataclass(frozen=True)
class StepFailed:
    """A step of one source's stage failed; the run goes on with the other sources."""

    phase: str
    error: str

    def lines(self) -> list[str]:
        return [
            f"{self.phase}: {self.error}",
            f"{self.phase}: waits for a person; the other sources go on",
        ]


@dataclass(frozen=True)
class Generated:
    phase: str
    files: int
    workflows: tuple[str, ...]

    def lines(self) -> list[str]:
        return [
            f"{self.phase}: generated {self.files} files; workflows {', '.join(self.workflows)}"
        ]


@dataclass(frozen=True)
class Pushed:
    phase: str
    project: str
    revision: str

    def lines(self) -> list[str]:
        return [f"{self.phase}: pushed {self.project} revision {self.revision}"]


@dataclass(frozen=True)
class SecretsSet:
    phase: str
    names: tuple[str, ...]

    def lines(self) -> list[str]:
        return [
            f"{self.phase}: set secrets {', '.join(self.names) or '(none)'} from the environment"
        ]


@dataclass(frozen=True)
class WorkflowStarted:
    phase: str
    workflow: str
    session_id: str
    attempt_id: str
    retry: bool = False  # a retry of the failed tasks of the same session

    def lines(self) -> list[str]:
        how = "retrying failed tasks of" if self.retry else "started"
        return [
            f"{self.phase}: {how} {self.workflow} "
            f"(session {self.session_id}, attempt {self.attempt_id})"
        ]


@dataclass(frozen=True)
class TaskProgress:
    """A look at a running workflow; comes about once a second while it runs."""

    phase: str
    workflow: str
    session_id: str
    done: int
    total: int
    running: tuple[str, ...] = ()  # tasks running now, most recently started first
    elapsed: float = 0.0

    @property
    def current_task(self) -> str | None:
        return self.running[0] if self.running else None

    def lines(self) -> list[str]:
        now = f", running {self.current_task}" if self.current_task else ""
        return [
            f"{self.phase}: {self.workflow} {self.done}/{self.total} tasks, "
            f"{self.elapsed:.0f}s{now}"
        ]


@dataclass(frozen=True)
class FailedTaskInfo:
    name: str
    error: str | None


@dataclass(frozen=True)
class WorkflowFinished:
    phase: str
    workflow: str
    session_id: str
    status: str  # success | error | killed | running (past the monitor deadline)
    elapsed: float
    done: int
    total: int
    failed: tuple[FailedTaskInfo, ...] = ()
    timed_out: bool = False

    def lines(self) -> list[str]:
        head = (
            f"{self.phase}: {self.workflow} {self.status} in {self.elapsed:.1f}s "
            f"({self.done}/{self.total} tasks)"
        )
        return [head, *(f"  failed task {t.name}: {t.error}" for t in self.failed)]


@dataclass(frozen=True)
class Validated:
    phase: str
    verdict: str  # PASS | WARN | FAIL
    accepted: bool = False  # a WARN accepted with --accept-warnings
    warnings: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    tables: int = 0
    rows: int | None = None  # as PhaseSummary.rows
    profiles: int | None = None  # as PhaseSummary.profiles
    seconds: float | None = None  # the phase's time in the state, as PhaseSummary.seconds

    def lines(self) -> list[str]:
        return [
            f"{self.phase}: validation {self.verdict}",
            *(f"  warning: {w}" for w in self.warnings),
            *(f"  failure: {f}" for f in self.failures),
        ]


@dataclass(frozen=True)
class RunFinished:
    outcome: RunOutcome

    def lines(self) -> list[str]:
        return []  # the caller shows the outcome (cdp_mcp.cli.progress)


RunEvent = (
    StepFailed
    | RunStarted
    | StepStarted
    | Generated
    | Pushed
    | SecretsSet
    | WorkflowStarted
    | TaskProgress
    | WorkflowFinished
    | Validated
    | RunFinished
)
EventSink = Callable[[RunEvent], None]
