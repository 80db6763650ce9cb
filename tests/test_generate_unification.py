"""The unification project: planning (keys, tables, limits), rendering, and what its SQL does.

The SQL is executed for real: the prep and enrichment queries are transpiled presto -> duckdb
and run over small staging tables and a hand-made `{id}_lookup`, so the column contract the
local unification engine is written against is tested here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import yaml

from cdp_mcp.core.config import ConfigError, PipelineConfig, load_config, parse_config
from cdp_mcp.core.phases import Phase, expected_tables, unified_tables
from cdp_mcp.core.schema import Column, SchemaMap, duckdb_type
from cdp_mcp.core.staging_rules import staging_columns
from cdp_mcp.core.td_unify import unify_config_problems
from cdp_mcp.core.unify_plan import EMAIL_INVALID_TEXTS, PHONE_INVALID_TEXTS, plan_unification
from cdp_mcp.generate import generate
from cdp_mcp.generate.check import check_project, sql_problems
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.generate.unification import PREP_DELTA_STEPS, render, unification_api_url
from tests.conftest import SENTINEL_KEY, SENTINEL_SECRET

STG = "acme_stg"
UNIF_DB = "cdp_unification_customer_360"


def make_config(
    tmp_path: Path, unification: dict[str, Any] | None = None, **global_: Any
) -> PipelineConfig:
    raw = {
        "global": {"client": "acme", "td_api_key": SENTINEL_KEY, **global_},
        "ingestion": {
            "source_name": "shopify",
            "connector": "file",
            "source_path": "./data",
            "objects": ["customers", "orders", "products"],
        },
        "unification": unification or {},
    }
    return parse_config(raw, "test.yml", tmp_path)


def _columns(spec: str) -> list[Column]:
    """`"id:long email phone"` -> columns (type string unless given)."""
    out = []
    for item in spec.split():
        name, _, type_ = item.partition(":")
        out.append(Column(name=name, type=type_ or "string"))
    return out


def staging_schemas() -> SchemaMap:
    """Staging tables as the staging phase builds them (with _valid/_hash/_unixtime)."""
    hist = {
        "shopify_customers": "id:long first_name email phone created_at updated_at time:long",
        "shopify_orders": "id:long customer_email contact_email total_price:double updated_at time:long",
        "shopify_products": "id:long title vendor updated_at time:long",
    }
    return {f"{STG}.{t}": staging_columns(_columns(spec), "updated_at") for t, spec in hist.items()}


# -- planning -----------------------------------------------------------------------


def test_keys_and_tables_are_inferred_from_email_and_phone_columns(tmp_path: Path) -> None:
    plan = plan_unification(make_config(tmp_path), staging_schemas())

    assert [k.name for k in plan.keys] == ["email", "phone"]
    email, phone = plan.keys
    assert email.valid_regexp == ".+@.+"
    assert email.invalid_texts == EMAIL_INVALID_TEXTS
    assert "" in email.invalid_texts and "test@test.com" in email.invalid_texts
    assert phone.valid_regexp is None and phone.invalid_texts == PHONE_INVALID_TEXTS
    # products has no identity column; derived _valid/_hash columns are never keys.
    assert [t.table for t in plan.tables] == ["shopify_customers", "shopify_orders"]
    customers, orders = plan.tables
    assert [(c.column, c.key, c.input_column, c.valid_flag) for c in customers.key_columns] == [
        ("email", "email", "email", "email_valid"),
        ("phone", "phone", "phone", "phone_valid"),
    ]
    # Two email columns in one table keep both on one row of unif_input.
    assert [(c.column, c.input_column) for c in orders.key_columns] == [
        ("customer_email", "email"),
        ("contact_email", "email_2"),
    ]
    assert [(c.name, c.key) for c in plan.input_columns] == [
        ("email", "email"),
        ("email_2", "email"),
        ("phone", "phone"),
    ]
    assert plan.merge_by_keys == ["email", "phone"]
    assert unify_config_problems(plan.unify_config()) == []


def test_configured_keys_without_tables_map_columns_by_name_and_kind(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"keys": [{"name": "phone"}, {"name": "email"}]})
    plan = plan_unification(cfg, staging_schemas())
    assert plan.keys[0].invalid_texts == [""]  # configured keys keep their own rules
    assert plan.merge_by_keys == ["phone", "email"]
    assert [t.table for t in plan.tables] == ["shopify_customers", "shopify_orders"]


def test_configured_tables_accept_table_or_db_table(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "tables": [
                {
                    "table": "shopify_customers",
                    "key_columns": [{"column": "phone", "key": "phone"}],
                },
                {
                    "table": f"{STG}.shopify_orders",
                    "key_columns": [{"column": "customer_email", "key": "email"}],
                },
            ]
        },
    )
    plan = plan_unification(cfg, staging_schemas())
    assert [t.qualified for t in plan.tables] == [
        f"{STG}.shopify_customers",
        f"{STG}.shopify_orders",
    ]
    # Keys come from the tables, with the defaults for their names.
    assert [k.name for k in plan.keys] == ["phone", "email"]
    assert plan.key("email").valid_regexp == ".+@.+"
    assert unified_tables(cfg, staging_schemas()) == ["shopify_customers", "shopify_orders"]


def _problems(excinfo: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.path: p.message for p in excinfo.value.problems}


def test_every_table_problem_is_reported_at_once_with_its_field(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "tables": [
                {
                    "table": "shopify_customers",
                    "key_columns": [
                        {"column": "email", "key": "email"},
                        {"column": "mobile", "key": "phone"},
                    ],
                },
                {
                    "table": "other_db.shopify_orders",
                    "key_columns": [{"column": "email", "key": "email"}],
                },
                {"table": "shopify_refunds", "key_columns": [{"column": "email", "key": "email"}]},
            ]
        },
    )
    with pytest.raises(ConfigError) as excinfo:
        plan_unification(cfg, staging_schemas())
    problems = _problems(excinfo)
    missing = problems["unification.tables[0].key_columns[1].column"]
    assert "'mobile' is not a column of acme_stg.shopify_customers" in missing
    assert "email_valid" in missing and "phone" in missing  # names the columns that exist
    assert "is not a staging table" in problems["unification.tables[1].table"]
    assert "acme_stg.shopify_orders" in problems["unification.tables[2].table"]  # lists them
    assert str(excinfo.value).startswith("pipeline config: 3 problems")


def test_no_identity_column_is_a_clear_error(tmp_path: Path) -> None:
    schemas = {
        f"{STG}.shopify_products": staging_columns(
            _columns("id:long title time:long"), "updated_at"
        )
    }
    with pytest.raises(ConfigError) as excinfo:
        plan_unification(make_config(tmp_path), schemas)
    assert _problems(excinfo) == {
        "unification.keys": "no email or phone column in staging tables; set unification.keys and "
        "unification.tables"
    }


def test_unused_key_merge_by_keys_and_id_name_problems(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "keys": [{"name": "email"}, {"name": "loyalty_id"}],
            "merge_by_keys": ["email"],
            "id_name": "first_name",
        },
    )
    with pytest.raises(ConfigError) as excinfo:
        plan_unification(cfg, staging_schemas())
    problems = _problems(excinfo)
    assert "key 'loyalty_id' is not used by any table" in problems["unification.keys[1]"]
    assert "does not list keys loyalty_id" in problems["unification.merge_by_keys"]
    assert (
        "acme_stg.shopify_customers already has a column 'first_name'"
        in problems["unification.id_name"]
    )


def test_merge_by_keys_naming_a_key_that_was_not_inferred(tmp_path: Path) -> None:
    schemas = {
        f"{STG}.shopify_customers": staging_columns(_columns("id:long email time:long"), "x")
    }
    cfg = make_config(tmp_path, {"merge_by_keys": ["phone", "email"]})
    with pytest.raises(
        ConfigError, match=r"unification.merge_by_keys: names undefined keys: phone"
    ):
        plan_unification(cfg, schemas)


def test_reserved_key_names_are_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"keys": [{"name": "source_table"}]})
    schemas = {f"{STG}.shopify_customers": _columns("id:long source_table time:long")}
    with pytest.raises(
        ConfigError, match=r"unification.keys\[0\].name: 'source_table' is reserved"
    ):
        plan_unification(cfg, schemas)


# -- rendering ----------------------------------------------------------------------


@pytest.mark.slow
def test_acme_project_has_exactly_these_files_and_is_deterministic(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    schemas = predicted_schemas(cfg)
    files = render(cfg, schemas)
    assert sorted(files) == [
        "config/environment.yml",
        "config/src_prep_params.yml",
        "config/stage_enrich.yml",
        "config/unify.yml",
        "dynmic_prep_creation.dig",
        "enrich_runner.dig",
        "id_unification.dig",
        "queries/create_enrich_log.sql",
        *(
            f"queries/enrich_{t}{step}.sql"
            for t in ("shopify_customers", "shopify_orders")
            for step in ("", "_bounds", "_changes", "_delete", "_insert", "_log")
        ),
        *(
            f"queries/prep_{t}{step}.sql"
            for t in ("shopify_customers", "shopify_orders")
            for step in ("", *(f"_{s}" for s in sorted(PREP_DELTA_STEPS)))
        ),
        "queries/unif_input.sql",
        "queries/unif_input_bounds.sql",
        "unif_runner.dig",
    ]
    assert render(cfg, dict(reversed(list(schemas.items())))) == files
    tables = {t.table for t in expected_tables(cfg, Phase.UNIFICATION, schemas)}
    assert {"enriched_shopify_customers", "enriched_shopify_orders", "unified_id_keys"} <= tables
    assert "enriched_shopify_products" not in tables


@pytest.mark.slow
def test_generated_project_passes_the_structural_check(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    project = generate(cfg, Phase.UNIFICATION, predicted_schemas(cfg))
    assert check_project(project.directory) == []
    assert project.workflows == ["unif_runner"]
    assert project.secrets == ["td.apikey"]


def test_unify_yml_is_tds_format(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"merge_iterations": 7, "incremental_merge_iterations": 3})
    files = render(cfg, staging_schemas())
    doc = yaml.safe_load(files["config/unify.yml"])
    assert doc == plan_unification(cfg, staging_schemas()).unify_config()
    assert doc["name"] == "customer_360"
    assert doc["tables"] == [
        {
            "database": STG,
            "table": "unif_input",
            "incremental_columns": ["time"],
            "key_columns": [
                {"column": "email", "key": "email"},
                {"column": "email_2", "key": "email"},
                {"column": "phone", "key": "phone"},
            ],
        }
    ]
    assert doc["persistent_ids"] == [
        {
            "name": "unified_id",
            "merge_by_keys": ["email", "phone"],
            "merge_iterations": 7,
            "incremental_merge_iterations": 3,
        }
    ]
    assert "canonical_ids" not in doc


def _dig(files: dict[str, str], name: str) -> dict[str, Any]:
    return yaml.load(files[name], Loader=_IncludeLoader)


class _IncludeLoader(yaml.SafeLoader):
    pass


_IncludeLoader.add_constructor("!include", lambda loader, node: f"!include {node.value}")


def test_canonical_and_persistent_id_outputs(tmp_path: Path) -> None:
    persistent = render(make_config(tmp_path), staging_schemas())
    canonical = render(
        make_config(
            tmp_path, {"id_method": "canonical_id", "update_strategy": "full", "id_name": "cid"}
        ),
        staging_schemas(),
    )
    call = _dig(persistent, "id_unification.dig")["+call_unification"]["content"]
    assert call["run_persistent_ids"] is True and "run_canonical_ids" not in call
    assert call["full_refresh"] is False
    assert call["run_master_tables"] is False and call["run_enrichments"] is True
    call = _dig(canonical, "id_unification.dig")["+call_unification"]["content"]
    assert call["run_canonical_ids"] is True and "run_persistent_ids" not in call
    assert call["full_refresh"] is True
    doc = yaml.safe_load(canonical["config/unify.yml"])
    assert doc["canonical_ids"][0]["name"] == "cid" and "persistent_ids" not in doc
    # The configured id name is used everywhere, never a hard-coded persistent_id.
    enrich = canonical["queries/enrich_shopify_customers.sql"]
    assert '"cid_lookup"' in enrich and '"cid_keys"' in enrich and 'AS "cid"' in enrich
    assert not any("persistent_id" in text for text in canonical.values())


def test_unif_runner_requires_the_three_workflows_in_order(tmp_path: Path) -> None:
    files = render(make_config(tmp_path), staging_schemas())
    runner = _dig(files, "unif_runner.dig")
    steps = [(k, v["require>"]) for k, v in runner.items() if k.startswith("+")]
    assert steps == [
        ("+prep_creation", "dynmic_prep_creation"),
        ("+id_unification", "id_unification"),
        ("+enrichment", "enrich_runner"),
    ]


def test_enrichments_run_side_by_side_on_td_and_one_after_another_locally(
    tmp_path: Path,
) -> None:
    """On the local backend they share one DuckDB's memory_limit (each join holds a key's
    lookup); on TD each query has its own cluster."""
    local = _dig(render(make_config(tmp_path), staging_schemas()), "enrich_runner.dig")
    td = render(make_config(tmp_path, backend="treasuredata"), staging_schemas())
    on_td = _dig(td, "enrich_runner.dig")
    tables = ["+shopify_customers", "+shopify_orders"]
    for enrich in (local["+enrich"], on_td["+enrich"]):
        assert [k for k in enrich if k.startswith("+")] == tables
    assert "_parallel" not in local["+enrich"]
    assert on_td["+enrich"]["_parallel"] == {"limit": 3}


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://api.treasuredata.com", "https://api-cdp.treasuredata.com"),
        ("https://api.eu01.treasuredata.com", "https://api-cdp.eu01.treasuredata.com"),
        ("https://api.treasuredata.co.jp", "https://api-cdp.treasuredata.co.jp"),
        ("https://api.ap02.treasuredata.com", "https://api-cdp.ap02.treasuredata.com"),
        ("https://api-cdp.eu01.treasuredata.com", "https://api-cdp.eu01.treasuredata.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
    ],
)
def test_unification_endpoint_follows_the_td_region(
    tmp_path: Path, endpoint: str, url: str
) -> None:
    expected = f"{url}/unifications/workflow_call"
    assert unification_api_url(endpoint) == expected
    files = render(make_config(tmp_path, td_endpoint=endpoint), staging_schemas())
    task = _dig(files, "id_unification.dig")["+call_unification"]
    assert task["http_call>"] == expected
    assert task["method"] == "POST"
    assert {"authorization": "${secret:td.apikey}"} in task["headers"]
    assert {"content-type": "application/json"} in task["headers"]
    assert task["content"]["unification"] == {"!include ": "config/unify.yml"}


def test_the_api_key_is_in_no_file(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, backend="treasuredata")
    assert cfg.global_.td_api_key is not None
    for text in render(cfg, staging_schemas()).values():
        assert SENTINEL_KEY not in text
        assert SENTINEL_SECRET not in text


def test_every_sql_file_parses_as_presto(tmp_path: Path) -> None:
    files = render(make_config(tmp_path), staging_schemas())
    sql = {name: text for name, text in files.items() if name.endswith(".sql")}
    # prep and enrich per table, unif_input; the incremental enrichment: 5 per table, its log;
    # the incremental prep: its steps per table, unif_input's bounds
    assert len(sql) == 16 + 2 * len(PREP_DELTA_STEPS) + 1
    for name, text in sql.items():
        assert sql_problems(text, "presto") == [], name


def test_a_staging_table_without_time_uses_the_session_time(tmp_path: Path) -> None:
    schemas = {f"{STG}.shopify_customers": staging_columns(_columns("id:long email"), "x")}
    files = render(make_config(tmp_path), schemas)
    assert "CAST(${session_unixtime} AS bigint)" in files["queries/prep_shopify_customers.sql"]
    assert sql_problems(files["queries/prep_shopify_customers.sql"], "presto") == []


# -- the SQL, executed -------------------------------------------------------------


def to_duckdb(presto_sql: str) -> str:
    """Digdag's `${...}` filled in, then presto -> duckdb, as the local runner does."""
    filled = re.sub(r"\$\{session_unixtime\}", "1700000000", presto_sql)
    assert "${" not in filled
    return sqlglot.transpile(filled, read="presto", write="duckdb")[0]


