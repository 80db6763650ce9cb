"""The validate step of staging and unification on a kept workspace, query by query.

Runs what the orchestrator's validate step runs (the phase's schemas, then validate_phase)
against the workspace's warehouse, and prints each backend call with the process's CPU
seconds it took (user+sys of every thread: DuckDB's workers included), the step's total,
and the findings as JSON (`--out`), so two trees' verdicts can be diffed on the same data.

    python bench/bench_validate.py /tmp/x/e2e-1M/acme.yml --repeat 3 --out findings.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import anyio

from cdp_mcp.backends.factory import make_backend
from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import Phase
from cdp_mcp.pipeline import stages
from cdp_mcp.pipeline.schemas import phase_schemas
from cdp_mcp.pipeline.state import StateStore
from cdp_mcp.pipeline.validate import validate_phase


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Recorder:
    """Wraps a backend's query and tables calls, recording (kind, text, CPU s, wall s)."""

    def __init__(self, backend: Any) -> None:
        self.calls: list[tuple[str, str, float, float]] = []
        for name in ("query", "tables"):
            setattr(backend, name, self._wrap(name, getattr(backend, name)))

    def _wrap(self, kind: str, fn: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            c0, w0 = cpu(), time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.calls.append((kind, str(args[0]), cpu() - c0, time.perf_counter() - w0))

        return call


async def validate_once(config: Path, phase: Phase) -> tuple[float, list[Any], dict[str, Any]]:
    cfg = load_config(config)
    state = StateStore(cfg.workspace).load()
    ps = state.phase(phase) if phase is Phase.UNIFICATION else state.of_phase(phase)[0]
    view = stages.config_of(cfg, state, ps)
    backend = make_backend(cfg)
    rec = Recorder(backend)
    c0 = cpu()
    schemas = await phase_schemas(view, backend, phase, for_validation=True)
    schema_cpu = cpu() - c0
    findings = await validate_phase(view, phase, backend, schemas, ps.before_added)
    total = cpu() - c0
    rec.calls.insert(0, ("schemas", "phase_schemas", schema_cpu, 0.0))
    await backend.aclose()
    return total, rec.calls, findings.model_dump(mode="json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--phases", default="staging,unification")
    ap.add_argument("--repeat", type=int, default=3, help="runs per phase; the best is shown")
    ap.add_argument("--out", type=Path, help="write the findings of each phase as JSON")
    ap.add_argument("--dump", type=Path, help="write each query's SQL into this folder")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    for name in args.phases.split(","):
        phase = Phase(name)
        runs = [anyio.run(validate_once, args.config, phase) for _ in range(args.repeat)]
        totals = [r[0] for r in runs]
        best = min(runs, key=lambda r: r[0])
        print(f"{name}: validate CPU s, runs: {' '.join(f'{t:.2f}' for t in totals)}")
        # per call: the best of the runs (calls are the same list in every run)
        for i, (kind, text, _, _) in enumerate(best[1]):
            c = min(r[1][i][2] for r in runs)
            w = min(r[1][i][3] for r in runs)
            short = " ".join(text.split())[:150]
            print(f"  {c:6.2f} cpu {w:6.2f} wall  {kind:7} {short}")
        out[name] = best[2]
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            queries = [text for kind, text, _, _ in best[1] if kind == "query"]
            for i, text in enumerate(queries):
                (args.dump / f"{name}_{i:02d}.sql").write_text(text + "\n")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
