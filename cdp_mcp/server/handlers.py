"""The tools' functions: each parses its arguments, calls the Pipeline, shapes the result.

Thin by design (the logic is in cdp_mcp/pipeline, where tests reach it without MCP). Every
refusal or failure becomes a ToolError whose text says what to do next (the SDK withholds
the message of any other exception from the client). Results and errors pass `redact` on the
way out, so no secret reaches the client in any spelling. Synchronous work (reading and
validating the config, the status under the state lock) runs on worker threads, so one slow
call never holds up the others the server is answering.

What a tool is called, its title, description, annotations and argument descriptions are in
the text files beside this module (contract.py reads them); `HANDLERS` binds each ToolName
to its function.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ListRootsResult, Tool
from pydantic import BaseModel, Field

from cdp_mcp.core import redact
from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.phases import ORDER
from cdp_mcp.core.roots import Roots, roots_for, wants_client_roots
from cdp_mcp.core.tools import ToolName
from cdp_mcp.pipeline.drafting.bounds import DEFAULT_SAMPLE_ROWS, MAX_SAMPLE_ROWS
from cdp_mcp.pipeline.drafting.models import DraftResult, InspectResult
from cdp_mcp.pipeline.limits import MAX_QUERY_ROWS, MAX_WAIT_SECONDS
from cdp_mcp.pipeline.models import (
    DecisionResult,
    FinalReportResult,
    GenerateResult,
    InitResult,
    LogsResult,
    PipelineError,
    PushResult,
    QueryOutput,
    SecretsResult,
    SessionResult,
    StartResult,
    StatusResult,
    ValidationResult,
)
from cdp_mcp.server import contract

if TYPE_CHECKING:
    from cdp_mcp.pipeline.orchestrator import Pipeline

T = TypeVar("T")
log = logging.getLogger(__name__)


def _schema(**extra: Any) -> Any:
    """Words for the client's schema only: the pipeline itself checks (or clamps) the value,
    so a wrong one is refused in its words, which name the allowed values."""
    return Field(json_schema_extra=extra)


# The closed sets and ranges of the arguments, as the schema states them.
PhaseName = Annotated[str, _schema(enum=[p.value for p in ORDER])]
WaitSeconds = Annotated[float, _schema(minimum=0, maximum=MAX_WAIT_SECONDS)]
RowLimit = Annotated[int, _schema(minimum=1, maximum=MAX_QUERY_ROWS)]
Offset = Annotated[int, _schema(minimum=0)]
SampleRows = Annotated[int, _schema(minimum=1, maximum=MAX_SAMPLE_ROWS)]
# inspect_source's structured content at most (a result stays under ~20 KB with its text)
INSPECT_RESULT_BYTES = 16_000


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


def open_pipeline(config_path: str, roots: Roots | None = None) -> Pipeline:
    """The config's pipeline: every tool, prompt and resource reaches it here."""
    # imported when the first tool runs: startup cost (the orchestrator brings the backends,
    # DuckDB, sqlglot, numpy, the generators and the reports; tools/list needs none of them)
    from cdp_mcp.pipeline.orchestrator import Pipeline

    return Pipeline(config_path, roots=roots)


async def _pipeline(config_path: str, roots: Roots | None = None) -> Pipeline:
    try:
        return await anyio.to_thread.run_sync(open_pipeline, config_path, roots)
    except PipelineError as e:
        raise ToolError(str(e)) from None


class CdpServer(MCPServer):
    """The MCP server, holding the roots its person gave it (`--root` / CDP_MCP_ROOTS)."""

    def __init__(self, roots: Roots | None, **settings: Any) -> None:
        super().__init__(**settings)
        self.roots = roots

    async def list_tools(self) -> list[Tool]:
        """The listing with its schemas compacted (contract.listed: it is read into every
        conversation); the tools still check their arguments and results against the full
        schemas."""
        return [
            t.model_copy(
                update={
                    "input_schema": contract.listed(t.input_schema),
                    "output_schema": contract.listed_output(t.output_schema),
                }
            )
            for t in await super().list_tools()
        ]


def explicit_roots(ctx: Context) -> Roots | None:
    server = ctx.mcp_server
    return server.roots if isinstance(server, CdpServer) else None


async def _ask_for_roots(ctx: Context) -> ListRoots | None:
    return ListRoots() if wants_client_roots(explicit_roots(ctx), ctx.client_capabilities) else None


async def _call_roots(
    ctx: Context, offered: Annotated[ListRootsResult | None, Resolve(_ask_for_roots)]
) -> Roots:
    return roots_for(explicit_roots(ctx), offered)


# A tool's allowed roots, resolved by the SDK before the tool runs (not a tool argument).
AllowedRoots = Annotated[Roots, Resolve(_call_roots)]


async def init_pipeline(
    config_path: str, roots: AllowedRoots, new_run: bool = False, retry_after_fix: bool = False
) -> InitResult:
    return await _with(
        config_path, lambda p: p.init(new_run=new_run, retry_after_fix=retry_after_fix), roots
    )


async def generate_phase(config_path: str, roots: AllowedRoots, phase: PhaseName) -> GenerateResult:
    return await _with(config_path, lambda p: p.generate_phase(phase), roots)


async def push_project(config_path: str, roots: AllowedRoots, phase: PhaseName) -> PushResult:
    return await _with(config_path, lambda p: p.push_project(phase), roots)


