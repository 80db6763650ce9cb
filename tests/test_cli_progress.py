"""What a person sees of `cdp-mcp run` and `demo`: plain lines in a pipe, a live board on a
terminal, a summary table at the end, and on a failure the phase, task and log tail.

The end-to-end tests run the real CLI on the local backend (a pipe, and a pseudo-terminal);
the renderer tests feed `RunDisplay` a scripted sequence of the headless run's events.
"""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from rich.console import Console

from cdp_mcp.cli.events import (
    FailedTaskInfo,
    Generated,
    PhaseSummary,
    Pushed,
    RunFinished,
    RunOutcome,
    RunStarted,
    StepStarted,
    TaskProgress,
    Validated,
    WorkflowFinished,
    WorkflowStarted,
)
from cdp_mcp.cli.progress import Board, RunDisplay, duration, summary_table
from cdp_mcp.cli.run import run_pipeline
from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import INC_LOG, INGESTION_LOG, ORDER, STAGING_LOG, Phase
from cdp_mcp.pipeline.state import StateStore
from tests.conftest import SENTINEL_KEY
from tests.test_cli_pipeline import PHASES, ROWS, Ran, broken_ingestion, cdp, cli, phase_lines

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY_HEAD = re.compile(r"^phase +result +time", re.M)
RESULT_OF_STATUS = {"passed": "PASS", "accepted": "WARN (accepted)", "pending": "not run"}


def summary_rows(err: str) -> dict[str, list[str]]:
    """The end summary table: phase -> its cells (result words joined)."""
    lines = err.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["phase", "result", "time"])
    rows = {}
    for line in lines[head + 1 :]:
        words = line.split()
        if words and words[0].partition(":")[0] in PHASES:
            rows[words[0]] = words[1:]
    return rows


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, Path]:
    """One real `cdp-mcp demo` through a pipe, shared by the tests reading its output."""
    target = tmp_path_factory.mktemp("progress") / "demo"
    return cdp("demo", str(target), "--rows", str(ROWS)), target / "acme.yml"


def demo_stages(config: Path) -> list[str]:
    """The demo's stages as the board names them: each source's phases, then unification."""
    names = load_config(config).source_names
    per_source = [p.value for p in ORDER if p is not Phase.UNIFICATION]
    return [*(f"{p}:{n}" for n in names for p in per_source), "unification"]


@pytest.mark.slow
def test_piped_output_is_plain_lines_with_every_phase_and_a_summary(
    demo_run: tuple[Ran, Path],
) -> None:
    ran, config = demo_run
    assert not ANSI.search(ran.err + ran.out), "no escape codes in a pipe"
    assert "\r" not in ran.err  # no redrawn lines either
    stages = demo_stages(config)
    for phase in stages:
        assert f"{phase}: generated" in ran.err
        assert re.search(rf"^{phase}: \S+ success in [\d.]+s \(\d+/\d+ tasks\)$", ran.err, re.M)

    status = phase_lines(cdp("status", str(config)).out)
    rows = summary_rows(ran.err)
    assert list(rows) == stages  # the summary lists every source's stages, in order
    for phase in stages:
        if status[phase] == "passed":
            assert f"{phase}: validation PASS" in ran.err
            result, seconds, tables, n_rows, profiles, *sessions = rows[phase]
            assert result == "PASS"
            assert re.fullmatch(r"[\d.]+s", seconds)
            counted = profiles if phase == "unification" else n_rows
            assert int(tables) > 0 and int(counted.replace(",", "")) > 0
            assert sessions
    assert rows["ingestion:shopify"][-2:] == ["1,", "2"]  # its two workflows' sessions
    if all(s == "passed" for s in status.values()):
        assert ran.code == 0
        assert ran.err.rstrip().endswith("every phase validated PASS")
    else:  # no unification engine here (see tests/test_cli_pipeline.py)
        assert ran.code == 1 and "FAILED: " in ran.err
    assert ran.out.strip().splitlines()[-1].startswith("report: ")


