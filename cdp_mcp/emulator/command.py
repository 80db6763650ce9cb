"""`cdp-mcp emulate`: serve the TD emulator on loopback until interrupted.

    cdp-mcp emulate --port 8765 --key K [--workspace DIR] [--faults 0.3 --seed 7]

The key may come from TD_API_KEY instead of --key; it must have TD's form (`<user id>/<hex>`,
checked like the config's key) and is never printed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cdp_mcp.core import redact
from cdp_mcp.core.apikey import key_problem


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate between 0 and 1, e.g. 0.3")
    return value


def add_emulate_command(sub: Any) -> None:
    cmd = sub.add_parser(
        "emulate",
        help="serve a Treasure Data-compatible API on loopback (for the treasuredata backend)",
        description="Serve TD's Digdag REST and API v3 on http://HOST:PORT, running pushed "
        "projects on the embedded runner. Point `td_endpoint` at the printed URL.",
    )
    cmd.add_argument("--port", type=int, required=True, help="port to listen on")
    cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    cmd.add_argument("--key", help="API key clients must send (default: $TD_API_KEY)")
    cmd.add_argument("--workspace", default=".", help="folder for the emulator's state")
    cmd.add_argument("--faults", type=_rate, default=0.0, help="share of requests that fail")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    cmd.add_argument(
        "--retry-after", type=float, default=1.0, help="seconds a fault 429 asks to wait"
    )
    cmd.set_defaults(func=_cmd_emulate)


def _cmd_emulate(args: argparse.Namespace) -> int:
    from cdp_mcp.emulator.app import create_app  # heavy imports only when serving
    from cdp_mcp.emulator.faults import FaultPlan
    from cdp_mcp.emulator.server import serve

    key = args.key or os.environ.get("TD_API_KEY", "")
    if not key:
        raise ValueError("give the API key clients must use: --key K or TD_API_KEY")
    redact.register(key)
    problem = key_problem(key)
    if problem:
        raise ValueError(f"{'--key' if args.key else 'TD_API_KEY'}: {problem}")
    workspace = Path(args.workspace).expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    plan = FaultPlan(rate=args.faults, seed=args.seed, retry_after=args.retry_after)
    app = create_app(workspace, key, faults=plan)
    url = f"http://{args.host}:{args.port}"
    print(f"TD emulator on {url} (workspace {workspace})")
    print(f"  set td_endpoint: {url} and td_api_key to the key it was started with")
    if plan.rate:
        print(f"  faults: {plan.rate:.0%} of requests (seed {plan.seed})")
    serve(app, args.host, args.port)
    return 0
