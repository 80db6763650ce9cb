"""YAML for files a person (or a stranger) hands us: size, nesting and aliases bounded.

PyYAML's SafeLoader builds nothing dangerous, but it happily returns a 1.5 KB document
whose aliases expand to a billion nodes (every later walk over it then runs for hours), and
a few thousand nested `[` end in a RecursionError. This loader counts each node as often as
it will be walked, aliases included, and refuses past a budget; it refuses nesting before
Python's recursion limit; and it decodes the bytes itself, so a binary file gets a clear word.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from cdp_mcp.core.errors import CdpError

# libyaml (in PyYAML's wheels) scans and parses about 5x faster than PyYAML's Python code
try:
    from yaml import cyaml

    CParser: Any = getattr(cyaml, "CParser")  # noqa: B009 - the stubs do not export it
except ImportError:  # PyYAML built without libyaml
    CParser = None

MAX_BYTES = 1024 * 1024
# A real pipeline config has a few hundred nodes and 5 levels; the largest one the config
# allows (255 unification tables of 32 key columns) has about 41,000.
MAX_NODES = 100_000
MAX_DEPTH = 64


class YamlInputError(CdpError):
    """The text cannot be read as bounded YAML.

    The message never quotes the document: it may be a file that is not ours at all.
    """


def _where(mark: Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _BoundedComposer(Composer):
    """Composes nodes as PyYAML does, counting every node as often as it will be walked."""

    # from the parser it is mixed with (annotations only: the parser's methods are used)
    check_event: Callable[..., bool]
    peek_event: Callable[[], Any]

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        # expanded size of every composed node, by identity (nodes live as long as the loader)
        self._sizes: dict[int, int] = {}
        self._total = 0  # expanded nodes composed so far, in document order
        self.constructing: Node | None = None

    def _count(self, size: int, mark: Mark) -> None:
        self._total += size
        if self._total > MAX_NODES:
            raise YamlInputError(
                f"the YAML holds more than {MAX_NODES:,} values once its aliases (*name) are "
                f"expanded (at {_where(mark)}); a pipeline config has a few hundred"
            )

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self._sizes:
                    raise YamlInputError(
                        f"the alias (*name) at {_where(event.start_mark)} refers to a node "
                        "that contains it: a structure without end"
                    )
                self._count(self._sizes[id(target)], event.start_mark)
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
        self._count(1, node.start_mark)  # its children counted themselves
        return node


class _PyParser(Reader, Scanner, Parser):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


def _loader_on(parser: Any) -> Callable[[str], Any]:
    """A safe loader whose events come from `parser` and whose nodes our composer counts."""

    class BoundedLoader(_BoundedComposer, parser, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            parser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

        def construct_object(self, node: Node, deep: bool = False) -> Any:
            self.constructing = node  # the scalar a ValueError below comes from
            return super().construct_object(node, deep)

    return BoundedLoader


# Events from libyaml when PyYAML has it, from PyYAML's own Python code otherwise.
LOADERS: dict[str, Callable[[str], Any]] = {"python": _loader_on(_PyParser)}
if CParser is not None:
    LOADERS["libyaml"] = _loader_on(CParser)


def _problem(err: yaml.YAMLError) -> str:
    """PyYAML's own words for a syntax error, without the quoted snippet of the document."""
    return _short(getattr(err, "problem", None) or type(err).__name__)


def _short(text: str) -> str:
    # Long quoted fragments are the document's text (an alias or tag name); keep them short.
    return re.sub(r"'([^']{24})[^']+'", r"'\1...'", str(text))[:160]


def load_bounded(data: bytes, parser: str | None = None) -> Any:
    """One UTF-8 YAML document as Python values, within MAX_BYTES, MAX_NODES and MAX_DEPTH.

    `parser` picks a loader of LOADERS (tests run both); by default the fastest there is.
    """
    if len(data) > MAX_BYTES:
        raise YamlInputError(f"the text is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlInputError(
            "not a cdp-mcp pipeline config: it is not UTF-8 text (byte "
            f"0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    make = LOADERS[parser or ("libyaml" if "libyaml" in LOADERS else "python")]
    loader: Any = None
    try:
        loader = make(text)  # checks the characters already
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
