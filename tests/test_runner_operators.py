"""Each operator of the local runner against Digdag's / TD's documented behaviour."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdp_mcp.backends.base import Attempt
from cdp_mcp.backends.local.hooks import UNIFICATION_NOT_INSTALLED, UnificationCall
from cdp_mcp.backends.local.runtime import LocalRuntime

SESSION = datetime(2026, 1, 1, tzinfo=UTC)
INIT = "+init:\n  td_ddl>:\n  create_databases: [db]\n"


@pytest.fixture
def rt(tmp_path: Path) -> LocalRuntime:
    return LocalRuntime(tmp_path / "ws")


def run(
    rt: LocalRuntime,
    files: dict[str, str],
    workflow: str = "wf",
    session: datetime = SESSION,
    params: dict[str, Any] | None = None,
) -> Attempt:
    root = rt.workspace.parent / "proj"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    rt.push("proj", root)
    attempt = rt.start("proj", workflow, session, params)
    return rt.wait(attempt.id, 30)


def states(rt: LocalRuntime, attempt: Attempt) -> dict[str, str]:
    return {t.full_name: t.state for t in rt.tasks(attempt.id)}


def task(rt: LocalRuntime, attempt: Attempt, name: str) -> Any:
    return next(t for t in rt.tasks(attempt.id) if t.full_name == name)


def log(rt: LocalRuntime, attempt: Attempt, name: str) -> str:
    files = [f for f in rt.log_files(attempt.id, name) if f.task_name == name]
    return "".join(rt.read_log(attempt.id, f.file_name) for f in files)


def rows(rt: LocalRuntime, sql: str, db: str = "db") -> list[list[Any]]:
    return rt.query(sql, db).rows


# td>


@pytest.mark.slow
def test_td_create_table_replaces_the_table_with_td_types(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + textwrap.dedent("""
            +first:
              td>:
              query: SELECT 1 AS old_col
              database: db
              create_table: t
            +second:
              td>: queries/t.sql
              database: db
              create_table: t
            """),
            "queries/t.sql": """
            SELECT CAST(1 AS INTEGER) AS i, CAST(2.5 AS DECIMAL(10, 2)) AS d,
                   TIMESTAMP '2026-01-01 10:00:00' AS ts, true AS b, 'x' AS s
            """,
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    (info,) = rt.tables("db")
    assert info.name == "t" and info.count == 1
    assert [(c.name, c.type) for c in info.columns] == [
        ("i", "long"),
        ("d", "double"),
        ("ts", "string"),
        ("b", "boolean"),
        ("s", "string"),
    ]
    # Presto answers CREATE TABLE AS with one row: `rows`
    assert task(rt, a, "+wf+second").store_params["td"]["last_job"]["num_records"] == 1


@pytest.mark.slow
def test_td_insert_into_creates_then_appends_by_name_adding_columns(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + textwrap.dedent("""
            _export:
              td:
                database: db
            +create:
              td>:
              query: SELECT 1 AS id, 'a' AS name
              insert_into: t
            +append:
              td>:
              query: SELECT 'new' AS extra, 'b' AS name, 2 AS id
              insert_into: db.t
            """)
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert rows(rt, "SELECT id, name, extra FROM t ORDER BY id") == [
        [1, "a", None],
        [2, "b", "new"],
    ]


@pytest.mark.slow
def test_td_store_last_results_keeps_the_first_row(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + textwrap.dedent("""
            _export:
              td: {database: db}
            +stats:
              td>:
              query: SELECT 42 AS max_time, 'x' AS label UNION ALL SELECT 1, 'y' ORDER BY 1 DESC
              store_last_results: true
            +use:
              echo>: max=${td.last_results.max_time} label=${td.last_results.label}
            +empty:
              td>:
              query: SELECT 1 AS a WHERE false
              store_last_results: true
            +after_empty:
              echo>: "[${td.last_results.a}]"
            """)
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert task(rt, a, "+wf+stats").store_params["td"]["last_results"] == {
        "max_time": 42,
        "label": "x",
    }
    assert "max=42 label=x" in log(rt, a, "+wf+use")
    assert task(rt, a, "+wf+empty").store_params["td"]["last_results"] == {}
    assert "[]" in log(rt, a, "+wf+after_empty")


@pytest.mark.slow
def test_td_sql_file_is_templated_and_may_hold_ddl_before_the_query(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + textwrap.dedent("""
            +q:
              td>: queries/q.sql
              database: db
              suffix: x
            """),
            "queries/q.sql": """
            -- comments and DDL first, as TD users write them
            DROP TABLE IF EXISTS t_${suffix};
            CREATE TABLE t_${suffix} AS
            SELECT '${session_date}' AS d, ${session_unixtime} AS u;
            """,
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert rows(rt, "SELECT d, u FROM t_x") == [["2026-01-01", 1767225600]]
    text = log(rt, a, "+wf+q")
    assert "statement 2/2 (queries/q.sql:4)" in text


@pytest.mark.slow
def test_td_sql_error_names_file_line_and_engine_message(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT + "+bad:\n  td>: queries/bad.sql\n  database: db\n",
            "queries/bad.sql": "SELECT 1;\n\n-- the broken one:\nSELECT no_such_column\nFROM (SELECT 1 AS x);\n",
        },
    )
    assert a.status == "error"
    bad = task(rt, a, "+wf+bad")
    assert bad.state == "error"
    assert "queries/bad.sql:4" in bad.error
    assert "no_such_column" in bad.error
    assert "queries/bad.sql:4" in log(rt, a, "+wf+bad")


@pytest.mark.slow
def test_td_presto_functions_are_transpiled(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + textwrap.dedent("""
            +q:
              td>: q.sql
              database: db
              create_table: t
            """),
            "q.sql": """
            SELECT to_unixtime(from_iso8601_timestamp('2026-01-01T00:00:00Z')) AS u,
                   COALESCE(TRY(date_parse('bad', '%Y-%m-%d %H:%i:%s')), NULL) AS p,
                   lower(to_hex(sha256(to_utf8('a')))) AS h,
                   TD_TIME_RANGE(1767225600, '2026-01-01', '2026-01-02') AS in_range
            """,
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert rows(rt, "SELECT * FROM t") == [
        [
            1767225600.0,
            None,
            "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
            True,
        ]
    ]


@pytest.mark.slow
def test_td_hive_insert_overwrite(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT
            + textwrap.dedent("""
            +seed:
              td>:
              query: SELECT 1 AS k, 'old' AS v
              database: db
              create_table: t
            +hive:
              td>: h.sql
              database: db
              engine: hive
            """),
            "h.sql": "INSERT OVERWRITE TABLE t SELECT 2 AS k, nvl(NULL, 'new') AS v",
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert rows(rt, "SELECT k, v FROM t") == [[2, "new"]]


@pytest.mark.slow
def test_td_needs_an_existing_database(rt: LocalRuntime) -> None:
    a = run(rt, {"wf.dig": "+q:\n  td>:\n  query: SELECT 1\n  database: nope\n"})
    assert a.status == "error"
    assert "database 'nope' does not exist" in task(rt, a, "+wf+q").error


# td_ddl>


@pytest.mark.slow
def test_td_ddl_tables_and_databases(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": """
            +dbs:
              td_ddl>:
              create_databases: [db, scratch]
            +create:
              td_ddl>:
              database: db
              create_tables: [a, b, c]
            +fill:
              td>:
              query: SELECT 1 AS x
              database: db
              insert_into: a
            +ddl:
              td_ddl>:
              database: db
              empty_tables: [a]
              drop_tables: [b]
              rename_tables: [{from: c, to: d}]
              drop_databases: [scratch]
            """
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert rt.databases() == ["db"]
    assert {t.name: t.count for t in rt.tables("db")} == {"a": 0, "d": 0}


# td_load>


def _load_files(tmp: Path, **extra_in: str) -> dict[str, str]:
    lines = "".join(f"  {k}: {v}\n" for k, v in extra_in.items())
    return {
        "wf.dig": "+load:\n  td_load>: config/orders_load.yml\n  database: src\n  table: orders\n",
        "config/orders_load.yml": f"in:\n  type: file\n  path: {tmp / 'orders.csv'}\n{lines}out:\n  mode: append\n",
    }


@pytest.mark.slow
def test_td_load_file_connector_filters_by_incremental_field(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    (tmp_path / "orders.csv").write_text(
        "Order ID,updated_at,amount\n"
        "1,2025-12-31T23:59:59Z,1.5\n"
        "2,2026-01-01 00:00:00,2\n"
        "3,2026/01/01 12:00:00,3\n"
        "4,2026-01-02T00:00:00+00:00,4\n"
        "5,not a date,5\n"
    )
    files = _load_files(
        tmp_path,
        incremental_field="updated_at",
        **{"from": '"${session_date}"', "to": '"2026-01-02"'},
    )
    a = run(rt, files)
    assert a.status == "success", rt.tasks(a.id)
    got = rows(rt, "SELECT order_id, amount, time > 0 FROM orders ORDER BY 1", "src")
    assert got == [[2, 2.0, True], [3, 3.0, True]]
    (info,) = rt.tables("src")
    assert [(c.name, c.type) for c in info.columns] == [
        ("order_id", "long"),
        ("updated_at", "string"),
        ("amount", "double"),
        ("time", "long"),
    ]


@pytest.mark.slow
def test_td_load_reads_nothing_of_a_file_version_whose_latest_time_precedes_the_range(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    from cdp_mcp.core.file_source import read_schema
    from cdp_mcp.core.source_counts import Rule

    path = tmp_path / "orders.csv"
    path.write_text("Order ID,updated_at,amount\n1,2025-12-30T00:00:00Z,1.5\n2,2025-12-31,2\n")
    # generation learns the columns, and on the way the latest updated_at (2025-12-31)
    read_schema(path, counting=Rule("updated_at", "2020-01-01"))
    files = _load_files(tmp_path, incremental_field="updated_at", **{"from": '"2025-12-31"'})
    files["config/orders_load.yml"] = files["config/orders_load.yml"].replace(
        "  from:", "  from_inclusive: false\n  from:"
    )
    a = run(rt, files)
    assert a.status == "success", rt.tasks(a.id)
    assert "precedes the range; nothing to read" in log(rt, a, "+wf+load")
    assert rows(rt, "SELECT count(*) FROM orders", "src") == [[0]]
    (info,) = rt.tables("src")  # the table has the file's columns all the same
    assert [c.name for c in info.columns] == ["order_id", "updated_at", "amount", "time"]
    # a row appended after the watermark is a new version of the file: it is read
    with path.open("a") as f:
        f.write("3,2026-01-02 08:00:00,3\n")
    a = run(rt, files, session=datetime(2026, 1, 2, tzinfo=UTC))
    assert a.status == "success", rt.tasks(a.id)
    assert rows(rt, "SELECT order_id, amount FROM orders", "src") == [[3, 3.0]]
    assert "nothing to read" not in log(rt, a, "+wf+load")


@pytest.mark.slow
def test_td_load_of_an_empty_range_reads_nothing(rt: LocalRuntime, tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("id,updated_at\n1,2026-01-01\n")
    files = _load_files(
        tmp_path, incremental_field="updated_at", **{"from": '"2026-01-01"', "to": '"2026-01-01"'}
    )
    a = run(rt, files)
    assert a.status == "success", rt.tasks(a.id)
    assert "is empty; nothing to read" in log(rt, a, "+wf+load")
    assert rows(rt, "SELECT count(*) FROM orders", "src") == [[0]]


@pytest.mark.slow
def test_td_load_without_bounds_loads_every_row_and_replace_mode(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    (tmp_path / "orders.csv").write_text("id,updated_at\n1,x\n2,2026-01-01\n")
    files = _load_files(tmp_path, incremental_field="updated_at", **{"from": "''"})
    files["config/orders_load.yml"] = files["config/orders_load.yml"].replace("append", "replace")
    files["wf.dig"] += (
        "+again:\n  td_load>: config/orders_load.yml\n  database: src\n  table: orders\n"
    )
    a = run(rt, files)
    assert a.status == "success", rt.tasks(a.id)
    assert rows(rt, "SELECT count(*) FROM orders", "src") == [[2]]


@pytest.mark.slow
def test_td_load_other_connectors_only_run_on_td(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": "+load:\n  td_load>: config/x.yml\n  database: src\n  table: t\n",
            "config/x.yml": "in:\n  type: shopify\n  api_key: ${secret:shopify.key}\nout:\n  mode: append\n",
        },
    )
    assert a.status == "error"
    assert "'shopify' connector only runs on Treasure Data" in task(rt, a, "+wf+load").error


# control flow


def test_for_each_order_names_and_exported_values(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": """
            _export:
              objects: '["orders", "customer list"]'
            +each:
              for_each>:
                obj: ${objects}
                n: [1, 2]
              _do:
                +show:
                  echo>: ${obj}-${n}
            """
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    names = [t.full_name for t in rt.tasks(a.id) if t.full_name.endswith("+show")]
    assert names == [
        "+wf+each^sub+for-0=obj=0=orders&1=n=0=1+show",
        "+wf+each^sub+for-0=obj=0=orders&1=n=1=2+show",
        "+wf+each^sub+for-0=obj=1=customer&1=n=0=1+show",
        "+wf+each^sub+for-0=obj=1=customer&1=n=1=2+show",
    ]
    assert "customer list-2" in log(rt, a, names[-1])


def test_loop_exports_i(rt: LocalRuntime) -> None:
    a = run(rt, {"wf.dig": "+l:\n  loop>: 3\n  _do:\n    +e:\n      echo>: i=${i}\n"})
    assert a.status == "success"
    assert [t.full_name for t in rt.tasks(a.id) if t.full_name.endswith("+e")] == [
        "+wf+l^sub+loop-0+e",
        "+wf+l^sub+loop-1+e",
        "+wf+l^sub+loop-2+e",
    ]
    assert "i=2" in log(rt, a, "+wf+l^sub+loop-2+e")


@pytest.mark.slow
def test_if_runs_do_or_else_do(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": """
            _export:
              flag: true
            +yes:
              if>: ${flag}
              _do:
                echo>: yes
              _else_do:
                fail>: wrong branch
            +no:
              if>: ${!flag}
              _do:
                fail>: wrong branch
              _else_do:
                +e:
                  echo>: else
            """
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    got = states(rt, a)
    assert got["+wf+yes^sub"] == "success" and got["+wf+no^sub+e"] == "success"
    assert "+wf+no^sub" in got and "+wf+yes^sub+e" not in got


@pytest.mark.slow
def test_call_resolves_paths_relative_to_the_called_file(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {
            "wf.dig": INIT + "+sub:\n  call>: sub/child\n",
            "sub/child.dig": "_export:\n  who: child\n+q:\n  td>: q.sql\n  database: db\n  create_table: t\n",
            "sub/q.sql": "SELECT '${who}' AS who",
        },
    )
    assert a.status == "success", rt.tasks(a.id)
    assert "+wf+sub^sub+q" in states(rt, a)
    assert rows(rt, "SELECT who FROM t") == [["child"]]


@pytest.mark.slow
def test_require_runs_a_workflow_once_per_session(rt: LocalRuntime) -> None:
    files = {
        "wf.dig": INIT + "+need:\n  require>: dep\n+again:\n  require>: dep\n",
        "dep.dig": "+add:\n  td>:\n  query: SELECT 1 AS x\n  database: db\n  insert_into: runs\n",
    }
    a = run(rt, files)
    assert a.status == "success", rt.tasks(a.id)
    assert rows(rt, "SELECT count(*) FROM runs") == [[1]]
    assert "already succeeded" in log(rt, a, "+wf+again")


@pytest.mark.slow
def test_require_fails_when_the_required_workflow_fails(rt: LocalRuntime) -> None:
    a = run(rt, {"wf.dig": "+need:\n  require>: dep\n", "dep.dig": "+f:\n  fail>: broken dep\n"})
    assert a.status == "error"
    assert "required workflow dep ended in error" in task(rt, a, "+wf+need").error


def test_echo_and_fail(rt: LocalRuntime) -> None:
    a = run(
        rt,
        {"wf.dig": "+e:\n  echo>: hello ${session_date}\n+f:\n  fail>: stop at ${session_date}\n"},
    )
    assert "hello 2026-01-01" in log(rt, a, "+wf+e")
    assert a.status == "error"
    assert task(rt, a, "+wf+f").error == "stop at 2026-01-01"


@pytest.mark.slow
def test_unsupported_operator_is_named(rt: LocalRuntime) -> None:
    a = run(rt, {"wf.dig": "+s:\n  sh>: echo hi\n"})
    assert a.status == "error"
    assert "operator sh> is not supported by the local backend" in task(rt, a, "+wf+s").error


UNIFY = """
+unify:
  http_call>: https://api-cdp.treasuredata.com/unifications/workflow_call
  method: POST
  headers:
    - authorization: ${secret:td.apikey}
  content_format: json
  content:
    run_persistent_ids: true
    unification:
      name: ${name}
