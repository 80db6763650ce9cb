"""Several sources in one config: the `sources:` list, the one-source `ingestion:` form as a
list of one, per-source views, and errors that name `sources[i]...`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cdp_mcp.core.config import ConfigError, SourceAmbiguityError, load_config

SHOP = {"name": "shop", "source_path": "./shop", "objects": ["customers", "orders"]}
CRM = {
    "name": "crm",
    "source_path": "./crm",
    "objects": ["contacts"],
    "primary_keys": {"contacts": "contact_id"},
    "incremental_field": "modified_at",
    "target_database": "acme_crm_src",
}


def write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "pipe.yml"
    p.write_text(yaml.safe_dump(doc))
    return p


def problems(tmp_path: Path, doc: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, doc))
    return {p.path: p.message for p in err.value.problems}


def two_sources(**extra: object) -> dict:
    return {"global": {"client": "acme"}, "sources": [dict(SHOP), dict(CRM)], **extra}


def test_each_source_keeps_its_own_fields_and_database(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, two_sources()))
    assert cfg.source_names == ["shop", "crm"]
    assert cfg.ingested_tables() == ["shop_customers", "shop_orders", "crm_contacts"]
    assert [r.qualified("x") for r in cfg.hist_union_tables()] == [
        "acme_src.shop_customers",
        "acme_src.shop_orders",
        "acme_crm_src.crm_contacts",
    ]
    crm = cfg.for_source("crm")
    assert crm.source == "crm"
    assert crm.src_db == "acme_crm_src"
    assert crm.primary_key("contacts") == "contact_id"
    assert crm.ingestion.incremental_field == "modified_at"
    assert crm.source_dir == tmp_path / "crm"
    assert crm.ingested_tables() == ["crm_contacts"]
    shop = cfg.for_source("shop")
    assert shop.src_db == "acme_src"
    assert shop.ingestion.incremental_field == "updated_at"
    assert [r.table for r in shop.hist_union_tables()] == ["shop_customers", "shop_orders"]
    # The shared blocks are the same in every view.
    assert shop.stg_db == crm.stg_db == cfg.stg_db == "acme_stg"
    assert shop.workspace == cfg.workspace


def test_a_table_names_its_source_and_object(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, two_sources()))
    assert cfg.source_of_table("crm_contacts") == "crm"
    assert cfg.source_of_table("shop_orders_hist_union") == "shop"
    assert cfg.source_of_table("shop_orders_hist") == "shop"
    assert cfg.source_of_table("crm_orders") is None
    assert cfg.object_of("crm_contacts") == "contacts"
    assert cfg.object_of("shop_orders") == "orders"
    assert cfg.object_of("shop_contacts") is None


def test_a_one_source_name_is_refused_on_several_sources(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, two_sources()))
    with pytest.raises(SourceAmbiguityError, match=re.escape("2 sources (shop, crm)")):
        _ = cfg.source
    with pytest.raises(SourceAmbiguityError):
        _ = cfg.src_db


def test_the_one_source_form_is_a_list_of_one(tmp_path: Path) -> None:
    one = {
        "global": {"client": "acme"},
        "ingestion": {"source_name": "shop", "source_path": "./shop", "objects": ["orders"]},
    }
    cfg = load_config(write(tmp_path, one))
    assert cfg.source_names == ["shop"]
    assert cfg.source == "shop"
    assert cfg.for_source("shop").ingestion == cfg.ingestion
    listed = load_config(
        write(
            tmp_path, {"global": {"client": "acme"}, "sources": [{**SHOP, "objects": ["orders"]}]}
        )
    )
    assert listed.ingested_tables() == cfg.ingested_tables()
    assert listed.hist_union_tables() == cfg.hist_union_tables()


def test_errors_name_the_source_entry(tmp_path: Path) -> None:
    doc = two_sources()
    doc["sources"][1]["objects"] = ["contacts", "Bad-Name"]
    doc["sources"][0]["mode"] = "sometimes"
    found = problems(tmp_path, doc)
    assert "sources[1].objects[1]" in found
    assert "sources[0].mode" in found
    del doc["sources"][1]["name"]
    assert problems(tmp_path, doc)["sources[1].name"] == "required field is missing"


def test_both_forms_or_neither_are_refused(tmp_path: Path) -> None:
    both = two_sources(ingestion={"source_name": "x", "source_path": ".", "objects": ["a"]})
    assert "not both" in problems(tmp_path, both)["sources"]
    assert (
        "required" in problems(tmp_path, {"global": {"client": "acme"}, "staging": {}})["sources"]
    )
    assert "at least 1" in problems(tmp_path, two_sources(sources=[]))["sources"]


def test_a_name_twice_and_tables_two_sources_would_make_are_refused(tmp_path: Path) -> None:
    doc = two_sources()
    doc["sources"].append({**CRM, "objects": ["leads"], "primary_keys": {}})
    assert "also sources[1]" in problems(tmp_path, doc)["sources[2].name"]
    # shop + x_orders and shop_x + orders both make shop_x_orders
    clash = two_sources()
    clash["sources"][0]["objects"] = ["x_orders"]
    clash["sources"][1] = {"name": "shop_x", "source_path": "./x", "objects": ["orders"]}
    message = problems(tmp_path, clash)["sources[1].objects[0]"]
    assert "shop_x_orders" in message and "source shop's object x_orders" in message


def test_hist_union_tables_must_cover_every_source(tmp_path: Path) -> None:
    doc = two_sources(hist_union={"tables": ["shop_orders"]})
    message = problems(tmp_path, doc)["hist_union.tables"]
    assert "no table of source crm" in message and "crm_contacts" in message
    ok = load_config(
        write(tmp_path, two_sources(hist_union={"tables": ["shop_orders", "crm_contacts"]}))
    )
    assert [r.qualified("x") for r in ok.hist_union_tables()] == [
        "acme_src.shop_orders",
        "acme_crm_src.crm_contacts",
    ]
    assert [r.table for r in ok.for_source("crm").hist_union_tables()] == ["crm_contacts"]
