"""The text the local `td>` runs is the text Digdag's `td>` sends TD.

The expected strings of the first tests are Digdag's own (digdag-standards,
TdOperatorFactoryTest.verifyCommandInserts / wrapStmtWithComment at v0.10.5.1), so the port
in td_text.py is judged by Digdag's tests, not by ours. The runner tests then show a file
that would break on TD breaking locally too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import duckdb
import pytest

from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.backends.local.td_text import file_lines, insert_command, job_statement, with_comment
from tests.test_runner_operators import INIT, log, rows, rt, run, task

__all__ = ["rt"]  # the runtime fixture, shared with the operator tests

# (original, expected) pairs from Digdag's verifyCommandInserts, command "INSERT".
DIGDAG_CASES = [
    ("select 1", "INSERT\nselect 1"),
    (
        "with a as (select 1)\n-- DIGDAG_INSERT_LINE\nselect 1",
        "with a as (select 1)\nINSERT\nselect 1",
    ),
    (
        "with a as (select 1)\n-- DIGDAG_INSERT_LINE xyz\nselect 1",
        "with a as (select 1)\nINSERT\nselect 1",
    ),
    (
        "with a as (select 1)\n--DIGDAG_INSERT_LINE\n-- comment\nselect 1",
        "with a as (select 1)\nINSERT\n-- comment\nselect 1",
    ),
    ("-- comment\nselect 1", "-- comment\nINSERT\nselect 1"),
    ("select 1\n-- comment\nfrom table", "INSERT\nselect 1\n-- comment\nfrom table"),
    ("-- comment\r\nselect 1", "-- comment\r\nINSERT\nselect 1"),
    ("-- comment1\n--comment2\nselect 1", "-- comment1\n--comment2\nINSERT\nselect 1"),
    ("SELECT\n-- comment1\n1;\n-- comment2\n", "INSERT\nSELECT\n-- comment1\n1;\n-- comment2\n"),
]


@pytest.mark.parametrize(("original", "expected"), DIGDAG_CASES)
def test_insert_command_matches_digdags_own_tests(original: str, expected: str) -> None:
    assert insert_command("INSERT", original) == expected


def test_a_multi_line_query_after_header_comments_gets_the_command_on_top() -> None:
    # Java's `.` stops at line ends: the header form only applies to a one-line body.
    assert insert_command("INSERT", "-- c\nSELECT 1\nFROM t") == "INSERT\n-- c\nSELECT 1\nFROM t"


def test_the_comment_header_matches_digdags() -> None:
    params = {"project_id": 2, "workflow_name": "wf", "session_id": 5, "attempt_id": 4}
    params["task_name"] = "t"
    expected = (
        "-- project_id: 2\n-- project_name: \n-- workflow_name: wf\n-- session_id: 5\n"
        "-- attempt_id: 4\n-- task_name: t\n-- comment\nselect 1 from test"
    )
    assert with_comment(params, "-- comment\nselect 1 from test") == expected


@pytest.mark.parametrize(
    ("engine", "create", "insert", "head"),
    [
        ("presto", "t", None, 'DROP TABLE IF EXISTS "t";\nCREATE TABLE "t" AS\nSELECT 1'),
        ("presto", "db.t", None, 'DROP TABLE IF EXISTS "db"."t";\nCREATE TABLE "db"."t" AS'),
        ("presto", None, "db.t", 'INSERT INTO "db"."t"\nSELECT 1'),
        ("hive", "t", None, "INSERT OVERWRITE TABLE `t`\nSELECT 1"),
        ("hive", None, "db.t", "INSERT INTO TABLE `db`.`t`\nSELECT 1"),
    ],
)
def test_each_write_option_pastes_digdags_command(
    engine: str, create: str | None, insert: str | None, head: str
) -> None:
    assert job_statement("SELECT 1", engine, create, insert).startswith(head)


def test_file_lines_map_the_sent_text_back_to_the_file() -> None:
    original = "-- c\nSELECT a\nFROM t"
    sent = with_comment({}, job_statement(original, "presto", "x", None))
    lines = file_lines(original, sent)
    sent_lines = sent.splitlines()
    assert {sent_lines[k - 1]: v for k, v in lines.items()} == {
        "-- c": 1,
        "SELECT a": 2,
        "FROM t": 3,
    }


HIVE_WITH_FIRST = """\
-- staging, as it was generated before
WITH c AS (SELECT 1 AS a)
SELECT a FROM c
"""


@pytest.mark.slow
def test_a_hive_file_starting_with_with_fails_as_it_would_on_td(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + "+q:\n  td>: q.sql\n  engine: hive\n  database: db\n  create_table: out\n",
            "q.sql": HIVE_WITH_FIRST,
        },
    )
    assert a.status == "error"
    error = task(rt, a, "+wf+q").error
    assert "Hive does not take a WITH clause after INSERT" in error
    assert "DIGDAG_INSERT_LINE" in error
    # The log shows the text TD would have received.
    assert "INSERT OVERWRITE TABLE `out`" in log(rt, a, "+wf+q")


@pytest.mark.slow
def test_the_insert_line_puts_hives_command_after_the_with_clause(rt: LocalRuntime) -> None:
    fixed = HIVE_WITH_FIRST.replace("SELECT a FROM c", "-- DIGDAG_INSERT_LINE\nSELECT a FROM c")
    files = {
        "wf.dig": INIT
        + "+q:\n  td>: q.sql\n  engine: hive\n  database: db\n  create_table: out\n"
        + "+again:\n  td>: q.sql\n  engine: hive\n  database: db\n  insert_into: out\n",
        "q.sql": fixed,
    }
    a = run(rt, files)
    assert a.status == "success", [t.error for t in rt.tasks(a.id) if t.error]
    assert rows(rt, "SELECT a FROM out") == [[1], [1]]


@pytest.mark.slow
def test_ddl_before_the_query_breaks_create_table_as_on_td(rt: LocalRuntime) -> None:
    """Digdag pastes `CREATE TABLE t AS` before the file's first statement."""
    files = {
        "wf.dig": INIT + "+q:\n  td>: q.sql\n  database: db\n  create_table: out\n",
        "q.sql": "DROP TABLE IF EXISTS scratch;\nSELECT 1 AS a\n",
    }
    a = run(rt, files)
    assert a.status == "error"
    assert "td> pastes the write command into the query text" in task(rt, a, "+wf+q").error


