"""Rows per second through ingestion + hist-union + staging on the embedded backend.

The floor is DuckDB copying the same source files into tables (`CREATE TABLE AS SELECT *
FROM <file>`), measured in the same run on the same machine; the figure that matters is the
ratio of the pipeline's time to the floor's. The pipeline's time includes learning the
source schemas (which generation does), from a cold cache in every repetition.

    python bench/bench_pipeline.py --rows 1000000 --repeat 5

Each repetition measures the floor and then the pipeline on a fresh workspace; the ratio
reported is the median of the per-repetition ratios (this VM's disk makes single runs
vary by +-20%).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import duckdb

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.backends.local.warehouse import Storage
from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, write_sample, write_sample_config
from cdp_mcp.core import source_memory
from cdp_mcp.core.config import load_config
from cdp_mcp.core.file_source import _cached_description, _cached_json_keys
from cdp_mcp.core.phases import Phase, project_name, workflows
from cdp_mcp.core.sqltext import sql_string
from cdp_mcp.generate import generate
from cdp_mcp.generate.schemas import predicted_schemas

PHASES = (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING)


def customers_for(total_rows: int) -> int:
    # write_sample(n) writes n customers, n orders and n/50 products, each plus ~5% updates.
    return max(100, round(total_rows / (2.02 * 1.05)))


def floor_seconds(
    files: dict[str, Path], db_path: Path, plain_text: bool = False
) -> tuple[float, int]:
    """DuckDB copying the files into tables; `plain_text` stores text as `fast` storage does."""
    db_path.unlink(missing_ok=True)
    os.sync()  # no dirty pages of an earlier measurement still being written
    start = time.perf_counter()
    with duckdb.connect(str(db_path)) as con:
        if plain_text:
            con.execute("SET disabled_compression_methods = 'dict_fsst'")
        rows = 0
        for obj, path in files.items():
            con.execute(f"CREATE TABLE {obj} AS SELECT * FROM {sql_string(str(path))}")
            row = con.execute(f"SELECT count(*) FROM {obj}").fetchone()
            rows += int(row[0]) if row else 0
    return time.perf_counter() - start, rows


async def pipeline_seconds(config: Path, storage: Storage) -> dict[str, float]:
    cfg = load_config(config)
    backend = LocalBackend(cfg.workspace, storage=storage)
    session = datetime.now(UTC).replace(microsecond=0)
    timings: dict[str, float] = {}
    # Learning the source schemas is part of the pipeline's work (generation reads them),
    # so it is timed with ingestion, from a cold cache in every repetition.
    _cached_description.cache_clear()
    _cached_json_keys.cache_clear()
    source_memory.forget_all()  # and what earlier runs kept about the files
    start = time.perf_counter()
    schemas = predicted_schemas(cfg)
    discovery = time.perf_counter() - start
    for phase in PHASES:
        start = time.perf_counter() - (discovery if phase is Phase.INGESTION else 0.0)
        project = generate(cfg, phase, schemas)
        await backend.push(project_name(cfg, phase), project.directory)
        for wf in workflows(cfg, phase):
            attempt = await backend.start(project_name(cfg, phase), wf, session_time=session)
            done = await backend.wait(attempt.id, timeout=3600)
            if done.status != "success":
                raise SystemExit(f"{wf} ended {done.status}; see `cdp-mcp wf log {done.id}`")
        timings[phase.value] = time.perf_counter() - start
    return timings


def _measured_child(config: Path, storage: Storage, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    timings = anyio.run(pipeline_seconds, config, storage)
    out.put((timings, _peak_rss()))


def _peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, which starts afresh at exec (ru_maxrss keeps
    the parent's size at fork, here the sample writer's gigabytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


def in_spawned_process(target: Callable[..., None], *args: Any) -> Any:
    """What `target(*args, queue)` puts on the queue, run in a fresh (spawned) process, so
    this process's memory and imports count in none of its measures."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, out))
    child.start()
    result = out.get()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"the measured process ended with exit code {child.exitcode}")
    return result


def measured_pipeline(config: Path, storage: Storage) -> tuple[dict[str, float], int]:
    """The pipeline's phase times and peak RSS (bytes), run in a fresh process so neither the
    sample writer nor the floor's DuckDB (at its defaults) counts in the peak."""
    return in_spawned_process(_measured_child, config, storage)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="source rows in all")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temp folder)")
    parser.add_argument(
        "--storage",
        choices=["fast", "compact"],
        default="fast",
        help="the warehouse's global.local_storage (default fast, as the config's default)",
    )
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    files = write_sample(work / SAMPLE_FOLDER, rows=customers_for(args.rows))
    config = write_sample_config(work)
    floors, plain_floors, pipelines, ratios, peaks = [], [], [], [], []
    for rep in range(1, args.repeat + 1):
        shutil.rmtree(work / "acme_cdp", ignore_errors=True)
        floor, source_rows = floor_seconds(files, work / "floor.duckdb")
        plain, _ = floor_seconds(files, work / "floor.duckdb", plain_text=True)
        os.sync()
        timings, peak = measured_pipeline(config, args.storage)
        peaks.append(peak)
        total = sum(timings.values())
        floors.append(floor)
        plain_floors.append(plain)
        pipelines.append(total)
        ratios.append(total / floor)
        phases = ", ".join(f"{p} {t:.2f}s" for p, t in timings.items())
        print(
            f"run {rep}: floor {floor:.2f}s (plain text {plain:.2f}s), pipeline {total:.2f}s "
            f"({phases}), ratio {total / floor:.2f}x (plain text {total / plain:.2f}x), "
            f"{source_rows / total:,.0f} rows/s, pipeline peak RSS {peak / 1024**3:.2f} GiB"
        )
    print(f"source rows: {source_rows:,} in {', '.join(p.name for p in files.values())}")
    print(f"warehouse storage: {args.storage}")
    median = statistics.median
    print(
        f"ratio pipeline / floor: median {median(ratios):.2f}x, best {min(ratios):.2f}x, worst "
        f"{max(ratios):.2f}x over {len(ratios)} runs (target: within 4x); "
        f"of the medians {median(pipelines) / median(floors):.2f}x; against the floor with "
        f"text stored plainly {median(pipelines) / median(plain_floors):.2f}x"
    )


if __name__ == "__main__":
    main()
