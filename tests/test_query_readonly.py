"""The agent-facing `query` path reads the pipeline's tables and nothing else.

A corpus of hostile queries (tests/fixtures/hostile_queries.yml) goes through the real MCP
client over stdio and through `cdp-mcp query` as a subprocess, against a pipeline built by
`cdp-mcp demo`. Every one must be refused, with 0 writes (every table's checksum and the
warehouse file's bytes are unchanged, no file appears) and 0 host reads (no output carries
the server's API key, /etc/passwd or the workspace's paths). Each layer also holds alone:
the DuckDB-side check without the first guard, and the read-only connection without either.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest
import yaml
from anyio.from_thread import start_blocking_portal
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from cdp_mcp.backends.base import BackendError, QueryError
from cdp_mcp.backends.local import td_udfs
from cdp_mcp.backends.local import warehouse as warehouse_module
from cdp_mcp.backends.local.readonly import check_duckdb, pipeline_tables
from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.backends.local.warehouse import Warehouse, list_databases
from cdp_mcp.backends.readonly import ReadOnlyError, Select, Show, read_statement
from cdp_mcp.cli.wf import main as cli_main
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from tests.conftest import FIXTURES, SENTINEL_KEY
from tests.test_local_backend import project
from tests.test_mcp_server import Server
from tests.test_td_backend import RequestLog, client

pytestmark = pytest.mark.slow  # servers, JVMs or whole runs: the full suite, not the fast lane

CORPUS: list[dict[str, str]] = yaml.safe_load((FIXTURES / "hostile_queries.yml").read_text())
REPO = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "cdp_mcp.cli.main"]
PIPELINE_DBS = ["acme_config", "acme_src", "acme_stg", "cdp_unification_customer_360"]


@dataclass
class Demo:
    root: Path
    config: Path
    workspace: Path
    out: Path  # where no file may appear

    @property
    def warehouse(self) -> Path:
        return self.workspace / ".cdp_local" / "warehouse.duckdb"

    def fill(self, sql: str) -> str:
        return sql.format(out=self.out, shopify=self.root / "shopify", workspace=self.workspace)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("readonly") / "d"
    done = subprocess.run(
        [sys.executable, "-m", "cdp_mcp.cli.main", "demo", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = root.parent / "out"
    out.mkdir()
    return Demo(root, root / "acme.yml", root / "acme_cdp", out)


@pytest.fixture(scope="module")
def mcp(demo: Demo) -> Iterator[Server]:
    errlog = demo.root.parent / "server.stderr"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cdp_mcp.cli.main", "serve"],
        env={"TD_API_KEY": SENTINEL_KEY, "PYTHONPATH": str(REPO)},
        cwd=str(demo.root),
    )
    with errlog.open("w") as err, start_blocking_portal() as portal:
        mcp_client = Client(stdio_client(params, errlog=err), read_timeout_seconds=120)
        with portal.wrap_async_context_manager(mcp_client) as entered:
            yield Server(portal, entered, demo.root, errlog)


def snapshot(demo: Demo) -> dict[str, Any]:
    """What a write would change: the file's bytes, the schemas, each table's checksum."""
    with duckdb.connect(str(demo.warehouse), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2"
        ).fetchall()
        sums = {
            f"{s}.{t}": con.execute(
                f'SELECT count(*), sum(hash(x)) FROM "{s}"."{t}" AS x'
            ).fetchone()
            for s, t in tables
        }
        schemas = con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()
    folder = demo.warehouse.parent
    return {
        "bytes": hashlib.sha256(demo.warehouse.read_bytes()).hexdigest(),
        # no WAL or temp file of the warehouse (the runner's own state.sqlite may have one)
        "files": sorted(p.name for p in folder.iterdir() if p.name.startswith("warehouse")),
        "schemas": sorted(schemas),
        "tables": sums,
    }


def assert_reveals_nothing(text: str, demo: Demo) -> None:
    for secret in (
        SENTINEL_KEY,  # in the server's environment
        "root:x:0:0",  # /etc/passwd
        str(demo.warehouse),  # the warehouse's path (duckdb_databases, settings)
        '"config_path"',  # state.json
    ):
        assert secret not in text, f"{secret!r} leaked: {text[:300]}"
    # DuckDB's catalog hints name system tables and functions the pipeline does not have
    assert 'Did you mean "' not in text, text


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60
    assert len({e["sql"] for e in CORPUS}) == len(CORPUS)


def test_hostile_queries_through_the_mcp_tool_change_and_reveal_nothing(
    demo: Demo, mcp: Server
) -> None:
    before = snapshot(demo)
    for entry in CORPUS:
        text = mcp.error("query", config_path=str(demo.config), sql=demo.fill(entry["sql"]))
        assert_reveals_nothing(text, demo)
    assert snapshot(demo) == before
    assert list(demo.out.iterdir()) == []
    assert not Path("/tmp/pwned.csv").exists()


def cli_query(demo: Demo, sql: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "query", "--workspace", str(demo.workspace), "-d", "acme_src", *extra, sql],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TD_API_KEY": SENTINEL_KEY, "PYTHONPATH": str(REPO)},
    )


def test_hostile_queries_through_the_cli_change_and_reveal_nothing(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(demo)
    for entry in CORPUS:  # `cdp-mcp query`'s entry point, in this process
        argv = ["query", "--workspace", str(demo.workspace), "-d", "acme_src"]
        code = cli_main([*argv, demo.fill(entry["sql"])])
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and err.startswith("error: "), (entry["why"], out, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        assert_reveals_nothing(err, demo)
    # and as a separate process, with the API key in its environment
    marked = [e for e in CORPUS if e.get("subprocess")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda e: cli_query(demo, demo.fill(e["sql"])), marked))
    for entry, result in zip(marked, done, strict=True):
        assert result.returncode == 1, (entry["why"], result.stdout, result.stderr)
        assert result.stdout == "" and result.stderr.startswith("error: "), entry["why"]
        assert_reveals_nothing(result.stderr, demo)
    assert len(marked) >= 10
    assert snapshot(demo) == before
    assert list(demo.out.iterdir()) == []


# legitimate reads keep working
def test_reads_keep_working_through_the_mcp_tool(demo: Demo, mcp: Server) -> None:
    cp = str(demo.config)

    def rows(sql: str, limit: int = 100) -> dict[str, Any]:
        return mcp.ok("query", config_path=cp, sql=sql, limit=limit)

    counted = rows("SELECT count(*) AS n FROM acme_stg.shopify_orders")
    assert counted["columns"] == ["n"] and counted["rows"][0][0] > 0
    assert rows("SELECT count(*) AS n FROM shopify_orders_hist")["rows"][0][0] > 0  # default db
    union = rows("SELECT 1 AS a UNION ALL SELECT 2 ORDER BY a")
    assert union["rows"] == [[1], [2]] and union["row_count"] == 2
    cte = rows("WITH t AS (SELECT id FROM acme_stg.shopify_orders) SELECT count(*) FROM t")
    assert cte["rows"] == counted["rows"]
    joined = rows(
        "SELECT count(*) AS n FROM acme_stg.shopify_customers c"
        " JOIN cdp_unification_customer_360.enriched_shopify_customers e ON c.id = e.id"
    )
    assert joined["rows"][0][0] > 0  # across the pipeline's databases
    macros = rows(
        "SELECT td_time_format(td_time_parse('2024-01-02T03:04:05Z'), 'yyyy-MM-dd HH:mm:ss')"
        " AS t, td_time_range(td_time_parse('2024-01-02'), '2024-01-01', '2024-01-03') AS r"
    )
    assert macros["rows"] == [["2024-01-02 03:04:05", True]]
    assert rows("TABLE acme_stg.shopify_orders", 1)["truncated"] is True
    sampled = rows("SELECT id FROM acme_stg.shopify_orders TABLESAMPLE BERNOULLI (50)")
    assert sampled["columns"] == ["id"]
    series = rows("SELECT x FROM UNNEST(SEQUENCE(1, 50)) AS t(x) ORDER BY x", 10)
    assert series["row_count"] == 10 and series["truncated"] is True

    tables = rows("SHOW TABLES")
    assert tables["columns"] == ["Table"] and ["shopify_orders_hist"] in tables["rows"]
    stg = rows("SHOW TABLES FROM acme_stg LIKE 'shopify\\_%' ESCAPE '\\'")
    assert ["shopify_orders"] in stg["rows"] and ["unif_input"] not in stg["rows"]
    assert rows("SHOW SCHEMAS")["rows"] == [[db] for db in PIPELINE_DBS]
    described = rows("DESCRIBE acme_stg.shopify_orders")
    assert described["columns"] == ["Column", "Type", "Extra", "Comment"]
    types = {r[0]: r[1] for r in described["rows"]}
    assert types["id"] == "bigint" and types["customer_email"] == "varchar"
    assert rows("SHOW COLUMNS FROM acme_stg.shopify_orders")["rows"] == described["rows"]
    info = rows(
        "SELECT DISTINCT table_schema FROM information_schema.columns ORDER BY 1"
    )  # only the pipeline's databases, not DuckDB's system catalogs
    assert info["rows"] == [[db] for db in PIPELINE_DBS]


def test_reads_keep_working_through_the_cli(demo: Demo) -> None:
    shown = cli_query(demo, "SHOW TABLES FROM acme_stg", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert {"Table": "shopify_orders"} in json.loads(shown.stdout)
    counted = cli_query(
        demo, "SELECT count(*) AS n FROM acme_stg.shopify_orders", "--format", "csv"
    )
    assert counted.returncode == 0 and counted.stdout.startswith("n\n")


def test_errors_name_what_the_pipeline_has(demo: Demo, mcp: Server) -> None:
    cp = str(demo.config)
    text = mcp.error("query", config_path=cp, sql="SELECT * FROM acme_stg.shopify_ordrs")
    assert "acme_stg.shopify_orders" in text and "SHOW TABLES FROM" in text
    assert 'Did you mean "' not in text
    text = mcp.error("query", config_path=cp, sql="SELECT * FROM nowhere.t")
    assert "nowhere.t" in text and "acme_stg" in text and 'Did you mean "' not in text
    text = mcp.error("query", config_path=cp, sql="SELECT nofn(1)")
    assert "nofn" in text and 'Did you mean "' not in text
    text = mcp.error("query", config_path=cp, sql="DESCRIBE acme_stg.nope")
    assert "acme_stg.nope" in text and "SHOW TABLES FROM" in text


# each layer holds alone


def test_the_duckdb_check_alone_refuses_what_the_first_guard_would(demo: Demo) -> None:
    """The text DuckDB would run, checked by DuckDB's splitter, parse tree and plan only."""
    wh = Warehouse.at(demo.warehouse)
    hostile = [
        "SHOW TABLES /* /* */ ' */ ; DROP TABLE acme_stg.shopify_products; --'",
        "SELECT 1 /* /* */ ' */ ; COPY (SELECT 1) TO 'x.csv'; --'",
        "CREATE TABLE acme_stg.pwned AS SELECT 1 AS pwned",
        "DROP TABLE acme_stg.shopify_products",
        "SELECT content FROM read_text('/proc/self/environ')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT path FROM duckdb_databases",
        "SELECT * FROM main.sqlite_master",
        "SELECT current_setting('temp_directory')",
        "WITH a AS (SELECT path FROM duckdb_databases), duckdb_databases AS (SELECT 1 x) "
        "SELECT * FROM a",
        "FROM (SUMMARIZE acme_stg.shopify_products)",
    ]
    with wh.reader("acme_src") as cur:
        tables = pipeline_tables(cur, list_databases(cur))
        for sql in hostile:
            with pytest.raises(QueryError):
                check_duckdb(cur, sql, "acme_src", tables)
        check_duckdb(cur, "SELECT count(*) FROM acme_stg.shopify_products", "acme_src", tables)