def _create(
    con: duckdb.DuckDBPyConnection, table: str, schemas: SchemaMap, rows: list[dict[str, Any]]
) -> None:
    cols = schemas[table]
    con.execute(
        f"CREATE TABLE {table} ({', '.join(f'{c.name} {duckdb_type(c.type)}' for c in cols)})"
    )
    for row in rows:
        con.execute(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )


CUSTOMERS = [
    # id, email, email_valid, phone, phone_valid, time
    (1, "ann@example.com", True, "5551234567", True, 100),
    (2, "bob@example.com", True, None, None, 200),
    (3, "test@test.com", True, "5559876543", True, 300),  # junk email: only the phone counts
    (4, None, None, None, None, 400),  # no key at all: kept, with no id
    (5, "ann@example.com", True, "5551234567", True, 50),  # same combination, seen earlier
    (6, "not-an-email", False, None, None, 600),  # staging says invalid
    (7, "bob@example.com", True, "5559876543", True, 700),  # email outranks phone
]
ORDERS = [
    # id, customer_email, contact_email, time
    (100, "ann@example.com", None, 1000),
    (101, "carol@example.com", "bob@example.com", 1100),  # carol is unknown: second column
    (102, "carol@example.com", None, 1200),  # nobody: NULL id
    (103, "", None, 1300),
]
LOOKUP = [
    # unified_id, id, id_key_type (1 email, 2 phone)
    ("P1", "ann@example.com", 1),
    ("P1", "5551234567", 2),
    ("P2", "bob@example.com", 1),
    ("P3", "5559876543", 2),
    ("PX", "ann@example.com", 2),  # same text under another key: must not match an email
    ("PJ", "test@test.com", 1),  # an invalid value never joins
]


