"""A staged table's full build, run again on a kept workspace as td> create_table runs it.

The generated `queries/{table}_transform.sql` (Presto) is translated for DuckDB by this
checkout's local translation (backends/local/sql.py), wrapped in the TD column types
(tables.td_select) and written with CREATE TABLE AS into a `bench_stg` schema of the kept
warehouse, with the warehouse's own resources and plain-text storage. Per repetition: CPU
seconds of this process (user + sys: DuckDB's threads are in it) and wall time; the first
repetition's table is compared row by row with the staged table the pipeline wrote
(EXCEPT ALL both ways, `load_timestamp` left out). `--profile` prints DuckDB's
per-operator timings of one more run.

    python bench/bench_e2e.py --sizes 1M --keep --dir /tmp/k      # a kept workspace
    python bench/bench_staging_transform.py /tmp/k/e2e-1M/acme_cdp shopify_customers --repeat 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from cdp_mcp.backends.local import td_text, td_udfs
from cdp_mcp.backends.local.resources import resources
from cdp_mcp.backends.local.sql import split_statements, translate
from cdp_mcp.backends.local.tables import td_select
from cdp_mcp.backends.local.warehouse import SPILL_DIR
from cdp_mcp.core.sqltext import quote_ident

SCHEMA = "bench_stg"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def transform_sql(workspace: Path, table: str, cur: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    """The table's transform as DuckDB runs it, up to the union's largest `time`, and the
    staged table it built (its first line: `-- {stg_db}.{table} <- {src_db}.{union}: ...`)."""
    path = next(workspace.glob(f"*_staging/queries/{table}_transform.sql"))
    text = path.read_text()
    staged, source = text.split(":", 1)[0].removeprefix("-- ").split(" <- ")
    row = cur.execute(f"SELECT max(time) FROM {source}").fetchone()
    text = text.replace("${td.last_results.to_time}", str(row[0] if row else 0))
    job = td_text.job_statement(text, "presto", f"{SCHEMA}.{table}", None)
    return translate(split_statements(job)[-1].text, "presto").sql, staged


def differing_rows(cur: duckdb.DuckDBPyConnection, built: str, staged: str) -> tuple[int, int]:
    names = [r[0] for r in cur.execute(f"DESCRIBE {staged}").fetchall()]
    cols = ", ".join(quote_ident(n) for n in names if n != "load_timestamp")
    counts = []
    for a, b in ((built, staged), (staged, built)):
        sql = f"SELECT count(*) FROM (SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b})"
        row = cur.execute(sql).fetchone()
        counts.append(int(row[0]) if row else -1)
    return counts[0], counts[1]


def print_operators(node: dict[str, Any], depth: int = 0) -> None:
    info = node.get("extra_info") or {}
    what = info.get("Projections") or info.get("Aggregates") or info.get("Table") or ""
    what = " | ".join(what) if isinstance(what, list) else str(what)
    rows = node.get("operator_cardinality", node.get("intermediate_rows"))
    timing = node.get("operator_timing", node.get("timing", 0.0))
    print(
        f"{'  ' * depth}{node.get('operator_name', node.get('name'))} {timing:.3f}s rows={rows} {what[:110]}"
    )
    for child in node.get("children", []):
        print_operators(child, depth + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path, help="the kept workspace (acme_cdp)")
    parser.add_argument("table", help="e.g. shopify_customers")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="per-operator timings too")
    args = parser.parse_args()
    warehouse = args.workspace / ".cdp_local" / "warehouse.duckdb"
    con = duckdb.connect(
        str(warehouse), config=resources().duckdb_config(warehouse.parent / SPILL_DIR)
    )
    td_udfs.register(con)
    cur = con.cursor()
    for setting in ("SET TimeZone = 'UTC'", "SET disabled_compression_methods = 'dict_fsst'"):
        cur.execute(setting)
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    sql, staged = transform_sql(args.workspace, args.table, cur)
    typed, _ = td_select(cur, sql)
    built = f"{SCHEMA}.{quote_ident(args.table)}"
    cpu, wall = [], []
    for rep in range(args.repeat + (1 if args.profile else 0)):
        profiled = rep == args.repeat
        cur.execute(f"DROP TABLE IF EXISTS {built}")
        cur.execute("CHECKPOINT")
        if profiled:
            out = Path(tempfile.mkdtemp()) / "profile.json"
            cur.execute("PRAGMA enable_profiling = 'json'")
            cur.execute(f"PRAGMA profiling_output = '{out}'")
        started_cpu, started = cpu_seconds(), time.monotonic()
        cur.execute(f"CREATE TABLE {built} AS {typed}")
        if profiled:
            cur.execute("PRAGMA disable_profiling")
            tree = json.loads(out.read_text())
            for node in tree.get("operator", tree.get("children", [])):
                print_operators(node)
            continue
        cpu.append(cpu_seconds() - started_cpu)
        wall.append(time.monotonic() - started)
        if rep == 0:
            only_new, only_staged = differing_rows(cur, built, staged)
            print(f"rows only in this build {only_new}, only in the staged table {only_staged}")
    cur.execute(f"DROP TABLE IF EXISTS {built}")
    print(
        f"{args.table}: CPU s min {min(cpu):.2f} median {statistics.median(cpu):.2f}, wall s "
        f"min {min(wall):.2f} median {statistics.median(wall):.2f} ({len(cpu)} runs)"
    )


if __name__ == "__main__":
    main()