def test_the_reader_connection_alone_cannot_write_or_reach_the_host(demo: Demo) -> None:
    """No guard at all: statements run straight on `Warehouse.reader`'s cursor."""
    wh = Warehouse.at(demo.warehouse)
    before = snapshot(demo)
    refused = {
        "DROP TABLE acme_stg.shopify_products": "read-only",
        "CREATE TABLE acme_stg.x AS SELECT 1 AS a": "read-only",
        "DELETE FROM acme_stg.shopify_products": "read-only",
        f"COPY (SELECT 1) TO '{demo.out}/x.csv'": "disabled",
        f"ATTACH '{demo.out}/x.db' AS zz": "disabled",
        "ATTACH ':memory:' AS m": "",
        f"EXPORT DATABASE '{demo.out}/e'": "disabled",
        "SELECT content FROM read_text('/proc/self/environ')": "disabled",
        "SELECT * FROM read_csv('/etc/passwd')": "disabled",
        f"SELECT * FROM '{demo.root}/shopify/customers.csv'": "disabled",
        "SELECT * FROM glob('/etc/*')": "disabled",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')": "disabled",
        "INSTALL httpfs": "",
        "LOAD httpfs": "",
        "SET enable_external_access = true": "locked",
        "SET lock_configuration = false": "locked",
        "SET TimeZone = 'Asia/Tokyo'": "locked",
    }
    with wh.reader("acme_src") as cur:
        for sql, why in refused.items():
            with pytest.raises(duckdb.Error) as caught:
                cur.execute(sql)
            assert why in str(caught.value), (sql, str(caught.value))
        td_udfs.install(cur)  # TD's functions on the locked, read-only connection
        row = cur.execute("SELECT current_setting('TimeZone'), td_time_parse('1970-01-02')")
        assert row.fetchone() == ("UTC", 86400)
    assert snapshot(demo) == before
    assert list(demo.out.iterdir()) == []


