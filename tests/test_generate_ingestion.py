"""The ingestion project: its files per mode, and its SQL proven on DuckDB.

The SQL tests run each workflow step by hand (bounds -> load -> log), with `${...}` replaced
the way Digdag would and the Presto SQL transpiled to DuckDB; the `file` load is emulated
with the semantics docs/internals.md gives the local `td_load>`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import yaml

from cdp_mcp.backends.local import td_udfs
from cdp_mcp.cli.demo_data import append_rows, write_sample
from cdp_mcp.core.config import PipelineConfig, parse_config
from cdp_mcp.core.file_source import find_object_file, select_sql
from cdp_mcp.core.phases import INGESTION_LOG, INGESTION_LOG_COLUMNS, Phase, workflows
from cdp_mcp.digdag.loader import load_dig
from cdp_mcp.generate import GenerationError
from cdp_mcp.generate.ingestion import canonical_ts, render
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.generate.templating import environment
from cdp_mcp.generate.writer import write_project
from tests.conftest import SENTINEL_KEY

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


# -- helpers ---------------------------------------------------------------------------------


def make_config(tmp_path: Path, rows: int = 60, **ingestion: Any) -> PipelineConfig:
    data = tmp_path / "shopify"
    if not data.exists():
        write_sample(data, rows=rows)
    raw = {
        "global": {"client": "acme", "td_api_key": SENTINEL_KEY},
        "ingestion": {
            "source_name": "shopify",
            "connector": "file",
            "source_path": "./shopify",
            "objects": ["orders", "customers", "products"],
            **ingestion,
        },
    }
    return parse_config(raw, "test.yml", tmp_path)


def substitute(sql: str, params: dict[str, Any]) -> str:
    """Replace ${...} as Digdag would; an unknown expression is an error of the test."""

    def value(m: re.Match[str]) -> str:
        expr = m.group(1)
        if expr.startswith("String(error.message"):
            return params.get("error.message", "boom").replace("'", "''")
        if expr not in params:
            raise KeyError(f"no test value for ${{{expr}}}")
        return str(params[expr])

    return PLACEHOLDER.sub(value, sql)


def run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Execute one td> query (Presto) on DuckDB; rows as dicts, like store_last_results."""
    duck = sqlglot.transpile(substitute(sql, params), read="presto", write="duckdb")
    assert len(duck) == 1, "a td> query is one statement"
    cur = con.execute(duck[0])
    if cur.description is None:
        return []
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def source_file(cfg: PipelineConfig, obj: str) -> Path:
    assert cfg.source_dir is not None
    return find_object_file(cfg.source_dir, obj)


def sample_params() -> dict[str, Any]:
    return {
        "datasource.name": "orders",
        "datasource.table_name": "shopify_orders",
        "datasource.config_file": "shopify_orders_load.yml",
        "td.last_results.range_start": "2023-09-01T00:00:00.000000Z",
        "td.last_results.range_end": "",
        "td.last_results.from_inclusive": "true",
        "td.last_results.loaded_after": 1_700_000_000,
        "session_time": "2024-03-15T00:00:00+00:00",
        "attempt_id": "1",
        "ingest_mode": "incremental",
    }


