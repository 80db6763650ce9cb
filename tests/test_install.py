"""Installed as people install MCP servers: the wheel, by its name, into a fresh venv.

The slow test builds the wheel with pip (no other build tool), installs `cdp-mcp` BY NAME
from a folder index into a venv made with `python -m venv` (its dependencies from PyPI or
pip's cache), and talks to that venv's `cdp-mcp serve` over stdio with the MCP client. The
fast ones hold the registry metadata to what the registry checks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from cdp_mcp import __version__

REPO = Path(__file__).parents[1]
SERVER_JSON = json.loads((REPO / "server.json").read_text())
README = (REPO / "README.md").read_text()


def test_the_registry_finds_its_name_in_the_readme() -> None:
    """PyPI ownership: `mcp-name: NAME` in the README (the package's description), NAME being
    server.json's, followed by a boundary (the registry's package-types docs)."""
    name = SERVER_JSON["name"]
    assert re.search(rf"<!-- mcp-name: {re.escape(name)} -->", README)


def test_server_json_names_the_package_this_repository_builds() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (package,) = SERVER_JSON["packages"]
    assert package["identifier"] == project["name"] == "cdp-mcp"
    assert SERVER_JSON["version"] == package["version"] == project["version"] == __version__
    assert package["packageArguments"] == [{"type": "positional", "value": "serve"}]
    repo = SERVER_JSON["repository"]  # the schema's Repository: url and source required
    assert repo["source"] == "github" and repo["url"].startswith("https://github.com/")
    assert project["urls"]["Repository"] == repo["url"]
    assert len(SERVER_JSON["description"]) <= 100  # the schema's maxLength


def quick_start() -> list[str]:
    block = README.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()


def test_the_quick_start_is_two_commands_that_need_no_system_pip() -> None:
    demo, tests = quick_start()
    for line in (demo, tests):
        # PEP 668: Debian's, Ubuntu's and Homebrew's Python refuse a bare `pip install`.
        assert line.startswith("python3 -m venv .venv && .venv/bin/pip install -e "), line
    assert demo.endswith(".venv/bin/cdp-mcp demo")
    assert tests.endswith(".venv/bin/pytest") and '".[test]"' in tests
    adds = [ln for ln in README.splitlines() if ln.startswith("claude mcp add ")]
    assert adds == [
        'claude mcp add cdp-mcp -e TD_API_KEY=<your TD API key> -- "$PWD/.venv/bin/cdp-mcp" serve'
    ]


def _run(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=900, cwd=cwd, check=False
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_by_name_and_serves_mcp(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO)
    (wheel,) = wheels.glob("cdp_mcp-*.whl")
    assert wheel.name.startswith(f"cdp_mcp-{__version__}-")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "-q", "--find-links", wheels, "cdp-mcp")
    assert _run(bin_dir / "cdp-mcp", "--version") == f"cdp-mcp {__version__}\n"

    # The data files the package reads at run time came with it.
    site = Path(
        _run(
            bin_dir / "python",
            "-c",
            "import cdp_mcp, os; print(os.path.dirname(cdp_mcp.__file__))",
            cwd=tmp_path,  # not the checkout, whose cdp_mcp/ would be imported instead
        ).strip()
    )
    assert site.is_relative_to(venv), site  # the installed copy, not this checkout
    assert (site / "prompts" / "cdp_implement.md.j2").is_file()
    assert (site / "core" / "connector_catalog.yml").is_file()
    templates = site / "generate" / "templates"
    shipped = {p.relative_to(templates) for p in templates.rglob("*.j2")}
    ours = {
        p.relative_to(REPO / "cdp_mcp/generate/templates")
        for p in (REPO / "cdp_mcp/generate/templates").rglob("*.j2")
    }
    assert shipped == ours

    params = StdioServerParameters(
        command=str(bin_dir / "cdp-mcp"), args=["serve"], env={}, cwd=str(tmp_path)
    )

    async def talk() -> tuple[str, set[str], str]:
        with (tmp_path / "server.stderr").open("w") as err:
            async with Client(stdio_client(params, errlog=err), read_timeout_seconds=120) as c:
                tools = {t.name for t in (await c.list_tools()).tools}
                prompt = await c.get_prompt("cdp_implement", {"config_path": "acme.yml"})
                text = "".join(getattr(m.content, "text", "") for m in prompt.messages)
                info = c.server_info
                return f"{info.name} {info.version}" if info else "", tools, text

    server, tools, prompt = anyio.run(talk)
    assert server.endswith(__version__)
    assert {"init_pipeline", "generate_phase", "validate_tables", "final_report"} <= tools
    assert "acme.yml" in prompt
