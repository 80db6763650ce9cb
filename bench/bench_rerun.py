"""The rerun after appending 1%, in CPU seconds, for source trees side by side on one state.

    python bench/bench_rerun.py --rows 1M --dir /tmp/rr --trees /path/base,/path/branch --repeat 2

Once: the sample (`write_sample`, as bench_e2e writes it) and a full `cdp-mcp run` (with
the first tree), whose workspace and kept facts (source_memory) are kept. Then for each
repetition and each tree, alternating: the workspace and kept facts are put back, each
source file is cut back to its size after the full run and given back its mtime (the same
inode: so the kept facts know it, as they would the next day), 1% is appended
(bench_e2e's `append_one_percent`, deterministic), and `cdp-mcp run --new-run` runs with
that tree first on PYTHONPATH. Printed: user + sys CPU seconds of the process tree
(`/usr/bin/time`-style, from `os.wait4`), wall seconds, and each phase's seconds from the
run's state (bench_e2e's step times), with the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_e2e import (
    WAREHOUSE,
    append_one_percent,
    compare_warehouses,
    parse_size,
    source_counts,
    step_times,
    write_config,
)
from bench_pipeline import customers_for

from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, write_sample
from cdp_mcp.core import source_memory


def run_cli(config: Path, tree: str | None, new_run: bool, log: Path) -> tuple[float, float]:
    """`cdp-mcp run` with `tree` first on the path: (CPU seconds of the process tree, wall)."""
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    cmd = [str(Path(sys.executable).with_name("cdp-mcp")), "run", str(config)]
    cmd += ["--new-run"] if new_run else []
    os.sync()
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd="/",  # so the tree on PYTHONPATH, not the current folder, is imported
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}")
    return usage.ru_utime + usage.ru_stime, wall


def restore(work: Path, kept: Path, data: Path) -> None:
    """The workspace and kept facts as after the full run; each file at its size and mtime
    then (its inode unchanged, so the kept facts know it)."""
    for name in ("acme_cdp", "cache"):
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(kept / name, work / name, symlinks=True)
    for line in (kept / "files").read_text().splitlines():
        fname, size, mtime = line.split()
        if (kept / fname).is_file():
            shutil.copy2(kept / fname, data / fname)
        os.truncate(data / fname, int(size))
        os.utime(data / fname, ns=(int(mtime), int(mtime)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1M")
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--trees", default="", help="comma-separated source trees ('' = installed)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--compare", action="store_true", help="compare the first two trees' warehouses"
    )
    ns = ap.parse_args()
    work: Path = ns.dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    trees = ns.trees.split(",") if ns.trees else [""]
    data, kept = work / SAMPLE_FOLDER, work / "kept"
    config = write_config(work, "acme", "acme_cdp")
    os.environ[source_memory.CACHE_ENV] = str(work / "cache")
    if not kept.is_dir():
        write_sample(data, rows=customers_for(parse_size(ns.rows)))
        cpu, wall = run_cli(config, trees[0] or None, False, work / "full.log")
        print(f"full run ({trees[0] or 'installed'}): cpu {cpu:.2f} s, wall {wall:.2f} s")
        kept.mkdir()
        shutil.copytree(work / "acme_cdp", kept / "acme_cdp", symlinks=True)
        shutil.copytree(work / "cache", kept / "cache")
        for p in data.iterdir():  # a parquet file is rewritten, not appended: kept whole
            if p.suffix == ".parquet":
                shutil.copy2(p, kept / p.name)
        (kept / "files").write_text(
            "\n".join(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in data.iterdir())
        )
    counts = source_counts({p.stem: p for p in data.iterdir() if p.is_file()})
    for i in range(ns.repeat):
        for tree in trees:
            restore(work, kept, data)
            append_one_percent(data, counts)
            launched = datetime.now(UTC)
            cpu, wall = run_cli(config, tree or None, True, work / f"rerun{i}.log")
            steps = step_times(work / "acme_cdp", launched)
            phases: dict[str, float] = {}
            for phase, step, seconds in steps:
                key = f"{phase} {step.split(':')[0]}"
                phases[key] = phases.get(key, 0.0) + seconds
            rest = wall - sum(s for _, _, s in steps)
            load = os.getloadavg()[0]
            print(
                f"[{i}] {tree or 'installed'}: cpu {cpu:.2f} s, wall {wall:.2f} s, "
                f"load {load:.1f}; rest {rest:.2f}"
            )
            print("    " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()), flush=True)
            if ns.compare and i == 0:
                shutil.copy2(
                    work / "acme_cdp" / WAREHOUSE, work / f"warehouse-{trees.index(tree)}.duckdb"
                )
    if ns.compare and len(trees) > 1:
        a, b = work / "warehouse-0.duckdb", work / "warehouse-1.duckdb"
        for diff in compare_warehouses(a, b):
            print("  " + diff.describe())


if __name__ == "__main__":
    main()
