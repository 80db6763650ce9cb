"""The commands that work on a pipeline: generate, run, status, skip, abort and demo.

A module apart from the parser (cli/main.py) so that `cdp-mcp serve` starts without what
these need (the orchestrator and its backends, the live board, the demo data): main imports
it when one of them runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import anyio

from cdp_mcp.cli import shell
from cdp_mcp.cli.demo_sources import write_demo, write_demo_config
from cdp_mcp.cli.progress import RunDisplay
from cdp_mcp.cli.run import run_pipeline
from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import PER_SOURCE, Phase, parse_phase
from cdp_mcp.generate import GeneratedProject
from cdp_mcp.pipeline.models import DecisionResult, PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.reports.facts import across_sources
from cdp_mcp.pipeline.state import StateStore, stage_label


def cmd_generate(args: argparse.Namespace) -> int:
    """The project files alone, through the orchestrator's render (Pipeline.render_project)."""
    load_config(args.config)  # a bad config in the shell's words ("error: config ...")
    pipeline = Pipeline(args.config)
    if args.phase == "all":  # every source's projects (or the one named), then unification
        names = [args.source] if args.source else pipeline.cfg.source_names
        stages = [(p, n) for n in names for p in PER_SOURCE]
        stages.append((Phase.UNIFICATION, None))
    else:
        phase = parse_phase(args.phase)
        stages = [(phase, args.source)]

    async def render_all() -> None:
        try:
            for phase, source in stages:
                project = await pipeline.render_project(phase.value, args.keep_aside, source)
                _print_project(project)
        finally:
            await pipeline.aclose()

    anyio.run(render_all)
    return 0


def _print_project(project: GeneratedProject) -> None:
    print(f"{project.directory.name}: {len(project.files)} files in {project.directory}")
    if project.kept_aside:
        print(f"  files that were not cdp-mcp's were moved to {project.kept_aside}")
    for f in project.files:
        print(f"  {f}")
    print(f"  workflows (run order): {', '.join(project.workflows)}")
    if project.secrets:
        print(f"  secrets to set before running: {', '.join(project.secrets)}")


def _run_and_show(
    config: str | Path,
    accept_warnings: bool = False,
    note: str = "",
    new_run: bool = False,
    retry_after_fix: bool = False,
    closing: Callable[[], list[str]] | None = None,
) -> int:
    """Run every phase with the progress display; the reports' paths go to stdout, after
    the `closing` lines."""
    load_config(config)  # a config error in the config's words, before any pipeline exists
    with RunDisplay() as display:
        if note:
            display.note(note)
        outcome = anyio.run(
            lambda: run_pipeline(
                config,
                accept_warnings=accept_warnings,
                on_event=display,
                new_run=new_run,
                retry_after_fix=retry_after_fix,
            )
        )
    for line in closing() if closing else []:
        print(line)
    # On a terminal or not: where to look is the one thing a run always says last.
    if outcome.html_report_path:
        print(f"html report: {outcome.html_report_path}")
    if outcome.report_path:
        print(f"report: {outcome.report_path}", flush=True)
    return outcome.exit_code


def cmd_run(args: argparse.Namespace) -> int:
    several = len(load_config(args.config).sources) > 1
    return _run_and_show(
        args.config,
        accept_warnings=args.accept_warnings,
        new_run=args.new_run,
        retry_after_fix=args.retry_after_fix,
        # a pipeline of several sources ends with what unification found across them
        closing=(lambda: across_sources_lines(args.config)) if several else None,
    )


def _started(config: str) -> Pipeline:
    """The config's pipeline, refused in the shell's words when it was never started."""
    load_config(config)  # a config error in the config's words (Pipeline's are an agent's)
    pipeline = Pipeline(config)
    if not pipeline.store.exists():
        raise PipelineError(f"no pipeline for {config} yet: `cdp-mcp run {config}` starts one")
    return pipeline


def cmd_status(args: argparse.Namespace) -> int:
    status = _started(args.config).status()
    print(
        f"pipeline {status.client} ({status.backend}), run {status.run}"
        + (", ABORTED" if status.aborted else "")
    )
    several = len({ph.source for ph in status.phases if ph.source}) > 1
    width = 24 if several else 12
    for ph in status.phases:
        stage = stage_label(Phase(ph.phase), ph.source, several)
        print(f"{stage:<{width}} {ph.status:<12} verdict {ph.verdict or '-'}")
        for st in ph.steps:
            ids = f" session {st.session_id} attempt {st.attempt_id}" if st.attempt_id else ""
            err = f" - {shell.text(st.last_error, args.config)}" if st.last_error else ""
            print(f"  {st.name:<32} {st.status:<10} {st.attempts}/3{ids}{err}")
    for line in shell.next_lines(status.next_action, args.config):
        print(line)
    return 0


def _print_decision(result: DecisionResult, config: str) -> int:
    print(f"{result.status}: {shell.text(result.message, config)}")
    if result.report_path:
        print(f"report: {result.report_path}")
    for line in shell.next_lines(result.next_action, config):
        print(line)
    return 0


def cmd_skip(args: argparse.Namespace) -> int:
    pipeline = _started(args.config)
    phase = parse_phase(args.phase).value
    if not args.yes:
        raise PipelineError(
            f"skipping {phase} needs --yes: later phases will run on whatever {phase} left "
            "behind (possibly nothing)"
        )
    return _print_decision(
        anyio.run(lambda: pipeline.skip_phase(phase, confirm=True, source=args.source)),
        args.config,
    )


def cmd_abort(args: argparse.Namespace) -> int:
    pipeline = _started(args.config)
    return _print_decision(anyio.run(lambda: pipeline.abort(args.reason)), args.config)


def cmd_demo(args: argparse.Namespace) -> int:
    target = Path(args.dir).resolve()
    config = target / "acme.yml"
    if not config.exists():
        folders = write_demo(target, rows=args.rows)
        write_demo_config(target)
        note = f"wrote sample extracts of {', '.join(folders)} and {config}"
    else:
        note = f"using the existing demo in {target}: a new run of it"
    # The demo folder is the demo's own: running it again means a new run.
    return _run_and_show(
        config, note=note, new_run=True, closing=lambda: across_sources_lines(config)
    )


def across_sources_lines(config: Path) -> list[str]:
    """The unification's figures across sources, as the demo prints them last (counts
    only, from the state; nothing before unification validated)."""
    across = across_sources(StateStore(load_config(config).workspace).load())
    if across is None:
        return []
    lines = [f"across sources: {across.summary}"]
    if across.added:
        lines.append(f"  {across.added}")
    lines += [f"  {a} & {b}: {n:,} profiles in both" for a, b, n in across.overlap]
    for table, source, rows, with_id, with_key, share in across.coverage:
        lines.append(
            f"  {table} ({source}): {with_id:,} of {rows:,} rows have a profile id ({share}), "
            f"{with_key:,} a valid key"
        )
    return lines
