"""The command line talks to a person at a shell: commands, not MCP calls; no traceback on a
closed pipe; the reports' paths at the end of a run, piped or not; one name for the key."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest

from cdp_mcp import __version__
from cdp_mcp.cli import shell
from cdp_mcp.cli.events import RunOutcome
from cdp_mcp.cli.progress import failure_lines
from cdp_mcp.core import redact
from cdp_mcp.core.phases import Phase
from cdp_mcp.core.tools import ASK_PERSON, ToolName
from cdp_mcp.pipeline.models import NextAction
from cdp_mcp.pipeline.nextstep import decision_choices
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import FIXTURES, SENTINEL_KEY, SENTINEL_SECRET
from tests.test_cli_pipeline import broken_ingestion, cdp, cli

# What an agent is told, and a person at a shell must never be.
MCP_CALLS = ("init_pipeline", "skip_phase(", "abort_pipeline(", "push_project", "{'config_path'")


def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The acme pipeline, initialised and its ingestion project generated."""
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    config = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", config)
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)

    async def start() -> None:
        await Pipeline(config).init()
        await Pipeline(config).generate_phase("ingestion")

    anyio.run(start)
    return config


@pytest.mark.slow
def test_version_is_the_package_version() -> None:
    ran = cdp("--version")
    assert ran.code == 0
    assert ran.out == f"cdp-mcp {__version__}\n"


@pytest.mark.slow
def test_status_names_the_next_command_not_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = started(tmp_path, monkeypatch)
    status = cdp("status", str(config))
    assert status.code == 0, status.err
    assert f"next: deploy the ingestion:shopify project: `cdp-mcp run {config}`" in status.out
    assert not any(call in status.out for call in MCP_CALLS), status.out


