"""ID unification on the embedded backend against the in-memory floor and SQL label propagation.

Contenders, each on the same `unif_input` table (records with email, phone, customer_id) in
one DuckDB file, each run in its own process (so peak memory is its own):

- engine: `cdp_mcp.backends.local.unification` (canonical_id, full refresh): every output table TD writes
          for the id (lookup, graph, keys, tables, key stats).
- engine_enriched: the same with `run_enrichments` (TD's default): also `enriched_unif_input`.
- floor:  the same end-to-end work done as directly as possible: read the valid values
          from DuckDB, factorize them to integers (DISTINCT + rowid, no ordering), scipy's
          connected components, write (value, key, cluster) back as a table.
- lp_splink: min-label propagation in DuckDB SQL as Splink does it: neighbours table,
          representatives = smallest neighbour, repeat while any representative changed,
          propagating only from nodes that changed and setting stable clusters aside.
- lp_plain: min-label propagation as the published anchor's runner (sql-identity-resolution,
          its dbt package) does it: every label recomputed over every edge each iteration.
          Both need about as many iterations as the longest path to a cluster's smallest id.
- networkx: `connected_components` on the same integer edges (1M records or fewer).

Ratios are against the floor measured in the same run.

    python bench/bench_unification.py --records 1000000
    python bench/bench_unification.py --records 10000000 --chain-share 0   # no households
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queue_module
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from cdp_mcp.backends.local.resources import resources

KEYS = ("email", "phone", "customer_id")
# DuckDB's memory_limit for every contender: what the local warehouse sets on this machine
# (backends/local/resources.py, its overrides included); "" = DuckDB's own default.
DUCKDB_MEMORY = f"{resources().memory_limit // 1024**2}MiB"
MERGE_BY = ("email", "customer_id", "phone")
JUNK_EMAIL = "test@test.com"
NETWORKX_MAX_RECORDS = 1_000_000


# -- data -------------------------------------------------------------------------------


def generate(db: Path, records: int, chain_share: float, chain_length: int) -> dict[str, int]:
    """Deterministic records: ~2.5 per person, some values missing, a junk email (invalid),
    a shared phone on ~0.05% of records (an over-merge the report must name), and
    `chain_share` of the persons in households of `chain_length` chained by bridge records
    (u{p}@ex.com, c{p}) and (u{p+1}@ex.com, c{p}): paths of 2 * chain_length hops."""
    persons = max(1, int(records / 2.5))
    chained = int(persons * chain_share) // chain_length * chain_length
    bridges = 2 * (chained - chained // chain_length)
    regular = records - bridges
    with connect(db) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS bench_stg")
        con.execute(
            f"""CREATE OR REPLACE TABLE bench_stg.unif_input AS
            WITH r AS (SELECT i, hash(i) AS h, hash(i * 7 + 1) % {persons} AS p
                       FROM range({regular}) t(i)),
            links AS (SELECT b.p, b.p + s.side AS q FROM
                      (SELECT range AS p FROM range({chained}) WHERE range % {chain_length}
                       <> {chain_length - 1}) b, (VALUES (0), (1)) s(side))
            SELECT
              CASE WHEN h % 100 < 80 THEN 'u' || p || '@ex.com'
                   WHEN h % 100 < 88 THEN 'u' || p || '.' || (i % 3) || '@alt.com'
                   WHEN h % 1000 < 882 THEN '{JUNK_EMAIL}' END AS email,
              CASE WHEN (h >> 8) % 2000 = 0 THEN '5550000000'
                   WHEN (h >> 8) % 100 < 70
                   THEN '555' || lpad(CAST(p * 2 + (i % 2) AS VARCHAR), 8, '0') END AS phone,
              CASE WHEN (h >> 16) % 100 < 50 THEN 'c' || p END AS customer_id,
              'unif_input' AS source_table,
              1700000000 + i // 100 AS time
            FROM r
            UNION ALL
            SELECT 'u' || q || '@ex.com', NULL, 'c' || p, 'unif_input', 1700000000 + {regular} // 100
            FROM links"""
        )
        row = con.execute(
            "SELECT count(*), count(email), count(phone), count(customer_id)"
            " FROM bench_stg.unif_input"
        ).fetchall()[0]
    return dict(zip(("records", "email", "phone", "customer_id"), map(int, row), strict=True))


def request_body(enrich: bool = False) -> dict[str, Any]:
    return {
        "run_canonical_ids": True,
        "run_enrichments": enrich,  # TD's default is true: `engine_enriched` measures it
        "full_refresh": True,
        "unification": {
            "name": "bench",
            "keys": [
                {"name": "email", "valid_regexp": ".+@.+", "invalid_texts": ["", JUNK_EMAIL]},
                {"name": "phone", "invalid_texts": [""]},
                {"name": "customer_id", "invalid_texts": [""]},
            ],
            "tables": [
                {
                    "database": "bench_stg",
                    "table": "unif_input",
                    "incremental_columns": ["time"],
                    "key_columns": [{"column": k, "key": k} for k in KEYS],
                }
            ],
            "canonical_ids": [
                {"name": "unified_id", "merge_by_keys": list(MERGE_BY), "merge_iterations": 15}
            ],
        },
    }


VALUES_SQL = f"""
    SELECT * FROM (
      SELECT rowid AS rid, 1 AS kt, CAST(email AS VARCHAR) AS v FROM bench_stg.unif_input
      UNION ALL SELECT rowid, 2, CAST(phone AS VARCHAR) FROM bench_stg.unif_input
      UNION ALL SELECT rowid, 3, CAST(customer_id AS VARCHAR) FROM bench_stg.unif_input
    ) WHERE v IS NOT NULL AND v <> '' AND (kt <> 1 OR (v <> '{JUNK_EMAIL}' AND regexp_matches(v, '.+@.+')))
