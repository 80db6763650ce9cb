"""The tool contract as data: what each tool is called, says and promises, read from text.

Each tool has `tools/<name>.md` beside this module: YAML front matter with its title, its
annotations and a one-line description per argument, then its description (Markdown, sent
as written). `tools/_shared.yml` describes the arguments every tool takes (config_path), and
`instructions.md` holds the server's instructions. They ship in the wheel as package files
and are read with importlib.resources, so a source checkout and an installation read the same.

`described` gives a tool function the argument descriptions: the SDK builds the input
schema from the function's signature, so the descriptions go in as pydantic `Field`s.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Any

import yaml
from mcp.server.mcpserver import Context, Resolve
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from cdp_mcp.core.tools import ToolName

# The tool files are the package's own (not a person's input): libyaml where PyYAML has it,
# which reads the fourteen files of a server's start about 10x faster than PyYAML's Python.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FRONT = "---\n"
KEYS = {"title", "annotations", "arguments"}
# The front matter's names for the MCP annotations (ToolAnnotations' fields).
HINTS = {
    "read_only": "read_only_hint",
    "destructive": "destructive_hint",
    "idempotent": "idempotent_hint",
    "open_world": "open_world_hint",
}


class ContractError(RuntimeError):
    """A tool text file is missing or malformed: a packaging bug, named by its file."""


@dataclass(frozen=True)
class ToolText:
    name: ToolName
    title: str
    description: str
    annotations: ToolAnnotations
    arguments: Mapping[str, str]


def _folder() -> Traversable:
    return resources.files("cdp_mcp.server")


def _read(*parts: str) -> str:
    item = _folder().joinpath(*parts)
    try:
        return item.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(f"cdp_mcp/server/{'/'.join(parts)} is missing") from None


def instructions() -> str:
    """The server's instructions (what a client shows the model before any tool)."""
    return _read("instructions.md").strip()


def shared_arguments() -> dict[str, str]:
    return dict(_shared_arguments())


@functools.cache
def _shared_arguments() -> dict[str, str]:
    """Read once per process: every tool's text and signature check asks for it."""
    return _strings(_yaml(_read("tools", "_shared.yml")), "tools/_shared.yml")


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=YAML_LOADER)  # a safe loader, C or Python


def _strings(data: object, where: str) -> dict[str, str]:
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()
    ):
        raise ContractError(f"{where}: arguments must map each name to a non-empty description")
    return {k: " ".join(v.split()) for k, v in data.items()}


def _annotations(data: object, title: str, where: str) -> ToolAnnotations:
    if not isinstance(data, dict) or set(data) != set(HINTS):
        raise ContractError(f"{where}: annotations must set exactly {', '.join(HINTS)}")
    if not all(isinstance(v, bool) for v in data.values()):
        raise ContractError(f"{where}: each annotation is true or false")
    # The title twice: Tool.title is the spec's place, annotations.title older clients'.
    return ToolAnnotations(title=title, **{HINTS[k]: v for k, v in data.items()})


def load_tool(name: ToolName) -> ToolText:
    where = f"cdp_mcp/server/tools/{name.value}.md"
    text = _read("tools", f"{name.value}.md")
    head, sep, body = text.removeprefix(FRONT).partition("\n" + FRONT)
    if not text.startswith(FRONT) or not sep:
        raise ContractError(f"{where}: needs front matter between two '---' lines")
    meta = _yaml(head)
    if not isinstance(meta, dict) or set(meta) != KEYS:
        raise ContractError(f"{where}: front matter must have exactly {', '.join(sorted(KEYS))}")
    title, description = meta["title"], body.strip()
    if not isinstance(title, str) or not title.strip() or not description:
        raise ContractError(f"{where}: needs a title and a description")
    return ToolText(
        name=name,
        title=title.strip(),
        description=description,
        annotations=_annotations(meta["annotations"], title.strip(), where),
        arguments={**shared_arguments(), **_strings(meta["arguments"] or {}, where)},
    )


def _not_an_argument(hint: Any) -> bool:
    """The context, or a value the SDK resolves before the call (the allowed roots)."""
    if hint is Context:
        return True
    return typing.get_origin(hint) is Annotated and any(
        isinstance(m, Resolve) for m in typing.get_args(hint)[1:]
    )


