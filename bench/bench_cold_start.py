"""Cold start: from spawning `cdp-mcp serve` to its answer to `tools/list`, over stdio.

Each contender starts as a fresh process (no warm module cache but the OS's) and a client
speaks raw JSON-RPC lines on its pipes: `initialize`, `notifications/initialized`,
`tools/list`; the time is from the spawn to the tools/list answer. Floors, measured in the
same run and interleaved with it (round by round, so a busy machine slows all alike):

- python:    `python -c pass`, spawn to exit (the interpreter's start).
- sdk_floor: a minimal `MCPServer` with one tool, answering the same handshake (what the
             MCP SDK itself costs: importing it, building a server, serving stdio).
- serve:     `cdp-mcp serve` (the installed console script beside this interpreter).
- before:    with `--before DIR`, the same script on another source tree (PYTHONPATH=DIR,
             e.g. `git archive main | tar -x -C DIR`): a change against its base, same run.

The figure that matters is serve against sdk_floor (what cdp-mcp adds to the SDK); the
absolute median is what a client waits for. `--breakdown` also runs `serve` once under
`python -X importtime` and sums the import time by top-level package.

    python bench/bench_cold_start.py --repeat 5
    python bench/bench_cold_start.py --repeat 5 --breakdown
    python bench/bench_cold_start.py --repeat 5 --before /tmp/cdp-main
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

TIMEOUT_S = 120.0
PROTOCOL = "2025-11-25"

SDK_FLOOR = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("floor")


@server.tool()
def echo(text: str) -> str:
    '''Say the text back.'''
    return text


server.run("stdio")
"""


def serve_command() -> list[str]:
    """The console script a client configures, from this interpreter's environment."""
    script = Path(sys.executable).with_name("cdp-mcp")
    if script.is_file():
        return [str(script), "serve"]
    found = shutil.which("cdp-mcp")
    if found:
        return [found, "serve"]
    return [sys.executable, *serve_module()]


def serve_module() -> list[str]:
    return ["-m", "cdp_mcp.cli.main", "serve"]


def _send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    stdin.write(json.dumps(message).encode() + b"\n")
    stdin.flush()


def _answer(stdout: IO[bytes], request_id: int) -> dict[str, Any]:
    """The response to `request_id` (skipping the server's notifications and log lines)."""
    while True:
        line = stdout.readline()
        if not line:
            raise RuntimeError("the server closed its output before answering")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict) and message.get("id") == request_id:
            if "error" in message:
                raise RuntimeError(f"the server refused request {request_id}: {message['error']}")
            return message


