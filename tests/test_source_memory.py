"""What is learned about a source file is kept per version across runs, and an appended file
is learned from its new rows only: the answers must be those of a reading from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp_mcp.cli.demo_data import append_rows, write_sample, write_sample_config
from cdp_mcp.core import source_memory
from cdp_mcp.core.config import load_config
from cdp_mcp.core.file_source import _cached_description, _cached_json_keys, read_schema
from cdp_mcp.core.source_counts import Counting, rule_of
from cdp_mcp.core.text_source import readable
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.source_flow import source_rows

ROWS = 30_000  # beyond DuckDB's sniff sample (20,480 rows)


def _new_process(monkeypatch: pytest.MonkeyPatch, memory: Path | None = None) -> None:
    """What a new `cdp-mcp` process starts with: no in-process caches (and, given
    `memory`, another folder of kept facts: a reading from scratch)."""
    _cached_description.cache_clear()
    _cached_json_keys.cache_clear()
    source_memory._appended.cache_clear()
    if memory is not None:
        monkeypatch.setenv(source_memory.CACHE_ENV, str(memory))


def _csv(path: Path, rows: range, end: str = "\n") -> Path:
    lines = [f"{i},{i * 1.5},2024-01-01" for i in rows]
    path.write_text("id,amount,updated_at\n" + "\n".join(lines) + end, encoding="utf-8")
    return path


def _types(path: Path) -> dict[str, str]:
    return {c.name: c.type for c in read_schema(path)}


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as f:
        f.write(text)


def test_an_appended_file_is_recognised_and_its_tail_proves_the_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path / "grows.csv", range(ROWS))
    assert _types(path) == {"id": "long", "amount": "double", "updated_at": "string"}
    _new_process(monkeypatch)
    _append(path, f"{ROWS},7.5,2024-01-02\n")
    tail = source_memory.appended(path)
    assert tail is not None and tail.raw.read_text() == f"{ROWS},7.5,2024-01-02\n"
    assert _types(path) == {"id": "long", "amount": "double", "updated_at": "string"}
    # a late text in a number column, in the next appended rows: the column becomes text
    _new_process(monkeypatch)
    _append(path, f"{ROWS + 1},N/A,2024-01-03\n")
    assert _types(path)["amount"] == "string"


def test_an_edit_before_the_appended_rows_is_learned_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path / "edited.csv", range(ROWS))
    assert _types(path)["amount"] == "double"
    _new_process(monkeypatch)
    # row 25,000 gets a text amount of the same length, and a row is appended: the file
    # grew, but its first bytes are no longer the version learned
    text = path.read_text(encoding="utf-8").replace("\n25000,37500.0,", "\n25000,n/a37500,")
    path.write_text(text + f"{ROWS},1.5,2024-01-02\n", encoding="utf-8")
    assert source_memory.appended(path) is None
    assert _types(path)["amount"] == "string"


def test_a_file_whose_last_row_was_cut_is_no_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path / "cut.csv", range(100), end="")
    _types(path)
    _new_process(monkeypatch)
    _append(path, "1,2024-01-02\n")  # continues the last row
    assert source_memory.appended(path) is None


def test_crlf_rows_appended_to_an_lf_file_are_read_through_a_staged_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path / "mixed.csv", range(100))
    assert readable(path) == path
    _new_process(monkeypatch)
    _append(path, "100,1.5,2024-01-02\r\n101,1.5,2024-01-02\r\n")
    assert source_memory.appended(path) is not None
    staged = readable(path)
    assert staged != path  # mixed line ends: as a reading from scratch decides
    assert b"\r" not in staged.read_bytes()


def test_source_rows_of_appended_files_equal_a_count_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sample(tmp_path / "shopify", rows=3000)
    cfg = load_config(write_sample_config(tmp_path))
    first = source_rows(cfg)
    for obj in ("customers", "orders", "products"):
        append_rows(tmp_path / "shopify", obj, 60)
    # an unparseable updated_at in the appended rows of one file
    _append(tmp_path / "shopify" / "customers.csv", "999999,A,B,a@b.c,,true,X,,not a time\n")
    _new_process(monkeypatch)
    for name in ("customers.csv", "orders.jsonl"):
        assert source_memory.appended(tmp_path / "shopify" / name) is not None
    again = source_rows(cfg)
    _new_process(monkeypatch, tmp_path / "from-scratch")
    scratch = source_rows(cfg)
    assert again == scratch
    assert again["orders"].source_rows == first["orders"].source_rows + 60
    assert again["customers"].unparseable_time == first["customers"].unparseable_time + 1
    assert "not a time" in again["customers"].unparseable_samples


def test_an_incremental_load_reads_the_appended_rows_only_when_no_older_row_is_in_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from cdp_mcp.core.file_source import rows_after_only, select_sql
    from cdp_mcp.core.timeparse import parsed_timestamp_sql

    write_sample(tmp_path / "shopify", rows=2000)
    cfg = load_config(write_sample_config(tmp_path))
    source_rows(cfg)  # what a validation counts: the latest updated_at too
    path = tmp_path / "shopify" / "customers.csv"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        select, columns = select_sql(path)
        parsed = parsed_timestamp_sql('"updated_at"', "string")  # as the loads parse it
        (latest,) = con.execute(
            f"SELECT strftime(max({parsed}), '%Y-%m-%dT%H:%M:%S.%fZ') FROM ({select})"
        ).fetchone()
        append_rows(tmp_path / "shopify", "customers", 50)
        _new_process(monkeypatch)
        columns = select_sql(path)[1]
        # the watermark is the latest time loaded: no older row is after it
        tail = rows_after_only(con, path, columns, "updated_at", latest, inclusive=False)
        assert tail is not None
        (n,) = con.execute(
            f"SELECT count(*) FROM ({select_sql(path, read_from=tail.readable())[0]})"
        ).fetchone()
        assert n == 50
        # at the watermark inclusive, or from an earlier time, older rows are in range
        assert rows_after_only(con, path, columns, "updated_at", latest, inclusive=True) is None
        assert (
            rows_after_only(con, path, columns, "updated_at", "2024-01-01", inclusive=True) is None
        )


def test_generation_counts_the_rows_on_its_way_and_the_validation_reports_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read proving the types counts each file's rows for the config; the validation's
    counts are then those of a count from scratch, for the file as written, appended to,
    and appended to with an unparseable time (whose sample only a read finds)."""
    write_sample(tmp_path / "shopify", rows=3000)
    cfg = load_config(write_sample_config(tmp_path))

    def kept_after_generation(name: str) -> bool:
        path = tmp_path / "shopify" / name
        counting = Counting.of(rule_of(cfg), read_schema(path))
        assert counting is not None
        return counting.recall(path, source_memory.Version.of(path)) is not None

    def validation_equals_a_count_from_scratch(run: int) -> None:
        counted = source_rows(cfg)
        _new_process(monkeypatch, tmp_path / f"from-scratch-{run}")
        assert counted == source_rows(cfg)
        monkeypatch.setenv(source_memory.CACHE_ENV, str(tmp_path / "kept"))

    monkeypatch.setenv(source_memory.CACHE_ENV, str(tmp_path / "kept"))
    predicted_schemas(cfg)  # generation
    assert kept_after_generation("customers.csv") and kept_after_generation("orders.jsonl")
    validation_equals_a_count_from_scratch(1)

    _new_process(monkeypatch)
    for obj in ("customers", "orders"):
        append_rows(tmp_path / "shopify", obj, 40)
    predicted_schemas(cfg)  # the new rows prove the types, and are counted
    assert kept_after_generation("customers.csv") and kept_after_generation("orders.jsonl")
    validation_equals_a_count_from_scratch(2)

    _new_process(monkeypatch)
    _append(tmp_path / "shopify" / "customers.csv", "999999,A,B,a@b.c,,true,X,,not a time\n")
    predicted_schemas(cfg)
    assert not kept_after_generation("customers.csv")  # the sample needs the validation's read
    assert "not a time" in source_rows(cfg)["customers"].unparseable_samples
    validation_equals_a_count_from_scratch(3)
