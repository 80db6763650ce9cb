"""`cdp-mcp run` does not import the MCP SDK: a pipeline run from the command line talks to
no MCP client, and importing `mcp` (its client, server, starlette, uvicorn and OpenTelemetry
whatever the transport) costs about half a second of every run's start. The run goes under
`python -X importtime`, which names on stderr every module the process imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

ROOT = Path(__file__).parents[1]


@pytest.mark.slow  # a whole pipeline run over the fixture
def test_a_pipeline_run_imports_no_mcp(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    shutil.copy(FIXTURES / "acme.yml", tmp_path / "acme.yml")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cdp_mcp.cli.main", "run", "acme.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    imported = set(re.findall(r"^import time:.*\| +([\w.]+)$", done.stderr, re.MULTILINE))
    assert "cdp_mcp.pipeline.orchestrator" in imported, "no import log"
    assert sorted(m for m in imported if m == "mcp" or m.startswith("mcp.")) == []