@pytest.fixture
def stg_db(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, SchemaMap]:
    schemas = staging_schemas()
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {STG}")
    con.execute(f"CREATE SCHEMA {UNIF_DB}")
    cust = [
        {"id": i, "email": e, "email_valid": ev, "phone": p, "phone_valid": pv, "time": t}
        for i, e, ev, p, pv, t in CUSTOMERS
    ]
    orders = [
        {"id": i, "customer_email": a, "contact_email": b, "time": t} for i, a, b, t in ORDERS
    ]
    # Staging computes the flags; here orders' are derived the same simple way.
    for o in orders:
        o["customer_email_valid"] = bool(o["customer_email"] and "@" in o["customer_email"])
        o["contact_email_valid"] = bool(o["contact_email"] and "@" in o["contact_email"])
    _create(con, f"{STG}.shopify_customers", schemas, cust)
    _create(con, f"{STG}.shopify_orders", schemas, orders)
    return con, schemas


def _run_prep(con: duckdb.DuckDBPyConnection, files: dict[str, str]) -> None:
    for t in ("shopify_customers", "shopify_orders"):
        con.execute(f"CREATE TABLE {STG}.{t}_prep AS {to_duckdb(files[f'queries/prep_{t}.sql'])}")
    con.execute(f"CREATE TABLE {STG}.unif_input AS {to_duckdb(files['queries/unif_input.sql'])}")


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> set[tuple[Any, ...]]:
    return set(con.execute(sql).fetchall())


