"""The structural check: a valid project passes; each kind of breakage is named precisely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import Phase
from cdp_mcp.generate import generate
from cdp_mcp.generate.check import CheckProblem, check_project, neutralize_params, sql_problems
from cdp_mcp.generate.schemas import predicted_schemas


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "proj"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def messages(problems: list[CheckProblem]) -> list[str]:
    return [str(p) for p in problems]


GOOD_WF = """
    timezone: UTC
    _export:
      td:
        database: acme_stg
    +load:
      td>: queries/a.sql
      create_table: a
    +loop:
      for_each>:
        t: [x, y]
      _do:
        +each:
          td>: queries/a.sql
    +after:
      require>: other
    +sub:
      call>: sub/child.dig
"""


def test_a_valid_hand_made_project_passes(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "main.dig": GOOD_WF,
            "other.dig": "+hi:\n  echo>: hi\n",
            "sub/child.dig": "+c:\n  td>: ../queries/a.sql\n",
            "queries/a.sql": "SELECT * FROM t WHERE time > ${td.last_results.max_time} LIMIT ${n}",
        },
    )
    assert check_project(root) == []


@pytest.mark.slow
def test_the_generated_unification_project_passes(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    generated = generate(cfg, Phase.UNIFICATION, predicted_schemas(cfg))
    assert check_project(generated.directory) == []


def test_missing_sql_file_names_the_task_and_line(tmp_path: Path) -> None:
    root = project(tmp_path, {"wf.dig": "timezone: UTC\n\n+a:\n  td>: queries/missing.sql\n"})
    assert messages(check_project(root)) == [
        "wf.dig:3: task +a: td> 'queries/missing.sql': file not found"
    ]


def test_two_operators_in_one_task(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wf.dig": "+g:\n  +a:\n    echo>: hi\n  +b:\n    echo>: hi\n    sh>: ls\n",
            "x.sql": "select 1",
        },
    )
    assert messages(check_project(root)) == [
        "wf.dig:4: task +g+b: has 2 operators (echo>, sh>); a task runs exactly one"
    ]


def test_tasks_without_operator_or_with_both(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wf.dig": """
                +empty:
                  database: x
                +both:
                  echo>: hi
                  +child:
                    echo>: hi
                +loop:
                  for_each>:
                    a: [1]
                +cond:
                  if>: true
            """
        },
    )
    assert messages(check_project(root)) == [
        "wf.dig:1: task +empty: has no operator (like td>: q.sql) and no child tasks",
        "wf.dig:3: task +both: has both an operator (echo>) and child tasks; split them",
        "wf.dig:7: task +loop: for_each> needs _do: the tasks to run",
        "wf.dig:10: task +cond: if> needs _do or _else_do",
    ]


def test_bad_yaml_reports_its_line(tmp_path: Path) -> None:
    root = project(tmp_path, {"wf.dig": "+a:\n  echo>: hi\n +b:\n  echo>: hi\n"})
    (problem,) = check_project(root)
    assert problem.file == "wf.dig" and problem.line == 3
    assert "invalid YAML" in problem.message


def test_bad_yaml_in_an_included_config(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wf.dig": "_export:\n  !include : config/p.yml\n+a:\n  echo>: ${x}\n",
            "config/p.yml": "x: [1, 2\ny: 3\n",
        },
    )
    problems = check_project(root)
    assert {(p.file, p.line) for p in problems} == {("config/p.yml", 2)}


def test_missing_include_and_unknown_require(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wf.dig": "_export:\n  !include : config/nope.yml\n+a:\n  echo>: hi\n",
            "runner.dig": "+a:\n  require>: wf\n+b:\n  require>: nothing\n+c:\n  require>: x\n  project_name: other\n",
        },
    )
    assert messages(check_project(root)) == [
        "runner.dig:3: task +b: require> 'nothing' is not a workflow of this project (workflows: runner, wf)",
        "wf.dig:2: !include 'config/nope.yml': file not found",
    ]


def test_call_checks_the_called_workflow(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wf.dig": "+a:\n  call>: sub/child\n+b:\n  call>: gone.dig\n+c:\n  td_load>: config/load.yml\n",
            "sub/child.dig": "+x:\n  td>: q.sql\n",
        },
    )
    assert messages(check_project(root)) == [
        "wf.dig:3: task +b: call> 'gone.dig': file not found",
        "wf.dig:5: task +c: td_load> 'config/load.yml': file not found",
        "sub/child.dig:1: task +x: td> 'q.sql': file not found",
    ]


def test_sql_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wf.dig": "+a:\n  td>: queries/bad.sql\n",
            "queries/bad.sql": "-- header\nSELECT a,\n  b c d\nFROM t\n",
        },
    )
    (problem,) = check_project(root)
    assert (problem.file, problem.line) == ("queries/bad.sql", 3)
    assert problem.message.startswith("SQL does not parse as presto:")


def test_inline_query_is_parsed_too(tmp_path: Path) -> None:
    root = project(tmp_path, {"wf.dig": "+a:\n  td>:\n  query: SELECT FROM WHERE\n+b:\n  td>:\n"})
    found = messages(check_project(root))
    assert len(found) == 2
    assert found[0].startswith("wf.dig:1: task +a: query: SQL does not parse as presto")
    assert (
        found[1] == "wf.dig:4: task +b: td> needs a SQL file (like td> queries/x.sql) or a query:"
    )


def test_engine_comes_from_the_task_or_its_exports(tmp_path: Path) -> None:
    hive_sql = "SELECT `a` FROM t"
    files = {
        "wf.dig": """
            _export:
              td:
                engine: hive
            +h:
              td>: h1.sql
            +p:
              td>: p.sql
              engine: presto
        """,
        "h1.sql": hive_sql,
        "p.sql": hive_sql,
        "loose.sql": hive_sql,
    }
    root = project(tmp_path, files)
    assert sorted(p.file for p in check_project(root)) == ["loose.sql", "p.sql"]
    assert [p.file for p in check_project(root, {"loose.sql": "hive"})] == ["p.sql"]


def test_unknown_engine(tmp_path: Path) -> None:
    root = project(
        tmp_path, {"wf.dig": "+a:\n  td>: a.sql\n  engine: spark\n", "a.sql": "select 1"}
    )
    assert messages(check_project(root)) == [
        "wf.dig:1: task +a: engine 'spark' is not one of: presto, hive"
    ]


UNIFY = """
    name: customer_360
    keys:
      - name: email
        invalid_texts: ['']
      - name: phone
    tables:
      - database: acme_stg
        table: unif_input
        key_columns:
          - {column: email, key: email}
    persistent_ids:
      - name: unified_id
        merge_by_keys: [email]
        merge_iterations: 60