class Emulator:
    """Runs the generated ingestion steps for one object on DuckDB."""

    def __init__(self, cfg: PipelineConfig, files: dict[str, str], session_time: str) -> None:
        self.cfg, self.files = cfg, files
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f'CREATE SCHEMA "{cfg.src_db}"')
        td_udfs.register(self.con)  # TD's UDFs, as the local warehouse has them
        td_udfs.install(self.con)
        self.session_time = session_time
        # `time` is the load time: later than the log row of any earlier load
        self.load_time = int(time.time())
        macros = environment().get_template("_macros.j2").module
        parsed = macros.parse_ts('"updated_at"', "presto")  # type: ignore[attr-defined]
        self.parse_duck = sqlglot.transpile(f"SELECT {parsed}", read="presto", write="duckdb")[0]

    def ingest(self, kind: str, obj: str) -> dict[str, Any]:
        """One iteration of the for_each body: create, read bounds, clear, load, log."""
        bounds, params = self._load_step(kind, obj)
        run(self.con, self.files["queries/log_success.sql"], params)
        return bounds

    def ingest_without_log(self, kind: str, obj: str, clock_skew: int = 0) -> dict[str, Any]:
        """A load that fails after td_load> (no log row); its connector's clock `clock_skew`
        seconds off the log's."""
        return self._load_step(kind, obj, clock_skew)[0]

    def _load_step(
        self, kind: str, obj: str, clock_skew: int = 0
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        suffix = "_hist" if kind == "hist" else ""
        params = {
            "datasource.name": obj,
            "datasource.table_name": f"{self.cfg.source}_{obj}{suffix}",
            "session_time": self.session_time,
            "attempt_id": "7",
            "ingest_mode": "historical" if kind == "hist" else "incremental",
        }
        run(self.con, self.files["queries/create_ingestion_log.sql"], params)
        run(self.con, self.files["queries/create_target_table.sql"], params)
        (bounds,) = run(self.con, self.files[f"queries/{kind}_bounds.sql"], params)
        params.update({f"td.last_results.{k}": v for k, v in bounds.items()})
        run(self.con, self.files["queries/clear_range.sql"], params)
        self._load(obj, params["datasource.table_name"], bounds, clock_skew)
        return bounds, params

    def _load(self, obj: str, table: str, bounds: dict[str, Any], clock_skew: int = 0) -> None:
        """The local `file` connector: rows whose field lies in the range, plus `time`."""
        load_yml = yaml.safe_load(
            substitute(
                self.files[f"config/{self.cfg.source}_{obj}_load.yml"],
                {f"td.last_results.{k}": v for k, v in bounds.items()},
            )
        )["in"]
        select, _ = select_sql(Path(load_yml["path"]))
        ts = self.parse_duck.removeprefix("SELECT ")
        lo, hi = load_yml["from"], load_yml["to"]
        op = ">=" if load_yml["from_inclusive"] else ">"
        cond = f"({ts}) {op} CAST('{lo}' AS TIMESTAMPTZ)"
        if hi:
            cond += f" AND ({ts}) < CAST('{hi}' AS TIMESTAMPTZ)"
        self.load_time = max(self.load_time + 10, int(time.time()))
        stamp = self.load_time + clock_skew
        rows = f"SELECT *, {stamp}::BIGINT AS time FROM ({select}) src WHERE {cond}"
        target = f'"{self.cfg.src_db}"."{table}"'
        if self._has_all_columns(table, rows):
            self.con.execute(f"INSERT INTO {target} BY NAME ({rows})")
        else:
            self._recreate(target, rows)

    def _has_all_columns(self, table: str, rows: str) -> bool:
        have = {
            r[0]
            for r in self.con.execute(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_schema = '{self.cfg.src_db}' AND table_name = '{table}'"
            ).fetchall()
        }
        want = {r[0] for r in self.con.execute(f"DESCRIBE {rows}").fetchall()}
        return want <= have

    def _recreate(self, target: str, rows: str) -> None:
        # schema on write: the pre-created (field, time) table gains the source's columns
        self.con.execute(f"CREATE TABLE new_t AS SELECT * FROM ({rows}) LIMIT 0")
        self.con.execute(f"INSERT INTO new_t BY NAME SELECT * FROM {target}")
        self.con.execute(f"INSERT INTO new_t BY NAME ({rows})")
        self.con.execute(f"DROP TABLE {target}")
        self.con.execute(f"CREATE TABLE {target} AS SELECT * FROM new_t")
        self.con.execute("DROP TABLE new_t")

    def loaded_keys(self, obj: str) -> list[tuple[Any, ...]]:
        keys: list[tuple[Any, ...]] = []
        for suffix in ("_hist", ""):
            table = f"{self.cfg.src_db}.{self.cfg.source}_{obj}{suffix}"
            exists = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema || '.' || "
                f"table_name = '{table}'"
            ).fetchone()
            if exists and exists[0]:
                keys += self.con.execute(f"SELECT id, updated_at FROM {table}").fetchall()
        return sorted(keys, key=repr)

    def expected_keys(self, obj: str) -> list[tuple[Any, ...]]:
        """Source rows with field >= start_date, each once."""
        select, _ = select_sql(source_file(self.cfg, obj))
        ts = self.parse_duck.removeprefix("SELECT ")
        start = canonical_ts(self.cfg.ingestion.start_date)
        rows = self.con.execute(
            f"SELECT id, updated_at FROM ({select}) s WHERE ({ts}) >= CAST('{start}' AS TIMESTAMPTZ)"
        ).fetchall()
        return sorted(rows, key=repr)

    def log(self) -> list[dict[str, Any]]:
        # insertion order: every row of a test is logged within the same second
        cur = self.con.execute(f'SELECT * FROM "{self.cfg.src_db}"."{INGESTION_LOG}"')
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# -- structure --------------------------------------------------------------------------------

