"""How `cdp-mcp run` and `demo` show a run: live on a terminal, plain lines elsewhere.

`RunDisplay` is the sink of the headless run's events (`cdp_mcp.cli.events`). On an
interactive terminal it keeps a live board at the bottom of the screen (each phase with its
mark, its current step and, for a running workflow, a bar of tasks done with the task running
now and the time so far) and prints what happened above it. Anywhere else (a pipe, CI, tests)
it prints the same events as plain lines, with a progress line now and then for a long
workflow, and no cursor movement. Both end with a summary table and, on a failure, the failing
phase and task with the tail of its log and what to do next. Colours follow rich's rules:
NO_COLOR turns them off, FORCE_COLOR on.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cdp_mcp.cli import shell
from cdp_mcp.cli.events import (
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
from cdp_mcp.core.phases import ORDER

Mark = Literal["pending", "running", "passed", "warn", "accepted", "failed", "skipped"]

_MARKS: dict[str, tuple[str, str]] = {  # status -> (mark, style)
    "pending": ("·", "dim"),
    "passed": ("✔", "green"),
    "warn": ("!", "yellow"),
    "accepted": ("✔", "yellow"),
    "failed": ("✘", "bold red"),
    "skipped": ("-", "dim"),
}
_WORDS: dict[str, str] = {
    "pending": "pending",
    "running": "running",
    "passed": "PASS",
    "warn": "WARN",
    "accepted": "WARN accepted",
    "failed": "FAILED",
    "skipped": "skipped",
}
# PhaseStatus (saved state) -> the board's status
_FROM_STATE: dict[str, Mark] = {
    "pending": "pending",
    "in_progress": "pending",
    "passed": "passed",
    "warned": "warn",
    "accepted": "accepted",
    "failed": "failed",
    "skipped": "skipped",
}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


@dataclass
class PhaseRow:
    """What the board shows of one phase."""

    name: str
    status: Mark = "pending"
    step: Step | None = None
    workflow: str | None = None
    done: int = 0
    total: int = 0
    current: str | None = None
    also_running: int = 0  # other tasks running next to `current`
    elapsed: float = 0.0  # of the workflow, when last heard of
    heard_at: float | None = None  # monotonic time of that
    started_at: float | None = None  # monotonic: the phase's first event in this run
    ended_at: float | None = None
    seconds: float | None = None  # the phase's time in the state, once it validated
    note: str = ""  # the last thing that happened (a finished workflow, a failed task)

    def workflow_elapsed(self, now: float) -> float:
        return self.elapsed + (now - self.heard_at if self.heard_at is not None else 0.0)


class Board:
    """The state of the run as the events tell it, renderable as the live view."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # a row per stage (`ingestion:shop`, ..., `unification`), from the run's first event
        self.rows = {p.value: PhaseRow(p.value) for p in ORDER}
        self.title = ""
        self.clock = clock

    def _row(self, phase: str) -> PhaseRow:
        row = self.rows.setdefault(phase, PhaseRow(phase))
        if row.status == "pending":
            row.status = "running"
            row.started_at = self.clock()
        return row

    def apply(self, event: RunEvent) -> None:
        now = self.clock()
        for kind, handle in _HANDLERS:
            if isinstance(event, kind):
                handle(self, event, now)
                return

    def _run_started(self, event: RunStarted, now: float) -> None:
        self.title = f"{event.client} on {event.backend}"
        if event.phases:
            self.rows = {}  # the stages the pipeline plans, in run order
        for phase, status in event.phases.items():
            self.rows.setdefault(phase, PhaseRow(phase)).status = _FROM_STATE.get(status, "pending")

    def _step_started(self, event: StepStarted, now: float) -> None:
        row = self._row(event.phase)
        row.step = event.step
        if event.step != "monitor":
            row.current = None

    def _step_failed(self, event: StepFailed, now: float) -> None:
        row = self._row(event.phase)
        row.step, row.current, row.ended_at = None, None, now
        row.status = "failed"
        row.note = event.error.splitlines()[0][:120]

    def _generated(self, event: Generated, now: float) -> None:
        self._row(event.phase).note = f"{event.files} files"

    def _pushed(self, event: Pushed, now: float) -> None:
        self._row(event.phase).note = f"revision {event.revision[:12]}"

    def _secrets_set(self, event: SecretsSet, now: float) -> None:
        self._row(event.phase).note = f"secrets {', '.join(event.names) or '(none)'}"

    def _workflow_started(self, event: WorkflowStarted, now: float) -> None:
        row = self._row(event.phase)
        row.step, row.workflow = "monitor", event.workflow
        row.done = row.total = row.also_running = 0
        row.current, row.elapsed, row.heard_at = None, 0.0, now
        row.note = f"retry of session {event.session_id}" if event.retry else ""

    def _task_progress(self, event: TaskProgress, now: float) -> None:
        row = self._row(event.phase)
        row.step, row.workflow = "monitor", event.workflow
        row.done, row.total = event.done, event.total
        row.current = event.current_task
        row.also_running = max(0, len(event.running) - 1)
        row.elapsed, row.heard_at = event.elapsed, now

    def _workflow_finished(self, event: WorkflowFinished, now: float) -> None:
        row = self._row(event.phase)
        row.done, row.total, row.current = event.done, event.total, None
        row.elapsed, row.heard_at = event.elapsed, None
        failed = f", failed {event.failed[0].name}" if event.failed else ""
        row.note = f"{event.workflow} {event.status} ({event.done}/{event.total}){failed}"

    def _validated(self, event: Validated, now: float) -> None:
        row = self._row(event.phase)
        row.step, row.current, row.ended_at = None, None, now
        verdict: Mark = "accepted" if event.accepted else "warn"
        if event.verdict in ("PASS", "FAIL"):
            verdict = "passed" if event.verdict == "PASS" else "failed"
        row.status = verdict
        row.seconds = event.seconds
        row.note = f"{event.tables} tables{_output(event.rows, event.profiles)}"

    def _run_finished(self, event: RunFinished, now: float) -> None:
        for s in event.outcome.phases:
            row = self.rows.setdefault(s.phase, PhaseRow(s.phase))
            row.status = _FROM_STATE.get(s.status, "pending")
            row.step = None
            if s.seconds is not None:
                row.seconds = s.seconds
        if event.outcome.failed_phase:
            self.rows[event.outcome.failed_phase].status = "failed"

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """One line a phase: mark, name, status or step, time, then what it is doing."""
        now = self.clock()
        width = options.max_width
        bar_width = 20 if width >= 100 else 10
        state_width = max(
            len(_WORDS[r.status]) if r.status != "running" else 8 for r in list(self.rows.values())
        )
        yield Text(f"cdp-mcp · {self.title}" if self.title else "cdp-mcp", style="bold")
        for row in list(self.rows.values()):
            line = Text(no_wrap=True, overflow="ellipsis")
            if row.status == "running":
                line.append_text(_spinner_frame(now))
                state = Text(row.step or "running", style="bold cyan")
            else:
                symbol, style = _MARKS[row.status]
                line.append(symbol, style=style)
                state = Text(_WORDS[row.status], style=style)
            line.append(" ").append(row.name.ljust(11), style="bold").append(" ")
            line.append_text(state).append(" " * (state_width - len(state) + 1))
            monitoring = row.status == "running" and row.step == "monitor" and row.workflow
            if monitoring:
                clock = duration(row.workflow_elapsed(now))
            elif row.status != "running" and row.seconds is not None:
                clock = duration(row.seconds)  # the state's, as the summary shows it
            elif row.started_at is not None:
                clock = duration((row.ended_at or now) - row.started_at)
            else:
                clock = ""
            line.append(clock.rjust(6), style="dim").append("  ")
            if monitoring:
                line.append_text(_bar(row.done, row.total, bar_width))
                line.append(f" {row.done}/{row.total}  ".rjust(10))
                line.append(row.workflow or "", style="bold")
                if row.current:
                    line.append(" ▸ ", style="dim").append(
                        _short_task(row.current, row.workflow), style="cyan"
                    )
                    if row.also_running:
                        line.append(f" (+{row.also_running} more)", style="dim")
            else:
                line.append(row.note, style="dim")
            line.truncate(width, overflow="ellipsis")
            yield line


