"""`cdp-mcp run`, `status` and `demo` as a person runs them: real processes, real exit codes.

The headless run goes through the same orchestrator as the MCP tools. Whether the last
phase (ID unification) can pass depends on the local unification engine being installed;
the full-run assertions read `cdp-mcp status` to know which world they are in, and hold in
both: exit 0 with every phase PASS, or exit 1 stopped at unification naming the failing
task with its log tail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, write_sample, write_sample_config
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import FIXTURES, SENTINEL_KEY

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

ROWS = 40
PHASES = ("ingestion", "hist_union", "staging", "unification")


def cli() -> list[str]:
    """The installed console script when there is one (what a user runs), else the module."""
    script = Path(sys.executable).parent / "cdp-mcp"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cdp_mcp.cli.main"]


@dataclass
class Ran:
    code: int
    out: str
    err: str


def cdp(*args: str, cwd: Path | None = None) -> Ran:
    env = {**os.environ, "TD_API_KEY": SENTINEL_KEY}
    done = subprocess.run(
        [*cli(), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert SENTINEL_KEY not in done.stdout + done.stderr
    return Ran(done.returncode, done.stdout, done.stderr)


def phase_lines(status_out: str) -> dict[str, str]:
    """`cdp-mcp status` output: phase -> its status word."""
    lines = {}
    for line in status_out.splitlines():
        words = line.split()
        if words and words[0].partition(":")[0] in PHASES:
            lines[words[0]] = words[1]
    return lines


def assert_full_run(ran: Ran, config: Path) -> None:
    """The outcome of a run over all four phases, in either world (see module doc)."""
    status = cdp("status", str(config))
    assert status.code == 0, status.err
    phases = phase_lines(status.out)  # stages: `ingestion`, or `ingestion:crm` of several
    assert {stage.partition(":")[0] for stage in phases} == set(PHASES)
    for stage in phases:
        if stage != "unification":
            assert phases[stage] == "passed", status.out
            assert f"{stage}: validation PASS" in ran.err
    report = ran.out.strip().splitlines()[-1]
    assert report.startswith("report: ")
    report_text = Path(report.removeprefix("report: ")).read_text()
    if phases["unification"] == "passed":
        assert ran.code == 0, ran.err
        assert "unification: validation PASS" in ran.err
        assert ran.err.rstrip().endswith("every phase validated PASS")
        # The report is written: a new run is the person's decision, not a next step.
        assert "next: run 1 is finished and its report is written" in status.out
        assert "`--new-run`" not in status.out and "--new-run` - every phase over" in status.out
        assert "**Complete**" in report_text
    else:  # the unification engine is not there yet
        assert ran.code == 1, ran.err
        assert "FAILED:" in ran.err and "phase: unification" in ran.err
        assert "  task: +unif_runner" in ran.err
        assert "  log tail:" in ran.err
        assert "execute:unif_runner" in status.out and "3/3" in status.out
        assert "**Partial report**: the pipeline is at phase **unification**" in report_text


def test_run_a_sample_pipeline_headless(tmp_path: Path) -> None:
    write_sample(tmp_path / SAMPLE_FOLDER, rows=ROWS)
    config = write_sample_config(tmp_path)

    ran = cdp("run", str(config))
    # progress on stderr, step by step, in phase order
    assert ran.err.startswith("pipeline acme on local")
    assert "preflight: source files readable" in ran.err
    order = [ran.err.index(f"{p}: generated") for p in PHASES]
    assert order == sorted(order)
    assert "ingestion: started shopify_ingest_hist (session 1, attempt 1)" in ran.err
    assert "shopify_ingest_hist success in" in ran.err
    assert_full_run(ran, config)


def test_status_needs_a_pipeline_and_names_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    config = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", config)

    none_yet = cdp("status", str(config))
    assert none_yet.code == 1
    assert f"no pipeline for {config} yet: `cdp-mcp run {config}` starts one" in none_yet.err

    async def start() -> None:
        await Pipeline(config).init()
        await Pipeline(config).generate_phase("ingestion")

    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    anyio.run(start)
    status = cdp("status", str(config))
    assert status.code == 0, status.err
    assert status.out.startswith("pipeline acme (local), run 1")
    assert phase_lines(status.out) == {
        "ingestion": "in_progress",
        "hist_union": "pending",
        "staging": "pending",
        "unification": "pending",
    }
    assert "generate                         succeeded  1/3" in status.out
    assert f"next: deploy the ingestion:shopify project: `cdp-mcp run {config}`" in status.out

    bad = tmp_path / "bad.yml"
    bad.write_text(config.read_text().replace("client: acme", "client: 9acme"))
    failed = cdp("status", str(bad))
    assert failed.code == 1 and "global.client" in failed.err


def broken_ingestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pipeline whose first workflow fails: a generated SQL file damaged after generation."""
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    config = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", config)

    async def generate() -> Path:
        await Pipeline(config).init()
        return Path((await Pipeline(config).generate_phase("ingestion")).directory)

    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    project = anyio.run(generate)
    (project / "queries" / "create_ingestion_log.sql").write_text("CREATE TABLE (oops;\n")
    return config


