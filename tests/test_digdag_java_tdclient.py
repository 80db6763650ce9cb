"""TD's own Java client drives the emulator's API v3 the way Digdag's td operators do.

The referee is ci/java-referees/tdclient/TdOperatorsDriver.java on td-client-java 0.9.0 (the
version Digdag 0.10.5.1's digdag-standards pins; see tests/java_referees.py for the set-up).
It replays, client call by client call, what `td>` (presto and hive, create_table,
insert_into, store_last_results), `td_ddl>` (create/drop/empty databases and tables,
rename_tables), `td_load>`, `td_wait>` and a killed attempt's cleanup call, for tasks shaped
like the generated projects', and prints what the client decoded: job ids and statuses,
`/v3/job/show` as TDJob read it, the first result row as Digdag stores `td.last_results`
from the msgpack.gz result, and table lists as TDTable parsed them. Each task's requests are
told apart on the server by the driver's `X-Referee-Task` header.

`td_load>` is the one operator the emulator does not serve: both of its forms start a TD
data connector (`POST /v3/job/issue/bulkload/{db}` with the YAML as the job's config, or
`POST /v3/bulk_loads/{name}/jobs` for a saved one), which runs on TD's servers; those two
requests are recorded as unserved, and nothing else may be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from tests.conftest import SENTINEL_KEY, SENTINEL_SECRET
from tests.java_referees import classpath, json_lines, run_java

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

DB = "jr_db"
SLOW_SQL = (
    "SELECT count(*) AS n FROM range(10000000000) t(i) "
    "WHERE to_hex(md5(to_utf8(CAST(i AS VARCHAR)))) LIKE '%ABC%'"
)
WRONG_KEY = "1/" + "0" * 40  # TD's key form, so the client sends it as `TD1 <key>`


def td(name: str, query: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "op": "td", "database": DB, "query": query, **options}


def ddl(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "op": "td_ddl", "database": DB, **options}


def tables(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "op": "tables", "database": DB, **options}


# Tasks shaped like the generated projects': an ingestion's setup, bounds and log rows; a
# staging transform's create_table in both engines (its SQL opens with comment lines);
# unification's table shuffles; then the failure paths.
TASKS: list[dict[str, Any]] = [
    ddl("create_db", create_databases=[DB], create_tables=["ingestion_log", f"{DB}.users"]),
    ddl("create_db_again", create_databases=[DB], create_tables=["ingestion_log"]),
    td(
        "log_success",
        "SELECT 'users' AS source, 'success' AS status, 42 AS rows_loaded",
        insert_into="ingestion_log",
        store_last_results=True,
    ),
    td(
        "read_bounds",
        "SELECT count(*) AS n, max(source) AS last_source, CAST(NULL AS VARCHAR) AS range_end,"
        " 2.5e0 AS ratio, true AS from_inclusive FROM ingestion_log",
        store_last_results=True,
        session_time=1767225600,
    ),
    td("read_bounds_retried", "SELECT 'never run' AS x", domain_key_of="read_bounds"),
    td(
        "staging_presto",
        "-- stg_customers <- customers: staging transform, presto SQL\n"
        "SELECT 1 AS id, 'ann' AS name, true AS email_valid"
        " UNION ALL SELECT 2, 'bob', false",
        create_table="stg_customers",
        store_last_results=True,
    ),
    td(
        "staging_hive",
        "-- stg_orders <- orders: staging transform, hive SQL\nSELECT id, name FROM stg_customers",
        engine="hive",
        create_table="stg_orders",
        store_last_results=True,
    ),
    td(
        "hive_append", "SELECT 3 AS id, 'cy' AS name", engine="hive", insert_into=f"{DB}.stg_orders"
    ),
    td(
        "hive_count",
        "SELECT count(1) AS n, max(id) FROM stg_orders",
        engine="hive",
        store_last_results=True,
    ),
    tables("tables_after_jobs", show="stg_customers"),
    {
        "name": "wait_met",
        "op": "td_wait",
        "database": DB,
        "query": "SELECT count(*) > 0 FROM stg_orders",
    },
    {"name": "wait_unmet", "op": "td_wait", "database": DB, "query": "SELECT 0 AS ready"},
    {"name": "swap", "op": "swap", "database": DB, "table1": "stg_orders", "table2": "users"},
    tables("tables_after_swap"),
    ddl(
        "rename",
        rename_tables=[
            {"from": "stg_customers", "to": "enriched_customers"},
            {"from": "users", "to": "enriched_customers"},  # onto an existing table
        ],
    ),
    ddl("rename_missing", rename_tables=[{"from": "no_such_table", "to": "other_table"}]),
    ddl(
        "empty_and_drop",
        empty_tables=["enriched_customers"],
        drop_tables=["stg_orders", "never_was"],
    ),
    tables("tables_after_ddl"),
    ddl("databases_ddl", empty_databases=["jr_scratch"], drop_databases=["jr_never"]),
    ddl("drop_scratch", drop_databases=["jr_scratch"]),
    {"name": "databases", "op": "databases"},
    td("bad_sql", "SELECT nope FROM missing_table"),
    ddl("wrong_key", apikey=WRONG_KEY, create_databases=[DB]),
    td("slow", SLOW_SQL, wait=False),
    {"name": "cleanup_kill", "op": "kill", "database": DB, "job_of": "slow"},
    {
        "name": "load_config",
        "op": "td_load",
        "database": DB,
        "table": "loaded",
        "config": {
            "in": {"type": "s3", "bucket": "b", "path_prefix": "p/"},
            "out": {"mode": "append"},
        },
    },
    {"name": "load_saved", "op": "td_load", "database": DB, "session": "saved_users_load"},
]


class TaskLog:
    """ASGI wrapper: each request as `METHOD path`, under the driver task that sent it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.by_task: dict[str, list[str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            task = dict(scope["headers"]).get(b"x-referee-task", b"?").decode()
            self.by_task.setdefault(task, []).append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


class Run:
    def __init__(self, lines: list[dict[str, Any]], log: TaskLog, unserved: list[Any]) -> None:
        self.tasks = {line["task"]: line for line in lines}
        self.log, self.unserved = log, unserved

    def __call__(self, task: str) -> dict[str, Any]:
        """The task's line; the task must have succeeded."""
        line = self.tasks[task]
        assert line["ok"], f"{task} failed: {line}"
        return line

    def failed(self, task: str) -> dict[str, Any]:
        line = self.tasks[task]
        assert not line["ok"], f"{task} should have failed: {line}"
        return dict(line["error"])

    def requests(self, task: str) -> list[str]:
        """The task's requests, job ids as {id}, repeated polls of a status once."""
        job = self.tasks[task].get("job_id")
        out: list[str] = []
        for r in self.log.by_task.get(task, []):
            r = re.sub(rf"/{job}$", "/{id}", r) if job else r
            if not (out and out[-1] == r and "/v3/job/status/" in r):
                out.append(r)
        return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    cp = classpath("tdclient", tmp_path_factory)
    tmp = tmp_path_factory.mktemp("java_tdclient")
    spec = tmp / "spec.json"
    spec.write_text(json.dumps({"tasks": TASKS}))
    app = create_app(tmp / "site", SENTINEL_KEY)
    log = TaskLog(app)
    with BackgroundServer(log) as server:
        endpoint = server.url.removeprefix("http://")  # Digdag's td.endpoint: host:port
        done = run_java(
            cp, "TdOperatorsDriver", [endpoint, str(spec)], {"TD_API_KEY": SENTINEL_KEY}
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert SENTINEL_SECRET not in done.stdout + done.stderr
    yield Run(json_lines(done.stdout), log, list(app.state.site.unserved))


# The result's first row, then (when there is one) the result schema to name its values.
LAST_RESULTS = ["GET /v3/job/result/{id}", "GET /v3/job/show/{id}"]
NUM_RECORDS = ["GET /v3/job/show/{id}"]  # td.last_job.num_records, after every td> job


def job(engine: str = "presto") -> list[str]:
    """Submit, then poll the status until the job is done."""
    return [f"POST /v3/job/issue/{engine}/jr_db", "GET /v3/job/status/{id}"]


def ensure_table(table: str) -> list[str]:
    return [f"POST /v3/table/create/jr_db/{table}/log", "GET /v3/table/list/jr_db"]


def test_only_td_loads_data_connector_requests_go_unserved(run: Run) -> None:
    assert [f"{u['method']} {u['path']}" for u in run.unserved] == [
        "POST /v3/job/issue/bulkload/jr_db",
        "POST /v3/bulk_loads/saved_users_load/jobs",
    ]
    assert run.failed("load_config")["status"] == 404
    assert "data connector" in run.failed("load_config")["message"]
    assert run.failed("load_saved")["status"] == 404
    failed = {t for t, line in run.tasks.items() if not line["ok"]}
    assert failed == {"rename_missing", "bad_sql", "wrong_key", "load_config", "load_saved"}


def test_td_ddl_creates_databases_and_tables_once_then_checks_they_exist(run: Run) -> None:
    assert run.requests("create_db") == [
        "POST /v3/database/create/jr_db",
        "GET /v3/database/list",
        *ensure_table("ingestion_log"),
        *ensure_table("users"),  # `jr_db.users`: the database part goes into the path
    ]
    # again: each create answers 409, which Digdag takes as done, and the check passes
    assert run.requests("create_db_again") == run.requests("create_db")[:4]
    assert run("create_db_again")["ok"]


def test_insert_into_creates_the_table_then_appends(run: Run) -> None:
    line = run("log_success")
    assert run.requests("log_success") == [
        *ensure_table("ingestion_log"),
        *job(),
        *LAST_RESULTS,
        *NUM_RECORDS,
    ]
    assert line["statement"].endswith(
        '-- task_name: +wf+log_success\nINSERT INTO "ingestion_log"\n'
        "SELECT 'users' AS source, 'success' AS status, 42 AS rows_loaded"
    )
    assert line["statuses"][-1] == "success"
    assert line["last_results"] == {"rows": 1}  # Presto answers an INSERT with its row count


def test_store_last_results_decodes_the_first_msgpack_row_by_the_result_schema(run: Run) -> None:
    line = run("read_bounds")
    assert run.requests("read_bounds") == [*job(), *LAST_RESULTS, *NUM_RECORDS]
    assert line["last_results"] == {
        "n": 1,
        "last_source": "users",
        "range_end": None,
        "ratio": 2.5,
        "from_inclusive": True,
    }
    info = line["job"]
    assert (info["status"], info["type"], info["database"]) == ("success", "presto", DB)
    assert json.loads(info["result_schema"])[0] == ["n", "bigint"]
    assert info["query"] == line["statement"] and info["num_records"] == 1 == line["num_records"]
    assert line["summary"]["job_id"] == line["job_id"] and line["summary"]["result_size"] > 0


def test_a_retried_submit_with_the_same_domain_key_is_the_same_job(run: Run) -> None:
    # A task that submitted but was interrupted before saving the job id submits again with
    # its domain key: TD answers 409 with `details.conflicts_with`, which names the job.
    again = run("read_bounds_retried")
    assert again["job_id"] == run("read_bounds")["job_id"]
    assert run.requests("read_bounds_retried") == [*job(), *NUM_RECORDS]
    assert again["job"]["query"] == run("read_bounds")["statement"]


def test_presto_create_table_drops_and_creates_in_one_job(run: Run) -> None:
    line = run("staging_presto")
    assert run.requests("staging_presto") == [*job(), *LAST_RESULTS, *NUM_RECORDS]
    # the command goes after the SQL file's own leading comment lines
    assert line["statement"].endswith(
        "-- stg_customers <- customers: staging transform, presto SQL\n"
        'DROP TABLE IF EXISTS "stg_customers";\nCREATE TABLE "stg_customers" AS\n'
        "SELECT 1 AS id, 'ann' AS name, true AS email_valid UNION ALL SELECT 2, 'bob', false"
    )
    assert line["last_results"] == {"rows": 2}


def test_hive_create_table_creates_the_table_then_overwrites_it(run: Run) -> None:
    line = run("staging_hive")
    assert run.requests("staging_hive") == [
        *ensure_table("stg_orders"),
        *job("hive"),
        "GET /v3/job/result/{id}",  # Hive answers a write with no rows: no schema lookup
        *NUM_RECORDS,
    ]
    assert (
        "-- stg_orders <- orders: staging transform, hive SQL\nINSERT OVERWRITE TABLE `stg_orders`\n"
        in (line["statement"])
    )
    assert line["last_results"] == {}
    assert run("hive_append")["statement"].endswith(
        "INSERT INTO TABLE `jr_db`.`stg_orders`\nSELECT 3 AS id, 'cy' AS name"
    )
    # Hive names an unnamed result column _c1
    assert run("hive_count")["last_results"] == {"n": 3, "_c1": 3}


def test_tables_are_listed_with_td_column_types_only(run: Run) -> None:
    listed = {t["name"]: t for t in run("tables_after_jobs")["tables"]}
    assert set(listed) == {"ingestion_log", "users", "stg_customers", "stg_orders"}
    # A boolean column is listed as TD's `long`: td-client-java knows no other names than
    # int, long, float, double, string, array<>, map<>, and one unknown type fails the
    # whole listing (so Digdag's existsTable in every td_ddl> and insert_into).
    assert listed["stg_customers"]["columns"] == [
        ["id", "long"],
        ["name", "string"],
        ["email_valid", "long"],
    ]
    assert (listed["stg_customers"]["count"], listed["stg_orders"]["count"]) == (2, 3)
    assert listed["users"]["columns"] == []  # a new table: only `time`, left out as on TD
    assert run("tables_after_jobs")["show"] == {"name": "stg_customers", "count": 2, "columns": 3}


def test_td_wait_reads_the_first_value_of_its_query(run: Run) -> None:
    assert run("wait_met")["done"] is True
    assert run("wait_unmet")["done"] is False
    # td_wait> sends its query as written, without td>'s comment header
    assert run("wait_met")["job"]["query"] == "SELECT count(*) > 0 FROM stg_orders"
    assert run.requests("wait_met") == [*job(), "GET /v3/job/result/{id}"]


def test_swap_exchanges_two_tables(run: Run) -> None:
    assert run.requests("swap") == ["POST /v3/table/swap/jr_db/stg_orders/users"]
    counts = {t["name"]: t["count"] for t in run("tables_after_swap")["tables"]}
    assert (counts["users"], counts["stg_orders"]) == (3, 0)


def test_rename_tables_checks_every_source_then_renames_with_overwrite(run: Run) -> None:
    assert run.requests("rename") == [
        "GET /v3/table/list/jr_db",
        "GET /v3/table/list/jr_db",
        "POST /v3/table/rename/jr_db/stg_customers/enriched_customers",
        "POST /v3/table/rename/jr_db/users/enriched_customers",
    ]
    error = run.failed("rename_missing")
    assert error["message"] == "Renaming table jr_db.no_such_table doesn't exist"
    assert run.requests("rename_missing") == ["GET /v3/table/list/jr_db"]


def test_empty_tables_deletes_then_creates(run: Run) -> None:
    assert run.requests("empty_and_drop") == [
        "POST /v3/table/delete/jr_db/stg_orders",
        "POST /v3/table/delete/jr_db/never_was",  # 404: Digdag takes it as done
        "POST /v3/table/delete/jr_db/enriched_customers",
        *ensure_table("enriched_customers"),
    ]
    listed = {t["name"]: t for t in run("tables_after_ddl")["tables"]}
    assert set(listed) == {"ingestion_log", "enriched_customers"}
    # emptied: the renamed-over table (3 rows from the swap) is gone, with its columns
    assert (listed["enriched_customers"]["count"], listed["enriched_customers"]["columns"]) == (
        0,
        [],
    )


def test_database_ddl_and_listing(run: Run) -> None:
    assert run.requests("databases_ddl") == [
        "POST /v3/database/delete/jr_never",  # drop_databases: a 404 is done
        "POST /v3/database/delete/jr_scratch",  # empty_databases: deleted (not there: 404)...
        "POST /v3/database/create/jr_scratch",  # ...then created
        "GET /v3/database/list",
    ]
    assert run("drop_scratch")["ok"]
    assert [d["name"] for d in run("databases")["databases"]] == [DB]
    assert run("databases")["databases"][0]["count"] == 1  # ingestion_log's one row


def test_a_failed_query_fails_the_task_with_its_output_and_error(run: Run) -> None:
    line = run.tasks["bad_sql"]
    assert run.requests("bad_sql") == [*job(), "GET /v3/job/show/{id}"]
    assert line["statuses"][-1] == "error"
    # Digdag's task error: the job's cmdout, a newline, its stderr (from /v3/job/show)
    message = run.failed("bad_sql")["message"]
    assert message == f"{line['job']['cmdout']}\n{line['job']['stderr']}"
    assert "missing_table" in line["job"]["stderr"]


def test_a_wrong_key_is_a_401_the_client_reads(run: Run) -> None:
    error = run.failed("wrong_key")
    assert (error["class"], error["status"]) == ("TDClientHttpUnauthorizedException", 401)
    assert error["message"].endswith("has failed: Authentication failed")  # the body's `text`


def test_a_killed_attempts_cleanup_kills_its_job(run: Run) -> None:
    line = run("cleanup_kill")
    assert run.requests("cleanup_kill") == ["POST /v3/job/kill/{id}"]
    assert line["statuses"] == ["killed"] and line["job"]["status"] == "killed"