@pytest.mark.slow
def test_prep_and_unif_input_hold_the_valid_distinct_key_values(
    tmp_path: Path, stg_db: tuple[duckdb.DuckDBPyConnection, SchemaMap]
) -> None:
    con, schemas = stg_db
    files = render(make_config(tmp_path), schemas)
    _run_prep(con, files)

    assert _rows(con, f"SELECT email, phone, time FROM {STG}.shopify_customers_prep") == {
        ("ann@example.com", "5551234567", 50),  # earliest time of the combination
        ("bob@example.com", None, 200),
        (None, "5559876543", 300),
        ("bob@example.com", "5559876543", 700),
    }
    assert _rows(con, f"SELECT email, email_2, time FROM {STG}.shopify_orders_prep") == {
        ("ann@example.com", None, 1000),
        ("carol@example.com", "bob@example.com", 1100),
        ("carol@example.com", None, 1200),
    }
    described = con.execute(f"DESCRIBE {STG}.unif_input").fetchall()
    assert [(r[0], r[1]) for r in described] == [
        ("email", "VARCHAR"),
        ("email_2", "VARCHAR"),
        ("phone", "VARCHAR"),
        ("source_table", "VARCHAR"),
        ("time", "BIGINT"),
    ]
    assert con.execute(f"SELECT count(*) FROM {STG}.unif_input").fetchone() == (7,)
    assert _rows(con, f"SELECT DISTINCT source_table FROM {STG}.unif_input") == {
        ("shopify_customers",),
        ("shopify_orders",),
    }