@dataclass(frozen=True)
class Start:
    wall: float  # spawn to the tools/list answer (a bare python: to its exit)
    cpu: float  # the process's user + system time over its whole life (through its exit)
    tools: int = 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_to_tool_list(
    command: list[str], cwd: Path, log: Path | None = None, env: dict[str, str] | None = None
) -> Start:
    """One fresh server answering initialize and tools/list (its stderr goes to `log`)."""
    cpu_before = _children_cpu()
    with log.open("w+b") if log else tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=cwd, env=env
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _send(
                proc.stdin,
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": PROTOCOL,
                        "capabilities": {},
                        "clientInfo": {"name": "bench_cold_start", "version": "1"},
                    },
                },
            )
            _answer(proc.stdout, 1)
            _send(proc.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            _send(proc.stdin, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
            tools = _answer(proc.stdout, 2)["result"]["tools"]
            elapsed = time.perf_counter() - start
        except Exception:
            proc.kill()
            proc.wait()
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace")[-4000:])
            raise
        finally:
            proc.stdin.close()  # end of input: a stdio server exits
            try:
                proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return Start(elapsed, _children_cpu() - cpu_before, len(tools))


def time_bare_python(cwd: Path) -> Start:
    cpu_before = _children_cpu()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=cwd)
    return Start(time.perf_counter() - start, _children_cpu() - cpu_before)


def import_breakdown(cwd: Path, top: int) -> list[tuple[str, float]]:
    """Self import time summed by top-level package, for one `serve` answering tools/list."""
    log = cwd / "importtime.log"
    time_to_tool_list([sys.executable, "-X", "importtime", *serve_module()], cwd, log)
    text = log.read_text(encoding="utf-8", errors="replace")
    totals: dict[str, float] = defaultdict(float)
    for match in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \| \s*([\w.]+)", text):
        package = match.group(2).split(".")[0]
        if package == "cdp_mcp":
            package = ".".join(match.group(2).split(".")[:2])
        totals[package] += int(match.group(1)) / 1e6
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per contender")
    parser.add_argument(
        "--breakdown", action="store_true", help="also sum serve's import time by package"
    )
    parser.add_argument("--top", type=int, default=15, help="packages in the breakdown")
    parser.add_argument(
        "--before", type=Path, help="also time serve from this source tree (PYTHONPATH)"
    )
    args = parser.parse_args()

    serve = serve_command()
    floor = [sys.executable, "-c", SDK_FLOOR]
    runs: dict[str, list[Start]] = {"python": [], "sdk_floor": [], "serve": []}
    before_env = None
    if args.before:
        if not (args.before / "cdp_mcp" / "__init__.py").is_file():
            parser.error(f"--before {args.before}: no cdp_mcp package there")
        before_env = {**os.environ, "PYTHONPATH": str(args.before.resolve())}
        runs["before"] = []
    with tempfile.TemporaryDirectory(prefix="bench_cold_") as tmp:
        cwd = Path(tmp)
        time_to_tool_list(serve, cwd)  # one unmeasured start: bytecode compiled, files cached
        time_to_tool_list(floor, cwd)
        if before_env:
            time_to_tool_list(serve, cwd, env=before_env)
        for _ in range(args.repeat):
            runs["python"].append(time_bare_python(cwd))
            runs["sdk_floor"].append(time_to_tool_list(floor, cwd))
            runs["serve"].append(time_to_tool_list(serve, cwd))
            if before_env:
                runs["before"].append(time_to_tool_list(serve, cwd, env=before_env))
        breakdown = import_breakdown(cwd, args.top) if args.breakdown else []
    report(runs, serve, args.before, breakdown)


def report(
    runs: dict[str, list[Start]],
    serve: list[str],
    before: Path | None,
    breakdown: list[tuple[str, float]],
) -> None:
    load = os.getloadavg()
    print(f"serve: {' '.join(serve)} ({runs['serve'][0].tools} tools)")
    if before:
        print(f"before: the same with PYTHONPATH={before.resolve()}")
    print(f"{len(runs['serve'])} fresh processes each, load average {load[0]:.1f} {load[1]:.1f}")
    print("wall: spawn to the tools/list answer; cpu: the process's user+sys time (a busy")
    print("machine stretches wall time, much less cpu time)")
    wall = {name: statistics.median(r.wall for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r.cpu for r in rs) for name, rs in runs.items()}
    print(
        f"{'contender':<10} {'wall s':>7} {'min':>6} {'max':>6} {'x floor':>8} "
        f"{'cpu s':>7} {'x floor':>8}"
    )
    for name, rs in runs.items():
        print(
            f"{name:<10} {wall[name]:>7.3f} {min(r.wall for r in rs):>6.3f} "
            f"{max(r.wall for r in rs):>6.3f} {wall[name] / wall['sdk_floor']:>8.2f} "
            f"{cpu[name]:>7.3f} {cpu[name] / cpu['sdk_floor']:>8.2f}"
        )
    for name in ("serve", "before") if before else ("serve",):
        ratios = [s.wall / f.wall for s, f in zip(runs[name], runs["sdk_floor"], strict=True)]
        print(
            f"{name}: median of the rounds' wall ratios {statistics.median(ratios):.2f}x "
            f"sdk_floor; what cdp-mcp adds: {wall[name] - wall['sdk_floor']:.3f} s wall, "
            f"{cpu[name] - cpu['sdk_floor']:.3f} s cpu"
        )
    if breakdown:
        print("\nserve's import time by package (self time, one run under -X importtime):")
        for package, seconds in breakdown:
            print(f"  {package:<32} {seconds:>6.3f} s")


if __name__ == "__main__":
    main()
