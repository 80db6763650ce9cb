"""Load a .dig file the way Digdag does (io.digdag.core.config.YamlConfigLoader).

- YAML with Digdag's narrower implicit types (YamlTagResolver): only `true`/`false` (any
  first-letter case) are booleans, so `yes`, `on` and `TRUE` stay strings; `10:00:00` and
  `2024-01-01` stay strings (no sexagesimal ints, no timestamps); a float must not start with
  `0` (`0.5` stays the string "0.5", `1.5` and `1e3` are floats).
- Duplicate keys are refused (StrictSafeConstructor).
- `!include : 'file.yml'` as a key merges that file's mapping there: a key both sides hold as
  a mapping is merged deeply, any other key the file sets replaces the one before it (and a
  key written after the `!include` replaces what the file set). The file must be a mapping,
  in the including file's own folder or below it (no `..`). Digdag can't read `!include` as
  a value (`key: !include file`): it is refused here with that said.
- The document must be a mapping (an empty file is not).

Errors name the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.resolver import BaseResolver

from cdp_mcp.core.errors import CdpError


class DigError(CdpError):
    """A project file that Digdag would refuse, with the file (and line) to fix."""

    def __init__(self, file: str, message: str, line: int | None = None) -> None:
        self.file, self.line, self.detail = file, line, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


class _IncludeKey:
    """Marker for an `!include` node; unique per occurrence so several can coexist. As a
    key it merges the file its value names; as a value Digdag can't read it."""

    def __init__(self, line: int) -> None:
        self.line = line


class _DigLoader(yaml.SafeLoader):
    """YAML as Digdag reads it: SnakeYAML 1.23's implicit types as YamlTagResolver narrows
    them (the resolvers below replace PyYAML's own)."""


_DigLoader.yaml_implicit_resolvers = {}
# Same order as SnakeYAML's Resolver: a scalar gets the first tag whose pattern matches.
_DigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:[Tt]rue|[Ff]alse)$"), list("TtFf")
)
_DigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
        r"|[-+]?[1-9][0-9_]*)$"
    ),
    list("-+0123456789"),
)
_DigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[1-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_DigLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
_DigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_DigLoader.add_implicit_resolver("tag:yaml.org,2002:yaml", re.compile(r"^(?:!|&|\*)$"), list("!&*"))


def _include(loader: _DigLoader, node: yaml.Node) -> object:
    # Digdag's YamlParameterizedConstructor turns any `!include` node into a unique
    # marker, whatever it holds: as a key, the file name is the key's value.
    return _IncludeKey(node.start_mark.line + 1)


_DigLoader.add_constructor("!include", _include)


def _key_text(key: Any, node: yaml.Node) -> Any:
    """A mapping key as Digdag's JSON has it (Jackson writes scalar keys as their text)."""
    if isinstance(key, _IncludeKey):
        return key
    if isinstance(key, dict | list):
        kind = "{...} is read as a mapping" if isinstance(key, dict) else "[...] is read as a list"
        raise ConstructorError(
            None,
            None,
            f"{kind} used as a key (is it a {{{{placeholder}}}}?): a key must be text; "
            "a parameter is written ${name}, and text that starts with { or [ needs quotes",
            node.start_mark,
        )
    if key is None:
        raise ConstructorError(None, None, "a key must not be empty or null", node.start_mark)
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _no_dup_mapping(
    loader: _DigLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = _key_text(loader.construct_object(key_node, deep=True), key_node)
        if key in out:
            raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_DigLoader.add_constructor(BaseResolver.DEFAULT_MAPPING_TAG, _no_dup_mapping)


def _parse(path: Path, rel: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DigError(rel, f"cannot read: {e}") from None
    loader = _DigLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise DigError(rel, f"invalid YAML: {e.problem or e}", line) from None
    except yaml.YAMLError as e:
        raise DigError(rel, f"invalid YAML: {e}") from None
    finally:
        loader.dispose()


def _mapping_doc(doc: Any, rel: str, what: str) -> dict[Any, Any]:
    if doc is None:
        raise DigError(rel, f"{what} is empty: it must be a YAML mapping")
    if not isinstance(doc, dict):
        raise DigError(rel, f"{what} must be a YAML mapping, not a {type(doc).__name__}")
    return doc


def load_dig(path: Path, root: Path) -> dict[str, Any]:
    """Parse `path` (inside project `root`) with every `!include` resolved."""
    rel = path.relative_to(root).as_posix()
    doc = _mapping_doc(_parse(path, rel), rel, "a workflow file")
    resolved = _resolve(doc, path, root, rel, depth=0)
    assert isinstance(resolved, dict)
    return resolved


def _target(inc: str, line: int, here: Path, root: Path, rel: str) -> Path:
    # Digdag resolves the name against the including file's folder and refuses any file
    # outside that folder (YamlConfigLoader.include: "File name must not include ..").
    folder = here.parent.resolve()
    target = (folder / inc).resolve()
    if not target.is_relative_to(folder):
        raise DigError(
            rel,
            f"!include {inc!r}: an included file must be in this file's folder or below it "
            "(Digdag refuses '..' and absolute paths)",
            line,
        )
    if not target.is_relative_to(root.resolve()):
        raise DigError(rel, f"!include {inc!r} points outside the project", line)
    if not target.is_file():
        raise DigError(rel, f"!include {inc!r}: file not found", line)
    return target


def _merge_deep(dest: dict[str, Any], src: dict[str, Any]) -> None:
    """YamlConfigLoader.mergeObject: mappings on both sides merge, anything else replaces."""
    for key, value in src.items():
        if isinstance(dest.get(key), dict) and isinstance(value, dict):
            _merge_deep(dest[key], value)
        else:
            dest[key] = value


def _resolve(node: Any, here: Path, root: Path, rel: str, depth: int) -> Any:
    if depth > 20:
        raise DigError(rel, "!include nested more than 20 levels (a cycle?)")
    if isinstance(node, _IncludeKey):
        raise DigError(
            rel,
            "!include works only as a key that merges a file here (`!include : file.yml`); "
            "Digdag can't read it as a value (`key: !include file.yml`)",
            node.line,
        )
    if isinstance(node, list):
        return [_resolve(v, here, root, rel, depth) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(key, _IncludeKey):
            if not isinstance(value, str) or not value:
                raise DigError(rel, "!include needs a file name", key.line)
            target = _target(value, key.line, here, root, rel)
            trel = target.relative_to(root.resolve()).as_posix()
            doc = _mapping_doc(_parse(target, trel), trel, "a file merged with `!include :`")
            included = _resolve(doc, target, root, trel, depth + 1)
            for inc_key, inc_value in included.items():
                if isinstance(out.get(inc_key), dict) and isinstance(inc_value, dict):
                    _merge_deep(out[inc_key], inc_value)
                else:
                    out[inc_key] = inc_value
        else:
            out[key] = _resolve(value, here, root, rel, depth)
    return out