def _enrich(
    con: duckdb.DuckDBPyConnection,
    files: dict[str, str],
    id_name: str,
    method: str = "persistent_id",
) -> None:
    """Run the generated enrichment over a lookup shaped as TD writes it: the id in TD's
    column `canonical_id` / `persistent_id` (not under the id's name), then `id`,
    `id_key_type` and TD's other columns."""
    con.execute(f"CREATE TABLE {UNIF_DB}.{id_name}_keys (key_type INTEGER, key_name VARCHAR)")
    con.execute(f"INSERT INTO {UNIF_DB}.{id_name}_keys VALUES (1, 'email'), (2, 'phone')")
    con.execute(
        f"CREATE TABLE {UNIF_DB}.{id_name}_lookup ({method} VARCHAR, id VARCHAR,"
        f" id_key_type INTEGER, {method}_first_seen_at BIGINT, {method}_last_seen_at BIGINT,"
        " id_first_seen_at BIGINT, id_last_seen_at BIGINT, id_source_table_ids BIGINT[],"
        " id_last_processed_at BIGINT, time BIGINT)"
    )
    con.executemany(
        f"INSERT INTO {UNIF_DB}.{id_name}_lookup ({method}, id, id_key_type) VALUES (?, ?, ?)",
        LOOKUP,
    )
    for t in ("shopify_customers", "shopify_orders"):
        sql = to_duckdb(files[f"queries/enrich_{t}.sql"])
        con.execute(f"CREATE TABLE {UNIF_DB}.enriched_{t} AS {sql}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("merge_by_keys", "row7"),
    [(["email", "phone"], "P2"), (["phone", "email"], "P3")],
)
def test_enrichment_keeps_every_staging_row_and_takes_the_highest_priority_id(
    tmp_path: Path,
    stg_db: tuple[duckdb.DuckDBPyConnection, SchemaMap],
    merge_by_keys: list[str],
    row7: str,
) -> None:
    con, schemas = stg_db
    files = render(
        make_config(tmp_path, {"id_name": "person_id", "merge_by_keys": merge_by_keys}), schemas
    )
    _run_prep(con, files)
    _enrich(con, files, "person_id")

    customers = dict(
        con.execute(f"SELECT id, person_id FROM {UNIF_DB}.enriched_shopify_customers").fetchall()
    )
    assert customers == {1: "P1", 2: "P2", 3: "P3", 4: None, 5: "P1", 6: None, 7: row7}
    orders = dict(
        con.execute(f"SELECT id, person_id FROM {UNIF_DB}.enriched_shopify_orders").fetchall()
    )
    assert orders == {100: "P1", 101: "P2", 102: None, 103: None}
    # Every staging column survives, in order, and the id comes last.
    enriched = [
        r[0] for r in con.execute(f"DESCRIBE {UNIF_DB}.enriched_shopify_customers").fetchall()
    ]
    assert enriched == [c.name for c in schemas[f"{STG}.shopify_customers"]] + ["person_id"]
    for t in ("shopify_customers", "shopify_orders"):
        assert (
            con.execute(f"SELECT count(*) FROM {UNIF_DB}.enriched_{t}").fetchone()
            == con.execute(f"SELECT count(*) FROM {STG}.{t}").fetchone()
        )


