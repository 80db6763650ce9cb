"""What is learned about a source file is kept per version across runs, and an appended file
is learned from its new rows only: the answers must be those of a reading from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp_mcp.cli.demo_data import append_rows, write_sample, write_sample_config
from cdp_mcp.core import source_memory
from cdp_mcp.core.config import load_config
from cdp_mcp.core.file_source import (
    SourceError,
    _cached_description,
    _cached_json_keys,
    read_schema,
)
from cdp_mcp.core.source_counts import Counting, rule_of
from cdp_mcp.core.text_source import readable
from cdp_mcp.generate.schemas import _cached_shapes, predicted_schemas, source_columns
from cdp_mcp.pipeline.source_flow import source_rows

ROWS = 30_000  # beyond DuckDB's sniff sample (20,480 rows)


def _new_process(monkeypatch: pytest.MonkeyPatch, memory: Path | None = None) -> None:
    """What a new `cdp-mcp` process starts with: no in-process caches (and, given
    `memory`, another folder of kept facts: a reading from scratch)."""
    _cached_description.cache_clear()
    _cached_json_keys.cache_clear()
    _cached_shapes.cache_clear()
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


def _config_over(tmp_path: Path, files: dict[str, str]) -> Path:
    """A one-source config over `files` (object -> its file's text) in tmp_path/src."""
    src = tmp_path / "src"
    src.mkdir()
    for name, text in files.items():
        (src / name).write_text(text, encoding="utf-8")
    objects = ", ".join(Path(n).stem for n in files)
    config = tmp_path / "p.yml"
    config.write_text(
        "global: {client: acme, backend: local}\n"
        f"ingestion: {{source_name: s, connector: file, source_path: ./src, objects: [{objects}],"
        " incremental_field: updated_at, start_date: '2020-01-01T00:00:00Z'}\n",
        encoding="utf-8",
    )
    return config


def _columns(cfg_path: Path, monkeypatch: pytest.MonkeyPatch, memory: Path | None = None) -> dict:
    """source_columns as a new process with the kept facts of `memory` (None: the current
    ones) sees them, as plain data."""
    _new_process(monkeypatch, memory)
    cfg = load_config(cfg_path)
    return {o: [c.model_dump() for c in cols] for o, cols in source_columns(cfg).items()}


def test_the_shapes_and_json_keys_of_an_appended_file_equal_a_reading_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short file's first rows are not all its sample: rows appended to it change a
    column's shape (emails, then phones) and make a column JSON (empty, then objects)."""
    lines = [f"{i},e{i}@mail.com,,2024-01-01" for i in range(5)]
    config = _config_over(
        tmp_path, {"t.csv": "id,contact,attrs,updated_at\n" + "\n".join(lines) + "\n"}
    )
    monkeypatch.setenv(source_memory.CACHE_ENV, str(tmp_path / "kept"))
    first = {c["name"]: c for c in _columns(config, monkeypatch)["t"]}
    assert first["contact"]["shape"] == "email" and not first["attrs"]["json_keys"]
    more = [f'{i},+1 555 010 {i:04d},"{{""tier"": ""gold""}}",2024-01-02' for i in range(5, 60)]
    _append(tmp_path / "src" / "t.csv", "\n".join(more) + "\n")
    assert source_memory.appended(tmp_path / "src" / "t.csv") is not None
    again = _columns(config, monkeypatch)
    assert again == _columns(config, monkeypatch, tmp_path / "from-scratch")
    by_name = {c["name"]: c for c in again["t"]}
    assert by_name["contact"]["shape"] == "phone"
    assert list(by_name["attrs"]["json_keys"]) == ["tier"]


def test_a_changed_first_row_is_seen_though_the_file_only_grew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full sample's shapes are kept over an append only while its rows are the file's
    first: a rewrite of them (same length, then rows appended) is read anew."""
    n = 1500  # more than the shapes' and JSON keys' samples
    lines = [f"{i},e{i:05d}@mail.com,2024-01-01" for i in range(n)]
    config = _config_over(tmp_path, {"t.csv": "id,contact,updated_at\n" + "\n".join(lines) + "\n"})
    monkeypatch.setenv(source_memory.CACHE_ENV, str(tmp_path / "kept"))
    assert {c["name"]: c for c in _columns(config, monkeypatch)["t"]}["contact"]["shape"] == "email"
    path = tmp_path / "src" / "t.csv"
    # the first 1000 contacts become phone numbers of the same length, and a row is appended
    text = path.read_text(encoding="utf-8")
    for i in range(1000):
        text = text.replace(f"\n{i},e{i:05d}@mail.com,", f"\n{i},+1555{i:010d},", 1)
    path.write_text(text + f"{n},e{n:05d}@mail.com,2024-01-02\n", encoding="utf-8")
    assert source_memory.appended(path) is None
    again = _columns(config, monkeypatch)
    assert {c["name"]: c for c in again["t"]}["contact"]["shape"] == "phone"
    assert again == _columns(config, monkeypatch, tmp_path / "from-scratch")


def test_a_bad_value_or_a_new_field_in_rows_appended_to_a_jsonl_file_is_not_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f'{{"id": {i}, "amount": {i}.5, "updated_at": "2024-01-01"}}' for i in range(ROWS)]
    path = tmp_path / "grows.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert _types(path) == {"id": "long", "amount": "double", "updated_at": "string"}
    _new_process(monkeypatch)
    _append(path, f'{{"id": {ROWS}, "amount": "n/a", "updated_at": "2024-01-02"}}\n')
    assert source_memory.appended(path) is not None
    assert _types(path)["amount"] == "string"
    _new_process(monkeypatch)
    _append(path, f'{{"id": {ROWS + 1}, "amount": 1.5, "updated_at": "x", "coupon": "A"}}\n')
    assert source_memory.appended(path) is not None
    assert _types(path) == {
        "id": "long",
        "amount": "string",
        "updated_at": "string",
        "coupon": "string",
    }
    _new_process(monkeypatch, tmp_path / "from-scratch")
    assert _types(path)["coupon"] == "string"


def test_the_sample_s_schemas_after_an_append_equal_a_reading_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every column, type, shape and JSON key generation predicts, over the sample (more
    rows than the shapes' sample) as written and appended to, as a new process sees it."""
    write_sample(tmp_path / "shopify", rows=3000)
    config = write_sample_config(tmp_path)
    monkeypatch.setenv(source_memory.CACHE_ENV, str(tmp_path / "kept"))
    first = _columns(config, monkeypatch)
    assert first == _columns(config, monkeypatch)  # the same version: all kept
    for obj in ("customers", "orders", "products"):
        append_rows(tmp_path / "shopify", obj, 60)
    again = _columns(config, monkeypatch)
    assert again == _columns(config, monkeypatch, tmp_path / "from-scratch")
    assert any(c.get("shape") for cols in again.values() for c in cols)


@pytest.mark.parametrize(
    ("objects", "error"),
    [
        ("orders, customers, products", r"cannot read .*orders\.jsonl"),
        ("customers, orders, products", r"customers\.csv is not UTF-8"),
        ("products, customers, orders", r"no file for object 'products'"),
        ("customers, products, orders", r"customers\.csv is not UTF-8"),
    ],
)
def test_of_several_files_with_problems_the_first_object_s_error_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, objects: str, error: str
) -> None:
    """The files are learned side by side, yet the error is the one a reading in the
    config's order meets first: orders.jsonl breaks after DuckDB's sniff sample (found
    late), customers.csv in its first row (found at once), products.parquet is missing."""
    write_sample(tmp_path / "shopify", rows=ROWS)
    folder = tmp_path / "shopify"
    with (folder / "orders.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": 1, "customer_email": \n')
    customers = folder / "customers.csv"
    lines = customers.read_bytes().split(b"\n")
    customers.write_bytes(b"\n".join([lines[0], lines[1] + b"\xff", *lines[2:]]))
    (folder / "products.parquet").unlink()
    config = write_sample_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            "objects: [orders, customers, products]", f"objects: [{objects}]"
        )
    )
    _new_process(monkeypatch)
    with pytest.raises(SourceError, match=error):
        source_columns(load_config(config))


def test_tails_a_signalled_process_left_are_removed_by_the_next_one(tmp_path: Path) -> None:
    """A process ended by SIGTERM runs no atexit, so its copies of appended rows stay; the
    next process to make a tails folder removes them, and never a running process's."""
    import os
    import signal
    import subprocess
    import sys

    from cdp_mcp.core.source_memory import TAILS_PREFIX, sweep_tails

    child = (
        "import os, signal\n"
        "from cdp_mcp.core import source_memory\n"
        "d = source_memory._tail_dir(); (d / 'rows.csv').write_text('a@x.com\\n')\n"
        "print(d, flush=True); os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGTERM
    left = Path(done.stdout.strip())
    assert left.parent == tmp_path and (left / "rows.csv").is_file()  # atexit did not run

    mine = tmp_path / f"{TAILS_PREFIX}{os.getpid()}-live"  # a running process's: kept
    mine.mkdir()
    other = tmp_path / f"{TAILS_PREFIX}old_format"  # not ours to judge: kept
    other.mkdir()
    assert sweep_tails(tmp_path) == [left]
    assert not left.exists() and mine.is_dir() and other.is_dir()