async def start_workflow(
    config_path: str, roots: AllowedRoots, phase: PhaseName, workflow: str | None = None
) -> StartResult:
    return await _with(config_path, lambda p: p.start_workflow(phase, workflow), roots)


async def get_session(
    config_path: str,
    ctx: Context,
    roots: AllowedRoots,
    session_id: str | None = None,
    wait_seconds: WaitSeconds = 0,
) -> SessionResult:
    async def progress(done: float, total: float | None, message: str) -> None:
        await ctx.report_progress(done, total, message)

    return await _with(
        config_path, lambda p: p.get_session(session_id, wait_seconds, progress), roots
    )


async def validate_tables(
    config_path: str, roots: AllowedRoots, phase: PhaseName, accept_warnings: bool = False
) -> ValidationResult:
    return await _with(config_path, lambda p: p.validate_tables(phase, accept_warnings), roots)


async def set_secrets(
    config_path: str, roots: AllowedRoots, phase: PhaseName, names: list[str]
) -> SecretsResult:
    return await _with(config_path, lambda p: p.set_secrets(phase, names), roots)


async def get_logs(
    config_path: str,
    roots: AllowedRoots,
    attempt_id: str,
    task: str | None = None,
    offset: Offset = 0,
) -> LogsResult:
    return await _with(config_path, lambda p: p.get_logs(attempt_id, task, offset), roots)


async def query(
    config_path: str, roots: AllowedRoots, sql: str, limit: RowLimit = 100, offset: Offset = 0
) -> QueryOutput:
    return await _with(config_path, lambda p: p.query(sql, limit, offset), roots)


async def pipeline_status(config_path: str, roots: AllowedRoots) -> StatusResult:
    async def status() -> StatusResult:
        pipeline = await _pipeline(config_path, roots)
        return await anyio.to_thread.run_sync(pipeline.status)

    return await _call(status)


async def skip_phase(
    config_path: str, roots: AllowedRoots, phase: PhaseName, confirm: bool = False
) -> DecisionResult:
    return await _with(config_path, lambda p: p.skip_phase(phase, confirm), roots)


async def abort_pipeline(config_path: str, roots: AllowedRoots) -> DecisionResult:
    return await _with(config_path, lambda p: p.abort(), roots)


async def final_report(config_path: str, roots: AllowedRoots) -> FinalReportResult:
    return await _with(config_path, lambda p: p.final_report(), roots)


async def _drafting(make: Callable[[], Awaitable[T]]) -> T:
    """The drafting tools' refusals (a folder, a file, an argument) in their own words."""

    async def run() -> T:
        try:
            return await make()
        except CdpError as e:
            raise ToolError(str(e)) from None

    return await _call(run)


def _inside(roots: Roots | None, path: str, what: str) -> Path:
    """`path` resolved, once it is inside the roots (None: a caller with no roots)."""
    real = Path(path).expanduser().resolve()
    if roots is not None:
        roots.check(real, what)
    return real


async def inspect_source(
    roots: AllowedRoots,
    source: str,
    sample_rows: SampleRows = DEFAULT_SAMPLE_ROWS,
    td_endpoint: str | None = None,
) -> InspectResult:
    # imported at the first call: DuckDB and the backends are startup cost
    from cdp_mcp.pipeline.drafting import inspection

    async def run() -> InspectResult:
        if inspection.td_database(source) is None:
            _inside(roots, source, "the source folder")
        return await inspection.inspect_source(
            source, sample_rows, td_endpoint, max_bytes=INSPECT_RESULT_BYTES
        )

    return await _drafting(run)


async def draft_config(
    roots: AllowedRoots,
    output_path: str,
    sources: list[str],
    client: str | None = None,
    config_path: str | None = None,
) -> DraftResult:
    from cdp_mcp.pipeline.drafting import draft

    async def run() -> DraftResult:
        out = _inside(roots, output_path, "output_path")
        existing = _inside(roots, config_path, "the config file") if config_path else None
        for spec in sources:
            _inside(roots, draft.parse_spec(spec).source, "the source folder")
        # the default sample (the CLI's --sample-rows sets another): a shorter tools/list
        return await draft.draft_config(out, sources, client, existing)

    return await _drafting(run)


# Each tool's function, registered under its name in this order (the order tools/list shows).
HANDLERS: dict[ToolName, Callable[..., Awaitable[BaseModel]]] = {
    ToolName.INSPECT_SOURCE: inspect_source,
    ToolName.DRAFT_CONFIG: draft_config,
    ToolName.INIT_PIPELINE: init_pipeline,
    ToolName.GENERATE_PHASE: generate_phase,
    ToolName.PUSH_PROJECT: push_project,
    ToolName.START_WORKFLOW: start_workflow,
    ToolName.GET_SESSION: get_session,
    ToolName.VALIDATE_TABLES: validate_tables,
    ToolName.SET_SECRETS: set_secrets,
    ToolName.GET_LOGS: get_logs,
    ToolName.QUERY: query,
    ToolName.PIPELINE_STATUS: pipeline_status,
    ToolName.SKIP_PHASE: skip_phase,
    ToolName.ABORT_PIPELINE: abort_pipeline,
    ToolName.FINAL_REPORT: final_report,
}
