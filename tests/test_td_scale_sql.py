"""TD-scale SQL: every DELETE and every scan of a loaded table is bounded on `time`.

TD partitions tables on `time` (one-hour partitions) and advises a TD_TIME_RANGE /
TD_INTERVAL predicate on every DELETE (a DELETE touching more than 500k partitions fails;
docs.treasuredata.com "DELETE Statement Syntax"), and on scans so a query reads only the
partitions it needs. A load must not rewrite or read every partition of a growing table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from cdp_mcp.cli.demo_data import append_rows
from cdp_mcp.core.phases import INC_LOG, INGESTION_LOG
from cdp_mcp.generate import hist_union, ingestion
from cdp_mcp.generate.schemas import predicted_schemas
from tests.test_generate_ingestion import Emulator, make_config

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

LOG_TABLES = {INGESTION_LOG, INC_LOG}


def _sample(expr: str) -> str:
    """A value for a ${...} of the generated SQL (numbers where a time goes)."""
    name = expr.rsplit(".", 1)[-1]
    if name in ("loaded_after",) or name.endswith(("_from", "_to", "_scan_start", "_scan_end")):
        return "1700000000"
    if name in ("range_end",):
        return ""
    return "x"


def _parsed(sql: str) -> exp.Expression:
    text = re.sub(r"\$\{([^}]*)\}", lambda m: _sample(m.group(1)), sql)
    tree = sqlglot.parse_one(text, read="presto")
    assert tree is not None
    return tree


def _conjuncts(where: exp.Expression | None) -> list[exp.Expression]:
    if where is None:
        return []
    node = where.this if isinstance(where, exp.Where) else where
    return list(node.flatten()) if isinstance(node, exp.And) else [node]


def _bounded_on_time(where: exp.Expression | None) -> bool:
    """A top-level AND term TD_TIME_RANGE("time", ...): what TD prunes partitions with."""
    for term in _conjuncts(where):
        if isinstance(term, exp.Paren):
            term = term.this
        if (
            isinstance(term, exp.Anonymous)
            and term.name.upper() == "TD_TIME_RANGE"
            and isinstance(term.expressions[0], exp.Column)
            and term.expressions[0].name == "time"
        ):
            return True
    return False


def unbounded_reads(name: str, sql: str, checked: list[str] | None = None) -> list[str]:
    """Scans or deletes of a data table (not a log table) without a time bound; `checked`
    collects every one looked at."""
    tree = _parsed(sql)
    seen = checked if checked is not None else []
    found = []
    if isinstance(tree, exp.Delete):
        seen.append(f"{name}: DELETE")
        if not _bounded_on_time(tree.args.get("where")):
            found.append(f"{name}: DELETE without TD_TIME_RANGE on time")
    for select in tree.find_all(exp.Select):
        source = select.args.get("from_") or select.args.get("from")
        table = source.this if source is not None else None
        if not isinstance(table, exp.Table) or not table.db or table.name in LOG_TABLES:
            continue  # a CTE, a subquery or a log table
        seen.append(f"{name}: {table.name}")
        if not _bounded_on_time(select.args.get("where")):
            found.append(f"{name}: SELECT ... FROM {table.db}.{table.name} without TD_TIME_RANGE")
    return found


def test_every_delete_and_scan_of_a_loaded_table_is_bounded_on_time(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, mode="both")
    schemas = predicted_schemas(cfg)
    files = ingestion.render(cfg, schemas)
    files |= {f"hist_union/{k}": v for k, v in hist_union.render(cfg, schemas).items()}
    checked: list[str] = []
    problems = [
        problem
        for name, text in files.items()
        if name.endswith(".sql") and "create" not in name.rsplit("/", 1)[-1]
        for problem in unbounded_reads(name, text, checked)
    ]
    assert problems == []
    # clear_range's DELETE, log_success's scan, and per hist-union table: the cutoff of
    # each side and the counts of each watermark second (union, both sides), the union's
    # two sides and their late rows (side and output)
    assert len(checked) == 2 + 3 * (2 + 2 * 3 + 2 + 4)
    # the checker does see an unbounded read (the SQL this project generated before)
    old = 'DELETE FROM "acme_src"."t" WHERE "updated_at" >= \'2024-01-01\''
    assert unbounded_reads("old", old) == ["old: DELETE without TD_TIME_RANGE on time"]


def test_a_retry_clears_what_the_failed_attempt_loaded_despite_a_skewed_clock(
    tmp_path: Path,
) -> None:
    """A load that failed between td_load> and its log row left rows in its range; the retry
    deletes them (bounded on time: from the last successful load's log row, less the clock
    margin) and loads the range once. The failed attempt's connector clock runs 30 minutes
    behind the log's."""
    cfg = make_config(tmp_path, mode="incremental", start_date="2023-12-01")
    emu = Emulator(cfg, ingestion.render(cfg, predicted_schemas(cfg)), "2024-03-15T00:00:00+00:00")
    emu.ingest("inc", "orders")  # a successful first load: its log row's time is now
    append_rows(tmp_path / "shopify", "orders", 7)
    emu.session_time = "2024-03-16T00:00:00+00:00"
    failed = emu.ingest_without_log("inc", "orders", clock_skew=-1800)
    assert failed["loaded_after"] > 0  # the retry's delete is bounded, not a full scan
    assert len(emu.loaded_keys("orders")) == len(emu.expected_keys("orders"))
    emu.ingest("inc", "orders")  # the retry
    assert emu.loaded_keys("orders") == emu.expected_keys("orders")
    assert [r["rows_loaded"] for r in emu.log()] == [
        len(emu.expected_keys("orders")) - 7,
        7,
    ]