# Each event and how the board takes it (one small method per kind).
_HANDLERS: tuple[tuple[type[Any], Callable[[Board, Any, float], None]], ...] = (
    (RunStarted, Board._run_started),
    (StepStarted, Board._step_started),
    (StepFailed, Board._step_failed),
    (Generated, Board._generated),
    (Pushed, Board._pushed),
    (SecretsSet, Board._secrets_set),
    (WorkflowStarted, Board._workflow_started),
    (TaskProgress, Board._task_progress),
    (WorkflowFinished, Board._workflow_finished),
    (Validated, Board._validated),
    (RunFinished, Board._run_finished),
)


def _output(rows: int | None, profiles: int | None) -> str:
    if profiles is not None:
        return f", {profiles:,} profiles"
    return f", {rows:,} rows" if rows is not None else ""


def _spinner_frame(now: float) -> Text:
    frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    return Text(frames[int(now * 10) % len(frames)], style="cyan")


def _bar(done: int, total: int, width: int) -> Text:
    filled = round(width * done / total) if total else 0
    return Text("━" * filled, style="green").append("━" * (width - filled), style="grey23")


def _short_task(task: str, workflow: str | None) -> str:
    """`+wf+load+orders` of workflow `wf` -> `+load+orders`: the workflow is shown already."""
    prefix = f"+{workflow}"
    if workflow and task.startswith(prefix + "+"):
        return task[len(prefix) :]
    return task


