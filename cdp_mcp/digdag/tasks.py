"""Compile a loaded .dig mapping into a task tree, as Digdag's WorkflowCompiler does.

Keys starting with `+` are tasks; a mapping with an operator key (`td>:`, `_type`) is an
operator task, any other mapping is a group whose children run in order (or in parallel
with `_parallel`). Names are Digdag's full names: `+wf+group+task`; subtasks generated at
run time hang under `^sub`, error handlers under `^error`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdp_mcp.digdag.loader import DigError, load_dig

GROUP_KEYS = frozenset(
    {
        "timezone",
        "schedule",
        "sla",
        "_parallel",
        "_background",
        "_after",
        "_error",
        "_check",
        "_retry",
        "_export",
        "_secrets",
    }
)
# What a workflow file may hold besides `+tasks` (Digdag's WorkflowFile.fromConfig); a
# group deeper down may also hold the rest of GROUP_KEYS.
ROOT_KEYS = frozenset(
    {"timezone", "_export", "schedule", "sla", "_error", "_check", "_retry", "_parallel"}
)
# ModelValidator: after its leading + or ^, a task name may hold only these characters.
_TASK_NAME_BAD_CHAR = re.compile(r"[^a-zA-Z_0-9\-=\[\]{}%&@`,.^]")
_NAME_BAD_FIRST_CHAR = re.compile(r'^[0-9+^@/\\:*?"<>|]')


def task_name_problem(name: str) -> str | None:
    """Why Digdag refuses task name `name` (`+step`, `^error`), or None."""
    if len(name) > 255:
        return "must not be longer than 255 characters"
    bad = _TASK_NAME_BAD_CHAR.search(name[1:])
    if bad:
        return f"must not contain the character {bad.group()!r}"
    return None


def workflow_name_problem(name: str) -> str | None:
    """Why Digdag refuses workflow name `name` (the .dig file name without .dig), or None."""
    if not name:
        return "must not be empty"
    if _NAME_BAD_FIRST_CHAR.search(name):
        return 'must not start with a digit or one of + ^ @ / \\ : * ? " < > |'
    if name.endswith(".dig"):
        return "must not end with .dig"
    problem = task_name_problem("+" + name)  # the root task is +name
    return problem


class CompileError(DigError):
    """A workflow Digdag would refuse to compile, with the file (and line) to fix."""


@dataclass
class TaskNode:
    name: str  # "+step", "^sub", "^error", or "+wf" for the root
    full_name: str
    config: dict[str, Any]  # the task's own keys (no `+` children)
    is_group: bool
    source: str  # project-relative .dig file that defined the task
    workdir: str  # project-relative folder that relative paths resolve against
    line: int | None = None
    children: list[TaskNode] = field(default_factory=list)
    upstreams: list[int] = field(default_factory=list)  # indexes of siblings to wait for

    @property
    def operator(self) -> str | None:
        for key in self.config:
            if key.endswith(">"):
                return key[:-1]
        op = self.config.get("_type")
        return str(op) if op is not None else None

    @property
    def export(self) -> dict[str, Any]:
        value = self.config.get("_export")
        return value if isinstance(value, dict) else {}

    @property
    def error_config(self) -> dict[str, Any] | None:
        value = self.config.get("_error")
        return value if isinstance(value, dict) and value else None

    def walk(self) -> list[TaskNode]:
        """This node and its descendants, depth-first in declaration order."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


def command_key(config: dict[str, Any]) -> str | None:
    """The `op>` key of an operator task's config."""
    return next((k for k in config if k.endswith(">")), None)


LineMap = dict[tuple[str, ...], int]


