"""TD's own Python client (td-client-python, PyPI `td-client`) against the emulator.

The client is used as a new user would: `tdclient.Client(apikey=K, endpoint="http://127.0.0.1:PORT")`
(no trailing slash, so it asks for `//v3/...`). Every request it makes is logged; a test
that makes a request no route serves fails (`site.unserved` must stay empty), except the
one that asks for an unknown path on purpose.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import tdclient
from starlette.types import ASGIApp, Receive, Scope, Send
from tdclient import errors

from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.emulator.site import Site

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

KEY = "1234/tdclient-key"
TICK = 0.05  # the client's wait_interval: how often it polls a job or a session
SLOW_SQL = (
    "SELECT count(*) AS n FROM range(10000000000) t(i) "
    "WHERE to_hex(md5(to_utf8(CAST(i AS VARCHAR)))) LIKE '%ABC%'"
)


class RequestLog:
    """ASGI wrapper recording (method, path, query) of every request, as sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"], scope["query_string"].decode()))
        await self.app(scope, receive, send)

    def since(self, mark: int) -> list[str]:
        return [f"{m} {p}" + (f"?{q}" if q else "") for m, p, q in self.seen[mark:]]


class Emulator:
    def __init__(self, url: str, log: RequestLog, site: Site) -> None:
        self.url, self.log, self.site = url, log, site

    def client(self, key: str = KEY) -> tdclient.Client:
        return tdclient.Client(apikey=key, endpoint=self.url)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    app = create_app(tmp_path_factory.mktemp("tdclient_site"), KEY)
    log = RequestLog(app)
    with BackgroundServer(log) as server:
        yield Emulator(server.url, log, app.state.site)


@pytest.fixture
def td(emulator: Emulator) -> Iterator[tdclient.Client]:
    """A client; the test fails if it asked for anything the emulator does not serve."""
    before = len(emulator.site.unserved)
    with emulator.client() as client:
        yield client
    assert emulator.site.unserved[before:] == []


def database(td: tdclient.Client, name: str) -> str:
    if name not in {d.name for d in td.databases()}:
        td.create_database(name)
    return name


def run(td: tdclient.Client, db: str, sql: str, engine: str = "presto") -> Any:
    job = td.query(db, sql, type=engine)
    job.wait(wait_interval=TICK)  # type: ignore[arg-type]
    assert job.status() == "success", job.debug
    return job


def test_the_endpoint_as_a_new_user_gives_it_is_served(emulator: Emulator) -> None:
    """No trailing slash: td-client-python sends `//v3/...`, which TD's front end accepts."""
    mark = len(emulator.log.seen)
    with emulator.client() as td:
        assert td.create_database("slash_db") is True
        assert "slash_db" in [d.name for d in td.databases()]
    assert emulator.log.since(mark) == [
        "POST //v3/database/create/slash_db",
        "GET //v3/database/list",
    ]
    assert emulator.site.unserved == []


def test_databases_create_list_delete(td: tdclient.Client) -> None:
    assert td.create_database("crud_db") is True
    found = {d.name: d for d in td.databases()}
    assert found["crud_db"].count == 0 and found["crud_db"].permission == "administrator"
    with pytest.raises(errors.AlreadyExistsError, match="crud_db"):
        td.create_database("crud_db")
    with pytest.raises(errors.APIError, match=r"400: Create database failed: .*lower-case"):
        td.create_database("No-Good")
    assert td.delete_database("crud_db") is True
    assert "crud_db" not in {d.name for d in td.databases()}
    with pytest.raises(errors.NotFoundError, match="crud_db"):
        td.delete_database("crud_db")


