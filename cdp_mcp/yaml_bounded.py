"""YAML for files a person (or a stranger) hands us: size, nesting and aliases bounded.

PyYAML's SafeLoader builds nothing dangerous, but it happily returns a 1.5 KB document
whose aliases expand to a billion nodes (every later walk over it then runs for hours), and
a few thousand nested `[` end in a RecursionError. This loader counts each node as often as
it will be walked, aliases included, and refuses past a budget; it refuses nesting before
Python's recursion limit; and it decodes the bytes itself, so a binary file gets a clear word.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 1024 * 1024
# A real pipeline config has a few hundred nodes and 5 levels; the largest one the config
# allows (255 unification tables of 32 key columns) has about 41,000.
MAX_NODES = 100_000
MAX_DEPTH = 64


class YamlInputError(Exception):
    """The text cannot be read as bounded YAML.

    The message never quotes the document: it may be a file that is not ours at all.
    """


def _where(mark: Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        # expanded size of every composed node, by identity (nodes live as long as the loader)
        self._sizes: dict[int, int] = {}
        self.constructing: Node | None = None

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise YamlInputError(
                    f"the alias (*name) at {_where(event.start_mark)} refers to a node that "
                    "contains it: a structure without end"
                )
            return super().compose_node(parent, index)  # type: ignore[return-value]
        if self._depth >= MAX_DEPTH:
            raise YamlInputError(
                f"the YAML nests more than {MAX_DEPTH} levels deep "
                f"(at {_where(self.peek_event().start_mark)})"
            )
        self._depth += 1
        try:
            node: Node = super().compose_node(parent, index)  # type: ignore[assignment]
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._sizes[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        self._sizes[id(node)] = size
        if size > MAX_NODES:
            raise YamlInputError(
                f"the YAML holds more than {MAX_NODES:,} values once its aliases (*name) are "
                f"expanded (the node at {_where(node.start_mark)}); a config has a few hundred"
            )
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        self.constructing = node  # the scalar a ValueError below comes from
        return super().construct_object(node, deep)


def _problem(err: yaml.YAMLError) -> str:
    """PyYAML's own words for a syntax error, without the quoted snippet of the document."""
    return _short(getattr(err, "problem", None) or type(err).__name__)


def _short(text: str) -> str:
    # Long quoted fragments are the document's text (an alias or tag name); keep them short.
    return re.sub(r"'([^']{24})[^']+'", r"'\1...'", str(text))[:160]


def load_bounded(data: bytes) -> Any:
    """One UTF-8 YAML document as Python values, within MAX_BYTES, MAX_NODES and MAX_DEPTH."""
    if len(data) > MAX_BYTES:
        raise YamlInputError(f"the text is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlInputError(
            "not a cdp-mcp pipeline config: it is not UTF-8 text (byte "
            f"0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # checks the characters already
        return loader.get_single_data()
    except YamlInputError:
        raise
    except yaml.MarkedYAMLError as e:
        where = f" at {_where(e.problem_mark)}" if e.problem_mark is not None else ""
        started = ""
        if e.context and e.context_mark is not None:
            started = f" ({_short(e.context)} that starts at {_where(e.context_mark)})"
        raise YamlInputError(f"not valid YAML{where}: {_problem(e)}{started}") from None
    except yaml.reader.ReaderError as e:
        raise YamlInputError(
            f"not valid YAML: character #x{e.character:04x} at offset {e.position} is not "
            "allowed in YAML text"
        ) from None
    except yaml.YAMLError as e:
        raise YamlInputError(f"not valid YAML: {_problem(e)}") from None
    except (ValueError, OverflowError):
        # The constructor turned a scalar into a value Python refuses (a 2023-13-45 date, an
        # integer of 5,000 digits); PyYAML itself gives no position for those.
        node = loader.constructing if loader is not None else None
        where = f" at {_where(node.start_mark)}" if node is not None else ""
        raise YamlInputError(
            f"not valid YAML{where}: the value cannot be read (a date like 2023-13-45, or "
            "an integer of thousands of digits?); quote it to keep it as text"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
