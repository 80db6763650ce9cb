"""The MCP surface: tools, the orchestration prompt and the state/report resources.

Thin by design: each tool parses its arguments, calls the Pipeline, and shapes the result.
Every refusal or failure becomes a ToolError whose text says what to do next (the SDK
withholds the message of any other exception from the client). Results, errors and resources
pass `redact` on the way out, so no secret reaches the client in any spelling. Synchronous
work (reading and validating the config, the status under the state lock) runs on worker
threads, so one slow call never holds up the others the server is answering.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import jinja2
from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve, ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ListRootsResult, ToolAnnotations
from pydantic import BaseModel

from cdp_mcp import __version__
from cdp_mcp.core import redact
from cdp_mcp.core.roots import Roots, ask_client, roots_for, wants_client_roots
from cdp_mcp.pipeline.models import (
    DecisionResult,
    GenerateResult,
    InitResult,
    LogsResult,
    PipelineError,
    PushResult,
    QueryOutput,
    ReportResult,
    SecretsResult,
    SessionResult,
    StartResult,
    StatusResult,
    ValidationResult,
)
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.reports.report import report_path

T = TypeVar("T")
log = logging.getLogger(__name__)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=True)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)

# The resources take the config file's path like the tools do (URL-encoded in the URI, decoded
# by the SDK); it is usually absolute, which the SDK's default policy would refuse.
PATH_PARAM = ResourceSecurity(exempt_params={"config_path"})

INSTRUCTIONS = (
    "Builds a Treasure Data CDP in four ordered phases (ingestion, hist_union, staging, "
    "unification). Start with the cdp_implement prompt or init_pipeline(config_path); "
    "every result has next_action. The server enforces phase order and a 3-attempt budget "
    "per step; failures need the person's decision (retry / fix / skip / abort)."
)


async def _call(make: Callable[[], Awaitable[T]]) -> T:
    try:
        result = await make()
    except (ToolError, PipelineError) as e:
        raise ToolError(redact.scrub(str(e))) from None
    except Exception as e:  # a bug: the agent still gets words, the log gets the traceback
        log.exception("tool call failed")
        raise ToolError(
            redact.scrub(
                f"internal error in cdp-mcp ({type(e).__name__}: {e}). Call pipeline_status "
                "to see what was recorded, and report this as a bug with the server log."
            )
        ) from None
    return redact.scrub_model(result) if isinstance(result, BaseModel) else result


async def _with(
    config_path: str, use: Callable[[Pipeline], Awaitable[T]], roots: Roots | None = None
) -> T:
    """Run `use` on the config's pipeline, then release its backend connections."""

    async def run() -> T:
        pipeline = await _pipeline(config_path, roots)
        try:
            return await use(pipeline)
        finally:
            await pipeline.aclose()

    return await _call(run)


async def _pipeline(config_path: str, roots: Roots | None = None) -> Pipeline:
    try:
        return await anyio.to_thread.run_sync(lambda: Pipeline(config_path, roots=roots))
    except PipelineError as e:
        raise ToolError(str(e)) from None


class CdpServer(MCPServer):
    """The MCP server, holding the roots its person gave it (`--root` / CDP_MCP_ROOTS)."""

    def __init__(self, roots: Roots | None, **settings: Any) -> None:
        super().__init__(**settings)
        self.roots = roots


def _explicit(ctx: Context) -> Roots | None:
    server = ctx.mcp_server
    return server.roots if isinstance(server, CdpServer) else None


async def _ask_for_roots(ctx: Context) -> ListRoots | None:
    return ListRoots() if wants_client_roots(_explicit(ctx), ctx.client_capabilities) else None


async def _call_roots(
    ctx: Context, offered: Annotated[ListRootsResult | None, Resolve(_ask_for_roots)]
) -> Roots:
    return roots_for(_explicit(ctx), offered)


# A tool's allowed roots, resolved by the SDK before the tool runs (not a tool argument).
AllowedRoots = Annotated[Roots, Resolve(_call_roots)]


async def _roots_of(ctx: Context) -> Roots:
    return await ask_client(_explicit(ctx), ctx.session)


def _prompt_template() -> jinja2.Template:
    package = Path(__file__).parents[1]  # cdp_mcp: prompts/ ships inside it (the wheel)
    for folder in (package / "prompts", package.parent / "prompts"):  # or beside it (a checkout)
        if (folder / "cdp_implement.md.j2").is_file():
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(folder),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
            )
            return env.get_template("cdp_implement.md.j2")
    raise RuntimeError("prompts/cdp_implement.md.j2 is missing from the installation")


