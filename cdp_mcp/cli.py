"""`cdp-mcp` command line: generate projects now; serve, run and demo arrive with the server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cdp_mcp.cli_wf import add_wf_commands
from cdp_mcp.config import ConfigError, load_config
from cdp_mcp.generate import GenerationError, generate
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.phases import ORDER, parse_phase
from cdp_mcp.sources import SourceError


def _cmd_generate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    phases = ORDER if args.phase == "all" else (parse_phase(args.phase),)
    schemas = predicted_schemas(cfg)
    for phase in phases:
        project = generate(cfg, phase, schemas)
        print(f"{phase.value}: {len(project.files)} files in {project.directory}")
        for f in project.files:
            print(f"  {f}")
        print(f"  workflows (run order): {', '.join(project.workflows)}")
        if project.secrets:
            print(f"  secrets to set before running: {', '.join(project.secrets)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdp-mcp",
        description="Build a Treasure Data CDP pipeline: ingestion, hist-union, staging, "
        "ID unification.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="render a phase's Digdag project into the workspace")
    gen.add_argument("config", help="the pipeline YAML")
    gen.add_argument(
        "phase", help="ingestion | hist_union | staging | unification | all", default="all"
    )
    gen.set_defaults(func=_cmd_generate)
    add_wf_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as e:
        print(f"error: config {e}", file=sys.stderr)
    except (GenerationError, SourceError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
