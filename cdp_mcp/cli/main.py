"""`cdp-mcp` command line: serve the MCP tools, run a pipeline headless, generate, demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from cdp_mcp import __version__
from cdp_mcp.cli import shell
from cdp_mcp.cli.wf import add_wf_commands
from cdp_mcp.core import redact
from cdp_mcp.core.config import ConfigError
from cdp_mcp.core.errors import CdpError
from cdp_mcp.emulator.command import add_emulate_command
from cdp_mcp.server.http_security import MIN_TOKEN_LENGTH, TOKEN_ENV


def _pipeline_command(name: str) -> Callable[[argparse.Namespace], int]:
    """The command `name` of cli/commands.py, run on the parsed arguments."""

    def run(args: argparse.Namespace) -> int:
        # imported when a pipeline command runs: startup cost (`serve` needs none of it)
        from cdp_mcp.cli import commands

        code: int = getattr(commands, name)(args)
        return code

    return run


def _drafting_command(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from cdp_mcp.cli import drafting  # at the command's run: DuckDB is startup cost

        code: int = getattr(drafting, name)(args)
        return code

    return run


def _add_drafting_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cdp_mcp.pipeline.drafting.bounds import DEFAULT_SAMPLE_ROWS

    rows = {"type": int, "default": DEFAULT_SAMPLE_ROWS, "help": "rows profiled per object"}
    ins = sub.add_parser("inspect", help="profile a source: keys, times, identifiers, PII")
    ins.add_argument("source", help="a folder of extracts, or td:DATABASE (key: TD_API_KEY)")
    ins.add_argument("--sample-rows", **rows)  # type: ignore[arg-type]
    ins.add_argument("--td-endpoint", default=None, help="TD's API for td:DATABASE")
    ins.add_argument("--json", action="store_true", help="the whole profile as JSON")
    ins.set_defaults(func=_drafting_command("cmd_inspect"))
    draft = sub.add_parser("draft", help="write a commented config from the sources' data")
    draft.add_argument("output", help="the new config file (an existing one is never replaced)")
    draft.add_argument("sources", nargs="+", help="folders of extracts: FOLDER or NAME=FOLDER")
    draft.add_argument("--client", help="the client's name, for a new pipeline")
    draft.add_argument("--add-to", metavar="CONFIG", help="an existing pipeline's config")
    draft.add_argument("--sample-rows", **rows)  # type: ignore[arg-type]
    draft.set_defaults(func=_drafting_command("cmd_draft"))


def _cmd_serve(args: argparse.Namespace) -> int:
    from cdp_mcp.core.roots import explicit_roots
    from cdp_mcp.server.app import build_server

    roots = explicit_roots(args.root)
    if args.transport == "stdio":
        build_server(roots).run("stdio")
        return 0
    from cdp_mcp.server.http_security import (
        HttpSecurityError,
        describe,
        http_access,
        serve_streamable_http,
    )

    try:
        access = http_access(args.host, args.port, os.environ, args.allow_host, args.allow_origin)
    except HttpSecurityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe(access, args.host, args.port), file=sys.stderr, flush=True)
    serve_streamable_http(build_server(roots), args.host, args.port, access)
    return 0


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port between 1 and 65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdp-mcp",
        description="Build a Treasure Data CDP pipeline: ingestion, hist-union, staging, "
        "ID unification.",
    )
    parser.add_argument("--version", action="version", version=f"cdp-mcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="render a phase's Digdag project into the workspace")
    gen.add_argument("config", help="the pipeline YAML")
    gen.add_argument(
        "phase", help="ingestion | hist_union | staging | unification | all", default="all"
    )
    gen.add_argument(
        "--keep-aside",
        action="store_true",
        help="move files in the phase folder that cdp-mcp did not write (or that were edited) "
        "to {workspace}/.cdp_state/kept/ instead of refusing",
    )
    gen.set_defaults(func=_pipeline_command("cmd_generate"))

    run = sub.add_parser("run", help="run every phase headless through the orchestrator")
    run.add_argument("config", help="the pipeline YAML")
    run.add_argument(
        "--accept-warnings",
        action="store_true",
        help="continue past WARN validations (exit code 3 instead of 0 at the end)",
    )
    run.add_argument(
        "--new-run",
        action="store_true",
        help="start a finished (or aborted) pipeline over as a new run; earlier reports are "
        "kept in reports/run-N/",
    )
    run.add_argument(
        "--retry-after-fix",
        action="store_true",
        help="the cause of a failure was fixed outside the config (a source file restored): "
        "re-open the failed steps' attempts, recorded in the state",
    )
    run.set_defaults(func=_pipeline_command("cmd_run"))

    status = sub.add_parser("status", help="show every phase and step of a pipeline")
    status.add_argument("config", help="the pipeline YAML")
    status.set_defaults(func=_pipeline_command("cmd_status"))

    skip = sub.add_parser(
        "skip", help="skip a phase by decision (later phases run on what it left behind)"
    )
    skip.add_argument("config", help="the pipeline YAML")
    skip.add_argument("phase", help="ingestion | hist_union | staging | unification")
    skip.add_argument("--yes", action="store_true", help="confirm the skip")
    skip.set_defaults(func=_pipeline_command("cmd_skip"))

    abort = sub.add_parser("abort", help="stop the pipeline: kill what runs, write the report")
    abort.add_argument("config", help="the pipeline YAML")
    abort.add_argument("--reason", default="aborted from the command line")
    abort.set_defaults(func=_pipeline_command("cmd_abort"))

    demo = sub.add_parser("demo", help="write a sample extract and config, and run it locally")
    demo.add_argument("dir", nargs="?", default="demo", help="where to write it (default ./demo)")
    demo.add_argument("--rows", type=int, default=500, help="customers in the sample")
    demo.set_defaults(func=_pipeline_command("cmd_demo"))

    _add_drafting_commands(sub)

    serve = sub.add_parser(
        "serve",
        help="run the MCP server",
        description="Serve the MCP tools over stdio (default) or streamable HTTP at "
        "http://HOST:PORT/mcp. Over HTTP, requests whose Host or Origin header is not allowed "
        "are refused. A --host other than loopback needs a bearer token in "
        f"{TOKEN_ENV} (at least {MIN_TOKEN_LENGTH} characters), which clients send as "
        "'Authorization: Bearer <token>'; when the variable is set, every bind asks for it.",
    )
    serve.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"address to listen on (default 127.0.0.1); any other needs {TOKEN_ENV}",
    )
    serve.add_argument("--port", type=_port, default=8765, help="port (default 8765)")
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="also accept this Host header (repeatable); a NAME alone is accepted bare and "
        "with PORT. Always accepted: the bound address, localhost, 127.0.0.1 and [::1] with "
        "PORT",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept this Origin header, e.g. https://mcp.example.com (repeatable). "
        "Always accepted: http:// with each always-accepted host, and no Origin (a client "
        "that is not a browser)",
    )
    serve.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder the server may read configs from and write workspaces to (repeatable; "
        "default: env CDP_MCP_ROOTS, else the client's roots, else the working directory)",
    )
    serve.set_defaults(func=_cmd_serve)

    add_wf_commands(sub)
    add_emulate_command(sub)
    return parser


# What a shell reports for a program stopped by SIGPIPE (128 + 13): a reader that went away
# (`cdp-mcp status X | head`) ends the command as it ends `cat` or `grep`, and a script
# under `set -o pipefail` tells it from a run that wrote all it had to say.
EXIT_BROKEN_PIPE = 141
# The deprecated spelling of TD_API_KEY (it named the secret td.apikey's variable).
OLD_KEY_VARIABLE = "TD_APIKEY"


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever the command prints or logs (errors, tracebacks, a library's warning) is
    # scrubbed of the API key and the secrets in play.
    redact.install_log_redaction()
    try:
        with redact.redacted_stdio():
            _warn_old_key_variable()
            code = _main(argv)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return code
    except BrokenPipeError:
        _output_to_devnull()
        return EXIT_BROKEN_PIPE


def _output_to_devnull() -> None:
    """After a reader closed our pipe: what is still buffered goes nowhere, quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _warn_old_key_variable() -> None:
    """TD_APIKEY is still read this release (as secret td.apikey's value); say what replaces it."""
    if os.environ.get(OLD_KEY_VARIABLE):
        print(
            f"cdp-mcp: {OLD_KEY_VARIABLE} is deprecated and will not be read after this "
            "release; set TD_API_KEY (the config's td_api_key: ${TD_API_KEY}) instead",
            file=sys.stderr,
        )


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = getattr(args, "config", None) or "CONFIG"
    try:
        code: int = args.func(args)
        return code
    except BrokenPipeError:
        raise  # not the input's fault: main ends the command quietly
    except ConfigError as e:
        print(f"error: config {e}", file=sys.stderr)
    except (CdpError, ValueError) as e:  # a refusal (core/errors.py), in the shell's words
        print(f"error: {shell.text(str(e), config)}", file=sys.stderr)
    except OSError as e:  # the disk, not the input: full, read-only, permissions
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: words for the person, the traceback on request
        if os.environ.get("CDP_MCP_TRACEBACK"):
            raise
        print(
            f"error: internal error in cdp-mcp ({type(e).__name__}: {str(e)[:300]}); this is "
            "a bug: run again with CDP_MCP_TRACEBACK=1 and report the traceback",
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