def render_implement_prompt(config_path: str, roots: Roots | None = None) -> str:
    """The orchestration instructions with the pipeline's current state (also the resume prompt)."""
    status = Pipeline(config_path, roots=roots).status()
    return _prompt_template().render(
        config_path=status.config_path,
        client=status.client,
        backend=status.backend,
        run=status.run,
        aborted=status.aborted,
        phases=[p.model_dump() for p in status.phases],
        next=status.next_action,
    )


def build_server(roots: Roots | None = None) -> MCPServer:
    """`roots`: the folders given with `--root` / CDP_MCP_ROOTS (None: the client's roots, else
    the working directory), checked on every call (cdp_mcp/core/roots.py)."""
    server = CdpServer(
        roots,
        name="cdp-mcp",
        title="CDP builder for Treasure Data",
        version=__version__,
        instructions=INSTRUCTIONS,
    )

    @server.tool(annotations=WRITES)
    async def init_pipeline(
        config_path: str, roots: AllowedRoots, new_run: bool = False
    ) -> InitResult:
        """Validate the pipeline YAML, create or load its state, and return the plan (phases,
        workflows, tables) with the next action. Call it first, and again after fixing the
        config (re-opens the budgets of failed steps). A finished or aborted pipeline is
        kept as it is; new_run=true starts it over as a new run (earlier reports are kept
        in reports/run-N/) and needs the person's say-so."""
        return await _with(config_path, lambda p: p.init(new_run=new_run), roots)

    @server.tool(annotations=WRITES)
    async def generate_phase(config_path: str, roots: AllowedRoots, phase: str) -> GenerateResult:
        """Render a phase's Digdag project into the workspace; returns its files and its
        workflows in run order. Refused until the previous phase validated PASS."""
        return await _with(config_path, lambda p: p.generate_phase(phase), roots)

    @server.tool(annotations=DESTRUCTIVE)
    async def push_project(config_path: str, roots: AllowedRoots, phase: str) -> PushResult:
        """Deploy the generated project (replaces the project's current revision on the
        backend); returns project id and revision. At most 3 attempts."""
        return await _with(config_path, lambda p: p.push_project(phase), roots)

    @server.tool(annotations=WRITES)
    async def start_workflow(
        config_path: str, roots: AllowedRoots, phase: str, workflow: str | None = None
    ) -> StartResult:
        """Start the named workflow of the phase (default: the next one not yet succeeded);
        after a failure it retries only the failed tasks. Returns session_id and attempt_id.
        At most 3 attempts per workflow."""
        return await _with(config_path, lambda p: p.start_workflow(phase, workflow), roots)

    @server.tool(annotations=READ_ONLY)
    async def get_session(
        config_path: str,
        ctx: Context,
        roots: AllowedRoots,
        session_id: str | None = None,
        wait_seconds: float = 0,
    ) -> SessionResult:
        """Status of a session (default: the one running or started last): running, success,
        error or killed, elapsed time, task counts, failed tasks with log tails. Waits up to
        wait_seconds (max 600) for it to end, sending progress."""

        async def progress(done: float, total: float | None, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await _with(
            config_path,
            lambda p: p.get_session(session_id, wait_seconds, progress),
            roots,
        )

    # Read-only for the warehouse (it only reads tables); it records the verdict in the state.
    @server.tool(annotations=READ_ONLY)
    async def validate_tables(
        config_path: str, roots: AllowedRoots, phase: str, accept_warnings: bool = False
    ) -> ValidationResult:
        """Check the phase's tables (exist, row counts, expected columns) and its metrics;
        verdict PASS, WARN or FAIL. A WARN lets the next phase start only when called with
        accept_warnings=true (after the person agrees). At most 3 attempts."""
        return await _with(config_path, lambda p: p.validate_tables(phase, accept_warnings), roots)

    @server.tool(annotations=WRITES)
    async def set_secrets(
        config_path: str, roots: AllowedRoots, phase: str, names: list[str]
    ) -> SecretsResult:
        """Upload the project secrets a pushed phase references (e.g. td.apikey) from the
        server's environment variables of those names (td.apikey: TD_APIKEY or the config's
        key), so a secret value never passes through the conversation."""
        return await _with(config_path, lambda p: p.set_secrets(phase, names), roots)

    @server.tool(annotations=READ_ONLY)
    async def get_logs(
        config_path: str,
        roots: AllowedRoots,
        attempt_id: str,
        task: str | None = None,
        offset: int = 0,
    ) -> LogsResult:
        """Task logs of an attempt (optionally one task, by full name or prefix), 12,000
        characters a page; pass next_offset to read on."""
        return await _with(config_path, lambda p: p.get_logs(attempt_id, task, offset), roots)

    @server.tool(annotations=READ_ONLY)
    async def query(
        config_path: str, roots: AllowedRoots, sql: str, limit: int = 100
    ) -> QueryOutput:
        """Run one read-only statement (SELECT, WITH, SHOW, DESCRIBE) in Presto SQL; use
        database.table names. Returns columns, rows (at most `limit`, max 1000) and
        `truncated`."""
        return await _with(config_path, lambda p: p.query(sql, limit), roots)

    @server.tool(annotations=READ_ONLY)
    async def pipeline_status(config_path: str, roots: AllowedRoots) -> StatusResult:
        """Every phase and step with attempts, session/attempt ids, timings and errors, plus
        the next action."""

        async def status() -> StatusResult:
            pipeline = await _pipeline(config_path, roots)
            return await anyio.to_thread.run_sync(pipeline.status)

        return await _call(status)

    @server.tool(annotations=WRITES)
    async def skip_phase(
        config_path: str, roots: AllowedRoots, phase: str, confirm: bool = False
    ) -> DecisionResult:
        """Skip a phase by the person's decision (needs confirm=true); later phases run on
        whatever it left behind."""
        return await _with(config_path, lambda p: p.skip_phase(phase, confirm), roots)

    @server.tool(annotations=DESTRUCTIVE)
    async def abort_pipeline(config_path: str, roots: AllowedRoots) -> DecisionResult:
        """Stop the pipeline by the person's decision: kills running workflows and writes a
        partial report."""
        return await _with(config_path, lambda p: p.abort(), roots)

    @server.tool(annotations=WRITES)
    async def final_report(config_path: str, roots: AllowedRoots) -> ReportResult:
        """Write the report (Markdown) into the workspace and return it; partial when the
        pipeline is not finished."""
        return await _with(config_path, lambda p: p.final_report(), roots)

    @server.prompt(title="Implement a CDP")
    async def cdp_implement(config_path: str, ctx: Context) -> str:
        """Orchestration instructions for the pipeline, with its current state; use it to
        start and to resume."""
        try:
            roots = await _roots_of(ctx)
            text = await anyio.to_thread.run_sync(render_implement_prompt, config_path, roots)
            return redact.scrub(text)
        except PipelineError as e:
            return redact.scrub(
                f"The pipeline `{config_path}` has no usable state yet ({e}). "
                f"Call init_pipeline(config_path='{config_path}') first, then follow next_action."
            )

    @server.resource(
        "cdp://pipeline/{config_path}/state",
        name="pipeline_state",
        description="The pipeline's state file (config_path URL-encoded)",
        mime_type="application/json",
        security=PATH_PARAM,
    )
    async def pipeline_state(config_path: str, ctx: Context) -> str:
        roots = await _roots_of(ctx)

        def read() -> str:
            return Pipeline(config_path, roots=roots).state().model_dump_json(indent=2)

        try:
            return redact.scrub(await anyio.to_thread.run_sync(read))
        except PipelineError as e:
            raise ResourceError(redact.scrub(str(e))) from None

    @server.resource(
        "cdp://pipeline/{config_path}/report",
        name="pipeline_report",
        description="The latest report written by final_report (config_path URL-encoded)",
        mime_type="text/markdown",
        security=PATH_PARAM,
    )
    async def pipeline_report(config_path: str, ctx: Context) -> str:
        roots = await _roots_of(ctx)

        def read() -> str:
            path = report_path(Pipeline(config_path, roots=roots).cfg)
            if not path.is_file():
                raise ResourceError("no report yet: call final_report first")
            return path.read_text(encoding="utf-8")

        try:
            return redact.scrub(await anyio.to_thread.run_sync(read))
        except PipelineError as e:
            raise ResourceError(redact.scrub(str(e))) from None

    return server