"""


def test_unify_yml_limits_and_unused_key(tmp_path: Path) -> None:
    root = project(tmp_path, {"wf.dig": "+a:\n  echo>: hi\n", "config/unify.yml": UNIFY})
    assert messages(check_project(root)) == [
        "config/unify.yml:14: persistent_ids[0].merge_iterations: 60 is out of range; TD allows 1 to 49",
        "config/unify.yml:5: keys[1]: key 'phone' is not used by any table's key_columns (TD rejects it)",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("name: customer-360", "name: 'customer-360' is not a valid name"),
        ("merge_iterations: 0", "merge_iterations: 0 is out of range"),
        (
            "valid_regexp: '" + "x" * 513 + "'",
            "valid_regexp: is 513 characters long; TD allows 512",
        ),
        (
            "invalid_texts: [" + ", ".join(["a"] * 128) + "]",
            "invalid_texts: has 128 entries; TD allows 0 to 127",
        ),
        ("key: phon", "key: undefined key 'phon'"),
        ("do_not_merge_key: phone", "do_not_merge_key: must be the first of merge_by_keys"),
    ],
)
def test_unify_yml_rules(tmp_path: Path, change: str, expected: str) -> None:
    doc = (
        "name: customer_360\n"
        "keys:\n  - name: email\n    invalid_texts: ['']\n  - name: phone\n"
        "tables:\n  - database: acme_stg\n    table: unif_input\n    key_columns:\n"
        "      - {column: email, key: email}\n      - {column: phone, key: phone}\n"
        "canonical_ids:\n  - name: cid\n    merge_by_keys: [email, phone]\n    merge_iterations: 3\n"
    )
    field = change.split(":")[0]
    if field == "valid_regexp" or field == "invalid_texts":
        doc = doc.replace("    invalid_texts: ['']\n", f"    {change}\n")
    elif field == "key":
        doc = doc.replace("{column: phone, key: phone}", "{column: phone, key: phon}")
    elif field == "do_not_merge_key":
        doc += f"    {change}\n"
    elif field == "merge_iterations":
        doc = doc.replace("merge_iterations: 3", change)
    else:
        doc = doc.replace("name: customer_360", change)
    root = project(tmp_path, {"wf.dig": "+a:\n  echo>: hi\n", "config/unify.yml": doc})
    found = messages(check_project(root))
    assert any(expected in m for m in found), found


def test_a_project_without_workflows(tmp_path: Path) -> None:
    root = project(tmp_path, {"queries/a.sql": "select 1"})
    assert messages(check_project(root)) == [
        ".: no workflow: the project has no .dig file at its top level"
    ]


@pytest.mark.parametrize(
    ("sql", "neutral"),
    [
        ("SELECT '${x}' AS a", "SELECT 'x' AS a"),
        ("FROM ${db}.${tbl}_tmp", "FROM td_param.td_param_tmp"),
        ("SELECT 1 LIMIT ${n}", "SELECT 1 LIMIT 1"),
        ("WHERE t > ${td.last_results.t} -- ${c}", "WHERE t > td_param -- x"),
        ('SELECT "${col}" /* ${x} */', 'SELECT "x" /* x */'),
        ("SELECT 'it''s ${x}'", "SELECT 'it''s x'"),
        ("SELECT ${a.b({c: 1})}\nFROM t", "SELECT td_param\nFROM t"),
        ("SELECT ${a +\n b}, x", "SELECT td_param\n, x"),
    ],
)
def test_params_are_neutralized(sql: str, neutral: str) -> None:
    assert neutralize_params(sql) == neutral


def test_sql_problems_cases() -> None:
    assert sql_problems("SELECT 1; SELECT 2;", "presto") == []
    assert sql_problems("-- nothing\n", "presto") == [(None, "no SQL statement")]
    assert sql_problems("${td.each.query}", "presto") == []  # wholly computed: cannot check
    assert sql_problems("SELECT `a` FROM t", "hive") == []
    assert sql_problems("SELECT `a` FROM t", "presto")[0][1].startswith(
        "SQL does not parse as presto"
    )


def test_tasks_inside_do_blocks_are_checked_and_located(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wf.dig": """
                +a:
                  echo>: hi
                +loop:
                  for_each>:
                    t: [1, 2]
                  _do:
                    +a:
                      td>: nope.sql
                  _error:
                    +alert:
                      td>: gone.sql
            """
        },
    )
    assert messages(check_project(root)) == [
        "wf.dig:7: task +loop._do+a: td> 'nope.sql': file not found",
        "wf.dig:10: task +loop._error+alert: td> 'gone.sql': file not found",
    ]


def test_a_hive_file_calling_presto_functions_is_refused(tmp_path: Path) -> None:
    """sqlglot parses `TRY_CAST` and `regexp_like` as Hive; TD's Hive has neither."""
    sql = "SELECT TRY_CAST(a AS double), regexp_like(b, 'x'), b RLIKE 'now()' FROM t"
    files = {
        "wf.dig": "+h:\n  td>: h.sql\n  engine: hive\n+p:\n  td>: p.sql\n",
        "h.sql": sql,
        "p.sql": sql,
    }
    found = messages(check_project(project(tmp_path, files)))
    assert found == [
        "h.sql: Hive has no TRY_CAST (a Presto function); use CAST (Hive's CAST gives NULL "
        "for a value it cannot convert)",
        "h.sql: Hive has no REGEXP_LIKE (a Presto function); use x RLIKE 'pattern'",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["presto", "hive"])
def test_the_generated_staging_project_passes(acme_config: Path, engine: str) -> None:
    cfg = load_config(acme_config)
    cfg = cfg.model_copy(update={"staging": cfg.staging.model_copy(update={"engine": engine})})
    directory = generate(cfg, Phase.STAGING, predicted_schemas(cfg)).directory
    assert check_project(directory) == []