def line_map(text: str) -> LineMap:
    """Line of every mapping key by its key path, to point errors at the right line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # compose only: tags need no constructor
    except yaml.YAMLError:
        return {}
    out: LineMap = {}

    def visit(node: yaml.Node | None, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    sub = (*path, str(key_node.value))
                    out.setdefault(sub, key_node.start_mark.line + 1)
                    visit(value_node, sub)

    visit(root, ())
    return out


class _Compiler:
    def __init__(self, source: str, workdir: str, lines: LineMap | None) -> None:
        self.source, self.workdir, self.lines = source, workdir, lines or {}

    def fail(self, path: tuple[str, ...], message: str) -> CompileError:
        line = None
        for n in range(len(path), -1, -1):
            line = self.lines.get(path[:n])
            if line:
                break
        return CompileError(self.source, message, line)

    def collect(
        self, name: str, full_name: str, raw: Any, path: tuple[str, ...], root: bool = False
    ) -> TaskNode:
        if not root:
            problem = task_name_problem(name)
            if problem:
                raise self.fail(path, f"task name {name!r} {problem}")
        if isinstance(raw, list) and all(isinstance(part, dict) for part in raw):
            # Digdag reads a list of mappings as one mapping, merged in order.
            raw = {k: v for part in raw for k, v in part.items()}
        if raw is None:
            raise self.fail(path, f"task {full_name} is empty: give it an operator or subtasks")
        if not isinstance(raw, dict):
            raise self.fail(path, f"task {full_name} must be a mapping, got {type(raw).__name__}")
        subtasks = [(k, v) for k, v in raw.items() if k.startswith("+")]
        config = {k: v for k, v in raw.items() if not k.startswith("+")}
        line = self.lines.get(path)
        operators = [k for k in config if k.endswith(">")]
        if operators or "_type" in config:
            if subtasks:
                raise self.fail(
                    path,
                    f"task {full_name} has an operator and subtasks; a task can't have subtasks",
                )
            if len(operators) > 1:
                ops = ", ".join(operators)
                raise self.fail(path, f"task {full_name} can't have more than one operator: {ops}")
            self._check_error_task(full_name, config, path)
            return TaskNode(name, full_name, config, False, self.source, self.workdir, line)
        self._check_group_keys(full_name, config, path, root)
        node = TaskNode(name, full_name, config, True, self.source, self.workdir, line)
        for key, value in subtasks:
            if root and "^" in key:  # WorkflowFile.check: ^ marks generated tasks
                raise self.fail((*path, key), f"task name {key!r} must not contain ^")
            node.children.append(self.collect(key, full_name + key, value, (*path, key)))
        self._link(node, path)
        self._check_error_task(full_name, config, path)
        return node

    def _check_group_keys(
        self, full_name: str, config: dict[str, Any], path: tuple[str, ...], root: bool
    ) -> None:
        allowed = ROOT_KEYS if root else GROUP_KEYS
        unknown = [k for k in config if k not in allowed]
        if unknown and root:
            raise self.fail(
                (*path, unknown[0]),
                f"workflow {full_name[1:]} contains invalid keys: "
                f"{', '.join(repr(k) for k in unknown)} (at the top of a workflow file: "
                f"+tasks and {', '.join(sorted(ROOT_KEYS))}; parameters go under _export)",
            )
        if unknown:
            parts = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
                parts.append(f"'{key}' (did you mean '{close[0]}'?)" if close else f"'{key}'")
            raise self.fail(
                (*path, unknown[0]),
                f"group task {full_name} contains invalid keys: {', '.join(parts)} "
                "(parameters of a group go under _export)",
            )

    def _check_error_task(
        self, full_name: str, config: dict[str, Any], path: tuple[str, ...]
    ) -> None:
        error = config.get("_error")
        if error is None:
            return
        if not isinstance(error, dict):
            raise self.fail((*path, "_error"), f"_error of {full_name} must be a mapping of tasks")
        self.collect("^error", full_name + "^error", error, (*path, "_error"))

    def _link(self, node: TaskNode, path: tuple[str, ...]) -> None:
        """Set each child's upstreams the way Digdag orders siblings."""
        parallel, limit = parse_parallel(node.config.get("_parallel"))
        if parallel is None:
            raise self.fail(
                (*path, "_parallel"),
                f"invalid _parallel in {node.full_name}: use true, false or {{limit: N}}",
            )
        kids = node.children
        if parallel:
            names: dict[str, int] = {}
            for i, child in enumerate(kids):
                if child.config.get("_background"):
                    raise self.fail(
                        (*path, child.name),
                        f"{child.full_name}: _background is unnecessary under _parallel: true",
                    )
                if limit:
                    chunk_start = (i // limit) * limit
                    child.upstreams = list(range(max(0, chunk_start - limit), chunk_start))
                after = child.config.get("_after") or []
                if not isinstance(after, list):
                    raise self.fail(
                        (*path, child.name, "_after"),
                        f"{child.full_name}: _after must be a list of task names, like [{after}]",
                    )
                for up in after:
                    if up not in names:
                        raise self.fail(
                            (*path, child.name),
                            f"{child.full_name}: _after task '{up}' does not exist before it",
                        )
                    child.upstreams.append(names[up])
                names[child.name] = i
            return
        before: list[int] = []
        for i, child in enumerate(kids):
            if "_after" in child.config:
                raise self.fail(
                    (*path, child.name),
                    f"{child.full_name}: _after is valid only when the parent has _parallel: true",
                )
            if child.config.get("_background"):
                before.append(i)
            else:
                child.upstreams = list(before)
                before = [i]


def parse_parallel(value: Any) -> tuple[bool | None, int]:
    """(parallel, limit) from `_parallel`; parallel is None when the value is invalid."""
    if value is None:
        return False, 0
    if isinstance(value, bool):
        return value, 0
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true", 0
    if isinstance(value, dict) and set(value) == {"limit"}:
        try:
            limit = int(value["limit"])
        except (TypeError, ValueError):
            return None, 0
        return (True, limit) if limit > 0 else (None, 0)
    return None, 0


def compile_workflow(
    name: str, config: dict[str, Any], source: str, workdir: str = "", lines: LineMap | None = None
) -> TaskNode:
    """The task tree of workflow `name` (root full name `+name`)."""
    compiler = _Compiler(source, workdir, lines)
    problem = workflow_name_problem(name)
    if problem:
        raise CompileError(source, f"workflow name {name!r} {problem}: rename the file")
    return compiler.collect("+" + name, "+" + name, config, (), root=True)


def compile_subtasks(
    parent_full_name: str, name: str, config: dict[str, Any], source: str, workdir: str
) -> TaskNode:
    """Tasks generated at run time (`^sub` of an operator, `^error` of a failed task)."""
    return _Compiler(source, workdir, None).collect(name, parent_full_name + name, config, ())


def load_workflow_file(root: Path, path: Path, name: str | None = None) -> TaskNode:
    """Load and compile one .dig file of the project at `root`."""
    doc = load_dig(path, root)
    rel = path.relative_to(root).as_posix()
    try:
        lines = line_map(path.read_text(encoding="utf-8"))
    except OSError:
        lines = {}
    workdir = Path(rel).parent.as_posix()
    return compile_workflow(name or path.stem, doc, rel, "" if workdir == "." else workdir, lines)


def resolve_in_project(root: Path, workdir: str, relpath: str) -> Path:
    """A path named in a task, relative to its workdir; refused when it leaves the project."""
    target = (root / workdir / relpath).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"{relpath!r} points outside the project")
    return target


