"""TD input connectors: the catalog's validation, the load configs it renders (the range in
each connector's own fields) and the local dry run on extracts shaped as each delivers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.core.config import ConfigError, PipelineConfig, parse_config
from cdp_mcp.core.connectors import catalog, get
from cdp_mcp.core.phases import Phase, project_name
from cdp_mcp.digdag import expr
from cdp_mcp.generate.ingestion import render
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline

# What the workflow's read_bounds stores, and the session it runs in.
CLOSED = {"range_start": "2024-01-01T00:00:00.000000Z", "range_end": "2024-02-01T00:00:00.000000Z"}
OPEN = {"range_start": "2024-01-31T10:20:30.123456Z", "range_end": ""}
SESSION = "2024-03-15T08:00:00+00:00"


def config(tmp_path: Path, connector: str, **ingestion: Any) -> PipelineConfig:
    raw = {
        "global": {"client": "acme"},
        "ingestion": {
            "source_name": "shop",
            "connector": connector,
            "objects": ["orders", "customers"],
            **ingestion,
        },
    }
    return parse_config(raw, "acme.yml", tmp_path)


def problems(tmp_path: Path, connector: str, **ingestion: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config(tmp_path, connector, **ingestion)
    return [str(p) for p in err.value.problems]


# -- the catalog as the config sees it ---------------------------------------------------


def test_the_seeds_connector_rest_is_refused_with_the_types_td_has(tmp_path: Path) -> None:
    found = problems(tmp_path, "rest")
    assert len(found) == 1
    assert found[0].startswith("ingestion.connector: 'rest' is not a Treasure Data input connector")
    for name in ("shopify", "sfdc", "hubspot", "klaviyo", "bigquery", "snowflake", "s3"):
        assert name in found[0]
    # the seed's orchestrator maps salesforce -> `salesforce`; TD's type is sfdc / sfdc_v2
    assert "'salesforce' is not" in problems(tmp_path, "salesforce")[0]


def test_a_missing_required_field_is_a_config_error_naming_it(tmp_path: Path) -> None:
    found = problems(tmp_path, "shopify", connector_settings={"td_authentication_id": 42})
    assert found == [
        "ingestion.connector_settings.store_name: required field of TD's shopify connector "
        "is missing"
    ]
    per_object = problems(
        tmp_path,
        "s3",
        connector_settings={"td_authentication_id": 42, "bucket": "b", "parser": {"type": "csv"}},
        object_settings={"orders": {"path_prefix": "exports/orders"}},
    )
    assert per_object == [
        "ingestion.object_settings.customers.path_prefix: required for each object by TD's s3 "
        "connector"
    ]
    shared = problems(
        tmp_path,
        "s3",
        connector_settings={
            "td_authentication_id": 42,
            "bucket": "b",
            "parser": {},
            "path_prefix": "x",
        },
    )
    assert shared[0] == (
        "ingestion.connector_settings.path_prefix: differs by object: give it in "
        "object_settings.<object>.path_prefix"
    )


def test_credentials_are_secret_references_or_a_saved_authentication(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "shopify",
        connector_settings={"apikey": "shpat_0123456789", "store_name": "acme"},
    )
    assert any(
        p.startswith("ingestion.connector_settings.apikey: a credential is never written")
        and "${secret:shop.apikey}" in p
        for p in found
    )
    assert any(p.startswith("ingestion.connector_settings.password: required") for p in found)
    assert not [p for p in found if "shpat_0123456789" in p]  # the value is never echoed
    # the range is the workflow's, never the person's
    found = problems(
        tmp_path,
        "shopify",
        connector_settings={"td_authentication_id": 1, "store_name": "a", "from_date": "2020"},
    )
    assert found == [
        "ingestion.connector_settings.from_date: set by cdp-mcp (the load range for TD's "
        "shopify connector); leave it out"
    ]
    assert (
        "fields: td_authentication_id, apikey, password, store_name"
        in problems(
            tmp_path, "shopify", connector_settings={"td_authentication_id": 1, "store": "a"}
        )[0]
    )


# -- the load configs ----------------------------------------------------------------------


def minimal_settings(connector: str) -> tuple[dict[str, Any], dict[str, Any]]:
    conn = get(connector)
    assert conn is not None
    values: dict[str, Any] = {
        "parser": {"type": "csv", "columns": [{"name": "id", "type": "long"}]}
    }
    settings: dict[str, Any] = {"td_authentication_id": 1}
    settings.update({f: values.get(f, f"my_{f}") for f in conn.required})
    per_object = {o: {f: f"exports/{o}" for f in conn.per_object} for o in ("orders", "customers")}
    return settings, per_object if conn.per_object else {}


def evaluated(text: str, bounds: dict[str, str]) -> dict[str, Any]:
    """The `in:` of a load config as TD's td_load> sees it after Digdag's templating."""
    doc = yaml.safe_load(text)
    params = {
        "td": {"last_results": {**bounds, "from_inclusive": "true"}},
        "session_time": SESSION,
    }
    result = expr.evaluate_config(doc["in"], params, skip=())
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("connector", sorted(catalog()))
def test_every_catalog_connector_gets_the_range_in_its_own_fields(
    tmp_path: Path, connector: str
) -> None:
    conn = get(connector)
    assert conn is not None
    settings, per_object = minimal_settings(connector)
    cfg = config(tmp_path, connector, connector_settings=settings, object_settings=per_object)
    text = render(cfg, {})["config/shop_orders_load.yml"]
    assert "${secret:" not in text.split("in:")[0]  # comments hold no live expression
    doc = yaml.safe_load(text)
    assert doc["out"] == {"mode": "replace"}  # the landing table; load_landing.sql appends
    closed, open_ = evaluated(text, CLOSED), evaluated(text, OPEN)
    assert closed["type"] == connector
    assert closed["td_authentication_id"] == 1
    if conn.object_field:
        assert closed[conn.object_field] == "orders"
    r = conn.range
    if r.style == "fields":
        assert r.from_field is not None
        lower, upper = closed[r.from_field], closed.get(r.to_field or "")
        expected = {
            "iso_millis_z": ("2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.001Z"),
            "iso_micro_naive": ("2024-01-01T00:00:00.000000", "2024-02-01T00:00:00.000000"),
            "date": ("2024-01-01", None),
        }[r.format]
        assert (lower, upper if r.to_field else None) == expected
        if r.to_field:  # an open range ends at the session time
            assert open_[r.to_field].startswith(SESSION[:19])
            assert open_[r.from_field].startswith("2024-01-31T10:20:30")
        if r.column_field:
            assert closed[r.column_field] == "updated_at"
    elif r.style in ("where", "query"):
        assert r.field is not None
        condition = closed[r.field]
        if r.format == "sql_micro":
            assert "updated_at >= '2024-01-01 00:00:00.000000'" in condition
            assert "updated_at < '2024-02-01 00:00:00.000000'" in condition
            assert "updated_at < '2024-03-15 08:00:00.000000'" in open_[r.field]
        else:  # SOQL dateTime literals, the upper bound rounded up to a whole second
            assert condition == (
                "updated_at >= 2024-01-01T00:00:00Z AND updated_at < 2024-02-01T00:00:01Z"
            )
        if r.style == "query":
            assert condition.startswith("SELECT * FROM ")
            assert "orders" in condition.split(" WHERE ")[0]
    else:
        assert not set(conn.reserved) - {"type"} - set(closed)


def test_settings_reach_the_config_literally_and_secrets_stay_references(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "shopify",
        connector_settings={
            "apikey": "${secret:shop.apikey}",
            "password": "${secret:shop.password}",
            "store_name": "acme-$${session_time}",  # a literal ${ (README: $${)
        },
    )
    text = render(cfg, {})["config/shop_customers_load.yml"]
    found = evaluated(text, CLOSED)
    assert found["store_name"] == "acme-${session_time}"  # not evaluated by Digdag
    assert found["apikey"] == "${secret:shop.apikey}"  # left to td_load>'s secret lookup
    assert found["target"] == "customers"


# -- the local dry run ----------------------------------------------------------------------

CUSTOMERS = [
    {
        "id": 1,
        "email": "Ann@Example.com",
        "firstName": "Ann",
        "default_address": {"city": "Oslo", "zip": "0150"},
        "updated_at": "2023-08-31T23:59:59Z",  # before start_date: never loaded
    },
    {
        "id": 2,
        "email": "bob@example.com",
        "firstName": "Bob",
        "default_address": None,
        "updated_at": "2023-09-02T10:00:00Z",
    },
    {
        "id": 3,
        "email": "cy@example.com",
        "firstName": "Cy",
        "default_address": {"city": "Rome"},
        "updated_at": "2024-01-01T00:00:00Z",
    },
]
ORDERS = [
    {
        "id": 100,
        "email": "bob@example.com",
        "total_price": "19.99",
        "line_items": [{"sku": "MUG", "quantity": 2}],
        "customer": {"id": 2},
        "updated_at": "2023-09-05T10:00:00-04:00",
    },
    {
        "id": 101,
        "email": "cy@example.com",
        "total_price": "5.00",
        "line_items": [],
        "customer": {"id": 3},
        "updated_at": "2024-02-10T11:00:00Z",
    },
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")


def shopify_config(tmp_path: Path, source_path: str | None = "./extracts") -> Path:
    raw: dict[str, Any] = {
        "global": {"client": "acme"},
        "ingestion": {
            "source_name": "shopify",
            "connector": "shopify",
            "objects": ["orders", "customers"],
            "start_date": "2023-09-01",
            "connector_settings": {
                "apikey": "${secret:shopify.apikey}",
                "password": "${secret:shopify.password}",
                "store_name": "acme-store",
            },
        },
    }
    if source_path:
        raw["ingestion"]["source_path"] = source_path
    path = tmp_path / "acme.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_a_catalog_connector_dry_runs_locally_on_its_extracts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "extracts" / "customers.jsonl", CUSTOMERS)
    write_jsonl(tmp_path / "extracts" / "orders.jsonl", ORDERS)
    later = datetime(2030, 1, 1, tzinfo=UTC)

    async def scenario() -> None:
        p = Pipeline(shopify_config(tmp_path))
        init = await p.init()
        assert any("dry run of TD's Shopify connector" in n for n in init.preflight)
        generated = await p.generate_phase("ingestion")
        assert generated.secrets == ["shopify.apikey", "shopify.password"]
        await p.push_project("ingestion")
        for _ in range(2):
            started = await p.start_workflow("ingestion")
            done = await p.backend.wait(started.attempt_id, 60)
            errors = [(t.full_name, t.error) for t in await p.backend.tasks(done.id) if t.error]
            assert done.status == "success", errors
            await p.get_session(started.session_id)
        verdict = await p.validate_tables("ingestion")
        assert verdict.verdict == "PASS", verdict

        async def rows(sql: str) -> list[list[Any]]:
            return (await p.backend.query(sql, p.cfg.src_db)).rows

        # every row from start_date on, once; names as TD keeps a connector's (lower case)
        customers = await rows(
            "SELECT id, firstname, default_address FROM shopify_customers_hist ORDER BY id"
        )
        assert [r[:2] for r in customers] == [[2, "Bob"], [3, "Cy"]]
        assert customers[0][2] is None
        assert json.loads(customers[1][2])["city"] == "Rome"  # nested: kept as JSON text
        assert await rows("SELECT id, line_items FROM shopify_orders_hist ORDER BY id") == [
            [100, '[{"sku":"MUG","quantity":2}]'],
            [101, "[]"],
        ]
        assert await rows("SELECT count(*) FROM shopify_orders") == [[0]]
        tables = {t.name for t in await p.backend.tables(p.cfg.src_db)}
        assert not [t for t in tables if t.endswith("_landing")]

        # a later session loads the rows appended since, once (the watermark moves on)
        write_jsonl(
            tmp_path / "extracts" / "orders.jsonl",
            [
                {
                    "id": 102,
                    "email": "bob@example.com",
                    "total_price": "7.00",
                    "line_items": [],
                    "customer": {"id": 2},
                    "updated_at": "2025-05-05T05:05:05Z",
                }
            ],
        )
        project = project_name(p.cfg, Phase.INGESTION)
        for day in (later, later.replace(day=2)):
            attempt = await p.backend.start(project, "shopify_ingest_inc", day)
            assert (await p.backend.wait(attempt.id, 60)).status == "success"
        assert await rows("SELECT id FROM shopify_orders") == [[102]]
        await p.aclose()

    anyio.run(scenario)


@pytest.mark.slow
def test_the_dry_run_gives_the_connector_only_its_from_to_rows(tmp_path: Path) -> None:
    """Shopify's from_date / to_date filter the extract as the connector filters the API."""
    rt = LocalRuntime(tmp_path / "ws")
    rt.extracts_dir = tmp_path / "extracts"
    write_jsonl(rt.extracts_dir / "orders.jsonl", ORDERS)
    project = tmp_path / "proj"
    (project / "config").mkdir(parents=True)
    (project / "wf.dig").write_text(
        "+load:\n  td_load>: config/orders.yml\n  database: src\n  table: landing\n"
    )
    (project / "config" / "orders.yml").write_text(
        "in:\n  type: shopify\n  td_authentication_id: 1\n  store_name: s\n  target: orders\n"
        "  from_date: '2023-09-05T14:00:00.000Z'\n  to_date: '2024-02-10T11:00:00.000Z'\n"
        "  incremental_field: updated_at\nout:\n  mode: replace\n"
    )
    rt.push("proj", project)
    attempt = rt.start("proj", "wf", datetime(2024, 3, 1, tzinfo=UTC))
    done = rt.wait(attempt.id, 30)
    assert done.status == "success", [t.error for t in rt.tasks(done.id) if t.error]
    # 10:00-04:00 is 14:00Z: inside (from is inclusive); 11:00Z is the exclusive to_date
    assert rt.query("SELECT id FROM landing", "src").rows == [[100]]