"""


def connect(db: str | Path, memory: str = "") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db))
    con.execute("SET enable_progress_bar = false")  # it draws on stdout
    if memory:
        con.execute("SET memory_limit = ?", [memory])
    return con


class PhaseMemory:
    """Peak RSS per phase of the engine (its log lines mark the phases), sampled."""

    def __init__(self) -> None:
        import threading

        self.phase = "reading"
        self.peaks: dict[str, float] = {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * resource.getpagesize() / 1024**3
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), round(rss, 2))
            time.sleep(0.05)

    def log(self, line: str) -> None:
        for phase in (
            "numbering",
            "building the graph",
            "running the loop",
            "writing",
            "enriching",
        ):
            if phase in line:
                self.phase = phase


def factorized_edges(
    con: duckdb.DuckDBPyConnection, values_sql: str = VALUES_SQL
) -> tuple[int, np.ndarray, np.ndarray]:
    """Valid values numbered by DISTINCT (no ordering); each value -> its record's first.
    `values_sql` yields (rid, kt, v): a record's id, a key's code and a valid value."""
    con.execute(f"CREATE TEMP TABLE vals AS {values_sql}")
    con.execute("CREATE TEMP TABLE dict AS SELECT DISTINCT kt, v FROM vals")
    n = int(con.execute("SELECT count(*) FROM dict").fetchall()[0][0])
    got = con.execute(
        "SELECT vals.rid, d.rowid AS node FROM vals JOIN dict d USING (kt, v)"
    ).fetchnumpy()
    rid, node = np.asarray(got["rid"], np.int64), np.asarray(got["node"], np.int64)
    del got
    first = np.full(int(rid.max()) + 1 if len(rid) else 0, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, rid, node)
    return n, node, first[rid]


def floor_components(
    con: duckdb.DuckDBPyConnection, n: int, follower: np.ndarray, leader: np.ndarray, target: str
) -> tuple[int, float]:
    """scipy's connected components of the edges, (value, key, cluster) written back to
    `target`; returns the clusters and the seconds of the components step alone."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    start = time.perf_counter()
    keep = follower != leader
    graph = coo_matrix(
        (np.ones(int(keep.sum()), np.int8), (follower[keep], leader[keep])), shape=(n, n)
    ).tocsr()
    count, labels = connected_components(graph, directed=False)
    cc_seconds = time.perf_counter() - start
    con.register("labels", {"cluster": labels.astype(np.int64)})
    con.execute(
        f"CREATE OR REPLACE TABLE {target} AS"
        " SELECT d.v AS id, d.kt AS id_key_type, l.cluster FROM dict d POSITIONAL JOIN labels l"
    )
    return int(count), cc_seconds