# the first guard's output


def test_the_first_guard_hands_on_only_what_it_checked() -> None:
    checked = read_statement("SELECT 1 /* /* */ , 2 -- x\n FROM t")
    assert isinstance(checked, Select) and checked.text == "SELECT 1 , 2 FROM t"
    show = read_statement("show tables in \"Acme\" like 'a%'")
    assert show == Show("tables", "Acme", like="a%")
    assert show.presto() == "SHOW TABLES FROM \"Acme\" LIKE 'a%'"
    described = read_statement("DESC acme_stg.orders;")
    assert isinstance(described, Show) and described.presto() == (
        'SHOW COLUMNS FROM "acme_stg"."orders"'
    )
    # Hive reads a backslash as an escape, so this is one string there, two statements in Presto
    assert isinstance(read_statement("SELECT 'a\\' ; DROP TABLE t; --'", "hive"), Select)
    with pytest.raises(ReadOnlyError, match="one statement"):
        read_statement("SELECT 'a\\' ; DROP TABLE t; --'", "presto")


# time limit and turn-taking with workflows


SLOW = "SELECT count(*) AS n FROM range(10000000000) t(i) WHERE md5(CAST(i AS VARCHAR)) = ''"


@pytest.fixture
def runtime(tmp_path: Path) -> LocalRuntime:
    rt = LocalRuntime(tmp_path / "ws")
    init = "+init:\n  td_ddl>:\n  create_databases: [db]\n"
    files = {
        "wf.dig": init + "+t:\n  td>: q.sql\n  database: db\n  create_table: t\n",
        "q.sql": "SELECT 1 AS id",
        "slow.dig": init + f"+slow:\n  td>:\n  query: {SLOW}\n  database: db\n",
    }
    rt.push("proj", project(tmp_path / "proj", files))
    assert rt.wait(rt.start("proj", "wf").id, 60).success
    return rt


