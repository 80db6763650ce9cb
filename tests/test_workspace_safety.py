"""Confinement and ownership: what cdp-mcp may read, where it may write, what it may replace.

- The MCP server reads configs and source files and writes workspaces only under its roots
  (`--root` / CDP_MCP_ROOTS, else the client's MCP roots, else its working directory), checked
  after resolving symlinks; tested through a real MCP client over stdio.
- `/`, shared and system folders, and a non-empty folder cdp-mcp did not create are refused
  as workspaces, on the CLI too.
- In its workspace cdp-mcp replaces only files it wrote (manifests): a person's file, or a
  generated file they edited, is never deleted or overwritten.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import yaml
from mcp import Client, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from cdp_mcp.cli.main import main
from cdp_mcp.core.config import ConfigError, load_config
from cdp_mcp.core.manifest import FileConflictError, write_owned
from cdp_mcp.core.phases import Phase
from cdp_mcp.core.roots import Roots, explicit_roots
from cdp_mcp.generate import GenerationError, generate
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import FIXTURES, SENTINEL_KEY


def pipeline_in(folder: Path, **global_: object) -> Path:
    """The seed's example pipeline in `folder`, with `global_` merged into its `global`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(FIXTURES / "shopify", folder / "shopify", dirs_exist_ok=True)
    doc = yaml.safe_load((FIXTURES / "acme.yml").read_text())
    doc["global"].update(global_)
    config = folder / "acme.yml"
    config.write_text(yaml.safe_dump(doc))
    return config


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)


# -- which folder may be a workspace ---------------------------------------------------


@pytest.mark.parametrize("workspace", ["/", "/etc", "/etc/cdp", "/usr/local/cdp", "/tmp", "~"])
def test_root_shared_and_system_folders_are_refused_as_workspaces(
    tmp_path: Path, workspace: str
) -> None:
    target = str(Path(workspace).expanduser())
    with pytest.raises(ConfigError) as err:
        load_config(pipeline_in(tmp_path, workspace=target))
    (problem,) = err.value.problems
    assert problem.path == "global.workspace" and target in problem.message


def test_a_symlink_into_a_system_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ws").symlink_to("/etc")
    with pytest.raises(ConfigError, match=r"global\.workspace: /etc is the system folder"):
        load_config(pipeline_in(tmp_path, workspace="./ws"))


@pytest.mark.slow
def test_a_foreign_non_empty_folder_is_refused_and_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    notes = ws / "staging" / "my_important_notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    config = pipeline_in(tmp_path, workspace="./ws")
    with pytest.raises(PipelineError, match="did not create, and it is not empty") as err:
        anyio.run(Pipeline(config).init)
    assert str(ws) in str(err.value) and "new path" in str(err.value)
    assert main(["generate", str(config), "all"]) == 1
    assert "did not create" in capsys.readouterr().err
    assert notes.read_text() == "mine"
    assert sorted(p.name for p in ws.iterdir()) == ["staging"]  # nothing was added either
    # An empty folder is fine, and then it is cdp-mcp's.
    shutil.rmtree(ws)
    ws.mkdir()
    anyio.run(Pipeline(config).init)
    assert (ws / ".cdp_state" / "state.json").is_file()


# -- replacing only what cdp-mcp wrote ----------------------------------------------------