COMMON = {
    "config/shopify_datasources.yml",
    "config/shopify_orders_load.yml",
    "config/shopify_customers_load.yml",
    "config/shopify_products_load.yml",
    "queries/create_ingestion_log.sql",
    "queries/create_target_table.sql",
    "queries/clear_range.sql",
    "queries/log_success.sql",
    "queries/log_error.sql",
}


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        (
            "both",
            {
                "shopify_ingest_hist.dig",
                "shopify_ingest_inc.dig",
                "queries/hist_bounds.sql",
                "queries/inc_bounds.sql",
            },
        ),
        ("historical", {"shopify_ingest_hist.dig", "queries/hist_bounds.sql"}),
        ("incremental", {"shopify_ingest_inc.dig", "queries/inc_bounds.sql"}),
    ],
)
def test_files_per_mode(tmp_path: Path, mode: str, extra: set[str]) -> None:
    cfg = make_config(tmp_path, mode=mode)
    files = render(cfg, predicted_schemas(cfg))
    assert set(files) == COMMON | extra
    assert {f"{w}.dig" for w in workflows(cfg, Phase.INGESTION)} == {
        f for f in files if f.endswith(".dig")
    }
    lists = yaml.safe_load(files["config/shopify_datasources.yml"])
    assert set(lists) == {
        f"{k}_datasources" for k in ("hist", "inc") if f"shopify_ingest_{k}.dig" in files
    }


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    schemas = predicted_schemas(cfg)
    assert render(cfg, schemas) == render(cfg, schemas)


def test_workflows_load_as_digdag_projects(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, parallel_limit=4)
    root = write_project(tmp_path / "ws", "ingestion", render(cfg, predicted_schemas(cfg)))
    for kind, key in (("hist", "hist_datasources"), ("inc", "inc_datasources")):
        dig = load_dig(root / f"shopify_ingest_{kind}.dig", root)
        export = dig["_export"]
        assert export["td"] == {"database": "acme_src"}
        assert [d["name"] for d in export[key]] == ["orders", "customers", "products"]
        assert {d["table_name"] for d in export[key]} == {
            f"shopify_{o}{'_hist' if kind == 'hist' else ''}"
            for o in ("orders", "customers", "products")
        }
        loop = next(v for k, v in dig.items() if k.startswith("+load_"))
        assert loop["_parallel"] == {"limit": 4}
        assert loop["for_each>"] == {"datasource": f"${{{key}}}"}
        body = loop["_do"]
        assert body["+read_bounds"]["store_last_results"] is True
        assert body["+load"]["td_load>"] == "config/${datasource.config_file}"
        assert body["_error"]["+log_error"]["td>"] == "queries/log_error.sql"
        assert dig["+create_database"]["create_databases"] == ["acme_src"]
        for task in (*dig.values(), *body.values()):
            if isinstance(task, dict) and "td>" in task:
                assert (root / task["td>"]).is_file()


