"""The local warehouse's DuckDB gets its memory and threads from the machine, or from the
documented overrides, and spills inside the workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdp_mcp.backends.base import BackendError
from cdp_mcp.backends.local import LocalBackend, resources
from cdp_mcp.backends.local.resources import MEMORY_ENV, THREADS_ENV, ResourceSettingError
from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, write_sample, write_sample_config
from cdp_mcp.cli.main import main as cli_main

MIB = 1024**2


def settings(runtime: LocalRuntime) -> tuple[str, int, str]:
    with runtime.warehouse.cursor() as cur:
        row = cur.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'),"
            " current_setting('temp_directory')"
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), str(row[2])


def mib_text(n_bytes: int) -> str:
    """How DuckDB shows a memory_limit given in whole MiB."""
    mib = n_bytes // MIB
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.1f} MiB"


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    monkeypatch.delenv(THREADS_ENV, raising=False)


def test_defaults_come_from_the_machine_and_are_honoured(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    memory, threads, spill = settings(runtime)
    machine = resources.machine_memory()
    expected = min(machine // 4, 2048 * MIB)
    assert memory == mib_text(expected)  # not DuckDB's 80% of RAM
    assert threads == len(os.sched_getaffinity(0))
    assert Path(spill) == runtime.home / "duckdb_spill"


def test_overrides_apply_to_writer_and_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MEMORY_ENV, "300MiB")
    monkeypatch.setenv(THREADS_ENV, "1")
    runtime = LocalRuntime(tmp_path)
    assert settings(runtime)[:2] == ("300.0 MiB", 1)
    with runtime.warehouse.cursor() as cur:
        cur.execute("CREATE SCHEMA db")
    with runtime.warehouse.reader("db") as cur:  # the `query` tool's read-only instance
        row = cur.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        ).fetchone()
    assert row == ("300.0 MiB", 1)


def test_a_sort_larger_than_the_limit_spills_and_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MEMORY_ENV, "128MiB")
    runtime = LocalRuntime(tmp_path)
    with runtime.warehouse.cursor() as cur:
        cur.execute(
            "CREATE TABLE t AS SELECT i, md5(i::VARCHAR) || md5((i + 1)::VARCHAR) AS s"
            " FROM range(3000000) r(i) ORDER BY s"
        )
        row = cur.execute("SELECT count(*), max(i) FROM t").fetchone()
        # ~200 MB of text cannot sort in 128 MiB: DuckDB made its spill folder here (and
        # removes it when the warehouse closes).
        spilled = (runtime.home / "duckdb_spill").is_dir()
    assert row == (3000000, 2999999)
    assert spilled


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (MEMORY_ENV, "lots", "is not a size"),
        (MEMORY_ENV, "2 parsecs", "is not a size"),
        (MEMORY_ENV, "10MB", "below the 128MiB"),
        (MEMORY_ENV, "900TB", "exceeds this machine"),
        (THREADS_ENV, "0", "whole number of threads"),
        (THREADS_ENV, "two", "whole number of threads"),
        (THREADS_ENV, "-1", "whole number of threads"),
    ],
)
def test_an_unusable_override_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ResourceSettingError) as caught:
        LocalBackend(tmp_path)  # what `cdp-mcp run` and the server build first
    assert isinstance(caught.value, BackendError)  # the CLI and MCP tools report it as text
    assert f"{variable}={value!r}" in str(caught.value)
    assert says in str(caught.value)
    assert not (tmp_path / ".cdp_local").exists()  # refused before anything was written


def test_sizes_read_as_duckdb_reads_them() -> None:
    assert resources.parse_size("2GB") == 2 * 1000**3
    assert resources.parse_size("1536MiB") == 1536 * MIB
    assert resources.parse_size("1.5 GiB") == 1536 * MIB
    assert resources.parse_size("268435456") == 256 * MIB


def test_a_cgroup_limit_narrows_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = tmp_path / "memory.max"
    monkeypatch.setattr(resources, "_CGROUP_FILES", (limit,))
    limit.write_text("2147483648\n")  # a 2 GiB container
    assert resources.machine_memory() == 2 * 1024**3
    assert resources.resources({}).memory_limit == 512 * MIB
    limit.write_text("max\n")  # no limit: the machine's RAM
    assert resources.machine_memory() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_cdp_mcp_run_refuses_an_unusable_override_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sample(tmp_path / SAMPLE_FOLDER, rows=50)
    config = write_sample_config(tmp_path)
    monkeypatch.setenv(MEMORY_ENV, "lots")
    assert cli_main(["run", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"error: {MEMORY_ENV}='lots' is not a size; give e.g. 2GB or 1536MiB" in err
    assert "internal error" not in err and "Traceback" not in err
