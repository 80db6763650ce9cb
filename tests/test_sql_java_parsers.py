"""The SQL parsers of TD's engines judge every statement our generated td> tasks send.

Until now "valid Presto" meant sqlglot's Presto dialect, written by neither side. The
referees, from Maven Central: io.prestosql:presto-parser 350 (TD's presto engine),
io.trino:trino-parser 423 (TD's trino engine) and hive-exec 2.3.9's ParseDriver (TD's hive
engine, Hive 2.3), each run by its driver under ci/java-referees/{presto,trino,hive}/: the
parser each server runs first on a query, before it resolves a table or a function. So a
pass says the text is one statement of that grammar; the names it calls (TD_TIME_RANGE and
TD's other UDFs) and the tables are not judged here.

The projects are tests/generated_projects.py's: every phase of tests/golden (which
test_generate_golden.py proves the generators still write) and of two variants of its config
(one with Hive staging). What is judged is the text Digdag's td> sends, not the file alone:
the file with the command td> pastes into it for `create_table` / `insert_into`
(backends/local/td_text.py, ported from digdag-standards; Presto's `DROP TABLE IF EXISTS t;`
is judged as its own statement), under td>'s comment header, with Digdag's `${...}` replaced
by values that parse (`generate.check.neutralize_params`). A Presto file is judged by both
the Presto and the Trino parser, a Hive file by Hive's.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.backends.local.td_text import job_statement, table_name, with_comment
from cdp_mcp.generate.check import SqlUse, neutralize_params, sql_uses
from tests.generated_projects import PROJECT_NAMES, write_generated
from tests.java_referees import ENGINE_PARSERS, classpath, sql_parse

pytestmark = pytest.mark.slow  # JVMs: the full suite, not the fast lane


def sent(query: str, use: SqlUse) -> list[str]:
    """The statements td> sends for one task running `query`."""
    statement = job_statement(query, use.engine, use.create_table, use.insert_into)
    if use.engine != "hive" and use.create_table:
        drop = f"DROP TABLE IF EXISTS {table_name(use.create_table, use.engine)};\n"
        assert drop in statement
        return [drop.rstrip(";\n"), with_comment({}, statement.replace(drop, "", 1))]
    return [with_comment({}, statement)]


Texts = dict[str, dict[str, Path]]  # referee -> judged name -> neutral text's file


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Texts:
    projects = tmp_path_factory.mktemp("projects")
    root = tmp_path_factory.mktemp("sql")
    out: Texts = {r: {} for referees in ENGINE_PARSERS.values() for r in referees}
    numbers = itertools.count()
    for folder in write_generated(projects):
        for rel, uses in sql_uses(folder).items():
            query = (folder / rel).read_text(encoding="utf-8")
            for use in sorted(uses):
                engine = "hive" if use.engine == "hive" else "presto"
                into = use.create_table and f"create_table {use.create_table}"
                into = into or (use.insert_into and f"insert_into {use.insert_into}") or "query"
                for i, text in enumerate(sent(query, use)):
                    name = f"{folder.name}/{rel} [{use.engine}, {into}, statement {i + 1}]"
                    path = root / f"{next(numbers)}.sql"
                    path.write_text(neutralize_params(text), encoding="utf-8")
                    for referee in ENGINE_PARSERS[engine]:
                        out[referee][name] = path
    return out


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory, texts: Texts) -> dict[str, Any]:
    """referee -> judged name -> its verdict."""
    out = {}
    for referee, judged in texts.items():
        found = sql_parse(classpath(referee, tmp_path_factory), referee, list(judged.values()))
        out[referee] = dict(zip(judged, found, strict=True))
    return out


def test_every_generated_project_has_its_sql_judged(texts: Texts) -> None:
    projects = {name.split("/")[0] for judged in texts.values() for name in judged}
    assert projects == set(PROJECT_NAMES)
    hive = list(texts["hive"])
    assert hive and all(n.startswith("hive_staging-staging/") for n in hive)
    assert any("_transform.sql [hive, create_table" in n for n in hive)
    assert len(texts["presto"]) > 150 and texts["presto"].keys() == texts["trino"].keys()


@pytest.mark.parametrize("project", PROJECT_NAMES)
def test_each_engines_parser_reads_what_td_sends_as_one_statement(
    verdicts: dict[str, dict[str, Any]], project: str
) -> None:
    refused = {
        f"{referee}: {name}": v.get("error")
        for referee, found in verdicts.items()
        for name, v in found.items()
        if name.startswith(project + "/") and not v["ok"]
    }
    assert refused == {}


def test_the_parsers_refuse_what_is_not_one_statement_of_their_grammar(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The referees can fail: two statements in one text, DuckDB's `::` cast; and Hive's
    refuses what td> makes of a Hive file starting with WITH (docs: "Hive wants the CTE
    first")."""
    root = tmp_path_factory.mktemp("bad")
    cte = "WITH c AS (SELECT 1 AS x) SELECT x FROM c"
    cases = {
        "presto": [
            "SELECT 1; SELECT 2",
            "SELECT x::bigint FROM t",
            "SELECT CAST(x AS bigint) FROM t",
        ],
        "hive": [
            job_statement(cte, "hive", "db.t", None),
            "SELECT x::int FROM t",
            "WITH c AS (SELECT 1 AS x) INSERT OVERWRITE TABLE `db`.`t` SELECT x FROM c",
        ],
    }
    cases["trino"] = cases["presto"]
    for referee, sqls in cases.items():
        files = []
        for i, sql in enumerate(sqls):
            files.append(root / f"{referee}_{i}.sql")
            files[-1].write_text(sql)
        found = sql_parse(classpath(referee, tmp_path_factory), referee, files)
        assert [v["ok"] for v in found] == [False, False, True], (referee, found)