# -- contenders (each runs in a child process) ------------------------------------------


def run_engine(db: str, enrich: bool = False) -> dict[str, Any]:
    from cdp_mcp.backends.local.unification import parse_request
    from cdp_mcp.backends.local.unification.engine import unify

    memory = PhaseMemory()
    with connect(db, DUCKDB_MEMORY) as con:
        (summary,) = unify(con, parse_request(request_body(enrich)), log=memory.log)
    r = summary.record
    return {
        "profiles": r.profiles,
        "values": r.values_total,
        "iterations": r.iterations_used,
        "over_merge_warnings": r.over_merge_warnings,
        "cc_seconds": summary.timings["loop"],
        "phases": summary.timings,
        # peak RSS (GB) while reading, numbering, building the graph, looping, writing
        "phase_peak_gb": dict(zip(summary.timings, memory.peaks.values(), strict=False)),
    }


def run_floor(db: str) -> dict[str, Any]:
    with connect(db, DUCKDB_MEMORY) as con:
        n, follower, leader = factorized_edges(con)
        count, cc_seconds = floor_components(con, n, follower, leader, "bench_stg.floor_lookup")
    return {"profiles": count, "values": n, "cc_seconds": cc_seconds}


def run_label_propagation(db: str) -> dict[str, Any]:
    """Splink's connected components (splink/internals/connected_components.py) in DuckDB:
    representatives start as the smallest neighbour; each iteration takes the smallest
    representative over the neighbours that changed, and first sets aside clusters that
    are stable (no neighbour outside), as Splink does."""
    with connect(db) as con:
        n, follower, leader = factorized_edges(con)
        con.register("e", {"a": follower, "b": leader})
        con.execute(
            """CREATE TEMP TABLE nb0 AS
               SELECT a AS node_id, b AS neighbour FROM e UNION
               SELECT b, a FROM e UNION SELECT a, a FROM e"""
        )
        con.execute(
            """CREATE TEMP TABLE r0 AS
               WITH first AS (SELECT node_id, min(neighbour) AS representative
                              FROM nb0 GROUP BY node_id),
               second AS (SELECT n.node_id, min(f.representative) AS representative
                          FROM nb0 n JOIN first f ON n.neighbour = f.node_id GROUP BY n.node_id)
               SELECT s.node_id, s.representative, s.representative <> f.representative
                 AS needs_updating
               FROM second s JOIN first f USING (node_id)"""
        )
        con.execute("CREATE TEMP TABLE stable (node_id BIGINT, representative BIGINT)")
        iterations, prev, nb = 1, "r0", "nb0"
        start = time.perf_counter()
        while True:
            iterations += 1
            con.execute(
                f"""INSERT INTO stable SELECT node_id, representative FROM {prev}
                    WHERE representative NOT IN (
                      SELECT DISTINCT r.representative FROM {prev} r
                      JOIN {nb} n ON r.node_id = n.node_id
                      JOIN {prev} r2 ON n.neighbour = r2.node_id
                      WHERE r.representative <> r2.representative)"""
            )
            thin, nb_thin = f"t{iterations}", f"nb{iterations}"
            con.execute(
                f"""CREATE TEMP TABLE {thin} AS SELECT * FROM {prev} p WHERE NOT EXISTS (
                      SELECT 1 FROM stable s WHERE s.node_id = p.node_id)"""
            )
            con.execute(
                f"CREATE TEMP TABLE {nb_thin} AS SELECT * FROM {nb}"
                f" WHERE node_id IN (SELECT node_id FROM {thin})"
            )
            cur = f"r{iterations}"
            con.execute(
                f"""CREATE TEMP TABLE {cur} AS
                WITH r AS (
                  SELECT node_id, min(representative) AS representative FROM (
                    SELECT n.node_id, p.representative FROM {nb_thin} n
                    JOIN {thin} p ON n.neighbour = p.node_id WHERE p.needs_updating
                    UNION ALL SELECT node_id, representative FROM {thin}) GROUP BY node_id)
                SELECT r.node_id, r.representative, r.representative <> p.representative
                  AS needs_updating
                FROM r JOIN {thin} p USING (node_id)"""
            )
            for old_table in (prev, thin, nb):
                con.execute(f"DROP TABLE {old_table}")
            prev, nb = cur, nb_thin
            changed = con.execute(f"SELECT count(*) FROM {cur} WHERE needs_updating").fetchall()
            if int(changed[0][0]) == 0:
                break
        cc_seconds = time.perf_counter() - start
        con.execute(
            f"""CREATE OR REPLACE TABLE bench_stg.lp_lookup AS
                WITH r AS (SELECT node_id, representative FROM stable
                           UNION ALL SELECT node_id, representative FROM {prev})
                SELECT d.v AS id, d.kt AS id_key_type, r.representative AS cluster
                FROM (SELECT rowid AS node_id, * FROM dict) d JOIN r USING (node_id)"""
        )
        profiles = con.execute(
            "SELECT count(DISTINCT cluster) FROM bench_stg.lp_lookup"
        ).fetchall()[0][0]
    return {
        "profiles": int(profiles),
        "values": n,
        "iterations": iterations,
        "cc_seconds": cc_seconds,
    }


