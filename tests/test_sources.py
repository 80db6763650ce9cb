"""Reading source files: the column types a CSV gets must hold for every row of the file."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from cdp_mcp.core.file_source import read_schema, select_sql

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

SNIFF_ROWS = 30_000  # beyond DuckDB's sniff sample (20,480 rows)


def _csv(path: Path, late_line: str | None) -> Path:
    lines = ["id,amount,opted_in,updated_at"]
    lines += [f"{i},{i * 1.5},{'true' if i % 2 else 'false'},2024-01-01" for i in range(SNIFF_ROWS)]
    if late_line:
        lines.append(late_line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _types(path: Path) -> dict[str, str]:
    return {c.name: c.type for c in read_schema(path)}


def test_clean_csv_keeps_numbers_and_booleans_typed(tmp_path: Path) -> None:
    path = _csv(tmp_path / "clean.csv", None)
    assert _types(path) == {
        "id": "long",
        "amount": "double",
        "opted_in": "boolean",
        "updated_at": "string",
    }


def test_a_late_na_in_a_number_column_makes_it_text_and_the_file_loads(tmp_path: Path) -> None:
    path = _csv(tmp_path / "late.csv", f"{SNIFF_ROWS},N/A,maybe,2024-01-02")
    assert _types(path) == {
        "id": "long",
        "amount": "string",
        "opted_in": "string",
        "updated_at": "string",
    }
    select, _ = select_sql(path)
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT count(*), count(amount) FROM ({select})").fetchone()
        last = con.execute(f"SELECT amount, opted_in FROM ({select}) WHERE id = {SNIFF_ROWS}")
        assert rows == (SNIFF_ROWS + 1, SNIFF_ROWS + 1)
        assert last.fetchone() == ("N/A", "maybe")


def test_an_appended_late_value_is_seen_by_the_next_read(tmp_path: Path) -> None:
    path = _csv(tmp_path / "grows.csv", None)
    assert _types(path)["amount"] == "double"
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{SNIFF_ROWS},twelve,true,2024-01-03\n")
    assert _types(path)["amount"] == "string"


def _jsonl(path: Path, late: dict[str, object] | None) -> Path:
    rows = [{"id": i, "amount": i * 1.5, "tags": {"vip": i % 2 == 0}} for i in range(SNIFF_ROWS)]
    if late:
        rows.append(late)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_types_hold_for_a_late_value_beyond_the_sample(tmp_path: Path) -> None:
    clean = _jsonl(tmp_path / "clean.jsonl", None)
    assert _types(clean)["amount"] == "double"
    late = _jsonl(tmp_path / "late.jsonl", {"id": SNIFF_ROWS, "amount": "N/A", "tags": {}})
    assert _types(late)["amount"] == "string"
    select, _ = select_sql(late)
    with duckdb.connect() as con:
        got = con.execute(
            f"SELECT count(*), max(amount) FILTER (WHERE id = {SNIFF_ROWS}), "
            f"max(amount) FILTER (WHERE id = 3) FROM ({select})"
        )
        assert got.fetchone() == (SNIFF_ROWS + 1, "N/A", "4.5")  # text, numbers as written


def test_a_jsonl_field_that_first_appears_late_is_kept(tmp_path: Path) -> None:
    late = {"id": SNIFF_ROWS, "amount": 1.0, "tags": {}, "loyalty_tier": "gold"}
    path = _jsonl(tmp_path / "late_field.jsonl", late)
    assert _types(path)["loyalty_tier"] == "string"
    select, _ = select_sql(path)
    with duckdb.connect() as con:
        got = con.execute(
            f"SELECT count(*), count(loyalty_tier), max(loyalty_tier) FROM ({select})"
        )
        assert got.fetchone() == (SNIFF_ROWS + 1, 1, "gold")


def test_nested_jsonl_values_load_as_their_json_text(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    rows = [
        {"id": 1, "line_items": [{"sku": "A-1", "qty": 2}], "shipping": {"city": "Köln"}},
        {"id": 2, "line_items": [], "shipping": None},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert _types(path) == {"id": "long", "line_items": "string", "shipping": "string"}
    select, _ = select_sql(path)
    with duckdb.connect() as con:
        got = con.execute(f"SELECT line_items, shipping FROM ({select}) ORDER BY id").fetchall()
    assert [json.loads(v) if v else v for v in got[0]] == [
        rows[0]["line_items"],
        rows[0]["shipping"],
    ]
    assert got[1] == ("[]", None)
