"""Referees no one here wrote: Digdag's own Java client and project loader, and td-client-java.

The drivers under ci/java-referees/{client,core,tdclient}/ are compiled at test time with `javac`
against the jars `ci/java-referees/resolve.sh` has Maven put in each folder's lib/ (ignored;
Maven keeps them in ~/.m2 too, so later runs are offline). Without a JDK or the jars the
tests skip with what to install, except under CI (env `CI` set), where they fail.

Also a command line, to compare Digdag's loader with ours on any folders:

    python -m tests.java_referees DIR...           # each DIR is a project folder
    python -m tests.java_referees --every ROOT     # every folder under ROOT holding .dig files
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.digdag.loader import DigError, load_dig
from cdp_mcp.digdag.tasks import TaskNode, check_workflow_file, load_workflow_file

ROOT = Path(__file__).resolve().parents[1]
REFEREES = ROOT / "ci" / "java-referees"
RESOLVE = "bash ci/java-referees/resolve.sh"


def unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{why} (required under CI)")
    pytest.skip(why)


class Unavailable(Exception):
    pass


def build(referee: str, out_dir: Path) -> str:
    """Compile the referee's driver; its classpath. Unavailable: what to install."""
    java, javac = shutil.which("java"), shutil.which("javac")
    if java is None or javac is None:
        raise Unavailable("a JDK is needed (Debian: apt-get install openjdk-17-jdk-headless)")
    lib = REFEREES / referee / "lib"
    if not any(lib.glob("*.jar")):
        raise Unavailable(
            f"the jars of ci/java-referees/{referee} are not resolved: {RESOLVE} (needs Maven)"
        )
    folders = [REFEREES / referee] + ([REFEREES / "common"] if referee in PARSERS else [])
    sources = sorted(str(p) for folder in folders for p in folder.glob("*.java"))
    done = subprocess.run(
        [javac, "-nowarn", "-encoding", "UTF-8", "-cp", f"{lib}/*", "-d", str(out_dir), *sources],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise AssertionError(f"javac failed:\n{done.stdout}{done.stderr}")
    return f"{lib}/*{os.pathsep}{out_dir}"


def classpath(referee: str, tmp: pytest.TempPathFactory) -> str:
    try:
        return build(referee, tmp.mktemp(f"{referee}-classes"))
    except Unavailable as e:
        unavailable(str(e))
        raise


def run_java(
    cp: str, main: str, args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["java", "-cp", cp, main, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# -- `digdag check`: Digdag's loader and compiler against ours ---------------------------------


def digdag_check(cp: str, projects: list[Path]) -> list[dict[str, Any]]:
    """DigdagCheck's verdict on every top-level .dig of each project folder."""
    done = run_java(cp, "DigdagCheck", [str(p) for p in projects])
    if done.returncode != 0:
        raise AssertionError(f"DigdagCheck failed:\n{done.stderr[-3000:]}")
    return json_lines(done.stdout)


# -- The SQL parsers of TD's engines (drivers sharing common/ParseVerdicts.java) -------------

PARSERS = {"presto": "PrestoParse", "trino": "TrinoParse", "hive": "HiveParse"}  # folder -> class
# td>'s engine -> the parsers that judge its SQL: a presto file must read on Trino too
ENGINE_PARSERS = {"presto": ("presto", "trino"), "hive": ("hive",)}


def sql_parse(cp: str, referee: str, files: list[Path]) -> list[dict[str, Any]]:
    """The parser's verdict on each file, parsed as one statement, in the order given."""
    done = run_java(cp, PARSERS[referee], [str(f) for f in files])
    if done.returncode != 0:
        raise AssertionError(f"{PARSERS[referee]} failed:\n{done.stderr[-3000:]}")
    return json_lines(done.stdout)


def _tasks(tree: TaskNode) -> list[dict[str, Any]]:
    """A task tree in DigdagCheck's form: pre-order, parent and upstreams by full name."""
    out: list[dict[str, Any]] = []

    def visit(node: TaskNode, parent: TaskNode | None) -> None:
        one: dict[str, Any] = {"name": node.full_name, "group": node.is_group}
        if parent is not None:
            one["parent"] = parent.full_name
            one["upstreams"] = [parent.children[i].full_name for i in node.upstreams]
        else:
            one["upstreams"] = []
        out.append(one)
        for child in node.children:
            visit(child, node)

    visit(tree, None)
    return out


def definition_config(doc: dict[str, Any]) -> dict[str, Any]:
    """What Digdag keeps as the workflow definition's config (WorkflowFile): the file
    without `timezone`, and without a top-level `_export` that is empty."""
    config = {k: v for k, v in doc.items() if k != "timezone"}
    if not config.get("_export"):
        config.pop("_export", None)
    return config


def our_check(project: Path, file: str, references: bool = False) -> dict[str, Any]:
    """Our loader and compiler on one workflow file, in DigdagCheck's form. `references`
    adds what our push checks beyond Digdag's (the files td>/call> name exist)."""
    path = project / file
    try:
        doc = load_dig(path, project)
        tree = (check_workflow_file if references else load_workflow_file)(project, path)
    except DigError as e:
        return {"ok": False, "error": str(e)}
    except Exception as e:  # a crash is a finding too
        return {"ok": False, "error": f"crash: {type(e).__name__}: {e}", "crash": True}
    return {"ok": True, "config": definition_config(doc), "tasks": _tasks(tree)}


def differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """What differs between Digdag's verdict and ours on one file ([] when they agree)."""
    if theirs["ok"] != ours["ok"] or ours.get("crash"):
        said = "accepts" if theirs["ok"] else f"refuses ({theirs['error'].splitlines()[-1]})"
        we = "accept" if ours["ok"] else f"refuse ({ours['error']})"
        return [f"Digdag {said}, we {we}"]
    if not theirs["ok"]:
        return []
    out = []
    config = json.loads(json.dumps(ours["config"], default=str))
    if config != theirs["config"]:
        out.append(f"config: Digdag {theirs['config']}, ours {config}")
    tasks = [
        {k: t[k] for k in ("name", "group", "parent", "upstreams") if k in t}
        for t in theirs["tasks"]
    ]
    if tasks != ours["tasks"]:
        out.append(f"tasks: Digdag {tasks}, ours {ours['tasks']}")
    return out


def _folders_with_digs(root: Path) -> list[Path]:
    return sorted(
        {p.parent for p in root.rglob("*.dig") if not any(s.startswith(".") for s in p.parts)}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.java_referees", description=__doc__)
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--every", type=Path, help="every folder under this one holding .dig files")
    args = parser.parse_args(argv)
    projects = [p.resolve() for p in args.folders]
    if args.every:
        projects += _folders_with_digs(args.every.resolve())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            verdicts = digdag_check(build("core", Path(tmp)), projects)
    except Unavailable as e:
        print(e, file=sys.stderr)
        return 2
    counts = {"files": 0, "digdag_accepts": 0, "agree": 0, "agree_with_references": 0}
    for theirs in verdicts:
        project, file = Path(theirs["project"]), theirs["file"]
        counts["files"] += 1
        counts["digdag_accepts"] += theirs["ok"]
        found = differences(theirs, our_check(project, file))
        counts["agree"] += not found
        with_refs = differences(theirs, our_check(project, file, references=True))
        counts["agree_with_references"] += not with_refs
        for line in found or [f"(our push checks) {d}" for d in with_refs]:
            print(f"{project}/{file}: {line}")
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