def _wants_live(console: Console) -> bool:
    """A live display only on a real interactive terminal (FORCE_COLOR alone is not one)."""
    if not console.is_interactive:
        return False
    isatty = getattr(console.file, "isatty", None)
    try:
        tty = bool(isatty and isatty())
    except ValueError:
        tty = False
    return tty or os.environ.get("TTY_INTERACTIVE") == "1"


class _Console(Console):
    """rich's Console, but a reader closing the pipe (`cdp-mcp run X 2>&1 | head`) only
    silences it: rich would raise SystemExit in the middle of a pipeline step."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


class RunDisplay:
    """The event sink of `run_pipeline` for a person: use as a context manager, call with events."""

    def __init__(
        self,
        console: Console | None = None,
        live: bool | None = None,
        progress_every: float = 30.0,
    ) -> None:
        self.console = console or _Console(stderr=True, highlight=False)
        self.live = _wants_live(self.console) if live is None else live
        self.progress_every = progress_every  # plain output: a line per this many seconds
        self.board = Board()
        self.config_path = ""
        self._live: Live | None = None
        self._last_line: dict[str, float] = {}  # session -> when its progress was last printed

    def __enter__(self) -> RunDisplay:
        if self.live:
            self._live = Live(
                self.board,
                console=self.console,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def note(self, line: str) -> None:
        """A line of the caller's (e.g. what `demo` wrote), printed like the run's."""
        self._print(Text(line))

    def _print(self, text: Text) -> None:
        self.console.print(text, soft_wrap=True)

    def __call__(self, event: RunEvent) -> None:
        self.board.apply(event)
        if isinstance(event, RunStarted):
            self.config_path = event.config_path
        if isinstance(event, RunFinished):
            self._stop()
            self.summary(event.outcome)
            return
        if isinstance(event, TaskProgress):
            if not self.live:
                self._progress_line(event)
        else:
            self._last_line.pop(getattr(event, "session_id", ""), None)
            for text in self._styled(event):
                self._print(text)
        if self._live is not None:
            self._live.refresh()

    def _progress_line(self, event: TaskProgress) -> None:
        """Plain output: a long workflow says how far it is now and then."""
        now = time.monotonic()
        last = self._last_line.setdefault(event.session_id, now)
        if now - last >= self.progress_every:
            self._last_line[event.session_id] = now
            for line in event.lines():
                self._print(Text(line))

    def _styled(self, event: RunEvent) -> list[Text]:
        lines = event.lines()
        if not lines:
            return []
        head = Text(lines[0])
        rest = [Text(line, style="dim") for line in lines[1:]]
        if isinstance(event, Validated):
            head.stylize(_verdict_style(event.verdict), len(event.phase) + 2)
            rest = [
                Text(line, style="red" if line.startswith("  failure") else "yellow")
                for line in lines[1:]
            ]
        elif isinstance(event, WorkflowFinished) and event.status != "success":
            head.stylize("red", len(event.phase) + 2)
            rest = [Text(line, style="red") for line in lines[1:]]
        elif isinstance(event, WorkflowStarted) and event.retry:
            head.stylize("yellow", len(event.phase) + 2)
        if hasattr(event, "phase"):
            head.stylize("bold", 0, len(getattr(event, "phase", "")) + 1)
        return [head, *rest]

    # -- the end ---------------------------------------------------------------------
    def summary(self, outcome: RunOutcome) -> None:
        self.console.print()
        self.console.print(summary_table(outcome, self.board.title))
        if outcome.exit_code == 1:
            if self.live:
                self.console.print(failure_panel(outcome, self.config_path))
            else:
                for line in failure_lines(outcome, self.config_path):
                    self._print(Text(line))
        else:
            style = "bold green" if outcome.exit_code == 0 else "bold yellow"
            mark = "✔ " if self.live else ""
            self._print(Text(f"{mark}{outcome.message}", style=style))
        # The reports' paths follow on stdout (cli/main.py), on a terminal or not.


def _verdict_style(verdict: str) -> str:
    return {"PASS": "green", "FAIL": "bold red"}.get(verdict, "yellow")


def _result(s: PhaseSummary, failed_phase: str | None) -> tuple[str, str]:
    if s.phase == failed_phase and s.status not in ("warned",):
        word = "FAIL" if s.verdict == "FAIL" else "FAILED"
        return word, "bold red"
    return {
        "passed": ("PASS", "green"),
        "accepted": ("WARN (accepted)", "yellow"),
        "warned": ("WARN", "yellow"),
        "failed": ("FAILED", "bold red"),
        "skipped": ("skipped", "dim"),
        "in_progress": ("stopped", "yellow"),
    }.get(s.status, ("not run", "dim"))


def summary_table(outcome: RunOutcome, title: str = "") -> Table:
    table = Table(
        title=f"cdp-mcp · {title}" if title else None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("phase", style="bold", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("tables", justify="right")
    table.add_column("rows", justify="right")
    table.add_column("profiles", justify="right")
    table.add_column("sessions")
    for s in outcome.phases:
        word, style = _result(s, outcome.failed_phase)
        table.add_row(
            s.phase,
            Text(word, style=style),
            duration(s.seconds),
            "-" if s.tables is None else str(s.tables),
            "-" if s.rows is None else f"{s.rows:,}",
            "-" if s.profiles is None else f"{s.profiles:,}",
            ", ".join(s.sessions) or "-",
        )
    return table


def failure_lines(outcome: RunOutcome, config_path: str = "") -> list[str]:
    """The failure as plain lines (logs and pipes): what, where, the log's tail, what next."""
    lines = [f"FAILED: {_words(outcome.message, config_path)}"]
    if outcome.failed_phase:
        lines.append(f"  phase: {outcome.failed_phase}")
    if outcome.failed_task:
        lines.append(f"  task: {outcome.failed_task}")
    if outcome.log_tail:
        lines.append("  log tail:")
        lines += [f"    {ln}" for ln in outcome.log_tail.splitlines()]
    steps = what_now(outcome, config_path)
    if steps:
        lines.append("  what now:")
        lines += [f"    - {step}" for step in steps]
    if config_path:
        lines += [f"  {hint}" for hint in cli_hints(outcome, config_path)]
    return lines