@pytest.mark.slow
def test_presto_create_table_replaces_and_insert_into_appends(rt: LocalRuntime) -> None:
    files = {
        "wf.dig": INIT
        + "+c:\n  td>: q.sql\n  database: db\n  create_table: out\n"
        + "+c2:\n  td>: q.sql\n  database: db\n  create_table: out\n"
        + "+i:\n  td>: q.sql\n  database: db\n  insert_into: db.out\n",
        "q.sql": "-- a header\nWITH c AS (SELECT 7 AS a)\nSELECT a FROM c\n",
    }
    a = run(rt, files)
    assert a.status == "success", [t.error for t in rt.tasks(a.id) if t.error]
    assert rows(rt, "SELECT a FROM out") == [[7], [7]]
    text = log(rt, a, "+wf+c")
    assert 'DROP TABLE IF EXISTS "out";' in text and 'CREATE TABLE "out" AS' in text
    assert "-- task_name: +wf+c" in text


@pytest.mark.slow
def test_the_four_phases_pass_with_hive_staging(acme_config: Path) -> None:
    """Hive staging as TD runs it: `INSERT OVERWRITE TABLE t` pasted after the WITH clause.
    The tables equal the Presto run's (same rows, every column of every staged table)."""
    from cdp_mcp.cli.run import EXIT_PASS, run_pipeline

    presto_dir = acme_config.parent / "presto"
    shutil.copytree(acme_config.parent, presto_dir, ignore=shutil.ignore_patterns("presto"))
    hive_cfg = acme_config.read_text().replace("engine: presto", "engine: hive")
    assert hive_cfg != acme_config.read_text()
    acme_config.write_text(hive_cfg)
    for config in (acme_config, presto_dir / "acme.yml"):
        outcome = anyio.run(lambda c=config: run_pipeline(c, echo=lambda _line: None))
        assert outcome.exit_code == EXIT_PASS, outcome.message
    # `time` and `load_timestamp` hold when each run loaded: the rest must be equal.
    stg = "SELECT * EXCLUDE (time, load_timestamp) FROM acme_stg.{t} ORDER BY ALL"
    for table in ("shopify_customers", "shopify_orders", "shopify_products"):
        got = []
        for folder in (acme_config.parent, presto_dir):
            warehouse = folder / "acme_cdp" / ".cdp_local" / "warehouse.duckdb"
            with duckdb.connect(str(warehouse), read_only=True) as con:
                cur = con.execute(stg.format(t=table))
                names = [d[0] for d in cur.description or []]
                # TD tables have no column order to speak of: compare by column name.
                got.append(
                    sorted(tuple(sorted(zip(names, r, strict=True))) for r in cur.fetchall())
                )
        assert got[0] == got[1] and got[0], table