def test_a_table_shows_its_count_and_schema_after_insert_jobs(td: tdclient.Client) -> None:
    db = database(td, "tables_db")
    assert td.create_log_table(db, "events") is True
    empty = td.table(db, "events")
    assert (empty.count, empty.schema, empty.type) == (0, [], "log")
    with pytest.raises(errors.AlreadyExistsError):
        td.create_log_table(db, "events")

    insert = run(
        td,
        db,
        "INSERT INTO events SELECT 1700000000 AS time, 'a' AS name, 1.5 AS score "
        "UNION ALL SELECT 1700000001, 'b', 2.5",
    )
    assert insert.result_schema == [["rows", "bigint"]] and list(insert.result()) == [[2]]
    # by column name, as TD inserts: the new columns are added, `time` stays out of the schema
    run(td, db, "INSERT INTO events SELECT 4.5 AS score, 'c' AS name, 1700000002 AS time")
    table = td.table(db, "events")
    assert table.count == 3
    assert table.schema == [["name", "string"], ["score", "double"]]
    rows = run(td, db, "SELECT time, name, score FROM events ORDER BY time").result()
    assert list(rows) == [[1700000000, "a", 1.5], [1700000001, "b", 2.5], [1700000002, "c", 4.5]]
    assert [t.name for t in td.tables(db)] == ["events"]

    missing = td.query(db, "INSERT INTO nowhere SELECT 1 AS time", type="presto")
    missing.wait(wait_interval=TICK)  # type: ignore[arg-type]
    assert missing.status() == "error"
    assert "does not exist" in (missing.debug or {})["stderr"]


def test_presto_and_trino_queries_give_rows_and_schema(td: tdclient.Client) -> None:
    db = database(td, "query_db")
    sql = (
        "SELECT n, CAST(n AS varchar) AS s, n * 0.5e0 AS f FROM (VALUES 1, 2, 3) AS v(n) ORDER BY n"
    )
    for engine in ("presto", "trino"):
        job = run(td, db, sql, engine)
        assert job.type == engine
        assert job.result_schema == [["n", "integer"], ["s", "varchar"], ["f", "double"]]
        assert job.num_records == 3
        assert list(job.result()) == [[1, "1", 0.5], [2, "2", 1.0], [3, "3", 1.5]]
        shown = td.job(job.id)
        assert (shown.status(), shown.database, shown.query) == ("success", db, sql)
        assert isinstance(shown.debug, dict) and "stderr" in shown.debug
    unnamed = run(td, db, "SELECT count(*), max(n) AS top FROM (VALUES 1, 2) AS v(n)")
    assert unnamed.result_schema == [["_col0", "bigint"], ["top", "integer"]]


def test_a_hive_query_runs_through_the_hive_translation(td: tdclient.Client) -> None:
    db = database(td, "hive_db")
    td.create_log_table(db, "logs")
    run(td, db, "INSERT INTO TABLE logs SELECT 1700000000 AS time, 'x' AS k", "hive")
    run(td, db, "INSERT INTO TABLE logs SELECT 1700000001 AS time, 'x' AS k", "hive")
    job = run(td, db, "SELECT k, count(1) FROM logs GROUP BY k", "hive")
    assert job.result_schema == [["k", "string"], ["_c1", "bigint"]]
    assert list(job.result()) == [["x", 2]]
    cte = "WITH q AS (SELECT 1700000003 AS time, 'z' AS k) INSERT INTO TABLE logs SELECT * FROM q"
    run(td, db, cte, "hive")  # Hive puts the CTE first
    assert td.table(db, "logs").count == 3
    run(td, db, "INSERT OVERWRITE TABLE logs SELECT 1700000002 AS time, 'y' AS k", "hive")
    assert td.table(db, "logs").count == 1


