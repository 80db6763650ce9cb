"""`cdp-mcp wf ...` and `cdp-mcp query`: the `td` toolbelt's workflow commands, run locally.

    cdp-mcp wf push DIR [--project NAME]
    cdp-mcp wf start PROJECT WORKFLOW [--session now|DATE] [-p KEY=VALUE] [--detach]
    cdp-mcp wf session ID | attempt ID | tasks ATTEMPT | log ATTEMPT [TASK]
    cdp-mcp wf kill ATTEMPT | retry ATTEMPT [--all] [--detach]
    cdp-mcp query -d DB "SQL" [--format table|csv|json] [--engine presto|hive]

Each takes `--workspace DIR` (default: the current directory). `start` and `retry` run the
workflow to completion in this process, printing tasks as they finish; `--detach` hands the
run to a background process and returns once the attempt exists.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdp_mcp.backends.base import DONE_TASK_STATES, Attempt, BackendError, Task, TaskState
from cdp_mcp.core import redact
from cdp_mcp.core.config import parse_timestamp
from cdp_mcp.core.errors import CdpError

if TYPE_CHECKING:
    from cdp_mcp.backends.local import LocalRuntime

_DETACHED_FLAG = "--_detached-child"
_POLL_SEC = 0.2


class UsageError(CdpError):
    """A bad argument value (exit code 2)."""


def _runtime(args: argparse.Namespace, create: bool = False) -> LocalRuntime:
    workspace = Path(args.workspace).expanduser()
    if not workspace.is_dir():
        raise UsageError(f"workspace {workspace} is not a folder")
    if not create and not (workspace / ".cdp_local").is_dir():
        # Only a push starts a new local backend; anything else in the wrong folder is a typo.
        candidates = sorted(p.parent.name for p in workspace.glob("*/.cdp_local"))
        hint = f" (found: --workspace {candidates[0]})" if candidates else ""
        raise UsageError(
            f"no local backend in {workspace.resolve()}: pass --workspace, the pipeline's "
            f"workspace folder{hint}, or push a project first"
        )
    # imported when a wf command runs: startup cost (every command, `serve` too, builds
    # the parser that holds wf's subcommands)
    from cdp_mcp.backends.local import LocalRuntime

    return LocalRuntime(workspace)


def _fmt_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S %z") if value else ""


def _print_attempt(attempt: Attempt, with_session: bool = True) -> None:
    fields = [
        *([("session id", attempt.session_id)] if with_session else []),
        ("attempt id", attempt.id),
        ("project", attempt.project),
        ("workflow", attempt.workflow),
        ("session time", _fmt_time(attempt.session_time)),
        ("retry attempt name", attempt.retry_attempt_name or ""),
        ("params", json.dumps(attempt.params)),
        ("created at", _fmt_time(attempt.created_at)),
        ("finished at", _fmt_time(attempt.finished_at)),
        ("kill requested", str(attempt.cancel_requested).lower()),
        ("status", attempt.status),
    ]
    for name, value in fields:
        print(f"  {name}: {value}")


# commands


def _cmd_push(args: argparse.Namespace) -> int:
    directory = Path(args.directory).expanduser().resolve()
    project = args.project or directory.name
    proj = _runtime(args, create=True).push(project, directory)
    print("Uploaded:")
    print(f"  id: {proj.id}")
    print(f"  name: {proj.name}")
    print(f"  revision: {proj.revision}")
    print(f"  archive md5: {proj.archive_md5}")
    print(f"  workflows: {', '.join(sorted(p.stem for p in directory.glob('*.dig')))}")
    return 0


def _session_time(text: str) -> datetime | None:
    if text == "now":
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        raise UsageError(f"--session must be 'now' or an ISO date/time, got {text!r}") from None


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-p takes KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def _cmd_start(args: argparse.Namespace) -> int:
    if args.detach:
        return _detach(args)
    runtime = _runtime(args)
    attempt, created = runtime.start_attempt(
        args.project, args.workflow, _session_time(args.session), _params(args.param)
    )
    if not created:
        print(f"The session already exists; its attempt {attempt.id} is {attempt.status}.")
        print(f"  (retry it with `cdp-mcp wf retry {attempt.id}`)")
    return _report_started(runtime, attempt, args)


def _cmd_retry(args: argparse.Namespace) -> int:
    if args.detach:
        return _detach(args)
    runtime = _runtime(args)
    attempt = runtime.retry(args.attempt, resume_failed=not args.all)
    return _report_started(runtime, attempt, args)


def _report_started(runtime: Any, attempt: Attempt, args: argparse.Namespace) -> int:
    print("Started a session attempt:" if not attempt.done else "Session attempt:")
    print(f"  session id: {attempt.session_id}")
    print(f"  attempt id: {attempt.id}")
    print(f"  project: {attempt.project}")
    print(f"  workflow: {attempt.workflow}")
    print(f"  session time: {_fmt_time(attempt.session_time)}")
    if attempt.retry_attempt_name:
        print(f"  retry attempt name: {attempt.retry_attempt_name}")
    sys.stdout.flush()
    if getattr(args, "detached_child", False):
        _silence_stdout()
    return _follow(runtime, attempt)


def _follow(runtime: Any, attempt: Attempt) -> int:
    """Wait for the attempt, printing each task as it finishes; exit code from its status."""
    reported: set[str] = set()
    try:
        while True:
            current = runtime.attempt(attempt.id)
            for task in runtime.tasks(attempt.id):
                if task.is_group or task.id in reported:
                    continue
                if task.state in DONE_TASK_STATES:
                    reported.add(task.id)
                    print(f"  {task.state:<8} {task.full_name}")
            if current.done:
                break
            time.sleep(_POLL_SEC)
    except KeyboardInterrupt:
        runtime.kill(attempt.id)
        runtime.wait(attempt.id, 30)
        print(f"interrupted: attempt {attempt.id} killed", file=sys.stderr)
        return 130
    print(f"status: {current.status}")
    if current.status == "success":
        return 0
    for task in _failed(runtime.tasks(attempt.id)):
        print(f"failed task: {task.full_name}", file=sys.stderr)
        print(f"  error: {one_line(task.error or '')}", file=sys.stderr)
    print(f"logs: cdp-mcp wf log {attempt.id}", file=sys.stderr)
    return 1


def _failed(tasks: list[Task]) -> list[Task]:
    """The tasks whose own error failed the attempt (not the groups it propagated to)."""
    return [
        t for t in tasks if t.state == TaskState.ERROR and t.error and "^error" not in t.full_name
    ]


def _cmd_session(args: argparse.Namespace) -> int:
    session = _runtime(args).session(args.id)
    print(f"  session id: {session.id}")
    print(f"  uuid: {session.session_uuid}")
    if session.last_attempt:
        _print_attempt(session.last_attempt, with_session=False)
    else:
        print(f"  project: {session.project}\n  workflow: {session.workflow}\n  status: none")
    return 0


def _cmd_attempt(args: argparse.Namespace) -> int:
    _print_attempt(_runtime(args).attempt(args.id))
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    tasks = _runtime(args).tasks(args.attempt)
    rows = []
    for t in tasks:
        duration = ""
        if t.started_at and t.updated_at and t.state in DONE_TASK_STATES:
            duration = f"{(t.updated_at - t.started_at).total_seconds():.2f}s"
        rows.append([t.id, t.state, _fmt_time(t.started_at), duration, t.full_name])
    _print_table(["id", "state", "started", "duration", "task"], rows)
    for t in _failed(tasks):
        print(f"\n{t.full_name}: {t.error}")
    return 0


def _cmd_log(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    files = runtime.log_files(args.attempt, args.task)
    if not files:
        which = f" for task {args.task}" if args.task else ""
        print(f"no logs{which} in attempt {args.attempt}", file=sys.stderr)
        return 1
    for f in files:
        sys.stdout.write(runtime.read_log(args.attempt, f.file_name))
    return 0


def _cmd_kill(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    runtime.kill(args.attempt)
    print(f"Kill requested for session attempt {args.attempt}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    result = _runtime(args).read_query(args.sql, args.database, args.engine, args.limit)
    if args.format == "json":
        print(
            json.dumps(
                [dict(zip(result.columns, r, strict=False)) for r in result.rows], default=str
            )
        )
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        _print_table(
            result.columns, [["" if v is None else str(v) for v in r] for r in result.rows]
        )
        print(f"{len(result.rows)} rows{' (truncated)' if result.truncated else ''}")
    return 0


def _print_table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[[str(v) for v in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


# detaching: a local run lives in a process, so --detach hands it to a background one


def _child_argv(args: argparse.Namespace) -> list[str]:
    """The same start/retry command, for the background process."""
    common = ["--workspace", str(Path(args.workspace).expanduser().resolve()), _DETACHED_FLAG]
    if args.command_name == "start":
        params = [x for pair in args.param for x in ("-p", pair)]
        return [
            "wf",
            "start",
            args.project,
            args.workflow,
            "--session",
            args.session,
            *params,
            *common,
        ]
    return ["wf", "retry", args.attempt, *(["--all"] if args.all else []), *common]


def _detach(args: argparse.Namespace) -> int:
    child = subprocess.Popen(
        [sys.executable, "-m", "cdp_mcp.cli.wf", *_child_argv(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    # The child closes its output once the attempt exists (or exits on an error).
    header = child.stdout.read()
    sys.stdout.write(header)
    if "attempt id:" not in header:
        child.wait()
        sys.stderr.write(child.stderr.read())
        return child.returncode or 1
    print(f"Running in the background (pid {child.pid}); follow it with `cdp-mcp wf tasks`.")
    return 0


def _silence_stdout() -> None:
    """The parent stopped reading: send the rest of a detached run's output nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


