"""The local backend's shape: one public face, no import loops, one process-wide registry."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import cdp_mcp.backends.local as local
from cdp_mcp.backends.base import TaskState

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cdp_mcp" / "backends" / "local"
SESSION = datetime(2026, 1, 1, tzinfo=UTC)
# The one import deferred inside a function, for its cost (numpy, scipy), not for a loop.
DEFERRED = {("unification/handler.py", "cdp_mcp.backends.local.unification.engine")}


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """A loop hidden by import order shows when its module is the first one imported."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {_modules()!r}:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('cdp_mcp')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as e:\n"
        "        failed.append(f'{name}: {e}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def _imports_below_top(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports inside functions or classes (not `if TYPE_CHECKING:` blocks at the top)."""
    top = set()
    for node in tree.body:
        top.add(id(node))
        if isinstance(node, ast.If):  # TYPE_CHECKING
            top.update(id(n) for n in node.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            found.append((node.lineno, module or ""))
    return found


@pytest.mark.slow
def test_no_import_is_hidden_in_a_function_but_the_deferred_engine() -> None:
    hidden = [
        (str(path.relative_to(PACKAGE)), module)
        for path in sorted(PACKAGE.rglob("*.py"))
        for _, module in _imports_below_top(ast.parse(path.read_text()))
    ]
    assert set(hidden) == DEFERRED


@pytest.mark.slow
def test_the_emulator_and_the_cli_import_only_the_packages_face() -> None:
    users = [*sorted((ROOT / "cdp_mcp" / "emulator").rglob("*.py")), ROOT / "cdp_mcp/cli/wf.py"]
    reaching_in = []
    for path in users:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                if module.startswith("cdp_mcp.backends.local."):
                    reaching_in.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    assert reaching_in == []


def test_the_face_exports_what_it_lists() -> None:
    assert all(getattr(local, name, None) is not None for name in local.__all__)
    assert local.default_unification_handler is not None


@pytest.mark.slow
def test_runtimes_of_one_workspace_share_its_warehouse_and_its_running_attempts(
    tmp_path: Path,
) -> None:
    first = local.LocalRuntime(tmp_path / "ws")
    second = local.LocalRuntime(tmp_path / "ws")
    assert first.warehouse is second.warehouse  # DuckDB allows one instance per file
    src = tmp_path / "proj"
    src.mkdir()
    # A loop of slow queries: running long enough to be killed from the other runtime.
    (src / "slow.dig").write_text(
        "+init:\n  td_ddl>:\n  create_databases: [db]\n"
        "+loop:\n  loop>: 200\n  _do:\n    td>:\n    query: SELECT count(*) FROM range(3000000)\n"
        "    database: db\n"
    )
    first.push("proj", src)
    attempt = first.start("proj", "slow", SESSION)
    deadline = time.monotonic() + 30
    while not any(t.state == TaskState.RUNNING for t in second.tasks(attempt.id)):
        assert time.monotonic() < deadline, "the attempt never started running"
        time.sleep(0.05)
    second.kill(attempt.id)
    ended = second.wait(attempt.id, 30)
    assert ended.done and ended.status == "killed" and not ended.interrupted