def test_init_refuses_a_dry_run_without_extracts_and_says_what_they_look_like(
    tmp_path: Path,
) -> None:
    with pytest.raises(PipelineError) as err:
        anyio.run(Pipeline(shopify_config(tmp_path, source_path=None)).init)
    message = str(err.value)
    assert "ingestion.source_path" in message
    assert "orders.jsonl (one JSON object per line" in message
    write_jsonl(tmp_path / "extracts" / "orders.jsonl", ORDERS)
    with pytest.raises(PipelineError, match=r"no file for object 'customers'.*customers\.jsonl"):
        anyio.run(Pipeline(shopify_config(tmp_path)).init)


@pytest.mark.slow
def test_a_primary_key_the_loaded_tables_lack_is_refused_before_hist_union(
    tmp_path: Path,
) -> None:
    """A TD connector's columns are known only once ingestion has loaded, so init cannot
    check `primary_keys` for it; the next phase must refuse the typo, naming the field and
    the column it meant, instead of staging the table without deduplication."""
    write_jsonl(tmp_path / "extracts" / "customers.jsonl", CUSTOMERS)
    write_jsonl(tmp_path / "extracts" / "orders.jsonl", ORDERS)
    config = shopify_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["ingestion"]["primary_keys"] = {"orders": "ids"}
    config.write_text(yaml.safe_dump(raw))

    async def scenario() -> None:
        p = Pipeline(config)
        await p.init()  # the columns are not known yet: nothing to refuse
        await p.generate_phase("ingestion")
        await p.push_project("ingestion")
        for _ in range(2):
            started = await p.start_workflow("ingestion")
            assert (await p.backend.wait(started.attempt_id, 60)).status == "success"
            await p.get_session(started.session_id)
        assert (await p.validate_tables("ingestion")).verdict == "PASS"
        with pytest.raises(PipelineError) as refused:
            await p.generate_phase("hist_union")
        message = str(refused.value)
        assert "ingestion.primary_keys.orders" in message and "'ids' is not a column" in message
        assert "did you mean 'id'" in message, message
        assert not (p.cfg.workspace / "shopify_hist_union").exists() or not any(
            (p.cfg.workspace / "shopify_hist_union").glob("*.dig")
        )
        await p.aclose()

    anyio.run(scenario)
