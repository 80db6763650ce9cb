"""The staging renderer: file layout, SQL that parses in its dialect, and - above all - SQL
that, transpiled to DuckDB the way the local backend runs it, produces exactly the cleaned,
deduplicated rows DESIGN.md asks for, for both the Presto and the Hive variant.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from cdp_mcp.config import PipelineConfig, load_config, parse_config
from cdp_mcp.digdag.loader import load_dig
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.generate.staging import render
from cdp_mcp.generate.writer import GenerationError
from cdp_mcp.phases import derive_schemas
from cdp_mcp.schema import Column, SchemaMap, duckdb_type
from cdp_mcp.sources import find_object_file, select_sql
from cdp_mcp.staging_rules import staging_columns

ENGINES = ("presto", "hive")
TABLES = ("shopify_orders", "shopify_customers", "shopify_products")


def make_config(engine: str = "presto", **ingestion: Any) -> PipelineConfig:
    raw = {
        "global": {"client": "acme"},
        "ingestion": {
            "source_name": "shopify",
            "connector": "shopify",
            "connector_settings": {"td_authentication_id": 123, "store_name": "acme"},
            "objects": ["orders", "customers", "products"],
            **ingestion,
        },
        "staging": {"engine": engine},
    }
    return parse_config(raw, "test.yml", Path("."))


def s(name: str, td_type: str = "string") -> Column:
    return Column(name=name, type=td_type)


SOURCE_COLUMNS = {
    "orders": [
        s("id", "long"),
        s("customer_email"),
        s("status"),
        s("total", "double"),
        s("updated_at"),
    ],
    "customers": [
        s("id"),
        s("email"),
        s("phone"),
        s("first_name"),
        s("visits", "long"),
        s("created_at"),
        s("updated_at"),
    ],
    "products": [s("sku"), s("title"), s("updated_at")],  # no `id`: not deduplicated
}

# Columns of each *_hist_union table (time last); values are raw, as loaded.
# fmt: off
CUSTOMERS = [
    # c1: three versions in three ISO forms; 10:00Z is the latest even though loaded first.
    (" c1 ", "  John.Doe@Example.COM ", "+1 (555) 123-4567", "  John ", 3, "2024-01-01", "2024-01-05T10:00:00Z", 100),
    ("c1", "old@example.com", "555.123.4567", "Old", 1, "2024-01-01", "2024-01-05 09:00:00", 200),
    ("c1", "older@example.com", "15551234567", "Older", 2, "2024-01-01", "2024-01-05T10:00:00.123+02:00", 300),
    # c2: placeholder texts in every spelling become NULL.
    ("c2", "N/A", "15551234567", "null", None, "NONE", "2024-01-05T10:00:00.123+02:00", 100),
    # c3: the same instant in two forms: the later load (time) wins.
    ("c3", "Tie@Example.com", "", "", 0, "", "2024-02-01T00:00:00Z", 100),
    ("c3", " tie2@EXAMPLE.com", " n/A ", "Second", 0, "", "2024-02-01 00:00:00", 200),
    # c4: an unparseable updated_at loses to any parseable one (NULLS LAST).
    ("c4", "late@example.com", "555-000-2222", "Late", 0, None, "garbage", 500),
    ("c4", "good@example.org", "(555) 000-1111", "Good", 0, None, "2024-01-01", 10),
    # c5: invalid values are kept, flagged and hashed.
    ("c5", " NOT-AN-EMAIL ", "12345", "None", 7, None, "garbage", 1),
    # rows without a key are never collapsed.
    (" NULL ", "a@b.io", None, "k1", 0, None, "2024-01-01", 1),
    ("", "c@d.io", None, "k2", 0, None, "2024-01-02", 2),
]
# fmt: on
ORDERS = [
    (1, "A@B.com ", " paid ", 10.5, "2024-01-05 10:00:00", 100),
    (1, "a@b.com", "pending", 10.5, "2024-01-04T23:59:59Z", 200),
    (2, None, "N/A", None, None, 100),
    # 10:00+02:00 is 08:00Z, earlier than 09:00Z.
    (3, "x@y.com", "old", 1.0, "2024-01-05T10:00:00.123+02:00", 300),
    (3, "x@y.com", "new", 2.0, "2024-01-05T09:00:00Z", 100),
]
PRODUCTS = [
    ("p1", " Mug ", "2024-01-01", 1),
    ("p1", "Mug v2", "2024-01-02", 1),
    ("p2", "NULL", "N/A", 1),
]
ROWS = {"orders": ORDERS, "customers": CUSTOMERS, "products": PRODUCTS}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp())


EXPECTED_CUSTOMERS = {
    "c1": {
        "email": "john.doe@example.com",
        "email_valid": True,
        "email_hash": sha("john.doe@example.com"),
        "phone": "5551234567",
        "phone_valid": True,
        "phone_hash": sha("5551234567"),
        "first_name": "John",
        "visits": 3,
        "created_at": "2024-01-01",
        "created_at_unixtime": unix("2024-01-01T00:00:00"),
        "updated_at": "2024-01-05T10:00:00Z",
        "updated_at_unixtime": unix("2024-01-05T10:00:00"),
        "time": 100,
    },
    "c2": {
        "email": None,
        "email_valid": False,
        "email_hash": None,
        "phone": "5551234567",
        "phone_valid": True,
        "phone_hash": sha("5551234567"),
        "first_name": None,
        "visits": None,
        "created_at": None,
        "created_at_unixtime": None,
        "updated_at": "2024-01-05T10:00:00.123+02:00",
        "updated_at_unixtime": unix("2024-01-05T08:00:00"),
        "time": 100,
    },
    "c3": {
        "email": "tie2@example.com",
        "email_valid": True,
        "email_hash": sha("tie2@example.com"),
        "phone": None,
        "phone_valid": False,
        "phone_hash": None,
        "first_name": "Second",
        "visits": 0,
        "created_at": None,
        "created_at_unixtime": None,
        "updated_at": "2024-02-01 00:00:00",
        "updated_at_unixtime": unix("2024-02-01T00:00:00"),
        "time": 200,
    },
    "c4": {
        "email": "good@example.org",
        "email_valid": True,
        "email_hash": sha("good@example.org"),
        "phone": "5550001111",
        "phone_valid": True,
        "phone_hash": sha("5550001111"),
        "first_name": "Good",
        "visits": 0,
        "created_at": None,
        "created_at_unixtime": None,
        "updated_at": "2024-01-01",
        "updated_at_unixtime": unix("2024-01-01T00:00:00"),
        "time": 10,
    },
    "c5": {
        "email": "not-an-email",
        "email_valid": False,
        "email_hash": sha("not-an-email"),
        "phone": "12345",
        "phone_valid": False,
        "phone_hash": sha("12345"),
        "first_name": None,
        "visits": 7,
        "created_at": None,
        "created_at_unixtime": None,
        "updated_at": "garbage",
        "updated_at_unixtime": None,
        "time": 1,
    },
}


# -- helpers -------------------------------------------------------------------------------


def schemas_for(cfg: PipelineConfig, sources: dict[str, list[Column]] | None = None) -> SchemaMap:
    return derive_schemas(cfg, sources or SOURCE_COLUMNS)


def seeded_db(
    schemas: SchemaMap, rows: dict[str, list[tuple[Any, ...]]]
) -> duckdb.DuckDBPyConnection:
    """A DuckDB with acme_src.*_hist_union tables holding `rows`, like the local backend."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA acme_src")
    con.execute("CREATE SCHEMA acme_stg")
    for obj, table_rows in rows.items():
        name = f"acme_src.shopify_{obj}_hist_union"
        cols = schemas[name]
        ddl = ", ".join(
            f'"{c.name.replace(chr(34), chr(34) * 2)}" {duckdb_type(c.type)}' for c in cols
        )
        con.execute(f"CREATE TABLE {name} ({ddl})")
        marks = ", ".join("?" for _ in cols)
        con.executemany(f"INSERT INTO {name} VALUES ({marks})", table_rows)
    return con


