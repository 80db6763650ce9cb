"""Load a .dig file the way Digdag does: YAML 1.1 plus the `!include : file` merge key.

In Digdag, `!include : 'config/x.yml'` inside a mapping merges the included file's mapping
there; `key: !include 'x.yml'` substitutes it as a value. Errors name the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DigError(Exception):
    """A project file that Digdag would refuse, with the file (and line) to fix."""

    def __init__(self, file: str, message: str, line: int | None = None) -> None:
        self.file, self.line, self.detail = file, line, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


class _IncludeKey:
    """Marker for the `!include` merge key; unique per occurrence so several can coexist."""

    def __init__(self, line: int) -> None:
        self.line = line


class _Include:
    def __init__(self, target: str, line: int) -> None:
        self.target, self.line = target, line


class _DigLoader(yaml.SafeLoader):
    pass


def _include(loader: _DigLoader, node: yaml.Node) -> object:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and node.value == "":
        return _IncludeKey(line)
    if isinstance(node, yaml.ScalarNode):
        return _Include(str(loader.construct_scalar(node)), line)
    raise yaml.constructor.ConstructorError(
        None, None, "!include takes a file name", node.start_mark
    )


_DigLoader.add_constructor("!include", _include)


def _no_dup_mapping(
    loader: _DigLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out and not isinstance(key, _IncludeKey):
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_DigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_dup_mapping)


def _parse(path: Path, rel: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DigError(rel, f"cannot read: {e}") from None
    try:
        return yaml.load(text, Loader=_DigLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise DigError(rel, f"invalid YAML: {e.problem or e}", line) from None


def load_dig(path: Path, root: Path) -> dict[str, Any]:
    """Parse `path` (inside project `root`) with every `!include` resolved."""
    rel = path.relative_to(root).as_posix()
    doc = _parse(path, rel)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise DigError(rel, "a workflow file must be a YAML mapping")
    resolved = _resolve(doc, path, root, rel, depth=0)
    assert isinstance(resolved, dict)
    return resolved


def _target(inc: str, line: int, here: Path, root: Path, rel: str) -> Path:
    target = (here.parent / inc).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DigError(rel, f"!include {inc!r} points outside the project", line)
    if not target.is_file():
        raise DigError(rel, f"!include {inc!r}: file not found", line)
    return target


def _resolve(node: Any, here: Path, root: Path, rel: str, depth: int) -> Any:
    if depth > 20:
        raise DigError(rel, "!include nested more than 20 levels (a cycle?)")
    if isinstance(node, _Include):
        target = _target(node.target, node.line, here, root, rel)
        trel = target.relative_to(root.resolve()).as_posix()
        return _resolve(_parse(target, trel), target, root, trel, depth + 1)
    if isinstance(node, list):
        return [_resolve(v, here, root, rel, depth) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(key, _IncludeKey):
            if not isinstance(value, str):
                raise DigError(rel, "!include needs a file name", key.line)
            target = _target(value, key.line, here, root, rel)
            trel = target.relative_to(root.resolve()).as_posix()
            included = _resolve(_parse(target, trel), target, root, trel, depth + 1)
            if not isinstance(included, dict):
                raise DigError(trel, "an included file merged with `!include :` must be a mapping")
            out.update(included)
        else:
            out[str(key)] = _resolve(value, here, root, rel, depth)
    return out