def test_unknown_staging_schemas_ask_for_the_staging_phase(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unification\.tables: the columns of the staging tables are not known"
    ):
        plan_unification(make_config(tmp_path), {})


def test_values_with_quotes_and_yaml_syntax_survive_yaml_and_sql(tmp_path: Path) -> None:
    tricky = ["", "o'brien@x.com", "a: b #c", "{x}"]
    regexp = r"^[^@\s]+@[a-z]{2,}\.[a-z']+$"
    cfg = make_config(
        tmp_path, {"keys": [{"name": "email", "invalid_texts": tricky, "valid_regexp": regexp}]}
    )
    files = render(cfg, staging_schemas())
    key = yaml.safe_load(files["config/unify.yml"])["keys"][0]
    assert key == {"name": "email", "valid_regexp": regexp, "invalid_texts": tricky}
    prep = files["queries/prep_shopify_customers.sql"]
    assert "'o''brien@x.com'" in prep and "[a-z'']+$'" in prep
    assert sql_problems(prep, "presto") == []
    con = duckdb.connect()
    row = con.execute(
        f"SELECT regexp_matches('ann@example.com', '{regexp.replace(chr(39), chr(39) * 2)}')"
    ).fetchone()
    assert row == (True,)


# -- more ids and master tables ----------------------------------------------------------