def run_transform(
    con: duckdb.DuckDBPyConnection, sql: str, engine: str, table: str
) -> list[dict[str, Any]]:
    """Transpile to DuckDB as the local backend does, build the table, return its rows."""
    statements = sqlglot.transpile(sql, read=engine, write="duckdb")
    assert len(statements) == 1
    con.execute(f"CREATE OR REPLACE TABLE acme_stg.{table} AS {statements[0]}")
    cur = con.execute(f"SELECT * FROM acme_stg.{table}")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def build(engine: str, table: str, **ingestion: Any) -> tuple[list[dict[str, Any]], SchemaMap]:
    cfg = make_config(engine, **ingestion)
    schemas = schemas_for(cfg)
    files = render(cfg, schemas)
    con = seeded_db(schemas, ROWS)
    return run_transform(con, files[f"queries/{table}_transform.sql"], engine, table), schemas


# -- layout and parsing ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_files_are_one_workflow_and_one_query_per_table(engine: str) -> None:
    cfg = make_config(engine)
    files = render(cfg, schemas_for(cfg))
    assert sorted(files) == sorted(
        ["transform_shopify.dig", *(f"queries/{t}_transform.sql" for t in TABLES)]
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_every_query_parses_in_its_dialect(engine: str) -> None:
    cfg = make_config(engine)
    for rel, text in render(cfg, schemas_for(cfg)).items():
        if rel.endswith(".sql"):
            statements = sqlglot.parse(text, read=engine)
            assert len(statements) == 1, rel


def test_presto_and_hive_quote_identifiers_their_own_way() -> None:
    presto = render(make_config("presto"), schemas_for(make_config("presto")))
    hive = render(make_config("hive"), schemas_for(make_config("hive")))
    sql_p, sql_h = (
        presto["queries/shopify_orders_transform.sql"],
        hive["queries/shopify_orders_transform.sql"],
    )
    assert 'FROM "acme_src"."shopify_orders_hist_union"' in sql_p
    assert "FROM `acme_src`.`shopify_orders_hist_union`" in sql_h
    assert "`" not in sql_p
    assert '"' not in sql_h  # in Hive "x" is a string, never an identifier
    assert "to_hex(sha256(to_utf8(" in sql_p and "sha2(" in sql_h


@pytest.mark.parametrize("engine", ENGINES)
def test_workflow_creates_the_database_and_rebuilds_each_table(engine: str, tmp_path: Path) -> None:
    cfg = make_config(engine)
    for rel, text in render(cfg, schemas_for(cfg)).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    dig = load_dig(tmp_path / "transform_shopify.dig", tmp_path)
    assert dig["_export"] == {"td": {"database": "acme_stg"}}
    assert dig["+create_database"] == {"td_ddl>": None, "create_databases": ["acme_stg"]}
    transform = dig["+transform"]
    assert transform["_parallel"] == {"limit": 3}
    tasks = {k: v for k, v in transform.items() if k.startswith("+")}
    assert list(tasks) == [f"+{t}" for t in TABLES]
    for table in TABLES:
        task = tasks[f"+{table}"]
        assert task == {
            "td>": f"queries/{table}_transform.sql",
            "engine": engine,
            "database": "acme_stg",
            "create_table": table,
        }
        assert (tmp_path / task["td>"]).is_file()


def test_rendering_is_deterministic() -> None:
    first = render(make_config("presto"), schemas_for(make_config("presto")))
    again = render(make_config("presto"), schemas_for(make_config("presto")))
    assert first == again
    assert list(first) == list(again)


def test_missing_input_schema_is_an_actionable_error() -> None:
    cfg = make_config()
    schemas = schemas_for(cfg)
    del schemas["acme_src.shopify_customers_hist_union"]
    with pytest.raises(
        GenerationError, match=r"acme_src\.shopify_customers_hist_union.*hist_union"
    ):
        render(cfg, schemas)


# -- executed on DuckDB ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("table", TABLES)
def test_output_columns_are_exactly_the_staging_columns(engine: str, table: str) -> None:
    cfg = make_config(engine)
    schemas = schemas_for(cfg)
    rows, _ = build(engine, table)
    expected = staging_columns(schemas[f"acme_src.{table}_hist_union"], "updated_at")
    assert expected == schemas[f"acme_stg.{table}"]
    assert list(rows[0]) == [c.name for c in expected]


@pytest.mark.parametrize("engine", ENGINES)
def test_customers_are_cleaned_hashed_and_deduplicated(engine: str) -> None:
    before = int(time.time())
    rows, _ = build(engine, "shopify_customers")
    after = int(time.time()) + 1
    keyed = {r["id"]: r for r in rows if r["id"] is not None}
    assert sorted(keyed) == sorted(EXPECTED_CUSTOMERS)
    for key, expected in EXPECTED_CUSTOMERS.items():
        got = {k: v for k, v in keyed[key].items() if k in expected}
        assert got == expected, key
    for row in rows:
        assert row["source_system"] == "shopify"
        assert before <= row["load_timestamp"] <= after
    # Both rows without a key survive; their emails are still normalised.
    unkeyed = sorted(r["email"] for r in rows if r["id"] is None)
    assert unkeyed == ["a@b.io", "c@d.io"]
    assert len(rows) == len(EXPECTED_CUSTOMERS) + 2


@pytest.mark.parametrize("engine", ENGINES)
def test_orders_keep_the_latest_version_across_iso_forms(engine: str) -> None:
    rows, _ = build(engine, "shopify_orders")
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == [1, 2, 3]
    assert by_id[1]["status"] == "paid"
    assert by_id[1]["customer_email"] == "a@b.com"
    assert by_id[1]["customer_email_hash"] == sha("a@b.com")
    assert by_id[1]["updated_at_unixtime"] == unix("2024-01-05T10:00:00")
    assert by_id[1]["total"] == 10.5
    assert by_id[2]["status"] is None
    assert by_id[2]["customer_email"] is None and by_id[2]["customer_email_valid"] is False
    assert by_id[2]["updated_at_unixtime"] is None
    assert by_id[3]["status"] == "new"
    assert by_id[3]["updated_at_unixtime"] == unix("2024-01-05T09:00:00")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_table_without_its_primary_key_is_not_deduplicated(engine: str) -> None:
    cfg = make_config(engine)
    sql = render(cfg, schemas_for(cfg))["queries/shopify_products_transform.sql"]
    assert "Not deduplicated: primary key column 'id' is not in the table" in sql
    rows, _ = build(engine, "shopify_products")
    assert [(r["sku"], r["title"], r["updated_at"]) for r in rows] == [
        ("p1", "Mug", "2024-01-01"),
        ("p1", "Mug v2", "2024-01-02"),
        ("p2", None, None),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_configured_primary_key_is_used(engine: str) -> None:
    rows, _ = build(engine, "shopify_products", primary_keys={"products": "sku"})
    assert sorted((r["sku"], r["title"]) for r in rows) == [("p1", "Mug v2"), ("p2", None)]


@pytest.mark.parametrize("engine", ENGINES)
def test_identifiers_that_need_quoting(engine: str) -> None:
    # `order` is the (reserved) primary key; the others are reserved, or not plain identifiers.
    cfg = make_config(engine, objects=["orders"], primary_keys={"orders": "order"})
    cols = [s("order", "long"), s("from"), s("user-email"), s('note"s'), s("updated_at")]
    schemas = schemas_for(cfg, {"orders": cols})
    sql = render(cfg, schemas)["queries/shopify_orders_transform.sql"]
    quoted = '"note""s"' if engine == "presto" else '`note"s`'
    assert quoted in sql
    assert sqlglot.parse(sql, read=engine)
    con = seeded_db(
        schemas,
        {
            "orders": [
                (7, " select ", " X@Y.ORG ", "n/a", "2024-01-01T00:00:00Z", 1),
                (7, "where", "old@y.org", "kept?", "2023-12-31 23:59:59", 2),
            ]
        },
    )
    rows = run_transform(con, sql, engine, "shopify_orders")
    assert list(rows[0]) == [c.name for c in schemas["acme_stg.shopify_orders"]]
    assert len(rows) == 1
    row = rows[0]
    assert row["order"] == 7 and row["from"] == "select" and row['note"s'] is None
    assert row["user-email"] == "x@y.org" and row["user-email_valid"] is True
    assert row["user-email_hash"] == sha("x@y.org")


def test_derived_names_never_duplicate_an_input_column() -> None:
    # The input's own column wins; before, the name appeared twice and CREATE TABLE failed.
    cols = [
        s("updated_at"),
        s("updated_at_unixtime", "long"),
        s("source_system"),
        s("time", "long"),
    ]
    names = [c.name for c in staging_columns(cols, "updated_at")]
    assert names == ["updated_at", "updated_at_unixtime", "source_system", "time", "load_timestamp"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_seed_example_stages_its_own_source_files(acme_config: Path, engine: str) -> None:
    # Schemas predicted from the fixture files; hist-union tables filled from the same files.
    cfg = load_config(acme_config).model_copy(update={"staging": make_config(engine).staging})
    assert cfg.source_dir is not None
    files = render(cfg, predicted_schemas(cfg))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA acme_src; CREATE SCHEMA acme_stg")
    for obj in cfg.ingestion.objects:
        select, _ = select_sql(find_object_file(cfg.source_dir, obj))
        con.execute(
            f"CREATE TABLE acme_src.shopify_{obj}_hist_union AS "
            f"SELECT *, CAST(1 AS BIGINT) AS time FROM ({select})"
        )
    customers = {
        r["id"]: r
        for r in run_transform(
            con, files["queries/shopify_customers_transform.sql"], engine, "shopify_customers"
        )
    }
    assert sorted(customers) == [1, 2, 3, 4]
    bob = customers[2]
    assert (bob["last_name"], bob["email"], bob["phone"]) == (
        "Stone",
        "bob@example.com",
        "5559876543",
    )
    assert bob["updated_at_unixtime"] == unix("2024-01-05T10:00:00")
    assert customers[1]["email"] == "ann.lee@example.com" and customers[1]["phone"] == "5551234567"
    assert customers[3]["created_at_unixtime"] == unix("2023-10-01T06:30:00")
    assert customers[4]["last_name"] is None and customers[4]["phone"] is None
    orders = run_transform(
        con, files["queries/shopify_orders_transform.sql"], engine, "shopify_orders"
    )
    by_id = {r["id"]: r for r in orders}
    assert by_id[101]["total_price"] == "7.50" and by_id[102]["total_price"] is None
