"""`cdp-mcp inspect SOURCE` and `cdp-mcp draft OUTPUT SOURCE...`: the inspect_source and
draft_config tools on the command line (the person running them has no roots to keep to).
Imported when one of them runs: DuckDB and the backends are no startup cost of `serve`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio

from cdp_mcp.pipeline.drafting.draft import draft_config
from cdp_mcp.pipeline.drafting.inspection import inspect_source
from cdp_mcp.pipeline.drafting.words import drafting_summary


def cmd_inspect(args: argparse.Namespace) -> int:
    result = anyio.run(inspect_source, args.source, args.sample_rows, args.td_endpoint)
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        print(drafting_summary(result).removesuffix("\n(the data is in the structured content)"))
        for o in result.objects:
            for c in o.columns:
                extra = [f"{100 * c.filled:.1f}% filled", f"{c.distinct:,} distinct", c.kind]
                if c.valid is not None:
                    extra.append(f"{100 * c.valid:.1f}% valid")
                if c.formats:
                    extra.append("forms: " + ", ".join(c.formats))
                if c.pii:
                    extra.append(f"PII: {c.pii}")
                print(f"    {o.name}.{c.name} ({c.type}): {'; '.join(extra)}")
    return 0


def cmd_draft(args: argparse.Namespace) -> int:
    config = Path(args.add_to) if args.add_to else None

    async def run() -> str:
        result = await draft_config(
            Path(args.output), args.sources, args.client, config, args.sample_rows
        )
        return drafting_summary(result)

    print(anyio.run(run).removesuffix("\n(the data is in the structured content)"))
    return 0