def _words(message: str, config_path: str) -> str:
    return shell.text(message, config_path) if config_path else message


def what_now(outcome: RunOutcome, config_path: str) -> list[str]:
    """The person's choices as shell commands (an agent's calls when no config is known)."""
    if config_path and outcome.next_action is not None and outcome.next_action.choices:
        return shell.choices(outcome.next_action, config_path)
    return [_words(step, config_path) for step in outcome.next_steps]


def cli_hints(outcome: RunOutcome, config_path: str) -> list[str]:
    """Commands beside the choices, for a person at a shell rather than an agent."""
    hints = [f"every step: cdp-mcp status {config_path}"]
    warned = any(p.phase == outcome.failed_phase and p.status == "warned" for p in outcome.phases)
    if warned:
        hints.append(f"from the shell: `cdp-mcp run {config_path} --accept-warnings` accepts them")
    chose = outcome.next_action is not None and bool(outcome.next_action.choices)
    if outcome.failed_phase and not chose:
        hints.append(
            f"from the shell: fix and `cdp-mcp run {config_path}`, or "
            f"`cdp-mcp skip {config_path} {_skip_args(outcome.failed_phase)} --yes`, or "
            f"`cdp-mcp abort {config_path}`"
        )
    return hints


def _skip_args(stage: str) -> str:
    """`ingestion:shop` as cdp-mcp skip's arguments: `ingestion --source shop`."""
    phase, _, source = stage.partition(":")
    return f"{phase} --source {source}" if source else phase