@pytest.mark.slow
def test_a_bad_config_is_an_error_about_the_config_not_a_tool_call(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    bad = tmp_path / "bad.yml"
    bad.write_text((FIXTURES / "acme.yml").read_text().replace("client: acme", "client: 9acme"))
    for args in (["run", str(bad)], ["status", str(bad)], ["abort", str(bad)]):
        ran = cdp(*args)
        assert ran.code == 1
        assert "global.client" in ran.err
        assert not any(call in ran.err for call in MCP_CALLS), ran.err


def test_agent_guidance_in_errors_is_rewritten_as_commands() -> None:
    cfg = "my acme.yml"
    said = {
        "bad value\nFix the config file, then call init_pipeline again.": (
            "bad value\nFix the config file, then run `cdp-mcp run 'my acme.yml'` again."
        ),
        "the pipeline was aborted; call final_report for where it stopped, or "
        "init_pipeline(config_path, new_run=true) to start a new run": (
            "the pipeline was aborted; run `cdp-mcp run 'my acme.yml'` for where it stopped, "
            "or `cdp-mcp run 'my acme.yml' --new-run` to start a new run"
        ),
        "staging is locked: fix hist_union, or skip_phase(config_path, 'hist_union', "
        "confirm=true). Next call: validate_tables(config_path='/x/acme.yml', "
        "phase='hist_union', accept_warnings=true).": (
            "staging is locked: fix hist_union, or `cdp-mcp skip 'my acme.yml' hist_union "
            "--yes`. Next call: `cdp-mcp run 'my acme.yml' --accept-warnings`."
        ),
        "fix the cause in the config and call init_pipeline(config_path) (then generate_phase "
        "again), skip_phase(config_path, 'staging', confirm=true), or "
        "abort_pipeline(config_path).": (
            "fix the cause in the config and run `cdp-mcp run 'my acme.yml'`, "
            "`cdp-mcp skip 'my acme.yml' staging --yes`, or `cdp-mcp abort 'my acme.yml'`."
        ),
    }
    for agent, person in said.items():
        assert shell.text(agent, cfg) == person


def test_a_decision_is_offered_as_commands() -> None:
    cp = "/w/acme.yml"
    exhausted = NextAction(
        tool=ASK_PERSON,
        arguments={"config_path": cp, "phase": "ingestion"},
        why="ingestion: step execute:x failed 3 times (the limit is 3). A person decides.",
        choices=decision_choices(cp, Phase.INGESTION),
    )
    lines = shell.next_lines(exhausted, "acme.yml")
    assert lines[0] == f"next: {exhausted.why}"
    assert "  - skip: `cdp-mcp skip acme.yml ingestion --yes`" in "\n".join(lines)
    assert "  - abort: `cdp-mcp abort acme.yml`" in "\n".join(lines)
    assert not any(call in "\n".join(lines) for call in MCP_CALLS)

    warned = NextAction(
        tool=ToolName.VALIDATE_TABLES,
        arguments={"config_path": cp, "phase": "staging", "accept_warnings": True},
        why="staging validated WARN: x. A person decides whether to accept the warnings.",
    )
    warned.choices = decision_choices(cp, Phase.STAGING, warned, "accept the warnings")
    text = "\n".join(shell.next_lines(warned, "acme.yml"))
    assert "accept the warnings: `cdp-mcp run acme.yml --accept-warnings`" in text
    assert "validate_tables(" not in text

    outcome = RunOutcome(
        exit_code=1,
        message=exhausted.why,
        failed_phase="ingestion",
        next_steps=list(exhausted.choices),
        next_action=exhausted,
    )
    piped = "\n".join(failure_lines(outcome, "acme.yml"))
    assert "    - skip: `cdp-mcp skip acme.yml ingestion --yes`" in piped
    assert not any(call in piped for call in MCP_CALLS), piped


@pytest.mark.slow
def test_a_closed_pipe_ends_the_command_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cdp-mcp status X | head -0`: the reader is gone before anything is written."""
    config = started(tmp_path, monkeypatch)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*cli(), "status", str(config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""  # no traceback, no "Exception ignored", no "error: Broken pipe"
    assert done.returncode == 141


@pytest.mark.slow
def test_a_piped_run_ends_with_both_reports_and_shell_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = broken_ingestion(tmp_path, monkeypatch)
    ran = cdp("run", str(config))  # stdout and stderr are pipes, not a terminal
    assert ran.code == 1
    html, md = ran.out.strip().splitlines()[-2:]
    assert html.startswith("html report: ") and html.endswith("cdp_report.html")
    assert Path(html.removeprefix("html report: ")).is_file()
    assert md.startswith("report: ") and Path(md.removeprefix("report: ")).is_file()
    what_now = ran.err.split("  what now:\n", 1)[1]
    assert f"skip: `cdp-mcp skip {config} ingestion --source shopify --yes`" in what_now
    assert not any(call in ran.err for call in MCP_CALLS), ran.err

    status = cdp("status", str(config))
    assert f"  - abort: `cdp-mcp abort {config}`" in status.out
    assert not any(call in status.out for call in MCP_CALLS), status.out


@pytest.mark.slow
def test_the_old_key_variable_is_read_with_a_notice_and_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**os.environ, "TD_APIKEY": SENTINEL_KEY}
    env.pop("TD_API_KEY", None)
    done = subprocess.run(
        [*cli(), "--version"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0
    notices = [ln for ln in done.stderr.splitlines() if "TD_APIKEY is deprecated" in ln]
    assert len(notices) == 1 and "set TD_API_KEY" in notices[0]
    assert SENTINEL_SECRET not in done.stderr + done.stdout

    quiet = subprocess.run(
        [*cli(), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "TD_APIKEY": "", "TD_API_KEY": SENTINEL_KEY},
    )
    assert "deprecated" not in quiet.stderr

    # Both spellings stay secrets the scrubber knows.
    for name in ("TD_API_KEY", "TD_APIKEY"):
        monkeypatch.delenv("TD_API_KEY", raising=False)
        monkeypatch.delenv("TD_APIKEY", raising=False)
        monkeypatch.setenv(name, SENTINEL_KEY)
        assert SENTINEL_SECRET not in redact.scrub(f"echo {SENTINEL_KEY}")