def test_file_load_config_points_at_the_absolute_source_file(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    files = render(cfg, predicted_schemas(cfg))
    values = {
        "td.last_results.range_start": "2023-09-01T00:00:00.000000Z",
        "td.last_results.range_end": "",
        "td.last_results.from_inclusive": "false",
    }
    conf = yaml.safe_load(substitute(files["config/shopify_orders_load.yml"], values))
    assert conf["in"]["type"] == "file"
    assert Path(conf["in"]["path"]).is_absolute()
    assert conf["in"]["path"] == str((tmp_path / "shopify" / "orders.jsonl").resolve())
    assert conf["in"]["incremental_field"] == "updated_at"
    assert conf["in"]["from_inclusive"] is False
    assert conf["in"]["to"] == ""
    assert conf["out"]["mode"] == "append"


def test_td_connector_config_is_tds_connector_with_secrets(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        connector="sfdc_v2",
        source_path=None,
        connector_settings={
            "username": "${secret:shopify.username}",
            "password": "${secret:shopify.password}",
            "client_id": "${secret:shopify.client_id}",
            "client_secret": "${secret:shopify.client_secret}",
        },
    )
    files = render(cfg, {})
    text = files["config/shopify_customers_load.yml"]
    conf = yaml.safe_load(text)
    assert conf["in"]["type"] == "sfdc_v2"
    assert conf["in"]["target"] == "customers"
    assert conf["in"]["password"] == "${secret:shopify.password}"
    assert conf["in"]["where"].startswith("updated_at >= ")
    assert conf["out"]["mode"] == "replace"  # into the landing table
    assert SENTINEL_KEY not in text


def test_incremental_field_must_exist_and_be_text(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, incremental_field="missing_col")
    with pytest.raises(GenerationError, match="no column 'missing_col'"):
        render(cfg, predicted_schemas(cfg))
    cfg = make_config(tmp_path, incremental_field="id")
    with pytest.raises(GenerationError, match="must hold timestamps as text"):
        render(cfg, predicted_schemas(cfg))


def test_missing_source_file_is_a_generation_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    (tmp_path / "shopify" / "products.parquet").unlink()
    with pytest.raises(GenerationError, match="no file for object 'products'"):
        render(cfg, {})


def test_no_api_key_in_any_file(tmp_path: Path) -> None:
    for connector in ("file", "shopify"):
        extra: dict[str, Any] = (
            {}
            if connector == "file"
            else {
                "connector": connector,
                "source_path": None,
                "connector_settings": {"td_authentication_id": 7, "store_name": "acme"},
            }
        )
        cfg = make_config(tmp_path, **extra)
        assert cfg.global_.td_api_key is not None
        for text in render(cfg, predicted_schemas(cfg) if connector == "file" else {}).values():
            assert SENTINEL_KEY not in text


def test_config_names_are_quoted_and_literal(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, target_database="my_src")
    files = render(cfg, predicted_schemas(cfg))
    assert f'"my_src"."{INGESTION_LOG}"' in files["queries/log_success.sql"]
    assert "\"source_name\" = 'shopify'" in files["queries/inc_bounds.sql"]
    # the canonical start date is a literal, never pasted unquoted
    assert "'2023-09-01T00:00:00.000000Z'" in files["queries/hist_bounds.sql"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["both", "historical", "incremental"])
def test_every_sql_file_parses_as_presto(tmp_path: Path, mode: str) -> None:
    cfg = make_config(tmp_path, mode=mode)
    for name, text in render(cfg, predicted_schemas(cfg)).items():
        if name.endswith(".sql"):
            statements = sqlglot.parse(substitute(text, sample_params()), read="presto")
            assert len([s for s in statements if s is not None]) == 1, name


@pytest.mark.slow
def test_log_table_matches_the_declared_columns(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    emu = Emulator(cfg, render(cfg, predicted_schemas(cfg)), "2024-03-15T00:00:00+00:00")
    run(emu.con, emu.files["queries/create_ingestion_log.sql"], {})
    cols = emu.con.execute(f'DESCRIBE "acme_src"."{INGESTION_LOG}"').fetchall()
    assert [c[0] for c in cols] == [c.name for c in INGESTION_LOG_COLUMNS]


# -- semantics on DuckDB ----------------------------------------------------------------------


@pytest.mark.slow
def test_backfill_and_incremental_load_every_row_once(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, mode="both")
    emu = Emulator(cfg, render(cfg, predicted_schemas(cfg)), "2024-03-15T00:00:00+00:00")
    for obj in cfg.ingestion.objects:
        hist = emu.ingest("hist", obj)
        assert hist == {
            "range_start": "2023-09-01T00:00:00.000000Z",
            "range_end": "2024-03-01T00:00:00.000000Z",
            "from_inclusive": "true",
            "loaded_after": 0,  # nothing loaded into the table yet: every partition
        }
        (hist_log,) = [r for r in emu.log() if r["object_name"] == obj]
        inc = emu.ingest("inc", obj)
        # the incremental load continues strictly after what the backfill brought
        assert inc == {
            "range_start": hist_log["watermark"],
            "range_end": "",
            "from_inclusive": "false",
            "loaded_after": 0,  # the incremental table has had no successful load yet
        }
        assert hist_log["watermark"] < "2024-03-01T00:00:00.000000Z"
        assert emu.loaded_keys(obj) == emu.expected_keys(obj)
        # rows before the start date exist in the sample and were not loaded
        assert len(emu.expected_keys(obj)) < _source_rows(emu, obj)

    # reruns of both workflows, in a later month, add nothing
    emu.session_time = "2024-05-20T00:00:00+00:00"
    before = {o: emu.loaded_keys(o) for o in cfg.ingestion.objects}
    for obj in cfg.ingestion.objects:
        assert emu.ingest("hist", obj)["range_start"] == "2024-03-01T00:00:00.000000Z"
        assert emu.ingest("inc", obj)["from_inclusive"] == "false"
    assert {o: emu.loaded_keys(o) for o in cfg.ingestion.objects} == before
    rerun = [r for r in emu.log() if r["session_time"] == emu.session_time]
    assert [r["rows_loaded"] for r in rerun] == [0] * 6

    # rows appended to a source arrive on the next incremental run, once
    append_rows(tmp_path / "shopify", "orders", 9)
    emu.session_time = "2024-06-01T00:00:00+00:00"
    emu.ingest("inc", "orders")
    assert emu.loaded_keys("orders") == emu.expected_keys("orders")
    (last,) = [r for r in emu.log() if r["session_time"] == emu.session_time]
    assert last["rows_loaded"] == 9


@pytest.mark.slow
def test_incremental_first_then_backfill_meet_at_the_split_point(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, mode="both")
    emu = Emulator(cfg, render(cfg, predicted_schemas(cfg)), "2024-02-10T00:00:00+00:00")
    inc = emu.ingest("inc", "customers")
    assert inc["range_start"] == "2024-02-01T00:00:00.000000Z"
    emu.session_time = "2024-04-10T00:00:00+00:00"  # a later month must not move S
    hist = emu.ingest("hist", "customers")
    assert (hist["range_start"], hist["range_end"]) == (
        "2023-09-01T00:00:00.000000Z",
        "2024-02-01T00:00:00.000000Z",
    )
    assert emu.loaded_keys("customers") == emu.expected_keys("customers")


@pytest.mark.slow
def test_incremental_mode_starts_at_start_date(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, mode="incremental", start_date="2023-12-01")
    emu = Emulator(cfg, render(cfg, predicted_schemas(cfg)), "2024-03-15T00:00:00+00:00")
    assert emu.ingest("inc", "orders")["range_start"] == "2023-12-01T00:00:00.000000Z"
    assert emu.ingest("inc", "orders")["from_inclusive"] == "false"
    assert emu.loaded_keys("orders") == emu.expected_keys("orders")
    watermarks = [r["watermark"] for r in emu.log()]
    assert watermarks[1] is None  # the rerun loaded nothing: no watermark of its own
    watermark = watermarks[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", watermark)


@pytest.mark.slow
def test_historical_mode_has_no_upper_bound_and_reruns_continue(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, mode="historical")
    emu = Emulator(cfg, render(cfg, predicted_schemas(cfg)), "2024-03-15T00:00:00+00:00")
    first = emu.ingest("hist", "products")
    assert first["range_end"] == ""
    assert emu.loaded_keys("products") == emu.expected_keys("products")
    emu.ingest("hist", "products")
    assert emu.loaded_keys("products") == emu.expected_keys("products")
    append_rows(tmp_path / "shopify", "products", 4)
    emu.ingest("hist", "products")
    assert emu.loaded_keys("products") == emu.expected_keys("products")


@pytest.mark.slow
def test_error_rows_are_logged_and_never_bounds(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, mode="both")
    emu = Emulator(cfg, render(cfg, predicted_schemas(cfg)), "2024-03-15T00:00:00+00:00")
    params = {
        "datasource.name": "orders",
        "datasource.table_name": "shopify_orders",
        "session_time": emu.session_time,
        "attempt_id": "9",
        "ingest_mode": "incremental",
        "error.message": "it's broken",
    }
    run(emu.con, emu.files["queries/create_ingestion_log.sql"], params)
    run(emu.con, emu.files["queries/log_error.sql"], params)
    (row,) = emu.log()
    assert (row["status"], row["object_name"], row["message"]) == ("error", "orders", "it's broken")
    assert emu.ingest("inc", "orders")["range_start"] == "2024-03-01T00:00:00.000000Z"


def _source_rows(emu: Emulator, obj: str) -> int:
    select, _ = select_sql(source_file(emu.cfg, obj))
    count = emu.con.execute(f"SELECT count(*) FROM ({select}) s").fetchone()
    return int(count[0]) if count else 0


# -- shared timestamp macros --------------------------------------------------------------------

TS_FORMS = {
    "2024-01-05T10:00:00Z": "2024-01-05T10:00:00+00:00",
    "2024-01-05 10:00:00": "2024-01-05T10:00:00+00:00",
    "2024-01-05T10:00:00.123+02:00": "2024-01-05T08:00:00.123+00:00",
    "2024-01-05T10:00:00-05:30": "2024-01-05T15:30:00+00:00",
    "2024-01-05 10:00:00.5": "2024-01-05T10:00:00.5+00:00",
    " 2024-01-05 10:00:00 ": "2024-01-05T10:00:00+00:00",
    "2024/01/05 10:00:00": "2024-01-05T10:00:00+00:00",
    "2024/01/05": "2024-01-05T00:00:00+00:00",
    "01/05/2024 10:00:00": "2024-01-05T10:00:00+00:00",
    "01/05/2024": "2024-01-05T00:00:00+00:00",
    "2024-01-05": "2024-01-05T00:00:00+00:00",
    "20240105": "2024-01-05T00:00:00+00:00",
    "garbage": None,
    "": None,
}


@pytest.mark.parametrize("engine", ["presto", "hive"])
def test_timestamp_macros_transpile_and_parse_every_form(engine: str) -> None:
    from datetime import UTC, datetime

    macros = environment().get_template("_macros.j2").module
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for text, expected in TS_FORMS.items():
        lit = "'" + text + "'"
        ts_sql = f"SELECT {macros.parse_ts(lit, engine)}"  # type: ignore[attr-defined]
        unix_sql = f"SELECT {macros.unixtime(lit, engine)}"  # type: ignore[attr-defined]
        ts = con.execute(sqlglot.transpile(ts_sql, read=engine, write="duckdb")[0]).fetchone()
        unix = con.execute(sqlglot.transpile(unix_sql, read=engine, write="duckdb")[0]).fetchone()
        assert ts is not None and unix is not None
        if expected is None:
            assert (ts[0], unix[0]) == (None, None), text
            continue
        want = datetime.fromisoformat(expected)
        got = ts[0] if ts[0].tzinfo else ts[0].replace(tzinfo=UTC)
        # Hive's unix_timestamp has whole seconds
        assert got == (want.replace(microsecond=0) if engine == "hive" else want), text
        assert unix[0] == int(want.timestamp() // 1), text
        assert isinstance(unix[0], int), text