def run_label_propagation_plain(db: str) -> dict[str, Any]:
    """The published anchor's loop (sql-identity-resolution's DuckDB runner, as its dbt
    package): every iteration recomputes every label as the smallest over the node and its
    neighbours, until no label changes (run to the end here, not capped at 30)."""
    with connect(db) as con:
        n, follower, leader = factorized_edges(con)
        keep = follower != leader
        con.register("e", {"a": follower[keep], "b": leader[keep]})
        con.execute(
            "CREATE TEMP TABLE undirected AS SELECT a AS src, b AS dst FROM e"
            " UNION ALL SELECT b, a FROM e"
        )
        con.execute(
            f"CREATE TEMP TABLE labels AS SELECT range AS node_id, range AS label FROM range({n})"
        )
        iterations = 0
        start = time.perf_counter()
        while True:
            iterations += 1
            con.execute(
                """CREATE OR REPLACE TEMP TABLE labels_next AS
                   SELECT node_id, min(label) AS label FROM (
                     SELECT node_id, label FROM labels
                     UNION ALL
                     SELECT u.src, l.label FROM undirected u JOIN labels l ON l.node_id = u.dst)
                   GROUP BY node_id"""
            )
            changed = con.execute(
                "SELECT count(*) FROM labels JOIN labels_next n USING (node_id)"
                " WHERE labels.label <> n.label"
            ).fetchall()[0][0]
            con.execute("DROP TABLE labels")
            con.execute("ALTER TABLE labels_next RENAME TO labels")
            if int(changed) == 0:
                break
        cc_seconds = time.perf_counter() - start
        con.execute(
            """CREATE OR REPLACE TABLE bench_stg.lp_plain_lookup AS
               SELECT d.v AS id, d.kt AS id_key_type, l.label AS cluster
               FROM (SELECT rowid AS node_id, * FROM dict) d JOIN labels l USING (node_id)"""
        )
        profiles = con.execute("SELECT count(DISTINCT label) FROM labels").fetchall()[0][0]
    return {
        "profiles": int(profiles),
        "values": n,
        "iterations": iterations,
        "cc_seconds": cc_seconds,
    }


def run_networkx(db: str) -> dict[str, Any]:
    import networkx as nx

    with connect(db) as con:
        n, follower, leader = factorized_edges(con)
    start = time.perf_counter()
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(follower.tolist(), leader.tolist(), strict=True))
    profiles = nx.number_connected_components(graph)
    return {"profiles": profiles, "values": n, "cc_seconds": time.perf_counter() - start}


