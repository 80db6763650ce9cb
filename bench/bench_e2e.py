"""All four phases through `cdp-mcp run` at production sizes, against floors of the same work.

For each size (source rows in all) one command writes the sample extract, then measures:

- the copy floor: DuckDB copying the three files into tables, with its defaults and with
  text stored plainly as the warehouse's `fast` storage does (bench_pipeline's floor);
- the pipeline: `cdp-mcp run <config>` in a subprocess on a fresh workspace: wall time,
  each phase's and step's time from the run's state, unification's tasks from its
  `pipeline_logs/` record and the engine's own seconds from `{id}_runs`, peak RSS of the
  whole process tree (psutil, sampled every 0.1 s) and the warehouse's size afterwards;
- the unification floor over the keys the pipeline staged: the valid key values of the
  tables the generated unify.yml names (the staged `unif_input`) read from the warehouse,
  factorized to integers, scipy's connected components, (value, key, cluster) written
  back as one table (bench_unification's floor).

The e2e floor is the copy floor plus the unification floor. With `--incremental`, ~1% new
and updated rows are then appended to every source and `cdp-mcp run --new-run` runs again;
a fresh workspace over the same data is built with a full run, and both warehouses are
compared table by table (order-insensitive), and persistent ids of profiles whose values
did not change are checked.

With `--output-floor`, each phase's finished tables are then copied once from the
warehouse into a fresh file with the warehouse's storage: the cost of writing what the
pipeline must produce, a floor for any design that materializes the same tables.

    python bench/bench_e2e.py --sizes 1M,3M --incremental
    flock /tmp/cdp-big.lock python bench/bench_e2e.py --sizes 10M --incremental --dir /tmp/x
    flock /tmp/cdp-big.lock python bench/bench_e2e.py --sizes 10M --output-floor
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import yaml
from bench_pipeline import customers_for, floor_seconds
from bench_unification import factorized_edges, floor_components

from cdp_mcp.cli.demo_data import SAMPLE_CONFIG, SAMPLE_FOLDER, append_rows, write_sample
from cdp_mcp.core.config import PipelineConfig, load_config
from cdp_mcp.core.phases import ORDER
from cdp_mcp.core.sqltext import quote_ident, sql_string
from cdp_mcp.pipeline.state import StateStore

if TYPE_CHECKING:
    import psutil  # the bench extra; imported where a run is measured, so the comparison
    # below is importable (and tested) without it

WAREHOUSE = Path(".cdp_local") / "warehouse.duckdb"  # under the workspace (local/runtime.py)
SAMPLE_EVERY = 0.1  # seconds between RSS samples of the run's process tree
APPEND_SHARE = 0.01  # --incremental: new and updated rows, as a share of each source's rows
GROWTH_BASE = 3_000_000  # cost per row is compared against this size's
GROWTH_LIMIT = 0.20  # the bound on cost per row from 3M to 30M


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: write e.g. 1M, 300k or 250000") from None


def label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    return f"{rows / 1_000_000:g}M" if rows > 1_000_000 else f"{rows // 1000}k"


# -- the pipeline in a subprocess ---------------------------------------------------------


@dataclass
class RunMeasure:
    wall: float
    peak_rss: int  # bytes, the whole process tree
    exit_code: int
    # (phase, step, seconds) in the order they ended, from the run's state: each step's
    # time runs from the end of the one before (the first: from the launch), so the
    # bookkeeping between steps is counted and the steps add up to the last one's end
    steps: list[tuple[str, str, float]] = field(default_factory=list)
    disk: int = 0  # bytes of the warehouse file after the run
    engine: float = 0.0  # the unification engine's own seconds (`{id}_runs`)
    unif_tasks: dict[str, float] = field(default_factory=dict)  # unif_runner's tasks, s
    failed: list[str] = field(default_factory=list)  # attempts that did not succeed
    load: float = 0.0  # the machine's 1-minute load average as the run ended (shared VM)
    # (seconds since launch, CPU seconds of the process tree so far): how many of the
    # machine's cores each step kept busy (a step near 1 core runs one thread at a time)
    cpu: list[tuple[float, float]] = field(default_factory=list)

    def cpu_seconds(self, start: float, end: float) -> float:
        """The tree's CPU seconds between two moments (s since launch), from the samples."""
        return max(0.0, _cpu_at(self.cpu, end) - _cpu_at(self.cpu, start))

    def step_cores(self) -> list[float]:
        """Per step (as in `steps`), its CPU seconds over its wall seconds."""
        out, t = [], 0.0
        for _, _, seconds in self.steps:
            out.append(self.cpu_seconds(t, t + seconds) / seconds if seconds > 0 else 0.0)
            t += seconds
        return out

    @property
    def phases(self) -> dict[str, float]:
        out = {p.value: 0.0 for p in ORDER}
        for phase, _, seconds in self.steps:
            out[phase] += seconds
        return out

    @property
    def rest(self) -> float:
        """After the last step: the final report and the process's exit."""
        return self.wall - sum(s for _, _, s in self.steps)


