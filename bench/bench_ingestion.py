"""Ingestion alone, step by step, in CPU seconds: a full run and a rerun after appending 1%.

    python bench/bench_ingestion.py --rows 1M --dir /tmp/ing --repeat 2

The sample (`write_sample`, as bench_e2e writes it) is written once into `--dir` and copied
afresh for each repetition, so every repetition reads the same bytes. Each repetition runs,
in a fresh process (so nothing of one repetition is cached in the next's memory):
- **full**: a fresh workspace with nothing kept about the files (source_memory), then
  ingestion's steps as `cdp-mcp run` takes them (the Pipeline's next actions): generation
  (which learns the source schemas), push, the backfill and incremental workflows, and
  validation (which counts each file's rows with the loader's reader);
- **rerun**: 1% appended to every file (bench_e2e's `append_one_percent`), then, in another
  fresh process, `init(new_run=True)` and the same steps.

Per step: CPU seconds of the process (user + sys, DuckDB's threads included) and wall
seconds; per workflow task: wall seconds from the backend's task records. The load average
is printed with each repetition: the machine is shared, so compare CPU seconds of runs made
side by side (e.g. two source trees alternating: `PYTHONPATH=/other/tree python ...`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from cdp_mcp.cli.demo_data import SAMPLE_CONFIG, SAMPLE_FOLDER, write_sample
from cdp_mcp.core import source_memory
from cdp_mcp.core.phases import Phase
from cdp_mcp.core.tools import ToolName
from cdp_mcp.pipeline.models import NextAction
from cdp_mcp.pipeline.orchestrator import Pipeline

sys.path.insert(0, str(Path(__file__).parent))
from bench_e2e import append_one_percent, parse_size, source_counts
from bench_pipeline import customers_for, in_spawned_process

Step = dict[str, Any]


def short_task(full_name: str) -> str:
    """`+wf+load_x^sub+for-0=datasource=2=...+load` -> `#2 +load` (the datasource's index:
    for_each> cuts the value itself to 8 characters)."""
    parts = full_name.split("+")
    found = (re.match(r"for-\d+=[^=]*=(\d+)=", p) for p in parts)
    where = next((f"#{m[1]}" for m in found if m), "")
    return f"{where} +{parts[-1]}".strip()


def cpu() -> float:
    t = os.times()
    return t.user + t.system


async def ingestion_steps(config: Path, new_run: bool) -> list[Step]:
    """Ingestion's steps, as `cdp-mcp run` drives them, each with its CPU and wall seconds."""
    c0, w0 = cpu(), time.perf_counter()
    init = await Pipeline(str(config)).init(new_run=new_run)
    steps: list[Step] = [{"step": "init", "cpu": cpu() - c0, "wall": time.perf_counter() - w0}]
    action = init.next_action
    for _ in range(100):
        phase = action.arguments.get("phase", Phase.INGESTION.value)  # get_session: none
        if phase != Phase.INGESTION.value:
            return steps
        c0, w0 = cpu(), time.perf_counter()
        name, tasks, action = await take(Pipeline(str(config)), action)
        step: Step = {"step": name, "cpu": cpu() - c0, "wall": time.perf_counter() - w0}
        if tasks:
            step["tasks"] = {k: round(v, 3) for k, v in tasks.items() if v >= 0.05}
        if name:
            steps.append(step)
    raise SystemExit("ingestion did not finish in 100 steps")


async def take(p: Pipeline, action: NextAction) -> tuple[str, dict[str, float], NextAction]:
    """One next action: its step's name ('' for a session poll), a workflow's task seconds
    and the action after it."""
    args = action.arguments
    if action.tool == ToolName.GENERATE_PHASE:
        return "generate_phase", {}, (await p.generate_phase(args["phase"])).next_action
    if action.tool == ToolName.PUSH_PROJECT:
        return "push_project", {}, (await p.push_project(args["phase"])).next_action
    if action.tool == ToolName.GET_SESSION:
        return "", {}, (await p.get_session(args.get("session_id"), wait_seconds=30)).next_action
    if action.tool == ToolName.VALIDATE_TABLES:
        done = await p.validate_tables(args["phase"], accept_warnings=True)
        return "validate_tables", {}, done.next_action
    if action.tool != ToolName.START_WORKFLOW:
        raise SystemExit(f"ingestion wants {action.tool}: {action.why}")
    start = await p.start_workflow(args["phase"], args.get("workflow"))
    ended = await p.backend.wait(start.attempt_id, timeout=3600)
    if ended.status != "success":
        raise SystemExit(f"{start.workflow} ended {ended.status}")
    tasks = {
        short_task(t.full_name): (t.updated_at - t.started_at).total_seconds()
        for t in await p.backend.tasks(start.attempt_id)
        if t.started_at and t.updated_at and not t.is_group
    }
    return f"run {start.workflow}", tasks, start.next_action


def _child(config: Path, new_run: bool, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(anyio.run(ingestion_steps, config, new_run))


def in_fresh_process(config: Path, new_run: bool) -> list[Step]:
    return in_spawned_process(_child, config, new_run)  # type: ignore[no-any-return]


def print_steps(what: str, steps: list[Step]) -> None:
    total_cpu = sum(s["cpu"] for s in steps)
    total_wall = sum(s["wall"] for s in steps)
    load = os.getloadavg()[0]
    print(f"{what}: {total_cpu:.2f} s CPU, {total_wall:.2f} s wall (load {load:.1f})")
    for s in steps:
        print(f"  {s['step']:<40} cpu {s['cpu']:7.2f}  wall {s['wall']:7.2f}")
        for task, took in (s.get("tasks") or {}).items():
            print(f"      {task:<50} {took:7.2f}")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1M", help="source rows in all (1M, 3M, ...)")
    ap.add_argument("--dir", required=True, type=Path, help="work folder (the sample is kept)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", type=Path, help="append each repetition's steps to this file")
    ap.add_argument("--keep", action="store_true", help="keep the last repetition's folder")
    ns = ap.parse_args()
    rows = parse_size(ns.rows)
    work: Path = ns.dir
    sample = work / "sample"
    if not (sample / "orders.jsonl").is_file():
        shutil.rmtree(sample, ignore_errors=True)
        write_sample(sample, rows=customers_for(rows))
    counts = source_counts({p.stem: p for p in sample.iterdir() if p.is_file()})
    import cdp_mcp

    print(f"cdp_mcp from {Path(cdp_mcp.__file__).parent}; {sum(counts.values()):,} source rows")
    for i in range(ns.repeat):
        run = work / f"run{i}"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(sample, run / SAMPLE_FOLDER)
        config = run / "acme.yml"
        text = SAMPLE_CONFIG.replace("global:\n", "global:\n  workspace: ./acme_cdp\n", 1)
        config.write_text(text, encoding="utf-8")
        os.environ[source_memory.CACHE_ENV] = str(run / "cache")  # nothing kept: cold
        os.sync()
        full = in_fresh_process(config, new_run=False)
        print_steps(f"[{i}] full", full)
        append_one_percent(run / SAMPLE_FOLDER, counts)
        os.sync()
        rerun = in_fresh_process(config, new_run=True)
        print_steps(f"[{i}] rerun", rerun)
        if ns.json:
            with ns.json.open("a") as fh:
                fh.write(
                    json.dumps(
                        {
                            "tree": str(Path(cdp_mcp.__file__).parent),
                            "full": full,
                            "rerun": rerun,
                            "load": os.getloadavg()[0],
                        }
                    )
                    + "\n"
                )
        if not (ns.keep and i == ns.repeat - 1):
            shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
