"""The hist-union project: its files, column alignment, and its SQL proven on DuckDB."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from cdp_mcp.backends.local import td_udfs
from cdp_mcp.core.config import PipelineConfig, parse_config
from cdp_mcp.core.phases import INC_LOG_COLUMNS, Phase, workflows
from cdp_mcp.core.schema import Column, SchemaMap, duckdb_type
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.digdag.loader import load_dig
from cdp_mcp.generate import GenerationError
from cdp_mcp.generate.hist_union import common_type, render, union_columns
from cdp_mcp.generate.writer import write_project
from tests.conftest import SENTINEL_KEY

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
OBJECTS = ["orders", "customers"]


def make_config(mode: str = "both", **hist_union: Any) -> PipelineConfig:
    raw = {
        "global": {"client": "acme", "td_api_key": SENTINEL_KEY},
        "ingestion": {
            "source_name": "shopify",
            "connector": "shopify",
            "connector_settings": {"td_authentication_id": 123, "store_name": "acme"},
            "objects": OBJECTS,
            "mode": mode,
        },
        "hist_union": hist_union,
    }
    return parse_config(raw, "test.yml", Path("."))


def cols(*spec: str) -> list[Column]:
    """`cols("id:long", "email")` -> columns; the type defaults to string."""
    out = []
    for s in spec:
        name, _, td = s.partition(":")
        out.append(Column(name=name, type=td or "string"))
    return out


# hist and incremental sides whose columns differ: names, order and one type
HIST = cols("id:long", "email", "legacy_code", "amount:long", "time:long")
INC = cols("id:long", "amount:double", "email", "phone", "time:long")


def schemas_for(
    cfg: PipelineConfig, hist: list[Column] = HIST, inc: list[Column] = INC
) -> SchemaMap:
    out: SchemaMap = {}
    for obj in OBJECTS:
        out[f"acme_src.shopify_{obj}_hist"] = hist
        out[f"acme_src.shopify_{obj}"] = inc
    return out


def substitute(sql: str, params: dict[str, Any]) -> str:
    return PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), sql)


def run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    (duck,) = sqlglot.transpile(substitute(sql, params), read="presto", write="duckdb")
    cur = con.execute(duck)
    if cur.description is None:
        return []
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


SAMPLE = {
    **{
        f"td.last_results.{s}_{b}": 1_700_000_000
        for s in ("hist", "inc")
        for b in ("from", "to", "scan_start", "scan_end", "late_end")
    },
    "session_time": "2024-03-15T00:00:00+00:00",
}


class Union:
    """The generated steps for one table, run on DuckDB over hand-made source tables."""

    def __init__(self, cfg: PipelineConfig, schemas: SchemaMap, table: str = "shopify_orders"):
        self.files = render(cfg, schemas)
        self.table = table
        self.con = duckdb.connect()
        td_udfs.register(self.con)  # TD's UDFs, as the local warehouse has them
        td_udfs.install(self.con)
        self.con.execute("CREATE SCHEMA acme_src")
        self.con.execute("CREATE SCHEMA acme_config")
        for side in ("_hist", ""):
            columns = schemas.get(f"acme_src.{table}{side}")
            if columns:
                ddl = ", ".join(f"{quote_ident(c.name)} {duckdb_type(c.type)}" for c in columns)
                self.con.execute(f'CREATE TABLE acme_src."{table}{side}" ({ddl})')

    def insert(self, side: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            names = ", ".join(quote_ident(k) for k in row)
            marks = ", ".join("?" for _ in row)
            self.con.execute(
                f'INSERT INTO acme_src."{self.table}{side}" ({names}) VALUES ({marks})',
                list(row.values()),
            )

    def step(self) -> dict[str, Any]:
        params: dict[str, Any] = {"session_time": "2024-03-15T00:00:00+00:00"}
        run(self.con, self.files["queries/create_inc_log.sql"], params)
        run(self.con, self.files[f"queries/{self.table}_create.sql"], params)
        (marks,) = run(self.con, self.files[f"queries/{self.table}_watermarks.sql"], params)
        params.update({f"td.last_results.{k}": v for k, v in marks.items()})
        (bounds,) = run(self.con, self.files[f"queries/{self.table}_bounds.sql"], params)
        params = {"session_time": params["session_time"]}  # store_last_results replaces
        params.update({f"td.last_results.{k}": v for k, v in bounds.items()})
        run(self.con, self.files[f"queries/{self.table}_union.sql"], params)
        run(self.con, self.files[f"queries/{self.table}_log.sql"], params)
        return bounds

    def output(self) -> list[tuple[Any, ...]]:
        cur = self.con.execute(f'SELECT * FROM acme_src."{self.table}_hist_union"')
        return sorted(cur.fetchall(), key=repr)

    def columns(self) -> list[tuple[str, str]]:
        described = self.con.execute(f'DESCRIBE acme_src."{self.table}_hist_union"').fetchall()
        return [(r[0], r[1]) for r in described]


# -- structure --------------------------------------------------------------------------------


def test_files_and_workflow() -> None:
    cfg = make_config()
    files = render(cfg, schemas_for(cfg))
    per_table = {
        f"queries/shopify_{o}_{s}.sql"
        for o in OBJECTS
        for s in ("create", "watermarks", "bounds", "union", "log")
    }
    assert set(files) == {"shopify_hist_union.dig", "queries/create_inc_log.sql"} | per_table
    assert workflows(cfg, Phase.HIST_UNION) == ["shopify_hist_union"]


def test_workflow_loads_and_references_existing_queries(tmp_path: Path) -> None:
    cfg = make_config()
    root = write_project(tmp_path, "hist_union", render(cfg, schemas_for(cfg)))
    dig = load_dig(root / "shopify_hist_union.dig", root)
    assert dig["+create_databases"]["create_databases"] == ["acme_config", "acme_src"]
    union = dig["+union"]
    assert union["_parallel"] == {"limit": 3}  # tables are independent: side by side
    groups = [k for k in union if k.startswith("+")]
    assert groups == ["+shopify_orders", "+shopify_customers"]
    for g in groups:
        assert union[g]["+read_watermarks"]["store_last_results"] is True
        for task in union[g].values():
            assert (root / task["td>"]).is_file()


def test_configured_subset_of_tables() -> None:
    cfg = make_config(tables=["shopify_customers"])
    files = render(cfg, schemas_for(cfg))
    assert "queries/shopify_customers_union.sql" in files
    assert "queries/shopify_orders_union.sql" not in files


def test_rendering_is_deterministic_and_key_free() -> None:
    cfg = make_config()
    first, second = render(cfg, schemas_for(cfg)), render(cfg, schemas_for(cfg))
    assert first == second
    assert all(SENTINEL_KEY not in text for text in first.values())


@pytest.mark.parametrize("mode", ["both", "historical", "incremental"])
def test_every_sql_file_parses_as_presto(mode: str) -> None:
    cfg = make_config(mode)
    for name, text in render(cfg, schemas_for(cfg)).items():
        if name.endswith(".sql"):
            parsed = [s for s in sqlglot.parse(substitute(text, SAMPLE), read="presto") if s]
            assert len(parsed) == 1, name


def test_missing_schema_is_a_generation_error() -> None:
    cfg = make_config()
    with pytest.raises(GenerationError, match="run the ingestion phase first"):
        render(cfg, {"acme_src.shopify_orders": INC})


# -- alignment ----------------------------------------------------------------------------------


def test_columns_union_by_name_incremental_first_time_last() -> None:
    merged = union_columns([HIST, INC])
    assert [(c.name, c.type) for c in merged] == [
        ("id", "long"),
        ("amount", "double"),
        ("email", "string"),
        ("phone", "string"),
        ("legacy_code", "string"),
        ("time", "long"),
    ]
    assert common_type({"long", "boolean"}) == "string"


def test_union_sql_aligns_by_name_with_typed_nulls() -> None:
    cfg = make_config()
    sql = render(cfg, schemas_for(cfg))["queries/shopify_orders_union.sql"]
    hist_part, inc_part = sql.split('FROM "acme_src"."shopify_orders_hist"\nWHERE "time" >')[0], sql
    assert 'CAST(NULL AS varchar) AS "phone"' in hist_part
    assert 'CAST("amount" AS double) AS "amount"' in hist_part
    assert 'CAST(NULL AS varchar) AS "legacy_code"' in inc_part.split("UNION ALL")[2]
    assert sql.count("UNION ALL") == 3  # two sides, each with its late rows


@pytest.mark.slow
def test_identifiers_with_quotes_are_quoted() -> None:
    cfg = make_config()
    odd = cols('we"ird', "id:long", "time:long")
    files = render(cfg, schemas_for(cfg, hist=odd, inc=odd))
    assert '"we""ird"' in files["queries/shopify_orders_union.sql"]
    assert '"we""ird" varchar' in files["queries/shopify_orders_create.sql"]
    u = Union(cfg, schemas_for(cfg, hist=odd, inc=odd))
    u.insert("_hist", [{'we"ird': "x", "id": 1, "time": 10}])
    u.step()
    assert u.output() == [("x", 1, 10)]


# -- semantics on DuckDB ------------------------------------------------------------------------


@pytest.mark.slow
def test_union_of_differing_sides_gives_the_right_rows_and_types() -> None:
    cfg = make_config()
    u = Union(cfg, schemas_for(cfg))
    u.insert(
        "_hist",
        [
            {"id": 1, "email": "a@x", "legacy_code": "L1", "amount": 5, "time": 100},
            {"id": 2, "email": "b@x", "legacy_code": None, "amount": 7, "time": 100},
        ],
    )
    u.insert("", [{"id": 1, "amount": 5.5, "email": "a@x", "phone": "555", "time": 50}])
    u.step()
    assert u.columns() == [
        ("id", "BIGINT"),
        ("amount", "DOUBLE"),
        ("email", "VARCHAR"),
        ("phone", "VARCHAR"),
        ("legacy_code", "VARCHAR"),
        ("time", "BIGINT"),
    ]
    assert u.output() == sorted(
        [
            (1, 5.0, "a@x", None, "L1", 100),
            (2, 7.0, "b@x", None, None, 100),
            (1, 5.5, "a@x", "555", None, 50),
        ],
        key=repr,
    )
    log = u.con.execute(
        "SELECT table_name, project_name, inc_value FROM acme_config.inc_log ORDER BY table_name"
    ).fetchall()
    assert log == [
        ("acme_src.shopify_orders", "acme_hist_union", 50),
        ("acme_src.shopify_orders_hist", "acme_hist_union", 100),
    ]
    cols_ = u.con.execute("DESCRIBE acme_config.inc_log").fetchall()
    assert [c[0] for c in cols_] == [c.name for c in INC_LOG_COLUMNS]


@pytest.mark.slow
def test_rerun_adds_nothing_and_later_rows_arrive_once() -> None:
    cfg = make_config()
    u = Union(cfg, schemas_for(cfg))
    u.insert("_hist", [{"id": 1, "email": "a", "amount": 1, "time": 100}])
    u.insert("", [{"id": 2, "email": "b", "amount": 2.0, "time": 300}])
    u.step()
    first = u.output()
    assert u.step() == {
        "hist_from": 100,
        "hist_to": 100,
        "hist_scan_start": 101,
        "hist_scan_end": 101,  # an empty scan: nothing above the watermark
        "hist_late_end": 100,  # nor late in its second: [from, late_end) is empty
        "inc_from": 300,
        "inc_to": 300,
        "inc_scan_start": 301,
        "inc_scan_end": 301,
        "inc_late_end": 300,
    }
    assert u.output() == first

    # inc gets a newer load; hist gets a row with an OLDER time than inc's watermark
    u.insert("", [{"id": 3, "email": "c", "amount": 3.0, "time": 400}])
    u.insert("_hist", [{"id": 4, "email": "d", "amount": 4, "time": 200}])
    u.step()
    assert [r[0] for r in u.output()] == [1, 2, 3, 4]
    u.step()
    assert [r[0] for r in u.output()] == [1, 2, 3, 4]


@pytest.mark.slow
def test_rows_loaded_in_the_watermark_second_after_a_run_still_arrive() -> None:
    cfg = make_config()
    u = Union(cfg, schemas_for(cfg))
    same = {"id": 1, "email": "a", "amount": 1.0, "time": 300}
    u.insert("", [same, {"id": 2, "email": "b", "amount": 2.0, "time": 300}])
    u.step()
    # a later load within the same second: one new row, one identical to a unioned row
    u.insert("", [{"id": 3, "email": "c", "amount": 3.0, "time": 300}, same])
    bounds = u.step()
    assert (bounds["inc_from"], bounds["inc_late_end"]) == (300, 301)  # the second is read
    assert sorted(r[0] for r in u.output()) == [1, 1, 2, 3]
    assert u.step()["inc_late_end"] == 300  # all of it unioned: not read again
    assert sorted(r[0] for r in u.output()) == [1, 1, 2, 3]


@pytest.mark.slow
def test_the_watermark_second_is_compared_only_when_rows_arrived_in_it_late() -> None:
    """After a backfill, the whole batch shares the watermark second: a rerun must not
    compare all of it with the union again (that made an incremental run slower than the
    full one), yet a row loaded later in that second, even in the other side, still counts."""
    cfg = make_config()
    u = Union(cfg, schemas_for(cfg))
    u.insert("_hist", [{"id": i, "email": f"{i}@x", "amount": i, "time": 100} for i in range(50)])
    u.step()
    u.insert("", [{"id": 99, "email": "n@x", "amount": 1.0, "time": 200}])
    bounds = u.step()
    assert bounds["hist_late_end"] == bounds["hist_from"] == 100  # the 50 rows: not compared
    assert len(u.output()) == 51
    # a row stamped with hist's watermark second: the counts of that second differ, so
    # the exact comparison runs (and finds hist's 50 rows unioned already)
    u.insert("", [{"id": 7, "email": "7@x", "amount": 7.0, "time": 100}])
    assert u.step()["hist_late_end"] == 101
    assert len(u.output()) == 51


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "side"), [("incremental", ""), ("historical", "_hist")])
def test_one_sided_modes_read_only_the_side_that_exists(mode: str, side: str) -> None:
    cfg = make_config(mode)
    schemas = {
        k: v
        for k, v in schemas_for(cfg).items()
        if k.endswith(f"orders{side}") or k.endswith(f"customers{side}")
    }
    u = Union(cfg, schemas)
    text = u.files["queries/shopify_orders_union.sql"]
    other = "shopify_orders_hist" if side == "" else 'shopify_orders"'
    assert other not in text.replace("shopify_orders_hist_union", "")
    row = {"id": 1, "email": "a", "amount": 1, "time": 10}
    u.insert(side, [row])
    u.step()
    u.step()
    assert len(u.output()) == 1