def test_every_result_format_decodes_to_the_same_rows(td: tdclient.Client, tmp_path: Path) -> None:
    db = database(td, "formats_db")
    job = run(
        td, db, "SELECT * FROM (VALUES (1, 'a,b', NULL), (2, 'tab\there', 2.5)) AS t(i, s, d)"
    )
    expected = [[1, "a,b", None], [2, "tab\there", 2.5]]
    assert td.job_result(job.id) == expected  # msgpack
    assert td.job_result_format(job.id, "json") == expected
    assert list(td.job_result_format_each(job.id, "msgpack", store_tmpfile=True)) == expected

    path = tmp_path / "result.msgpack.gz"
    assert td.download_job_result(job.id, str(path)) is True  # Range requests of result_size
    assert td.job(job.id).result_size == path.stat().st_size
    with gzip.open(path) as packed:
        assert list(msgpack.Unpacker(packed, raw=False)) == expected

    def fetched(fmt: str, header: bool) -> str:
        query = f"format={fmt}&header={str(header).lower()}"
        with td.api.get(f"/v3/job/result/{job.id}?{query}") as res:
            assert res.status == 200
            return str(res.read().decode())

    as_text = [["1", "a,b", ""], ["2", "tab\there", "2.5"]]
    for fmt, dialect in (("csv", csv.excel), ("tsv", csv.excel_tab)):
        assert list(csv.reader(io.StringIO(fetched(fmt, False)), dialect)) == as_text
        with_header = list(csv.reader(io.StringIO(fetched(fmt, True)), dialect))
        assert with_header == [["i", "s", "d"], *as_text]