def described(
    fn: Callable[..., Awaitable[Any]],
    text: ToolText,
    summarize: Callable[[BaseModel], str] | None = None,
) -> Callable[..., Awaitable[Any]]:
    """`fn` under a signature whose arguments carry their descriptions from `text`; with
    `summarize`, its result is the model as structured content and the summary as text.

    Every argument must have a description, and every description an argument: a tool
    file that drifts from its function fails the server's start, not a client's call."""
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    params, seen = [], set()
    for p in sig.parameters.values():
        hint = hints[p.name]
        if not _not_an_argument(hint):
            if p.name not in text.arguments:
                raise ContractError(f"tools/{text.name.value}.md: no description of {p.name}")
            seen.add(p.name)
            hint = Annotated[hint, Field(description=text.arguments[p.name])]
        params.append(p.replace(annotation=hint))
    extra = set(text.arguments) - seen - set(shared_arguments())
    if extra:
        raise ContractError(
            f"tools/{text.name.value}.md: describes {', '.join(sorted(extra))}, which the tool "
            "does not take"
        )

    @functools.wraps(fn)
    async def tool(**arguments: Any) -> Any:
        result = await fn(**arguments)
        if summarize is None or not isinstance(result, BaseModel):
            return result
        # The data once, as structured content; the text only says what it means.
        return CallToolResult(
            content=[TextContent(type="text", text=summarize(result))],
            structured_content=result.model_dump(mode="json"),
        )

    returns = hints.get("return", sig.return_annotation)
    if summarize is not None:
        # The SDK still publishes (and checks against) the model's output schema.
        returns = Annotated[CallToolResult, returns]
    tool.__signature__ = sig.replace(parameters=params, return_annotation=returns)  # type: ignore[attr-defined]
    tool.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    tool.__doc__ = None  # the description comes from the text file, never a docstring
    return tool


# What every result's next_action is, said once (the server's instructions describe its
# fields) instead of NextAction's full definition in each of the thirteen output schemas.
NEXT_ACTION_REF = "#/$defs/NextAction"
NEXT_ACTION_SCHEMA: dict[str, Any] = {"type": "object", "required": ["tool", "why"]}


# Keywords that constrain a value whatever its type, so `null` would fail them too.
TYPE_BLIND = {"enum", "const", "not", "anyOf", "allOf", "oneOf", "$ref"}


def listed(schema: Any, output: bool = False) -> Any:
    """`schema` as the tool listing publishes it (the listing is read into every
    conversation, so it says each thing once): without the titles pydantic derives from
    names ("Config Path" for config_path), `anyOf [T, null]` as `type: [T, "null"]`, no
    `additionalProperties: true` (JSON Schema's default), no `default: null` (what an
    optional argument left out is anyway), and in an output schema no
    defaults (a result always carries the field) and next_action as a short object
    schema. It accepts exactly what the full schema accepts, bar next_action's fields,
    which the pydantic model still checks on the server."""
    if isinstance(schema, list):
        return [listed(item, output) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if output and schema.get("$ref") == NEXT_ACTION_REF:
        return dict(NEXT_ACTION_SCHEMA)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "additionalProperties" and value is True:
            continue
        if key == "default" and (output or value is None):
            continue  # an optional argument left out is null: saying so costs every call
        if key == "$defs" and isinstance(value, dict):
            kept = {n: listed(sub, output) for n, sub in value.items()}
            if output:
                kept.pop("NextAction", None)
            if kept:
                out[key] = kept
        elif key == "properties" and isinstance(value, dict):
            # a map of names to schemas: a property may itself be called "title"
            out[key] = {name: listed(sub, output) for name, sub in value.items()}
        else:
            out[key] = listed(value, output)
    return _nullable_type(out)


def listed_output(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """An output schema as listed (see `listed`), without the result model's docstring at
    its root: that is for the code, and the tool's own description says what it returns."""
    if schema is None:
        return None
    out: dict[str, Any] = listed(schema, output=True)
    out.pop("description", None)
    return out


def _nullable_type(schema: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [{"type": T, ...}, {"type": "null"}]}` as `{"type": [T, "null"], ...}`."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return schema
    (other,) = [o for o in options if o != {"type": "null"}]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str):
        return schema
    if set(other) & TYPE_BLIND:
        return schema  # e.g. an enum: merged with the null type it would still refuse null
    if set(other) & (set(schema) - {"anyOf"}):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**rest, **other, "type": [other["type"], "null"]}
