"""Source files as people save them: Excel's cp1252, a BOM with CRLF, `;` between fields,
lines ending partly in CRLF and partly in LF. Each goes through the real pipeline (local
runner, DuckDB) or TD's upload path (the emulator on 127.0.0.1)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest
import yaml

from cdp_mcp.cli.demo_data import write_sample
from cdp_mcp.core.config import ConfigError, load_config
from cdp_mcp.core.file_source import SourceError, select_sql
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.pipeline.file_upload import upload_problems, upload_ranges
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import SENTINEL_KEY
from tests.test_td_file_upload import LATER, run_ingestion, write_config

ROW = 527  # the file line of the row Excel wrote in cp1252 (the header is line 1)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)


def customers_rows(root: Path) -> list[list[str]]:
    write_sample(root / "shopify", rows=600)
    with (root / "shopify" / "customers.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def as_csv(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return out.getvalue()


def excel_customers(root: Path) -> str:
    """customers.csv as Excel on Windows saves it: cp1252, CRLF, one `José Müller, Köln`."""
    rows = customers_rows(root)
    header = rows[0]
    row = rows[ROW - 1]
    row[header.index("firstName")], row[header.index("lastName")] = "José", "Müller"
    row[header.index("city")] = "Köln"
    path = root / "shopify" / "customers.csv"
    path.write_bytes(as_csv(rows, newline="\r\n").encode("cp1252"))
    return row[0]


def with_encoding(config: Path, obj: str, encoding: str) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["ingestion"]["object_settings"] = {obj: {"encoding": encoding}}
    config.write_text(yaml.safe_dump(raw))


async def customer(p: Pipeline, customer_id: str, where: str = "") -> list[list[Any]]:
    got = await p.query(
        "SELECT DISTINCT first_name, last_name, city FROM shopify_customers_hist "
        f"WHERE id = {int(customer_id)} {where}"
    )
    return [list(r) for r in got.rows]


@pytest.mark.slow
def test_a_cp1252_file_is_named_with_its_line_and_loads_once_its_encoding_is_set(
    tmp_path: Path,
) -> None:
    customer_id = excel_customers(tmp_path)
    config = write_config(tmp_path, "local")

    with pytest.raises(PipelineError) as refused:  # init reads the files before anything runs
        anyio.run(Pipeline(config).init)
    message = str(refused.value)
    assert "customers.csv is not UTF-8" in message
    assert f"line {ROW}, byte " in message and "José,Müller" in message
    assert "cp1252" in message and "ingestion.object_settings.customers.encoding" in message
    assert "ignore_errors" not in message and "Possible Solution" not in message

    with_encoding(config, "customers", "cp1252")

    async def loaded() -> list[list[Any]]:
        p, _ = await run_ingestion(config)
        return await customer(p, customer_id, "AND city = 'Köln'")

    assert anyio.run(loaded) == [["José", "Müller", "Köln"]]
    # The source file itself is left as it was.
    assert "Köln".encode("cp1252") in (tmp_path / "shopify" / "customers.csv").read_bytes()


@pytest.mark.slow
def test_lines_ending_partly_in_crlf_and_partly_in_lf_load_every_row(tmp_path: Path) -> None:
    mixed_root, lf_root = tmp_path / "mixed", tmp_path / "lf"
    rows = customers_rows(mixed_root)
    customers_rows(lf_root)  # the same sample (same seed), saved with LF only
    # An extract written with CRLF, to which a second tool appended with LF.
    text = as_csv(rows[:300], newline="\r\n") + as_csv(rows[300:], newline="\n")
    path = mixed_root / "shopify" / "customers.csv"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(duckdb.Error, match="sniffing"):  # what DuckDB alone makes of it
        duckdb.sql(f"SELECT count(*) FROM read_csv('{path}')").fetchall()

    async def loaded(root: Path) -> list[Any]:
        p, _ = await run_ingestion(write_config(root, "local"))
        got = await p.query(
            "SELECT (SELECT count(*) FROM shopify_customers_hist), "
            "(SELECT count(*) FROM shopify_customers), "
            "(SELECT max(city) FROM shopify_customers_hist)"
        )
        return list(got.rows[0])

    mixed, lf = anyio.run(loaded, mixed_root), anyio.run(loaded, lf_root)
    assert mixed == lf and mixed[0] > 0


@pytest.mark.slow
def test_a_bom_with_crlf_and_semicolons_already_load(tmp_path: Path) -> None:
    """What the current code already handles (a guard that it stays so)."""
    rows = customers_rows(tmp_path)
    path = tmp_path / "shopify" / "customers.csv"
    path.write_bytes(b"\xef\xbb\xbf" + as_csv(rows, delimiter=";", newline="\r\n").encode())
    columns = [c.name for c in select_sql(path)[1]]
    assert columns[:3] == ["id", "first_name", "last_name"]
    config = write_config(tmp_path, "local")

    async def loaded() -> list[list[Any]]:
        p, _ = await run_ingestion(config)
        return await customer(p, rows[1][0])

    header = rows[0]
    got = anyio.run(loaded)
    assert [rows[1][header.index(c)] for c in ("firstName", "lastName", "city")] in got


def test_the_encoding_is_one_of_a_closed_list_and_only_for_known_objects(tmp_path: Path) -> None:
    write_sample(tmp_path / "shopify", rows=20)
    config = write_config(tmp_path, "local")
    with_encoding(config, "customers", "Windows-1252")
    assert load_config(config).ingestion.encoding_of("customers") == "cp1252"
    with_encoding(config, "customers", "ebcdic")
    with pytest.raises(ConfigError, match=r"object_settings\.customers\.encoding.*utf-8, utf-16"):
        load_config(config)
    with_encoding(config, "shoppers", "utf-8")
    with pytest.raises(ConfigError, match=r"object_settings\.shoppers.*not in `objects`"):
        load_config(config)
    raw = yaml.safe_load(config.read_text())
    raw["ingestion"]["object_settings"] = {"customers": {"delimiter": ";"}}
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="takes only `encoding`"):
        load_config(config)


def test_a_wrong_encoding_says_where_it_does_not_decode(tmp_path: Path) -> None:
    excel_customers(tmp_path)
    with pytest.raises(SourceError, match=r"is not utf-16: line 1, byte 0"):
        select_sql(tmp_path / "shopify" / "customers.csv", encoding="utf-16")


@pytest.mark.slow
def test_the_td_upload_reads_the_file_in_its_encoding(tmp_path: Path) -> None:
    customer_id = excel_customers(tmp_path)
    with BackgroundServer(create_app(tmp_path / "td_site", SENTINEL_KEY)) as server:
        config = write_config(tmp_path, "treasuredata", server.url)
        refused = upload_problems(load_config(config))
        assert any(f"customers.csv is not UTF-8: line {ROW}" in p for p in refused), refused
        with_encoding(config, "customers", "cp1252")
        assert upload_problems(load_config(config)) == []

        async def uploaded() -> list[Any]:
            p = Pipeline(config)
            await p.init()
            await p.generate_phase("ingestion")
            await p.push_project("ingestion")
            await upload_ranges(p.cfg, p.backend, "shopify_ingest_hist", LATER)
            got = await p.backend.query(
                "SELECT first_name, last_name, city FROM shopify_customers_hist_landing "
                f"WHERE id = {int(customer_id)}",
                p.cfg.src_db,
            )
            await p.aclose()
            return got.rows[0]

        assert anyio.run(uploaded) == ["José", "Müller", "Köln"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 1 << 20])
def test_the_scan_finds_the_same_line_and_byte_whatever_the_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Characters and CRLFs cut in two by the read size change nothing."""
    from cdp_mcp.core import text_source

    monkeypatch.setattr(text_source, "_CHUNK", chunk)
    good = "id,name\r\n1,Zoë 日本\r\n2,Åsa\n".encode()
    path = tmp_path / "t.csv"
    path.write_bytes(good)
    staged = text_source.readable(path)  # mixed line ends: read through a staged copy
    assert staged != path and staged.read_text(encoding="utf-8") == "id,name\n1,Zoë 日本\n2,Åsa\n"
    bad = good + b"3,Jos" + "é".encode("cp1252") + b"\n"
    path.write_bytes(bad)
    with pytest.raises(text_source.TextSourceError) as e:
        text_source.readable(path)
    assert f"line 4, byte {len(good) + 5} (0xe9)" in str(e.value)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 1 << 20])
def test_mixed_line_ends_are_told_whatever_the_chunks_and_across_an_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Chunks without a CR are not counted line by line; the verdict (and the verdict on a
    file's counts added to an appended tail's, as the kept facts are) is still exact."""
    from cdp_mcp.core import text_source

    monkeypatch.setattr(text_source, "_CHUNK", chunk)
    parts = ["", "a\n", "a\nb\n", "a\r\n", "a\r\nb\r\n", "a\r\nb\n", "a\nb\r\n", "ab\r", "\nc\n"]
    path = tmp_path / "t.csv"
    for head in parts:
        for tail in parts:
            whole = (head + tail).encode()
            bare_lf = whole.replace(b"\r\n", b"").count(b"\n") > 0
            expected = b"\r\n" in whole and bare_lf
            path.write_bytes(whole)
            assert text_source._scan(path).mixed_line_ends is expected, (head, tail)
            if head.endswith("\r"):
                continue  # a CRLF cut by the append: source_memory refuses such a prefix
            path.write_bytes(head.encode())
            first = text_source._scan(path)
            path.write_bytes(tail.encode())
            second = text_source._scan(path)
            crlf, lf = first.crlf + second.crlf, first.lf + second.lf
            assert (0 < crlf < lf) is expected, (head, tail)