def _cpu_at(samples: list[tuple[float, float]], t: float) -> float:
    """CPU seconds at moment t, linear between the samples around it."""
    if not samples:
        return 0.0
    before = [x for x in samples if x[0] <= t]
    after = [x for x in samples if x[0] >= t]
    if not before:
        return samples[0][1]
    if not after:
        return samples[-1][1]
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)


def tree_cpu(proc: psutil.Process) -> float:
    """User+system CPU seconds of the process, its live children and those it waited for."""
    import psutil

    total = 0.0
    for i, p in enumerate((proc, *proc.children(recursive=True))):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0)
    return total


def tree_rss(proc: psutil.Process) -> int:
    import psutil

    total = 0
    for p in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(psutil.Error):  # a child that ended meanwhile
            total += p.memory_info().rss
    return total


def run_cli(config: Path, log: Path, new_run: bool = False) -> RunMeasure:
    """`cdp-mcp run` as a user starts it; output to `log` (the live board is off off a tty)."""
    import psutil

    cmd = [str(Path(sys.executable).with_name("cdp-mcp")), "run", str(config)]
    if new_run:
        cmd.append("--new-run")
    os.sync()  # no dirty pages of the previous measurement still being written
    peak = 0
    cpu: list[tuple[float, float]] = [(0.0, 0.0)]
    launched = datetime.now(UTC)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss(proc))
                cpu.append((time.perf_counter() - start, tree_cpu(proc)))
            time.sleep(SAMPLE_EVERY)
    wall = time.perf_counter() - start
    cfg = load_config(config)
    m = RunMeasure(wall, peak, int(proc.returncode), disk=file_size(cfg.workspace / WAREHOUSE))
    m.cpu = cpu
    m.load = os.getloadavg()[0]
    if m.exit_code in (0, 3):
        m.steps = step_times(cfg.workspace, launched)
        m.engine = engine_seconds(cfg)
        attempts = run_attempts(cfg.workspace, launched)
        m.unif_tasks = task_times(attempts)
        m.failed = failed_attempts(attempts)
    return m


def step_times(workspace: Path, launched: datetime) -> list[tuple[str, str, float]]:
    """The run's steps as RunMeasure.steps has them."""
    state = StateStore(workspace).load()
    ended = sorted(
        (s.finished_at, p.value, name)
        for p in ORDER
        for name, s in state.phase(p).steps.items()
        if s.finished_at
    )
    out, before = [], launched
    for finished, phase, name in ended:
        out.append((phase, name, (finished - before).total_seconds()))
        before = finished
    return out


def engine_seconds(cfg: PipelineConfig) -> float:
    """The last unification run's own seconds, as the engine records them in `{id}_runs`."""
    runs = f"{quote_ident(cfg.unif_db)}.{quote_ident(cfg.unification.id_name + '_runs')}"
    path = cfg.workspace / WAREHOUSE
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(f"SELECT seconds FROM {runs} ORDER BY time DESC LIMIT 1").fetchone()
    return float(row[0]) if row else 0.0


_TASK_DONE = re.compile(r"\((\+[^)]+)\): require> finished in ([0-9.]+)s")
_LOG_FIELD = re.compile(r"^(started|status|workflow):\s*(.*)$", re.MULTILINE)


def run_attempts(workspace: Path, launched: datetime) -> list[tuple[str, str, str]]:
    """(workflow, status, log text) of every attempt this run started, in start order, from
    the run's deployment record (`pipeline_logs/`)."""
    found = []
    for log in (workspace / "pipeline_logs").glob("*/*_attempt*.log"):
        text = log.read_text(encoding="utf-8", errors="replace")
        fields = dict(_LOG_FIELD.findall(text[:2000]))
        try:
            started = datetime.fromisoformat(fields.get("started", ""))
        except ValueError:
            continue
        if started >= launched:
            found.append(
                (started, fields.get("workflow", log.stem), fields.get("status", ""), text)
            )
    return [(w, st, t) for _, w, st, t in sorted(found, key=lambda f: f[0])]


