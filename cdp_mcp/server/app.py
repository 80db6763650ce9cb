"""The MCP server: its tools, the orchestration prompt and the state/report resources.

The tools are a table (handlers.HANDLERS, keyed by ToolName) whose titles, descriptions,
annotations and argument descriptions come from the text files beside this module
(contract.py). Resources pass `redact` on the way out, like the tools' results and errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import Context, MCPServer, ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError

from cdp_mcp import __version__
from cdp_mcp.core import redact
from cdp_mcp.core.roots import Roots, ask_client
from cdp_mcp.core.tools import ToolName
from cdp_mcp.pipeline.drafting.words import drafting_summary
from cdp_mcp.pipeline.models import NextAction, PipelineError
from cdp_mcp.server import contract
from cdp_mcp.server.handlers import HANDLERS, CdpServer, explicit_roots, open_pipeline

if TYPE_CHECKING:
    import jinja2

PROMPT = "cdp_implement.md.j2"
# Where the prompt template is: inside the package in a wheel (pyproject's force-include puts
# prompts/ at cdp_mcp/prompts), at the top of the repository in a source checkout.
PROMPT_FOLDERS = (Path(__file__).parents[1] / "prompts", Path(__file__).parents[2] / "prompts")

# The resources take the config file's path like the tools do (URL-encoded in the URI, decoded
# by the SDK); it is usually absolute, which the SDK's default policy would refuse.
PATH_PARAM = ResourceSecurity(exempt_params={"config_path"})


async def _roots_of(ctx: Context) -> Roots:
    return await ask_client(explicit_roots(ctx), ctx.session)


def _prompt_template() -> jinja2.Template:
    import jinja2  # imported when the prompt is first asked for: startup cost

    for folder in PROMPT_FOLDERS:
        if (folder / PROMPT).is_file():
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(folder),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
            )
            return env.get_template(PROMPT)
    raise RuntimeError(f"prompts/{PROMPT} is missing from the installation")


def render_implement_prompt(config_path: str, roots: Roots | None = None) -> str:
    """The orchestration instructions with the pipeline's current state (also the resume
    prompt); the same rules before there is any state, with init_pipeline as the next step."""
    try:
        status = open_pipeline(config_path, roots).status()
    except PipelineError as e:
        first = NextAction(
            tool=ToolName.INIT_PIPELINE,
            arguments={"config_path": config_path},
            why=f"the pipeline has no usable state yet ({e}); call "
            f"init_pipeline(config_path={config_path!r}) first",
        )
        return _prompt_template().render(
            config_path=config_path, state=None, aborted=False, phases=[], next=first
        )
    return _prompt_template().render(
        config_path=status.config_path,
        state={"client": status.client, "backend": status.backend, "run": status.run},
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
        instructions=contract.instructions(),
    )
    for name, handler in HANDLERS.items():
        text = contract.load_tool(name)
        server.add_tool(
            contract.described(handler, text, drafting_summary),
            name=name.value,
            title=text.title,
            description=text.description,
            annotations=text.annotations,
        )
    _add_prompt(server)
    _add_resources(server)
    return server


def _add_prompt(server: MCPServer) -> None:
    @server.prompt(title="Implement a CDP")
    async def cdp_implement(config_path: str, ctx: Context) -> str:
        """Orchestration instructions for the pipeline with its current state: start, resume."""
        roots = await _roots_of(ctx)
        text = await anyio.to_thread.run_sync(render_implement_prompt, config_path, roots)
        return redact.scrub(text)


def _add_resources(server: MCPServer) -> None:
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
            return open_pipeline(config_path, roots).state().model_dump_json(indent=2)

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
            pipeline = open_pipeline(config_path, roots)
            from cdp_mcp.pipeline.reports.report import report_path  # loaded by the pipeline

            path = report_path(pipeline.cfg)
            if not path.is_file():
                raise ResourceError("no report yet: call final_report first")
            return path.read_text(encoding="utf-8")

        try:
            return redact.scrub(await anyio.to_thread.run_sync(read))
        except PipelineError as e:
            raise ResourceError(redact.scrub(str(e))) from None