def run_engine_enriched(db: str) -> dict[str, Any]:
    return run_engine(db, enrich=True)


CONTENDERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "floor": run_floor,
    "engine": run_engine,
    "engine_enriched": run_engine_enriched,
    "lp_splink": run_label_propagation,
    "lp_plain": run_label_propagation_plain,
    "networkx": run_networkx,
}


def _child(name: str, db: str, queue: Any, memory: str) -> None:
    global DUCKDB_MEMORY
    DUCKDB_MEMORY = memory
    start, cpu = time.perf_counter(), _cpu_seconds()
    result = CONTENDERS[name](db)
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = _cpu_seconds() - cpu  # every thread's, DuckDB's included
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    queue.put(result)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, db: Path, memory: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # a fresh process: its peak memory is this contender's
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, str(db), queue, memory))
    proc.start()
    while proc.is_alive() or not queue.empty():
        try:
            result = queue.get(timeout=1)
            break
        except queue_module.Empty:  # still running, or died without a result
            continue
    else:
        raise SystemExit(f"{name} ended without a result (exit code {proc.exitcode})")
    proc.join()
    return dict(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--chain-share", type=float, default=0.02, help="share of persons in chained households"
    )
    parser.add_argument("--chain-length", type=int, default=16, help="persons per household")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(CONTENDERS))
    parser.add_argument("--workdir", type=Path, default=None, help="where the DuckDB file goes")
    parser.add_argument(
        "--duckdb-memory",
        default=DUCKDB_MEMORY,
        help="DuckDB memory_limit of the floor and the engine ('' = DuckDB's default, 80%% of RAM)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        db = Path(tmp) / "bench.duckdb"
        start = time.perf_counter()
        counts = generate(db, args.records, args.chain_share, args.chain_length)
        print(f"data: {counts} in {time.perf_counter() - start:.1f}s", flush=True)
        results: dict[str, dict[str, Any]] = {}
        for name in CONTENDERS:
            if name in args.skip or (name == "networkx" and args.records > NETWORKX_MAX_RECORDS):
                continue
            results[name] = measure(name, db, args.duckdb_memory)
            print(f"{name}: {results[name]}", flush=True)
    floor = results.get("floor", {}).get("seconds")
    floor_cpu = results.get("floor", {}).get("cpu_seconds")
    print(
        f"\n{args.records:,} records, {sum(counts[k] for k in KEYS):,} key values,"
        f" DuckDB memory_limit {args.duckdb_memory or 'default'} (floor and engine),"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'contender':<12}{'seconds':>9}{'x floor':>9}{'cpu s':>8}{'x floor':>9}{'cc step s':>11}"
        f"{'iterations':>12}{'profiles':>12}{'peak GB':>9}"
    )
    for name, r in results.items():
        ratio = f"{r['seconds'] / floor:.2f}" if floor else "-"
        cpu_ratio = f"{r['cpu_seconds'] / floor_cpu:.2f}" if floor_cpu else "-"
        print(
            f"{name:<12}{r['seconds']:>9.1f}{ratio:>9}{r['cpu_seconds']:>8.1f}{cpu_ratio:>9}"
            f"{r['cc_seconds']:>11.1f}"
            f"{r.get('iterations', '-'):>12}{r['profiles']:>12,}{r['peak_rss_gb']:>9.2f}"
        )
    if "engine" in results:
        print(f"engine phases (s): {results['engine']['phases']}")
        print(f"engine peak RSS per phase (GB): {results['engine']['phase_peak_gb']}")
    for lp in ("lp_splink", "lp_plain"):
        if "engine" in results and lp in results:
            speedup = results[lp]["seconds"] / results["engine"]["seconds"]
            print(f"{lp} / engine: {speedup:.2f} end to end")
    profiles = {r["profiles"] for r in results.values()}
    if len(profiles) > 1:
        print(f"WARNING: contenders disagree on the number of profiles: {profiles}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