def task_times(attempts: list[tuple[str, str, str]]) -> dict[str, float]:
    """unif_runner's tasks (prep, id_unification, enrichment), summed over its attempts: a
    retry runs only the tasks that failed, so one attempt's record may lack the others."""
    out: dict[str, float] = {}
    for workflow, _, text in attempts:
        if workflow == "unif_runner":
            for m in _TASK_DONE.finditer(text):
                name = m[1].rsplit("+", 1)[-1]
                out[name] = out.get(name, 0.0) + float(m[2])
    return out


def failed_attempts(attempts: list[tuple[str, str, str]]) -> list[str]:
    """Each attempt of the run that did not succeed, with its first error line: a retry
    the run needed is part of its time, and a defect to name, not a detail to hide."""
    out = []
    for workflow, status, text in attempts:
        if status != "success":
            error = next((ln for ln in text.splitlines() if ln.lstrip().startswith("error ")), "")
            out.append(f"{workflow} ({status}): {error.strip()[:300]}")
    return out


def file_size(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


# -- the unification floor over the staged keys -------------------------------------------


def unify_request(cfg: PipelineConfig) -> dict[str, Any]:
    """The unification request the pipeline generated (TD's unify.yml): what the engine reads."""
    path = cfg.workspace / "unification" / "config" / "unify.yml"
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def input_tables(request: dict[str, Any]) -> list[str]:
    """The request's tables, as names in the attached warehouse `w`."""
    return [f"w.{quote_ident(t['database'])}.{quote_ident(t['table'])}" for t in request["tables"]]


def key_values_sql(request: dict[str, Any], offsets: list[int]) -> str:
    """The valid key values of the request's tables, one row per (record, key), with records
    numbered densely over all tables (table i's rowid + offsets[i]); validity as the
    engine's (unification/extract.py): not NULL, not invalid, matching valid_regexp."""
    keys = {k["name"]: k for k in request["keys"]}
    parts = []
    for t, table, offset in zip(request["tables"], input_tables(request), offsets, strict=True):
        for kc in t["key_columns"]:
            key = keys[kc["key"]]
            v = f"CAST({quote_ident(kc['column'])} AS VARCHAR)"
            valid = [f"{v} IS NOT NULL"]
            if invalid := key.get("invalid_texts"):
                valid.append(f"{v} NOT IN ({', '.join(sql_string(str(x)) for x in invalid)})")
            if (regexp := key.get("valid_regexp")) is not None:
                valid.append(f"regexp_matches({v}, {sql_string(str(regexp))})")
            parts.append(
                f"SELECT rowid + {offset} AS rid, {sql_string(kc['key'])} AS kt, {v} AS v"
                f" FROM {table} WHERE {' AND '.join(valid)}"
            )
    return " UNION ALL ".join(parts)


def unification_floor(cfg: PipelineConfig, warehouse: Path, db: Path) -> tuple[float, int]:
    """bench_unification's floor over the unification's input tables: seconds, clusters."""
    db.unlink(missing_ok=True)
    request = unify_request(cfg)
    os.sync()
    start = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH {sql_string(str(warehouse))} AS w (READ_ONLY)")
        offsets, records = [], 0
        for table in input_tables(request):
            offsets.append(records)
            records += int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        n, follower, leader = factorized_edges(con, key_values_sql(request, offsets))
        count, _ = floor_components(con, n, follower, leader, "floor_lookup")
    return time.perf_counter() - start, count


def output_phase(cfg: PipelineConfig, name: str) -> str:
    """The phase whose workflow writes a table (schema.table) of the warehouse."""
    schema, table = name.split(".", 1)
    if schema == cfg.src_db:
        return "hist_union" if table.endswith("_hist_union") else "ingestion"
    if schema == cfg.stg_db and not (table == "unif_input" or re.search(r"_prep(_rows)?$", table)):
        return "staging"
    return "unification"  # its prep tables (in the staging database) and its own database


def output_floor(warehouse: Path, db: Path, cfg: PipelineConfig) -> dict[str, float]:
    """Per phase, the seconds DuckDB takes to write that phase's tables once, copying each
    from the finished warehouse with the warehouse's `fast` storage: what any run that
    materializes those tables pays for their writing alone, whatever computes them."""
    db.unlink(missing_ok=True)
    out = {p.value: 0.0 for p in ORDER}
    with duckdb.connect(str(db)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET disabled_compression_methods = 'dict_fsst'")
        con.execute(f"ATTACH {sql_string(str(warehouse))} AS w (READ_ONLY)")
        for n, name in enumerate(user_tables(con, "w")):
            schema, table = name.split(".", 1)
            os.sync()
            start = time.perf_counter()
            con.execute(
                f"CREATE TABLE copy_{n} AS SELECT * FROM w.{quote_ident(schema)}.{quote_ident(table)}"
            )
            out[output_phase(cfg, name)] += time.perf_counter() - start
    db.unlink()
    return out


# -- comparing two warehouses -------------------------------------------------------------

# Columns that record when a run processed a row (TD's `time`, staging's load_timestamp, the
# lookup's seen/processed instants): two runs at different moments differ there by design.
COMPARE_MEMORY = "2GB"  # the machine is shared; the hash aggregates spill if they must
CLOCK_COLUMNS = re.compile(r"time|load_timestamp|.*_seen_at|.*_processed_at")


@dataclass
class TableDiff:
    table: str  # schema.table
    rows_a: int | None  # None: the table is missing on that side
    rows_b: int | None
    columns_differ: list[str] = field(default_factory=list)  # whose values differ as multisets
    only_a: int = 0  # rows (with multiplicity, clock columns left out) in a and not in b
    only_b: int = 0
    schema_differs: bool = False
    samples: list[str] = field(default_factory=list)  # a few rows of each side's excess

    @property
    def identical(self) -> bool:
        """Identical but for the clock columns."""
        return (
            self.rows_a is not None
            and self.rows_b is not None
            and not self.schema_differs
            and self.only_a == self.only_b == 0
        )

    def describe(self) -> str:
        if self.rows_a is None or self.rows_b is None:
            return f"only in {'b' if self.rows_a is None else 'a'}"
        if self.schema_differs:
            return "the columns differ"
        clocks = [c for c in self.columns_differ if CLOCK_COLUMNS.fullmatch(c)]
        others = [c for c in self.columns_differ if not CLOCK_COLUMNS.fullmatch(c)]
        if not self.columns_differ:
            return f"identical ({self.rows_a:,} rows)"
        if self.identical:
            return f"identical but for {', '.join(clocks)} ({self.rows_a:,} rows)"
        return (
            f"DIFFER: {self.rows_a:,} vs {self.rows_b:,} rows; {self.only_a:,} only in a, "
            f"{self.only_b:,} only in b (clock columns left out); columns whose values "
            f"differ: {', '.join(others)}" + (f" (and {', '.join(clocks)})" if clocks else "")
        )


def user_tables(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT table_schema || '.' || table_name, list(column_name ORDER BY ordinal_position)"
        " FROM information_schema.columns WHERE table_catalog = ?"
        " AND table_schema NOT IN ('information_schema', 'pg_catalog')"
        " GROUP BY ALL ORDER BY 1",
        [catalog],
    ).fetchall()
    return {str(name): list(cols) for name, cols in rows}


def compare_warehouses(
    a: Path, b: Path, keep: Callable[[str], bool] = lambda _: True
) -> list[TableDiff]:
    """Every table `keep` accepts (by schema.table) in either file, as multisets of rows."""
    with duckdb.connect(config={"memory_limit": COMPARE_MEMORY}) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH {sql_string(str(a))} AS a (READ_ONLY)")
        con.execute(f"ATTACH {sql_string(str(b))} AS b (READ_ONLY)")
        ta, tb = user_tables(con, "a"), user_tables(con, "b")
        return [
            compare_table(con, name, ta.get(name), tb.get(name))
            for name in sorted(ta.keys() | tb.keys())
            if keep(name)
        ]


def compare_table(
    con: duckdb.DuckDBPyConnection, name: str, cols_a: list[str] | None, cols_b: list[str] | None
) -> TableDiff:
    """One scan of each side: the row count, a hash sum per column and one of the rows
    without clock columns (order-insensitive); exact row counts only where the rows differ."""
    schema, table = name.split(".", 1)
    ident = f"{quote_ident(schema)}.{quote_ident(table)}"
    cols = cols_a or cols_b or []
    if cols_a is None or cols_b is None or sorted(cols_a) != sorted(cols_b):
        rows = [
            None if c is None else count(con, f"SELECT 1 FROM {side}.{ident}")
            for side, c in (("a", cols_a), ("b", cols_b))
        ]
        return TableDiff(name, rows[0], rows[1], schema_differs=bool(cols_a and cols_b))
    kept = ", ".join(quote_ident(c) for c in cols if not CLOCK_COLUMNS.fullmatch(c)) or "1"
    sums = ", ".join(f"sum(hash({quote_ident(c)})::HUGEINT)" for c in cols)
    aggregate = f"SELECT count(*), sum(hash({kept})::HUGEINT), {sums} FROM {{}}.{ident}"
    got_a = con.execute(aggregate.format("a")).fetchall()[0]
    got_b = con.execute(aggregate.format("b")).fetchall()[0]
    diff = TableDiff(name, int(got_a[0]), int(got_b[0]))
    diff.columns_differ = [c for c, x, y in zip(cols, got_a[2:], got_b[2:], strict=True) if x != y]
    if got_a[:2] != got_b[:2]:
        diff.only_a, diff.only_b = rows_only_in_each(con, ident, kept)
        shown = [c for c in cols[:2] if not CLOCK_COLUMNS.fullmatch(c)]
        shown += [
            c for c in diff.columns_differ if c not in shown and not CLOCK_COLUMNS.fullmatch(c)
        ]
        diff.samples = sample_rows(con, ident, kept, shown)
    return diff


def rows_only_in_each(con: duckdb.DuckDBPyConnection, ident: str, kept: str) -> tuple[int, int]:
    """EXCEPT ALL both ways, counted over row hashes (a wide EXCEPT ALL of millions of rows
    takes gigabytes): per hash, the copies one side has beyond the other's. The hashes
    that differ are kept in `diff_hashes` (h, excess of a: positive, of b: negative)."""
    per_hash = "SELECT hash({}) AS h, count(*) AS n FROM {}.{} GROUP BY h"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE diff_hashes AS
            SELECT h, coalesce(a.n, 0) - coalesce(b.n, 0) AS excess
            FROM ({per_hash.format(kept, "a", ident)}) a
            FULL JOIN ({per_hash.format(kept, "b", ident)}) b USING (h) WHERE excess <> 0"""
    )
    row = con.execute(
        "SELECT coalesce(sum(excess) FILTER (excess > 0), 0),"
        " coalesce(-sum(excess) FILTER (excess < 0), 0) FROM diff_hashes"
    ).fetchall()[0]
    return int(row[0]), int(row[1])


def sample_rows(
    con: duckdb.DuckDBPyConnection, ident: str, kept: str, shown: list[str], per_side: int = 2
) -> list[str]:
    """A few rows each side has beyond the other, `shown` columns only (where to look)."""
    out = []
    cols = ", ".join(quote_ident(c) for c in shown)
    for side, sign in (("a", ">"), ("b", "<")):
        rows = con.execute(
            f"SELECT {cols} FROM {side}.{ident} WHERE hash({kept}) IN"
            f" (SELECT h FROM diff_hashes WHERE excess {sign} 0) LIMIT {per_side}"
        ).fetchall()
        out += [
            f"{side}: " + ", ".join(f"{c}={v!r}" for c, v in zip(shown, r, strict=True))[:160]
            for r in rows
        ]
    return out


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0])


def rebuilt_tables(cfg: PipelineConfig) -> Callable[[str], bool]:
    """What a rebuild must reproduce: staged and unification tables, and the hist-union
    tables (the raw backfill / incremental tables split the same rows differently by
    design); not the logs and run records of each workspace's own history."""
    data = {cfg.stg_db, cfg.unif_db}
    runs = f"{cfg.unif_db}.{cfg.unification.id_name}_runs"

    def keep(name: str) -> bool:
        schema = name.split(".")[0]
        if name == runs:
            return False
        return schema in data or (schema == cfg.src_db and name.endswith("_hist_union"))

    return keep


# -- persistent ids across an incremental run ---------------------------------------------


def snapshot_lookup(warehouse: Path, cfg: PipelineConfig, db: Path) -> None:
    """Copy run 1's lookup (value, key type, id) out before run 2 overwrites it."""
    table = lookup_table(cfg)
    with duckdb.connect(str(db)) as con:
        con.execute(f"ATTACH {sql_string(str(warehouse))} AS w (READ_ONLY)")
        con.execute(f"CREATE OR REPLACE TABLE run1_lookup AS SELECT * FROM w.{table}")


def lookup_table(cfg: PipelineConfig) -> str:
    # TD's `{id}_lookup` in the unification database: (persistent_id, id, id_key_type, ...)
    return f"{quote_ident(cfg.unif_db)}.{quote_ident(cfg.unification.id_name + '_lookup')}"


@dataclass
class IdCheck:
    profiles: int  # profiles of run 1
    unchanged: int  # ... whose values are exactly one profile's values in run 2
    kept: int  # ... of which kept their id


def check_persistent_ids(snapshot: Path, warehouse: Path, cfg: PipelineConfig) -> IdCheck:
    # the lookup's id column is named after the method (TD's columns)
    uid = quote_ident(cfg.unification.id_method)
    with duckdb.connect(str(snapshot), read_only=True) as con:
        con.execute(f"ATTACH {sql_string(str(warehouse))} AS w (READ_ONLY)")
        row = con.execute(
            f"""WITH l2 AS (SELECT id, id_key_type, {uid} AS pid FROM w.{lookup_table(cfg)}),
            sizes2 AS (SELECT pid, count(*) AS n FROM l2 GROUP BY pid),
            per1 AS (
              SELECT l1.{uid} AS pid1, count(*) AS n1, count(l2.pid) AS found,
                     min(l2.pid) AS pid2, count(DISTINCT l2.pid) AS targets
              FROM run1_lookup l1 LEFT JOIN l2 USING (id, id_key_type) GROUP BY l1.{uid})
            SELECT count(*),
                   count(*) FILTER (WHERE same),
                   count(*) FILTER (WHERE same AND pid1 = pid2)
            FROM (SELECT p.*, (p.found = p.n1 AND p.targets = 1 AND s.n = p.n1) AS same
                  FROM per1 p LEFT JOIN sizes2 s ON s.pid = p.pid2)"""
        ).fetchall()[0]
    return IdCheck(int(row[0]), int(row[1]), int(row[2]))


@dataclass
class PartitionCheck:
    values: int  # (value, key type) pairs both lookups hold
    profiles_a: int  # profiles over those values, each side
    profiles_b: int
    moved: int  # of those values, how many share a profile with another set of values


def compare_partitions(a: Path, b: Path, cfg: PipelineConfig) -> PartitionCheck:
    """Which values share a profile, in both lookups, ids aside: a persistent id comes from
    the profile's first-seen value, and a rebuild sees every value at its own load's time,
    so its ids may name the same profiles otherwise. Over the values both sides hold (the
    incremental lookup keeps superseded versions' values); each profile is named by its
    smallest value there, and a value counts as moved when that name differs."""
    uid = quote_ident(cfg.unification.id_method)
    table = lookup_table(cfg)
    with duckdb.connect(config={"memory_limit": COMPARE_MEMORY}) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH {sql_string(str(a))} AS a (READ_ONLY)")
        con.execute(f"ATTACH {sql_string(str(b))} AS b (READ_ONLY)")
        row = con.execute(
            f"""WITH
            la AS (SELECT id, id_key_type, {uid} AS pid FROM a.{table}),
            lb AS (SELECT id, id_key_type, {uid} AS pid FROM b.{table}),
            both_ AS (SELECT la.id, la.id_key_type, la.pid AS pa, lb.pid AS pb
                      FROM la JOIN lb USING (id, id_key_type)),
            named AS (SELECT *, min(id_key_type || ':' || id) OVER (PARTITION BY pa) AS na,
                             min(id_key_type || ':' || id) OVER (PARTITION BY pb) AS nb
                      FROM both_)
            SELECT count(*), count(DISTINCT pa), count(DISTINCT pb),
                   count(*) FILTER (WHERE na <> nb) FROM named"""
        ).fetchall()[0]
    return PartitionCheck(*(int(x) for x in row))


# -- one size -----------------------------------------------------------------------------


@dataclass
class SizeResult:
    rows: int
    floor: float
    plain_floor: float
    unif_floor: float
    full: RunMeasure
    incremental: RunMeasure | None = None
    rebuild: RunMeasure | None = None
    diffs: list[TableDiff] = field(default_factory=list)
    ids: IdCheck | None = None
    partition: PartitionCheck | None = None
    outputs: dict[str, float] | None = None  # --output-floor: per phase, writing its tables


def write_config(work: Path, name: str, workspace: str) -> Path:
    path = work / f"{name}.yml"
    text = SAMPLE_CONFIG.replace("global:\n", f"global:\n  workspace: ./{workspace}\n", 1)
    path.write_text(text, encoding="utf-8")
    return path


def append_one_percent(source: Path, counts: dict[str, int]) -> None:
    for obj, n in counts.items():
        append_rows(source, obj, max(1, round(n * APPEND_SHARE)))


def source_counts(files: dict[str, Path]) -> dict[str, int]:
    with duckdb.connect() as con:
        return {
            obj: int(con.execute(f"SELECT count(*) FROM {sql_string(str(p))}").fetchall()[0][0])
            for obj, p in files.items()
        }


def check_run(m: RunMeasure, what: str, log: Path) -> None:
    if m.exit_code not in (0, 3):
        raise SystemExit(f"{what} exited {m.exit_code}; see {log}")


def measure_size(rows: int, work: Path, incremental: bool, outputs: bool = False) -> SizeResult:
    work.mkdir(parents=True, exist_ok=True)
    note(f"{label(rows)}: writing the sample into {work}")
    files = write_sample(work / SAMPLE_FOLDER, rows=customers_for(rows))
    counts = source_counts(files)
    note(f"{label(rows)}: {sum(counts.values()):,} source rows; floors")
    floor, _ = floor_seconds(files, work / "floor.duckdb")
    plain, _ = floor_seconds(files, work / "floor.duckdb", plain_text=True)
    (work / "floor.duckdb").unlink()
    config = write_config(work, "acme", "acme_cdp")
    note(f"{label(rows)}: cdp-mcp run")
    full = run_cli(config, work / "run1.log")
    check_run(full, "cdp-mcp run", work / "run1.log")
    cfg = load_config(config)
    warehouse = cfg.workspace / WAREHOUSE
    unif, _ = unification_floor(cfg, warehouse, work / "unif_floor.duckdb")
    (work / "unif_floor.duckdb").unlink()
    result = SizeResult(rows, floor, plain, unif, full)
    if outputs:
        note(f"{label(rows)}: the output floor (writing each phase's tables once)")
        result.outputs = output_floor(warehouse, work / "outputs.duckdb", cfg)
    if not incremental:
        return result
    snapshot = work / "run1_ids.duckdb"
    snapshot_lookup(warehouse, cfg, snapshot)
    append_one_percent(work / SAMPLE_FOLDER, counts)
    note(f"{label(rows)}: cdp-mcp run --new-run after appending 1%")
    result.incremental = run_cli(config, work / "run2.log", new_run=True)
    check_run(result.incremental, "cdp-mcp run --new-run", work / "run2.log")
    result.ids = check_persistent_ids(snapshot, warehouse, cfg)
    note(f"{label(rows)}: a full run on a fresh workspace over the appended data")
    rebuild_config = write_config(work, "acme_rebuild", "rebuild_cdp")
    result.rebuild = run_cli(rebuild_config, work / "rebuild.log")
    check_run(result.rebuild, "the rebuild's cdp-mcp run", work / "rebuild.log")
    rebuilt = load_config(rebuild_config).workspace / WAREHOUSE
    result.diffs = compare_warehouses(warehouse, rebuilt, rebuilt_tables(cfg))
    result.partition = compare_partitions(warehouse, rebuilt, cfg)
    return result


# -- printing -----------------------------------------------------------------------------


def note(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def print_table(results: list[SizeResult]) -> None:
    head = [
        "size", "floor s", "plain floor s", "unif floor s", "pipeline s",
        *(f"{p.value} s" for p in ORDER), "rest s", "engine s",
        "e2e / floor", "ph1-3 / plain", "engine / unif floor", "unif phase / unif floor",
        "peak RSS GB", "disk GB", "µs/row",
    ]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---", *["---:"] * (len(head) - 1)]) + "|")
    for r in results:
        m, phases = r.full, r.full.phases
        phases123 = sum(phases[p.value] for p in ORDER[:3])
        cells = [
            label(r.rows), f"{r.floor:.1f}", f"{r.plain_floor:.1f}", f"{r.unif_floor:.1f}",
            f"{m.wall:.1f}", *(f"{phases[p.value]:.1f}" for p in ORDER), f"{m.rest:.1f}",
            f"{m.engine:.1f}", f"{m.wall / (r.floor + r.unif_floor):.2f}x",
            f"{phases123 / r.plain_floor:.2f}x", f"{m.engine / r.unif_floor:.2f}x",
            f"{phases[ORDER[-1].value] / r.unif_floor:.2f}x", f"{m.peak_rss / 1e9:.2f}",
            f"{m.disk / 1e9:.2f}", f"{m.wall / r.rows * 1e6:.1f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def print_steps(what: str, m: RunMeasure) -> None:
    """Where a run's time went: each phase's steps, unification's tasks."""
    total_cpu = m.cpu[-1][1] if m.cpu else 0.0
    print(
        f"  {what} ({m.wall:.1f}s, {total_cpu:.1f} CPU s, peak RSS {m.peak_rss / 1e9:.2f} GB, "
        f"load {m.load:.1f}); per step: seconds (cores busy):"
    )
    cores = m.step_cores()
    for p in ORDER:
        steps = ", ".join(
            f"{n} {t:.1f} ({c:.1f})"
            for (ph, n, t), c in zip(m.steps, cores, strict=True)
            if ph == p.value
        )
        print(f"    {p.value} {m.phases[p.value]:.1f}s: {steps}")
    tasks = ", ".join(f"{n} {t:.1f}" for n, t in m.unif_tasks.items())
    print(f"    unification tasks: {tasks}; the engine itself {m.engine:.1f}")
    print(f"    rest (final report, exit) {m.rest:.1f}")
    for failure in m.failed:
        print(f"    RETRIED: an attempt failed and was retried: {failure}")


def print_outputs(r: SizeResult) -> None:
    if r.outputs is None:
        return
    total = sum(r.outputs.values())
    parts = ", ".join(f"{p} {s:.1f}" for p, s in r.outputs.items())
    print(
        f"  output floor (writing each phase's tables once, copied from the warehouse, s): "
        f"{parts}; {total:.1f} in all = {total / r.plain_floor:.2f}x the plain floor; "
        f"the full run is {r.full.wall / total:.2f}x it"
    )


def print_growth(results: list[SizeResult]) -> None:
    base = next((r for r in results if r.rows == GROWTH_BASE), results[0])
    per_row = {r.rows: r.full.wall / r.rows for r in results}
    parts = [f"{label(n)} {c / per_row[base.rows]:.2f}" for n, c in per_row.items()]
    line = f"cost per row relative to {label(base.rows)}: " + ", ".join(parts)
    if base.rows == GROWTH_BASE and 30_000_000 in per_row:
        growth = per_row[30_000_000] / per_row[base.rows] - 1
        verdict = "within" if abs(growth) <= GROWTH_LIMIT else "NOT within"
        line += f"; 3M -> 30M {growth:+.0%}, {verdict} {GROWTH_LIMIT:.0%}"
    print(line)


def print_incremental(r: SizeResult) -> None:
    inc, reb = r.incremental, r.rebuild
    if inc is None or reb is None:
        return
    print(f"\n{label(r.rows)} incremental (1% appended to every source):")
    print(
        f"  full run {r.full.wall:.1f}s; --new-run {inc.wall:.1f}s = "
        f"{inc.wall / r.full.wall:.0%} of the full run (target <= 10%); peak RSS "
        f"{inc.peak_rss / 1e9:.2f} GB"
    )
    print("  phases s (full / incremental / rebuild): " + ", ".join(
        f"{p.value} {r.full.phases[p.value]:.1f} / {inc.phases[p.value]:.1f} / "
        f"{reb.phases[p.value]:.1f}" for p in ORDER
    ))  # fmt: skip
    print_steps("incremental run", inc)
    print_steps("rebuild: a full run on a fresh workspace over the same data", reb)
    same = sum(d.identical for d in r.diffs)
    print(
        f"  tables, incremental (a) vs rebuild (b): {same} of {len(r.diffs)} identical "
        "(but for clock columns)"
    )
    for d in r.diffs:
        print(f"    {d.table}: {d.describe()}")
        for sample in d.samples:
            print(f"      {sample}")
    if r.partition:
        pc = r.partition
        print(
            f"  profiles as sets of values, ids aside (lookup, over the {pc.values:,} values "
            f"both hold): {pc.profiles_a:,} vs {pc.profiles_b:,} profiles; {pc.moved:,} "
            "values in a profile of other values"
        )
    if r.ids:
        i = r.ids
        print(
            f"  persistent ids: {i.profiles:,} profiles after run 1, {i.unchanged:,} with "
            f"exactly the same values after run 2, {i.kept:,} of those kept their id"
            + ("" if i.kept == i.unchanged else f" ({i.unchanged - i.kept:,} CHANGED)")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="1M",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        help="source rows in all, comma-separated (default 1M; e.g. 1M,3M,10M,30M)",
    )
    parser.add_argument("--incremental", action="store_true", help="append 1%% and run again")
    parser.add_argument(
        "--output-floor",
        action="store_true",
        help="also time writing each phase's finished tables once (a floor of any design)",
    )
    parser.add_argument("--dir", type=Path, help="work folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep each size's data and workspaces")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="cdp-e2e-"))
    results = []
    for rows in args.sizes:
        work = root / f"e2e-{label(rows)}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            r = measure_size(rows, work, args.incremental, args.output_floor)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        results.append(r)
        print(f"\n{label(r.rows)} full run, where the time goes (s):", flush=True)
        print_steps("full run", r.full)
        print_outputs(r)
        print_incremental(r)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\n{os.cpu_count()} cores, {memory:.0f} GiB, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print_table(results)
    print_growth(results)
    if args.dir is None and not args.keep:
        root.rmdir()


if __name__ == "__main__":
    main()