EXTRAS: dict[str, Any] = {
    "ids": [{"name": "shop_id", "tables": ["shopify_customers"], "merge_by_keys": ["email"]}],
    "master_tables": [
        {
            "name": "customer_master",
            "attributes": [
                {
                    "name": "customer_id",
                    "source_columns": [{"table": "shopify_customers", "column": "id"}],
                },
                {
                    "name": "emails",
                    "array_elements": 2,
                    "source_columns": [
                        {"table": "shopify_customers", "column": "email", "priority": 1},
                        {"table": "shopify_orders", "column": "customer_email", "priority": 2},
                    ],
                },
                {"name": "shop_id", "source_id": "shop_id"},
            ],
        }
    ],
}


def test_more_ids_and_master_tables_become_tds_unify_yml(tmp_path: Path) -> None:
    files = render(make_config(tmp_path, EXTRAS), staging_schemas())
    doc = yaml.safe_load(files["config/unify.yml"])
    assert unify_config_problems(doc) == []
    assert [t["table"] for t in doc["tables"]] == [
        "unif_input",
        "shopify_customers_prep",
        "shopify_orders_prep",
    ]
    main, shop = doc["persistent_ids"]
    assert "source_tables" not in main and shop["source_tables"] == ["shopify_customers_prep"]
    assert shop["merge_by_keys"] == ["email"]
    (master,) = doc["master_tables"]
    assert master["persistent_id"] == "unified_id"
    columns = master["attributes"][1]["source_columns"]
    assert [(c["table"], c["column"], c["priority"]) for c in columns] == [
        ("shopify_customers_prep", "email", 1),
        ("shopify_orders_prep", "email", 2),
    ]
    assert master["attributes"][2] == {"name": "shop_id", "source_persistent_id": "shop_id"}
    assert _dig(files, "id_unification.dig")["+call_unification"]["content"]["run_master_tables"]
    for t in ("shopify_customers", "shopify_orders"):  # master sources: every row kept
        assert "GROUP BY" not in files[f"queries/prep_{t}.sql"]
    assert sql_problems(files["queries/prep_shopify_customers.sql"], "presto") == []


