"""Cold start: from spawning `cdp-mcp serve` to its answer to `tools/list`, over stdio.

Each contender starts as a fresh process (no warm module cache but the OS's) and a client
speaks raw JSON-RPC lines on its pipes: `initialize`, `notifications/initialized`,
`tools/list`; the time is from the spawn to the tools/list answer. Floors, measured in the
same run and interleaved with it (round by round, so a busy machine slows all alike):

- python:    `python -c pass`, spawn to exit (the interpreter's start).
- sdk_floor: a minimal `MCPServer` with one tool, answering the same handshake (what the
             MCP SDK itself costs: importing it, building a server, serving stdio).
- serve:     `cdp-mcp serve` (the installed console script beside this interpreter).

The figure that matters is serve against sdk_floor (what cdp-mcp adds to the SDK); the
absolute median is what a client waits for. `--breakdown` also runs `serve` once under
`python -X importtime` and sums the import time by top-level package.

    python bench/bench_cold_start.py --repeat 5
    python bench/bench_cold_start.py --repeat 5 --breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
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


def time_to_tool_list(command: list[str], cwd: Path, log: Path | None = None) -> tuple[float, int]:
    """Seconds from spawn to the tools/list answer, and how many tools it listed (the
    server's stderr goes to `log` when given)."""
    with log.open("w+b") if log else tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=cwd
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
    return elapsed, len(tools)


def time_bare_python(cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=cwd)
    return time.perf_counter() - start


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
    args = parser.parse_args()

    serve = serve_command()
    floor = [sys.executable, "-c", SDK_FLOOR]
    times: dict[str, list[float]] = {"python": [], "sdk_floor": [], "serve": []}
    listed = 0
    with tempfile.TemporaryDirectory(prefix="bench_cold_") as tmp:
        cwd = Path(tmp)
        time_to_tool_list(serve, cwd)  # one unmeasured start: bytecode compiled, files cached
        time_to_tool_list(floor, cwd)
        for _ in range(args.repeat):
            times["python"].append(time_bare_python(cwd))
            times["sdk_floor"].append(time_to_tool_list(floor, cwd)[0])
            elapsed, listed = time_to_tool_list(serve, cwd)
            times["serve"].append(elapsed)
        breakdown = import_breakdown(cwd, args.top) if args.breakdown else []

    load = os.getloadavg()
    print(f"serve: {' '.join(serve)} ({listed} tools)")
    print(f"{args.repeat} fresh processes each, load average {load[0]:.1f} {load[1]:.1f}")
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'contender':<10} {'median s':>9} {'min s':>7} {'max s':>7} {'x sdk_floor':>12}")
    for name, values in times.items():
        ratio = median[name] / median["sdk_floor"]
        print(
            f"{name:<10} {median[name]:>9.3f} {min(values):>7.3f} {max(values):>7.3f} "
            f"{ratio:>12.2f}"
        )
    ratios = [s / f for s, f in zip(times["serve"], times["sdk_floor"], strict=True)]
    print(
        f"serve / sdk_floor, median of the rounds' ratios: {statistics.median(ratios):.2f}; "
        f"serve - sdk_floor (what cdp-mcp adds): {median['serve'] - median['sdk_floor']:.3f} s"
    )
    if breakdown:
        print("\nserve's import time by package (self time, one run under -X importtime):")
        for package, seconds in breakdown:
            print(f"  {package:<32} {seconds:>6.3f} s")


if __name__ == "__main__":
    main()
