"""Compiling .dig files into task trees, and the checks a push makes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from cdp_mcp.digdag.loader import DigError
from cdp_mcp.digdag.tasks import (
    CompileError,
    TaskNode,
    check_project,
    compile_workflow,
    line_map,
    load_workflow_file,
)


def _compile(text: str) -> TaskNode:
    doc = yaml.safe_load(textwrap.dedent(text))
    return compile_workflow("wf", doc, "wf.dig", lines=line_map(textwrap.dedent(text)))


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_full_names_groups_and_sequential_upstreams() -> None:
    tree = _compile(
        """
        +a:
          echo>: 1
        +g:
          +b:
            echo>: 2
          +c:
            echo>: 3
        """
    )
    assert [n.full_name for n in tree.walk()] == ["+wf", "+wf+a", "+wf+g", "+wf+g+b", "+wf+g+c"]
    assert [c.upstreams for c in tree.children] == [[], [0]]
    assert tree.children[1].is_group and not tree.children[0].is_group
    assert tree.children[0].operator == "echo"


def test_parallel_limit_chunks_after_and_background() -> None:
    tree = _compile(
        """
        +p:
          _parallel: {limit: 2}
          +a: {echo>: a}
          +b: {echo>: b}
          +c: {echo>: c}
          +d: {echo>: d}
          +e: {echo>: e}
        +q:
          _parallel: true
          +a: {echo>: a}
          +b: {echo>: b, _after: [+a]}
        +s:
          +a: {echo>: a}
          +bg: {echo>: bg, _background: true}
          +x: {echo>: x}
        """
    )
    p, q, s = tree.children
    # Digdag: each chunk of `limit` tasks waits for the whole previous chunk
    assert [c.upstreams for c in p.children] == [[], [], [0, 1], [0, 1], [2, 3]]
    assert [c.upstreams for c in q.children] == [[], [0]]
    # a background task does not wait for the one before it; the next waits for both
    assert [c.upstreams for c in s.children] == [[], [], [0, 1]]


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("+t:\n  echo>: a\n  td>: q.sql\n", "more than one operator", 1),
        ("+a:\n  echo>: a\n+b:\n  echo>: b\n  +c:\n    echo>: c\n", "can't have subtasks", 3),
        ("+g:\n  database: x\n  +a:\n    echo>: a\n", "invalid keys: 'database'", 2),
        ("+g:\n  _paralel: true\n  +a:\n    echo>: a\n", "did you mean '_parallel'", 2),
        ("+g:\n  _parallel: maybe\n  +a:\n    echo>: a\n", "invalid _parallel", 2),
        ("+g:\n  +a:\n    echo>: a\n    _after: +a\n", "_after is valid only", 2),
        (
            "+t:\n  echo>: a\n  _error:\n    +x:\n      a>: 1\n      b>: 2\n",
            "more than one operator",
            4,
        ),
    ],
)
def test_refused_workflows_name_the_line(text: str, message: str, line: int) -> None:
    with pytest.raises(CompileError, match=message) as info:
        _compile(text)
    assert info.value.file == "wf.dig"
    assert info.value.line == line


def test_check_project_compiles_top_level_workflows_only(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "a.dig": "+x:\n  call>: sub/b.dig\n",
            "sub/b.dig": "+y:\n  td>: q.sql\n  database: d\n",
            "sub/q.sql": "SELECT 1",
        },
    )
    workflows = check_project(root)
    assert list(workflows) == ["a"]
    called = load_workflow_file(root, root / "sub" / "b.dig")
    assert called.workdir == "sub" and called.full_name == "+b"


@pytest.mark.parametrize(
    ("files", "file", "line", "message"),
    [
        ({"a.dig": "+x:\n  echo>: [unclosed\n"}, "a.dig", 3, "invalid YAML"),
        (
            {"a.dig": "+x:\n  echo>: a\n+y:\n  call>: missing.dig\n"},
            "a.dig",
            3,
            "'missing.dig' not found",
        ),
        (
            {"a.dig": "_export:\n  !include : config/none.yml\n+x:\n  echo>: a\n"},
            "a.dig",
            2,
            "not found",
        ),
        ({"a.dig": "+x:\n  call>: b\n", "b.dig": "+y:\n  call>: a\n"}, "b.dig", 1, "cycle"),
        ({"a.dig": "+q:\n  td>: queries/none.sql\n"}, "a.dig", 1, "'queries/none.sql' not found"),
    ],
)
def test_check_project_refuses_with_file_and_line(
    tmp_path: Path, files: dict[str, str], file: str, line: int, message: str
) -> None:
    root = _write(tmp_path, files)
    with pytest.raises(DigError, match=message) as info:
        check_project(root)
    assert info.value.file == file
    assert info.value.line == line