@pytest.mark.slow
def test_more_ids_and_a_master_table_run_on_the_local_engine(
    tmp_path: Path, stg_db: tuple[duckdb.DuckDBPyConnection, SchemaMap]
) -> None:
    from cdp_mcp.backends.local.unification import parse_request
    from cdp_mcp.backends.local.unification.engine import unify

    con, schemas = stg_db
    files = render(make_config(tmp_path, EXTRAS), schemas)
    _run_prep(con, files)
    content = dict(_dig(files, "id_unification.dig")["+call_unification"]["content"])
    content["unification"] = yaml.safe_load(files["config/unify.yml"])
    unify(con, parse_request(content))
    for t in ("shopify_customers", "shopify_orders"):
        sql = to_duckdb(files[f"queries/enrich_{t}.sql"])
        con.execute(f"CREATE TABLE {UNIF_DB}.enriched_{t} AS {sql}")
    customers = {
        r[0]: r[1:]
        for r in con.execute(
            f"SELECT id, unified_id, shop_id FROM {UNIF_DB}.enriched_shopify_customers"
        ).fetchall()
    }
    ann = customers[1][0]
    assert ann is not None and customers[5][0] == ann and customers[1][1] is not None
    orders = [r[0] for r in con.execute(f"DESCRIBE {UNIF_DB}.enriched_shopify_orders").fetchall()]
    assert orders[-1] == "unified_id" and "shop_id" not in orders  # shop_id: customers only
    master = {
        r[0]: r[1:]
        for r in con.execute(
            f"SELECT unified_id, customer_id, emails, shop_id FROM {UNIF_DB}.customer_master"
        ).fetchall()
    }
    # Ann: customer rows 1 (time 100) and 5 (time 50): the last by time is 1; her email from
    # customers (priority 1) and orders (2) is one distinct value.
    assert master[ann] == (1, ["ann@example.com"], customers[1][1])
    profiles = con.execute(
        f"SELECT count(DISTINCT persistent_id) FROM {UNIF_DB}.unified_id_lookup"
    ).fetchone()
    assert profiles is not None and len(master) == profiles[0]


def test_problems_with_ids_and_master_tables_name_their_fields(tmp_path: Path) -> None:
    bad = {
        "ids": [
            {"name": "shop_id", "tables": ["shopify_nope"], "merge_by_ids": ["other"]},
        ],
        "master_tables": [
            {
                "name": "unified_id_lookup",
                "id": "ghost",
                "attributes": [
                    {"name": "x", "source_columns": [{"table": "shopify_orders", "column": "zip"}]}
                ],
            }
        ],
    }
    with pytest.raises(ConfigError) as excinfo:
        make_config(tmp_path, bad)
    problems = _problems(excinfo)
    assert "is not an id" in problems["unification.ids[0].merge_by_ids"]
    assert "is a table the unification writes" in problems["unification.master_tables[0].name"]
    assert "'ghost' is not an id" in problems["unification.master_tables[0].id"]
    with pytest.raises(ConfigError) as excinfo:
        plan_unification(
            make_config(
                tmp_path,
                {
                    "ids": [{"name": "shop_id", "tables": ["shopify_nope"]}],
                    "master_tables": [
                        {
                            "name": "m",
                            "attributes": [
                                {
                                    "name": "x",
                                    "source_columns": [
                                        {"table": "shopify_orders", "column": "zip"}
                                    ],
                                }
                            ],
                        }
                    ],
                },
            ),
            staging_schemas(),
        )
    problems = _problems(excinfo)
    assert "not a unified staging table" in problems["unification.ids[0].tables[0]"]
    column = problems["unification.master_tables[0].attributes[0].source_columns[0].column"]
    assert "'zip' is not a column of shopify_orders" in column
    with pytest.raises(ConfigError) as excinfo:
        make_config(tmp_path, {"do_not_merge_key": "email"})
    assert "only a canonical_id" in _problems(excinfo)["unification.do_not_merge_key"]