@pytest.mark.slow
def test_the_summary_counts_data_rows_and_shows_unifications_profiles(
    demo_run: tuple[Ran, Path],
) -> None:
    """Unification's tables hold unrelated things (ids, keys, enriched copies): their rows
    added up mean nothing, its profiles are the figure. Other phases count their data
    tables, not the logs beside them."""
    ran, config = demo_run
    cfg = load_config(config)
    state = StateStore(cfg.workspace).load(cfg.source_names)
    rows = summary_rows(ran.err)
    profiles = (state.phase(Phase.UNIFICATION).validation or {})["metrics"]["profiles"]
    assert rows["unification"][3:5] == ["-", f"{profiles:,}"]
    logs = (INGESTION_LOG, INC_LOG, STAGING_LOG)
    for ps in state.ordered()[:-1]:
        tables = (ps.validation or {})["tables"]
        data = sum(t["row_count"] for t in tables if t["table"] not in logs)
        assert rows[ps.key][3:5] == [f"{data:,}", "-"], ps.key
    assert "unification: validation PASS" in ran.err


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_board_shows_the_states_phase_times_as_the_summary_does() -> None:
    """The board used to time a phase by its own clock (first event to validation), the
    summary by the state's step times: two different numbers for one phase."""
    clock = FakeClock()
    board = Board(clock)
    board.apply(RunStarted("acme", "local", "/w", PLAN))
    board.apply(StepStarted("ingestion", "generate"))
    clock.now += 9.0  # the board saw 9 s pass; the state's steps took 2.5 s
    board.apply(Validated("ingestion", "PASS", tables=7, rows=406, seconds=2.5))
    console = Console(file=io.StringIO(), record=True, width=120)
    console.print(board)
    assert re.search(r"ingestion +PASS +2\.5s +7 tables, 406 rows", console.export_text())
    board.apply(StepStarted("unification", "validate"))
    board.apply(Validated("unification", "PASS", tables=9, profiles=191, seconds=1.5))
    console.print(board)
    assert re.search(r"unification +PASS +1\.5s +9 tables, 191 profiles", console.export_text())


@pytest.mark.slow
def test_a_real_run_gives_the_board_and_the_summary_one_set_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from tests.conftest import FIXTURES

    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    shutil.copy(FIXTURES / "acme.yml", tmp_path / "acme.yml")
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    events: list = []
    outcome = anyio.run(lambda: run_pipeline(tmp_path / "acme.yml", on_event=events.append))
    assert outcome.exit_code == 0, outcome.message
    validated = {e.phase: e for e in events if isinstance(e, Validated)}
    assert set(validated) == set(PHASES)
    for s in outcome.phases:
        assert s.seconds is not None and validated[s.phase].seconds == s.seconds, s.phase
        assert validated[s.phase].rows == s.rows and validated[s.phase].profiles == s.profiles
    board = Board()
    for e in events:
        board.apply(e)
    console = Console(file=io.StringIO(), record=True, width=120)
    console.print(board)
    console.print(summary_table(outcome))
    text = console.export_text()
    for s in outcome.phases:
        took = duration(s.seconds)
        assert len(re.findall(rf"^\S* ?{s.phase} +\S+ +{re.escape(took)} ", text, re.M)) == 2, (
            s.phase,
            text,
        )


@pytest.mark.slow
def test_a_failing_run_names_phase_task_and_log_tail_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = broken_ingestion(tmp_path, monkeypatch)
    ran = cdp("run", str(config))
    assert ran.code == 1
    assert not ANSI.search(ran.err)
    rows = summary_rows(ran.err)
    assert rows["ingestion"][0] == "FAILED"
    assert all(rows[p][0:2] == ["not", "run"] for p in ("hist_union", "staging", "unification"))

    failure = ran.err.split("\nFAILED: ", 1)[1]  # after the summary table
    assert failure.startswith("ingestion:shopify: step execute:shopify_ingest_hist failed 3 times")
    assert "\n  phase: ingestion\n" in failure
    assert "\n  task: +shopify_ingest_hist+create_ingestion_log\n" in failure
    tail = failure.split("  log tail:\n", 1)[1].split("  what now:\n", 1)[0]
    assert "[ERROR] (+shopify_ingest_hist+create_ingestion_log)" in tail
    assert "Parser Error" in tail
    what_now = failure.split("  what now:\n", 1)[1]
    assert f"    - skip: `cdp-mcp skip {config} ingestion --source shopify --yes`" in what_now
    assert f"    - abort: `cdp-mcp abort {config}`" in what_now
    assert f"  every step: cdp-mcp status {config}" in what_now
    assert ran.out.strip().splitlines()[-1].startswith("report: ")

    # the shell's own way through the choices: skip needs --yes; abort ends it with a report
    refused = cdp("skip", str(config), "ingestion")
    assert refused.code == 1 and "skipping ingestion needs --yes" in refused.err
    skipped = cdp("skip", str(config), "ingestion", "--yes")
    assert skipped.code == 0 and skipped.out.startswith("skipped: ")
    assert "ingestion    skipped" in cdp("status", str(config)).out
    aborted = cdp("abort", str(config), "--reason", "wrong source folder")
    assert aborted.code == 0 and "report: " in aborted.out
    status = cdp("status", str(config)).out
    assert "ABORTED" in status
    report = Path(aborted.out.split("report: ", 1)[1].split()[0]).read_text(encoding="utf-8")
    assert "wrong source folder" in report