def test_a_query_running_too_long_is_stopped_with_a_clear_message(runtime: LocalRuntime) -> None:
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"ran longer than 0.5 s and was stopped; narrow it"):
        runtime.read_query(SLOW, "db", timeout=0.5)
    assert time.monotonic() - started < 30
    assert runtime.read_query("SELECT id FROM t", "db").rows == [[1]]


def test_a_query_while_a_workflow_writes_answers_busy(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse_module, "_READ_WAIT_SEC", 0.5)
    attempt = runtime.start("proj", "slow")
    deadline = time.monotonic() + 30
    while not any(
        t.state == "running" and t.full_name == "+slow+slow" for t in runtime.tasks(attempt.id)
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(BackendError, match="busy: a workflow is writing the local warehouse"):
        runtime.read_query("SELECT id FROM t", "db")
    runtime.kill(attempt.id)
    assert runtime.wait(attempt.id, 30).done
    assert runtime.read_query("SELECT id FROM t", "db").rows == [[1]]


def test_a_workflow_waits_for_an_open_query(runtime: LocalRuntime) -> None:
    stopped: list[str] = []

    def read() -> None:
        with pytest.raises(QueryError, match="ran longer than"):
            runtime.read_query(SLOW, "db", timeout=1.5)
        stopped.append("query")

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while runtime.warehouse._readers == 0:  # the query holds the read-only instance
        assert time.monotonic() < deadline and reader.is_alive()
        time.sleep(0.01)
    attempt = runtime.start("proj", "wf", datetime(2026, 1, 2, tzinfo=UTC))  # a new session
    checks = 0
    while True:
        tasks = runtime.tasks(attempt.id)
        if runtime.warehouse._readers == 0:
            break
        # the query is still open (it was after these tasks were read): nothing started yet
        assert not any(t.started_at for t in tasks if not t.is_group)
        checks += 1
        time.sleep(0.02)
    assert checks > 0
    assert runtime.wait(attempt.id, 60).success  # it ran once the query ended
    reader.join()
    assert stopped == ["query"]


# Treasure Data: the same guard before a job is issued


@pytest.fixture(scope="module")
def td_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RequestLog]]:
    app = RequestLog(create_app(tmp_path_factory.mktemp("td_ro"), SENTINEL_KEY))
    with BackgroundServer(app) as server:
        yield server.url, app


def test_on_treasure_data_no_job_is_issued_for_a_refused_query(
    td_site: tuple[str, RequestLog],
) -> None:
    url, log = td_site

    async def scenario() -> None:
        async with client(url) as td:
            await td.ensure_database("ro_db")
            for entry in CORPUS[:40]:
                if "{" in entry["sql"]:
                    continue
                with pytest.raises(ReadOnlyError):
                    await td.read_query(entry["sql"], "ro_db")
            assert not [r for r in log.seen if "/v3/job/issue" in r]
            result = await td.read_query("SELECT 42 AS answer /* a comment */", "ro_db")
            assert result.rows == [[42]]
            assert len([r for r in log.seen if "/v3/job/issue" in r]) == 1

    anyio.run(scenario)