# parser


def _workspace_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        default=".",
        help="the workspace whose .cdp_local/ holds the local backend (default: .)",
    )
    parser.add_argument(
        _DETACHED_FLAG, dest="detached_child", action="store_true", help=argparse.SUPPRESS
    )


def _command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], int], help_text: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(_wf_handler=handler, func=run_wf_command, command_name=name)
    _workspace_arg(parser)
    return parser


def add_wf_commands(subparsers: Any) -> None:
    """Add `wf` (with its subcommands) and `query` to the `cdp-mcp` parser."""
    wf = subparsers.add_parser(
        "wf", help="push, start and watch Digdag workflows on the local backend"
    )
    wf_sub = wf.add_subparsers(dest="wf_command", required=True, metavar="COMMAND")

    p = _command(
        wf_sub, "push", _cmd_push, "validate a Digdag project and store it as a new revision"
    )
    p.add_argument("directory", help="the project folder (its top-level *.dig files are workflows)")
    p.add_argument("--project", help="project name (default: the folder's name)")

    p = _command(wf_sub, "start", _cmd_start, "start a workflow session and run it")
    p.add_argument("project")
    p.add_argument("workflow")
    p.add_argument(
        "--session", default="now", help="session time: now (default) or an ISO date/time"
    )
    p.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a session param"
    )
    p.add_argument(
        "--detach", action="store_true", help="return once started; run in the background"
    )

    p = _command(wf_sub, "session", _cmd_session, "show a session and its last attempt")
    p.add_argument("id")
    p = _command(wf_sub, "attempt", _cmd_attempt, "show a session attempt")
    p.add_argument("id")
    p = _command(wf_sub, "tasks", _cmd_tasks, "list the tasks of an attempt with their states")
    p.add_argument("attempt")
    p = _command(wf_sub, "log", _cmd_log, "print the logs of an attempt (or of one task)")
    p.add_argument("attempt")
    p.add_argument("task", nargs="?", help="a task name (e.g. +wf+load or load)")
    p = _command(wf_sub, "kill", _cmd_kill, "kill a running attempt")
    p.add_argument("attempt")
    p = _command(wf_sub, "retry", _cmd_retry, "run a finished attempt's session again")
    p.add_argument("attempt")
    p.add_argument(
        "--all", action="store_true", help="rerun every task (default: only the failed ones)"
    )
    p.add_argument(
        "--detach", action="store_true", help="return once started; run in the background"
    )

    q = _command(
        subparsers,
        "query",
        _cmd_query,
        "read the local warehouse with one SELECT / WITH / SHOW / DESCRIBE (Presto dialect); "
        "writes go through `cdp-mcp wf`",
    )
    q.add_argument("sql")
    q.add_argument("-d", "--database", required=True)
    q.add_argument("--engine", default="presto", choices=["presto", "hive"])
    q.add_argument("--format", default="table", choices=["table", "csv", "json"])
    q.add_argument("--limit", type=int, default=None, help="at most this many rows")


def run_wf_command(args: argparse.Namespace) -> int:
    """Run a `wf`/`query` command; errors are one line on stderr (exit 1, 2 for usage)."""
    handler = getattr(args, "_wf_handler", None)
    if handler is None:
        print("error: no command given", file=sys.stderr)
        return 2
    try:
        code: int = handler(args)
        return code
    except UsageError as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a traceback for a user
        print(f"error: {type(e).__name__}: {one_line(str(e))}", file=sys.stderr)
    return 1


def one_line(message: str) -> str:
    """An engine message on one line: DuckDB's `LINE n:` excerpt and caret are dropped."""
    lines = [ln.strip() for ln in message.splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(kept)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `python -m cdp_mcp.cli.wf` (the detached runner) and tests."""
    parser = argparse.ArgumentParser(prog="cdp-mcp")
    sub = parser.add_subparsers(dest="command", required=True)
    add_wf_commands(sub)
    args = parser.parse_args(argv)
    redact.install_log_redaction()
    with redact.redacted_stdio():  # the detached runner's output reaches a person too
        return run_wf_command(args)


if __name__ == "__main__":
    sys.exit(main())
