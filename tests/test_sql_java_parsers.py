"""Presto's and Trino's own SQL parsers judge every SQL file we generate for td>.

Until now "valid Presto" meant sqlglot's Presto dialect, written by neither. The referees
are ci/java-referees/presto/PrestoParse.java on io.prestosql:presto-parser 350 (TD's presto
engine is Presto 350) and ci/java-referees/trino/TrinoParse.java on io.trino:trino-parser
423 (TD's trino engine): the parser each server runs first on a query, before it resolves a
table or a function. So a pass says the file is one statement of that grammar; the names it
calls (TD_TIME_RANGE and the other TD UDFs) are not judged here.

The projects are tests/generated_projects.py's: every phase of tests/golden (which
test_generate_golden.py proves the generators still write) and of two variants of its config.
Each file runs on the engines its td> tasks name
(`generate.check.sql_files`), with Digdag's `${...}` replaced by values that parse, as
`generate.check` does for its own parse (td> expands them before it sends the query).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.generate.check import neutralize_params, sql_files
from tests.generated_projects import PROJECT_NAMES, write_generated
from tests.java_referees import classpath, sql_parse

pytestmark = pytest.mark.slow  # a JVM: the full suite, not the fast lane


@pytest.fixture(scope="module")
def neutral(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each generated file td> runs on Presto or Trino, with its `${...}` replaced, by
    `<project>/<path>`."""
    projects = tmp_path_factory.mktemp("projects")
    root = tmp_path_factory.mktemp("sql")
    out = {}
    for folder in write_generated(projects):
        for rel, engines in sql_files(folder).items():
            if "presto" in engines or "trino" in engines:
                name = f"{folder.name}/{rel}"
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(neutralize_params((folder / rel).read_text(encoding="utf-8")))
                out[name] = path
    return out


@pytest.fixture(scope="module", params=["presto", "trino"])
def verdicts(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    neutral: dict[str, Path],
) -> dict[str, dict[str, Any]]:
    cp = classpath(request.param, tmp_path_factory)
    found = sql_parse(cp, request.param, list(neutral.values()))
    return {name: v for name, v in zip(neutral, found, strict=True)}


def test_every_generated_project_has_sql_judged(neutral: dict[str, Path]) -> None:
    judged = {name.split("/")[0] for name in neutral}
    assert judged == set(PROJECT_NAMES)
    # on Hive staging only the transforms and their changes run on Hive: not judged here
    assert not [n for n in neutral if n.startswith("hive_staging-staging/") and "_transform" in n]
    assert len(neutral) > 150


@pytest.mark.parametrize("project", PROJECT_NAMES)
def test_the_engines_parser_reads_each_generated_file_as_one_statement(
    verdicts: dict[str, dict[str, Any]], project: str
) -> None:
    bad = {
        name: v.get("error")
        for name, v in verdicts.items()
        if name.startswith(project + "/") and not v["ok"]
    }
    assert bad == {}


def test_the_parsers_refuse_what_is_not_one_statement_of_their_grammar(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The referee can fail: two statements in one file, DuckDB's `::` cast."""
    root = tmp_path_factory.mktemp("bad")
    bad = {
        "two.sql": "SELECT 1; SELECT 2",
        "duckdb_cast.sql": "SELECT x::bigint FROM t",
        "good.sql": "SELECT CAST(x AS bigint) FROM t WHERE TD_TIME_RANGE(time, 1, NULL)",
    }
    for name, sql in bad.items():
        (root / name).write_text(sql)
    for referee in ("presto", "trino"):
        cp = classpath(referee, tmp_path_factory)
        found = sql_parse(cp, referee, [root / n for n in bad])
        assert [v["ok"] for v in found] == [False, False, True], (referee, found)
