"""Hostile configs and state files: each is refused with one clear message, quickly.

Every case here once ran for minutes, ate gigabytes, echoed a file that is not a config, or
ended in a traceback. The CLI cases run the real `cdp-mcp` command in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml

from cdp_mcp.core.config import MAX_UNKNOWN, NAME_MAX, ConfigError, load_config
from cdp_mcp.core.yaml_bounded import LOADERS, MAX_DEPTH, YamlInputError, load_bounded
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.state import StateError, StateStore
from tests.conftest import FIXTURES

BASE = {
    "global": {"client": "acme"},
    "ingestion": {"source_name": "shopify", "source_path": "./shopify", "objects": ["orders"]},
}


def alias_bomb(levels: int = 9) -> str:
    """The 'billion laughs': 9 levels of 9 aliases each, 1.5 KB of text, 9**9 strings."""
    lines = ["junk:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def with_base(extra: str = "", **sections: object) -> str:
    """BASE with `sections` merged in (a section that is not a mapping replaces BASE's)."""
    doc: dict[str, object] = {k: dict(v) for k, v in BASE.items()}
    for name, body in sections.items():
        current = doc.get(name)
        if isinstance(body, dict) and isinstance(current, dict):
            current.update(body)
        else:
            doc[name] = body
    return yaml.safe_dump(doc) + extra


def refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("CDP_MCP_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", "cdp_mcp.cli.main", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    return tmp_path


# -- YAML bounds -----------------------------------------------------------------------


def test_an_alias_bomb_is_refused_before_it_expands(folder: Path) -> None:
    text = with_base(alias_bomb())
    assert len(text) < 2000
    cfg = folder / "c.yml"
    cfg.write_text(text)
    err = refused(cfg)
    assert "aliases" in str(err) and "line " in str(err)
    assert "lol" not in str(err)


def test_aliases_within_the_budget_still_work(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(
        "global: {client: acme}\n"
        "ingestion:\n  source_name: shopify\n  source_path: ./shopify\n"
        "  objects: &objs [orders, customers]\n"
        "hist_union:\n  tables: [shopify_orders, shopify_customers]\n"
        "x_objects: *objs\n"
    )
    err = refused(cfg)  # aliases resolve: only the unknown section is a problem
    assert [p.path for p in err.problems] == ["x_objects"]


def test_a_structure_without_end_is_refused(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(with_base("loop: &a [1, *a]\n"))
    assert "without end" in str(refused(cfg))


def test_deep_nesting_is_refused_before_the_recursion_limit(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text("[" * 100 + "]" * 100 + "\n")
    assert f"more than {MAX_DEPTH} levels" in str(refused(cfg))
    cfg.write_text("[" * 5000 + "]" * 5000 + "\n")  # libyaml refuses this one itself
    assert "nest" in str(refused(cfg))


@pytest.mark.slow
def test_a_big_flat_file_is_refused_at_the_node_budget(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(with_base("junk: [" + ",".join(["1"] * 400_000) + "]\n"))
    assert "more than 100,000 values" in str(refused(cfg))


def test_a_big_file_is_refused_unread(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(with_base("# " + "x" * (2 * 1024 * 1024) + "\n"))
    assert "at most 1024 KiB" in str(refused(cfg))


def test_binary_and_non_utf8_files_are_named_not_decoded(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_bytes(b"global: {client: acme}\n\xff\xfe secret \x00")
    err = refused(cfg)
    assert "not UTF-8" in str(err) and "secret" not in str(err)
    cfg.write_text("global: {client: acme}\nx: \x01\n")
    assert "not allowed in YAML" in str(refused(cfg))


def test_unreadable_scalars_say_where(folder: Path) -> None:
    cfg = folder / "c.yml"
    text = with_base("when: 2023-13-45\n")
    cfg.write_text(text)
    assert f"line {text.count(chr(10))}, column 7" in str(refused(cfg))
    cfg.write_text(with_base("n: " + "9" * 5000 + "\n"))
    assert "cannot be read" in str(refused(cfg))


@pytest.mark.parametrize("parser", sorted(LOADERS))
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (alias_bomb(), "more than 100,000 values"),
        ("a: &a [1, *a]\n", "without end"),
        ("[" * 100 + "]" * 100, f"more than {MAX_DEPTH} levels"),
        ("global: {client: [acme\n", "not valid YAML at line 2"),
        ("x: \x01\n", "#x0001"),
        ("when: 2023-13-45\n", "line 1, column 7"),
        ("n: " + "9" * 5000 + "\n", "cannot be read"),
        ("a: *secret_alias_name_that_goes_on_and_on\n", "'secret_alias_name_that_g...'"),
    ],
    ids=["bomb", "loop", "deep", "syntax", "control", "bad-date", "huge-int", "alias-name"],
)
def test_both_yaml_parsers_refuse_alike(parser: str, text: str, needle: str) -> None:
    """libyaml (the default) and PyYAML's Python parser (PyYAML built without it)."""
    with pytest.raises(YamlInputError) as err:
        load_bounded(text.encode(), parser)
    assert needle in str(err.value), str(err.value)
    assert "on_and_on" not in str(err.value)


@pytest.mark.parametrize("parser", sorted(LOADERS))
def test_both_yaml_parsers_read_the_seed_config_alike(parser: str) -> None:
    data = (FIXTURES / "acme.yml").read_bytes()
    assert load_bounded(data, parser) == yaml.safe_load(data)


# -- files that are not configs --------------------------------------------------------

SHADOW = "".join(f"user{i}:$6$SECRETHASH{i}$abc:20228:0:99999:7:::\n" for i in range(27))


@pytest.mark.parametrize(
    "content",
    [SHADOW, "-----BEGIN PRIVATE KEY-----\nMIIEvSECRETHASH\n", "[SECRETHASH, 1]\n", ""],
    ids=["shadow", "pem", "list", "empty"],
)
def test_a_file_that_is_not_a_config_is_one_line_without_its_content(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "shadow"
    path.write_text(content)
    err = refused(path)
    assert len(err.problems) == 1 and err.problems[0].path == ""
    assert "not a cdp-mcp pipeline config" in str(err)
    assert "SECRETHASH" not in str(err) and "user1" not in str(err)
    assert "\n" not in str(err)


def test_unknown_keys_of_a_real_config_are_named_short_and_counted(folder: Path) -> None:
    junk = {f"k{i}_" + "s" * 500: 1 for i in range(30)}
    cfg = folder / "c.yml"
    cfg.write_text(with_base(**{"global": junk}))
    err = refused(cfg)
    named = [p for p in err.problems if p.path.startswith("global.")]
    assert len(named) == MAX_UNKNOWN
    assert all(len(p.path) <= len("global.") + 40 for p in named)
    assert f"{30 - MAX_UNKNOWN} more unknown fields" in str(err)
    assert len(str(err)) < 3000


@pytest.mark.slow
def test_long_values_are_quoted_short(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(with_base(ingestion={"mode": "x" * 100_000, "start_date": "y" * 100_000}))
    err = refused(cfg)
    assert {"ingestion.mode", "ingestion.start_date"} <= {p.path for p in err.problems}
    assert len(str(err)) < 1500


# -- names, paths, endpoints, dates ----------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "path", "needle"),
    [
        ({"global": {"client": "a" * 300}}, "global.client", f"at most {NAME_MAX}"),
        ({"ingestion": {"source_name": "s" * 250}}, "ingestion.source_name", "at most"),
        ({"ingestion": {"objects": ["o" * 100]}}, "ingestion.objects[0]", "at most"),
        ({"unification": {"name": "u" * 100}}, "unification.name", "at most"),
        ({"global": {"workspace": "./" + "w" * 300}}, "global.workspace", "255 bytes"),
        ({"global": {"workspace": "./a\0b"}}, "global.workspace", "NUL"),
        ({"ingestion": {"source_path": "x" * 5000}}, "ingestion.source_path", "4096"),
        ({"global": {"td_endpoint": "http://127.0.0.1:99999"}}, "global.td_endpoint", "port"),
        ({"ingestion": {"start_date": "0001-01-01"}}, "ingestion.start_date", "1970-01-01"),
        ({"ingestion": {"start_date": "1969-12-31T23:59:59Z"}}, "ingestion.start_date", "1970"),
        ({"global": {"client": "abc", "unknown": 1}}, "global.unknown", "unknown field"),
        ({"global": "abc"}, "global", "must be a mapping"),
        ({"global": [1, 2]}, "global", "must be a mapping"),
        ({"ingestion": {"objects": "orders"}}, "ingestion.objects", "must be a list"),
    ],
)
def test_out_of_bounds_values_name_their_field(
    folder: Path, sections: dict, path: str, needle: str
) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(with_base(**sections))
    found = {p.path: p.message for p in refused(cfg).problems}
    assert path in found, found
    assert needle in found[path]


def test_the_bounds_themselves_are_accepted(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(
        with_base(
            **{
                "global": {"client": "a" * NAME_MAX, "td_endpoint": "http://127.0.0.1:65535"},
                "ingestion": {"objects": ["o" * NAME_MAX], "start_date": "1970-01-01"},
            }
        )
    )
    loaded = load_config(cfg)
    assert loaded.client == "a" * NAME_MAX
    cfg.write_text(with_base(ingestion={"start_date": "9999-12-31"}))
    assert load_config(cfg).ingestion.start_date == "9999-12-31"


def test_a_workspace_that_is_a_file_is_named(folder: Path) -> None:
    cfg = folder / "c.yml"
    cfg.write_text(with_base(**{"global": {"workspace": "./c.yml"}}))
    found = {p.path: p.message for p in refused(cfg).problems}
    assert "is a file, not a folder" in found["global.workspace"]
    cfg.write_text(with_base(**{"global": {"workspace": "./c.yml/inner"}}))
    found = {p.path: p.message for p in refused(cfg).problems}
    assert "inside" in found["global.workspace"]


# -- state files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
        (b'{"kind": ' + b"9" * 5000 + b"}", "ValueError"),
    ],
    ids=["binary", "deep", "huge-int"],
)
def test_unreadable_state_files_name_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    store = StateStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.path.write_bytes(content)
    with pytest.raises(StateError) as err:
        store.load()
    assert str(store.path) in str(err.value) and needle in str(err.value)
    assert store.path.read_bytes() == content


def test_a_state_folder_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".cdp_state").write_text("not a folder")
    with pytest.raises(StateError, match="cannot be used"), StateStore(tmp_path).locked():
        pass


@pytest.mark.slow
def test_status_of_another_config_in_the_same_workspace_is_refused(folder: Path) -> None:
    acme, other = folder / "acme.yml", folder / "other.yml"
    acme.write_text(with_base())
    other.write_text(with_base(ingestion={"mode": "historical"}))
    anyio.run(Pipeline(acme).init)
    with pytest.raises(Exception, match=f"belongs to the pipeline of {acme}"):
        Pipeline(other).status()
    with pytest.raises(Exception, match="belongs to the pipeline of"):
        Pipeline(other).state()


# -- the real CLI ----------------------------------------------------------------------

CLI_CASES = {
    "global-text": ("global: abc\ningestion: {source_name: s, objects: [o]}\n", "global:"),
    "global-list": ("global: [1, 2]\ningestion: {source_name: s, objects: [o]}\n", "global:"),
    "long-client": (with_base(**{"global": {"client": "a" * 300}}), "global.client"),
    "long-source": (with_base(ingestion={"source_name": "s" * 250}), "ingestion.source_name"),
    "workspace-file": (with_base(**{"global": {"workspace": "./c.yml"}}), "global.workspace"),
    "deep": ("[" * 5000 + "]" * 5000, "nest"),
    "bad-port": (
        with_base(**{"global": {"td_endpoint": "http://127.0.0.1:99999"}}),
        "global.td_endpoint",
    ),
    "year-one": (with_base(ingestion={"start_date": "0001-01-01"}), "ingestion.start_date"),
    "alias-bomb": (with_base(alias_bomb()), "aliases"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_the_cli_answers_bad_configs_without_a_traceback(folder: Path, case: str) -> None:
    text, needle = CLI_CASES[case]
    (folder / "c.yml").write_text(text)
    done = cli("generate", "c.yml", "all", cwd=folder)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: config c.yml") and needle in done.stderr, done.stderr


@pytest.mark.slow
def test_the_cli_names_a_binary_state_file_and_the_owner_of_a_workspace(folder: Path) -> None:
    acme, other = folder / "acme.yml", folder / "other.yml"
    acme.write_text(with_base())
    other.write_text(with_base(ingestion={"mode": "historical"}))
    anyio.run(Pipeline(acme).init)
    done = cli("status", "other.yml", cwd=folder)
    assert done.returncode == 1
    assert f"belongs to the pipeline of {acme}" in done.stderr, done.stderr

    state = folder / "acme_cdp" / ".cdp_state" / "state.json"
    state.write_bytes(b"\x00\xff binary")
    done = cli("status", "acme.yml", cwd=folder)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert str(state) in done.stderr and "not UTF-8" in done.stderr, done.stderr
