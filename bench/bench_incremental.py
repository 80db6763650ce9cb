"""Incremental ID unification against the full run it follows: is its cost proportional to
the change?

On bench_unification's records (persistent_id, with `run_enrichments`):
1. full: a full run over the records (the floor the incremental run is measured against);
2. append `--share` of new records after the watermark: mostly new people, some new values
   of existing people, some records that merge two existing people;
3. incremental: `full_refresh: false`, timed per phase (read .. write, then enrichment).

Printed: both wall times, the ratio, and the phases of each.

    python bench/bench_incremental.py --records 1000000
    flock /tmp/cdp-big.lock python bench/bench_incremental.py --records 10000000
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_unification import connect, generate, request_body


def persistent_body(full_refresh: bool) -> dict[str, Any]:
    body = copy.deepcopy(request_body(enrich=True))
    body.pop("run_canonical_ids")
    body["run_persistent_ids"] = True
    body["full_refresh"] = full_refresh
    doc = body["unification"]
    doc["persistent_ids"] = doc.pop("canonical_ids")
    return body


def append(db: Path, share: float) -> int:
    """Append new records after the last `time`: 80% new people, 15% a new value of an
    existing person, 5% a record joining two existing people."""
    with connect(db) as con:
        n, last, persons = con.execute(
            "SELECT count(*), max(time), count(DISTINCT email) FROM bench_stg.unif_input"
        ).fetchall()[0]
        k = max(1, int(n * share))
        t = int(last) + 3600
        con.execute(
            f"""INSERT INTO bench_stg.unif_input
            SELECT
              CASE WHEN i % 20 < 16 THEN 'new' || i || '@ex.com'
                   ELSE 'u' || (hash(i) % {persons}) || '@ex.com' END,
              CASE WHEN i % 20 < 16 THEN '777' || lpad(CAST(i AS VARCHAR), 8, '0')
                   WHEN i % 20 < 19 THEN '888' || lpad(CAST(i AS VARCHAR), 8, '0')
                   ELSE '555' || lpad(CAST((hash(i * 3) % {persons}) * 2 AS VARCHAR), 8, '0')
                   END,
              NULL, 'unif_input', {t}
            FROM range({k}) r(i)"""
        )
    return k


def run(db: Path, full_refresh: bool) -> dict[str, Any]:
    from cdp_mcp.backends.local.unification import parse_request
    from cdp_mcp.backends.local.unification.engine import unify

    with connect(db) as con:
        start = time.perf_counter()
        (summary,) = unify(con, parse_request(persistent_body(full_refresh)))
        wall = time.perf_counter() - start
    return {
        "mode": summary.record.mode,
        "seconds": round(wall, 2),
        "records_read": summary.record.records_read,
        "profiles": summary.record.profiles,
        "phases": summary.timings,
        "enrich": round(wall - sum(summary.timings.values()), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--share", type=float, default=0.01, help="appended records / records")
    ap.add_argument("--dir", type=Path, default=None, help="where the DuckDB file goes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = Path(tmp) / "bench.duckdb"
        generate(db, args.records, 0.02, 4)
        with connect(db) as con:  # `time` is the load time in the pipeline: one per load
            con.execute("UPDATE bench_stg.unif_input SET time = 1700000000")
        full = run(db, full_refresh=True)
        added = append(db, args.share)
        inc = run(db, full_refresh=False)
    print(f"records {args.records:,}, appended {added:,}")
    for r in (full, inc):
        print(
            f"  {r['mode']:<12} {r['seconds']:>7.2f}s  read {r['records_read']:>10,}"
            f"  profiles {r['profiles']:>10,}  phases {r['phases']} enrich {r['enrich']}s"
        )
    print(f"  incremental / full: {inc['seconds'] / full['seconds']:.3f}")


if __name__ == "__main__":
    main()