_export:
  name: customer_360
"""


@pytest.mark.slow
def test_http_call_to_unification_runs_the_registered_handler(rt: LocalRuntime) -> None:
    calls: list[UnificationCall] = []

    def handler(call: UnificationCall) -> dict[str, Any]:
        calls.append(call)
        call.cursor.execute("CREATE SCHEMA IF NOT EXISTS cdp_unification_customer_360")
        call.log("unified 0 records")
        return {"unification": {"done": True}}

    rt.unification_handler = handler
    a = run(rt, {"wf.dig": UNIFY})
    assert a.status == "success", rt.tasks(a.id)
    (call,) = calls
    assert call.method == "POST"
    assert call.content == {"run_persistent_ids": True, "unification": {"name": "customer_360"}}
    assert "unified 0 records" in log(rt, a, "+wf+unify")
    assert task(rt, a, "+wf+unify").store_params == {"unification": {"done": True}}


@pytest.mark.slow
def test_http_call_without_handler_or_to_other_hosts_fails_clearly(rt: LocalRuntime) -> None:
    rt.unification_handler = None  # the default is cdp_mcp.backends.local.unification's engine
    a = run(rt, {"wf.dig": UNIFY + "+other:\n  http>: https://example.com/hook\n"})
    assert task(rt, a, "+wf+unify").error == UNIFICATION_NOT_INSTALLED
    b = run(
        rt,
        {"wf.dig": "+other:\n  http>: https://example.com/hook\n"},
        session=datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert "example.com is not run by the local backend" in task(rt, b, "+wf+other").error


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("${secret:td.apikey}", "Digdag would post the value of secret 'td.apikey'"),
        ("${db:x}", "Invalid parametrization: '${db:x}'"),
    ],
)
def test_http_call_content_is_read_for_secrets_after_the_template(
    rt: LocalRuntime, value: str, error: str
) -> None:
    # Digdag's http operators resolve ${secret:...} in their content (UserSecretTemplate);
    # a literal one, rendered from ${"$"}, would still be replaced on TD.
    rt.unification_handler = lambda call: {}
    escaped = value.replace("${", '${"$"}{')
    dig = UNIFY.replace("name: ${name}", f"name: '{escaped}'")
    a = run(rt, {"wf.dig": dig})
    assert a.status == "error"
    assert error in task(rt, a, "+wf+unify").error
