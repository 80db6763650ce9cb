"""Digdag's own loader and compiler judge the projects we generate, not only a corpus.

The projects are tests/generated_projects.py's: every phase of tests/golden (which
test_generate_golden.py proves the generators still write) and of two variants of its config.
The referee is the one of test_digdag_java_check.py: DigdagCheck on io.digdag:digdag-core
0.9.42, the newest Maven Central serves here, running what `digdag push` runs.

One version gap: a group's `_parallel: {limit: N}` came in Digdag 0.10 (TD Workflow runs
0.10.5.1), and 0.9.42 refuses it. For such a file Digdag judges a copy with `_parallel:
true`, and its task tree is then given 0.10's upstreams for the limit, as 0.10's
WorkflowCompiler builds them (children in chunks of N, each chunk after the whole one
before it), before it is compared with ours on the file as generated.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.digdag.tasks import TaskNode, load_workflow_file, parse_parallel
from tests.generated_projects import PROJECT_NAMES, write_generated
from tests.java_referees import classpath, differences, digdag_check, our_check

pytestmark = pytest.mark.slow  # a JVM: the full suite, not the fast lane

LIMIT = re.compile(r"^(\s*)_parallel:\s*\n\s+limit:\s*\d+\s*$", re.M)
# Not generated: three children under a limit of 2, where 0.10's chunks change the upstreams
# (the generated groups have no more children than their limit).
CHUNKED = Path(__file__).parent / "fixtures" / "digdag_check" / "parallel_limit.dig"


def limited_groups(tree: TaskNode) -> dict[str, int]:
    """Full name -> N of every group with `_parallel: {limit: N}`."""
    out: dict[str, int] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        parallel, limit = parse_parallel(node.config.get("_parallel"))
        if node.is_group and parallel and limit:
            out[node.full_name] = limit
        stack.extend(node.children)
    return out


def with_limits(tasks: list[dict[str, Any]], limits: dict[str, int]) -> list[dict[str, Any]]:
    """Digdag 0.9's tree of the `_parallel: true` copy with 0.10's upstreams for each limit."""
    out = [dict(t) for t in tasks]
    for group, limit in limits.items():
        kids = [t for t in out if t.get("parent") == group]
        for i, kid in enumerate(kids):
            start = (i // limit) * limit
            before = [k["name"] for k in kids[max(0, start - limit) : start]]
            kid["upstreams"] = before + [u for u in kid["upstreams"] if u not in before]
    return out


def shape(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: t[k] for k in ("name", "group", "parent", "upstreams") if k in t} for t in tasks]


Judged = dict[tuple[str, str], dict[str, Any]]


class Verdicts:
    def __init__(self, as_generated: Path, for_09: Path, original: Judged, copies: Judged):
        self.as_generated, self.for_09 = as_generated, for_09
        self.original, self.copies = original, copies

    def files(self, project: str) -> list[str]:
        return sorted(f for p, f in self.original if p == project)


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Verdicts:
    cp = classpath("core", tmp_path_factory)
    root = tmp_path_factory.mktemp("generated")
    as_generated, for_09 = root / "as_generated", root / "for_0.9"
    as_generated.mkdir()
    write_generated(as_generated)
    (as_generated / "chunked").mkdir()
    shutil.copy(CHUNKED, as_generated / "chunked")
    shutil.copytree(as_generated, for_09)
    for dig in for_09.glob("*/*.dig"):
        dig.write_text(LIMIT.sub(r"\1_parallel: true", dig.read_text()))
    projects = sorted(p.name for p in as_generated.iterdir() if not p.name.startswith("."))
    verdicts = digdag_check(
        cp, [as_generated / p for p in projects] + [for_09 / p for p in projects]
    )

    def of(base: Path) -> Judged:
        return {
            (Path(v["project"]).name, v["file"]): v
            for v in verdicts
            if Path(v["project"]).parent == base.resolve()
        }

    return Verdicts(as_generated, for_09, of(as_generated), of(for_09))


def test_digdag_judged_every_generated_workflow_file(judged: Verdicts) -> None:
    assert set(judged.original) == set(judged.copies)
    for project in PROJECT_NAMES:
        digs = sorted(p.name for p in (judged.as_generated / project).glob("*.dig"))
        assert digs and judged.files(project) == digs, project
    assert len(judged.original) >= 28  # golden's 12 files, both variants' four phases


@pytest.mark.parametrize("project", PROJECT_NAMES)
def test_digdag_refuses_a_generated_file_only_for_the_0_10_parallel_limit(
    judged: Verdicts, project: str
) -> None:
    for file in judged.files(project):
        assert judged.copies[(project, file)]["ok"], judged.copies[(project, file)].get("error")
        theirs = judged.original[(project, file)]
        if not theirs["ok"]:
            assert "for key '_parallel'" in theirs["error"], (file, theirs["error"])
            assert LIMIT.search((judged.as_generated / project / file).read_text()), file


@pytest.mark.parametrize("project", [*PROJECT_NAMES, "chunked"])
def test_we_compile_each_generated_file_as_digdag_does(judged: Verdicts, project: str) -> None:
    for file in judged.files(project):
        theirs = judged.copies[(project, file)]
        # the config as Digdag read it (of the copy), and our push's checks (files td> names)
        assert differences(theirs, our_check(judged.for_09 / project, file, True)) == [], file
        folder = judged.as_generated / project
        ours = our_check(folder, file, references=True)
        assert ours["ok"], (file, ours.get("error"))
        limits = limited_groups(load_workflow_file(folder, folder / file))
        expected = shape(with_limits(theirs["tasks"], limits))
        assert ours["tasks"] == expected, file
        if project == "chunked":  # the chunk rule was applied, not passed over
            assert limits and expected != shape(theirs["tasks"])