def _run_in_a_terminal(args: list[str], cwd: Path, columns: int = 120) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdin/stdout/stderr; all it wrote, raw."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TTY_INTERACTIVE")}
    env.update(TD_API_KEY=SENTINEL_KEY, TERM="xterm-256color")
    proc = subprocess.Popen(
        [*cli(), *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 300  # a guard against a hung run, not a speed check
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError as e:  # EIO: the child closed the terminal
            if e.errno != errno.EIO:
                raise
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_a_terminal_gets_the_live_board_and_a_failure_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = broken_ingestion(tmp_path, monkeypatch)
    code, raw = _run_in_a_terminal(["run", str(config)], cwd=tmp_path)
    assert code == 1
    assert "Traceback" not in raw and SENTINEL_KEY not in raw
    assert "\x1b[?25l" in raw and "\x1b[2K" in raw  # a live region, hidden cursor, redrawn
    seen = ANSI.sub("", raw).replace("\r", "")
    # frames of the board: each phase with its mark, ingestion's step and workflow
    assert re.search(r"· hist_union +pending", seen)
    assert re.search(r"ingestion +monitor .* shopify_ingest_hist", seen)
    # what stays on the screen: the summary and the failure panel
    end = seen[list(SUMMARY_HEAD.finditer(seen))[-1].start() :]
    assert re.search(r"ingestion +FAILED", end)
    assert "╭─ FAILED at ingestion" in end
    assert "task  +shopify_ingest_hist+create_ingestion_log" in end
    assert "log tail" in end and "ERROR" in end and "Parser Error" in end
    assert "what now" in end and "skip: `cdp-mcp skip" in end
    assert end.rstrip().splitlines()[-1].startswith("report: ")


# -- the renderer, fed scripted events -----------------------------------------------------

PLAN = {p: "pending" for p in PHASES}
WF = "shopify_ingest_hist"


def _scripted_until_running() -> list:
    return [
        RunStarted("acme", "local", "/w/acme_cdp", PLAN, ("source files readable",)),
        StepStarted("ingestion", "generate"),
        Generated("ingestion", 13, (WF,)),
        StepStarted("ingestion", "push"),
        Pushed("ingestion", "acme_ingestion", "9eb44f862804b220f1a7"),
        StepStarted("ingestion", "start", WF),
        WorkflowStarted("ingestion", WF, "1", "1"),
        TaskProgress("ingestion", WF, "1", 3, 7, (f"+{WF}+load_orders", f"+{WF}+load_x"), 2.0),
    ]


def _failure() -> RunOutcome:
    return RunOutcome(
        exit_code=1,
        message="ingestion: step execute:shopify_ingest_hist failed 3 times. A person decides.",
        report_path="/w/report.md",
        failed_phase="ingestion",
        failed_task=f"+{WF}+load_orders",
        log_tail=(
            f"2026-01-02 03:04:05.678 +0000 [INFO] (+{WF}+load_orders): td_load>: orders\n"
            f"2026-01-02 03:04:05.700 +0000 [ERROR] (+{WF}+load_orders): no such file: x.csv"
        ),
        next_steps=["skip: skip_phase(...)", "abort: abort_pipeline(...)"],
        phases=[
            PhaseSummary(phase="ingestion", status="in_progress", seconds=2.5, sessions=["1"]),
            *(PhaseSummary(phase=p, status="pending") for p in PHASES[1:]),
        ],
    )


def test_the_live_board_shows_task_progress_and_the_current_task() -> None:
    console = Console(file=io.StringIO(), record=True, force_terminal=True, width=120)
    display = RunDisplay(console, live=True)
    with display:
        for event in _scripted_until_running():
            display(event)
        frame = console.export_text(clear=False)
        display(
            WorkflowFinished(
                "ingestion",
                WF,
                "1",
                status="error",
                elapsed=2.5,
                done=6,
                total=7,
                failed=(FailedTaskInfo(f"+{WF}+load_orders", "no such file"),),
            )
        )
        display(RunFinished(_failure()))
    last = frame[frame.rindex("cdp-mcp · acme on local") :]
    assert re.search(
        r"ingestion +monitor +2\.\ds +━+ +3/7 +shopify_ingest_hist ▸ \+load_orders", last
    )
    assert "(+1 more)" in last
    assert re.search(r"· hist_union +pending", last)

    out = console.export_text()
    # what happened stays above the board
    assert "ingestion: pushed acme_ingestion revision 9eb44f862804b220f1a7" in out
    assert "  failed task +shopify_ingest_hist+load_orders: no such file" in out
    end = out[list(SUMMARY_HEAD.finditer(out))[-1].start() :]
    assert re.search(r"ingestion +FAILED +2\.5s +- +- +- +1", end)
    assert re.search(r"unification +not run", end)
    assert "FAILED at ingestion" in end
    assert "03:04:05 ERROR no such file: x.csv" in end  # the log tail, made short
    assert "• skip: skip_phase(...)" in end


def test_without_a_terminal_the_same_events_are_plain_lines() -> None:
    console = Console(file=io.StringIO(), width=100)  # not a terminal: no live view
    display = RunDisplay(console, progress_every=0)
    assert not display.live
    with display:
        for event in _scripted_until_running():
            display(event)
        display(WorkflowFinished("ingestion", WF, "1", "success", 3.0, 7, 7))
        display(
            Validated(
                "ingestion",
                "WARN",
                accepted=True,
                warnings=("no rows of products",),
                tables=7,
                rows=1234,
            )
        )
        summary = [
            PhaseSummary(
                phase="ingestion",
                status="accepted",
                verdict="WARN",
                seconds=3.5,
                tables=7,
                rows=1234,
                sessions=["1", "2"],
            ),
            *(
                PhaseSummary(
                    phase=p,
                    status="passed",
                    verdict="PASS",
                    seconds=1,
                    tables=2,
                    rows=10,
                    sessions=["3"],
                )
                for p in PHASES[1:]
            ),
        ]
        display(
            RunFinished(
                RunOutcome(
                    exit_code=3,
                    message="done, with accepted warnings in: ingestion",
                    phases=summary,
                )
            )
        )
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert not ANSI.search(out)
    lines = out.splitlines()
    assert lines[:2] == [
        "pipeline acme on local (workspace /w/acme_cdp)",
        "  preflight: source files readable",
    ]
    assert (
        "ingestion: shopify_ingest_hist 3/7 tasks, 2s, running +shopify_ingest_hist+load_orders"
        in lines
    )
    assert "ingestion: shopify_ingest_hist success in 3.0s (7/7 tasks)" in lines
    assert "ingestion: validation WARN" in lines and "  warning: no rows of products" in lines
    rows = summary_rows(out)
    assert rows["ingestion"] == ["WARN", "(accepted)", "3.5s", "7", "1,234", "-", "1,", "2"]
    assert rows["staging"][:4] == ["PASS", "1.0s", "2", "10"]
    assert lines[-1] == "done, with accepted warnings in: ingestion"


def test_no_color_keeps_the_marks_and_drops_the_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    def render() -> str:
        console = Console(file=io.StringIO(), force_terminal=True, width=100)
        display = RunDisplay(console, live=False)
        with display:
            display(Validated("ingestion", "PASS", tables=3, rows=10))
            display(
                RunFinished(
                    RunOutcome(
                        exit_code=0,
                        message="every phase validated PASS",
                        phases=[PhaseSummary(phase="ingestion", status="passed", verdict="PASS")],
                    )
                )
            )
        return console.file.getvalue()  # type: ignore[attr-defined]

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[32m" in render()  # green PASS
    monkeypatch.setenv("NO_COLOR", "1")
    plain = render()
    assert "\x1b[32m" not in plain and "validation PASS" in plain


def test_a_phase_stopped_at_a_warning_is_told_how_to_accept_it() -> None:
    from cdp_mcp.cli.progress import failure_lines

    outcome = RunOutcome(
        exit_code=1,
        message="staging validated WARN; rerun with --accept-warnings to continue past it",
        failed_phase="staging",
        phases=[PhaseSummary(phase="staging", status="warned", verdict="WARN")],
    )
    lines = failure_lines(outcome, "acme.yml")
    assert "  from the shell: `cdp-mcp run acme.yml --accept-warnings` accepts them" in lines
    failed = outcome.model_copy(update={"phases": [PhaseSummary(phase="staging", status="failed")]})
    assert not any("--accept-warnings` accepts" in ln for ln in failure_lines(failed, "acme.yml"))
