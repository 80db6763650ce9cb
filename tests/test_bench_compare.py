"""bench_e2e's warehouse comparison reports what differs between two real DuckDB files
(the incremental-run check depends on it), and does not call run clocks a difference."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_e2e import (
    RunMeasure,
    compare_warehouses,
    output_floor,
    output_phase,
    tree_cpu,
    write_config,
)

from cdp_mcp.core.config import load_config

ROWS = [(1, "a@x.com", 10), (2, "b@x.com", 20), (2, "b@x.com", 20), (3, None, 30)]


def warehouse(path: Path, rows: list[tuple[int, str | None, int]], clock: int) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA stg")
        con.execute("CREATE TABLE stg.customers (id BIGINT, email VARCHAR, total INT, time BIGINT)")
        con.executemany(
            "INSERT INTO stg.customers VALUES (?, ?, ?, ?)", [(*r, clock) for r in rows]
        )
        con.execute("CREATE TABLE stg.keys AS SELECT 'email' AS name")
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return warehouse(tmp_path / "a.duckdb", ROWS, clock=1_700_000_000)


def diffs(a: Path, b: Path) -> dict[str, str]:
    return {d.table: d.describe() for d in compare_warehouses(a, b)}


def test_the_same_rows_in_another_order_loaded_at_another_time_are_identical(
    base: Path, tmp_path: Path
) -> None:
    other = warehouse(tmp_path / "b.duckdb", ROWS[::-1], clock=1_800_000_000)
    got = diffs(base, other)
    assert got["stg.customers"] == "identical but for time (4 rows)"
    assert got["stg.keys"] == "identical (1 rows)"


def test_a_changed_value_is_counted_on_both_sides_and_its_column_named(
    base: Path, tmp_path: Path
) -> None:
    changed = [ROWS[0], ROWS[1], ROWS[2], (3, "c@x.com", 30)]
    got = diffs(base, warehouse(tmp_path / "b.duckdb", changed, clock=1_700_000_000))
    assert got["stg.customers"] == (
        "DIFFER: 4 vs 4 rows; 1 only in a, 1 only in b (clock columns left out); "
        "columns whose values differ: email"
    )


def test_a_lost_duplicate_and_a_missing_table_are_differences(base: Path, tmp_path: Path) -> None:
    other = warehouse(tmp_path / "b.duckdb", ROWS[:2] + ROWS[3:], clock=1_700_000_000)
    with duckdb.connect(str(other)) as con:
        con.execute("DROP TABLE stg.keys")
    got = diffs(base, other)
    assert got["stg.customers"].startswith("DIFFER: 4 vs 3 rows; 1 only in a, 0 only in b")
    assert got["stg.keys"] == "only in a"


def lookup_warehouse(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    """A unification database's lookup: (persistent_id, value, key type)."""
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA cdp_unification_customer_360")
        con.execute(
            "CREATE TABLE cdp_unification_customer_360.unified_id_lookup"
            " (persistent_id VARCHAR, id VARCHAR, id_key_type INT)"
        )
        con.executemany(
            "INSERT INTO cdp_unification_customer_360.unified_id_lookup VALUES (?, ?, ?)", rows
        )
    return path


def test_profiles_are_compared_as_sets_of_values_whatever_their_ids(tmp_path: Path) -> None:
    import yaml
    from bench_e2e import compare_partitions

    from cdp_mcp.cli.demo_data import SAMPLE_CONFIG
    from cdp_mcp.core.config import PipelineConfig

    cfg = PipelineConfig.model_validate(yaml.safe_load(SAMPLE_CONFIG))
    a = lookup_warehouse(
        tmp_path / "a.duckdb",
        [("P1", "a@x.com", 1), ("P1", "555", 2), ("P2", "b@x.com", 1), ("P3", "old@x.com", 1)],
    )
    renamed = lookup_warehouse(
        tmp_path / "b.duckdb", [("Q9", "a@x.com", 1), ("Q9", "555", 2), ("Q8", "b@x.com", 1)]
    )
    same = compare_partitions(a, renamed, cfg)
    # old@x.com is only in a (a superseded value), so it is left out; the ids differ
    assert (same.values, same.profiles_a, same.profiles_b, same.moved) == (3, 2, 2, 0)

    split = lookup_warehouse(
        tmp_path / "c.duckdb", [("Q9", "a@x.com", 1), ("Q7", "555", 2), ("Q8", "b@x.com", 1)]
    )
    moved = compare_partitions(a, split, cfg)
    assert (moved.profiles_a, moved.profiles_b, moved.moved) == (2, 3, 1)


def test_cores_per_step_come_from_the_cpu_samples_between_its_ends() -> None:
    m = RunMeasure(3.0, 0, 0, steps=[("ingestion", "a", 1.0), ("ingestion", "b", 2.0)])
    m.cpu = [(0.0, 0.0), (1.0, 2.0), (2.0, 2.5), (3.0, 3.0)]  # two cores, then half of one
    assert m.step_cores() == [2.0, 0.5]
    assert m.cpu_seconds(0.5, 1.5) == pytest.approx(1.25)  # between samples: interpolated


def test_a_measured_process_tree_counts_the_cpu_its_child_burnt() -> None:
    """run_cli samples the tree's CPU: a child busy for 1 s adds about a core-second, once it
    has ended too (the caller waited for it: its children_* times)."""
    import psutil

    me = psutil.Process()
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
    before = tree_cpu(me)
    psutil.Popen([sys.executable, "-c", busy]).wait()
    assert 0.9 <= tree_cpu(me) - before < 3.0


def test_the_output_floor_times_each_phase_s_tables_and_only_its_own(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "acme", "acme_cdp"))
    written = {
        f"{cfg.src_db}.shopify_orders": "ingestion",
        f"{cfg.src_db}.shopify_orders_hist_union": "hist_union",
        f"{cfg.stg_db}.shopify_orders": "staging",
        f"{cfg.stg_db}.shopify_orders_prep": "unification",
        f"{cfg.stg_db}.shopify_orders_prep_rows": "unification",
        f"{cfg.stg_db}.unif_input": "unification",
        f"{cfg.unif_db}.unified_id_lookup": "unification",
    }
    assert {name: output_phase(cfg, name) for name in written} == written
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        for schema in (cfg.src_db, cfg.stg_db):
            con.execute(f'CREATE SCHEMA "{schema}"')
        con.execute(
            f'CREATE TABLE "{cfg.src_db}".shopify_orders AS SELECT range AS id FROM range(300000)'
        )
        con.execute(f'CREATE TABLE "{cfg.stg_db}".unif_input AS SELECT range AS id FROM range(10)')
    seconds = output_floor(path, tmp_path / "copy.duckdb", cfg)
    assert seconds["ingestion"] > 0 and seconds["unification"] > 0
    assert seconds["hist_union"] == 0 and seconds["staging"] == 0  # no table of theirs
    assert not (tmp_path / "copy.duckdb").exists()
