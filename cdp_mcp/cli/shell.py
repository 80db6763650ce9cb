"""The pipeline's guidance in a shell's words: `cdp-mcp run CONFIG` where an agent reads a call.

The pipeline speaks to agents (`next_action` is a tool and its arguments; errors say "call
init_pipeline again"). A person at a shell runs commands instead, so the CLI renders a
NextAction from its tool and arguments, and rewrites the calls an error's text names.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from cdp_mcp.core.tools import ASK_PERSON, ToolName
from cdp_mcp.pipeline.models import NextAction
from cdp_mcp.pipeline.rules.advice import accepts_warnings_choice

# The tools `cdp-mcp run` carries out itself, following next_action (cli/run.py).
_RUN_DOES = {
    ToolName.INIT_PIPELINE,
    ToolName.GENERATE_PHASE,
    ToolName.PUSH_PROJECT,
    ToolName.SET_SECRETS,
    ToolName.START_WORKFLOW,
    ToolName.GET_SESSION,
    ToolName.VALIDATE_TABLES,
    ToolName.FINAL_REPORT,
}


def command(tool: str, arguments: Mapping[str, object], config: str) -> str | None:
    """The shell command doing what calling `tool` with `arguments` does (None: no command)."""
    cfg = shlex.quote(config)
    phase = arguments.get("phase")
    if tool == ToolName.SKIP_PHASE and phase:
        return f"cdp-mcp skip {cfg} {_stage(arguments)} --yes"
    if tool == ToolName.ABORT_PIPELINE:
        return f"cdp-mcp abort {cfg}"
    if tool == ToolName.PIPELINE_STATUS:
        return f"cdp-mcp status {cfg}"
    if tool in _RUN_DOES:
        flags = ""
        if arguments.get("new_run") is True:
            flags += " --new-run"
        if arguments.get("retry_after_fix") is True:
            flags += " --retry-after-fix"
        if arguments.get("accept_warnings") is True:
            flags += " --accept-warnings"
        return f"cdp-mcp run {cfg}{flags}"
    return None


def _stage(arguments: Mapping[str, object]) -> str:
    """A stage as `cdp-mcp skip`'s arguments: `staging`, `staging --source shop`."""
    phase, source = shlex.quote(str(arguments.get("phase"))), arguments.get("source")
    return f"{phase} --source {shlex.quote(str(source))}" if source else phase


def next_lines(action: NextAction, config: str) -> list[str]:
    """`next: why: command`, then the person's choices when one must decide."""
    cmd = command(action.tool, action.arguments, config)
    why = text(action.why, config)
    lines = [f"next: {why}: `{cmd}`" if cmd and not action.choices else f"next: {why}"]
    lines += [f"  - {choice}" for choice in choices(action, config)]
    return lines


def choices(action: NextAction, config: str) -> list[str]:
    """A decision's options as commands (what `cdp-mcp run` cannot decide on its own)."""
    if not action.choices:
        return []
    cfg = shlex.quote(config)
    phase = action.arguments.get("phase")
    if action.tool == ASK_PERSON and not phase:  # a finished run, its report written
        return [
            "done: nothing more to do; the report stays as it is",
            f"new run: `cdp-mcp run {cfg} --new-run` - every phase over as a new run; the "
            "earlier reports move to reports/run-N/",
        ]
    out = []
    if accepts_warnings_choice(action) or (
        action.tool == ToolName.VALIDATE_TABLES and action.arguments.get("accept_warnings")
    ):
        out.append(f"accept the warnings: `cdp-mcp run {cfg} --accept-warnings`")
    elif action.tool not in (ASK_PERSON, ToolName.VALIDATE_TABLES):
        out.append(f"retry: `cdp-mcp run {cfg}`")
    # A budget spent, or a failure of the data: `cdp-mcp run` goes on once the person says
    # the cause is fixed.
    if any(
        "retry_after_fix=true" in c or c.startswith("once the file is fixed")
        for c in action.choices
    ):
        out.append(
            "retry after a fix outside the config (a source file restored): "
            f"`cdp-mcp run {cfg} --retry-after-fix`"
        )
    out.append(f"fix: change the config file, then `cdp-mcp run {cfg}`")
    if phase:
        out.append(
            f"skip: `cdp-mcp skip {cfg} {_stage(action.arguments)} --yes` - later phases run "
            "on whatever this phase left behind"
        )
    out.append(f"abort: `cdp-mcp abort {cfg}` - stops here and writes a partial report")
    return out


_TOOLS = "|".join(sorted((t.value for t in ToolName), key=len, reverse=True))
# `skip_phase(config_path, 'staging', confirm=true)`, `init_pipeline(config_path='/x.yml')`
_CALL = re.compile(rf"(?P<call>\bcall )?`?\b(?P<tool>{_TOOLS})\((?P<args>[^()]*)\)`?")
# "call init_pipeline again", "call final_report for ..."
_BARE = re.compile(rf"\bcall (?:`)?(?P<tool>{_TOOLS})\b(?:`)?(?!\()")
# "(then generate_phase again)": `cdp-mcp run` goes on by itself
_THEN = re.compile(rf" ?\(then (?:{_TOOLS}) again\)")
_ARG = re.compile(r"(?:(?P<key>\w+)\s*=\s*)?(?P<value>'[^']*'|\"[^\"]*\"|[\w.-]+)")


def _arguments(text: str) -> dict[str, object]:
    """The arguments of a call as the pipeline writes one (positional: config_path, phase)."""
    out: dict[str, object] = {}
    positional = ["config_path", "phase"]
    for m in _ARG.finditer(text):
        value: object = m["value"].strip("'\"")
        if value in ("true", "True"):
            value = True
        key = m["key"] or (positional.pop(0) if positional else "")
        if key in positional:
            positional.remove(key)
        if key:
            out[key] = value
    return out


def text(message: str, config: str) -> str:
    """`message` with each tool call it names written as the shell command that does it."""

    def call(m: re.Match[str]) -> str:
        cmd = command(m["tool"], _arguments(m["args"]), config)
        if not cmd:
            return m[0]
        return f"run `{cmd}`" if m["call"] else f"`{cmd}`"

    def bare(m: re.Match[str]) -> str:
        cmd = command(m["tool"], {}, config)
        return f"run `{cmd}`" if cmd else m[0]

    return _BARE.sub(bare, _CALL.sub(call, _THEN.sub("", message)))