@pytest.mark.slow
def test_regenerating_a_phase_keeps_a_persons_files(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    schemas = predicted_schemas(cfg)
    project = generate(cfg, Phase.STAGING, schemas)
    notes = project.directory / "my_important_notes.txt"
    notes.write_text("mine")
    edited = project.directory / project.files[0]
    edited.write_text(edited.read_text() + "-- my fix\n")
    with pytest.raises(GenerationError) as err:
        generate(cfg, Phase.STAGING, schemas)
    message = str(err.value)
    assert "not written by cdp-mcp: my_important_notes.txt" in message
    assert f"changed since cdp-mcp wrote them: {project.files[0]}" in message
    assert "--keep-aside" in message and "Nothing was changed" in message
    assert notes.read_text() == "mine" and edited.read_text().endswith("-- my fix\n")

    # With the person's say-so the files are moved aside, never deleted.
    again = generate(cfg, Phase.STAGING, schemas, keep_aside=True)
    assert again.kept_aside is not None
    kept = Path(again.kept_aside)
    assert kept.is_relative_to(cfg.workspace / ".cdp_state" / "kept")
    assert (kept / "my_important_notes.txt").read_text() == "mine"
    assert (kept / project.files[0]).read_text().endswith("-- my fix\n")
    assert sorted(p.name for p in kept.rglob("*") if p.is_file()) == sorted(
        ["my_important_notes.txt", Path(project.files[0]).name]
    )
    assert not notes.exists() and not edited.read_text().endswith("-- my fix\n")
    generate(cfg, Phase.STAGING, schemas)  # its own files again: replaced without a word


@pytest.mark.slow
def test_a_folder_without_a_manifest_is_not_replaced(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    (cfg.workspace / ".cdp_state").mkdir(parents=True)  # a workspace an older cdp-mcp made
    made_by_hand = cfg.workspace / "shopify_ingestion" / "load.dig"
    made_by_hand.parent.mkdir(parents=True)
    made_by_hand.write_text("+mine:\n  echo>: hi\n")
    with pytest.raises(GenerationError, match="there is no manifest"):
        generate(cfg, Phase.INGESTION, predicted_schemas(cfg))
    assert made_by_hand.read_text() == "+mine:\n  echo>: hi\n"


@pytest.mark.slow
def test_cli_generate_keep_aside_says_where_the_files_went(
    acme_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", str(acme_config), "hist_union"]) == 0
    notes = acme_config.parent / "acme_cdp" / "shopify_hist_union" / "notes.md"
    notes.write_text("mine")
    assert main(["generate", str(acme_config), "hist_union"]) == 1
    assert "notes.md" in capsys.readouterr().err
    assert main(["generate", str(acme_config), "hist_union", "--keep-aside"]) == 0
    out = capsys.readouterr().out
    assert "were moved to" in out and not notes.exists()
    kept = Path(out.split("were moved to ")[1].split()[0])
    assert (kept / "notes.md").read_text() == "mine"


@pytest.mark.slow
def test_the_report_never_overwrites_a_persons_file(acme_config: Path) -> None:
    pipeline = Pipeline(acme_config)
    anyio.run(pipeline.init)
    theirs = pipeline.cfg.workspace / "reports" / "runbook.md"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("my runbook")
    with pytest.raises(PipelineError, match="the report was not written") as err:
        anyio.run(pipeline.final_report)
    assert str(theirs) in str(err.value)
    assert theirs.read_text() == "my runbook"
    assert not (theirs.parent / "cdp_report.md").exists()  # all or nothing
    theirs.unlink()
    first = anyio.run(pipeline.final_report)
    anyio.run(pipeline.final_report)  # its own report: rewritten
    Path(first.path).write_text(Path(first.path).read_text() + "\nmy note\n")
    with pytest.raises(PipelineError, match="changed since"):
        anyio.run(pipeline.final_report)
    assert Path(first.path).read_text().endswith("my note\n")


def test_run_logs_never_overwrite_a_persons_file(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    log = ws / "pipeline_logs" / "2026-01-01" / "ingestion_wf_attempt1.log"
    write_owned(ws, {log: "run 1\n"})
    write_owned(ws, {log: "run 1, more\n"})  # rewritten as the run goes
    log.write_text("my copy")
    with pytest.raises(FileConflictError):
        write_owned(ws, {log: "run 1, done\n"})
    assert log.read_text() == "my copy"


# -- roots: what the MCP server may reach ---------------------------------------------------


def test_roots_come_from_the_flag_then_the_environment(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    flagged = explicit_roots([str(a)], {"CDP_MCP_ROOTS": str(b)})
    assert flagged is not None and flagged.folders == (a,)
    from_env = explicit_roots([], {"CDP_MCP_ROOTS": f"{a}{os.pathsep}{b}"})
    assert from_env is not None and from_env.folders == (a, b)
    assert explicit_roots([], {}) is None


def test_a_pipeline_outside_the_roots_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    roots = Roots.of([root], "--root")
    with pytest.raises(PipelineError) as err:
        Pipeline("/etc/shadow", roots=roots)
    text = str(err.value)
    assert "the config file /etc/shadow is outside" in text
    assert str(root) in text and "--root /etc" in text

    inside = pipeline_in(root / "p")
    Pipeline(inside, roots=roots)  # inside: fine
    away = pipeline_in(root / "q", workspace=str(tmp_path / "elsewhere"))
    with pytest.raises(PipelineError, match=r"global\.workspace .* is outside"):
        Pipeline(away, roots=roots)
    assert not (tmp_path / "elsewhere").exists()

    (root / "data").symlink_to(tmp_path / "outside_data", target_is_directory=True)
    (tmp_path / "outside_data").mkdir()
    linked = pipeline_in(root / "r")
    doc = yaml.safe_load(linked.read_text())
    doc["ingestion"]["source_path"] = str(root / "data")
    linked.write_text(yaml.safe_dump(doc))
    with pytest.raises(PipelineError, match=r"ingestion\.source_path .*outside_data is outside"):
        Pipeline(linked, roots=roots)


def _call_server(
    cwd: Path,
    args: list[str],
    client_roots: list[Path] | None,
    config: Path,
    mode: str = "auto",
    read_state: list[str] | None = None,
) -> types.CallToolResult:
    """init_pipeline(config) on `cdp-mcp serve ARGS` started in `cwd`, via a real client that
    offers `client_roots` as its MCP roots (None: no roots capability). `mode` "legacy" speaks
    the handshake-era protocol, where the server asks for roots mid-call."""

    async def list_roots(context: object) -> types.ListRootsResult:
        assert client_roots is not None
        return types.ListRootsResult(
            roots=[types.Root(uri=f"file://{p}", name=p.name) for p in client_roots]
        )

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cdp_mcp.cli.main", "serve", *args],
        env={"TD_API_KEY": SENTINEL_KEY, "PYTHONPATH": str(Path(__file__).parents[1])},
        cwd=str(cwd),
    )

    async def talk() -> types.CallToolResult:
        with (cwd / "server.stderr").open("w") as err:
            async with Client(
                stdio_client(params, errlog=err),
                list_roots_callback=list_roots if client_roots is not None else None,
                read_timeout_seconds=60,
                mode=mode,
            ) as client:
                result = await client.call_tool("init_pipeline", {"config_path": str(config)})
                if read_state is not None:
                    uri = f"cdp://pipeline/{urllib.parse.quote(str(config), safe='')}/state"
                    try:
                        await client.read_resource(uri)
                        read_state.append("read")
                    except MCPError as e:
                        read_state.append(str(e))
                return result

    return anyio.run(talk)


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.fixture
def places(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(server cwd, a project folder the client offers, another folder)."""
    cwd, project, other = tmp_path / "cwd", tmp_path / "project", tmp_path / "other"
    for folder in (cwd, project, other):
        folder.mkdir()
    yield cwd, project, other


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_client_roots_replace_the_working_directory(
    places: tuple[Path, Path, Path], mode: str
) -> None:
    cwd, project, other = places
    ok = _call_server(cwd, [], [project], pipeline_in(project / "p"), mode)
    assert not ok.is_error, _text(ok)
    refused = _call_server(cwd, [], [project], pipeline_in(cwd / "p"), mode)
    assert refused.is_error
    assert "outside the folders this server may use" in _text(refused)
    assert "the client's roots" in _text(refused) and "--root" in _text(refused)
    shadow = _call_server(cwd, [], [project], Path("/etc/shadow"), mode)
    assert shadow.is_error and "the config file /etc/shadow is outside" in _text(shadow)
    assert not (other / "p").exists()


@pytest.mark.slow
def test_an_explicit_root_is_not_widened_by_the_client(places: tuple[Path, Path, Path]) -> None:
    cwd, project, other = places
    outcome: list[str] = []
    config = pipeline_in(project / "p")
    refused = _call_server(cwd, ["--root", str(other)], [project], config, read_state=outcome)
    assert refused.is_error and f"{other} (from --root)" in _text(refused)
    assert "is outside the folders" in outcome[0]  # resources are confined as well
    ok = _call_server(cwd, ["--root", str(other)], [project], pipeline_in(other / "p"))
    assert not ok.is_error, _text(ok)