def test_run_stops_at_a_failing_workflow_with_its_task_and_log_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resumed from a state made elsewhere (an MCP session), the run retries the failing
    workflow within its budget, then stops and says which task failed and why."""
    config = broken_ingestion(tmp_path, monkeypatch)

    ran = cdp("run", str(config))
    assert ran.code == 1
    assert "ingestion: generated" not in ran.err  # carried on from the saved state
    assert "ingestion: pushed acme_shopify_ingestion" in ran.err
    assert ran.err.count("retrying failed tasks of shopify_ingest_hist") == 2
    assert "FAILED: ingestion:shopify: step execute:shopify_ingest_hist failed 3 times" in ran.err
    assert "  phase: ingestion" in ran.err
    assert "  task: +shopify_ingest_hist+create_ingestion_log" in ran.err
    tail = ran.err.split("  log tail:\n", 1)[1]
    assert "create_ingestion_log" in tail
    report = Path(ran.out.strip().splitlines()[-1].removeprefix("report: "))
    assert (
        "**Partial report**: the pipeline is at phase **ingestion (shopify)**" in report.read_text()
    )

    status = cdp("status", str(config))
    assert "execute:shopify_ingest_hist      failed     3/3" in status.out
    assert "failed 3 times (the limit is 3); last error:" in status.out
    assert f"  - skip: `cdp-mcp skip {config} ingestion --source shopify --yes`" in status.out


def test_run_stops_at_a_warning_unless_accepted(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    config = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", config)
    (tmp_path / "shopify" / "products.csv").write_text(
        "id,title,vendor,price,updated_at\n10,Mug,Acme,9.5,2022-01-01T00:00:00Z\n"
    )
    ran = cdp("run", str(config))
    assert ran.code == 1
    assert "ingestion: validation WARN" in ran.err
    assert "warning: no rows of products were loaded" in ran.err
    assert "rerun with --accept-warnings to continue past it" in ran.err
    assert "hist_union: generated" not in ran.err
    assert phase_lines(cdp("status", str(config)).out)["ingestion"] == "warned"

    # The person accepts: the same run carries on from the saved state.
    accepted = cdp("run", str(config), "--accept-warnings")
    assert "ingestion: generated" not in accepted.err
    assert "ingestion: validation WARN" in accepted.err
    phases = phase_lines(cdp("status", str(config)).out)
    assert phases["ingestion"] == "accepted"
    # the empty products table is a warning in the later phases too
    assert phases["hist_union"] == phases["staging"] == "accepted"
    if phases["unification"] in ("passed", "accepted"):
        assert accepted.code == 3, accepted.err  # done, but not everything PASSed
        assert "done, with accepted warnings in: ingestion" in accepted.err
    else:  # no unification engine yet
        assert accepted.code == 1 and "phase: unification" in accepted.err


def test_demo_writes_a_sample_and_runs_it(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    ran = cdp("demo", str(target), "--rows", str(ROWS))
    config = target / "acme.yml"
    assert config.is_file()
    assert {p.stem for p in (target / SAMPLE_FOLDER).iterdir()} >= {
        "orders",
        "customers",
        "products",
    }
    assert ran.err.startswith(f"wrote sample extracts of shopify, crm, mailer and {config}")
    assert (target / "crm" / "contacts.csv").is_file()
    assert (target / "mailer" / "subscribers.jsonl").is_file()
    assert_full_run(ran, config)


def test_demo_defaults_to_a_demo_folder_in_the_current_directory(tmp_path: Path) -> None:
    """The README's first command: `cdp-mcp demo` (no argument) writes ./demo."""
    help_text = cdp("demo", "--help").out
    assert "default ./demo" in help_text
    parsed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cdp_mcp.cli.main import build_parser; print(build_parser().parse_args(['demo']).dir)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert parsed.stdout.strip() == "demo"


def test_commands_on_a_pipeline_never_started_say_how_to_start_it(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    config = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", config)
    for args in (["status"], ["abort"], ["skip", "--yes"]):
        extra = ["staging"] if args[0] == "skip" else []
        ran = cdp(args[0], str(config), *extra, *args[1:])
        assert ran.code == 1, args
        assert f"no pipeline for {config} yet: `cdp-mcp run {config}` starts one" in ran.err
    assert not (tmp_path / "acme_cdp" / ".cdp_state").exists()  # nothing was created