_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d (?P<time>\d\d:\d\d:\d\d)\.\d+ [+-]\d{4} \[(?P<level>\w+)\] "
    r"\((?P<task>[^)]*)\): ?(?P<text>.*)$"
)
_LEVEL_STYLES = {"ERROR": "red", "WARN": "yellow"}


def _log_text(outcome: RunOutcome) -> Text:
    """The log tail for a terminal: the local runner's lines of the failed task lose their
    date and task name (the panel names the task), and errors are red."""
    text = Text()
    for raw in (outcome.log_tail or "").splitlines():
        m = _LOG_LINE.match(raw)
        if m and m["task"] == outcome.failed_task:
            style = _LEVEL_STYLES.get(m["level"], "dim")
            text.append(f"{m['time']} {m['level']:<5} ", style="dim").append(m["text"], style=style)
        else:
            text.append(raw, style="dim")
        text.append("\n")
    text.rstrip()
    return text


def failure_panel(outcome: RunOutcome, config_path: str = "") -> Panel:
    parts: list[RenderableType] = [Text(_words(outcome.message, config_path))]
    where = Table.grid(padding=(0, 1))
    where.add_column(style="bold")
    where.add_column()
    if outcome.failed_phase:
        where.add_row("phase", Text(outcome.failed_phase, style="bold red"))
    if outcome.failed_task:
        where.add_row("task", Text(outcome.failed_task, style="bold red"))
    if where.row_count:
        parts += [Text(), where]
    if outcome.log_tail:
        parts += [Text(), Text("log tail", style="bold"), _log_text(outcome)]
    steps = what_now(outcome, config_path)
    if steps:
        parts += [Text(), Text("what now", style="bold")]
        parts += [Text(f"• {step}") for step in steps]
    if config_path:
        parts += [Text(hint, style="dim") for hint in cli_hints(outcome, config_path)]
    title = f"FAILED at {outcome.failed_phase}" if outcome.failed_phase else "FAILED"
    return Panel(Group(*parts), title=title, title_align="left", border_style="red")