def _literal(value: Any) -> str | None:
    return value if isinstance(value, str) and value and "${" not in value else None


def check_project(root: Path) -> dict[str, TaskNode]:
    """Compile every top-level workflow and the files they reference, like a push does.

    Raises CompileError (file, line, message) for the first problem found.
    """
    return {path.stem: check_workflow_file(root, path) for path in sorted(root.glob("*.dig"))}


def check_workflow_file(root: Path, path: Path) -> TaskNode:
    """One top-level workflow of `check_project`, with the files its tasks reference."""
    tree = load_workflow_file(root, path)
    _check_references(root, tree, seen={path.resolve()})
    return tree


def _check_references(root: Path, tree: TaskNode, seen: set[Path]) -> None:
    nodes = list(tree.walk())
    for node in list(nodes):
        err = node.error_config
        if err:
            nodes.extend(
                compile_subtasks(node.full_name, "^error", err, node.source, node.workdir).walk()
            )
    for node in nodes:
        op, key = node.operator, command_key(node.config)
        command = _literal(node.config.get(key)) if key else None
        if op in ("td", "td_load") and command and command.endswith((".sql", ".yml", ".yaml")):
            _must_exist(root, node, command, f"{op}>")
        if op == "call" and command:
            target_rel = command if command.endswith(".dig") else command + ".dig"
            target = _must_exist(root, node, target_rel, "call>")
            if target in seen:
                raise CompileError(
                    node.source, f"call> {command!r} calls itself (a cycle)", node.line
                )
            called = load_workflow_file(root, target)
            _check_references(root, called, seen | {target})


def _must_exist(root: Path, node: TaskNode, relpath: str, what: str) -> Path:
    try:
        target = resolve_in_project(root, node.workdir, relpath)
    except ValueError as e:
        raise CompileError(node.source, f"{node.full_name}: {what} {e}", node.line) from None
    if not target.is_file():
        where = f"{node.workdir}/{relpath}" if node.workdir else relpath
        raise CompileError(
            node.source, f"{node.full_name}: {what} file {where!r} not found", node.line
        )
    return target
