"""The structural check of a Digdag project: what Digdag or TD would refuse, found before a run.

`check_project(directory)` returns every problem (file, line when known, message):
- every top-level `.dig` (and every `call>`ed one) loads with Digdag's YAML and `!include`
  semantics (`digdag.loader.load_dig`); every `.yml` loads too;
- every task (`+name`) has exactly one operator (`xxx>`), or is a group of child tasks;
  `for_each>`, `for_range>`, `loop>`, `td_for_each>` need `_do`, `if>` `_do` or `_else_do`;
- every referenced file exists (`td>` / `td_for_each>` SQL, `td_load>` yml, `call>` dig,
  `!include`), and `require>` names a top-level workflow of the project;
- every SQL file (and inline `query:`) parses with sqlglot in its task's engine dialect, and
  a Hive one calls no Presto-only function (TD's Hive refuses them):
  `engine:` on the task, else `engine` / `td.engine` exported by a parent, else presto;
  `engine_by_file` ({relative path: engine}) overrides that per file;
- `config/unify.yml`, when present, is within TD's limits (`unify_plan.unify_config_problems`).

Digdag fills `${...}` in SQL before it runs, so the check replaces each with a neutral value
first (`neutralize_params`): inside a quoted string or comment it becomes `x` (any text
fits); after LIMIT / OFFSET it becomes `1`; elsewhere the identifier `td_param`, which
parses wherever a table, column or value may stand (`${db}.${tbl}_tmp` -> `td_param.td_param_tmp`).
Line breaks inside a `${...}` are kept, so reported lines match the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import sqlglot
import yaml
from pydantic import BaseModel
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from cdp_mcp.core.hive_functions import PRESTO_ONLY, presto_only_calls
from cdp_mcp.core.sqltext import quiet_sqlglot
from cdp_mcp.core.td_unify import unify_config_problems
from cdp_mcp.digdag.loader import DigError, load_dig

PLACEHOLDER = "td_param"
ENGINES = ("presto", "hive")
UNIFY_YML = "config/unify.yml"
# Operators whose value is a file of the project, with the suffixes that mark a file.
FILE_OPERATORS = {
    "td>": (".sql",),
    "td_for_each>": (".sql",),
    "td_load>": (".yml", ".yaml"),
    "call>": (".dig",),
}
SQL_OPERATORS = ("td>", "td_for_each>")
LOOP_OPERATORS = ("for_each>", "for_range>", "loop>", "td_for_each>")
NESTED_TASKS = ("_error", "_check")  # blocks of tasks any task may have
_NUMBER_CONTEXT = ("limit", "offset")


class CheckProblem(BaseModel):
    file: str  # relative to the project folder
    line: int | None = None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


def check_project(
    directory: Path, engine_by_file: dict[str, str] | None = None
) -> list[CheckProblem]:
    """Every structural problem of the Digdag project in `directory` ([] when none)."""
    checker = _ProjectChecker(directory.resolve(), dict(engine_by_file or {}))
    checker.run()
    return checker.problems


class SqlUse(NamedTuple):
    """How one td> task runs a SQL file: its engine and the table it writes, if any."""

    engine: str
    create_table: str | None
    insert_into: str | None


def sql_uses(directory: Path) -> dict[str, set[SqlUse]]:
    """Each SQL file of the project in `directory` (relative path) -> how its td> tasks run
    it, as the check walks the workflows (a file no task names: as a query on presto,
    td>'s default)."""
    checker = _ProjectChecker(directory.resolve(), {})
    checker.run()
    return {
        rel: checker.sql_uses.get(rel) or {SqlUse(engine, None, None) for engine in engines}
        for rel, engines in checker.sql_files().items()
    }


# -- `${...}` substitution --------------------------------------------------------------


def neutralize_params(sql: str) -> str:
    """`sql` with every Digdag `${...}` replaced by a value that parses (see module doc)."""
    out: list[str] = []
    quote: str | None = None  # "'", '"', "--" or "/*" while inside one
    i = 0
    while i < len(sql):
        if sql.startswith("${", i):
            end = _param_end(sql, i)
            if end < 0:  # unterminated: leave it for the parser to report
                out.append(sql[i:])
                break
            out.append(_placeholder(quote, out) + "\n" * sql.count("\n", i, end))
            i = end
            continue
        token, quote = _scan(sql, i, quote)
        out.append(token)
        i += len(token)
    return "".join(out)


def _scan(sql: str, i: int, quote: str | None) -> tuple[str, str | None]:
    """The token at `i` (one char, or a two-char delimiter) and the quoting state after it."""
    two = sql[i : i + 2]
    ch = sql[i]
    if quote is None:
        if two in ("--", "/*"):
            return two, two
        return ch, ch if ch in "'\"" else None
    if quote == "--":
        return ch, None if ch == "\n" else quote
    if quote == "/*":
        return (two, None) if two == "*/" else (ch, quote)
    if two == quote * 2:  # '' or "" escapes the quote
        return two, quote
    return ch, None if ch == quote else quote


def _param_end(sql: str, start: int) -> int:
    """Index just after the `}` closing the `${` at `start`; -1 when there is none."""
    depth = 0
    for j in range(start + 1, len(sql)):
        if sql[j] == "{":
            depth += 1
        elif sql[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def _placeholder(quote: str | None, before: list[str]) -> str:
    if quote is not None:
        return "x"
    tail = "".join(before[-40:])
    m = re.search(r"([A-Za-z_]+)\s*$", tail)
    return "1" if m and m.group(1).lower() in _NUMBER_CONTEXT else PLACEHOLDER


def sql_problems(sql: str, engine: str) -> list[tuple[int | None, str]]:
    """(line, message) for each reason `sql` (with `${...}`) does not parse as `engine`."""
    text = neutralize_params(sql)
    try:
        with quiet_sqlglot():
            statements = [s for s in sqlglot.parse(text, read=engine) if s is not None]
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        near = f" near {first['highlight']!r}" if first.get("highlight") else ""
        return [
            (
                first.get("line"),
                f"SQL does not parse as {engine}: {first.get('description', e)}{near}",
            )
        ]
    except TokenError as e:
        return [(None, f"SQL does not parse as {engine}: {e}")]
    if not statements:
        return [(None, "no SQL statement")]
    bare = (exp.Column, exp.Identifier, exp.Literal)
    problems: list[tuple[int | None, str]] = [
        (None, f"{s.sql()!r} is not a SQL statement")
        for s in statements
        if isinstance(s, bare) and s.sql() != PLACEHOLDER
    ]
    if engine == "hive":
        for name in presto_only_calls(text):
            problems.append(
                (None, f"Hive has no {name} (a Presto function); use {PRESTO_ONLY[name]}")
            )
    return problems


# -- the project walk -------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """What a task inherits from its parents' `_export`."""

    engine: str | None = None

    def enter(self, node: dict[str, Any]) -> _Scope:
        export = node.get("_export")
        if not isinstance(export, dict):
            return self
        td = export.get("td")
        engine = export.get("engine") or (td.get("engine") if isinstance(td, dict) else None)
        return _Scope(engine=str(engine)) if engine else self


class _ProjectChecker:
    def __init__(self, root: Path, engine_by_file: dict[str, str]) -> None:
        self.root = root
        self.engine_by_file = engine_by_file
        self.problems: list[CheckProblem] = []
        self._seen: set[tuple[str, int | None, str]] = set()
        self.workflows = sorted(p.stem for p in root.glob("*.dig"))
        self.sql_uses: dict[str, set[SqlUse]] = {}  # file -> the td> tasks' ways of running it
        self._queue = sorted(root.glob("*.dig"))
        self._visited: set[Path] = set()

    def add(self, file: str, message: str, line: int | None = None) -> None:
        if (file, line, message) not in self._seen:
            self._seen.add((file, line, message))
            self.problems.append(CheckProblem(file=file, line=line, message=message))

    def rel(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def run(self) -> None:
        if not self.workflows:
            self.add(".", "no workflow: the project has no .dig file at its top level")
        while self._queue:
            dig = self._queue.pop(0)
            if dig.resolve() not in self._visited:
                self._visited.add(dig.resolve())
                self._check_dig(dig)
        for path in sorted([*self.root.rglob("*.yml"), *self.root.rglob("*.yaml")]):
            self._load(path)
        self._check_sql_files()
        self._check_unify_yml()

    def _load(self, path: Path) -> dict[str, Any] | None:
        try:
            return load_dig(path, self.root)
        except DigError as e:
            self.add(e.file, e.detail, e.line)
            return None

    # -- workflows --------------------------------------------------------------------

    def _check_dig(self, dig: Path) -> None:
        doc = self._load(dig)
        if doc is None:
            return
        wf = _Workflow(self, dig, dig.read_text(encoding="utf-8").splitlines())
        if not any(k.startswith("+") or k.endswith(">") for k in doc):
            self.add(wf.rel, "the workflow has no tasks (+name:)")
            return
        wf.check_node(doc, [], _Scope(), top=True)

    # -- SQL --------------------------------------------------------------------------

    def enqueue(self, dig: Path) -> None:
        self._queue.append(dig)

    def use_sql(self, rel: str, engine: str, node: dict[str, Any]) -> None:
        into = {k: node.get(k) for k in ("create_table", "insert_into")}
        self.sql_uses.setdefault(rel, set()).add(
            SqlUse(
                engine,
                str(into["create_table"]) if into["create_table"] else None,
                str(into["insert_into"]) if into["insert_into"] else None,
            )
        )

    def sql_files(self) -> dict[str, set[str]]:
        """Every .sql file, and any other file a td> task names, with the engines that run it
        (presto for a file no task names: td>'s default)."""
        files = {self.rel(p) for p in self.root.rglob("*.sql")} | set(self.sql_uses)
        return {
            rel: (
                {self.engine_by_file[rel]}
                if rel in self.engine_by_file
                else {u.engine for u in self.sql_uses.get(rel, ())} or {"presto"}
            )
            for rel in sorted(files)
        }

    def _check_sql_files(self) -> None:
        for rel, engines in self.sql_files().items():
            text = (self.root / rel).read_text(encoding="utf-8")
            for engine in sorted(engines):
                for line, message in sql_problems(text, engine):
                    self.add(rel, message, line)

    # -- unify.yml --------------------------------------------------------------------

    def _check_unify_yml(self) -> None:
        path = self.root / UNIFY_YML
        if not path.is_file():
            return
        doc = self._load(path)
        if doc is None:
            return
        text = path.read_text(encoding="utf-8")
        for p in unify_config_problems(doc):
            self.add(UNIFY_YML, str(p), _yaml_line(text, p.path))


class _Workflow:
    """Checks the tasks of one .dig file."""

    def __init__(self, project: _ProjectChecker, dig: Path, lines: list[str]) -> None:
        self.project = project
        self.dig = dig
        self.rel = project.rel(dig)
        self.lines = lines

    def add(self, names: list[str], message: str) -> None:
        # Digdag's spelling of a task: +group+child, with nested blocks as +loop._do+each.
        task = "".join(n if n.startswith("+") else f".{n}" for n in names) or "(top level)"
        self.project.add(self.rel, f"task {task}: {message}", self._line_of(names))

    def _line_of(self, names: list[str]) -> int | None:
        """The line of the innermost task key, found by searching for each name in turn."""
        line = 0
        for name in names:
            pattern = re.compile(rf"^\s*{re.escape(name)}\s*:")
            found = next(
                (i for i in range(line, len(self.lines)) if pattern.match(self.lines[i])), None
            )
            if found is None:
                return None
            line = found
        return line + 1 if names else None

    def check_node(self, node: Any, names: list[str], scope: _Scope, top: bool = False) -> None:
        if not isinstance(node, dict):
            self.add(
                names, "must be a mapping: an operator (like td>: q.sql) or child tasks (+name:)"
            )
            return
        scope = scope.enter(node)
        ops = [k for k in node if k.endswith(">")]
        children = [k for k in node if k.startswith("+")]
        if len(ops) > 1:
            self.add(names, f"has {len(ops)} operators ({', '.join(ops)}); a task runs exactly one")
        elif ops and children:
            self.add(names, f"has both an operator ({ops[0]}) and child tasks; split them")
        elif not ops and not children and not top:
            self.add(names, "has no operator (like td>: q.sql) and no child tasks")
        for op in ops:
            self._check_operator(op, node, names, scope)
        for key in NESTED_TASKS:
            if key in node:
                self.check_node(node[key], [*names, key], scope)
        for child in children:
            self.check_node(node[child], [*names, child], scope)

    def _check_operator(
        self, op: str, node: dict[str, Any], names: list[str], scope: _Scope
    ) -> None:
        value = node[op]
        if op in LOOP_OPERATORS and "_do" not in node:
            self.add(names, f"{op} needs _do: the tasks to run")
        if op == "if>" and "_do" not in node and "_else_do" not in node:
            self.add(names, "if> needs _do or _else_do")
        for key in ("_do", "_else_do"):
            if key in node:
                self.check_node(node[key], [*names, key], scope)
        if op in SQL_OPERATORS:
            self._check_sql_task(op, value, node, names, scope)
        elif op == "call>" and isinstance(value, str):
            # Digdag accepts the workflow file with or without its .dig suffix.
            called = self._file(op, value if value.endswith(".dig") else f"{value}.dig", names)
            if called is not None:
                self.project.enqueue(called)
        elif op in FILE_OPERATORS and isinstance(value, str) and value.endswith(FILE_OPERATORS[op]):
            self._file(op, value, names)
        elif op == "require>":
            self._check_require(value, node, names)

    def _engine(self, node: dict[str, Any], scope: _Scope, names: list[str]) -> str:
        engine = str(node.get("engine") or scope.engine or "presto")
        if "${" in engine:
            return "presto"  # chosen at run time; presto is TD's default
        if engine.lower() not in ENGINES:
            self.add(names, f"engine {engine!r} is not one of: {', '.join(ENGINES)}")
            return "presto"
        return engine.lower()

    def _check_sql_task(
        self, op: str, value: Any, node: dict[str, Any], names: list[str], scope: _Scope
    ) -> None:
        engine = self._engine(node, scope, names)
        if isinstance(value, str) and value.strip():
            path = self._file(op, value, names)
            if path is not None:
                self.project.use_sql(self.project.rel(path), engine, node)
            return
        query = node.get("query")
        if not isinstance(query, str) or not query.strip():
            self.add(names, f"{op} needs a SQL file (like {op} queries/x.sql) or a query:")
            return
        for _, message in sql_problems(query, engine):
            self.add(names, f"query: {message}")

    def _file(self, op: str, value: Any, names: list[str]) -> Path | None:
        """The existing project file `value` names, or None (and a problem when missing)."""
        if not isinstance(value, str) or "${" in value:
            return None  # computed at run time
        path = (self.dig.parent / value).resolve()
        if not path.is_relative_to(self.project.root):
            self.add(names, f"{op} {value!r} points outside the project")
            return None
        if not path.is_file():
            self.add(names, f"{op} {value!r}: file not found")
            return None
        return path

    def _check_require(self, value: Any, node: dict[str, Any], names: list[str]) -> None:
        if "project_name" in node or "project_id" in node:
            return  # a workflow of another project
        if not isinstance(value, str) or "${" in value:
            return
        name = value.removesuffix(".dig")
        if name not in self.project.workflows:
            known = ", ".join(self.project.workflows)
            self.add(
                names, f"require> {value!r} is not a workflow of this project (workflows: {known})"
            )


def _yaml_line(text: str, path: str) -> int | None:
    """The line of `path` (like `tables[0].key_columns[1].key`) in YAML `text`, or of the
    deepest part of it that exists."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child(node, name, index)
    return node.start_mark.line + 1 if node is not None else line


def _child(node: Any, name: str, index: str) -> Any:
    if index and isinstance(node, yaml.SequenceNode):
        i = int(index)
        return node.value[i] if i < len(node.value) else None
    if name and isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if getattr(k, "value", None) == name), None)
    return None