def test_killing_a_slow_job_ends_it_killed(td: tdclient.Client) -> None:
    db = database(td, "kill_db")
    job = td.query(db, SLOW_SQL, type="presto")
    deadline = time.monotonic() + 20
    while td.job_status(job.id) != "running":
        assert time.monotonic() < deadline
        time.sleep(TICK)
    time.sleep(0.3)  # inside the statement, not before it
    assert job.kill() == "running"
    assert job.killed() and job.status() == "killed"
    # the statement itself stops: the job's thread ends, and the engine answers the next query
    while any(t.name == f"td-job-{job.id}" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the killed query is still running"
        time.sleep(TICK)
    assert td.job_status(job.id) == "killed"
    assert list(run(td, db, "SELECT 42 AS answer").result()) == [[42]]
    assert td.kill(job.id) == "killed"  # a finished job keeps its status


def test_the_job_list_shows_the_newest_first(td: tdclient.Client) -> None:
    db = database(td, "list_db")
    first = run(td, db, "SELECT 1 AS one")
    second = run(td, db, "SELECT 2 AS two", "hive")
    listed = td.jobs()
    ids = [j.job_id for j in listed]
    assert ids.index(second.id) < ids.index(first.id)
    by_id = {j.job_id: j for j in listed}
    assert by_id[second.id].type == "hive" and by_id[first.id].type == "presto"
    assert by_id[first.id].status() == "success"
    assert [j.job_id for j in td.jobs(_from=0, to=0)] == [ids[0]]
    assert all(j.status() == "success" for j in td.jobs(status="success"))


def msgpack_gz(records: list[dict[str, Any]]) -> bytes:
    return gzip.compress(b"".join(msgpack.packb(r) for r in records))


def test_bulk_import_loads_the_valid_records_into_the_table(td: tdclient.Client) -> None:
    db = database(td, "bulk_db")
    td.create_log_table(db, "people")
    td.create_bulk_import("load-1", db, "people")
    session = td.bulk_import("load-1")
    assert (session.status, session.upload_frozen) == ("uploading", False)
    assert (session.database, session.table, session.job_id) == (db, "people", None)

    lines = [
        {"time": 1700000000, "name": "ann", "age": 31, "tags": ["a", "b"]},
        {"time": 1700000001, "name": "bob", "age": 40.5, "vip": True},
        {"name": "no time"},  # an error record: TD needs an integer `time`
    ]
    text = "".join(json.dumps(r) + "\n" for r in lines).encode()
    with pytest.warns(RuntimeWarning, match="time"):  # the client warns too
        session.upload_file("part-1", "json", io.BytesIO(text))
    part = msgpack_gz([{"time": 1700000002, "name": "cy", "age": 22}])
    session.upload_part("part-2", part, len(part))
    session.upload_part("part-3", part, len(part))
    assert session.list_parts() == ["part-1", "part-2", "part-3"]
    assert session.delete_part("part-3") is True
    assert session.list_parts() == ["part-1", "part-2"]
    assert [b.name for b in td.bulk_imports()] == ["load-1"]

    session.freeze()
    assert session.upload_frozen is True
    with pytest.raises(errors.APIError, match="frozen"):
        td.bulk_import_upload_part("load-1", "late", part, len(part))
    job = session.perform(wait=True, wait_interval=TICK)  # type: ignore[arg-type]
    assert job.status() == "success" and td.job(job.id).type == "bulk_import"
    assert session.status == "ready" and session.job_id == job.id
    assert (session.valid_records, session.error_records) == (3, 1)
    assert (session.valid_parts, session.error_parts) == (2, 0)
    assert list(session.error_record_items()) == [{"name": "no time"}]
    assert td.table(db, "people").count == 0  # nothing lands before the commit

    session.commit(wait=True, wait_interval=TICK)  # type: ignore[arg-type]
    assert session.status == "committed"
    table = td.table(db, "people")
    assert table.count == 3
    assert table.schema == [
        ["name", "string"],
        ["age", "double"],
        ["tags", "string"],
        ["vip", "long"],  # TD's schema has no boolean type (see shapes.table)
    ]
    rows = run(td, db, "SELECT time, name, age, tags, vip FROM people ORDER BY time").result()
    assert list(rows) == [
        [1700000000, "ann", 31.0, '["a","b"]', None],
        [1700000001, "bob", 40.5, None, True],
        [1700000002, "cy", 22.0, None, None],
    ]
    assert session.delete() is True
    assert td.bulk_imports() == []


def test_bulk_import_appends_and_keeps_the_tables_column_types(td: tdclient.Client) -> None:
    db = database(td, "append_db")
    td.create_log_table(db, "scores")
    run(td, db, "INSERT INTO scores SELECT 1700000000 AS time, 7 AS points")
    td.create_bulk_import("append-1", db, "scores", params={"mode": "append"})
    part = msgpack_gz(
        [
            {"time": 1700000001, "points": 8},
            {"time": 1700000002, "points": "not a number"},  # read as null, as TD would
            {"time": "1700000003", "points": 9},  # `time` must be an integer
        ]
    )
    td.bulk_import_upload_part("append-1", "p", part, len(part))
    session = td.bulk_import("append-1")
    session.freeze()
    session.perform(wait=True, wait_interval=TICK)  # type: ignore[arg-type]
    assert (session.valid_records, session.error_records) == (2, 1)
    session.commit(wait=True, wait_interval=TICK)  # type: ignore[arg-type]
    assert td.table(db, "scores").schema == [["points", "long"]]
    rows = run(td, db, "SELECT time, points FROM scores ORDER BY time").result()
    assert list(rows) == [[1700000000, 7], [1700000001, 8], [1700000002, None]]
    td.delete_bulk_import("append-1")


def test_bulk_import_refuses_what_td_refuses(td: tdclient.Client) -> None:
    db = database(td, "refuse_db")
    with pytest.raises(errors.NotFoundError, match="no_table"):
        td.create_bulk_import("refuse-1", db, "no_table")
    td.create_log_table(db, "tab_one")
    td.create_bulk_import("refuse-1", db, "tab_one")
    with pytest.raises(errors.AlreadyExistsError):
        td.create_bulk_import("refuse-1", db, "tab_one")
    with pytest.raises(errors.APIError, match="not frozen"):
        td.perform_bulk_import("refuse-1")
    with pytest.raises(errors.APIError, match="perform it first"):
        td.commit_bulk_import("refuse-1")
    broken = b"not gzip at all"
    session = td.bulk_import("refuse-1")
    session.freeze()
    session.unfreeze()  # uploads are taken again
    assert session.upload_frozen is False
    td.bulk_import_upload_part("refuse-1", "broken", broken, len(broken))
    session.freeze()
    session.perform(wait=True, wait_interval=TICK)  # type: ignore[arg-type]
    assert (session.valid_parts, session.error_parts, session.valid_records) == (0, 1, 0)
    td.delete_bulk_import("refuse-1")
    with pytest.raises(errors.NotFoundError, match="refuse-1"):
        td.bulk_import("refuse-1")


def test_rename_swap_and_delete_tables(td: tdclient.Client) -> None:
    db = database(td, "ddl_db")
    for name in ("left_t", "right_t"):
        td.create_log_table(db, name)
    run(td, db, "INSERT INTO left_t SELECT 1 AS time, 'l' AS side")
    assert td.swap_table(db, "left_t", "right_t") is True
    counts = {t.name: t.count for t in td.tables(db)}
    assert counts == {"left_t": 0, "right_t": 1}

    # td-client-python has no rename; td-client-java's call, made with this client's transport
    with td.api.post(f"/v3/table/rename/{db}/right_t/renamed_t", {"overwrite": "false"}) as res:
        assert res.status == 200 and json.loads(res.read())["table"] == "renamed_t"
    with td.api.post(f"/v3/table/rename/{db}/renamed_t/left_t", {"overwrite": "false"}) as res:
        assert res.status == 409
    with td.api.post(f"/v3/table/rename/{db}/renamed_t/left_t", {"overwrite": "true"}) as res:
        assert res.status == 200
    with td.api.get(f"/v3/table/show/{db}/left_t") as res:
        assert json.loads(res.read())["count"] == 1
    assert {t.name for t in td.tables(db)} == {"left_t"}

    assert td.delete_table(db, "left_t") == "log"
    assert td.tables(db) == []
    with pytest.raises(errors.NotFoundError, match="left_t"):
        td.delete_table(db, "left_t")
    with pytest.raises(errors.NotFoundError, match="left_t"):
        td.swap_table(db, "left_t", "nothing")


def test_an_unknown_path_gets_tds_404_and_is_recorded(emulator: Emulator) -> None:
    before = len(emulator.site.unserved)
    with emulator.client() as td, td.api.get("/v3/no/such/thing", {"x": "1"}) as res:
        assert res.status == 404
        assert json.loads(res.read()) == {
            "error": "Resource not found",
            "text": "Resource not found",
            "severity": "error",
        }
    assert emulator.site.unserved[before:] == [
        {"method": "GET", "path": "/v3/no/such/thing", "query": "x=1"}
    ]


def test_a_wrong_key_is_refused_with_401(emulator: Emulator) -> None:
    before = len(emulator.site.unserved)
    with emulator.client("1234/wrong") as td:
        with pytest.raises(errors.AuthError) as refused:
            td.databases()
        with pytest.raises(errors.AuthError):
            td.query("any_db", "SELECT 1", type="presto")
    body = str(refused.value).split(": ", 1)[1]
    assert json.loads(body) == {
        "error": "Authentication failed",
        "text": "Authentication failed",
        "severity": "error",
    }
    assert emulator.site.unserved[before:] == []  # refused, not unserved


def test_a_bulk_import_session_survives_a_restart_of_the_emulator(tmp_path: Path) -> None:
    part = msgpack_gz([{"time": 1700000000, "k": "kept"}])
    with (
        BackgroundServer(create_app(tmp_path, KEY)) as server,
        tdclient.Client(apikey=KEY, endpoint=server.url) as td,
    ):
        td.create_database("restart_db")
        td.create_log_table("restart_db", "kept")
        td.create_bulk_import("survivor", "restart_db", "kept")
        td.bulk_import_upload_part("survivor", "p1", part, len(part))
    with (
        BackgroundServer(create_app(tmp_path, KEY)) as server,
        tdclient.Client(apikey=KEY, endpoint=server.url) as td,
    ):
        session = td.bulk_import("survivor")
        assert session.list_parts() == ["p1"]
        session.freeze()
        session.perform(wait=True, wait_interval=TICK)  # type: ignore[arg-type]
        session.commit(wait=True, wait_interval=TICK)  # type: ignore[arg-type]
        rows = run(td, "restart_db", "SELECT time, k FROM kept").result()
        assert list(rows) == [[1700000000, "kept"]]
