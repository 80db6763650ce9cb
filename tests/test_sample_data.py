"""The sample source: deterministic, dirty in the documented ways, appendable, fast."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, append_rows, write_sample, write_sample_config
from cdp_mcp.core.config import load_config
from cdp_mcp.core.file_source import select_sql
from cdp_mcp.generate.schemas import predicted_schemas

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane


def read(path: Path) -> list[dict[str, object]]:
    """Rows as the `file` connector reads them (TD names and types)."""
    return [{k: v for k, v in r.items() if k != "_utc"} for r in read_timed(path)]


def read_timed(path: Path) -> list[dict[str, object]]:
    """Rows plus `_utc`: updated_at parsed to unix seconds (None when it does not parse)."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        select, _ = select_sql(path)
        cur = con.execute(
            f"SELECT *, epoch(TRY_CAST(updated_at AS TIMESTAMPTZ)) AS _utc FROM ({select})"
        )
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


START = 1693526400.0  # 2023-09-01T00:00:00Z


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_sample(tmp_path_factory.mktemp("sample"), rows=300)


@pytest.mark.slow
def test_writes_three_formats(sample: dict[str, Path]) -> None:
    assert {o: p.name for o, p in sample.items()} == {
        "orders": "orders.jsonl",
        "customers": "customers.csv",
        "products": "products.parquet",
    }
    assert len(read(sample["customers"])) > 300  # plus updates of existing ids


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = write_sample(tmp_path / "a", rows=80, seed=3)
    b = write_sample(tmp_path / "b", rows=80, seed=3)
    c = write_sample(tmp_path / "c", rows=80, seed=4)
    for obj in a:
        assert a[obj].read_bytes() == b[obj].read_bytes(), obj
        assert a[obj].read_bytes() != c[obj].read_bytes(), obj


def test_customers_are_dirty_in_the_documented_ways(sample: dict[str, Path]) -> None:
    header = sample["customers"].read_text().splitlines()[0]
    assert "firstName" in header and "acceptsMarketing" in header  # camelCase to snake_case
    rows = read(sample["customers"])
    emails = [str(r["email"]) for r in rows if r["email"] is not None]
    assert sum(e == "test@test.com" for e in emails) >= 3
    assert any(e != e.strip() for e in emails)
    assert any(e.strip() != e.strip().lower() and "@" in e for e in emails)
    phones = {str(r["phone"]) for r in rows if r["phone"]}
    assert any(p.startswith("+1 (555) ") for p in phones)
    assert any(p.count(".") == 2 for p in phones)
    assert any(len(p) == 11 and p.isdigit() and p.startswith("1") for p in phones)
    nullish = {v.strip() for r in rows for v in r.values() if isinstance(v, str)}
    assert {"N/A", "null", "NONE"} <= nullish
    assert ',"",' in sample["customers"].read_text()  # empty values
    ids = [r["id"] for r in rows]
    assert len(ids) > len(set(ids))  # updated records share an id


@pytest.mark.slow
def test_updated_records_are_newer(sample: dict[str, Path]) -> None:
    for obj, path in sample.items():
        versions: dict[object, list[float]] = {}
        for r in read_timed(path):
            assert isinstance(r["_utc"], float), (obj, r["updated_at"])
            versions.setdefault(r["id"], []).append(r["_utc"])
        repeated = [v for v in versions.values() if len(v) > 1]
        assert repeated, obj
        assert all(v[-1] > v[0] for v in repeated), obj


@pytest.mark.slow
def test_timestamps_come_in_three_iso_forms_and_some_precede_the_start(
    sample: dict[str, Path],
) -> None:
    stamps = [str(r["updated_at"]) for r in read(sample["orders"])]
    assert any(s.endswith("Z") and "T" in s for s in stamps)
    assert any(" " in s and "+" not in s for s in stamps)
    assert any(s.endswith("+02:00") and "." in s for s in stamps)
    for path in sample.values():
        assert any(float(r["_utc"]) < START for r in read_timed(path))  # type: ignore[arg-type]


@pytest.mark.slow
def test_append_rows_adds_newer_rows(tmp_path: Path) -> None:
    files = write_sample(tmp_path, rows=50)
    for obj, path in files.items():
        before = read_timed(path)
        newest = max(float(r["_utc"]) for r in before)  # type: ignore[arg-type]
        append_rows(tmp_path, obj, 10)
        after = read_timed(path)
        assert after[: len(before)] == before, obj  # existing rows untouched
        added = after[len(before) :]
        assert len(added) == 10, obj
        assert all(float(r["_utc"]) > newest for r in added), obj  # type: ignore[arg-type]
        old_ids = {r["id"] for r in before}
        assert any(r["id"] in old_ids for r in added) and any(
            r["id"] not in old_ids for r in added
        ), obj


@pytest.mark.slow
def test_sample_config_drives_generation(tmp_path: Path) -> None:
    write_sample(tmp_path / SAMPLE_FOLDER, rows=40)
    cfg = load_config(write_sample_config(tmp_path))
    assert (cfg.client, cfg.source, cfg.ingestion.connector) == ("acme", "shopify", "file")
    assert cfg.source_dir == (tmp_path / SAMPLE_FOLDER).resolve()
    assert "acme_src.shopify_customers_hist" in predicted_schemas(cfg)


@pytest.mark.slow
def test_scale_gives_the_rows_asked_for(tmp_path: Path) -> None:
    # How fast the sample is written is bench_e2e's business (it writes 1M-30M rows and
    # prints the time); a test asserts no clock.
    files = write_sample(tmp_path, rows=200_000)
    assert sum(1 for _ in files["customers"].open()) > 200_000
